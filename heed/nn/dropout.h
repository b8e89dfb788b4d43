// Dropout module: drops elements only in training mode. Randomness is counter-based: a call
// with the same seed drops the same elements; `stream` keeps dropout sites independent.
#pragma once

#include <cstdint>

#include "heed/nn/module.h"

namespace heed::nn {

struct DropoutModuleOptions {
  double p = 0.1;
  uint64_t stream = 0;  // distinct per dropout site in a model
};

class Dropout : public Module {
 public:
  explicit Dropout(const DropoutModuleOptions& options);
  // seed: varies per training step (e.g. a hash of the run seed and the step number).
  Tensor forward(const Tensor& x, uint64_t seed) const;
  double p() const { return p_; }
  uint64_t stream() const { return stream_; }

 private:
  double p_;
  uint64_t stream_;
};

}  // namespace heed::nn
