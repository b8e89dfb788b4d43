// Counter-based random numbers (Philox-4x32-10, Salmon et al. 2011): a value depends
// only on (seed, counter), never on call order or thread scheduling. Dropout in the
// composed and fused attention paths draws from here with the same counters.
#pragma once

#include <cstdint>

namespace heed::random {

struct Philox4x32 {
  static constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  static constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;

  // Four 32-bit random words for a 128-bit counter (c0..c3) under a 64-bit key.
  static inline void generate(uint64_t key, uint32_t c[4], uint32_t out[4]) {
    uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
    uint32_t x0 = c[0], x1 = c[1], x2 = c[2], x3 = c[3];
    for (int round = 0; round < 10; ++round) {
      uint64_t p0 = static_cast<uint64_t>(kM0) * x0;
      uint64_t p1 = static_cast<uint64_t>(kM1) * x2;
      uint32_t y0 = static_cast<uint32_t>(p1 >> 32) ^ x1 ^ k0;
      uint32_t y1 = static_cast<uint32_t>(p1);
      uint32_t y2 = static_cast<uint32_t>(p0 >> 32) ^ x3 ^ k1;
      uint32_t y3 = static_cast<uint32_t>(p0);
      x0 = y0; x1 = y1; x2 = y2; x3 = y3;
      k0 += kW0; k1 += kW1;
    }
    out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3;
  }
};

// A uniform float in [0, 1) for element `index` of stream `stream` under `seed`.
// Each call costs one Philox block; element i uses word (i % 4) of block i / 4 so
// a vectorised caller can take four values per block.
inline float uniform(uint64_t seed, uint64_t stream, uint64_t index) {
  uint64_t block = index >> 2;
  uint32_t c[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                   static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  uint32_t out[4];
  Philox4x32::generate(seed, c, out);
  return static_cast<float>(out[index & 3] >> 8) * (1.0f / 16777216.0f);
}

// Standard normal for element `index` (Box-Muller on one Philox block).
inline double normal(uint64_t seed, uint64_t stream, uint64_t index) {
  uint32_t c[4] = {static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32),
                   static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32) ^ 0x6e6f726du};
  uint32_t out[4];
  Philox4x32::generate(seed, c, out);
  uint64_t a = (static_cast<uint64_t>(out[0]) << 21) ^ out[1];
  uint64_t b = (static_cast<uint64_t>(out[2]) << 21) ^ out[3];
  double u1 = (static_cast<double>(a & ((1ull << 53) - 1)) + 1.0) / 9007199254740993.0;
  double u2 = static_cast<double>(b & ((1ull << 53) - 1)) / 9007199254740992.0;
  return __builtin_sqrt(-2.0 * __builtin_log(u1)) * __builtin_cos(6.283185307179586 * u2);
}

// dropout_keep's rule on a raw Philox word w: keep iff (w >> 8) >= dropout_threshold(p), the
// integer form of float(w >> 8) / 2^24 >= p (both sides scaled by 2^24, exact in float).
// Bulk paths (kernels/cpu/dropout_cpu.h, the fused attention's mask) compare words with it.
inline uint32_t dropout_threshold(float p) {
  const float scaled = p * 16777216.0f;
  return scaled <= 0 ? 0u : static_cast<uint32_t>(__builtin_ceilf(scaled));
}

// Keep element (seed, stream, index) under dropout probability p?
inline bool dropout_keep(uint64_t seed, uint64_t stream, uint64_t index, float p) {
  return uniform(seed, stream, index) >= p;
}

}  // namespace heed::random
