// Transformer encoder-decoder: embeddings, positions, stacks and the output projection.
#include "heed/models/transformer_seq2seq.h"

#include <cmath>

#include "heed/autograd/graph.h"
#include "heed/ops/dropout.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/matmul.h"
#include "heed/ops/shape.h"

namespace heed::models {

namespace {

// Dropout streams of the embedding layers; the stacks' layers start at kFirstLayerStream.
constexpr uint64_t kSrcEmbedStream = 1, kTgtEmbedStream = 2, kFirstLayerStream = 16;

void check_ids(const Tensor& ids, const char* what) {
  HEED_CHECK(ids.defined() && ids.dtype() == DType::kI64 && ids.dim() == 2, "TransformerSeq2Seq: ", what,
             " must be i64 [B, T], got ", ids.str());
}

}  // namespace

TransformerSeq2Seq::TransformerSeq2Seq(const TransformerSeq2SeqOptions& o) : options_(o) {
  HEED_CHECK(o.src_vocab > 0 && o.tgt_vocab > 0, "TransformerSeq2Seq: vocabulary sizes must be positive, got ",
             o.src_vocab, " and ", o.tgt_vocab);
  HEED_CHECK(o.d_model > 0 && o.heads > 0 && o.d_model % o.heads == 0, "TransformerSeq2Seq: d_model ", o.d_model,
             " must be a positive multiple of heads ", o.heads);
  HEED_CHECK(o.tie != TieEmbeddings::kAll || o.src_vocab == o.tgt_vocab,
             "TransformerSeq2Seq: tie = all needs one shared vocabulary, got src_vocab ", o.src_vocab,
             " and tgt_vocab ", o.tgt_vocab);
  HEED_CHECK(o.max_len > 0, "TransformerSeq2Seq: max_len must be positive, got ", o.max_len);
  HEED_CHECK(o.dropout >= 0 && o.dropout < 1, "TransformerSeq2Seq: dropout must be in [0, 1), got ", o.dropout);
  const double init_std = 1.0 / std::sqrt(static_cast<double>(o.d_model));
  tgt_embed_ = std::make_shared<nn::Embedding>(nn::EmbeddingOptions{
      .num_embeddings = o.tgt_vocab, .dim = o.d_model, .padding_idx = o.pad_id, .init_std = init_std, .seed = o.seed + 2});
  if (o.tie == TieEmbeddings::kAll) {
    src_embed_ = tgt_embed_;
  } else {
    src_embed_ = register_module("src_embed", std::make_shared<nn::Embedding>(nn::EmbeddingOptions{
        .num_embeddings = o.src_vocab, .dim = o.d_model, .padding_idx = o.pad_id, .init_std = init_std,
        .seed = o.seed + 1}));
  }
  register_module("tgt_embed", tgt_embed_);
  const nn::PositionOptions po{.max_len = o.max_len, .width = o.d_model, .seed = o.seed + 3};
  if (o.positions == nn::PositionKind::kSinusoidal) sinusoidal_ = std::make_shared<nn::SinusoidalPositions>(po);
  if (o.positions == nn::PositionKind::kLearned) {
    src_positions_ = register_module("src_positions", std::make_shared<nn::LearnedPositions>(po));
    nn::PositionOptions tpo = po;
    tpo.seed = o.seed + 4;
    tgt_positions_ = register_module("tgt_positions", std::make_shared<nn::LearnedPositions>(tpo));
  }
  nn::TransformerLayerOptions layer{.width = o.d_model, .heads = o.heads, .ff_width = o.ff_width,
                                    .dropout = o.dropout, .attention_dropout = o.attention_dropout,
                                    .activation_dropout = o.activation_dropout, .activation = o.activation,
                                    .norm_first = o.norm_first, .rotary = o.positions == nn::PositionKind::kRotary,
                                    .layer_norm_eps = o.layer_norm_eps, .seed = o.seed + 5,
                                    .stream = kFirstLayerStream};
  encoder_ = register_module("encoder", std::make_shared<nn::TransformerEncoder>(
                                            nn::TransformerStackOptions{.layers = o.encoder_layers, .layer = layer}));
  layer.seed = o.seed + 6;
  layer.stream = kFirstLayerStream + static_cast<uint64_t>(o.encoder_layers) * nn::kStreamsPerLayer;
  decoder_ = register_module("decoder", std::make_shared<nn::TransformerDecoder>(
                                            nn::TransformerStackOptions{.layers = o.decoder_layers, .layer = layer}));
  if (o.tie == TieEmbeddings::kNone)
    output_proj_ = register_module("output_proj", std::make_shared<nn::Linear>(nn::LinearOptions{
                                                      .in = o.d_model, .out = o.tgt_vocab, .bias = false,
                                                      .seed = o.seed + 7}));
}

Tensor TransformerSeq2Seq::embed(const nn::Embedding& table, const nn::LearnedPositions* learned, const Tensor& ids,
                                 int64_t offset, uint64_t seed, uint64_t stream) const {
  Tensor x = table.forward(ids);  // [B, T] -> [B, T, C]
  if (options_.scale_embeddings) x = mul(x, std::sqrt(static_cast<double>(options_.d_model)));
  if (sinusoidal_) x = sinusoidal_->forward(x, offset);
  if (learned != nullptr) x = learned->forward(x, offset);
  if (training() && options_.dropout > 0)
    x = dropout(x, DropoutOptions{.p = options_.dropout, .training = true, .seed = seed, .stream = stream});
  return x;
}

Tensor TransformerSeq2Seq::project(const Tensor& h) const {
  if (output_proj_) return output_proj_->forward(h);  // [B, T, C] -> [B, T, V]
  return linear(h, tgt_embed_->weight());             // tied: h E^T
}

Tensor TransformerSeq2Seq::encode(const Tensor& src, const Tensor& src_lengths, uint64_t seed) const {
  check_ids(src, "src");
  Tensor x = embed(*src_embed_, src_positions_.get(), src, 0, seed, kSrcEmbedStream);  // [B, S, C]
  return encoder_->forward(x, AttentionMask{.key_lengths = src_lengths}, seed);
}

Tensor TransformerSeq2Seq::decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src_lengths,
                                  uint64_t seed) const {
  check_ids(tgt_in, "tgt_in");
  Tensor y = embed(*tgt_embed_, tgt_positions_.get(), tgt_in, 0, seed, kTgtEmbedStream);  // [B, T, C]
  Tensor h = decoder_->forward(y, memory, AttentionMask{.key_lengths = src_lengths}, seed);
  return project(h);  // [B, T, V]
}

