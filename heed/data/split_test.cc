// Tests for the hash split: FNV-1a test vectors, pinned buckets, shares.
#include "heed/data/split.h"

#include <gtest/gtest.h>

#include <string>

#include "heed/tensor/error.h"

namespace heed::data {
namespace {

TEST(HashSplit, Fnv1a64MatchesPublishedVectors) {
  // From the FNV reference test suite (Fowler, Noll, Vo).
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
}

TEST(HashSplit, BucketsArePinned) {
  // Computed independently (a Python FNV-1a + fmix64); a change here moves words
  // between train and test and invalidates every reported G2P result.
  EXPECT_EQ(mix64(fnv1a64("hello")), 0xe9c562c0fdb23244ull);
  EXPECT_EQ(split_bucket("hello"), 765124u);
  EXPECT_EQ(split_bucket("cat"), 36564u);
  EXPECT_EQ(split_bucket("abed"), 96587u);
  EXPECT_EQ(split_of("hello"), Split::kTrain);
  EXPECT_EQ(split_of("cat"), Split::kTest);
  EXPECT_EQ(split_of("abbey"), Split::kTest);
  EXPECT_EQ(split_of("abed"), Split::kValidation);
  EXPECT_EQ(split_of("abetting"), Split::kValidation);
  EXPECT_EQ(split_of("zebra"), Split::kTrain);
}

TEST(HashSplit, SharesFollowTheOptions) {
  int counts[3] = {0, 0, 0};
  const int n = 100000;
  for (int i = 0; i < n; ++i) ++counts[static_cast<int>(split_of("w" + std::to_string(i)))];
  // 9.5% test and 2.1% validation; binomial standard deviations are about 93 and 45.
  EXPECT_NEAR(counts[static_cast<int>(Split::kTest)], 9500, 400);
  EXPECT_NEAR(counts[static_cast<int>(Split::kValidation)], 2100, 250);
  EXPECT_EQ(split_of("anything", SplitOptions{.test_ppm = 1'000'000, .validation_ppm = 0}), Split::kTest);
  EXPECT_EQ(split_of("anything", SplitOptions{.test_ppm = 0, .validation_ppm = 0}), Split::kTrain);
  EXPECT_THROW(split_of("x", SplitOptions{.test_ppm = 600'000, .validation_ppm = 500'000}), Error);
  EXPECT_STREQ(split_name(Split::kValidation), "validation");
}

}  // namespace
}  // namespace heed::data
