// Feed-forward block.
#include "heed/nn/feed_forward.h"

#include "heed/ops/dropout.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/matmul.h"

namespace heed::nn {

Tensor activate(const Tensor& x, Activation activation) {
  return activation == Activation::kGelu ? gelu(x) : relu(x);
}

Tensor feed_forward(const Tensor& x, const Linear& linear1, const Linear& linear2, Activation activation,
                    double dropout_p, bool training, uint64_t seed, uint64_t stream) {
  const DropoutOptions drop{.p = dropout_p, .training = true, .seed = seed, .stream = stream};
  const bool dropped = training && dropout_p > 0;
  if (activation == Activation::kRelu && !dropped)  // [..., C] -> [..., F] -> [..., C], one node
    return linear_relu_linear(x, linear1.weight(), linear1.bias(), linear2.weight(), linear2.bias());
  Tensor h = linear1.forward(x);  // [..., C] -> [..., F]
  if (dropped)
    h = activation == Activation::kRelu ? relu_dropout(h, drop) : dropout(activate(h, activation), drop);
  else
    h = activate(h, activation);
  return linear2.forward(h);  // [..., F] -> [..., C]
}

FeedForward::FeedForward(const FeedForwardOptions& o) : options_(o) {
  HEED_CHECK(o.width > 0 && o.ff_width > 0, "FeedForward: widths must be positive, got width=", o.width,
             " ff_width=", o.ff_width);
  HEED_CHECK(o.dropout >= 0 && o.dropout < 1, "FeedForward: dropout must be in [0, 1), got ", o.dropout);
  linear1_ = register_module("linear1", std::make_shared<Linear>(LinearOptions{.in = o.width, .out = o.ff_width,
                                                                                .seed = o.seed}));
  linear2_ = register_module("linear2", std::make_shared<Linear>(LinearOptions{.in = o.ff_width, .out = o.width,
                                                                                .seed = o.seed + 1}));
}

Tensor FeedForward::forward(const Tensor& x, uint64_t seed) const {
  return feed_forward(x, *linear1_, *linear2_, options_.activation, options_.dropout, training(), seed,
                      options_.stream);
}

}  // namespace heed::nn
