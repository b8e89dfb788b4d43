// Naive attention in double precision, for tests only: obvious loops that materialise the
// full [B, Hq, T, S] weight matrix, with the same parameters (masks, GQA, sigmoid weighting,
// dropout rule) as the fused CPU kernels in heed/kernels/cpu/flash_attention.h.
#pragma once

#include <cstdint>
#include <vector>

#include "heed/kernels/cpu/flash_attention.h"

namespace heed::kernels::ref {

struct AttentionRefForward {
  std::vector<double> out;      // [B, Hq, T, Dv]
  std::vector<double> lse;      // [B, Hq, T]; -inf for a fully masked row (softmax only)
  std::vector<double> weights;  // [B, Hq, T, S]: softmax or sigmoid weights, before dropout
};

struct AttentionRefBackward {
  std::vector<double> grad_q;       // [B, Hq, T, D]
  std::vector<double> grad_k;       // [B, Hkv, S, D]
  std::vector<double> grad_v;       // [B, Hkv, S, Dv]
  std::vector<double> grad_scores;  // [B, Hq, T, S]: d loss / d(scale * q.k + additive mask)
};

// Reads q, k, v and the masks of `p` (its out, lse and workspace are ignored).
AttentionRefForward attention_ref_forward(const cpu::FlashParams& p);
// Gradients for the upstream gradient grad_out [B, Hq, T, Dv] (through its strides), by the
// textbook formulas: dV = P_d^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)).
AttentionRefBackward attention_ref_backward(const cpu::FlashParams& p, const float* grad_out,
                                            const cpu::Strides4& grad_out_strides);

// The same in double inputs, laid out through the strides in `p` (p.q, p.k, p.v and the
// additive mask pointer are ignored): for finite-difference checks of the formulas.
AttentionRefForward attention_ref_forward(const cpu::FlashParams& p, const double* q,
                                          const double* k, const double* v,
                                          const double* additive_mask);
AttentionRefBackward attention_ref_backward(const cpu::FlashParams& p, const double* q,
                                            const double* k, const double* v,
                                            const double* additive_mask, const double* grad_out,
                                            const cpu::Strides4& grad_out_strides);

// Sums grad_scores [B, Hq, T, S] into a buffer laid out like the additive mask (its strides;
// stride-0 dimensions accumulate). `out` must cover every element the strides reach.
void reduce_to_mask_layout(const cpu::FlashParams& p, const std::vector<double>& grad_scores,
                           double* out);

}  // namespace heed::kernels::ref
