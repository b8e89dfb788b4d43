// Attention modules with named parameters: single-head score attentions (dot, scaled dot,
// Luong general, Bahdanau additive) and MultiHeadAttention (self and cross attention, separate
// key/value widths, grouped-query heads), named like PyTorch where an equivalent exists.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "heed/nn/linear.h"
#include "heed/nn/module.h"
#include "heed/ops/attention.h"

namespace heed::nn {

struct AttentionOutput {
  Tensor out;      // single-head: context [B, T, Dv]; multi-head: [B, T, C]
  Tensor weights;  // when asked for: single-head [B, T, S]; multi-head per head [B, H, T, S]
};

// Options every single-head module takes.
struct ScoreAttentionOptions {
  AttentionWeighting weighting = AttentionWeighting::kSoftmax;
  std::optional<double> scale;  // default: 1/sqrt(Dq) for scaled dot, 1 otherwise
  double dropout = 0.0;         // on the weights, in training mode only
  uint64_t seed = 0;            // initialisation and dropout
};

// Base of the single-head modules: forward(query [B, T, Dq], keys [B, S, Dk], values
// [B, S, Dv], mask) -> context [B, T, Dv] (+ weights [B, T, S]). Tensor masks here broadcast
// to [B, T, S] (a rank-3 mask is [B, T, S]; there is no head dimension).
class ScoreAttention : public Module {
 public:
  AttentionOutput forward(const Tensor& query, const Tensor& keys, const Tensor& values,
                          const AttentionMask& mask = {}, bool need_weights = false);
  // Dropout stream of the next training forward; each such forward advances it by one, so
  // a run is reproducible from (seed, step). Restore it to resume a run exactly.
  uint64_t dropout_step() const { return dropout_step_; }
  void set_dropout_step(uint64_t step) { dropout_step_ = step; }

 protected:
  ScoreAttention(AttentionScore score, const ScoreAttentionOptions& options);
  // The learned parameters of the score function (none for the dot forms).
  virtual ScoreParams score_params() const { return {}; }

 private:
  AttentionScore score_;
  ScoreAttentionOptions options_;
  uint64_t dropout_step_ = 0;
};

// score = q.k (Luong "dot"); no parameters.
class DotProductAttention : public ScoreAttention {
 public:
  explicit DotProductAttention(const ScoreAttentionOptions& options = {});
};

// score = q.k / sqrt(Dq); no parameters.
class ScaledDotProductAttention : public ScoreAttention {
 public:
  explicit ScaledDotProductAttention(const ScoreAttentionOptions& options = {});
};

struct GeneralAttentionOptions {
  int64_t query_dim = 0;  // Dq
  int64_t key_dim = 0;    // Dk
  ScoreAttentionOptions attention;
};

// score = q^T W k (Luong "general"); parameter `weight` [Dq, Dk], Xavier-uniform initialised.
class GeneralAttention : public ScoreAttention {
 public:
  explicit GeneralAttention(const GeneralAttentionOptions& options);
  const Tensor& weight() const { return weight_; }

 protected:
  ScoreParams score_params() const override;

 private:
  Tensor weight_;
};

struct AdditiveAttentionOptions {
  int64_t query_dim = 0;   // Dq
  int64_t key_dim = 0;     // Dk
  int64_t hidden_dim = 0;  // A
  ScoreAttentionOptions attention;
};

// score = v^T tanh(W1 q + W2 k) (Bahdanau); parameters `query_proj.weight` W1 [A, Dq],
// `key_proj.weight` W2 [A, Dk] (bias-free Linear layers) and `v` [A].
class AdditiveAttention : public ScoreAttention {
 public:
  explicit AdditiveAttention(const AdditiveAttentionOptions& options);

 protected:
  ScoreParams score_params() const override;

 private:
  std::shared_ptr<Linear> query_proj_, key_proj_;
  Tensor v_;
};

struct MultiHeadAttentionOptions {
  int64_t embed_dim = 0;                // C; also the width of the output
  int64_t num_heads = 1;                // H; divides C, head size D = C / H
  std::optional<int64_t> num_kv_heads;  // Hkv, divides H (grouped-query); default H
  std::optional<int64_t> kdim;          // width of `key` inputs; default C
  std::optional<int64_t> vdim;          // width of `value` inputs; default C
  bool bias = true;                     // biases on the input and output projections
  double dropout = 0.0;                 // on the attention weights, in training mode only
  uint64_t seed = 0;                    // initialisation and dropout
  AttentionPath path = AttentionPath::kAuto;            // kAuto: the fused kernel where it applies
  AttentionPrecision precision = AttentionPrecision::kF32;  // kBF16: bf16 products in the fused kernel
};

// Multi-head scaled dot-product attention (Vaswani et al. 2017) with optional grouped-query
// heads (Ainslie et al. 2023). Parameter names follow torch.nn.MultiheadAttention, so a PyTorch
// state_dict loads name for name:
//   packed (kdim == vdim == C and Hkv == H): in_proj_weight [3C, C], in_proj_bias [3C]
//     (rows: query, key, value projections);
//   otherwise: q_proj_weight [C, C], k_proj_weight [Hkv*D, kdim], v_proj_weight [Hkv*D, vdim],
//     in_proj_bias [C + 2*Hkv*D] (PyTorch's layout for kdim/vdim != C; grouped-query heads
//     only shrink the key and value rows, which PyTorch has no equivalent of);
//   always: out_proj.weight [C, C], out_proj.bias [C].
// Initialised as PyTorch does: Xavier-uniform projection weights, zero input and output biases.
class MultiHeadAttention : public Module {
 public:
  explicit MultiHeadAttention(const MultiHeadAttentionOptions& options);

  // query [B, T, C], key [B, S, kdim], value [B, S, vdim] -> out [B, T, C] and, when
  // need_weights, the per-head weights [B, H, T, S] before dropout. Self attention passes
  // the same tensor three times. Masks broadcast to [B, H, T, S] as in heed::attention
  // (a rank-3 mask is [H, T, S]; padding is AttentionMask::key_lengths).
  AttentionOutput forward(const Tensor& query, const Tensor& key, const Tensor& value,
                          const AttentionMask& mask = {}, bool need_weights = false);
  // As above, returning only the weights of the chosen heads and query rows, [B, heads,
  // rows, S]: on the fused path they are recomputed from its saved log-sum-exp and the rest
  // of the [B, H, T, S] matrix is never built.
  AttentionOutput forward(const Tensor& query, const Tensor& key, const Tensor& value,
                          const AttentionMask& mask, const WeightsSelection& weights);

  bool packed() const { return packed_; }
  int64_t head_dim() const { return head_dim_; }
  uint64_t dropout_step() const { return dropout_step_; }
  void set_dropout_step(uint64_t step) { dropout_step_ = step; }

 private:
  MultiHeadAttentionOptions options_;
  int64_t heads_, kv_heads_, head_dim_, kdim_, vdim_;
  bool packed_;
  Tensor in_proj_weight_, q_proj_weight_, k_proj_weight_, v_proj_weight_, in_proj_bias_;
  std::shared_ptr<Linear> out_proj_;
  uint64_t dropout_step_ = 0;

  AttentionOutput forward_impl(const Tensor& query, const Tensor& key, const Tensor& value,
                               const AttentionMask& mask, const WeightsSelection* weights);
};

}  // namespace heed::nn
