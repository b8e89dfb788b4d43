// layer_norm: checks, the CPU kernel, and the backward rule for x, weight and bias.
#include "heed/ops/layer_norm.h"

#include <cmath>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/layer_norm_cpu.h"

namespace heed {

namespace {

void check_affine(const Tensor& t, const char* what, const Tensor& x, int64_t c) {
  if (!t.defined()) return;
  HEED_CHECK(t.dtype() == x.dtype(), "layer_norm: ", what, " ", t.str(), " and input ", x.str(),
             " differ in dtype");
  HEED_CHECK(t.dim() == 1 && t.size(0) == c, "layer_norm: ", what, " ", t.str(), " does not match input ",
             x.str(), " (expected [", c, "])");
}

}  // namespace

Tensor layer_norm(const Tensor& x, int64_t normalized_size, const Tensor& weight, const Tensor& bias, double eps) {
  HEED_CHECK(x.defined() && (x.dtype() == DType::kF32 || x.dtype() == DType::kF64),
             "layer_norm: expected a f32 or f64 input, got ", x.str());
  HEED_CHECK(x.dim() >= 1 && normalized_size >= 1 && x.size(-1) == normalized_size, "layer_norm: input ",
             x.str(), " does not end in the normalized size ", normalized_size);
  HEED_CHECK(eps >= 0 && std::isfinite(eps), "layer_norm: eps = ", eps, ", expected a finite value >= 0");
  check_affine(weight, "weight", x, normalized_size);
  check_affine(bias, "bias", x, normalized_size);
  const int64_t c = normalized_size;
  const int64_t rows = x.numel() / c;
  Tensor xc = x.raw_contiguous().detach();  // [rows, C] in memory
  Tensor w = weight.defined() ? weight.raw_contiguous().detach() : Tensor();  // [C]
  Tensor b = bias.defined() ? bias.raw_contiguous().detach() : Tensor();  // [C]
  Tensor y = Tensor::empty(x.shape(), x.dtype());  // [..., C]
  Tensor mean = Tensor::empty({rows}, DType::kF64);  // [rows]
  Tensor rstd = Tensor::empty({rows}, DType::kF64);  // [rows]
  const kernels::cpu::LayerNormParams p{.rows = rows, .n = c, .eps = eps};
  dispatch_float(x.dtype(), "layer_norm", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::layer_norm_forward(p, xc.data<T>(), w.defined() ? w.data<T>() : nullptr,
                                     b.defined() ? b.data<T>() : nullptr, y.data<T>(), mean.data<double>(),
                                     rstd.data<double>());
  });  // With xhat = (x - mean) * rstd and h = g * w:
  //   g_x = rstd * (h - mean_C(h) - xhat * mean_C(h * xhat)),  g_w = sum_rows g * xhat,  g_b = sum_rows g
  // (differentiate xhat_j through mean and var: d xhat_j / d x_i = rstd (delta_ij - 1/C - xhat_i xhat_j / C)).
  const bool need_x = autograd::requires_grad(x);
  const bool need_w = weight.defined() && autograd::requires_grad(weight);
  const bool need_b = bias.defined() && autograd::requires_grad(bias);
  autograd::record("layer_norm", y, {x, weight, bias},
                   [xc, w, mean, rstd, p, need_x, need_w, need_b](const Tensor& g_in) {
                     Tensor g = g_in.to(xc.dtype()).raw_contiguous();  // [..., C]
                     Tensor gx = need_x ? Tensor::empty(xc.shape(), xc.dtype()) : Tensor();  // [..., C]
                     Tensor gw = need_w ? Tensor::empty({p.n}, xc.dtype()) : Tensor();  // [C]
                     Tensor gb = need_b ? Tensor::empty({p.n}, xc.dtype()) : Tensor();  // [C]
                     dispatch_float(xc.dtype(), "layer_norm_backward", [&](auto tag) {
                       using T = decltype(tag);
                       kernels::cpu::layer_norm_backward(
                           p, xc.data<T>(), w.defined() ? w.data<T>() : nullptr, mean.data<double>(),
                           rstd.data<double>(), g.data<T>(), gx.defined() ? gx.data<T>() : nullptr,
                           gw.defined() ? gw.data<T>() : nullptr, gb.defined() ? gb.data<T>() : nullptr);
                     });
                     return std::vector<Tensor>{gx, gw, gb};
                   });
  return y;
}

}  // namespace heed
