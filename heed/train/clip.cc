// Global gradient-norm clipping.
#include "heed/train/clip.h"

#include <cmath>

namespace heed::train {

double grad_norm(const std::vector<Tensor>& params) {
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor c = g.raw_contiguous();
    dispatch_float(c.dtype(), "clip_grad_norm", [&](auto tag) {
      using T = decltype(tag);
      const T* d = c.data<T>();
      const int64_t n = c.numel();
      double acc = 0;
#pragma omp parallel for schedule(static) reduction(+ : acc) if (n > (1 << 15))
      for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(d[i]) * d[i];
      total += acc;
    });
  }
  return std::sqrt(total);
}

double clip_coefficient(double norm, double max_norm) {
  HEED_CHECK(max_norm > 0, "clip_coefficient: max_norm must be > 0, got ", max_norm);
  const double coef = max_norm / (norm + 1e-6);
  return !std::isfinite(norm) || coef >= 1 ? 1.0 : coef;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  HEED_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  const double norm = grad_norm(params);
  const double coef = clip_coefficient(norm, max_norm);
  if (coef == 1.0) return norm;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    Tensor c = g.raw_contiguous();  // gradients from backward() are contiguous already
    dispatch_float(c.dtype(), "clip_grad_norm", [&](auto tag) {
      using T = decltype(tag);
      T* d = c.data<T>();
      const T scale = static_cast<T>(coef);
      const int64_t n = c.numel();
      for (int64_t i = 0; i < n; ++i) d[i] *= scale;
    });
    if (!c.same(g)) g.copy_from(c);
  }
  return norm;
}

}  // namespace heed::train
