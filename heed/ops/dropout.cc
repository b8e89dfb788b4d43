// dropout, and its fused forms dropout_add (residual branch) and relu_dropout (feed-forward
// hidden layer): checks, the Philox-driven kernels, and the backward rules (the same mask on g).
#include "heed/ops/dropout.h"

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/dropout_cpu.h"
#include "heed/ops/elementwise.h"

namespace heed {

namespace {

void check_dropout(const Tensor& x, const DropoutOptions& options, const char* op) {
  HEED_CHECK(x.defined() && (x.dtype() == DType::kF32 || x.dtype() == DType::kF64), op,
             ": expected a f32 or f64 tensor, got ", x.str());
  HEED_CHECK(options.p >= 0 && options.p <= 1, op, ": p = ", options.p, " for ", x.str(),
             ", expected a probability in [0, 1]");
}

kernels::cpu::DropoutParams params_of(const DropoutOptions& o) {
  return {.seed = o.seed, .stream = o.stream, .p = static_cast<float>(o.p), .scale = 1.0 / (1.0 - o.p)};
}

Tensor apply_mask(const Tensor& x, const kernels::cpu::DropoutParams& p) {
  Tensor xc = x.raw_contiguous();  // row-major: element i is index i
  Tensor y = Tensor::empty(x.shape(), x.dtype());  // same shape as x
  dispatch_float(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::dropout_apply(p, y.numel(), xc.data<T>(), y.data<T>());
  });
  return y;
}

}  // namespace

Tensor dropout(const Tensor& x, const DropoutOptions& options) {
  check_dropout(x, options, "dropout");
  if (!options.training || options.p == 0) return x;
  if (options.p == 1) {
    Tensor y = Tensor::zeros(x.shape(), x.dtype());  // same shape as x
    autograd::record("dropout", y, {x}, [](const Tensor& g) {
      return std::vector<Tensor>{Tensor::zeros(g.shape(), g.dtype())};
    });
    return y;
  }
  const kernels::cpu::DropoutParams p = params_of(options);
  Tensor y = apply_mask(x, p);  // same shape as x
  // y = x * keep / (1 - p)  =>  g_x = g * keep / (1 - p): the same mask, regenerated from the counters.
  autograd::record("dropout", y, {x}, [p](const Tensor& g) { return std::vector<Tensor>{apply_mask(g, p)}; });
  return y;
}

Tensor dropout_add(const Tensor& residual, const Tensor& x, const DropoutOptions& options) {
  check_dropout(x, options, "dropout_add");
  if (!options.training || options.p == 0 || options.p == 1 || !residual.defined() ||
      residual.shape() != x.shape() || residual.dtype() != x.dtype())
    return add(residual, dropout(x, options));
  const kernels::cpu::DropoutParams p = params_of(options);
  Tensor rc = residual.raw_contiguous(), xc = x.raw_contiguous();  // row-major: element i is index i
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "dropout_add", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::dropout_add_apply(p, out.numel(), rc.data<T>(), xc.data<T>(), out.data<T>());
  });
  // g_residual = g; g_x = the same mask on g, regenerated from the counters.
  autograd::record("dropout_add", out, {residual, x}, [p](const Tensor& g) {
    return std::vector<Tensor>{g, apply_mask(g, p)};
  });
  return out;
}

Tensor relu_dropout(const Tensor& x, const DropoutOptions& options) {
  check_dropout(x, options, "relu_dropout");
  if (!options.training || options.p == 0 || options.p == 1) return dropout(relu(x), options);
  const kernels::cpu::DropoutParams p = params_of(options);
  Tensor xc = x.raw_contiguous();  // row-major: element i is index i
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "relu_dropout", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::relu_dropout_apply(p, y.numel(), xc.data<T>(), y.data<T>());
  });
  autograd::record("relu_dropout", y, {x}, [y = y.detach(), scale = p.scale](const Tensor& g) {
    HEED_CHECK(g.dtype() == y.dtype() && g.shape() == y.shape(), "relu_dropout: backward got gradient ", g.str(),
               " for an output ", y.str(), "; expected the same shape and dtype");
    Tensor gc = g.raw_contiguous();
    Tensor gx = Tensor::empty(g.shape(), g.dtype());
    dispatch_float(g.dtype(), "relu_dropout_backward", [&](auto tag) {
      using T = decltype(tag);
      kernels::cpu::relu_dropout_backward(scale, gx.numel(), y.data<T>(), gc.data<T>(), gx.data<T>());
    });
    return std::vector<Tensor>{gx};
  });
  return y;
}

}  // namespace heed
