// Batching: shuffle, sort within pools, cut by batch size and token budget, pad.
#include "heed/data/batching.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "heed/data/split.h"
#include "heed/tensor/error.h"

namespace heed::data {
namespace {

// Uniform in [0, bound) from a 64-bit generator, without modulo bias.
uint64_t uniform_below(std::mt19937_64& gen, uint64_t bound) {
  const uint64_t limit = UINT64_MAX - (UINT64_MAX % bound + 1) % bound;  // largest multiple - 1
  uint64_t x;
  do {
    x = gen();
  } while (x > limit);
  return x % bound;
}

template <class T>
void shuffle_in_place(std::vector<T>& v, std::mt19937_64& gen) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(uniform_below(gen, i));
    std::swap(v[i - 1], v[j]);
  }
}

std::mt19937_64 make_generator(uint64_t seed, uint64_t stream) {
  return std::mt19937_64(mix64(seed ^ mix64(stream + 0x9e3779b97f4a7c15ull)));
}

int64_t padded_width(const Example& e) {
  return std::max<int64_t>(static_cast<int64_t>(e.src.size()), static_cast<int64_t>(e.tgt.size()) + 1);
}

}  // namespace

int64_t Batch::src_tokens() const { return std::accumulate(src_lengths.begin(), src_lengths.end(), int64_t{0}); }
int64_t Batch::tgt_tokens() const { return std::accumulate(tgt_lengths.begin(), tgt_lengths.end(), int64_t{0}); }

std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream) {
  HEED_CHECK(n >= 0, "seeded_permutation: n = ", n, " expected >= 0");
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  std::mt19937_64 gen = make_generator(seed, stream);
  shuffle_in_place(p, gen);
  return p;
}

std::vector<std::vector<int64_t>> plan_batches(std::span<const Example> examples, const BatchingOptions& options,
                                               int64_t epoch) {
  HEED_CHECK(options.max_batch_size >= 1, "plan_batches: max_batch_size = ", options.max_batch_size,
             " expected >= 1");
  HEED_CHECK(options.max_tokens >= 0, "plan_batches: max_tokens = ", options.max_tokens, " expected >= 0");
  HEED_CHECK(options.pool_batches >= 0, "plan_batches: pool_batches = ", options.pool_batches, " expected >= 0");
  const auto n = static_cast<int64_t>(examples.size());
  // Stream 2 * epoch orders the examples and 2 * epoch + 1 orders the batches.
  const auto stream = static_cast<uint64_t>(epoch) * 2;
  std::vector<int64_t> order;
  if (options.shuffle) {
    order = seeded_permutation(n, options.seed, stream);
  } else {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), int64_t{0});
  }
  const int64_t pool = options.pool_batches == 0 ? std::max<int64_t>(n, 1)
                                                 : options.pool_batches * options.max_batch_size;
  auto by_length = [&](int64_t a, int64_t b) {
    const Example& x = examples[static_cast<size_t>(a)];
    const Example& y = examples[static_cast<size_t>(b)];
    if (x.src.size() != y.src.size()) return x.src.size() < y.src.size();
    return x.tgt.size() < y.tgt.size();
  };
  std::vector<std::vector<int64_t>> batches;
  for (int64_t start = 0; start < n; start += pool) {
    const auto first = order.begin() + start;
    const auto last = order.begin() + std::min(n, start + pool);
    std::stable_sort(first, last, by_length);
    std::vector<int64_t> current;
    int64_t width = 0;
    for (auto it = first; it != last; ++it) {
      const int64_t w = std::max(width, padded_width(examples[static_cast<size_t>(*it)]));
      const auto size = static_cast<int64_t>(current.size());
      const bool full = size == options.max_batch_size ||
                        (options.max_tokens > 0 && size > 0 && (size + 1) * w > options.max_tokens);
      if (full) {
        batches.push_back(std::move(current));
        current.clear();
        width = padded_width(examples[static_cast<size_t>(*it)]);
      } else {
        width = w;
      }
      current.push_back(*it);
    }
    if (!current.empty()) batches.push_back(std::move(current));
  }
  if (options.shuffle) {
    std::mt19937_64 gen = make_generator(options.seed, stream + 1);
    shuffle_in_place(batches, gen);
  }
  return batches;
}

Batch make_batch(std::span<const Example> examples, std::span<const int64_t> indices) {
  HEED_CHECK(!indices.empty(), "make_batch: no examples; expected at least one index");
  Batch b;
  b.batch_size = static_cast<int64_t>(indices.size());
  for (int64_t i : indices) {
    HEED_CHECK(i >= 0 && i < static_cast<int64_t>(examples.size()), "make_batch: index ", i, " expected in [0, ",
               examples.size(), ")");
    const Example& e = examples[static_cast<size_t>(i)];
    b.src_len = std::max(b.src_len, static_cast<int64_t>(e.src.size()));
    b.tgt_len = std::max(b.tgt_len, static_cast<int64_t>(e.tgt.size()) + 1);
  }
  const auto B = static_cast<size_t>(b.batch_size);
  const auto S = static_cast<size_t>(b.src_len);
  const auto T = static_cast<size_t>(b.tgt_len);
  b.src.assign(B * S, kPadId);      // [B, S]
  b.tgt_in.assign(B * T, kPadId);   // [B, T]
  b.tgt_out.assign(B * T, kPadId);  // [B, T]
  b.src_lengths.resize(B);
  b.tgt_lengths.resize(B);
  b.example_indices.assign(indices.begin(), indices.end());
  b.entries.resize(B);
  for (size_t r = 0; r < B; ++r) {
    const Example& e = examples[static_cast<size_t>(indices[r])];
    std::copy(e.src.begin(), e.src.end(), b.src.begin() + static_cast<std::ptrdiff_t>(r * S));
    int64_t* in = b.tgt_in.data() + r * T;
    int64_t* out = b.tgt_out.data() + r * T;
    in[0] = kBosId;
    std::copy(e.tgt.begin(), e.tgt.end(), in + 1);
    std::copy(e.tgt.begin(), e.tgt.end(), out);
    out[e.tgt.size()] = kEosId;
    b.src_lengths[r] = static_cast<int64_t>(e.src.size());
    b.tgt_lengths[r] = static_cast<int64_t>(e.tgt.size()) + 1;
    b.entries[r] = e.entry;
  }
  return b;
}

std::vector<Batch> make_batches(std::span<const Example> examples, const BatchingOptions& options, int64_t epoch) {
  std::vector<Batch> out;
  for (const std::vector<int64_t>& indices : plan_batches(examples, options, epoch)) {
    out.push_back(make_batch(examples, indices));
  }
  return out;
}

}  // namespace heed::data
