// CBLAS calls behind heed's GEMM signature (OpenBLAS, OpenMP build).
#include "heed/kernels/cpu/gemm.h"

#include <cblas.h>

namespace heed::kernels::cpu {

void gemm(const GemmParams& p, const float* a, const float* b, float* c) {
  if (p.m == 0 || p.n == 0) return;
  cblas_sgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k), static_cast<float>(p.alpha),
              a, static_cast<int>(p.lda), b, static_cast<int>(p.ldb), static_cast<float>(p.beta), c,
              static_cast<int>(p.ldc));
}

void gemm(const GemmParams& p, const double* a, const double* b, double* c) {
  if (p.m == 0 || p.n == 0) return;
  cblas_dgemm(CblasRowMajor, p.trans_a ? CblasTrans : CblasNoTrans, p.trans_b ? CblasTrans : CblasNoTrans,
              static_cast<int>(p.m), static_cast<int>(p.n), static_cast<int>(p.k), p.alpha, a,
              static_cast<int>(p.lda), b, static_cast<int>(p.ldb), p.beta, c, static_cast<int>(p.ldc));
}

}  // namespace heed::kernels::cpu
