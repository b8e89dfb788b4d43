// Bulk Philox words: the AVX-512 path equals the one-block reference bit for bit (counter
// low words wrapping into the high word included), and dropout_apply's integer threshold
// keeps exactly the elements heed::random::dropout_keep names, at and around the threshold.
#include "heed/kernels/cpu/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "heed/kernels/cpu/dropout_cpu.h"
#include "heed/tensor/random.h"

namespace heed::kernels::cpu {
namespace {

TEST(PhiloxWords, ScalarPathIsTheGeneratorBlockByBlock) {
  const uint64_t key = 0x0123456789abcdefull, stream = (uint64_t{5} << 33) + 7, first = (uint64_t{1} << 32) - 3;
  std::vector<uint32_t> words(4 * 9);
  philox_words_scalar(key, stream, first, 9, words.data());
  for (uint64_t b = 0; b < 9; ++b) {
    const uint64_t block = first + b;
    uint32_t c[4] = {static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(stream),
                     static_cast<uint32_t>(stream >> 32)};
    uint32_t out[4];
    random::Philox4x32::generate(key, c, out);
    for (int j = 0; j < 4; ++j) ASSERT_EQ(words[4 * b + j], out[j]) << b << " " << j;
  }
}

TEST(PhiloxWords, Avx512EqualsScalarBitwise) {
  if (!cpu_has_avx512f()) GTEST_SKIP() << "no AVX-512F on this CPU";
  for (uint64_t key : {uint64_t{0}, uint64_t{123}, uint64_t{0xdeadbeefcafebabeull}})
    for (uint64_t stream : {uint64_t{0}, uint64_t{7}, (uint64_t{1} << 33) + 5})
      // Low counter words that wrap inside a 16-block group, and a 64-bit block index.
      for (uint64_t first : {uint64_t{0}, uint64_t{5}, (uint64_t{1} << 32) - 7, (uint64_t{1} << 40) + 3})
        for (int64_t blocks : {0, 1, 15, 16, 17, 33, 257}) {
          std::vector<uint32_t> vec(4 * blocks + 1, 0xABABABABu), ref(4 * blocks + 1, 0xABABABABu);
          philox_words_avx512(key, stream, first, blocks, vec.data());
          philox_words_scalar(key, stream, first, blocks, ref.data());
          ASSERT_EQ(vec, ref) << "key " << key << " stream " << stream << " first " << first << " blocks " << blocks;
        }
}

TEST(DropoutApply, KeepsExactlyDropoutKeepIncludingAtTheThreshold) {
  const uint64_t seed = 99, stream = 3;
  // p exactly on a word's grid value keeps that element; one float step above drops it.
  const float on_grid = random::uniform(seed, stream, 1234);
  for (float p : {0.1f, 1.0f / 3.0f, 0.5f, 0.9999f, 1e-9f, on_grid, std::nextafter(on_grid, 1.0f)})
    for (int64_t n : {1, 7, 1023, 1024, 1025, 5003}) {
      std::vector<float> x(n, 2.0f), y(n, -1.0f);
      const DropoutParams params{.seed = seed, .stream = stream, .p = p, .scale = 1.0 / (1.0 - p)};
      dropout_apply(params, n, x.data(), y.data());
      for (int64_t i = 0; i < n; ++i) {
        const bool keep = random::dropout_keep(seed, stream, static_cast<uint64_t>(i), p);
        ASSERT_EQ(y[i] != 0, keep) << "p " << p << " n " << n << " i " << i;
        if (keep) ASSERT_EQ(y[i], 2.0f * static_cast<float>(1.0 / (1.0 - p)));
      }
    }
}

}  // namespace
}  // namespace heed::kernels::cpu
