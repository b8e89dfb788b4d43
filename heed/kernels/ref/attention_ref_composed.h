// Naive double-precision reference of the composed attention family, for tests only:
// obvious loops over (b, h, i, j), every mask rule evaluated per element, no shared code
// with heed/ops/attention.cc.
#pragma once

#include <cstdint>

#include "heed/tensor/tensor.h"

namespace heed::kernels::ref {

enum class RefScore : uint8_t { kDot, kGeneral, kAdditive };

struct ComposedAttentionRef {
  RefScore score = RefScore::kDot;
  double scale = 1.0;      // multiplies the raw score
  double softcap = 0.0;    // > 0: score = softcap * tanh(score / softcap)
  bool sigmoid = false;    // sigmoid weighting instead of softmax
  Tensor weight;           // general: W [Dq, Dk]
  Tensor query_weight;     // additive: W1 [A, Dq]
  Tensor key_weight;       // additive: W2 [A, Dk]
  Tensor v_weight;         // additive: v [A]
  // Masks, with the meaning of heed::AttentionMask.
  Tensor key_lengths;      // i64 [B]
  bool causal = false;
  int64_t causal_offset = 0;
  int64_t window_left = -1;
  int64_t window_right = -1;
  Tensor bool_mask;        // u8, broadcastable to [B, Hq, T, S]
  Tensor additive_mask;    // broadcastable to [B, Hq, T, S]
  // Dropout (applied when p > 0) with the Philox contract of heed::AttentionOptions.
  double dropout_p = 0.0;
  uint64_t dropout_seed = 0;
  uint64_t dropout_stream = 0;
};

struct ComposedAttentionRefResult {
  Tensor out;      // f64 [B, Hq, T, Dv]
  Tensor weights;  // f64 [B, Hq, T, S], before dropout
  Tensor scores;   // f64 [B, Hq, T, S], scaled and softcapped, before masks
};

// q [B, Hq, T, Dq], k [B, Hkv, S, Dk], v [B, Hkv, S, Dv]; query head h reads kv head h / (Hq / Hkv).
ComposedAttentionRefResult composed_attention_ref(const Tensor& q, const Tensor& k, const Tensor& v,
                                                  const ComposedAttentionRef& params);

}  // namespace heed::kernels::ref
