// Beam search with length normalisation and n-best output, batched over sources.
#pragma once

#include <cstdint>
#include <vector>

#include "heed/decode/greedy.h"

namespace heed::decode {

struct BeamOptions {
  int64_t beam_size = 5;  // K
  double alpha = 1.0;     // length normalisation: score = log_prob / length^alpha (0: none)
  int64_t nbest = 1;      // hypotheses returned per source, best first (<= K)
  int64_t bos_id = 1;
  int64_t eos_id = 2;
  int64_t max_len = 64;   // most tokens generated per hypothesis, EOS included
};

// For every source of src i64 [B, S] (lengths i64 [B]), up to nbest hypotheses sorted by
// score, best first. Each source keeps K live beams (B*K decoder rows); at each step the 2K
// best extensions are ranked, an EOS among the first K ends a hypothesis, and the best K
// others continue. A source is done once it has K ended hypotheses, or at max_len (live
// beams then end unfinished). Length = generated tokens, EOS included. With K = 1 this is
// greedy decoding. Done sources leave the batch.
std::vector<std::vector<Hypothesis>> beam_search(IncrementalDecoder& decoder, const Tensor& src,
                                                 const Tensor& src_lengths, const BeamOptions& options);

// The ranking score of a hypothesis: log_prob / length^alpha (alpha = 0: log_prob), length
// counting EOS for an ended hypothesis.
double length_normalised(double log_prob, size_t length, double alpha);

}  // namespace heed::decode
