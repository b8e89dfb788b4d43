// Attention modules: parameter registration, initialisation and the forward passes, all
// delegating the attention itself to heed::attention.
#include "heed/nn/attention.h"

#include <cmath>

#include "heed/ops/matmul.h"
#include "heed/ops/shape.h"

namespace heed::nn {

namespace {

// Dropout draws from a key of its own, so it never correlates with the initialisers.
constexpr uint64_t kDropoutKey = 0xd1b54a32d192ed03ull;

// Rank-3 tensor masks of the single-head modules are [B, T, S]: add the head dimension.
AttentionMask with_head_dim(const AttentionMask& mask) {
  AttentionMask m = mask;
  if (m.bool_mask.defined() && m.bool_mask.dim() == 3) m.bool_mask = m.bool_mask.raw_unsqueeze(1);  // [B, 1, T, S]
  if (m.additive_mask.defined() && m.additive_mask.dim() == 3)
    m.additive_mask = unsqueeze(m.additive_mask, 1);  // [B, T, S] -> [B, 1, T, S]
  return m;
}

void check_sequences(const Tensor& query, const Tensor& key, const Tensor& value, const char* op) {
  HEED_CHECK(query.defined() && key.defined() && value.defined(), op, ": undefined query, key or value");
  HEED_CHECK(query.dim() == 3 && key.dim() == 3 && value.dim() == 3, op, ": query ", query.str(), ", key ",
             key.str(), ", value ", value.str(), " expected [B, T, Dq], [B, S, Dk], [B, S, Dv]");
  HEED_CHECK(key.size(0) == query.size(0) && value.size(0) == query.size(0) && key.size(1) == value.size(1), op,
             ": query ", query.str(), ", key ", key.str(), ", value ", value.str(),
             " expected one batch size B and the same number of keys and values S");
}

}  // namespace

// ---- single-head score attentions ----

ScoreAttention::ScoreAttention(AttentionScore score, const ScoreAttentionOptions& options)
    : score_(score), options_(options) {
  HEED_CHECK(options.dropout >= 0 && options.dropout < 1, "attention module: dropout = ", options.dropout,
             " expected in [0, 1)");
}

AttentionOutput ScoreAttention::forward(const Tensor& query, const Tensor& keys, const Tensor& values,
                                        const AttentionMask& mask, bool need_weights) {
  check_sequences(query, keys, values, "attention module");
  AttentionOptions o;
  o.score = score_;
  o.params = score_params();
  o.scale = options_.scale;
  o.weighting = options_.weighting;
  o.mask = with_head_dim(mask);
  o.need_weights = need_weights;
  o.training = training() && options_.dropout > 0;
  if (o.training) {
    o.dropout_p = options_.dropout;
    o.dropout_seed = options_.seed ^ kDropoutKey;
    o.dropout_stream = dropout_step_++;
  }
  AttentionResult r = attention(unsqueeze(query, 1),  // [B, T, Dq] -> [B, 1, T, Dq]
                                unsqueeze(keys, 1),   // [B, S, Dk] -> [B, 1, S, Dk]
                                unsqueeze(values, 1), o);  // [B, S, Dv] -> [B, 1, S, Dv]
  AttentionOutput out;
  out.out = squeeze(r.out, 1);                                  // [B, 1, T, Dv] -> [B, T, Dv]
  if (need_weights) out.weights = squeeze(r.weights, 1);       // [B, 1, T, S] -> [B, T, S]
  return out;
}

DotProductAttention::DotProductAttention(const ScoreAttentionOptions& options)
    : ScoreAttention(AttentionScore::kDot, options) {}

ScaledDotProductAttention::ScaledDotProductAttention(const ScoreAttentionOptions& options)
    : ScoreAttention(AttentionScore::kScaledDot, options) {}

GeneralAttention::GeneralAttention(const GeneralAttentionOptions& o)
    : ScoreAttention(AttentionScore::kGeneral, o.attention) {
  HEED_CHECK(o.query_dim > 0 && o.key_dim > 0, "GeneralAttention: query_dim = ", o.query_dim,
             ", key_dim = ", o.key_dim, " expected positive");
  weight_ = register_parameter("weight", xavier_uniform({o.query_dim, o.key_dim}, o.attention.seed));  // [Dq, Dk]
}

ScoreParams GeneralAttention::score_params() const {
  ScoreParams p;
  p.weight = weight_;
  return p;
}

AdditiveAttention::AdditiveAttention(const AdditiveAttentionOptions& o)
    : ScoreAttention(AttentionScore::kAdditive, o.attention) {
  HEED_CHECK(o.query_dim > 0 && o.key_dim > 0 && o.hidden_dim > 0, "AdditiveAttention: query_dim = ",
             o.query_dim, ", key_dim = ", o.key_dim, ", hidden_dim = ", o.hidden_dim, " expected positive");
  const uint64_t seed = o.attention.seed;
  query_proj_ = register_module(
      "query_proj", std::make_shared<Linear>(LinearOptions{.in = o.query_dim, .out = o.hidden_dim, .bias = false,
                                                           .seed = seed}));  // W1 [A, Dq]
  key_proj_ = register_module(
      "key_proj", std::make_shared<Linear>(LinearOptions{.in = o.key_dim, .out = o.hidden_dim, .bias = false,
                                                         .seed = seed + 1}));  // W2 [A, Dk]
  v_ = register_parameter("v", uniform_bias(o.hidden_dim, o.hidden_dim, seed + 2));  // [A]
}

ScoreParams AdditiveAttention::score_params() const {
  ScoreParams p;
  p.query_weight = query_proj_->weight();
  p.key_weight = key_proj_->weight();
  p.v = v_;
  return p;
}

// ---- multi-head attention ----

MultiHeadAttention::MultiHeadAttention(const MultiHeadAttentionOptions& o) : options_(o) {
  const int64_t c = o.embed_dim;
  heads_ = o.num_heads;
  kv_heads_ = o.num_kv_heads.value_or(o.num_heads);
  kdim_ = o.kdim.value_or(c);
  vdim_ = o.vdim.value_or(c);
  HEED_CHECK(c > 0 && heads_ > 0 && c % heads_ == 0, "MultiHeadAttention: embed_dim = ", c, ", num_heads = ",
             heads_, " expected positive with embed_dim divisible by num_heads");
  HEED_CHECK(kv_heads_ > 0 && heads_ % kv_heads_ == 0, "MultiHeadAttention: num_kv_heads = ", kv_heads_,
             " expected a positive divisor of num_heads = ", heads_);
  HEED_CHECK(kdim_ > 0 && vdim_ > 0, "MultiHeadAttention: kdim = ", kdim_, ", vdim = ", vdim_, " expected positive");
  HEED_CHECK(o.dropout >= 0 && o.dropout < 1, "MultiHeadAttention: dropout = ", o.dropout, " expected in [0, 1)");
  head_dim_ = c / heads_;
  const int64_t kv_width = kv_heads_ * head_dim_;
  packed_ = kdim_ == c && vdim_ == c && kv_heads_ == heads_;
  if (packed_) {
    in_proj_weight_ = register_parameter("in_proj_weight", xavier_uniform({3 * c, c}, o.seed));  // [3C, C]
  } else {
    q_proj_weight_ = register_parameter("q_proj_weight", xavier_uniform({c, c}, o.seed));                 // [C, C]
    k_proj_weight_ = register_parameter("k_proj_weight", xavier_uniform({kv_width, kdim_}, o.seed + 1));  // [Hkv*D, kdim]
    v_proj_weight_ = register_parameter("v_proj_weight", xavier_uniform({kv_width, vdim_}, o.seed + 2));  // [Hkv*D, vdim]
  }
  if (o.bias) in_proj_bias_ = register_parameter("in_proj_bias", Tensor::zeros({c + 2 * kv_width}));  // [C + 2 Hkv*D]
  out_proj_ = register_module(
      "out_proj", std::make_shared<Linear>(LinearOptions{.in = c, .out = c, .bias = o.bias, .seed = o.seed + 3}));
  if (o.bias) {
    Tensor out_bias = out_proj_->bias();  // a handle to the registered parameter
    out_bias.fill_(0.0);
  }
}

AttentionOutput MultiHeadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                            const AttentionMask& mask, bool need_weights) {
  const WeightsSelection all;
  return forward_impl(query, key, value, mask, need_weights ? &all : nullptr);
}

