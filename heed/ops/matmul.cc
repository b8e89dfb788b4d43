// Batched matrix products through BLAS. Operands whose last two dims are row- or
// column-major go straight to GEMM (transposes become BLAS flags); others are copied.
#include "heed/ops/matmul.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/elementwise.h"
#include "heed/kernels/cpu/gemm.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/shape.h"
#include "heed/tensor/strided.h"

namespace heed {

namespace {

// How BLAS reads the last two dims of a tensor: transpose flag and leading dimension.
struct BlasLayout {
  bool ok = false;
  bool trans = false;
  int64_t ld = 0;
};

BlasLayout blas_layout(const Tensor& t) {
  const int64_t r = t.size(-2), c = t.size(-1);
  const int64_t sr = t.stride(-2), sc = t.stride(-1);
  if ((sc == 1 || c == 1) && (r == 1 || sr >= std::max<int64_t>(c, 1)))
    return {true, false, std::max<int64_t>({sr, c, 1})};
  if ((sr == 1 || r == 1) && (c == 1 || sc >= std::max<int64_t>(r, 1)))
    return {true, true, std::max<int64_t>({sc, r, 1})};
  return {};
}

// t as a GEMM operand: itself when BLAS can read its last two dims in place, else a
// contiguous copy; with the layout to read it by.
std::pair<Tensor, BlasLayout> gemm_operand(const Tensor& t) {
  const BlasLayout l = blas_layout(t);
  if (l.ok) return {t, l};
  Tensor copy = t.clone_data();
  return {copy, blas_layout(copy)};
}

// C[M, N] = A[M, K] @ B[K, N] for every batch index; a, b expanded to the batch shape.
Tensor batched_gemm(Tensor a, Tensor b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape batch(a.shape().begin(), a.shape().end() - 2);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  if (shape_numel(out_shape) == 0 || k == 0) return Tensor::zeros(out_shape, a.dtype());
  Tensor out = Tensor::empty(out_shape, a.dtype());  // beta = 0: GEMM writes every element

  BlasLayout la, lb;
  std::tie(a, la) = gemm_operand(a);
  std::tie(b, lb) = gemm_operand(b);

  // Offsets of every batch item in a, b and out.
  std::vector<int64_t> oa, ob;
  Shape sa(a.strides().begin(), a.strides().end() - 2), sb(b.strides().begin(), b.strides().end() - 2);
  for_each_strided2(batch, sa, sb, [&](int64_t ia, int64_t ib) {
    oa.push_back(ia);
    ob.push_back(ib);
  });
  const int64_t items = static_cast<int64_t>(oa.size());
  kernels::cpu::GemmParams p{.trans_a = la.trans, .trans_b = lb.trans, .m = m, .n = n, .k = k,
                             .lda = la.ld, .ldb = lb.ld, .ldc = n};
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    // Items and their tiles share heed's thread pool; each tile is a single-threaded BLAS call,
    // so the result does not depend on the thread count (see kernels/cpu/gemm.cc).
    kernels::cpu::gemm_batched(p, items, oa.data(), ob.data(), m * n, pa, pb, po);
  });
  return out;
}

