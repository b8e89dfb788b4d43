// Transformer layers and stacks: multi-head attention sublayers over heed::attention, the
// feed-forward block, pre/post-norm residual wiring, and cached incremental decoding.
#include "heed/nn/transformer.h"

#include <cstring>
#include <string>

#include "heed/autograd/graph.h"
#include "heed/nn/positional.h"
#include "heed/ops/attention.h"
#include "heed/ops/dropout.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/matmul.h"
#include "heed/ops/shape.h"

namespace heed::nn {

namespace {

Tensor residual_dropout(const Tensor& x, double p, bool training, uint64_t seed, uint64_t stream) {
  if (!training || p == 0) return x;
  return dropout(x, DropoutOptions{.p = p, .training = true, .seed = seed, .stream = stream});
}

// Dropout streams inside one layer (offsets from TransformerLayerOptions::stream).
constexpr uint64_t kSelfAttnWeights = 0, kSelfAttnOut = 1, kFeedForwardHidden = 2, kFeedForwardOut = 3,
                   kCrossAttnWeights = 4, kCrossAttnOut = 5;

// Distinct initialisation seeds for the parts of a layer.
uint64_t sub_seed(uint64_t seed, uint64_t part) { return seed * 0x9E3779B97F4A7C15ull + part * 0x632BE59BD9B4E019ull + part; }

}  // namespace

// ---------------------------------------------------------------- TransformerAttention

TransformerAttention::TransformerAttention(const TransformerAttentionOptions& o) : options_(o) {
  HEED_CHECK(o.width > 0 && o.heads > 0 && o.width % o.heads == 0, "TransformerAttention: width ", o.width,
             " must be a positive multiple of heads ", o.heads);
  HEED_CHECK(!o.rotary || (o.width / o.heads) % 2 == 0, "TransformerAttention: rotary needs an even head size, got ",
             o.width / o.heads);
  HEED_CHECK(o.dropout >= 0 && o.dropout < 1, "TransformerAttention: dropout must be in [0, 1), got ", o.dropout);
  // As PyTorch: xavier_uniform over the stacked [3C, C] projection, zero biases.
  in_proj_weight_ = register_parameter("in_proj_weight", xavier_uniform({3 * o.width, o.width}, o.seed));
  in_proj_bias_ = register_parameter("in_proj_bias", Tensor::zeros({3 * o.width}));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(LinearOptions{
                                              .in = o.width, .out = o.width, .seed = sub_seed(o.seed, 1)}));
  Tensor out_bias = out_proj_->bias();
  out_bias.fill_(0.0);
}

Tensor TransformerAttention::project(const Tensor& x, int64_t first, int64_t count) const {
  const int64_t c = options_.width;
  Tensor w = slice(in_proj_weight_, 0, first * c, (first + count) * c);  // [count*C, C]
  Tensor b = slice(in_proj_bias_, 0, first * c, (first + count) * c);    // [count*C]
  return linear(x, w, b);  // [B, T, C] -> [B, T, count*C]
}

std::vector<Tensor> TransformerAttention::split_heads(const Tensor& x, int64_t n) const {
  const int64_t b = x.size(0), t = x.size(1), h = options_.heads, d = head_dim();
  if (n == 1) return {permute(reshape(x, {b, t, h, d}), {0, 2, 1, 3})};  // [B, T, C] -> [B, H, T, D]
  Tensor x5 = reshape(x, {b, t, n, h, d});  // [B, T, n*C] -> [B, T, n, H, D]
  std::vector<Tensor> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back(permute(squeeze(slice(x5, 2, i, i + 1), 2), {0, 2, 1, 3}));  // -> [B, H, T, D]
  return out;
}

Tensor TransformerAttention::merge_heads(const Tensor& x) const {
  const int64_t b = x.size(0), t = x.size(2);
  Tensor y = reshape(permute(x, {0, 2, 1, 3}), {b, t, options_.width});  // [B, H, T, D] -> [B, T, C]
  return out_proj_->forward(y);
}

