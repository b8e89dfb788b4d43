// Batched beam search over an IncrementalDecoder.
#include "heed/decode/beam.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace heed::decode {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

struct Beam {
  std::vector<int64_t> tokens;  // generated so far, without BOS
  double log_prob = kNegInf;    // -inf: an empty slot (fewer than K live beams)
};

struct Candidate {
  double log_prob;
  int64_t beam;   // which live beam it extends
  int64_t token;
};

// Best first; ties broken by beam then token, so the order is deterministic.
bool better(const Candidate& a, const Candidate& b) {
  if (a.log_prob != b.log_prob) return a.log_prob > b.log_prob;
  if (a.beam != b.beam) return a.beam < b.beam;
  return a.token < b.token;
}

}  // namespace

double length_normalised(double log_prob, size_t length, double alpha) {
  return alpha == 0 ? log_prob : log_prob / std::pow(static_cast<double>(std::max<size_t>(length, 1)), alpha);
}

std::vector<std::vector<Hypothesis>> beam_search(IncrementalDecoder& decoder, const Tensor& src,
                                                 const Tensor& src_lengths, const BeamOptions& o) {
  HEED_CHECK(o.beam_size > 0, "beam_search: beam_size must be positive, got ", o.beam_size);
  HEED_CHECK(o.nbest > 0 && o.nbest <= o.beam_size, "beam_search: nbest must be in [1, beam_size = ", o.beam_size,
             "], got ", o.nbest);
  HEED_CHECK(o.max_len > 0, "beam_search: max_len must be positive, got ", o.max_len);
  HEED_CHECK(o.alpha >= 0, "beam_search: alpha must be >= 0, got ", o.alpha);
  HEED_CHECK(src.defined() && src.dim() == 2, "beam_search: src must be [B, S], got ", src.str());
  const int64_t b = src.size(0), k = o.beam_size;
  std::vector<std::vector<Hypothesis>> finished(b);
  if (b == 0) return finished;

  decoder.start(src, src_lengths, o.max_len);
  std::vector<int64_t> expand;  // each source's state repeated K times: rows s*K .. s*K+K-1
  for (int64_t s = 0; s < b; ++s)
    for (int64_t j = 0; j < k; ++j) expand.push_back(s);
  if (k > 1) decoder.reorder(Tensor::from_vector(expand, {b * k}));

  std::vector<int64_t> active(b);  // sources still decoding, in row-block order
  for (int64_t s = 0; s < b; ++s) active[s] = s;
  std::vector<std::vector<Beam>> beams(b, std::vector<Beam>(k));
  for (auto& sb : beams) sb[0].log_prob = 0;  // one live beam at the start
  std::vector<int64_t> tokens(b * k, o.bos_id);

  for (int64_t step = 1; step <= o.max_len && !active.empty(); ++step) {
    const int64_t rows = static_cast<int64_t>(active.size()) * k;
    Tensor logp = decoder.step(Tensor::from_vector(tokens, {rows}));  // [A*K, V]
    const int64_t v = logp.size(1);
    HEED_CHECK(o.eos_id >= 0 && o.eos_id < v, "beam_search: eos_id ", o.eos_id, " outside the vocabulary of ", v);
    std::vector<double> lp = logp.to_vector<double>();

    std::vector<int64_t> next_active, reorder_index, next_tokens;
    std::vector<Candidate> cands;
    for (size_t a = 0; a < active.size(); ++a) {
      const int64_t s = active[a];
      std::vector<Beam>& live = beams[s];
      cands.clear();
      for (int64_t j = 0; j < k; ++j) {
        if (live[j].log_prob == kNegInf) continue;
        const double* row = lp.data() + (a * k + j) * v;
        for (int64_t t = 0; t < v; ++t) cands.push_back({live[j].log_prob + row[t], j, t});
      }
      const size_t top = std::min<size_t>(cands.size(), 2 * k);
      std::partial_sort(cands.begin(), cands.begin() + top, cands.end(), better);

      std::vector<Beam> next;
      std::vector<int64_t> origin;  // row (within this source's block) each next beam extends
      for (size_t r = 0; r < top && static_cast<int64_t>(next.size()) < k; ++r) {
        const Candidate& c = cands[r];
        if (c.log_prob == kNegInf) break;
        const Beam& from = live[c.beam];
        if (c.token == o.eos_id) {
          if (static_cast<int64_t>(r) < k)
            finished[s].push_back(Hypothesis{.tokens = from.tokens, .log_prob = c.log_prob,
                                             .score = length_normalised(c.log_prob, from.tokens.size() + 1, o.alpha),
                                             .finished = true});
          continue;
        }
        Beam nb{.tokens = from.tokens, .log_prob = c.log_prob};
        nb.tokens.push_back(c.token);
        next.push_back(std::move(nb));
        origin.push_back(c.beam);
      }
      const bool done = static_cast<int64_t>(finished[s].size()) >= k || step == o.max_len || next.empty();
      if (done) {
        if (static_cast<int64_t>(finished[s].size()) < k)
          for (const Beam& nb : next)
            finished[s].push_back(Hypothesis{.tokens = nb.tokens, .log_prob = nb.log_prob,
                                             .score = length_normalised(nb.log_prob, nb.tokens.size(), o.alpha),
                                             .finished = false});
        continue;
      }
      while (static_cast<int64_t>(next.size()) < k) {  // keep K rows per source; empty slots stay -inf
        next.push_back(Beam{});
        origin.push_back(origin.front());
      }
      for (int64_t j = 0; j < k; ++j) {
        reorder_index.push_back(static_cast<int64_t>(a) * k + origin[j]);
        next_tokens.push_back(next[j].tokens.empty() ? o.eos_id : next[j].tokens.back());
      }
      live = std::move(next);
      next_active.push_back(s);
    }
    active = std::move(next_active);
    tokens = std::move(next_tokens);
    if (!active.empty())
      decoder.reorder(Tensor::from_vector(reorder_index, {static_cast<int64_t>(reorder_index.size())}));
  }

  for (auto& hyps : finished) {
    std::stable_sort(hyps.begin(), hyps.end(), [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
    if (static_cast<int64_t>(hyps.size()) > o.nbest) hyps.resize(o.nbest);
  }
  return finished;
}

}  // namespace heed::decode