Tensor matmul_nograd(const Tensor& a, const Tensor& b) {
  // x [..., M, K] @ w [K, N]: fold the leading dims into M and run one GEMM.
  if (b.dim() == 2 && a.dim() > 2) {
    Shape out_shape(a.shape().begin(), a.shape().end() - 1);
    out_shape.push_back(b.size(1));
    Tensor a2 = a.raw_reshape({-1, a.size(-1)});
    return batched_gemm(a2, b).raw_reshape(out_shape);
  }
  Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                 Shape(b.shape().begin(), b.shape().end() - 2), "matmul");
  Shape sa = batch, sb = batch;
  sa.insert(sa.end(), a.shape().end() - 2, a.shape().end());
  sb.insert(sb.end(), b.shape().end() - 2, b.shape().end());
  return batched_gemm(a.raw_expand(sa), b.raw_expand(sb));
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  HEED_CHECK(a_in.defined() && b_in.defined(), "matmul: undefined operand");
  HEED_CHECK(a_in.is_floating() && a_in.dtype() == b_in.dtype() && a_in.dtype() != DType::kBF16,
             "matmul: expected two f32 or two f64 tensors, got ", a_in.str(), " and ", b_in.str());
  HEED_CHECK(a_in.dim() >= 1 && b_in.dim() >= 1, "matmul: operands must have at least one dimension, got ",
             a_in.str(), " and ", b_in.str());
  // NumPy rules for 1-D operands: [K] acts as [1, K] on the left, [K, 1] on the right.
  if (a_in.dim() == 1) return squeeze(matmul(unsqueeze(a_in, 0), b_in), -2);
  if (b_in.dim() == 1) return squeeze(matmul(a_in, unsqueeze(b_in, 1)), -1);
  HEED_CHECK(a_in.size(-1) == b_in.size(-2), "matmul: inner dimensions differ, ", a_in.str(), " @ ",
             b_in.str(), " (expected a.size(-1) == b.size(-2))");
  Tensor out = matmul_nograd(a_in, b_in);
  // grad_a = g @ b^T, grad_b = a^T @ g, each summed back over broadcast batch dims
  autograd::record("matmul", out, {a_in, b_in}, [a = a_in.detach(), b = b_in.detach()](const Tensor& g) {
    Tensor ga = sum_to(matmul_nograd(g, b.raw_transpose(-1, -2)), a.shape());
    Tensor gb;
    if (b.dim() == 2 && a.dim() > 2) {  // one GEMM over the folded batch: [K, P] @ [P, N]
      gb = matmul_nograd(a.raw_reshape({-1, a.size(-1)}).raw_transpose(0, 1), g.raw_reshape({-1, g.size(-1)}));
    } else {
      gb = sum_to(matmul_nograd(a.raw_transpose(-1, -2), g), b.shape());
    }
    return std::vector<Tensor>{ga, gb};
  });
  return out;
}

namespace {

// out = act(x [..., I] @ weight[O, I]^T + bias): one GEMM, bias and ReLU applied as it stores.
// Backward: g' = relu ? g [y > 0] : g; dx = g' W, dW = g'^T x, db = column sums of g'.
Tensor linear_impl(const Tensor& x, const Tensor& weight, const Tensor& bias, bool relu, const char* name) {
  HEED_CHECK(weight.defined() && weight.dim() == 2, name, ": weight must be [out, in], got ", weight.str());
  HEED_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == weight.size(1), name, ": input ", x.str(),
             " does not match weight ", weight.str(), " (expected last dimension ", weight.size(1), ")");
  HEED_CHECK(x.is_floating() && x.dtype() == weight.dtype() && x.dtype() != DType::kBF16, name,
             ": expected f32 or f64 input and weight of one dtype, got ", x.str(), " and ", weight.str());
  if (bias.defined())
    HEED_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0) && bias.dtype() == weight.dtype(), name, ": bias ",
               bias.str(), " does not match weight ", weight.str(), " (expected [", weight.size(0), "] of ",
               dtype_name(weight.dtype()), ")");
  const int64_t in = weight.size(1), out_features = weight.size(0);
  Shape out_shape(x.shape().begin(), x.shape().end() - 1);
  out_shape.push_back(out_features);
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  const Tensor x2 = x.raw_contiguous().raw_reshape({rows, in});  // [R, I]
  const auto [wt, lw] = gemm_operand(weight.raw_transpose(0, 1));  // [I, O]
  const Tensor b = bias.defined() ? bias.raw_contiguous() : Tensor();
  Tensor out = Tensor::empty({rows, out_features}, x.dtype());  // every element written below
  if (rows > 0 && out_features > 0) {
    dispatch_float(x.dtype(), name, [&](auto tag) {
      using T = decltype(tag);
      const kernels::cpu::GemmEpilogue<T> epilogue{b.defined() ? b.data<T>() : nullptr, relu};
      // (in == 0: no product, act(bias) or zeros; the GEMM handles it)
      const kernels::cpu::GemmParams p{.trans_a = false, .trans_b = lw.trans, .m = rows, .n = out_features, .k = in,
                                       .lda = in, .ldb = lw.ld, .ldc = out_features};
      kernels::cpu::gemm(p, x2.data<T>(), wt.data<T>(), out.data<T>(), epilogue);
    });
  }
  out = out.raw_reshape(out_shape);
  std::vector<Tensor> inputs{x, weight};
  if (bias.defined()) inputs.push_back(bias);
  autograd::record(name, out, inputs,
                   [x2 = x2.detach(), w = weight.detach(), y = relu ? out.detach() : Tensor(), x_shape = x.shape(),
                    has_bias = bias.defined(), relu](const Tensor& g) {
                     const int64_t o = w.size(0);
                     Tensor g2 = g.raw_contiguous().raw_reshape({x2.size(0), o});  // [R, O]
                     if (relu) {  // d relu = [y > 0] (y > 0 exactly where the pre-activation was)
                       Tensor masked = Tensor::empty(g2.shape(), g2.dtype());
                       const Tensor y2 = y.raw_contiguous();
                       dispatch_float(g2.dtype(), "linear_relu backward", [&](auto tag) {
                         using T = decltype(tag);
                         kernels::cpu::map_binary<T>(g2, y2, masked, [](T gv, T yv) { return yv > T(0) ? gv : T(0); });
                       });
                       g2 = masked;
                     }
                     // dW = g'^T x computed as [O, I] directly (contiguous, as the parameter).
                     std::vector<Tensor> grads{matmul_nograd(g2, w).raw_reshape(x_shape),  // [R, I]
                                               matmul_nograd(g2.raw_transpose(0, 1), x2)};   // [O, I]
                     if (has_bias) grads.push_back(sum_to(g2, {o}));
                     return grads;
                   });
  return out;
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_impl(x, weight, bias, false, "linear");
}

