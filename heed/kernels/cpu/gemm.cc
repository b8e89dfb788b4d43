// CBLAS calls behind heed's GEMM signature (OpenBLAS, OpenMP build), tiled by heed.
//
// Why heed tiles instead of letting OpenBLAS thread a large product: OpenBLAS 0.3.21 blocks
// the inner dimension K differently in its single-threaded driver (driver/level3/level3.c
// rounds half of a remainder between GEMM_Q and 2 GEMM_Q up to a multiple of GEMM_UNROLL_M)
// and in its threaded one (level3_thread.c takes (rest + 1) / 2), so e.g. a 600x700x500
// sgemm on SkylakeX kernels (GEMM_Q = 384) gives different bits with 1 and 2 threads for
// K = 500, 600, 700, 1000, ... Here every tile is a single-threaded BLAS call whose
// arguments depend only on the problem, so each element of C is computed the same way
// whatever the thread count.
#include "heed/kernels/cpu/gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

namespace heed::kernels::cpu {

namespace {

// Tiling: aim for tiles of kTileWork multiply-adds (~25 us on one core), at most kMaxTiles per
// call. Tiles are tall (BLAS repacks all of B for every tile, so thin tiles waste that work:
// measured on one core, 128-row tiles run at ~85-90% of an untiled sgemm, 256-row tiles at
// ~90-95%); columns are split only when rows alone do not give enough tiles.
constexpr int64_t kTileWork = int64_t{1} << 22;
constexpr int64_t kMaxTiles = 16;
constexpr int64_t kMinRows = 128, kPreferredRows = 256;
constexpr int64_t kMinCols = 512;
// Below this many multiply-adds in all, the tiles run on the calling thread (same tiles, same bits).
constexpr int64_t kParallelWork = int64_t{1} << 16;

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

template <class T>
void batched(const GemmParams& p, int64_t items, const int64_t* a_off, const int64_t* b_off, int64_t c_stride,
             const T* a, const T* b, T* c) {
  if (items == 0 || p.m == 0 || p.n == 0) return;
  const GemmTiling tiling = gemm_tiling(p.m, p.n, p.k, items);
  const int64_t tiles_m = ceil_div(p.m, tiling.rows), tiles_n = ceil_div(p.n, tiling.cols);
  const int64_t per_item = tiles_m * tiles_n, total = items * per_item;
  const bool parallel = total > 1 && items * p.m * p.n * std::max<int64_t>(p.k, 1) >= kParallelWork;
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
    SingleThreadedBlas one_thread;
    blas(p, mi, nj, ai, bj, cij);
  }
}

}  // namespace

GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, int64_t items) {
  const int64_t work = m * n * std::max<int64_t>(k, 1);
  // Enough items already keep the threads busy: one tile per item.
  const int64_t wanted = std::clamp<int64_t>(ceil_div(work, kTileWork), 1, ceil_div(kMaxTiles, items));
  const int64_t min_rows = m >= 2 * kPreferredRows ? kPreferredRows : kMinRows;
  const int64_t tiles_m = std::clamp<int64_t>(m / min_rows, 1, wanted);
  const int64_t tiles_n = std::clamp<int64_t>(n / kMinCols, 1, ceil_div(wanted, tiles_m));
  return {round_up(ceil_div(m, tiles_m), 16), round_up(ceil_div(n, tiles_n), 16)};
}

void gemm(const GemmParams& p, const float* a, const float* b, float* c) {
  const int64_t zero = 0;
  batched(p, 1, &zero, &zero, 0, a, b, c);
}

void gemm(const GemmParams& p, const double* a, const double* b, double* c) {
  const int64_t zero = 0;
  batched(p, 1, &zero, &zero, 0, a, b, c);
}

void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const float* a, const float* b, float* c) {
  batched(p, items, a_offsets, b_offsets, c_stride, a, b, c);
}

void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const double* a, const double* b, double* c) {
  batched(p, items, a_offsets, b_offsets, c_stride, a, b, c);
}

}  // namespace heed::kernels::cpu
