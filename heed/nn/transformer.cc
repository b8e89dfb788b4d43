// Transformer layers and stacks: multi-head attention sublayers over heed::attention, the
// feed-forward block, pre/post-norm residual wiring, and cached incremental decoding.
#include "heed/nn/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/flash_attention.h"
#include "heed/kernels/cpu/gemm.h"
#include "heed/kernels/cpu/layer_norm_cpu.h"
#include "heed/nn/positional.h"
#include "heed/ops/attention.h"
#include "heed/ops/dropout.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/matmul.h"
#include "heed/ops/shape.h"

namespace heed::nn {

namespace {

// r + dropout(branch): a residual connection (dropout_add: one pass in training).
Tensor residual(const Tensor& r, const Tensor& branch, double p, bool training, uint64_t seed, uint64_t stream) {
  return dropout_add(r, branch, DropoutOptions{.p = p, .training = training, .seed = seed, .stream = stream});
}

// Dropout streams inside one layer (offsets from TransformerLayerOptions::stream).
constexpr uint64_t kSelfAttnWeights = 0, kSelfAttnOut = 1, kFeedForwardHidden = 2, kFeedForwardOut = 3,
                   kCrossAttnWeights = 4, kCrossAttnOut = 5;

// r + dropout(feed_forward(h)): the feed-forward sub-block of both layer kinds.
Tensor feed_forward_block(const TransformerLayerOptions& o, const Linear& linear1, const Linear& linear2,
                          bool training, const Tensor& r, const Tensor& h, uint64_t seed) {
  Tensor y = feed_forward(h, linear1, linear2, o.activation, o.activation_dropout, training, seed,
                          o.stream + kFeedForwardHidden);
  return residual(r, y, o.dropout, training, seed, o.stream + kFeedForwardOut);
}

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
  return merge_heads(attend(q, k, v, mask, seed));  // [B, H, T, D] -> [B, T, C]
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
  return merge_heads(attend(q, k, v, mask, seed));
}

void TransformerAttention::capture_weights(const WeightsSelection& selection) {
  for (int64_t h : selection.heads)
    HEED_CHECK(0 <= h && h < options_.heads, "TransformerAttention::capture_weights: head ", h,
               " expected within [0, ", options_.heads, ")");
  capture_ = selection;
  captured_ = Tensor();
}

Tensor TransformerAttention::attend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMask& mask,
                                    uint64_t seed) const {
  AttentionOptions ao{.mask = mask, .dropout_p = options_.dropout, .dropout_seed = seed,
                      .dropout_stream = options_.stream, .training = training()};
  if (capture_) {
    ao.need_weights = true;
    ao.weights_selection = *capture_;
  }
  AttentionResult r = attention(q, k, v, ao);  // out [B, H, T, D]
  if (capture_) captured_ = r.weights.detach();  // [B, heads, rows, S]
  return r.out;
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
  // r + dropout(block(h)) for each sub-block.
  auto attn = [&](const Tensor& r, const Tensor& h) {
    return residual(r, self_attn_->forward_self(h, mask, seed), o.dropout, tr, seed, o.stream + kSelfAttnOut);
  };
  auto ff = [&](const Tensor& r, const Tensor& h) { return feed_forward_block(o, *linear1_, *linear2_, tr, r, h, seed); };
  if (o.norm_first) {
    Tensor h = attn(x, norm1_->forward(x));  // [B, S, C]
    return ff(h, norm2_->forward(h));
  }
  Tensor h = norm1_->forward(attn(x, x));
  return norm2_->forward(ff(h, h));
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

Tensor TransformerDecoderLayer::forward(const Tensor& x, const Tensor& memory, const AttentionMask& memory_mask,
                                        uint64_t seed) const {
  const TransformerLayerOptions& o = options_;
  const bool tr = training();
  const AttentionMask causal{.causal = true};
  auto self_block = [&](const Tensor& r, const Tensor& h) {
    return residual(r, self_attn_->forward_self(h, causal, seed), o.dropout, tr, seed, o.stream + kSelfAttnOut);
  };
  auto cross_block = [&](const Tensor& r, const Tensor& h) {
    return residual(r, multihead_attn_->forward_cross(h, memory, memory_mask, seed), o.dropout, tr, seed,
                    o.stream + kCrossAttnOut);
  };
  auto ff = [&](const Tensor& r, const Tensor& h) { return feed_forward_block(o, *linear1_, *linear2_, tr, r, h, seed); };
  if (o.norm_first) {
    Tensor h = self_block(x, norm1_->forward(x));  // [B, T, C]
    h = cross_block(h, norm2_->forward(h));
    return ff(h, norm3_->forward(h));
  }
  Tensor h = norm1_->forward(self_block(x, x));
  h = norm2_->forward(cross_block(h, h));
  return norm3_->forward(ff(h, h));
}

void TransformerDecoderLayer::start(const Tensor& memory, DecoderLayerCache& cache) const {
  cache.cross_attn = multihead_attn_->project_memory(memory);
  cache.self_attn = AttentionCache{};
}

Tensor TransformerDecoderLayer::forward_cached(const Tensor& x, DecoderLayerCache& cache,
                                               const AttentionMask& memory_mask, int64_t capacity) const {
  autograd::NoGradGuard no_grad;
  if (fused_step_applies(x, memory_mask)) return fused_step(x, cache, memory_mask, capacity);
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

// ---------------------------------------------------------------- fused one-position step

namespace {

namespace kc = kernels::cpu;

// y[rows, out] = x[rows, in] w[out, in]^T, then + b per row: the product and the bias sum
// rounded as heed::linear rounds them.
void affine(const float* x, int64_t rows, int64_t in, const Tensor& w, const Tensor& b, int64_t w_row0,
            int64_t out, float* y) {
  const float* wp = w.data<float>() + w_row0 * in;
  kc::gemm(kc::GemmParams{.trans_a = false, .trans_b = true, .m = rows, .n = out, .k = in, .lda = in, .ldb = in,
                          .ldc = out},
           x, wp, y);
  if (!b.defined()) return;
  const float* bp = b.data<float>() + w_row0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < out; ++j) y[r * out + j] += bp[j];
}

// out[b, h*D + d] = softmax(q k^T / sqrt(D)) v for one query per (b, h), over S cached
// keys [B, H, cap, D] (cap >= S); q rows q_row apart; optional key lengths.
void attend_one(const float* q, int64_t q_row, const Tensor& k, const Tensor& v, int64_t batch, int64_t heads,
                int64_t keys, int64_t d, const int64_t* key_lengths, float* out) {
  kc::FlashParams p;
  p.batch = batch;
  p.q_heads = p.kv_heads = heads;
  p.q_len = 1;
  p.kv_len = keys;
  p.head_dim = p.v_head_dim = d;
  p.q = q;
  p.q_strides = {q_row, d, q_row, 1};
  p.k = k.data<float>();
  p.k_strides = {k.stride(0), k.stride(1), k.stride(2), k.stride(3)};
  p.v = v.data<float>();
  p.v_strides = {v.stride(0), v.stride(1), v.stride(2), v.stride(3)};
  p.out = out;
  p.out_strides = {heads * d, d, heads * d, 1};
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  p.mask.key_lengths = key_lengths;
  kc::flash_attention_forward(p);
}

void layer_norm_rows(const float* x, int64_t rows, int64_t n, const LayerNorm& norm, double eps, float* y,
                     std::vector<double>& stats) {
  stats.resize(2 * static_cast<size_t>(rows));
  const float* w = norm.weight().defined() ? norm.weight().data<float>() : nullptr;
  const float* bias = norm.bias().defined() ? norm.bias().data<float>() : nullptr;
  kc::layer_norm_forward(kc::LayerNormParams{.rows = rows, .n = n, .eps = eps}, x, w, bias, y, stats.data(),
                         stats.data() + rows);
}

bool plain_contiguous_f32(const Tensor& t) { return t.defined() && t.dtype() == DType::kF32 && t.is_contiguous(); }

}  // namespace

bool TransformerDecoderLayer::fused_step_applies(const Tensor& x, const AttentionMask& memory_mask) const {
  const AttentionMask& m = memory_mask;
  const bool lengths_only = !m.causal && m.window_left < 0 && m.window_right < 0 && !m.bool_mask.defined() &&
                            !m.additive_mask.defined() &&
                            (!m.key_lengths.defined() || m.key_lengths.dtype() == DType::kI64);
  return x.defined() && x.dtype() == DType::kF32 && x.dim() == 3 && x.size(1) == 1 && !options_.rotary && lengths_only &&
         plain_contiguous_f32(self_attn_->in_proj_weight()) && plain_contiguous_f32(multihead_attn_->in_proj_weight()) &&
         plain_contiguous_f32(linear1_->weight()) && plain_contiguous_f32(linear2_->weight()) &&
         plain_contiguous_f32(self_attn_->out_proj().weight()) && plain_contiguous_f32(multihead_attn_->out_proj().weight());
}

Tensor TransformerDecoderLayer::fused_step(const Tensor& x_in, DecoderLayerCache& cache,
                                           const AttentionMask& memory_mask, int64_t capacity) const {
  const TransformerLayerOptions& o = options_;
  const int64_t b = x_in.size(0), c = o.width, h = o.heads, d = c / h, f = o.ff_width;
  AttentionCache& self = cache.self_attn;
  const int64_t past = self.length;
  if (!self.k.defined()) {
    self.k = Tensor::zeros({b, h, capacity, d});  // [B, H, cap, D]
    self.v = Tensor::zeros({b, h, capacity, d});
  }
  HEED_CHECK(self.k.size(0) == b, "TransformerAttention: cache holds ", self.k.size(0), " sequences, input has ", b);
  HEED_CHECK(self.k.is_contiguous() && self.v.is_contiguous() && self.v.stride(2) == self.k.stride(2),
             "TransformerAttention: expected contiguous key/value caches, got ", self.k.str(), " and ", self.v.str());
  HEED_CHECK(past + 1 <= self.k.size(2), "TransformerAttention: cache capacity ", self.k.size(2),
             " exceeded (", past, " cached + 1 new position)");
  Tensor key_lengths = memory_mask.key_lengths.defined() ? memory_mask.key_lengths.raw_contiguous() : Tensor();
  const int64_t* lengths = key_lengths.defined() ? key_lengths.data<int64_t>() : nullptr;

  // Buffers: the running activation x and its normalised copy u [B, C], the projections
  // qkv [B, 3C] (or q), attention output a [B, C], feed-forward hidden [B, F].
  Tensor out = Tensor::empty({b, 1, c});  // [B, 1, C]; becomes the layer's output
  out.copy_from(x_in);
  std::vector<float> scratch(b * (6 * c + f));  // one allocation, carved below
  float* u = scratch.data();
  float* qkv = u + b * c;
  float* a = qkv + b * 3 * c;
  float* y = a + b * c;
  float* hidden = y + b * c;
  std::vector<double> stats;
  float* x = out.data<float>();
  auto residual = [&](const float* delta, const LayerNorm& norm) {  // x = x + delta (post-norm: then normalised)
    for (int64_t i = 0; i < b * c; ++i) x[i] += delta[i];
    if (o.norm_first) return;
    layer_norm_rows(x, b, c, norm, o.layer_norm_eps, u, stats);
    std::memcpy(x, u, sizeof(float) * b * c);
  };
  auto sublayer_input = [&](const LayerNorm& norm) -> const float* {  // pre-norm: LN(x); post-norm: x
    if (!o.norm_first) return x;
    layer_norm_rows(x, b, c, norm, o.layer_norm_eps, u, stats);
    return u;
  };

  // Self-attention: project q, k, v; append k, v at position `past`; attend over past + 1 keys.
  {
    const float* in = sublayer_input(*norm1_);
    const TransformerAttention& sa = *self_attn_;
    affine(in, b, c, sa.in_proj_weight(), sa.in_proj_bias(), 0, 3 * c, qkv);
    float* kc_ = self.k.data<float>();
    float* vc_ = self.v.data<float>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t hh = 0; hh < h; ++hh) {  // the cache is [B, H, cap, D], its rows unit-stride
        const int64_t at = i * self.k.stride(0) + hh * self.k.stride(1) + past * self.k.stride(2);
        std::memcpy(kc_ + at, qkv + i * 3 * c + c + hh * d, sizeof(float) * d);
        std::memcpy(vc_ + at, qkv + i * 3 * c + 2 * c + hh * d, sizeof(float) * d);
      }
    self.length = past + 1;
    attend_one(qkv, 3 * c, self.k, self.v, b, h, past + 1, d, nullptr, a);
    affine(a, b, c, sa.out_proj().weight(), sa.out_proj().bias(), 0, c, y);
    residual(y, *norm1_);
  }
  // Cross-attention over the memory's keys/values, computed once in start().
  {
    const float* in = sublayer_input(*norm2_);
    const TransformerAttention& ca = *multihead_attn_;
    affine(in, b, c, ca.in_proj_weight(), ca.in_proj_bias(), 0, c, qkv);
    const AttentionCache& mem = cache.cross_attn;
    attend_one(qkv, c, mem.k, mem.v, b, h, mem.k.size(2), d, lengths, a);
    affine(a, b, c, ca.out_proj().weight(), ca.out_proj().bias(), 0, c, y);
    residual(y, *norm2_);
  }
  // Feed-forward.
  {
    const float* in = sublayer_input(*norm3_);
    affine(in, b, c, linear1_->weight(), linear1_->bias(), 0, f, hidden);
    if (o.activation == Activation::kRelu) {
      for (int64_t i = 0; i < b * f; ++i) hidden[i] = hidden[i] > 0.0f ? hidden[i] : 0.0f;
    } else {
      constexpr float kInvSqrt2 = 0.70710678118654752440f;
      for (int64_t i = 0; i < b * f; ++i) hidden[i] = 0.5f * hidden[i] * (1 + std::erf(hidden[i] * kInvSqrt2));
    }
    affine(hidden, b, f, linear2_->weight(), linear2_->bias(), 0, c, y);
    residual(y, *norm3_);
  }
  return out;
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

// Rows `index` of the cache t [B, H, cap, D], positions [0, used) only, gathered into `spare`
// (kept when its shape still fits, so steady-state beam search allocates nothing), which then
// becomes t; the old t becomes the spare. Positions >= used are never read.
void gather_rows(Tensor& t, Tensor& spare, const std::vector<int64_t>& index, int64_t used) {
  HEED_CHECK(t.dim() == 4 && t.is_contiguous(), "DecoderCache: expected a contiguous [B, H, cap, D] cache, got ",
             t.str());
  const int64_t rows = t.size(0), heads = t.size(1), cap = t.size(2), d = t.size(3);
  Shape shape = t.shape();
  shape[0] = static_cast<int64_t>(index.size());
  if (!spare.defined() || spare.shape() != shape || spare.dtype() != t.dtype() || spare.raw_data() == t.raw_data())
    spare = Tensor::empty(shape, t.dtype());
  const size_t elem = dtype_size(t.dtype());
  const size_t span = static_cast<size_t>(std::min(used, cap) * d) * elem, head_bytes = static_cast<size_t>(cap * d) * elem;
  const auto* from = static_cast<const char*>(t.raw_data());
  auto* to = static_cast<char*>(spare.raw_data());
  for (size_t i = 0; i < index.size(); ++i) {
    HEED_CHECK(index[i] >= 0 && index[i] < rows, "DecoderCache: row ", index[i], " out of range for ", rows, " rows");
    for (int64_t h = 0; h < heads; ++h)
      std::memcpy(to + (i * heads + h) * head_bytes, from + (index[i] * heads + h) * head_bytes, span);
  }
  std::swap(t, spare);
}

}  // namespace

void DecoderCache::reorder(const Tensor& index, bool self_only) {
  HEED_CHECK(index.defined() && index.dtype() == DType::kI64 && index.dim() == 1,
             "DecoderCache: reorder index must be i64 [B'], got ", index.str());
  const std::vector<int64_t> rows = index.to_vector<int64_t>();
  for (DecoderLayerCache& l : layers) {
    AttentionCache& self = l.self_attn;
    if (self.k.defined()) {
      gather_rows(self.k, self.k_spare, rows, self.length);
      gather_rows(self.v, self.v_spare, rows, self.length);
    }
    if (self_only) continue;
    AttentionCache& cross = l.cross_attn;
    if (cross.k.defined()) {
      gather_rows(cross.k, cross.k_spare, rows, cross.k.size(2));
      gather_rows(cross.v, cross.v_spare, rows, cross.v.size(2));
    }
  }
}

}  // namespace heed::nn
