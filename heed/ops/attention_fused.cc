// The fused attention path: maps tensors and the mask vocabulary onto the CPU flash kernel
// (online softmax, no [T, S] buffer), and records its backward, which recomputes the
// probabilities block by block from the saved log-sum-exp.
#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/flash_attention.h"
#include "heed/ops/attention.h"

namespace heed {

namespace {

namespace kc = kernels::cpu;

kc::Strides4 strides4(const Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// A fresh 4-d tensor of `shape` laid out in memory in the dimension order of `like` when
// `like` is a permuted dense view (the heads split [B, T, H, D] -> [B, H, T, D] of a
// projection), contiguous otherwise. Outputs and gradients then come back in the layout
// their producer used, so merging the heads (forward) and undoing the split (backward) are
// views, not copies. Size-1 dimensions of `like` (whose strides mean nothing) keep their
// logical places.
Tensor empty_like_layout(const Shape& shape, const Tensor& like) {
  std::array<int64_t, 4> order{0, 1, 2, 3};  // order[i]: the dimension at memory position i
  std::vector<int64_t> moving;                // dimensions of size > 1, in logical order
  for (int64_t d = 0; d < 4; ++d)
    if (like.size(d) != 1) moving.push_back(d);
  std::vector<int64_t> sorted = moving;
  std::stable_sort(sorted.begin(), sorted.end(), [&](int64_t a, int64_t b) { return like.stride(a) > like.stride(b); });
  for (size_t i = 0; i < moving.size(); ++i) order[moving[i]] = sorted[i];
  int64_t expected = 1;
  for (int i = 3; i >= 0; --i) {
    const int64_t d = order[i];
    if (like.size(d) != 1 && like.stride(d) != expected) return Tensor::empty(shape);
    expected *= like.size(d);
  }
  Shape physical(4);
  std::vector<int64_t> logical(4);  // logical[d]: the memory position of dimension d
  for (int i = 0; i < 4; ++i) {
    physical[i] = shape[order[i]];
    logical[order[i]] = i;
  }
  return Tensor::empty(physical).raw_permute(logical);
}

// Tensors the kernel reads through raw pointers, kept alive with the params that point into them.
struct FusedCall {
  kc::FlashParams params;
  Tensor q, k, v, out, lse;
  Tensor key_lengths;  // i64 [B], contiguous
  Tensor bool_mask;    // u8, broadcast view [B, Hq, T, S]
  Tensor additive;     // f32, the user's mask made contiguous in its own shape
};

// Whether AttentionPrecision::kBF16 is taken up here: only with AMX tiles. The other bf16
// engine, AVX-512 BF16 dot products, measured 0.52-0.61x the speed of the f32 kernel
// (docs/results/2026-11-21-flash-attention.md), so there the products stay f32.
bool bf16_products_available() { return kc::cpu_has_amx_bf16(); }

FusedCall make_call(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  FusedCall c;
  c.q = q.detach();
  c.k = k.detach();
  c.v = v.detach();
  const int64_t b = q.size(0), hq = q.size(1), t = q.size(2), d = q.size(3);
  const int64_t hkv = k.size(1), s = k.size(2), dv = v.size(3);
  const Shape score_shape{b, hq, t, s};
  kc::FlashParams& p = c.params;
  p.batch = b;
  p.q_heads = hq;
  p.kv_heads = hkv;
  p.q_len = t;
  p.kv_len = s;
  p.head_dim = d;
  p.v_head_dim = dv;
  p.q = q.data<float>();
  p.q_strides = strides4(q);
  p.k = k.data<float>();
  p.k_strides = strides4(k);
  p.v = v.data<float>();
  p.v_strides = strides4(v);
  const double default_scale = o.score == AttentionScore::kScaledDot ? 1.0 / std::sqrt(static_cast<double>(d)) : 1.0;
  p.scale = static_cast<float>(o.scale.value_or(default_scale));
  p.weighting = o.weighting == AttentionWeighting::kSoftmax ? kc::AttentionWeighting::kSoftmax
                                                             : kc::AttentionWeighting::kSigmoid;
  if (o.training && o.dropout_p > 0)
    p.dropout = {static_cast<float>(o.dropout_p), o.dropout_seed, o.dropout_stream};
  if (o.precision == AttentionPrecision::kBF16 && bf16_products_available())
    p.precision = kc::FlashPrecision::kBF16;

  const AttentionMask& m = o.mask;
  if (m.key_lengths.defined()) {
    c.key_lengths = m.key_lengths.raw_contiguous();  // [B]
    p.mask.key_lengths = c.key_lengths.data<int64_t>();
  }
  p.mask.causal = m.causal;
  p.mask.causal_offset = m.causal_offset;
  p.mask.window_left = m.window_left;
  p.mask.window_right = m.window_right;
  if (m.bool_mask.defined()) {
    c.bool_mask = m.bool_mask.raw_expand(score_shape);  // [..] -> [B, Hq, T, S], stride 0 where broadcast
    p.mask.bool_mask = c.bool_mask.data<uint8_t>();
    p.mask.bool_strides = strides4(c.bool_mask);
  }
  if (m.additive_mask.defined()) {
    c.additive = m.additive_mask.detach().raw_contiguous();
    Tensor view = c.additive.raw_expand(score_shape);  // [..] -> [B, Hq, T, S]
    p.mask.additive_mask = c.additive.data<float>();
    p.mask.additive_strides = strides4(view);
  }
  c.out = empty_like_layout({b, hq, t, dv}, q);  // [B, Hq, T, Dv], in q's memory order
  c.lse = Tensor::empty({b, hq, t});      // [B, Hq, T]
  p.out = c.out.data<float>();
  p.out_strides = strides4(c.out);
  p.lse = c.lse.data<float>();
  return c;
}

}  // namespace

bool fused_attention_applies(const Tensor& q, const AttentionOptions& o) {
  const bool dot = o.score == AttentionScore::kScaledDot || o.score == AttentionScore::kDot;
  const bool mask_ok = !o.mask.additive_mask.defined() || o.mask.additive_mask.dtype() == DType::kF32;
  return q.dtype() == DType::kF32 && dot && o.softcap == 0.0 && !o.need_scores && mask_ok;
}

AttentionResult fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& o) {
  auto call = std::make_shared<FusedCall>(make_call(q, k, v, o));
  kc::flash_attention_forward(call->params);
  AttentionResult r;
  r.out = call->out.detach();
  if (o.need_weights) {  // exact probabilities of the chosen heads and rows, recomputed from the saved lse
    const kc::FlashParams& p = call->params;
    const WeightsSelection& sel = o.weights_selection;
    std::vector<int64_t> chosen = sel.heads;
    if (chosen.empty())
      for (int64_t h = 0; h < p.q_heads; ++h) chosen.push_back(h);
    std::vector<kc::FlashHead> heads;
    for (int64_t bi = 0; bi < p.batch; ++bi)
      for (int64_t h : chosen) heads.push_back({bi, h});
    const int64_t row_end = sel.end(p.q_len);
    const int64_t n_heads = static_cast<int64_t>(chosen.size());
    r.weights = Tensor::empty({p.batch, n_heads, row_end - sel.row_begin, p.kv_len});  // [B, heads, rows, S]
    kc::flash_attention_weights(p, {.heads = heads, .row_begin = sel.row_begin, .row_end = row_end,
                                    .weights = r.weights.data<float>()});
  }
  const bool mask_grad = o.mask.additive_mask.defined() && o.mask.additive_mask.requires_grad();
  // grad_q, grad_k, grad_v (and grad of the additive mask) from the flash backward, which
  // replays dropout and recomputes P = exp(S - lse) block by block.
  autograd::record("fused_attention", r.out, {q, k, v, mask_grad ? o.mask.additive_mask : Tensor()},
                   [call, mask_grad](const Tensor& g) {
                     const kc::FlashParams& p = call->params;
                     Tensor go = g.dtype() == DType::kF32 ? g : g.to(DType::kF32);
                     // Each in its input's memory order.
                     Tensor gq = empty_like_layout(call->q.shape(), call->q);  // [B, Hq, T, D]
                     Tensor gk = empty_like_layout(call->k.shape(), call->k);  // [B, Hkv, S, D]
                     Tensor gv = empty_like_layout(call->v.shape(), call->v);  // [B, Hkv, S, Dv]
                     Tensor gm = mask_grad ? Tensor::empty(call->additive.shape()) : Tensor();
                     kc::FlashGrads grads{.grad_out = go.data<float>(), .grad_out_strides = strides4(go),
                                          .grad_q = gq.data<float>(), .grad_q_strides = strides4(gq),
                                          .grad_k = gk.data<float>(), .grad_k_strides = strides4(gk),
                                          .grad_v = gv.data<float>(), .grad_v_strides = strides4(gv),
                                          .grad_additive_mask = mask_grad ? gm.data<float>() : nullptr};
                     kc::flash_attention_backward(p, grads);
                     return std::vector<Tensor>{gq, gk, gv, gm};
                   });
  return r;
}

}  // namespace heed
