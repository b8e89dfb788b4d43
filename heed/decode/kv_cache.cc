// Cached and recomputing step decoders for TransformerSeq2Seq.
#include "heed/decode/kv_cache.h"

#include "heed/autograd/graph.h"
#include "heed/ops/shape.h"
#include "heed/ops/softmax.h"

namespace heed::decode {

void CachedSeq2SeqDecoder::start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) {
  autograd::NoGradGuard no_grad;
  Tensor memory = model_.encode(src, src_lengths);  // [B, S, C]
  state_ = model_.start_decoding(memory, src_lengths, max_steps);
}

Tensor CachedSeq2SeqDecoder::step(const Tensor& tokens) {
  autograd::NoGradGuard no_grad;
  return log_softmax(model_.decode_step(tokens, state_), -1);  // [B, V]
}

void CachedSeq2SeqDecoder::reorder(const Tensor& index) { state_.reorder(index); }

void RecomputeSeq2SeqDecoder::start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) {
  autograd::NoGradGuard no_grad;
  memory_ = model_.encode(src, src_lengths);
  src_lengths_ = src_lengths;
  prefix_.assign(src.size(0), {});
}

Tensor RecomputeSeq2SeqDecoder::step(const Tensor& tokens) {
  autograd::NoGradGuard no_grad;
  std::vector<int64_t> t = tokens.to_vector<int64_t>();
  HEED_CHECK(t.size() == prefix_.size(), "decode: ", t.size(), " tokens for ", prefix_.size(), " rows");
  for (size_t i = 0; i < t.size(); ++i) prefix_[i].push_back(t[i]);
  const int64_t b = static_cast<int64_t>(prefix_.size()), len = static_cast<int64_t>(prefix_.front().size());
  std::vector<int64_t> flat;
  for (const auto& p : prefix_) flat.insert(flat.end(), p.begin(), p.end());
  Tensor logits = model_.decode(Tensor::from_vector(flat, {b, len}), memory_, src_lengths_);  // [B, T, V]
  return log_softmax(logits.raw_slice(1, len - 1, len).raw_reshape({b, logits.size(2)}), -1);  // [B, V]
}

void RecomputeSeq2SeqDecoder::reorder(const Tensor& index) {
  autograd::NoGradGuard no_grad;
  memory_ = index_select(memory_, 0, index);
  src_lengths_ = index_select(src_lengths_, 0, index);
  std::vector<std::vector<int64_t>> next;
  for (int64_t i : index.to_vector<int64_t>()) next.push_back(prefix_[i]);
  prefix_ = std::move(next);
}

}  // namespace heed::decode
