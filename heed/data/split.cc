// The hash split: FNV-1a 64 of the key, MurmurHash3's finaliser, parts per million.
#include "heed/data/split.h"

#include "heed/tensor/error.h"

namespace heed::data {

const char* split_name(Split split) {
  switch (split) {
    case Split::kTrain: return "train";
    case Split::kValidation: return "validation";
    case Split::kTest: return "test";
  }
  return "unknown";
}

uint64_t fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

uint32_t split_bucket(std::string_view key) {
  return static_cast<uint32_t>(mix64(fnv1a64(key)) % 1'000'000ull);
}

Split split_of(std::string_view key, const SplitOptions& options) {
  HEED_CHECK(static_cast<uint64_t>(options.test_ppm) + options.validation_ppm <= 1'000'000ull,
             "split_of: test_ppm + validation_ppm = ",
             static_cast<uint64_t>(options.test_ppm) + options.validation_ppm,
             " expected at most 1000000 (parts per million)");
  const uint32_t bucket = split_bucket(key);
  if (bucket < options.test_ppm) return Split::kTest;
  if (bucket < options.test_ppm + options.validation_ppm) return Split::kValidation;
  return Split::kTrain;
}

}  // namespace heed::data
