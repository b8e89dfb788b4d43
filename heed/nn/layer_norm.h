// LayerNorm over the last dimension with a learned scale and shift, as torch.nn.LayerNorm.
#pragma once

#include <cstdint>

#include "heed/nn/module.h"

namespace heed::nn {

struct LayerNormOptions {
  int64_t width = 0;  // C
  double eps = 1e-5;
  bool affine = true;  // parameters "weight" (ones) and "bias" (zeros)
};

class LayerNorm : public Module {
 public:
  explicit LayerNorm(const LayerNormOptions& options);
  Tensor forward(const Tensor& x) const;  // [..., C] -> [..., C]
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }

 private:
  Tensor weight_, bias_;
  int64_t width_;
  double eps_;
};

}  // namespace heed::nn
