// LayerNorm module.
#include "heed/nn/layer_norm.h"

#include "heed/ops/layer_norm.h"

namespace heed::nn {

LayerNorm::LayerNorm(const LayerNormOptions& o) : width_(o.width), eps_(o.eps) {
  HEED_CHECK(o.width > 0, "LayerNorm: width must be positive, got ", o.width);
  HEED_CHECK(o.eps > 0, "LayerNorm: eps must be positive, got ", o.eps);
  if (o.affine) {
    weight_ = register_parameter("weight", Tensor::ones({o.width}));
    bias_ = register_parameter("bias", Tensor::zeros({o.width}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const { return layer_norm(x, width_, weight_, bias_, eps_); }

}  // namespace heed::nn
