// Portable CPU cross-entropy kernels: max-subtracted log-sum-exp in double per row.
#include "heed/kernels/cpu/cross_entropy_cpu.h"

#include <cmath>
#include <limits>

#include "heed/kernels/cpu/elementwise.h"

namespace heed::kernels::cpu {

namespace {

template <class T>
void forward(const CrossEntropyParams& p, const T* logits, const int64_t* targets, double* loss, RowLogSumExp* stats) {
  const int64_t v = p.v;
  const double eps = p.label_smoothing;
#pragma omp parallel for schedule(static) if (p.rows * v > kParallelGrain)
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = logits + r * v;
    T m = -std::numeric_limits<T>::infinity();
    for (int64_t c = 0; c < v; ++c) m = x[c] > m ? x[c] : m;
    double s = 0, sum_x = 0;
    for (int64_t c = 0; c < v; ++c) {
      s += std::exp(static_cast<double>(x[c] - m));
      sum_x += x[c];
    }
    const double l = static_cast<double>(m) + std::log(s);
    stats[r] = {static_cast<double>(m), std::log(s)};
    const int64_t t = targets[r];
    if (t == p.ignore_index) {
      loss[r] = 0;
      continue;
    }
    double row = (1 - eps) * (l - static_cast<double>(x[t]));
    if (eps > 0) row += eps * (l - sum_x / static_cast<double>(v));  // mean over classes of -log p_c
    loss[r] = row;
  }
}

template <class T>
void backward(const CrossEntropyParams& p, const T* logits, const int64_t* targets, const RowLogSumExp* stats,
              const double* scale, T* grad) {
  const int64_t v = p.v;
  const double eps = p.label_smoothing;
#pragma omp parallel for schedule(static) if (p.rows * v > kParallelGrain)
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = logits + r * v;
    T* gr = grad + r * v;
    const int64_t t = targets[r];
    if (t == p.ignore_index || scale[r] == 0) {
      for (int64_t c = 0; c < v; ++c) gr[c] = T(0);
      continue;
    }
    // p_c = exp((x_c - max) - log_sum): x_c - max is exact, so p_c is accurate even for large logits.
    const T m = static_cast<T>(stats[r].max), ls = static_cast<T>(stats[r].log_sum), k = static_cast<T>(scale[r]);
    const T off = static_cast<T>(eps / static_cast<double>(v));
    for (int64_t c = 0; c < v; ++c) gr[c] = k * (std::exp((x[c] - m) - ls) - off);
    gr[t] -= k * static_cast<T>(1 - eps);
  }
}

}  // namespace

void cross_entropy_forward(const CrossEntropyParams& p, const float* logits, const int64_t* targets, double* loss,
                           RowLogSumExp* stats) {
  forward(p, logits, targets, loss, stats);
}
void cross_entropy_forward(const CrossEntropyParams& p, const double* logits, const int64_t* targets, double* loss,
                           RowLogSumExp* stats) {
  forward(p, logits, targets, loss, stats);
}
void cross_entropy_backward(const CrossEntropyParams& p, const float* logits, const int64_t* targets,
                            const RowLogSumExp* stats, const double* scale, float* grad) {
  backward(p, logits, targets, stats, scale, grad);
}
void cross_entropy_backward(const CrossEntropyParams& p, const double* logits, const int64_t* targets,
                            const RowLogSumExp* stats, const double* scale, double* grad) {
  backward(p, logits, targets, stats, scale, grad);
}

}  // namespace heed::kernels::cpu
