// The one mask vocabulary of every attention form in heed (composed ops, nn modules and the
// fused kernel's FlashMasks): padding lengths, causal with an offset, sliding window, and
// explicit boolean or additive masks. A key is allowed iff every given mask allows it.
#pragma once

#include <cstdint>

#include "heed/tensor/tensor.h"

namespace heed {

// Masks over scores of shape [B, H, T, S] (query i of length T, key j of length S). Every
// field is optional; the defaults allow every key. Tensor masks broadcast NumPy-style
// (right-aligned) to [B, H, T, S], so [T, S], [H, T, S], [B, 1, T, S], [S] all work.
struct AttentionMask {
  Tensor key_lengths;          // i64 [B], values in [0, S]: key j allowed iff j < key_lengths[b]
  bool causal = false;         // key j allowed iff j <= i + causal_offset
  int64_t causal_offset = 0;   // S - T when decoding with a cache; also anchors the window
  int64_t window_left = -1;    // >= 0: key j allowed iff j >= i + causal_offset - window_left
  int64_t window_right = -1;   // >= 0: key j allowed iff j <= i + causal_offset + window_right
  Tensor bool_mask;            // u8, nonzero = allowed
  Tensor additive_mask;        // same dtype as the scores; added to the scaled scores, -inf = masked

  // No mask at all: every key allowed, nothing added.
  bool empty() const;
  // Any mask that forbids keys outright (everything except additive_mask).
  bool has_structural() const;
};

// The score shape the masks apply to: [batch, heads, q_len, kv_len] = [B, H, T, S].
struct AttentionDims {
  int64_t batch = 1;
  int64_t heads = 1;
  int64_t q_len = 0;
  int64_t kv_len = 0;
};

// Throws heed::Error naming `op`, the mask and the expected shape/dtype when a mask does not
// fit: key_lengths not i64 [B] or out of [0, S]; bool_mask not u8; additive_mask not of
// `score_dtype`; a tensor mask that does not broadcast to [B, H, T, S]; a window below -1.
void check_attention_mask(const AttentionMask& mask, const AttentionDims& dims, DType score_dtype,
                          const char* op);

// Shape of the materialised mask: [B or 1, H or 1, T, S]; B (H) only when some mask varies
// along the batch (head) dimension.
Shape attention_mask_shape(const AttentionMask& mask, const AttentionDims& dims);

// The structural masks combined into u8 [B or 1, H or 1, T, S], 1 = allowed (additive_mask
// ignored). Checks the mask first.
Tensor attention_allowed(const AttentionMask& mask, const AttentionDims& dims, const char* op);

// The combined mask as one additive bias of `dtype`, shape attention_mask_shape(): 0 where
// allowed, -inf where a structural mask forbids, plus additive_mask (its gradient flows through).
// Undefined when the mask is empty. Checks the mask first.
Tensor attention_bias(const AttentionMask& mask, const AttentionDims& dims, DType dtype, const char* op);

}  // namespace heed
