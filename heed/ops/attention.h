// Attention composed from primitive ops (so autograd gives its gradient): the score
// functions (dot, scaled dot, Luong general, additive/Bahdanau), one mask vocabulary,
// softmax or sigmoid weighting, Philox dropout, grouped-query heads, and optional weights.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "heed/ops/attention_mask.h"
#include "heed/tensor/tensor.h"

namespace heed {

enum class AttentionScore : uint8_t {
  kScaledDot,  // scale * q.k, scale defaults to 1/sqrt(D) (Vaswani et al. 2017)
  kDot,        // q.k (Luong et al. 2015 "dot")
  kGeneral,    // q^T W k, W [Dq, Dk] (Luong et al. 2015 "general")
  kAdditive,   // v^T tanh(W1 q + W2 k), W1 [A, Dq], W2 [A, Dk], v [A] (Bahdanau et al. 2015)
};

enum class AttentionWeighting : uint8_t {
  kSoftmax,  // weights = softmax over the allowed keys; a row with none allowed is all zero
  kSigmoid,  // weights = sigmoid(score) per key, no normalisation; masked keys weigh 0
};

// Learned parameters of the general and additive score functions (unused by the dot forms).
struct ScoreParams {
  Tensor weight;        // kGeneral: W [Dq, Dk]
  Tensor query_weight;  // kAdditive: W1 [A, Dq]
  Tensor key_weight;    // kAdditive: W2 [A, Dk]
  Tensor v;             // kAdditive: v [A]
};

// Which implementation runs. kAuto: the fused kernel (heed/kernels/cpu/flash_attention.h)
// wherever it applies (f32, dot or scaled-dot scores, no softcap, no need_scores), else the
// composed one. kComposed: always the composed ops (the reference). kFused: the fused kernel,
// an error where it does not apply.
enum class AttentionPath : uint8_t { kAuto, kComposed, kFused };

// Arithmetic of the fused path's two products, Q K^T and P V. kBF16: bf16 products on AMX
// tiles with f32 softmax and sums, 1.7-2.1x the speed of f32 at L >= 512, with bf16's
// precision. A permission, not a demand: where AMX is not usable (AVX-512 BF16 dot products
// alone are slower than f32 here), and on the composed path, the products stay f32. The
// backward is f32; weights asked for are recomputed in f32 from the bf16 forward's
// log-sum-exp, so their rows sum to 1 only to bf16 precision.
enum class AttentionPrecision : uint8_t { kF32, kBF16 };

// Which weights need_weights returns: query heads `heads` (in the order given; empty: all
// Hq) and query rows [row_begin, row_end) (row_end = -1: to T), for every batch entry. The
// fused path recomputes exactly these from its saved log-sum-exp, so asking for one head's
// rows of a long sequence costs that head's rows, not a [B, Hq, T, S] matrix; the composed
// path slices them from its full matrix. Heads may repeat; an empty row range gives no rows.
struct WeightsSelection {
  std::vector<int64_t> heads;
  int64_t row_begin = 0;
  int64_t row_end = -1;
  // The end of the rows for queries of length q_len (row_end = -1: q_len).
  int64_t end(int64_t q_len) const { return row_end < 0 ? q_len : row_end; }
};

struct AttentionOptions {
  AttentionScore score = AttentionScore::kScaledDot;
  ScoreParams params;
  std::optional<double> scale;  // multiplies the scores; default 1/sqrt(D) for kScaledDot, else 1
  double softcap = 0.0;         // > 0: scores = softcap * tanh(scores / softcap), before the masks
  AttentionWeighting weighting = AttentionWeighting::kSoftmax;
  AttentionMask mask;
  // Dropout on the weights, only when training: element (b, h, i, j) of the contiguous
  // [B, Hq, T, S] weights is kept iff random::dropout_keep(dropout_seed, dropout_stream,
  // ((b*Hq + h)*T + i)*S + j, dropout_p), kept values scaled by 1/(1 - dropout_p).
  double dropout_p = 0.0;
  uint64_t dropout_seed = 0;
  uint64_t dropout_stream = 0;
  bool training = false;
  bool need_weights = false;  // return the weights (before dropout) chosen by weights_selection
  WeightsSelection weights_selection;
  bool need_scores = false;   // return the scores (scaled and softcapped, before the masks)
  AttentionPath path = AttentionPath::kAuto;
  AttentionPrecision precision = AttentionPrecision::kF32;
};

struct AttentionResult {
  Tensor out;      // [B, Hq, T, Dv]
  Tensor weights;  // [B, heads, rows, S] when need_weights (all: [B, Hq, T, S]): probabilities before dropout
  Tensor scores;   // [B, Hq, T, S] when need_scores
};

// q [B, Hq, T, Dq], k [B, Hkv, S, Dk], v [B, Hkv, S, Dv] -> out [B, Hq, T, Dv].
// Grouped-query heads: Hq % Hkv == 0 and query head h uses kv head h / (Hq / Hkv).
// Dq == Dk for the dot forms. Any strides; f32 or f64 (all operands the same dtype).
AttentionResult attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options = {});

// The score function of `options` alone: [B, Hq, T, S], scaled and softcapped, no masks.
Tensor attention_scores(const Tensor& q, const Tensor& k, const AttentionOptions& options);

// The individual score functions (q [B, Hq, T, Dq], k [B, Hkv, S, Dk] -> [B, Hq, T, S]).
Tensor dot_scores(const Tensor& q, const Tensor& k, double scale);
Tensor general_scores(const Tensor& q, const Tensor& k, const Tensor& weight, double scale = 1.0);
Tensor additive_scores(const Tensor& q, const Tensor& k, const Tensor& query_weight, const Tensor& key_weight,
                       const Tensor& v, double scale = 1.0);

// Whether the fused kernel can run this call (see AttentionPath).
bool fused_attention_applies(const Tensor& q, const AttentionOptions& options);
// The fused path alone (arguments already checked by attention()).
AttentionResult fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options);

// Softmax over the last dimension that maps a row whose entries are all -inf to all zeros
// (and passes zero gradient through it) instead of NaN.
Tensor safe_softmax(const Tensor& logits);

// weights [B, Hq, T, S] and v [B, Hkv, S, Dv] -> [B, Hq, T, Dv], query head h reading kv head h / (Hq / Hkv).
Tensor grouped_weighted_sum(const Tensor& weights, const Tensor& v);

}  // namespace heed
