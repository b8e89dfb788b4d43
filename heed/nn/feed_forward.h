// The position-wise feed-forward block of a Transformer layer:
// linear2(dropout(activation(linear1(x)))), with linear1 [F, C] and linear2 [C, F].
#pragma once

#include <cstdint>
#include <memory>

#include "heed/nn/linear.h"
#include "heed/nn/module.h"

namespace heed::nn {

enum class Activation { kRelu, kGelu };

Tensor activate(const Tensor& x, Activation activation);

struct FeedForwardOptions {
  int64_t width = 0;      // C
  int64_t ff_width = 0;   // F
  Activation activation = Activation::kRelu;
  double dropout = 0.0;   // on the hidden activations, training only
  uint64_t stream = 0;    // dropout stream
  uint64_t seed = 0;      // initialisation
};

// The block as a function of its two Linear layers, so that Transformer layers can register
// linear1/linear2 directly under their own names (as PyTorch's layers do).
Tensor feed_forward(const Tensor& x, const Linear& linear1, const Linear& linear2, Activation activation,
                    double dropout_p, bool training, uint64_t seed, uint64_t stream);

// The block as a module with parameters linear1.*, linear2.*.
class FeedForward : public Module {
 public:
  explicit FeedForward(const FeedForwardOptions& options);
  Tensor forward(const Tensor& x, uint64_t seed = 0) const;  // [..., C] -> [..., C]

 private:
  std::shared_ptr<Linear> linear1_, linear2_;
  FeedForwardOptions options_;
};

}  // namespace heed::nn