AttentionOutput MultiHeadAttention::forward(const Tensor& query, const Tensor& key, const Tensor& value,
                                            const AttentionMask& mask, const WeightsSelection& weights) {
  return forward_impl(query, key, value, mask, &weights);
}

AttentionOutput MultiHeadAttention::forward_impl(const Tensor& query, const Tensor& key, const Tensor& value,
                                                 const AttentionMask& mask, const WeightsSelection* weights) {
  const char* op = "MultiHeadAttention";
  check_sequences(query, key, value, op);
  const int64_t c = options_.embed_dim, kv_width = kv_heads_ * head_dim_;
  HEED_CHECK(query.size(2) == c && key.size(2) == kdim_ && value.size(2) == vdim_, op, ": query ", query.str(),
             ", key ", key.str(), ", value ", value.str(), " expected widths embed_dim = ", c, ", kdim = ", kdim_,
             ", vdim = ", vdim_);
  const int64_t b = query.size(0), t = query.size(1), s = key.size(1);

  Tensor q, k, v;
  auto bias_part = [&](int64_t start, int64_t len) {  // [len] slice of in_proj_bias, or none
    return in_proj_bias_.defined() ? slice(in_proj_bias_, 0, start, start + len) : Tensor();
  };
  if (packed_ && query.same(key) && key.same(value)) {
    // Self attention: one GEMM for all three projections.
    Tensor qkv = linear(query, in_proj_weight_, in_proj_bias_);  // [B, T, C] -> [B, T, 3C]
    std::vector<Tensor> parts = split(qkv, {c, c, c}, 2);         // 3 x [B, T, C]
    q = parts[0];
    k = parts[1];
    v = parts[2];
  } else {
    Tensor wq = packed_ ? slice(in_proj_weight_, 0, 0, c) : q_proj_weight_;          // [C, C]
    Tensor wk = packed_ ? slice(in_proj_weight_, 0, c, 2 * c) : k_proj_weight_;      // [Hkv*D, kdim]
    Tensor wv = packed_ ? slice(in_proj_weight_, 0, 2 * c, 3 * c) : v_proj_weight_;  // [Hkv*D, vdim]
    q = linear(query, wq, bias_part(0, c));                // [B, T, C] -> [B, T, C]
    k = linear(key, wk, bias_part(c, kv_width));           // [B, S, kdim] -> [B, S, Hkv*D]
    v = linear(value, wv, bias_part(c + kv_width, kv_width));  // [B, S, vdim] -> [B, S, Hkv*D]
  }
  q = permute(reshape(q, {b, t, heads_, head_dim_}), {0, 2, 1, 3});     // [B, T, C] -> [B, H, T, D]
  k = permute(reshape(k, {b, s, kv_heads_, head_dim_}), {0, 2, 1, 3});  // [B, S, Hkv*D] -> [B, Hkv, S, D]
  v = permute(reshape(v, {b, s, kv_heads_, head_dim_}), {0, 2, 1, 3});  // [B, S, Hkv*D] -> [B, Hkv, S, D]

  AttentionOptions o;
  o.mask = mask;
  o.need_weights = weights != nullptr;
  if (weights != nullptr) o.weights_selection = *weights;
  o.path = options_.path;
  o.precision = options_.precision;
  o.training = training() && options_.dropout > 0;
  if (o.training) {
    o.dropout_p = options_.dropout;
    o.dropout_seed = options_.seed ^ kDropoutKey;
    o.dropout_stream = dropout_step_++;
  }
  AttentionResult r = attention(q, k, v, o);                         // [B, H, T, D]
  Tensor merged = reshape(permute(r.out, {0, 2, 1, 3}), {b, t, c});  // [B, H, T, D] -> [B, T, C]
  AttentionOutput out;
  out.out = out_proj_->forward(merged);  // [B, T, C]
  out.weights = r.weights;               // [B, heads, rows, S] when asked for
  return out;
}

}  // namespace heed::nn
