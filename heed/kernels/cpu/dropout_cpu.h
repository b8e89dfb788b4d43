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

// The mask: calls body(i0, m, keep) for consecutive chunks [i0, i0 + m) of [0, n), where
// keep[j] (1 or 0, 32 bits wide so that loops over float data vectorise) says whether
// element i0 + j is kept. Words come from philox_words (16 blocks per
// AVX-512 pass) in chunks of kDropoutChunk elements and are compared with
// random::dropout_threshold(p). Chunks run in parallel above kParallelGrain elements.
inline constexpr int64_t kDropoutChunk = 1024;  // elements; a multiple of 64

template <class Body>
void for_each_dropout_chunk(const DropoutParams& p, int64_t n, Body body) {
  const uint32_t threshold = random::dropout_threshold(p.p);
  const int64_t chunks = (n + kDropoutChunk - 1) / kDropoutChunk;
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kDropoutChunk, m = std::min(kDropoutChunk, n - i0);
    alignas(64) uint32_t words[kDropoutChunk];
    philox_words(p.seed, p.stream, static_cast<uint64_t>(i0 / 4), (m + 3) / 4, words);
    alignas(64) uint32_t keep[kDropoutChunk];
    for (int64_t j = 0; j < m; ++j) keep[j] = (words[j] >> 8) >= threshold;
    body(i0, m, keep);
  }
}

// y[i] = keep(i) ? x[i] * scale : 0 for i < n. Applying it to a gradient gives the backward.
template <class T>
void dropout_apply(const DropoutParams& p, int64_t n, const T* x, T* y) {
  const T scale = static_cast<T>(p.scale);
  for_each_dropout_chunk(p, n, [&](int64_t i0, int64_t m, const uint32_t* keep) {
    for (int64_t j = 0; j < m; ++j) {
      const T v = x[i0 + j] * scale;  // computed for every element, then selected: a vector loop
      y[i0 + j] = keep[j] ? v : T(0);
    }
  });
}

// A residual connection's dropout and add in one pass: out[i] = r[i] + (keep(i) ? x[i] *
// scale : 0), the same keep(i) and the same two roundings as dropout_apply followed by an
// add (the file that instantiates it is built without FMA contraction).
template <class T>
void dropout_add_apply(const DropoutParams& p, int64_t n, const T* r, const T* x, T* out) {
  const T scale = static_cast<T>(p.scale);
  for_each_dropout_chunk(p, n, [&](int64_t i0, int64_t m, const uint32_t* keep) {
    for (int64_t j = 0; j < m; ++j) {
      const T v = x[i0 + j] * scale;
      const T dropped = keep[j] ? v : T(0);
      out[i0 + j] = r[i0 + j] + dropped;
    }
  });
}

// The feed-forward block's relu then dropout in one pass: y[i] = keep(i) ? max(x[i], 0) *
// scale : 0, the same keep(i) as dropout_apply, so bitwise equal to relu followed by
// dropout_apply (relu(NaN) = 0 as heed::relu gives it).
template <class T>
void relu_dropout_apply(const DropoutParams& p, int64_t n, const T* x, T* y) {
  const T scale = static_cast<T>(p.scale);
  for_each_dropout_chunk(p, n, [&](int64_t i0, int64_t m, const uint32_t* keep) {
    for (int64_t j = 0; j < m; ++j) {
      const T v = x[i0 + j], r = v > 0 ? v : T(0), kept = r * scale;
      y[i0 + j] = keep[j] ? kept : T(0);
    }
  });
}

// Its backward from the output alone: g_x[i] = y[i] > 0 ? g[i] * scale : 0 (y > 0 exactly
// when the element was kept and x > 0, since scale >= 1 keeps even a denormal x positive),
// so no random words are drawn. (With flush-to-zero on and denormals-are-zero off, which
// heed never sets, a kept denormal x would give y = 0 and a zero gradient here.)
template <class T>
void relu_dropout_backward(double scale, int64_t n, const T* y, const T* g, T* gx) {
  const T s = static_cast<T>(scale);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const T v = g[i] * s;  // computed for every element, then selected: a vector loop
    gx[i] = y[i] > 0 ? v : T(0);
  }
}

}  // namespace heed::kernels::cpu
