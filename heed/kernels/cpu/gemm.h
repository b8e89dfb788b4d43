// GEMM through CBLAS: C = alpha * op(A) op(B) + beta * C, row-major, f32 and f64.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

struct GemmParams {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;  // leading dimensions (row-major)
  double alpha = 1.0, beta = 0.0;
};

void gemm(const GemmParams& p, const float* a, const float* b, float* c);
void gemm(const GemmParams& p, const double* a, const double* b, double* c);

}  // namespace heed::kernels::cpu
