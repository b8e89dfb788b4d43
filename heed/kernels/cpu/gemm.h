// GEMM: C = act(alpha * op(A) op(B) + beta * C + bias), row-major, f32 and f64. f32 on CPUs
// with AVX-512 runs on heed's own kernels (A B^T with at most 64 rows: gemm_small.h; the
// rest: gemm_packed.h); f64, and f32 elsewhere, through CBLAS.
// heed splits every product into tiles itself and runs each tile single-threaded on one of
// its OpenMP threads, so results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

struct GemmParams {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;  // leading dimensions (row-major)
  double alpha = 1.0, beta = 0.0;
};

// After the product: + bias[j] (bias has N elements, shared by every item of a batch; null
// for none), then max(., 0) when relu (as heed::relu: v > 0 ? v : 0), then, when relu_grad_of
// is set, zero wherever relu_grad_of[i, j] <= 0 (ReLU's backward from its output; a matrix
// laid out as C: the same leading dimension and item stride).
template <class T>
struct GemmEpilogue {
  const T* bias = nullptr;
  bool relu = false;
  const T* relu_grad_of = nullptr;
};

// One product: C[M, N] = act(alpha * op(A) op(B) + beta * C + bias); with k == 0, C =
// act(beta * C + bias) on every backend, A and B unread.
void gemm(const GemmParams& p, const float* a, const float* b, float* c, const GemmEpilogue<float>& e = {});
void gemm(const GemmParams& p, const double* a, const double* b, double* c, const GemmEpilogue<double>& e = {});

// A batch of products of the same shape: item i reads a + a_offsets[i], b + b_offsets[i] and
// writes c + i * c_stride. Items and tiles share one parallel loop.
void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const float* a, const float* b, float* c, const GemmEpilogue<float>& e = {});
void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const double* a, const double* b, double* c, const GemmEpilogue<double>& e = {});

struct GemmTiling;

// The same with an explicit tiling (gemm_batched uses gemm_tiling's); exposed for tests.
void gemm_tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_offsets,
                const int64_t* b_offsets, int64_t c_stride, const float* a, const float* b, float* c,
                const GemmEpilogue<float>& e = {});
void gemm_tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_offsets,
                const int64_t* b_offsets, int64_t c_stride, const double* a, const double* b, double* c,
                const GemmEpilogue<double>& e = {});

// Which code runs f32 products: kAuto (heed's kernels where the CPU has AVX-512, else CBLAS)
// or kBlas (CBLAS always). Process-wide; for benchmarks and tests that compare the two.
enum class GemmBackend { kAuto, kBlas };
void set_gemm_backend(GemmBackend backend);
GemmBackend gemm_backend();

// How f32 products are computed. kF32 (the default): f32 operands and sums. kBf16: operands
// rounded to bf16, products summed in f32, on AMX tiles (gemm_amx.h), for every product that
// would run on the packed kernel (few-row products, as in decoding, stay f32), where the CPU
// has AMX-BF16; elsewhere f32 as before. Mixed-precision training: PyTorch's
// set_float32_matmul_precision("medium"). Process-wide; HEED_MATMUL_PRECISION=bf16 sets it at
// start-up. f64 products are never affected.
enum class MatmulPrecision { kF32, kBf16 };
void set_matmul_precision(MatmulPrecision precision);
MatmulPrecision matmul_precision();
// Whether kBf16 takes effect on this machine (AMX-BF16 usable).
bool bf16_matmul_available();

// How each product of a batch of `items` products of this shape is tiled: rows and columns
// per tile. Depends on the problem and the machine's processor count (sysconf), never on the
// number of threads in use. The second form takes the processor count, for tests.
struct GemmTiling {
  int64_t rows = 0, cols = 0;
};
GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, int64_t items = 1);
GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k, int64_t items, int64_t processors);
int64_t processor_count();

}  // namespace heed::kernels::cpu
