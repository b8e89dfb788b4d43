// Greedy decoding over an IncrementalDecoder.
#include "heed/decode/greedy.h"

namespace heed::decode {

std::vector<Hypothesis> greedy_decode(IncrementalDecoder& decoder, const Tensor& src, const Tensor& src_lengths,
                                      const GreedyOptions& o) {
  HEED_CHECK(o.max_len > 0, "greedy_decode: max_len must be positive, got ", o.max_len);
  HEED_CHECK(src.defined() && src.dim() == 2, "greedy_decode: src must be [B, S], got ", src.str());
  const int64_t b = src.size(0);
  std::vector<Hypothesis> out(b);
  if (b == 0) return out;
  decoder.start(src, src_lengths, o.max_len);
  std::vector<int64_t> rows(b);  // source of each decoder row
  for (int64_t i = 0; i < b; ++i) rows[i] = i;
  std::vector<int64_t> tokens(b, o.bos_id);
  for (int64_t step = 0; step < o.max_len && !rows.empty(); ++step) {
    Tensor logp = decoder.step(Tensor::from_vector(tokens, {static_cast<int64_t>(rows.size())}));  // [R, V]
    const int64_t v = logp.size(1);
    HEED_CHECK(o.eos_id >= 0 && o.eos_id < v, "greedy_decode: eos_id ", o.eos_id, " outside the vocabulary of ", v);
    std::vector<double> lp = logp.to_vector<double>();
    std::vector<int64_t> keep, next;
    for (size_t r = 0; r < rows.size(); ++r) {
      const double* row = lp.data() + r * v;
      int64_t best = 0;
      for (int64_t j = 1; j < v; ++j)
        if (row[j] > row[best]) best = j;
      Hypothesis& h = out[rows[r]];
      h.log_prob += row[best];
      if (best == o.eos_id) {
        h.finished = true;
      } else {
        h.tokens.push_back(best);
        keep.push_back(static_cast<int64_t>(r));
        next.push_back(best);
      }
    }
    if (keep.size() != rows.size() && !keep.empty() && step + 1 < o.max_len) {
      decoder.reorder(Tensor::from_vector(keep, {static_cast<int64_t>(keep.size())}));
    }
    std::vector<int64_t> kept_rows;
    for (int64_t r : keep) kept_rows.push_back(rows[r]);
    rows = std::move(kept_rows);
    tokens = std::move(next);
  }
  for (Hypothesis& h : out) h.score = h.log_prob;
  return out;
}

}  // namespace heed::decode
