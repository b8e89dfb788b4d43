// Portable CPU layer norm: two-pass statistics with double accumulators in eight fixed
// lanes (vectorisable, and the same summation order on every run).
#include "heed/kernels/cpu/layer_norm_cpu.h"

#include <algorithm>
#include <cmath>

#include "heed/kernels/cpu/elementwise.h"

namespace heed::kernels::cpu {

namespace {

// sum_{i < n} f(i) in double, in a fixed order: eight interleaved partial sums, then the tail.
template <class F>
inline double lane_sum(int64_t n, F f) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += f(i + j);
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += f(i);
  return s;
}

template <class T>
void forward(const LayerNormParams& p, const T* x, const T* w, const T* b, T* y, double* mean, double* rstd) {
  const int64_t n = p.n;
#pragma omp parallel for schedule(static) if (p.rows * n > kParallelGrain)
  for (int64_t r = 0; r < p.rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const double mu = lane_sum(n, [&](int64_t i) { return static_cast<double>(xr[i]); }) / n;
    const double var = lane_sum(n, [&](int64_t i) {
                         double c = static_cast<double>(xr[i]) - mu;
                         return c * c;
                       }) / n;
    const double rs = 1.0 / std::sqrt(var + p.eps);
    mean[r] = mu;
    rstd[r] = rs;
    // The mean as hi + lo in T: x - hi is exact near the mean, so a large common offset
    // does not cost accuracy (a rounded mean alone would be off by half an ulp of the offset).
    const T hi = static_cast<T>(mu), lo = static_cast<T>(mu - static_cast<double>(hi)), s = static_cast<T>(rs);
    if (w && b) {
      for (int64_t i = 0; i < n; ++i) yr[i] = ((xr[i] - hi) - lo) * s * w[i] + b[i];
    } else if (w) {
      for (int64_t i = 0; i < n; ++i) yr[i] = ((xr[i] - hi) - lo) * s * w[i];
    } else if (b) {
      for (int64_t i = 0; i < n; ++i) yr[i] = ((xr[i] - hi) - lo) * s + b[i];
    } else {
      for (int64_t i = 0; i < n; ++i) yr[i] = ((xr[i] - hi) - lo) * s;
    }
  }
}

template <class T>
void backward(const LayerNormParams& p, const T* x, const T* w, const double* mean, const double* rstd, const T* g,
              T* gx, T* gw, T* gb) {
  const int64_t n = p.n;
  if (gx) {
#pragma omp parallel for schedule(static) if (p.rows * n > kParallelGrain)
    for (int64_t r = 0; r < p.rows; ++r) {
      const T* xr = x + r * n;
      const T* gr = g + r * n;
      T* gxr = gx + r * n;
      const double mu = mean[r], rs = rstd[r];
      // h = g * w; g_x = rstd * (h - mean(h) - xhat * mean(h * xhat))
      auto h = [&](int64_t i) { return static_cast<double>(gr[i]) * (w ? static_cast<double>(w[i]) : 1.0); };
      auto xhat = [&](int64_t i) { return (static_cast<double>(xr[i]) - mu) * rs; };
      const double mean_h = lane_sum(n, h) / n;
      const double mean_hx = lane_sum(n, [&](int64_t i) { return h(i) * xhat(i); }) / n;
      const T a = static_cast<T>(rs), c0 = static_cast<T>(mean_h), c1 = static_cast<T>(mean_hx);
      const T hi = static_cast<T>(mu), lo = static_cast<T>(mu - static_cast<double>(hi));
      for (int64_t i = 0; i < n; ++i) {
        const T xh = ((xr[i] - hi) - lo) * a;
        const T hi = w ? gr[i] * w[i] : gr[i];
        gxr[i] = a * (hi - c0 - xh * c1);
      }
    }
  }
  if (!gw && !gb) return;
  // Column blocks in parallel; within a column, rows are summed in order.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (p.rows * n > kParallelGrain)
  for (int64_t cb = 0; cb < blocks; ++cb) {
    const int64_t c0 = cb * kBlock, c1 = std::min(n, c0 + kBlock);
    double acc_w[kBlock] = {}, acc_b[kBlock] = {};
    for (int64_t r = 0; r < p.rows; ++r) {
      const T* xr = x + r * n;
      const T* gr = g + r * n;
      const double mu = mean[r], rs = rstd[r];
      for (int64_t c = c0; c < c1; ++c) {
        acc_w[c - c0] += static_cast<double>(gr[c]) * ((static_cast<double>(xr[c]) - mu) * rs);
        acc_b[c - c0] += gr[c];
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      if (gw) gw[c] = static_cast<T>(acc_w[c - c0]);
      if (gb) gb[c] = static_cast<T>(acc_b[c - c0]);
    }
  }
}

}  // namespace

void layer_norm_forward(const LayerNormParams& p, const float* x, const float* w, const float* b, float* y,
                        double* mean, double* rstd) {
  forward(p, x, w, b, y, mean, rstd);
}
void layer_norm_forward(const LayerNormParams& p, const double* x, const double* w, const double* b, double* y,
                        double* mean, double* rstd) {
  forward(p, x, w, b, y, mean, rstd);
}
void layer_norm_backward(const LayerNormParams& p, const float* x, const float* w, const double* mean,
                         const double* rstd, const float* g, float* gx, float* gw, float* gb) {
  backward(p, x, w, mean, rstd, g, gx, gw, gb);
}
void layer_norm_backward(const LayerNormParams& p, const double* x, const double* w, const double* mean,
                         const double* rstd, const double* g, double* gx, double* gw, double* gb) {
  backward(p, x, w, mean, rstd, g, gx, gw, gb);
}

}  // namespace heed::kernels::cpu