Tensor TransformerAttention::forward_self(const Tensor& x, const AttentionMask& mask, uint64_t seed) const {
  HEED_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options_.width, "TransformerAttention: expected x [B, T, ",
             options_.width, "], got ", x.str());
  // Three projections rather than one [B, T, 3C] GEMM split afterwards: slicing the fused
  // result would make each part's backward fill and add a full [B, T, 3C] gradient.
  Tensor q = split_heads(project(x, 0, 1), 1)[0];  // [B, H, T, D]
  Tensor k = split_heads(project(x, 1, 1), 1)[0];
  Tensor v = split_heads(project(x, 2, 1), 1)[0];
  if (options_.rotary) {
    q = apply_rotary(q, {.base = options_.rotary_base});
    k = apply_rotary(k, {.base = options_.rotary_base});
  }
  AttentionOptions ao{.mask = mask, .dropout_p = options_.dropout, .dropout_seed = seed,
                      .dropout_stream = options_.stream, .training = training()};
  return merge_heads(attention(q, k, v, ao).out);  // [B, H, T, D] -> [B, T, C]
}

Tensor TransformerAttention::forward_cross(const Tensor& x, const Tensor& memory, const AttentionMask& mask,
                                         uint64_t seed) const {
  HEED_CHECK(x.defined() && x.dim() == 3 && x.size(2) == options_.width && memory.defined() && memory.dim() == 3 &&
                 memory.size(2) == options_.width && memory.size(0) == x.size(0),
             "TransformerAttention: expected x [B, T, ", options_.width, "] and memory [B, S, ", options_.width,
             "], got ", x.str(), " and ", memory.str());
  Tensor q = split_heads(project(x, 0, 1), 1)[0];       // [B, H, T, D]
  Tensor k = split_heads(project(memory, 1, 1), 1)[0];  // [B, H, S, D]
  Tensor v = split_heads(project(memory, 2, 1), 1)[0];
  AttentionOptions ao{.mask = mask, .dropout_p = options_.dropout, .dropout_seed = seed,
                      .dropout_stream = options_.stream, .training = training()};
  return merge_heads(attention(q, k, v, ao).out);
}

AttentionCache TransformerAttention::project_memory(const Tensor& memory) const {
  autograd::NoGradGuard no_grad;
  std::vector<Tensor> kv = split_heads(project(memory, 1, 2), 2);  // 2 x [B, H, S, D]
  return AttentionCache{.k = kv[0].raw_contiguous(), .v = kv[1].raw_contiguous(), .length = memory.size(1)};
}

Tensor TransformerAttention::forward_cross_cached(const Tensor& x, const AttentionCache& kv,
                                                const AttentionMask& mask) const {
  autograd::NoGradGuard no_grad;
  Tensor q = split_heads(project(x, 0, 1), 1)[0];  // [B, H, T, D]
  return merge_heads(attention(q, kv.k, kv.v, AttentionOptions{.mask = mask}).out);
}

Tensor TransformerAttention::forward_self_cached(const Tensor& x, AttentionCache& cache, int64_t capacity) const {
  autograd::NoGradGuard no_grad;
  const int64_t b = x.size(0), t = x.size(1), past = cache.length;
  std::vector<Tensor> qkv = split_heads(project(x, 0, 3), 3);  // 3 x [B, H, T, D]
  Tensor q = qkv[0], k = qkv[1];
  if (options_.rotary) {
    q = apply_rotary(q, {.base = options_.rotary_base, .offset = past});
    k = apply_rotary(k, {.base = options_.rotary_base, .offset = past});
  }
  if (!cache.k.defined()) {
    cache.k = Tensor::zeros({b, options_.heads, capacity, head_dim()}, x.dtype());  // [B, H, cap, D]
    cache.v = Tensor::zeros({b, options_.heads, capacity, head_dim()}, x.dtype());
  }
  HEED_CHECK(cache.k.size(0) == b, "TransformerAttention: cache holds ", cache.k.size(0), " sequences, input has ", b);
  HEED_CHECK(past + t <= cache.k.size(2), "TransformerAttention: cache capacity ", cache.k.size(2),
             " exceeded (", past, " cached + ", t, " new positions)");
  cache.k.raw_slice(2, past, past + t).copy_from(k);
  cache.v.raw_slice(2, past, past + t).copy_from(qkv[2]);
  cache.length = past + t;
  Tensor keys = cache.k.raw_slice(2, 0, past + t), values = cache.v.raw_slice(2, 0, past + t);  // [B, H, past+T, D]
  AttentionMask mask;
  if (t > 1) mask = AttentionMask{.causal = true, .causal_offset = past};
  return merge_heads(attention(q, keys, values, AttentionOptions{.mask = mask}).out);
}

