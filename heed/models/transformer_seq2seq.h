// Transformer encoder-decoder for sequence-to-sequence tasks (G2P, translation): token
// embeddings (optionally tied with the output projection, and with the source side when the
// vocabularies are shared), position encodings, the encoder/decoder stacks, and cached
// step-by-step decoding for greedy and beam search.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "heed/nn/embedding.h"
#include "heed/nn/linear.h"
#include "heed/nn/module.h"
#include "heed/nn/positional.h"
#include "heed/nn/transformer.h"

namespace heed::models {

enum class TieEmbeddings {
  kNone,     // separate source embedding, target embedding and output projection
  kDecoder,  // output projection = target embedding (Press & Wolf 2017)
  kAll,      // source embedding = target embedding = output projection (one shared vocabulary)
};

struct TransformerSeq2SeqOptions {
  int64_t src_vocab = 0;
  int64_t tgt_vocab = 0;
  int64_t d_model = 256;
  int64_t heads = 4;
  int64_t encoder_layers = 3;
  int64_t decoder_layers = 3;
  int64_t ff_width = 1024;
  double dropout = 0.1;
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  nn::Activation activation = nn::Activation::kRelu;
  bool norm_first = true;
  nn::PositionKind positions = nn::PositionKind::kSinusoidal;
  int64_t max_len = 256;  // longest source or target (sinusoidal/learned tables)
  TieEmbeddings tie = TieEmbeddings::kDecoder;
  bool scale_embeddings = true;  // multiply token embeddings by sqrt(C)
  int64_t pad_id = 0;
  double layer_norm_eps = 1e-5;
  uint64_t seed = 0;
  // Trained on target sequences read right to left (Liu et al. 2016's agreement decoding;
  // a right-to-left member adds diversity to an ensemble). The model itself does not change;
  // heed/train/g2p feeds its targets reversed and reads its outputs back.
  bool reverse_target = false;

  // Whether sequences of `length` positions fit: sinusoidal and learned position tables
  // hold max_len positions; rotary and no positions have no limit.
  bool takes_length(int64_t length) const {
    return length <= max_len || positions == nn::PositionKind::kRotary || positions == nn::PositionKind::kNone;
  }
};

// Cached decoding state for a batch of sequences.
struct Seq2SeqDecodeState {
  nn::DecoderCache cache;
  Tensor src_lengths;               // i64 [B]
  std::vector<int64_t> row_source;  // the source each row decodes (indices into the encoded batch)
  // Keeps rows `index` (i64 [B']) of everything, in that order (beam search).
  void reorder(const Tensor& index);
};

// Parameter names: src_embed.weight (absent under kAll), tgt_embed.weight, output_proj.weight (kNone only),
// src_positions.weight / tgt_positions.weight (learned positions), encoder.layers.N.*,
// encoder.norm.*, decoder.layers.N.*, decoder.norm.* (torch.nn.Transformer's names).
class TransformerSeq2Seq : public nn::Module {
 public:
  explicit TransformerSeq2Seq(const TransformerSeq2SeqOptions& options);

  // src i64 [B, S] with lengths i64 [B] -> memory [B, S, C].
  Tensor encode(const Tensor& src, const Tensor& src_lengths, uint64_t seed = 0) const;
  // tgt_in i64 [B, T] (starting with BOS) over memory -> logits [B, T, V].
  Tensor decode(const Tensor& tgt_in, const Tensor& memory, const Tensor& src_lengths, uint64_t seed = 0) const;
  // Both: logits [B, T, V]. `seed` drives dropout (vary it per training step).
  Tensor forward(const Tensor& src, const Tensor& src_lengths, const Tensor& tgt_in, uint64_t seed = 0) const;

  // Incremental decoding (no gradient): a state for up to `capacity` target positions.
  Seq2SeqDecodeState start_decoding(const Tensor& memory, const Tensor& src_lengths, int64_t capacity) const;
  // Next tokens i64 [B] -> logits [B, V] for the position after them.
  Tensor decode_step(const Tensor& tokens, Seq2SeqDecodeState& state) const;

  const TransformerSeq2SeqOptions& options() const { return options_; }
  // The stacks, e.g. to capture attention weights of chosen layers and heads
  // (encoder().layer(i).self_attention().capture_weights(...)).
  nn::TransformerEncoder& encoder() { return *encoder_; }
  nn::TransformerDecoder& decoder() { return *decoder_; }
  const nn::TransformerEncoder& encoder() const { return *encoder_; }
  const nn::TransformerDecoder& decoder() const { return *decoder_; }

 private:
  // Token embeddings (scaled), plus positions, then dropout: ids [B, T] -> [B, T, C].
  Tensor embed(const nn::Embedding& table, const nn::LearnedPositions* learned, const Tensor& ids, int64_t offset,
               uint64_t seed, uint64_t stream) const;
  Tensor project(const Tensor& h) const;  // [B, T, C] -> [B, T, V]

  TransformerSeq2SeqOptions options_;
  std::shared_ptr<nn::Embedding> src_embed_, tgt_embed_;
  std::shared_ptr<nn::SinusoidalPositions> sinusoidal_;
  std::shared_ptr<nn::LearnedPositions> src_positions_, tgt_positions_;
  std::shared_ptr<nn::TransformerEncoder> encoder_;
  std::shared_ptr<nn::TransformerDecoder> decoder_;
  std::shared_ptr<nn::Linear> output_proj_;
};

// Helpers for configs and checkpoints.
std::string to_string(TieEmbeddings tie);
std::string to_string(nn::PositionKind kind);
std::string to_string(nn::Activation activation);

}  // namespace heed::models
