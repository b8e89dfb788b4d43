// Several models decoded as one (an ensemble, as in Marian or fairseq): each step's
// next-token distribution is the mean of the members' distributions.
#pragma once

#include <vector>

#include "heed/decode/kv_cache.h"

namespace heed::decode {

// Drives every member decoder in lock step. step() returns, per row and token,
// log((1/N) sum_i p_i), computed from the members' log-probabilities by a log-sum-exp in
// double, so it is itself a normalised log-distribution that greedy and beam search take
// as they take a single model's. With one member, that member's output is returned as is.
// Members must share the target vocabulary (step() checks the sizes; the caller checks
// the symbols); the decoders are borrowed, not owned.
class EnsembleDecoder final : public IncrementalDecoder {
 public:
  explicit EnsembleDecoder(std::vector<IncrementalDecoder*> members);
  void start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) override;
  Tensor step(const Tensor& tokens) override;
  void reorder(const Tensor& index) override;

 private:
  std::vector<IncrementalDecoder*> members_;
};

}  // namespace heed::decode
