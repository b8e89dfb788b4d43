// AVX-512 row kernels for contiguous f32 rows, used by softmax_cpu.cc and cross_entropy_cpu.cc
// when the CPU has AVX-512 (has_avx512()). Each row is processed sequentially: the result of a
// row depends only on the row, never on the thread count.
#pragma once

#include <cstdint>

namespace heed::kernels::cpu {

// True when the CPU running this process supports the AVX-512 subsets these kernels use
// (defined in softmax_cpu.cc, which is compiled for the baseline ISA).
bool has_avx512();

namespace avx512 {

// y[i] = exp(x[i]) with the kernels' vectorised exp (exposed for its accuracy test).
void exp_row(const float* x, float* y, int64_t n);

// y = softmax(x) or log_softmax(x) over one row of n floats; an all -inf row gives 0 / -inf.
void softmax_row(const float* x, float* y, int64_t n, bool log);
// Input gradient of one row from y = softmax (or log_softmax) and the output gradient g.
void softmax_backward_row(const float* y, const float* g, float* gx, int64_t n, bool log);

// Row statistics for cross-entropy: max, log sum exp(x - max), and sum of x (for smoothing).
struct RowStats {
  float max;
  double log_sum, sum_x;
};
RowStats logsumexp_row(const float* x, int64_t n);
// g[c] = k * (exp((x[c] - max) - log_sum) - off) for one row.
void softmax_minus_row(const float* x, float max, float log_sum, float k, float off, float* g, int64_t n);

}  // namespace avx512
}  // namespace heed::kernels::cpu
