// Position information for Transformers: fixed sinusoidal encodings and learned position
// embeddings (both added to token embeddings), and rotary embeddings (applied to queries
// and keys inside attention, Su et al. 2021).
#pragma once

#include <cstdint>

#include "heed/nn/module.h"

namespace heed::nn {

enum class PositionKind { kSinusoidal, kLearned, kRotary, kNone };

// The sinusoidal table of Vaswani et al. (2017) [L, C]:
// PE[p, 2i] = sin(p / 10000^(2i/C)), PE[p, 2i+1] = cos(p / 10000^(2i/C)).
Tensor sinusoidal_table(int64_t max_len, int64_t width, DType dtype = DType::kF32);

struct PositionOptions {
  int64_t max_len = 512;
  int64_t width = 0;  // C
  uint64_t seed = 0;  // learned: initial values N(0, C^-1/2)
};

// x + PE[offset : offset + T] for x [B, T, C]; no parameters.
class SinusoidalPositions : public Module {
 public:
  explicit SinusoidalPositions(const PositionOptions& options);
  Tensor forward(const Tensor& x, int64_t offset = 0) const;  // [B, T, C] -> [B, T, C]

 private:
  Tensor table_;  // [L, C], not a parameter
};

// x + weight[offset : offset + T] for x [B, T, C]; parameter "weight" [L, C].
class LearnedPositions : public Module {
 public:
  explicit LearnedPositions(const PositionOptions& options);
  Tensor forward(const Tensor& x, int64_t offset = 0) const;  // [B, T, C] -> [B, T, C]
  const Tensor& weight() const { return weight_; }

 private:
  Tensor weight_;
};

struct RotaryOptions {
  double base = 10000.0;
  int64_t offset = 0;    // position of the first row (the cache length when decoding)
  bool inverse = false;  // rotate by minus the angle (the transpose; used by the backward)
};

// Rotary position embedding of x [..., T, D] (D even), positions offset .. offset + T - 1.
// Half-split pairing (as GPT-NeoX / LLaMA): for i < D/2, with a = p * base^(-2i/D),
//   out[i] = x[i] cos a - x[i + D/2] sin a,   out[i + D/2] = x[i + D/2] cos a + x[i] sin a.
// A rotation, so its gradient is the inverse rotation of the incoming gradient.
Tensor apply_rotary(const Tensor& x, const RotaryOptions& options = {});

}  // namespace heed::nn
