// Ensemble decoding: the mean of the members' next-token distributions.
#include "heed/decode/ensemble.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace heed::decode {

EnsembleDecoder::EnsembleDecoder(std::vector<IncrementalDecoder*> members) : members_(std::move(members)) {
  HEED_CHECK(!members_.empty(), "ensemble: needs at least one model");
  for (size_t i = 0; i < members_.size(); ++i)
    HEED_CHECK(members_[i] != nullptr, "ensemble: member ", i, " is null");
}

void EnsembleDecoder::start(const Tensor& src, const Tensor& src_lengths, int64_t max_steps) {
  for (IncrementalDecoder* m : members_) m->start(src, src_lengths, max_steps);
}

void EnsembleDecoder::reorder(const Tensor& index) {
  for (IncrementalDecoder* m : members_) m->reorder(index);
}

Tensor EnsembleDecoder::step(const Tensor& tokens) {
  if (members_.size() == 1) return members_.front()->step(tokens);
  std::vector<Tensor> outs;
  for (IncrementalDecoder* m : members_) outs.push_back(m->step(tokens));
  const Tensor& first = outs.front();
  HEED_CHECK(first.dim() == 2, "ensemble: a member returned ", first.str(), ", expected [rows, vocabulary]");
  for (size_t i = 1; i < outs.size(); ++i)
    HEED_CHECK(outs[i].shape() == first.shape(), "ensemble: member ", i, " returned ", outs[i].str(),
               " where member 0 returned ", first.str(), "; the models must share the target vocabulary");
  const int64_t n = first.numel();
  std::vector<std::vector<double>> lp;
  for (const Tensor& t : outs) lp.push_back(t.to_vector<double>());
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  const double log_n = std::log(static_cast<double>(outs.size()));
  std::vector<double> mixed(static_cast<size_t>(n));
  for (int64_t e = 0; e < n; ++e) {
    double hi = kNegInf;
    bool nan = false;
    for (const auto& v : lp) {
      nan = nan || std::isnan(v[e]);
      hi = std::max(hi, v[e]);
    }
    if (nan || hi == kNegInf) {  // a NaN passes through, as from one model; no member gives the token any probability
      mixed[e] = nan ? std::numeric_limits<double>::quiet_NaN() : kNegInf;
      continue;
    }
    double sum = 0;
    for (const auto& v : lp) sum += std::exp(v[e] - hi);
    mixed[e] = hi + std::log(sum) - log_n;
  }
  return Tensor::from_vector(mixed, first.shape()).to(first.dtype());  // rounded once, to the members' dtype
}

}  // namespace heed::decode
