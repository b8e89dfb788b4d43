// CPU dropout on a contiguous array. Element i is kept iff
// heed::random::dropout_keep(seed, stream, i, p): one Philox block serves four elements
// (words i % 4 of block i / 4, exactly as heed::random::uniform draws them).
#pragma once

#include <algorithm>
#include <cstdint>

#include "heed/kernels/cpu/elementwise.h"
#include "heed/kernels/cpu/philox.h"
#include "heed/tensor/random.h"

namespace heed::kernels::cpu {

struct DropoutParams {
  uint64_t seed = 0, stream = 0;
  float p = 0;       // drop probability, compared in float as dropout_keep does
  double scale = 1;  // kept values are multiplied by this (1 / (1 - p))
};

// y[i] = keep(i) ? x[i] * scale : 0 for i < n. Applying it to a gradient gives the backward.
// Words come from philox_words (16 blocks per AVX-512 pass) in chunks of kDropoutChunk
// elements and are compared with random::dropout_threshold(p).
inline constexpr int64_t kDropoutChunk = 1024;  // elements; a multiple of 64

template <class T>
void dropout_apply(const DropoutParams& p, int64_t n, const T* x, T* y) {
  const T scale = static_cast<T>(p.scale);
  const uint32_t threshold = random::dropout_threshold(p.p);
  const int64_t chunks = (n + kDropoutChunk - 1) / kDropoutChunk;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kDropoutChunk, m = std::min(kDropoutChunk, n - i0);
    alignas(64) uint32_t words[kDropoutChunk];
    philox_words(p.seed, p.stream, static_cast<uint64_t>(i0 / 4), (m + 3) / 4, words);
    const T* xi = x + i0;
    T* yi = y + i0;
    for (int64_t j = 0; j < m; ++j) yi[j] = (words[j] >> 8) >= threshold ? xi[j] * scale : T(0);
  }
}
}  // namespace heed::kernels::cpu
