// Greedy decoding: the most probable next token at every step, for a batch of sources.
#pragma once

#include <cstdint>
#include <vector>

#include "heed/decode/kv_cache.h"

namespace heed::decode {

// One decoded sequence.
struct Hypothesis {
  std::vector<int64_t> tokens;  // without BOS and EOS
  double log_prob = 0;          // sum of the chosen tokens' log-probabilities, EOS included
  double score = 0;             // the ranking score (beam search: log_prob / length^alpha)
  bool finished = false;        // ended with EOS (false: stopped at max_len)
};

struct GreedyOptions {
  int64_t bos_id = 1;
  int64_t eos_id = 2;
  int64_t max_len = 64;  // most tokens generated per sequence, EOS included
};

// Decodes every source of src i64 [B, S] (lengths i64 [B]); one hypothesis per source, in
// order. Finished sequences leave the batch, so later steps cost only the unfinished ones.
std::vector<Hypothesis> greedy_decode(IncrementalDecoder& decoder, const Tensor& src, const Tensor& src_lengths,
                                      const GreedyOptions& options);

}  // namespace heed::decode
