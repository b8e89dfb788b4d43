// Validation and materialisation of AttentionMask: the structural masks become a u8
// "allowed" tensor or a 0 / -inf bias, to which the additive mask is added with autograd.
#include "heed/ops/attention_mask.h"

#include <algorithm>
#include <limits>
#include <vector>

#include "heed/ops/elementwise.h"
#include "heed/ops/shape.h"

namespace heed {

namespace {

Shape dims_shape(const AttentionDims& d) { return {d.batch, d.heads, d.q_len, d.kv_len}; }

// Size of a right-aligned mask along dimension d of [B, H, T, S] (1 where the mask has no such dim).
int64_t aligned_size(const Tensor& m, int64_t d) {
  if (!m.defined()) return 1;
  const int64_t i = m.dim() - 4 + d;
  return i >= 0 ? m.size(i) : 1;
}

void check_broadcast(const Tensor& m, const char* field, const AttentionDims& dims, const char* op) {
  const Shape target = dims_shape(dims);
  bool ok = m.dim() <= 4;
  for (int64_t d = 0; ok && d < 4; ++d) {
    const int64_t have = aligned_size(m, d);
    ok = have == 1 || have == target[d];
  }
  HEED_CHECK(ok, op, ": ", field, " ", m.str(), " does not broadcast to the scores [B, H, T, S] = ",
             shape_str(target), " (expected each dimension 1 or equal, right-aligned, at most 4 dimensions)");
}

}  // namespace

bool AttentionMask::empty() const { return !has_structural() && !additive_mask.defined(); }

bool AttentionMask::has_structural() const {
  return key_lengths.defined() || causal || window_left >= 0 || window_right >= 0 || bool_mask.defined();
}

void check_attention_mask(const AttentionMask& mask, const AttentionDims& dims, DType score_dtype,
                          const char* op) {
  if (mask.key_lengths.defined()) {
    const Tensor& kl = mask.key_lengths;
    HEED_CHECK(kl.dtype() == DType::kI64 && kl.dim() == 1 && kl.size(0) == dims.batch, op, ": key_lengths ",
               kl.str(), " expected i64[", dims.batch, "] (one length per batch item)");
    std::vector<int64_t> lengths = kl.to_vector<int64_t>();
    for (size_t b = 0; b < lengths.size(); ++b)
      HEED_CHECK(lengths[b] >= 0 && lengths[b] <= dims.kv_len, op, ": key_lengths[", b, "] = ", lengths[b],
                 " expected in [0, ", dims.kv_len, "] (S, the number of keys)");
  }
  HEED_CHECK(mask.window_left >= -1 && mask.window_right >= -1, op, ": window_left = ", mask.window_left,
             ", window_right = ", mask.window_right, " expected -1 (no window) or >= 0");
  if (mask.bool_mask.defined()) {
    HEED_CHECK(mask.bool_mask.dtype() == DType::kU8, op, ": bool_mask ", mask.bool_mask.str(),
               " expected a u8 tensor (nonzero = allowed)");
    check_broadcast(mask.bool_mask, "bool_mask", dims, op);
  }
  if (mask.additive_mask.defined()) {
    HEED_CHECK(mask.additive_mask.dtype() == score_dtype, op, ": additive_mask ", mask.additive_mask.str(),
               " expected dtype ", dtype_name(score_dtype), " (the dtype of the scores)");
    check_broadcast(mask.additive_mask, "additive_mask", dims, op);
  }
}

Shape attention_mask_shape(const AttentionMask& mask, const AttentionDims& dims) {
  const bool per_batch = mask.key_lengths.defined() || aligned_size(mask.bool_mask, 0) > 1 ||
                         aligned_size(mask.additive_mask, 0) > 1;
  const bool per_head = aligned_size(mask.bool_mask, 1) > 1 || aligned_size(mask.additive_mask, 1) > 1;
  return {per_batch ? dims.batch : 1, per_head ? dims.heads : 1, dims.q_len, dims.kv_len};
}

Tensor attention_allowed(const AttentionMask& mask, const AttentionDims& dims, const char* op) {
  check_attention_mask(mask, dims, mask.additive_mask.defined() ? mask.additive_mask.dtype() : DType::kF32, op);
  const Shape shape = attention_mask_shape(mask, dims);  // [B or 1, H or 1, T, S]
  const int64_t nb = shape[0], nh = shape[1], t_len = dims.q_len, s_len = dims.kv_len;
  Tensor allowed = Tensor::empty(shape, DType::kU8);  // [B or 1, H or 1, T, S]
  Tensor given;
  if (mask.bool_mask.defined()) given = mask.bool_mask.raw_expand(shape).raw_contiguous();  // [B|1, H|1, T, S]
  std::vector<int64_t> lengths =
      mask.key_lengths.defined() ? mask.key_lengths.to_vector<int64_t>() : std::vector<int64_t>();
  uint8_t* pa = allowed.data<uint8_t>();
  const uint8_t* pg = given.defined() ? given.data<uint8_t>() : nullptr;
  const int64_t off = mask.causal_offset;
  for (int64_t b = 0; b < nb; ++b) {
    // Allowed keys of row i form the range [lo, hi) before the explicit bool mask.
    const int64_t len = lengths.empty() ? s_len : lengths[b];
    for (int64_t h = 0; h < nh; ++h)
      for (int64_t i = 0; i < t_len; ++i) {
        const int64_t diag = i + off;
        int64_t lo = 0, hi = len;
        if (mask.causal) hi = std::min(hi, diag + 1);
        if (mask.window_right >= 0) hi = std::min(hi, diag + mask.window_right + 1);
        if (mask.window_left >= 0) lo = std::max(lo, diag - mask.window_left);
        const int64_t row = ((b * nh + h) * t_len + i) * s_len;
        for (int64_t j = 0; j < s_len; ++j) {
          const bool in_range = j >= lo && j < hi;
          pa[row + j] = (in_range && (pg == nullptr || pg[row + j] != 0)) ? 1 : 0;
        }
      }
  }
  return allowed;
}

Tensor attention_bias(const AttentionMask& mask, const AttentionDims& dims, DType dtype, const char* op) {
  HEED_CHECK(dtype == DType::kF32 || dtype == DType::kF64, op, ": attention bias dtype ", dtype_name(dtype),
             " expected f32 or f64");
  check_attention_mask(mask, dims, dtype, op);
  if (mask.empty()) return Tensor();
  const Shape shape = attention_mask_shape(mask, dims);  // [B or 1, H or 1, T, S]
  Tensor bias;
  if (mask.has_structural()) {
    Tensor allowed = attention_allowed(mask, dims, op);  // u8 [B|1, H|1, T, S]
    bias = Tensor::empty(shape, dtype);                  // [B|1, H|1, T, S]
    dispatch_float(dtype, op, [&](auto tag) {
      using T = decltype(tag);
      const uint8_t* pa = allowed.data<uint8_t>();
      T* pb = bias.data<T>();
      const T neg_inf = -std::numeric_limits<T>::infinity();
      for (int64_t n = bias.numel(), e = 0; e < n; ++e) pb[e] = pa[e] ? T(0) : neg_inf;
    });
  }
  if (mask.additive_mask.defined())
    bias = bias.defined() ? add(bias, mask.additive_mask) : mask.additive_mask;  // broadcast to <= shape
  if (bias.shape() != shape) bias = expand(bias, shape);  // [B|1, H|1, T, S], a view
  return bias;
}

}  // namespace heed
