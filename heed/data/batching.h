// Length-bucketed, padded batches of sequence pairs for training and evaluation, on
// plain row-major int64 buffers (the trainer turns them into tensors). Shuffling is
// seeded and does not depend on the standard library, so a seed and an epoch give the
// same batches on every machine.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "heed/data/g2p.h"

namespace heed::data {

struct Batch {
  int64_t batch_size = 0;  // B
  int64_t src_len = 0;     // S: the longest source in the batch
  int64_t tgt_len = 0;     // T: the longest target in the batch plus one (bos / eos)
  std::vector<int64_t> src;          // [B, S] source ids, kPadId after each length
  std::vector<int64_t> src_lengths;  // [B]
  std::vector<int64_t> tgt_in;       // [B, T] kBosId then the target ids, then kPadId
  std::vector<int64_t> tgt_out;      // [B, T] the target ids then kEosId, then kPadId
  std::vector<int64_t> tgt_lengths;  // [B] target length plus one: the non-pad positions
  std::vector<int64_t> example_indices;  // [B] positions in the example list given
  std::vector<int64_t> entries;          // [B] Example::entry of each row (the words)

  int64_t src_tokens() const;  // sum of src_lengths
  int64_t tgt_tokens() const;  // sum of tgt_lengths (the tokens a loss is taken over)
};

struct BatchingOptions {
  int64_t max_batch_size = 64;  // B at most
  // At most this many padded positions, B * max(S, T), per batch; 0 for no budget. An
  // example longer than the budget on its own still gets a batch of one.
  int64_t max_tokens = 0;
  // Examples are sorted by length within pools of pool_batches * max_batch_size
  // consecutive (shuffled) examples; 0 sorts the whole set as one pool.
  int64_t pool_batches = 50;
  // Shuffle the examples before pooling and the batches after forming them; without
  // it the examples keep their order before the sort and batches stay in pool order.
  bool shuffle = true;
  uint64_t seed = 0;
};

// The example indices of each batch of `epoch` (each example exactly once). Pools are
// sorted by (source length, target length), stably, so equal lengths keep shuffled order.
std::vector<std::vector<int64_t>> plan_batches(std::span<const Example> examples,
                                               const BatchingOptions& options, int64_t epoch);

// One padded batch of examples[indices[0]], examples[indices[1]], ...
Batch make_batch(std::span<const Example> examples, std::span<const int64_t> indices);

// plan_batches then make_batch for each.
std::vector<Batch> make_batches(std::span<const Example> examples, const BatchingOptions& options,
                                int64_t epoch);

// A permutation of [0, n) from (seed, stream): Fisher-Yates over std::mt19937_64's
// output with unbiased rejection sampling, the same with every standard library.
std::vector<int64_t> seeded_permutation(int64_t n, uint64_t seed, uint64_t stream);

}  // namespace heed::data
