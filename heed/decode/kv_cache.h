// The step-by-step decoding interface that greedy and beam search drive, with two
// implementations for TransformerSeq2Seq: one that keeps per-layer key/value caches (the
// fast path) and one that recomputes the whole prefix every step (the reference).
#pragma once

#include <cstdint>
#include <vector>

#include "heed/models/transformer_seq2seq.h"
#include "heed/tensor/tensor.h"

namespace heed::decode {

// A batch of sequences decoded one token at a time. Rows of the batch can be dropped,
// duplicated and permuted between steps (beam search, finished sequences) with reorder().
class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  // Encodes src i64 [B, S] (lengths i64 [B]) and prepares to decode up to `max_steps` tokens.
  virtual void start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) = 0;
  // Feeds tokens i64 [B'] (B' = current rows) and returns log-probabilities [B', V] of the next token.
  virtual Tensor step(const Tensor& tokens) = 0;
  // Keeps rows `index` (i64 [B'']) of the state, in that order.
  virtual void reorder(const Tensor& index) = 0;
};

// TransformerSeq2Seq with per-layer self-attention key/value caches and cross-attention
// keys/values computed once per source: each step costs one position.
class CachedSeq2SeqDecoder final : public IncrementalDecoder {
 public:
  explicit CachedSeq2SeqDecoder(const models::TransformerSeq2Seq& model) : model_(model) {}
  void start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) override;
  Tensor step(const Tensor& tokens) override;
  void reorder(const Tensor& index) override;

 private:
  const models::TransformerSeq2Seq& model_;
  models::Seq2SeqDecodeState state_;
};

// TransformerSeq2Seq re-running the decoder over the whole prefix each step (no cache), as
// PyTorch's nn.Transformer does: the reference the cached path is tested against.
class RecomputeSeq2SeqDecoder final : public IncrementalDecoder {
 public:
  explicit RecomputeSeq2SeqDecoder(const models::TransformerSeq2Seq& model) : model_(model) {}
  void start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) override;
  Tensor step(const Tensor& tokens) override;
  void reorder(const Tensor& index) override;

 private:
  const models::TransformerSeq2Seq& model_;
  Tensor memory_, src_lengths_;             // [B, S, C], [B]
  std::vector<std::vector<int64_t>> prefix_;  // tokens fed so far, per row
};

}  // namespace heed::decode