Tensor linear_relu(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  return linear_impl(x, weight, bias, true, "linear_relu");
}

Tensor linear_relu_linear(const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2, const Tensor& b2) {
  Tensor h, y;
  {
    autograd::NoGradGuard no_grad;  // one node for the pair, recorded below
    h = linear_relu(x, w1, b1);     // [..., F]
    y = linear(h, w2, b2);          // [..., C]
  }
  std::vector<Tensor> inputs{x, w1};
  if (b1.defined()) inputs.push_back(b1);
  inputs.push_back(w2);
  if (b2.defined()) inputs.push_back(b2);
  if (!autograd::grad_enabled() ||
      std::none_of(inputs.begin(), inputs.end(), [](const Tensor& t) { return autograd::requires_grad(t); }))
    return y;  // nothing to record (and no copies of x and h to keep)
  const int64_t rows = shape_numel(Shape(x.shape().begin(), x.shape().end() - 1));
  autograd::record(
      "linear_relu_linear", y, inputs,
      [x2 = x.detach().raw_contiguous().raw_reshape({rows, w1.size(1)}), h2 = h.detach().raw_reshape({rows, w1.size(0)}),
       w1 = w1.detach(), w2 = w2.detach(), x_shape = x.shape(), has_b1 = b1.defined(),
       has_b2 = b2.defined()](const Tensor& g) {
        const int64_t r = x2.size(0), f = w1.size(0), c = w2.size(0);
        const Tensor g2 = g.raw_contiguous().raw_reshape({r, c});  // [R, C]
        // dh = (g W2) [h > 0]: ReLU's mask applied by the GEMM as it stores (no pass of its own).
        Tensor dh = Tensor::empty({r, f}, g2.dtype());
        const auto [w2m, lw] = gemm_operand(w2);  // W2 [C, F] as the right operand
        if (r > 0 && f > 0) {
          dispatch_float(g2.dtype(), "linear_relu_linear backward", [&](auto tag) {
            using T = decltype(tag);
            const kernels::cpu::GemmParams p{.trans_a = false, .trans_b = lw.trans, .m = r, .n = f, .k = c,
                                             .lda = c, .ldb = lw.ld, .ldc = f};  // c == 0: zeros (GEMM)
            kernels::cpu::gemm(p, g2.data<T>(), w2m.data<T>(), dh.data<T>(), {nullptr, false, h2.data<T>()});
          });
        }
        std::vector<Tensor> grads{matmul_nograd(dh, w1).raw_reshape(x_shape),  // [R, C_in]
                                  matmul_nograd(dh.raw_transpose(0, 1), x2)};    // [F, C_in]
        if (has_b1) grads.push_back(sum_to(dh, {f}));
        grads.push_back(matmul_nograd(g2.raw_transpose(0, 1), h2));  // [C, F]
        if (has_b2) grads.push_back(sum_to(g2, {c}));
        return grads;
      });
  return y;
}

}  // namespace heed
