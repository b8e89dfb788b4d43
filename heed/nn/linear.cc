// Linear layer.
#include "heed/nn/linear.h"

#include "heed/ops/matmul.h"

namespace heed::nn {

Linear::Linear(const LinearOptions& o) {
  HEED_CHECK(o.in > 0 && o.out > 0, "Linear: sizes must be positive, got in=", o.in, " out=", o.out);
  weight_ = register_parameter("weight", kaiming_uniform_linear({o.out, o.in}, o.seed));
  if (o.bias) bias_ = register_parameter("bias", uniform_bias(o.out, o.in, o.seed ^ 0x9e3779b97f4a7c15ull));
}

Tensor Linear::forward(const Tensor& x) const { return linear(x, weight_, bias_); }

}  // namespace heed::nn
