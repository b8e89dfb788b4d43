// Embedding module.
#include "heed/nn/embedding.h"

#include "heed/ops/embedding.h"

namespace heed::nn {

Embedding::Embedding(const EmbeddingOptions& o) : padding_idx_(o.padding_idx) {
  HEED_CHECK(o.num_embeddings > 0 && o.dim > 0, "Embedding: sizes must be positive, got num_embeddings=",
             o.num_embeddings, " dim=", o.dim);
  HEED_CHECK(o.padding_idx >= -1 && o.padding_idx < o.num_embeddings, "Embedding: padding_idx ", o.padding_idx,
             " out of range (expected -1 or in [0, ", o.num_embeddings, "))");
  Tensor w = Tensor::randn({o.num_embeddings, o.dim}, o.seed);  // [V, C]
  float* p = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) p[i] *= static_cast<float>(o.init_std);
  if (o.padding_idx >= 0) w.raw_slice(0, o.padding_idx, o.padding_idx + 1).fill_(0.0);
  weight_ = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& indices) const { return embedding(weight_, indices, padding_idx_); }

}  // namespace heed::nn