Tensor TransformerSeq2Seq::forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in,
                                   uint64_t seed) const {
  return decode(tgt_in, encode(src, src_lengths, seed), src_lengths, seed);
}

Seq2SeqDecodeState TransformerSeq2Seq::start_decoding(const Tensor& memory, const Tensor& src_lengths,
                                                      int64_t capacity) const {
  HEED_CHECK(options_.takes_length(capacity),
             "TransformerSeq2Seq: cannot decode ", capacity, " positions with max_len ", options_.max_len);
  std::vector<int64_t> rows(memory.size(0));
  for (int64_t i = 0; i < memory.size(0); ++i) rows[i] = i;
  return Seq2SeqDecodeState{.cache = decoder_->start(memory, capacity), .src_lengths = src_lengths,
                            .row_source = rows};
}

Tensor TransformerSeq2Seq::decode_step(const Tensor& tokens, Seq2SeqDecodeState& state) const {
  autograd::NoGradGuard no_grad;
  HEED_CHECK(tokens.defined() && tokens.dtype() == DType::kI64 && tokens.dim() == 1,
             "TransformerSeq2Seq: decode_step tokens must be i64 [B], got ", tokens.str());
  const int64_t b = tokens.size(0);
  Tensor y = embed(*tgt_embed_, tgt_positions_.get(), tokens.raw_reshape({b, 1}), state.cache.length, 0, 0);
  Tensor h = decoder_->forward_cached(y, state.cache, AttentionMask{.key_lengths = state.src_lengths});
  return project(h).raw_reshape({b, options_.tgt_vocab});  // [B, 1, V] -> [B, V]
}

void Seq2SeqDecodeState::reorder(const Tensor& index) {
  std::vector<int64_t> rows = index.to_vector<int64_t>();
  std::vector<int64_t> sources;
  for (int64_t r : rows) {
    HEED_CHECK(r >= 0 && r < static_cast<int64_t>(row_source.size()), "Seq2SeqDecodeState: row ", r,
               " out of range for ", row_source.size(), " rows");
    sources.push_back(row_source[r]);
  }
  // Beams of one source trading places leave the cross-attention keys/values as they are.
  const bool same_sources = sources == row_source;
  cache.reorder(index, same_sources);
  row_source = std::move(sources);
  if (same_sources) return;
  autograd::NoGradGuard no_grad;
  src_lengths = index_select(src_lengths, 0, index);
}

std::string to_string(TieEmbeddings tie) {
  switch (tie) {
    case TieEmbeddings::kNone: return "none";
    case TieEmbeddings::kDecoder: return "decoder";
    case TieEmbeddings::kAll: return "all";
  }
  return "?";
}

std::string to_string(nn::PositionKind kind) {
  switch (kind) {
    case nn::PositionKind::kSinusoidal: return "sinusoidal";
    case nn::PositionKind::kLearned: return "learned";
    case nn::PositionKind::kRotary: return "rotary";
    case nn::PositionKind::kNone: return "none";
  }
  return "?";
}

std::string to_string(nn::Activation activation) {
  return activation == nn::Activation::kGelu ? "gelu" : "relu";
}

}  // namespace heed::models
