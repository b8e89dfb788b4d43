// Elementwise ops: argument checks, the CPU map, and each backward rule beside its forward.
#include "heed/ops/elementwise.h"

#include <cmath>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/elementwise.h"
#include "heed/ops/shape.h"

namespace heed {

namespace {

void check_float(const Tensor& t, const char* op) {
  HEED_CHECK(t.defined(), op, ": undefined tensor");
  HEED_CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kF64, op,
             ": expected a f32 or f64 tensor, got ", t.str());
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  check_float(a, op);
  check_float(b, op);
  HEED_CHECK(a.dtype() == b.dtype(), op, ": dtype mismatch, ", a.str(), " and ", b.str());
}

// Broadcast a and b, then out = f(a, b) elementwise.
template <class F>
Tensor binary(const Tensor& a, const Tensor& b, const char* op, F f) {
  check_same_dtype(a, b, op);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_float(a.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::map_binary<T>(a.raw_expand(shape), b.raw_expand(shape), out,
                                [&](T x, T y) { return f(x, y); });
  });
  return out;
}

template <class F>
Tensor unary(const Tensor& x, const char* op, F f) {
  check_float(x, op);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::map_unary<T>(x, out, [&](T v) { return f(v); });
  });
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "add", [](auto x, auto y) { return x + y; });
  autograd::record("add", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, sa), sum_to(g, sb)};
  });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "sub", [](auto x, auto y) { return x - y; });
  autograd::record("sub", out, {a, b}, [sa = a.shape(), sb = b.shape()](const Tensor& g) {
    return std::vector<Tensor>{sum_to(g, sa), sum_to(neg(g), sb)};
  });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "mul", [](auto x, auto y) { return x * y; });
  // d(ab)/da = b, d(ab)/db = a
  autograd::record("mul", out, {a, b}, [a = a.detach(), b = b.detach()](const Tensor& g) {
    return std::vector<Tensor>{sum_to(mul(g, b), a.shape()), sum_to(mul(g, a), b.shape())};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = binary(a, b, "div", [](auto x, auto y) { return x / y; });
  // d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
  autograd::record("div", out, {a, b}, [a = a.detach(), b = b.detach(), o = out.detach()](const Tensor& g) {
    Tensor ga = div(g, b);
    return std::vector<Tensor>{sum_to(ga, a.shape()), sum_to(neg(mul(ga, o)), b.shape())};
  });
  return out;
}

Tensor add(const Tensor& a, double s) {
  Tensor out = unary(a, "add", [s](auto x) { return x + static_cast<decltype(x)>(s); });
  autograd::record("add_scalar", out, {a}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  return out;
}

Tensor mul(const Tensor& a, double s) {
  Tensor out = unary(a, "mul", [s](auto x) { return x * static_cast<decltype(x)>(s); });
  autograd::record("mul_scalar", out, {a}, [s](const Tensor& g) { return std::vector<Tensor>{mul(g, s)}; });
  return out;
}

Tensor neg(const Tensor& a) {
  Tensor out = unary(a, "neg", [](auto x) { return -x; });
  autograd::record("neg", out, {a}, [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = unary(x, "exp", [](auto v) { return std::exp(v); });
  // d exp(x) = exp(x)
  autograd::record("exp", out, {x}, [o = out.detach()](const Tensor& g) { return std::vector<Tensor>{mul(g, o)}; });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = unary(x, "log", [](auto v) { return std::log(v); });
  // d log(x) = 1/x
  autograd::record("log", out, {x}, [x = x.detach()](const Tensor& g) { return std::vector<Tensor>{div(g, x)}; });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = unary(x, "sqrt", [](auto v) { return std::sqrt(v); });
  // d sqrt(x) = 1 / (2 sqrt(x))
  autograd::record("sqrt", out, {x}, [o = out.detach()](const Tensor& g) {
    return std::vector<Tensor>{div(mul(g, 0.5), o)};
  });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out = unary(x, "tanh", [](auto v) { return std::tanh(v); });
  // d tanh(x) = 1 - tanh(x)^2
  autograd::record("tanh", out, {x}, [o = out.detach()](const Tensor& g) {
    Tensor d = unary(o, "tanh_backward", [](auto t) { return 1 - t * t; });
    return std::vector<Tensor>{mul(g, d)};
  });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = unary(x, "sigmoid", [](auto v) {
    // Stable for large |v|: never exp of a large positive number.
    return v >= 0 ? 1 / (1 + std::exp(-v)) : std::exp(v) / (1 + std::exp(v));
  });
  // d sigmoid(x) = s (1 - s)
  autograd::record("sigmoid", out, {x}, [o = out.detach()](const Tensor& g) {
    Tensor d = unary(o, "sigmoid_backward", [](auto s) { return s * (1 - s); });
    return std::vector<Tensor>{mul(g, d)};
  });
  return out;
}

Tensor relu(const Tensor& x) {
  Tensor out = unary(x, "relu", [](auto v) { return v > 0 ? v : decltype(v)(0); });
  // d relu(x) = [x > 0]
  autograd::record("relu", out, {x}, [x = x.detach()](const Tensor& g) {
    return std::vector<Tensor>{binary(g, x, "relu_backward", [](auto gv, auto xv) {
      return xv > 0 ? gv : decltype(gv)(0);
    })};
  });
  return out;
}

Tensor gelu(const Tensor& x) {
  constexpr double kInvSqrt2 = 0.70710678118654752440;
  Tensor out = unary(x, "gelu", [](auto v) {
    using T = decltype(v);
    return static_cast<T>(0.5) * v * (1 + std::erf(v * static_cast<T>(kInvSqrt2)));
  });
  // d gelu(x) = Phi(x) + x phi(x), phi the standard normal density
  autograd::record("gelu", out, {x}, [x = x.detach()](const Tensor& g) {
    return std::vector<Tensor>{binary(g, x, "gelu_backward", [](auto gv, auto v) {
      using T = decltype(v);
      T cdf = static_cast<T>(0.5) * (1 + std::erf(v * static_cast<T>(kInvSqrt2)));
      T pdf = std::exp(-v * v / 2) * static_cast<T>(0.39894228040143267794);
      return gv * (cdf + v * pdf);
    })};
  });
  return out;
}

Tensor pow(const Tensor& x, double e) {
  Tensor out = unary(x, "pow", [e](auto v) { return std::pow(v, static_cast<decltype(v)>(e)); });
  // d x^e = e x^(e-1)
  autograd::record("pow", out, {x}, [x = x.detach(), e](const Tensor& g) {
    return std::vector<Tensor>{binary(g, x, "pow_backward", [e](auto gv, auto v) {
      using T = decltype(v);
      return gv * static_cast<T>(e) * std::pow(v, static_cast<T>(e - 1));
    })};
  });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  HEED_CHECK(cond.defined() && cond.dtype() == DType::kU8, "where: condition must be a u8 tensor, got ",
             cond.str(), " (values ", a.str(), " and ", b.str(), ")");
  check_same_dtype(a, b, "where");
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor c8 = cond.raw_expand(shape);
  Tensor cf = Tensor::empty(shape, a.dtype());
  cf.copy_from(c8);  // 0/1 in a's dtype
  Tensor out = Tensor::empty(shape, a.dtype());
  dispatch_float(a.dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    kernels::cpu::map_ternary<T>(cf, a.raw_expand(shape), b.raw_expand(shape), out,
                                 [](T c, T x, T y) { return c != 0 ? x : y; });
  });
  autograd::record("where", out, {a, b}, [cf, sa = a.shape(), sb = b.shape()](const Tensor& g) {
    Tensor ga = binary(g, cf, "where_backward", [](auto gv, auto c) { return c != 0 ? gv : decltype(gv)(0); });
    Tensor gb = binary(g, cf, "where_backward", [](auto gv, auto c) { return c != 0 ? decltype(gv)(0) : gv; });
    return std::vector<Tensor>{sum_to(ga, sa), sum_to(gb, sb)};
  });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_float(x, "masked_fill");
  HEED_CHECK(mask.defined() && mask.dtype() == DType::kU8, "masked_fill: mask must be a u8 tensor, got ",
             mask.str(), " for ", x.str());
  Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  HEED_CHECK(shape == x.shape(), "masked_fill: mask ", mask.str(), " does not broadcast to ", x.str());
  return where(mask, Tensor::full({}, value, x.dtype()), x);
}

}  // namespace heed
