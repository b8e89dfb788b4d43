// Dropout module.
#include "heed/nn/dropout.h"

#include "heed/ops/dropout.h"

namespace heed::nn {

Dropout::Dropout(const DropoutModuleOptions& o) : p_(o.p), stream_(o.stream) {
  HEED_CHECK(o.p >= 0 && o.p < 1, "Dropout: p must be in [0, 1), got ", o.p);
}

Tensor Dropout::forward(const Tensor& x, uint64_t seed) const {
  if (!training() || p_ == 0) return x;
  return dropout(x, DropoutOptions{.p = p_, .training = true, .seed = seed, .stream = stream_});
}

}  // namespace heed::nn
