// heed's GEMM signature, tiled by heed. f32 products run on heed's own kernels where the CPU
// has AVX-512: C = A B^T with few rows on the no-pack kernel (gemm_small.h), the rest on the
// packed one (gemm_packed.h); f64 products, and f32 ones elsewhere, go to CBLAS (OpenBLAS,
// OpenMP build).
//
// Why heed tiles instead of letting OpenBLAS thread a large product: OpenBLAS 0.3.21 blocks
// the inner dimension K differently in its single-threaded driver (driver/level3/level3.c
// rounds half of a remainder between GEMM_Q and 2 GEMM_Q up to a multiple of GEMM_UNROLL_M)
// and in its threaded one (level3_thread.c takes (rest + 1) / 2), so e.g. a 600x700x500
// sgemm on SkylakeX kernels (GEMM_Q = 384) gives different bits with 1 and 2 threads for
// K = 500, 600, 700, 1000, ... Here every tile is a single-threaded call whose
// arguments depend only on the problem and the machine, so each element of C is computed the
// same way whatever the thread count.
#include "heed/kernels/cpu/gemm.h"

#include "heed/kernels/cpu/gemm_amx.h"
#include "heed/kernels/cpu/gemm_packed.h"
#include "heed/kernels/cpu/gemm_small.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

namespace heed::kernels::cpu {

namespace {

// Tiling. A product is split into as many tiles as the machine has processors (fewer when
// it is small, or when a batch already has enough items): row blocks when there are enough
// rows, else column blocks. The count depends on the problem and on the machine's processor
// count, never on how many threads run, so results on a machine do not depend on
// omp_set_num_threads. Few, large tiles matter: in row-major BLAS every row tile repacks all
// of B (measured on one core at n = 2048: four 512-row tiles ran at ~84% of one untiled call).
constexpr int64_t kMinRows = 128, kMinCols = 512;
constexpr int64_t kTileWork = int64_t{1} << 22;  // multiply-adds per tile, at least
// Below this many multiply-adds in all, the tiles run on the calling thread (same tiles, same bits).
constexpr int64_t kParallelWork = int64_t{1} << 16;
// Few-row products whose B has at least kSkinnyB elements (512 KiB of f32) get column tiles
// of at least kSkinnyCols columns.
constexpr int64_t kSkinnyB = int64_t{1} << 17, kSkinnyCols = 128;

// Products C = A B^T of at most this many rows (a linear layer at inference: decoding steps,
// one short sequence) run on gemm_nt_small, which reads B in place instead of packing it.
// Measured on one core (BM_SmallRowsNT, k = 256, n = 1024): 8.7x OpenBLAS at 2 rows, 1.6x at
// 24, 1.07x at 64, even at 96, 0.95x at 128.
constexpr int64_t kSmallRows = 64;
// ... and whose k is at most this (measured up to 1024; a block of 8 rows of B must stay in L1).
constexpr int64_t kSmallMaxK = 1024;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// BLAS calls made under this guard use one thread (OpenBLAS's OpenMP build sizes its team
// from omp_get_max_threads(), a per-task setting).
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadedBlas() { omp_set_num_threads(saved_); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

void blas(const GemmParams& p, int64_t m, int64_t n, const float* a, const float* b, float* c) {
  cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(p.k), static_cast<float>(p.alpha), a,
              static_cast<int>(p.lda), b, static_cast<int>(p.ldb), static_cast<float>(p.beta), c,
              static_cast<int>(p.ldc));
}

void blas(const GemmParams& p, int64_t m, int64_t n, const double* a, const double* b, double* c) {
  cblas_dgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(p.k), p.alpha, a, static_cast<int>(p.lda),
              b, static_cast<int>(p.ldb), p.beta, c, static_cast<int>(p.ldc));
}

// HEED_GEMM=blas runs every f32 product through CBLAS (for comparisons); unset, empty or
// "auto": heed's kernels where they apply.
GemmBackend backend_from_environment() {
  const char* v = std::getenv("HEED_GEMM");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return GemmBackend::kAuto;
  if (std::strcmp(v, "blas") == 0) return GemmBackend::kBlas;
  std::fprintf(stderr, "heed: ignoring HEED_GEMM=%s (expected \"auto\" or \"blas\")\n", v);
  return GemmBackend::kAuto;
}

std::atomic<GemmBackend> g_backend{backend_from_environment()};

// HEED_MATMUL_PRECISION=bf16: f32 products in bf16 (see gemm.h); unset, empty or "f32": f32.
MatmulPrecision precision_from_environment() {
  const char* v = std::getenv("HEED_MATMUL_PRECISION");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "f32") == 0) return MatmulPrecision::kF32;
  if (std::strcmp(v, "bf16") == 0) return MatmulPrecision::kBf16;
  std::fprintf(stderr, "heed: ignoring HEED_MATMUL_PRECISION=%s (expected \"f32\" or \"bf16\")\n", v);
  return MatmulPrecision::kF32;
}

