// Batched matrix products through BLAS. Operands whose last two dims are row- or
// column-major go straight to GEMM (transposes become BLAS flags); others are copied.
#include "heed/ops/matmul.h"

#include <algorithm>

#include "heed/autograd/graph.h"
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

// C[M, N] = A[M, K] @ B[K, N] for every batch index; a, b expanded to the batch shape.
Tensor batched_gemm(Tensor a, Tensor b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  Shape batch(a.shape().begin(), a.shape().end() - 2);
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  if (shape_numel(out_shape) == 0 || k == 0) return Tensor::zeros(out_shape, a.dtype());
  Tensor out = Tensor::empty(out_shape, a.dtype());  // beta = 0: GEMM writes every element

  BlasLayout la = blas_layout(a), lb = blas_layout(b);
  if (!la.ok) { a = a.clone_data(); la = blas_layout(a); }
  if (!lb.ok) { b = b.clone_data(); lb = blas_layout(b); }

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

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  HEED_CHECK(weight.defined() && weight.dim() == 2, "linear: weight must be [out, in], got ", weight.str());
  HEED_CHECK(x.defined() && x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input ", x.str(),
             " does not match weight ", weight.str(), " (expected last dimension ", weight.size(1), ")");
  Tensor y = matmul(x, transpose(weight, 0, 1));  // [..., I] @ [I, O] -> [..., O]
  if (bias.defined()) {
    HEED_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias ", bias.str(),
               " does not match weight ", weight.str(), " (expected [", weight.size(0), "])");
    y = add(y, bias);
  }
  return y;
}

}  // namespace heed
