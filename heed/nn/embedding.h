// Embedding: a lookup table of vectors, weight [V, C], as torch.nn.Embedding (padding_idx
// row starts at zero and receives no gradient).
#pragma once

#include <cstdint>

#include "heed/nn/module.h"

namespace heed::nn {

struct EmbeddingOptions {
  int64_t num_embeddings = 0;  // V
  int64_t dim = 0;             // C
  int64_t padding_idx = -1;    // -1: none
  double init_std = 1.0;       // weight ~ N(0, init_std^2); PyTorch's default is 1
  uint64_t seed = 0;
};

class Embedding : public Module {
 public:
  explicit Embedding(const EmbeddingOptions& options);
  Tensor forward(const Tensor& indices) const;  // i64 [...] -> [..., C]
  const Tensor& weight() const { return weight_; }
  int64_t padding_idx() const { return padding_idx_; }

 private:
  Tensor weight_;
  int64_t padding_idx_;
};

}  // namespace heed::nn
