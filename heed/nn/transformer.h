// Transformer encoder and decoder stacks (Vaswani et al. 2017) with pre- or post-norm
// layers, optional rotary positions in self-attention, and a key/value cache for
// incremental decoding. Parameter names follow torch.nn.Transformer:
//   layers.0.self_attn.{in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias},
//   layers.0.multihead_attn.* (decoder cross-attention), layers.0.linear1/linear2,
//   layers.0.norm1/norm2/norm3, and the stack's final `norm`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "heed/nn/feed_forward.h"
#include "heed/nn/layer_norm.h"
#include "heed/nn/linear.h"
#include "heed/nn/module.h"
#include "heed/ops/attention.h"
#include "heed/ops/attention_mask.h"

namespace heed::nn {

// ---------------------------------------------------------------- attention sublayer

struct TransformerAttentionOptions {
  int64_t width = 0;       // C (query, key and value width)
  int64_t heads = 1;       // H, D = C / H
  double dropout = 0.0;    // on the attention weights, training only
  bool rotary = false;     // rotary positions on q and k (self-attention only)
  double rotary_base = 10000.0;
  uint64_t seed = 0;       // initialisation
  uint64_t stream = 0;     // dropout stream
};

// Per-layer key/value cache for incremental decoding.
struct AttentionCache {
  Tensor k, v;         // [B, H, capacity, D]; rows [0, length) are filled
  int64_t length = 0;  // self-attention: positions decoded so far
  // Where DecoderCache::reorder gathers rows next (the previous k, v): beam search reorders
  // every step, and fresh cache-sized buffers each time cost a page fault per 4 KiB.
  Tensor k_spare, v_spare;
};

// The attention sublayer of the Transformer layers: multi-head scaled dot-product attention
// with torch.nn.MultiheadAttention's packed parameters (in_proj_weight [3C, C] with q, k, v rows
// stacked, in_proj_bias [3C], out_proj Linear C -> C; the same layout as nn::MultiHeadAttention
// in heed/nn/attention.h when packed), plus what that general module lacks: rotary positions on
// q/k, and key/value caches for incremental decoding. Dropout is seeded per call.
class TransformerAttention : public Module {
 public:
  explicit TransformerAttention(const TransformerAttentionOptions& options);

  // Self-attention over x [B, T, C] (rotary positions, when on, start at 0).
  Tensor forward_self(const Tensor& x, const AttentionMask& mask, uint64_t seed) const;
  // Cross-attention of x [B, T, C] over memory [B, S, C].
  Tensor forward_cross(const Tensor& x, const Tensor& memory, const AttentionMask& mask, uint64_t seed) const;

  // Incremental decoding (no dropout, no gradient). Keys/values of memory [B, S, C] for
  // cross-attention, computed once per source: k, v [B, H, S, D].
  AttentionCache project_memory(const Tensor& memory) const;
  // Cross-attention of x [B, T, C] over precomputed keys/values.
  Tensor forward_cross_cached(const Tensor& x, const AttentionCache& kv, const AttentionMask& mask) const;
  // Self-attention of the new positions x [B, T, C] (usually T = 1) over the cached past and
  // themselves; appends their keys/values to `cache` (allocated on first use with `capacity` rows).
  Tensor forward_self_cached(const Tensor& x, AttentionCache& cache, int64_t capacity) const;

  int64_t heads() const { return options_.heads; }
  int64_t head_dim() const { return options_.width / options_.heads; }
  const TransformerAttentionOptions& options() const { return options_; }
  const Tensor& in_proj_weight() const { return in_proj_weight_; }  // [3C, C]: rows q, k, v
  const Tensor& in_proj_bias() const { return in_proj_bias_; }      // [3C]
  const Linear& out_proj() const { return *out_proj_; }

  // Inspection: after capture_weights(selection), forward_self and forward_cross keep the
  // weights of the chosen heads and query rows, [B, heads, rows, S] before dropout, from
  // their latest call (incremental decoding records nothing); WeightsSelection{} is every
  // head and row. On the fused path they are recomputed from the kernel's saved
  // log-sum-exp; the [B, H, T, S] matrix of the rest is never built. Heads are checked
  // here, rows at the forward (against that call's length). The capture is state of the
  // module: two forwards of one module at once while capturing would race on it.
  void capture_weights(const WeightsSelection& selection);
  // Stops capturing and drops what was kept.
  void stop_capture() {
    capture_.reset();
    captured_ = Tensor();
  }
  const Tensor& captured_weights() const { return captured_; }

 private:
  // attention() with this module's dropout and, when capturing, the chosen weights kept.
  Tensor attend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask, uint64_t seed) const;
  // [B, T, n*C] -> n tensors [B, H, T, D] (views).
  std::vector<Tensor> split_heads(const Tensor& x, int64_t n) const;
  // [B, H, T, D] -> out_proj([B, T, C]).
  Tensor merge_heads(const Tensor& x) const;
  Tensor project(const Tensor& x, int64_t first, int64_t count) const;  // rows [first*C, (first+count)*C)

  TransformerAttentionOptions options_;
  Tensor in_proj_weight_, in_proj_bias_;
  std::shared_ptr<Linear> out_proj_;
  std::optional<WeightsSelection> capture_;
  mutable Tensor captured_;
};

// ---------------------------------------------------------------- layers