std::atomic<MatmulPrecision> g_precision{precision_from_environment()};

// C[0:m, 0:n] = act(C + bias) after a BLAS call (the packed kernel does this as it stores).
template <class T>
void epilogue_pass(int64_t m, int64_t n, T* c, int64_t ldc, const GemmEpilogue<T>& e) {
  if (!e.bias && !e.relu && !e.relu_grad_of) return;
  for (int64_t i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    if (e.bias)
      for (int64_t j = 0; j < n; ++j) ci[j] += e.bias[j];
    if (e.relu)
      for (int64_t j = 0; j < n; ++j) ci[j] = ci[j] > T(0) ? ci[j] : T(0);
    if (e.relu_grad_of) {
      const T* mi = e.relu_grad_of + i * ldc;
      for (int64_t j = 0; j < n; ++j) ci[j] = mi[j] > T(0) ? ci[j] : T(0);
    }
  }
}

template <class T>
void tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_off, const int64_t* b_off,
           int64_t c_stride, const T* a, const T* b, T* c, const GemmEpilogue<T>& e) {
  if (items == 0 || p.m == 0 || p.n == 0) return;
  const int64_t tiles_m = ceil_div(p.m, tiling.rows), tiles_n = ceil_div(p.n, tiling.cols);
  const int64_t per_item = tiles_m * tiles_n, total = items * per_item;
  const bool parallel = total > 1 && items * p.m * p.n * std::max<int64_t>(p.k, 1) >= kParallelWork;
  // Chosen per product, as the backend below: every tile of a product is summed the same way.
  // Only products the packed kernel would run: not under kBlas, not few-row ones (the small kernel's).
  bool bf16 = false;
  if constexpr (std::is_same_v<T, float>)
    bf16 = g_precision.load(std::memory_order_relaxed) == MatmulPrecision::kBf16 && bf16_matmul_available() &&
           g_backend.load(std::memory_order_relaxed) != GemmBackend::kBlas &&
           !(p.m <= kSmallRows && p.k <= kSmallMaxK && !p.trans_a && p.trans_b);
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < total; ++t) {
    const int64_t item = t / per_item, r = t % per_item;
    const int64_t i0 = (r / tiles_n) * tiling.rows, j0 = (r % tiles_n) * tiling.cols;
    const int64_t mi = std::min(tiling.rows, p.m - i0), nj = std::min(tiling.cols, p.n - j0);
    // Row i of op(A) starts at i * lda (stored as is) or at column i (stored transposed);
    // column j of op(B) at j (as is) or at row j * ldb (transposed).
    const T* ai = a + a_off[item] + (p.trans_a ? i0 : i0 * p.lda);
    const T* bj = b + b_off[item] + (p.trans_b ? j0 * p.ldb : j0);
    T* cij = c + item * c_stride + i0 * p.ldc + j0;
    const GemmEpilogue<T> ej{e.bias ? e.bias + j0 : nullptr, e.relu,
                             e.relu_grad_of ? e.relu_grad_of + (cij - c) : nullptr};
    if (p.k == 0) {  // no product, on every path: C = act(beta C + bias), A and B unread
      for (int64_t i = 0; i < mi; ++i)
        for (int64_t j = 0; j < nj; ++j) {
          T& v = cij[i * p.ldc + j];
          v = p.beta == 0 ? T(0) : static_cast<T>(p.beta) * v;
        }
      epilogue_pass(mi, nj, cij, p.ldc, ej);
      continue;
    }
    if constexpr (std::is_same_v<T, float>) {
      // Chosen per product, not per tile, so every row of a product takes the same path.
      const GemmBackend backend = g_backend.load(std::memory_order_relaxed);
      if (backend != GemmBackend::kBlas && p.m <= kSmallRows && p.k <= kSmallMaxK && !p.trans_a && p.trans_b &&
          gemm_nt_small_available()) {
        gemm_nt_small(mi, nj, p.k, static_cast<float>(p.alpha), ai, p.lda, bj, p.ldb, static_cast<float>(p.beta), cij,
                      p.ldc);
        epilogue_pass(mi, nj, cij, p.ldc, ej);
        continue;
      }
      if (bf16 && gemm_amx_bf16(p.trans_a, p.trans_b, mi, nj, p.k, static_cast<float>(p.alpha), ai, p.lda, bj,
                                p.ldb, static_cast<float>(p.beta), cij, p.ldc, {ej.bias, ej.relu, ej.relu_grad_of}))
        continue;  // (false only when its scratch memory could not be had: f32 below)
      if (backend != GemmBackend::kBlas && gemm_packed_available() &&
          gemm_packed(p.trans_a, p.trans_b, mi, nj, p.k, static_cast<float>(p.alpha), ai, p.lda, bj, p.ldb,
                      static_cast<float>(p.beta), cij, p.ldc, {ej.bias, ej.relu, ej.relu_grad_of}))
        continue;  // (false only when its scratch memory could not be had: BLAS below)
    }
    {
      SingleThreadedBlas one_thread;
      blas(p, mi, nj, ai, bj, cij);
    }
    epilogue_pass(mi, nj, cij, p.ldc, ej);
  }
}

