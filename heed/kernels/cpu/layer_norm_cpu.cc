// Portable CPU layer norm: two-pass statistics with double accumulators in eight fixed
// lanes (vectorisable, and the same summation order on every run).
#include "heed/kernels/cpu/layer_norm_cpu.h"

#include <algorithm>
#include <cmath>
#include <vector>

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

// Rows per chunk of the backward pass: the weight and bias gradients are summed per chunk, then
// the chunks in order, so the summation order depends on the row count only.
constexpr int64_t kMinChunkRows = 32, kMaxChunks = 256;

template <class T>
void backward(const LayerNormParams& p, const T* x, const T* w, const double* mean, const double* rstd, const T* g,
              T* gx, T* gw, T* gb) {
  const int64_t n = p.n;
  std::vector<T> ones;
  if (!w) {  // no weight: h = g
    ones.assign(n, T(1));
    w = ones.data();
  }
  const int64_t chunk = std::max(kMinChunkRows, (p.rows + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (p.rows + chunk - 1) / chunk;
  const bool affine = gw || gb;
  std::vector<double> partial(affine ? chunks * 2 * n : 0, 0.0);  // per chunk: sum g * xhat, sum g
#pragma omp parallel for schedule(static) if (p.rows * n > kParallelGrain)
  for (int64_t ck = 0; ck < chunks; ++ck) {
    double* pw = affine ? partial.data() + ck * 2 * n : nullptr;
    double* pb = affine ? pw + n : nullptr;
    for (int64_t r = ck * chunk; r < std::min(p.rows, (ck + 1) * chunk); ++r) {
      const T* xr = x + r * n;
      const T* gr = g + r * n;
      const double mu = mean[r], rs = rstd[r];
      const T a = static_cast<T>(rs), hi = static_cast<T>(mu), lo = static_cast<T>(mu - static_cast<double>(hi));
      if (gx) {
        // h = g * w; g_x = rstd * (h - mean(h) - xhat * mean(h * xhat))
        const double sum_h = lane_sum(n, [&](int64_t i) { return static_cast<double>(gr[i] * w[i]); });
        const double sum_hx = lane_sum(n, [&](int64_t i) {
          return static_cast<double>(gr[i] * w[i]) * (((xr[i] - hi) - lo) * a);
        });
        const T c0 = static_cast<T>(sum_h / n), c1 = static_cast<T>(sum_hx / n);
        T* gxr = gx + r * n;
        if (affine) {
          for (int64_t k = 0; k < n; ++k) {
            const T xh = ((xr[k] - hi) - lo) * a;
            gxr[k] = a * (gr[k] * w[k] - c0 - xh * c1);
            pw[k] += static_cast<double>(gr[k]) * xh;
            pb[k] += gr[k];
          }
        } else {
          for (int64_t k = 0; k < n; ++k) {
            const T xh = ((xr[k] - hi) - lo) * a;
            gxr[k] = a * (gr[k] * w[k] - c0 - xh * c1);
          }
        }
      } else if (affine) {
        for (int64_t k = 0; k < n; ++k) {
          pw[k] += static_cast<double>(gr[k]) * (((xr[k] - hi) - lo) * a);
          pb[k] += gr[k];
        }
      }
    }
  }
  if (!affine) return;
  std::vector<double> sw(n, 0.0), sb(n, 0.0);
  for (int64_t ck = 0; ck < chunks; ++ck)
    for (int64_t k = 0; k < n; ++k) {
      sw[k] += partial[ck * 2 * n + k];
      sb[k] += partial[ck * 2 * n + n + k];
    }
  for (int64_t k = 0; k < n; ++k) {
    if (gw) gw[k] = static_cast<T>(sw[k]);
    if (gb) gb[k] = static_cast<T>(sb[k]);
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