// ---------------------------------------------------------------- layers

namespace {

void check_layer_options(const TransformerLayerOptions& o, const char* who) {
  HEED_CHECK(o.width > 0 && o.heads > 0 && o.ff_width > 0, who, ": width, heads and ff_width must be positive, got ",
             o.width, ", ", o.heads, ", ", o.ff_width);
  for (double p : {o.dropout, o.attention_dropout, o.activation_dropout})
    HEED_CHECK(p >= 0 && p < 1, who, ": dropout probabilities must be in [0, 1), got ", p);
}

TransformerAttentionOptions attention_options(const TransformerLayerOptions& o, bool rotary, uint64_t part,
                                            uint64_t stream) {
  return TransformerAttentionOptions{.width = o.width, .heads = o.heads, .dropout = o.attention_dropout,
                                   .rotary = rotary, .seed = sub_seed(o.seed, part), .stream = o.stream + stream};
}

}  // namespace

TransformerEncoderLayer::TransformerEncoderLayer(const TransformerLayerOptions& o) : options_(o) {
  check_layer_options(o, "TransformerEncoderLayer");
  self_attn_ = register_module("self_attn", std::make_shared<TransformerAttention>(
                                                attention_options(o, o.rotary, 1, kSelfAttnWeights)));
  linear1_ = register_module("linear1", std::make_shared<Linear>(LinearOptions{
                                            .in = o.width, .out = o.ff_width, .seed = sub_seed(o.seed, 3)}));
  linear2_ = register_module("linear2", std::make_shared<Linear>(LinearOptions{
                                            .in = o.ff_width, .out = o.width, .seed = sub_seed(o.seed, 4)}));
  norm1_ = register_module("norm1", std::make_shared<LayerNorm>(LayerNormOptions{.width = o.width,
                                                                                 .eps = o.layer_norm_eps}));
  norm2_ = register_module("norm2", std::make_shared<LayerNorm>(LayerNormOptions{.width = o.width,
                                                                                 .eps = o.layer_norm_eps}));
}

Tensor TransformerEncoderLayer::forward(const Tensor& x, const AttentionMask& mask, uint64_t seed) const {
  const TransformerLayerOptions& o = options_;
  const bool tr = training();
  auto attn = [&](const Tensor& h) {
    return residual_dropout(self_attn_->forward_self(h, mask, seed), o.dropout, tr, seed, o.stream + kSelfAttnOut);
  };
  auto ff = [&](const Tensor& h) {
    Tensor y = feed_forward(h, *linear1_, *linear2_, o.activation, o.activation_dropout, tr, seed,
                            o.stream + kFeedForwardHidden);
    return residual_dropout(y, o.dropout, tr, seed, o.stream + kFeedForwardOut);
  };
  if (o.norm_first) {
    Tensor h = add(x, attn(norm1_->forward(x)));  // [B, S, C]
    return add(h, ff(norm2_->forward(h)));
  }
  Tensor h = norm1_->forward(add(x, attn(x)));
  return norm2_->forward(add(h, ff(h)));
}

TransformerDecoderLayer::TransformerDecoderLayer(const TransformerLayerOptions& o) : options_(o) {
  check_layer_options(o, "TransformerDecoderLayer");
  self_attn_ = register_module("self_attn", std::make_shared<TransformerAttention>(
                                                attention_options(o, o.rotary, 1, kSelfAttnWeights)));
  multihead_attn_ = register_module("multihead_attn", std::make_shared<TransformerAttention>(
                                                          attention_options(o, false, 2, kCrossAttnWeights)));
  linear1_ = register_module("linear1", std::make_shared<Linear>(LinearOptions{
                                            .in = o.width, .out = o.ff_width, .seed = sub_seed(o.seed, 3)}));
  linear2_ = register_module("linear2", std::make_shared<Linear>(LinearOptions{
                                            .in = o.ff_width, .out = o.width, .seed = sub_seed(o.seed, 4)}));
  const LayerNormOptions ln{.width = o.width, .eps = o.layer_norm_eps};
  norm1_ = register_module("norm1", std::make_shared<LayerNorm>(ln));
  norm2_ = register_module("norm2", std::make_shared<LayerNorm>(ln));
  norm3_ = register_module("norm3", std::make_shared<LayerNorm>(ln));
}