struct TransformerLayerOptions {
  int64_t width = 256;     // C
  int64_t heads = 4;       // H
  int64_t ff_width = 1024; // F
  double dropout = 0.1;            // residual dropout (after attention and feed-forward)
  double attention_dropout = 0.0;  // on attention weights
  double activation_dropout = 0.0; // inside the feed-forward block
  Activation activation = Activation::kRelu;
  bool norm_first = true;  // pre-norm (x + f(norm(x))); false: post-norm (norm(x + f(x)))
  bool rotary = false;     // rotary positions in self-attention
  double layer_norm_eps = 1e-5;
  uint64_t seed = 0;       // initialisation
  uint64_t stream = 0;     // first of this layer's dropout streams (it uses kStreamsPerLayer)
};

inline constexpr uint64_t kStreamsPerLayer = 8;

class TransformerEncoderLayer : public Module {
 public:
  explicit TransformerEncoderLayer(const TransformerLayerOptions& options);
  // x [B, S, C] -> [B, S, C]; mask over the keys (usually key_lengths).
  Tensor forward(const Tensor& x, const AttentionMask& mask, uint64_t seed) const;
  TransformerAttention& self_attention() { return *self_attn_; }
  const TransformerAttention& self_attention() const { return *self_attn_; }

 private:
  TransformerLayerOptions options_;
  std::shared_ptr<TransformerAttention> self_attn_;
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<LayerNorm> norm1_, norm2_;
};

// Cache for one decoder layer: self-attention past keys/values and cross-attention memory.
struct DecoderLayerCache {
  AttentionCache self_attn;
  AttentionCache cross_attn;
};

class TransformerDecoderLayer : public Module {
 public:
  explicit TransformerDecoderLayer(const TransformerLayerOptions& options);
  // x [B, T, C] (causal self-attention), memory [B, S, C] -> [B, T, C].
  Tensor forward(const Tensor& x, const Tensor& memory, const AttentionMask& memory_mask, uint64_t seed) const;
  // Incremental: x [B, T, C] are the next T positions (usually 1), eval mode only.
  Tensor forward_cached(const Tensor& x, DecoderLayerCache& cache, const AttentionMask& memory_mask,
                        int64_t capacity) const;
  // Fills cache.cross_attn from memory [B, S, C].
  void start(const Tensor& memory, DecoderLayerCache& cache) const;
  TransformerAttention& self_attention() { return *self_attn_; }
  const TransformerAttention& self_attention() const { return *self_attn_; }
  TransformerAttention& cross_attention() { return *multihead_attn_; }
  const TransformerAttention& cross_attention() const { return *multihead_attn_; }

 private:
  // forward_cached for one position (x [B, 1, C], f32), straight on the kernels: a handful
  // of buffers per call instead of a tensor per op (decoding at batch 1 is otherwise
  // dominated by per-op costs). Same arithmetic as the op-by-op path up to GEMM tiling.
  bool fused_step_applies(const Tensor& x, const AttentionMask& memory_mask) const;
  Tensor fused_step(const Tensor& x, DecoderLayerCache& cache, const AttentionMask& memory_mask,
                    int64_t capacity) const;
  TransformerLayerOptions options_;
  std::shared_ptr<TransformerAttention> self_attn_, multihead_attn_;
  std::shared_ptr<Linear> linear1_, linear2_;
  std::shared_ptr<LayerNorm> norm1_, norm2_, norm3_;
};

// ---------------------------------------------------------------- stacks

struct TransformerStackOptions {
  int64_t layers = 3;
  TransformerLayerOptions layer;
  bool final_norm = true;  // the stack's `norm` (needed for pre-norm; nn.Transformer always has it)
};

class TransformerEncoder : public Module {
 public:
  explicit TransformerEncoder(const TransformerStackOptions& options);
  Tensor forward(const Tensor& x, const AttentionMask& mask, uint64_t seed) const;  // [B, S, C]
  int64_t layer_count() const { return static_cast<int64_t>(layers_.size()); }
  TransformerEncoderLayer& layer(int64_t i) { return *layers_.at(static_cast<size_t>(i)); }
  const TransformerEncoderLayer& layer(int64_t i) const { return *layers_.at(static_cast<size_t>(i)); }

 private:
  std::vector<std::shared_ptr<TransformerEncoderLayer>> layers_;
  std::shared_ptr<LayerNorm> norm_;
};

struct DecoderCache {
  std::vector<DecoderLayerCache> layers;
  int64_t capacity = 0;  // most positions the self-attention cache holds
  int64_t length = 0;    // positions decoded so far
  // Keeps batch rows `index` (i64 [B']) of every cached tensor, in that order (beam search).
  // With self_only, the cross-attention keys/values stay as they are: right when every new
  // row i reads the same source as old row i did (beams of one source trading places).
  void reorder(const Tensor& index, bool self_only = false);
};

class TransformerDecoder : public Module {
 public:
  explicit TransformerDecoder(const TransformerStackOptions& options);
  Tensor forward(const Tensor& x, const Tensor& memory, const AttentionMask& memory_mask, uint64_t seed) const;
  // A cache for decoding up to `capacity` positions against memory [B, S, C].
  DecoderCache start(const Tensor& memory, int64_t capacity) const;
  // The next positions x [B, T, C] given the cache; advances cache.length by T.
  Tensor forward_cached(const Tensor& x, DecoderCache& cache, const AttentionMask& memory_mask) const;
  int64_t layer_count() const { return static_cast<int64_t>(layers_.size()); }
  TransformerDecoderLayer& layer(int64_t i) { return *layers_.at(static_cast<size_t>(i)); }
  const TransformerDecoderLayer& layer(int64_t i) const { return *layers_.at(static_cast<size_t>(i)); }

 private:
  std::vector<std::shared_ptr<TransformerDecoderLayer>> layers_;
  std::shared_ptr<LayerNorm> norm_;
};

}  // namespace heed::nn
