// Sinusoidal, learned and rotary position encodings.
#include "heed/nn/positional.h"

#include <cmath>
#include <vector>

#include "heed/autograd/graph.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/shape.h"

namespace heed::nn {

namespace {

void check_positions(const Tensor& x, int64_t offset, int64_t max_len, int64_t width, const char* op) {
  HEED_CHECK(x.defined() && x.dim() == 3 && x.size(2) == width, op, ": expected input [B, T, ", width, "], got ",
             x.str());
  HEED_CHECK(offset >= 0 && offset + x.size(1) <= max_len, op, ": positions ", offset, "..",
             offset + x.size(1) - 1, " exceed max_len ", max_len);
}

}  // namespace

Tensor sinusoidal_table(int64_t max_len, int64_t width, DType dtype) {
  HEED_CHECK(max_len > 0 && width > 0 && width % 2 == 0, "sinusoidal_table: need max_len > 0 and an even width, got ",
             max_len, " and ", width);
  std::vector<double> t(max_len * width);
  for (int64_t p = 0; p < max_len; ++p)
    for (int64_t i = 0; i < width / 2; ++i) {
      const double a = static_cast<double>(p) * std::pow(10000.0, -2.0 * i / static_cast<double>(width));
      t[p * width + 2 * i] = std::sin(a);
      t[p * width + 2 * i + 1] = std::cos(a);
    }
  return Tensor::from_vector(t, {max_len, width}).to(dtype);
}

SinusoidalPositions::SinusoidalPositions(const PositionOptions& o)
    : table_(sinusoidal_table(o.max_len, o.width)) {}

Tensor SinusoidalPositions::forward(const Tensor& x, int64_t offset) const {
  check_positions(x, offset, table_.size(0), table_.size(1), "SinusoidalPositions");
  Tensor pe = table_.dtype() == x.dtype() ? table_ : table_.to(x.dtype());
  return add(x, pe.raw_slice(0, offset, offset + x.size(1)));  // [B, T, C] + [T, C]
}

LearnedPositions::LearnedPositions(const PositionOptions& o) {
  HEED_CHECK(o.max_len > 0 && o.width > 0, "LearnedPositions: need max_len > 0 and width > 0, got ", o.max_len,
             " and ", o.width);
  Tensor w = Tensor::randn({o.max_len, o.width}, o.seed);  // [L, C] ~ N(0, 1), scaled to N(0, 1/C)
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(o.width)));
  float* p = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) p[i] *= scale;
  weight_ = register_parameter("weight", w);
}

Tensor LearnedPositions::forward(const Tensor& x, int64_t offset) const {
  check_positions(x, offset, weight_.size(0), weight_.size(1), "LearnedPositions");
  return add(x, slice(weight_, 0, offset, offset + x.size(1)));  // [B, T, C] + [T, C]
}

namespace {

// out = rotary(x) for a contiguous x [N, T, D]; sign = -1 rotates backwards.
template <class T>
void rotary_kernel(const T* x, T* out, int64_t n, int64_t t_len, int64_t d, int64_t offset, double base,
                   double sign) {
  const int64_t half = d / 2;
  std::vector<T> cos_t(t_len * half), sin_t(t_len * half);
  for (int64_t t = 0; t < t_len; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double a = static_cast<double>(offset + t) * std::pow(base, -2.0 * i / static_cast<double>(d));
      cos_t[t * half + i] = static_cast<T>(std::cos(a));
      sin_t[t * half + i] = static_cast<T>(sign * std::sin(a));
    }
#pragma omp parallel for schedule(static) if (n * t_len * d > (1 << 15))
  for (int64_t r = 0; r < n * t_len; ++r) {
    const T* c = cos_t.data() + (r % t_len) * half;
    const T* s = sin_t.data() + (r % t_len) * half;
    const T* xr = x + r * d;
    T* o = out + r * d;
    for (int64_t i = 0; i < half; ++i) {
      const T x1 = xr[i], x2 = xr[i + half];
      o[i] = x1 * c[i] - x2 * s[i];
      o[i + half] = x2 * c[i] + x1 * s[i];
    }
  }
}

}  // namespace

Tensor apply_rotary(const Tensor& x, const RotaryOptions& o) {
  HEED_CHECK(x.defined() && x.dim() >= 2 && x.size(-1) % 2 == 0, "apply_rotary: expected [..., T, D] with D even, got ",
             x.str());
  HEED_CHECK(o.offset >= 0 && o.base > 0, "apply_rotary: need offset >= 0 and base > 0, got ", o.offset, " and ",
             o.base);
  Tensor xc = x.raw_contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  const int64_t d = x.size(-1), t_len = x.size(-2), n = t_len > 0 ? x.numel() / (t_len * std::max<int64_t>(d, 1)) : 0;
  dispatch_float(x.dtype(), "apply_rotary", [&](auto tag) {
    using T = decltype(tag);
    rotary_kernel<T>(xc.data<T>(), out.data<T>(), n, t_len, d, o.offset, o.base, o.inverse ? -1.0 : 1.0);
  });
  // The rotation is orthogonal: grad_x = R^T grad_out = rotary(grad_out, inverse)
  autograd::record("apply_rotary", out, {x}, [o](const Tensor& g) {
    RotaryOptions back = o;
    back.inverse = !o.inverse;
    return std::vector<Tensor>{apply_rotary(g, back)};
  });
  return out;
}

}  // namespace heed::nn