Tensor TransformerDecoderLayer::feed_forward_block(const Tensor& h, uint64_t seed) const {
  const TransformerLayerOptions& o = options_;
  const bool tr = training();
  Tensor y = feed_forward(h, *linear1_, *linear2_, o.activation, o.activation_dropout, tr, seed,
                          o.stream + kFeedForwardHidden);
  return residual_dropout(y, o.dropout, tr, seed, o.stream + kFeedForwardOut);
}

Tensor TransformerDecoderLayer::forward(const Tensor& x, const Tensor& memory, const AttentionMask& memory_mask,
                                        uint64_t seed) const {
  const TransformerLayerOptions& o = options_;
  const bool tr = training();
  const AttentionMask causal{.causal = true};
  auto self_block = [&](const Tensor& h) {
    return residual_dropout(self_attn_->forward_self(h, causal, seed), o.dropout, tr, seed, o.stream + kSelfAttnOut);
  };
  auto cross_block = [&](const Tensor& h) {
    return residual_dropout(multihead_attn_->forward_cross(h, memory, memory_mask, seed), o.dropout, tr, seed,
                            o.stream + kCrossAttnOut);
  };
  if (o.norm_first) {
    Tensor h = add(x, self_block(norm1_->forward(x)));  // [B, T, C]
    h = add(h, cross_block(norm2_->forward(h)));
    return add(h, feed_forward_block(norm3_->forward(h), seed));
  }
  Tensor h = norm1_->forward(add(x, self_block(x)));
  h = norm2_->forward(add(h, cross_block(h)));
  return norm3_->forward(add(h, feed_forward_block(h, seed)));
}

void TransformerDecoderLayer::start(const Tensor& memory, DecoderLayerCache& cache) const {
  cache.cross_attn = multihead_attn_->project_memory(memory);
  cache.self_attn = AttentionCache{};
}

Tensor TransformerDecoderLayer::forward_cached(const Tensor& x, DecoderLayerCache& cache,
                                               const AttentionMask& memory_mask, int64_t capacity) const {
  autograd::NoGradGuard no_grad;
  auto ff = [&](const Tensor& h) {
    return feed_forward(h, *linear1_, *linear2_, options_.activation, 0.0, false, 0, 0);
  };
  if (options_.norm_first) {
    Tensor h = add(x, self_attn_->forward_self_cached(norm1_->forward(x), cache.self_attn, capacity));
    h = add(h, multihead_attn_->forward_cross_cached(norm2_->forward(h), cache.cross_attn, memory_mask));
    return add(h, ff(norm3_->forward(h)));
  }
  Tensor h = norm1_->forward(add(x, self_attn_->forward_self_cached(x, cache.self_attn, capacity)));
  h = norm2_->forward(add(h, multihead_attn_->forward_cross_cached(h, cache.cross_attn, memory_mask)));
  return norm3_->forward(add(h, ff(h)));
}

// ---------------------------------------------------------------- stacks

namespace {

TransformerLayerOptions layer_options(const TransformerStackOptions& o, int64_t i) {
  TransformerLayerOptions l = o.layer;
  l.seed = sub_seed(o.layer.seed, 100 + static_cast<uint64_t>(i));
  l.stream = o.layer.stream + static_cast<uint64_t>(i) * kStreamsPerLayer;
  return l;
}

}  // namespace

TransformerEncoder::TransformerEncoder(const TransformerStackOptions& o) {
  HEED_CHECK(o.layers >= 0, "TransformerEncoder: layers must be >= 0, got ", o.layers);
  for (int64_t i = 0; i < o.layers; ++i)
    layers_.push_back(register_module("layers." + std::to_string(i),
                                      std::make_shared<TransformerEncoderLayer>(layer_options(o, i))));
  if (o.final_norm)
    norm_ = register_module("norm", std::make_shared<LayerNorm>(LayerNormOptions{.width = o.layer.width,
                                                                                 .eps = o.layer.layer_norm_eps}));
}

