// Test support for the GEMM kernels' tests (gemm_packed_test.cc, gemm_amx_test.cc): one
// product described by its shape, strides and epilogue, and its operands.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "heed/kernels/cpu/gemm_packed.h"
#include "heed/testing/numerics.h"

namespace heed::kernels::cpu::gemm_test {

struct GemmProblem {
  bool ta, tb;
  int64_t m, n, k;
  int64_t pad_a = 0, pad_b = 0, pad_c = 0;  // extra elements per stored row
  float alpha = 1.0f, beta = 0.0f;
  bool bias = false, relu = false, grad_mask = false;
};

// Stored shapes: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k]; C (c0, the
// values before the product) has m + c_extra_rows rows of ldc.
struct GemmOperands {
  int64_t lda, ldb, ldc;
  std::vector<float> a, b, bias, c0, mask;
  float A(const GemmProblem& q, int64_t i, int64_t p) const { return q.ta ? a[p * lda + i] : a[i * lda + p]; }
  float B(const GemmProblem& q, int64_t p, int64_t j) const { return q.tb ? b[j * ldb + p] : b[p * ldb + j]; }
  // C[i, j] from the product's sum: alpha, beta C, bias, ReLU and the mask, in double.
  double finish(const GemmProblem& q, double sum, int64_t i, int64_t j) const {
    double v = q.alpha * sum + (q.beta == 0.0f ? 0.0 : static_cast<double>(q.beta) * c0[i * ldc + j]);
    if (q.bias) v += bias[j];
    if (q.relu) v = v > 0 ? v : 0;
    if (q.grad_mask && !(mask[i * ldc + j] > 0)) v = 0;
    return v;
  }
  GemmEpilogueF32 epilogue(const GemmProblem& q) const {
    return {q.bias ? bias.data() : nullptr, q.relu, q.grad_mask ? mask.data() : nullptr};
  }
};

inline GemmOperands gemm_operands(const GemmProblem& q, int64_t c_extra_rows = 0) {
  using heed::testing::uniform_floats;
  const int64_t a_rows = q.ta ? q.k : q.m, a_cols = q.ta ? q.m : q.k;
  const int64_t b_rows = q.tb ? q.n : q.k, b_cols = q.tb ? q.k : q.n;
  GemmOperands o;
  o.lda = std::max<int64_t>(a_cols, 1) + q.pad_a;
  o.ldb = std::max<int64_t>(b_cols, 1) + q.pad_b;
  o.ldc = q.n + q.pad_c;
  // A scaled by 1 / sqrt(k): products of order one at every k, so STYLE.md's GEMM tolerance
  // measures the kernel rather than the cancellation in long sums.
  o.a = uniform_floats(a_rows * o.lda, 1);
  for (float& x : o.a) x /= std::sqrt(static_cast<float>(std::max<int64_t>(q.k, 1)));
  o.b = uniform_floats(b_rows * o.ldb, 2);
  o.bias = uniform_floats(q.n, 4);
  o.c0 = uniform_floats((q.m + c_extra_rows) * o.ldc, 3);
  o.mask = uniform_floats(q.m * o.ldc, 5);  // laid out as C; about half > 0
  if (q.beta == 0.0f)  // must not be read: NaN would poison every output it touched
    for (auto& x : o.c0) x = std::numeric_limits<float>::quiet_NaN();
  return o;
}

}  // namespace heed::kernels::cpu::gemm_test
