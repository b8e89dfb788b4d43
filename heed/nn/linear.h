// Linear: y = x W^T + b, weight [out, in], as torch.nn.Linear.
#pragma once

#include "heed/nn/module.h"

namespace heed::nn {

struct LinearOptions {
  int64_t in = 0, out = 0;
  bool bias = true;
  uint64_t seed = 0;
};

class Linear : public Module {
 public:
  explicit Linear(const LinearOptions& options);
  Tensor forward(const Tensor& x) const;  // [..., in] -> [..., out]
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
};

}  // namespace heed::nn