Tensor TransformerEncoder::forward(const Tensor& x, const AttentionMask& mask, uint64_t seed) const {
  Tensor h = x;
  for (const auto& layer : layers_) h = layer->forward(h, mask, seed);
  return norm_ ? norm_->forward(h) : h;
}

TransformerDecoder::TransformerDecoder(const TransformerStackOptions& o) {
  HEED_CHECK(o.layers >= 0, "TransformerDecoder: layers must be >= 0, got ", o.layers);
  for (int64_t i = 0; i < o.layers; ++i)
    layers_.push_back(register_module("layers." + std::to_string(i),
                                      std::make_shared<TransformerDecoderLayer>(layer_options(o, i))));
  if (o.final_norm)
    norm_ = register_module("norm", std::make_shared<LayerNorm>(LayerNormOptions{.width = o.layer.width,
                                                                                 .eps = o.layer.layer_norm_eps}));
}

Tensor TransformerDecoder::forward(const Tensor& x, const Tensor& memory, const AttentionMask& memory_mask,
                                   uint64_t seed) const {
  Tensor h = x;
  for (const auto& layer : layers_) h = layer->forward(h, memory, memory_mask, seed);
  return norm_ ? norm_->forward(h) : h;
}

DecoderCache TransformerDecoder::start(const Tensor& memory, int64_t capacity) const {
  HEED_CHECK(capacity > 0, "TransformerDecoder: cache capacity must be positive, got ", capacity);
  DecoderCache cache;
  cache.capacity = capacity;
  cache.layers.resize(layers_.size());
  for (size_t i = 0; i < layers_.size(); ++i) layers_[i]->start(memory, cache.layers[i]);
  return cache;
}

Tensor TransformerDecoder::forward_cached(const Tensor& x, DecoderCache& cache,
                                          const AttentionMask& memory_mask) const {
  autograd::NoGradGuard no_grad;
  HEED_CHECK(cache.layers.size() == layers_.size(), "TransformerDecoder: cache has ", cache.layers.size(),
             " layers, the decoder ", layers_.size(), " (use start())");
  Tensor h = x;
  for (size_t i = 0; i < layers_.size(); ++i) h = layers_[i]->forward_cached(h, cache.layers[i], memory_mask,
                                                                            cache.capacity);
  cache.length += x.size(1);
  return norm_ ? norm_->forward(h) : h;
}

namespace {

// Rows `index` of a contiguous tensor along dimension 0, copied whole (no gradient).
Tensor gather_rows(const Tensor& t, const std::vector<int64_t>& index) {
  Tensor src = t.raw_contiguous();
  Shape shape = src.shape();
  const int64_t rows = shape[0];
  shape[0] = static_cast<int64_t>(index.size());
  Tensor out = Tensor::empty(shape, src.dtype());
  const size_t row_bytes = static_cast<size_t>(rows > 0 ? src.numel() / rows : 0) * dtype_size(src.dtype());
  const auto* from = static_cast<const char*>(src.raw_data());
  auto* to = static_cast<char*>(out.raw_data());
  for (size_t i = 0; i < index.size(); ++i) {
    HEED_CHECK(index[i] >= 0 && index[i] < rows, "DecoderCache: row ", index[i], " out of range for ", rows, " rows");
    std::memcpy(to + i * row_bytes, from + index[i] * row_bytes, row_bytes);
  }
  return out;
}

}  // namespace

void DecoderCache::reorder(const Tensor& index, bool self_only) {
  HEED_CHECK(index.defined() && index.dtype() == DType::kI64 && index.dim() == 1,
             "DecoderCache: reorder index must be i64 [B'], got ", index.str());
  const std::vector<int64_t> rows = index.to_vector<int64_t>();
  auto pick = [&](Tensor& t) {
    if (t.defined()) t = gather_rows(t, rows);
  };
  for (DecoderLayerCache& l : layers) {
    pick(l.self_attn.k);
    pick(l.self_attn.v);
    if (self_only) continue;
    pick(l.cross_attn.k);
    pick(l.cross_attn.v);
  }
}

}  // namespace heed::nn
