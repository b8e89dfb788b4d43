// Portable CPU cross-entropy kernels: max-subtracted log-sum-exp in double per row.
#include "heed/kernels/cpu/cross_entropy_cpu.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "heed/kernels/cpu/elementwise.h"
#include "heed/kernels/cpu/softmax_avx512.h"

namespace heed::kernels::cpu {

namespace {

template <class T>
void forward(const CrossEntropyParams& p, const T* logits, const int64_t* targets, double* loss, RowLogSumExp* stats) {
  const int64_t v = p.v;
  const double eps = p.label_smoothing;
  const bool avx = has_avx512();
#pragma omp parallel for schedule(static) if (p.rows * v > kParallelGrain)
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* x = logits + r * v;
    double m, log_s, sum_x = 0;
    if (std::is_same_v<T, float> && avx) {
      const avx512::RowStats st = avx512::logsumexp_row(reinterpret_cast<const float*>(x), v);
      m = st.max;
      log_s = st.log_sum;
      sum_x = st.sum_x;
    } else {
      T mt = -std::numeric_limits<T>::infinity();
      for (int64_t c = 0; c < v; ++c) mt = x[c] > mt ? x[c] : mt;
      double s = 0;
      for (int64_t c = 0; c < v; ++c) {
        s += std::exp(static_cast<double>(x[c] - mt));
        sum_x += x[c];
      }
      m = mt;
      log_s = std::log(s);
    }
    const double l = m + log_s;
    stats[r] = {m, log_s};
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
  const bool avx = has_avx512();
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
    if (std::is_same_v<T, float> && avx) {
      avx512::softmax_minus_row(reinterpret_cast<const float*>(x), m, ls, k, off, reinterpret_cast<float*>(gr), v);
    } else {
      for (int64_t c = 0; c < v; ++c) gr[c] = k * (std::exp((x[c] - m) - ls) - off);
    }
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