template <class T>
void batched(const GemmParams& p, int64_t items, const int64_t* a_off, const int64_t* b_off, int64_t c_stride,
             const T* a, const T* b, T* c, const GemmEpilogue<T>& e) {
  tiled(p, gemm_tiling(p.m, p.n, p.k, items), items, a_off, b_off, c_stride, a, b, c, e);
}

}  // namespace

bool gemm_packed_available() {  // the ISA its file is compiled for (GCC may use BW/DQ/VL in vectorised loops)
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  return yes;
}

void set_matmul_precision(MatmulPrecision precision) { g_precision.store(precision, std::memory_order_relaxed); }
MatmulPrecision matmul_precision() { return g_precision.load(std::memory_order_relaxed); }
bool bf16_matmul_available() { return gemm_amx_available(); }

void set_gemm_backend(GemmBackend backend) { g_backend.store(backend, std::memory_order_relaxed); }
GemmBackend gemm_backend() { return g_backend.load(std::memory_order_relaxed); }

bool gemm_nt_small_available() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl");
  return yes;
}

int64_t processor_count() {
  static const int64_t count = std::clamp<int64_t>(sysconf(_SC_NPROCESSORS_CONF), 1, 256);
  return count;
}

GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, int64_t items, int64_t processors) {
  // A product with few rows and a large B (decoding a batch: x[64, 256] @ W^T[256, 1024]) is
  // bound by reading B more than by arithmetic: split its columns so each processor streams
  // its share of B. Not below kTileWork: a single-row step (~10-40 us) runs faster alone
  // than split (measured: batch-1 greedy decoding on 2 threads 16.8 -> 27.5 ms when split).
  const int64_t work_all = m * n * std::max<int64_t>(k, 1);
  if (m < kMinRows && items == 1 && n * std::max<int64_t>(k, 1) >= kSkinnyB && work_all >= kTileWork) {
    const int64_t tiles_n = std::clamp<int64_t>(n / kSkinnyCols, 1, processors);
    return {round_up(m, 16), round_up(ceil_div(n, tiles_n), 16)};
  }
  const int64_t work = m * n * std::max<int64_t>(k, 1);
  const int64_t wanted = std::clamp<int64_t>(std::min(ceil_div(work, kTileWork), ceil_div(processors, items)), 1,
                                             processors);
  const int64_t tiles_m = std::clamp<int64_t>(m / kMinRows, 1, wanted);
  const int64_t tiles_n = tiles_m < wanted ? std::clamp<int64_t>(n / kMinCols, 1, ceil_div(wanted, tiles_m)) : 1;
  return {round_up(ceil_div(m, tiles_m), 16), round_up(ceil_div(n, tiles_n), 16)};
}

GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, int64_t items) {
  return gemm_tiling(m, n, k, items, processor_count());
}

void gemm(const GemmParams& p, const float* a, const float* b, float* c, const GemmEpilogue<float>& e) {
  const int64_t zero = 0;
  batched(p, 1, &zero, &zero, 0, a, b, c, e);
}

void gemm(const GemmParams& p, const double* a, const double* b, double* c, const GemmEpilogue<double>& e) {
  const int64_t zero = 0;
  batched(p, 1, &zero, &zero, 0, a, b, c, e);
}

void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const float* a, const float* b, float* c, const GemmEpilogue<float>& e) {
  batched(p, items, a_offsets, b_offsets, c_stride, a, b, c, e);
}

void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const double* a, const double* b, double* c, const GemmEpilogue<double>& e) {
  batched(p, items, a_offsets, b_offsets, c_stride, a, b, c, e);
}

void gemm_tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_offsets,
                const int64_t* b_offsets, int64_t c_stride, const float* a, const float* b, float* c,
                const GemmEpilogue<float>& e) {
  tiled(p, tiling, items, a_offsets, b_offsets, c_stride, a, b, c, e);
}

void gemm_tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_offsets,
                const int64_t* b_offsets, int64_t c_stride, const double* a, const double* b, double* c,
                const GemmEpilogue<double>& e) {
  tiled(p, tiling, items, a_offsets, b_offsets, c_stride, a, b, c, e);
}

}  // namespace heed::kernels::cpu
