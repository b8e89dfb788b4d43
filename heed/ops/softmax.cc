// softmax / log_softmax: checks, dispatch to the row kernels, and the backward rules.
#include "heed/ops/softmax.h"

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/softmax_cpu.h"

namespace heed {

namespace {

Tensor softmax_backward(const Tensor& y, const Tensor& g, int64_t d, bool log) {
  Tensor gx = Tensor::empty(y.shape(), y.dtype());  // same shape as x
  if (gx.numel() == 0) return gx;
  Tensor gc = g.dtype() == y.dtype() ? g : g.to(y.dtype());  // same shape as y
  const kernels::cpu::SoftmaxParams p{.n = y.size(d), .log = log};
  dispatch_float(y.dtype(), log ? "log_softmax_backward" : "softmax_backward", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::softmax_backward(p, y.data<T>(), kernels::cpu::row_index(y.shape(), y.strides(), d),
                                   gc.data<T>(), kernels::cpu::row_index(gc.shape(), gc.strides(), d),
                                   gx.data<T>(), kernels::cpu::row_index(gx.shape(), gx.strides(), d));
  });
  return gx;
}

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  HEED_CHECK(x.defined(), op, ": undefined tensor");
  HEED_CHECK(x.dtype() == DType::kF32 || x.dtype() == DType::kF64, op, ": expected a f32 or f64 tensor, got ",
             x.str());
  HEED_CHECK(x.dim() >= 1, op, ": expected at least one dimension, got ", x.str());
  const int64_t d = wrap_dim(dim, x.shape(), op);
  Tensor y = Tensor::empty(x.shape(), x.dtype());  // same shape as x, contiguous
  if (y.numel() > 0) {
    const kernels::cpu::SoftmaxParams p{.n = x.size(d), .log = log};
    dispatch_float(x.dtype(), op, [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::softmax_forward(p, x.data<T>(), kernels::cpu::row_index(x.shape(), x.strides(), d),
                                    y.data<T>(), kernels::cpu::row_index(y.shape(), y.strides(), d));
    });
  }
  // softmax: d y_i / d x_j = y_i (delta_ij - y_j)        => g_x = y * (g - sum(g * y))
  // log_softmax: d y_i / d x_j = delta_ij - softmax_j    => g_x = g - exp(y) * sum(g)
  autograd::record(op, y, {x}, [y = y.detach(), d, log](const Tensor& g) {
    return std::vector<Tensor>{softmax_backward(y, g, d, log)};
  });
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace heed
