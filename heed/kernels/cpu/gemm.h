// GEMM through CBLAS: C = alpha * op(A) op(B) + beta * C, row-major, f32 and f64 (f32
// A B^T with at most 64 rows: heed's no-pack kernel, kernels/cpu/gemm_small.h).
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

// One product: C[M, N] = alpha * op(A) op(B) + beta * C.
void gemm(const GemmParams& p, const float* a, const float* b, float* c);
void gemm(const GemmParams& p, const double* a, const double* b, double* c);

// A batch of products of the same shape: item i reads a + a_offsets[i], b + b_offsets[i] and
// writes c + i * c_stride. Items and tiles share one parallel loop.
void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const float* a, const float* b, float* c);
void gemm_batched(const GemmParams& p, int64_t items, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t c_stride, const double* a, const double* b, double* c);

struct GemmTiling;

// The same with an explicit tiling (gemm_batched uses gemm_tiling's); exposed for tests.
void gemm_tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_offsets,
                const int64_t* b_offsets, int64_t c_stride, const float* a, const float* b, float* c);
void gemm_tiled(const GemmParams& p, const GemmTiling& tiling, int64_t items, const int64_t* a_offsets,
                const int64_t* b_offsets, int64_t c_stride, const double* a, const double* b, double* c);

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
