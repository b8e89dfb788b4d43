// Tests for G2P examples and batching: coverage, padding, bucketing, budgets, seeds.
#include "heed/data/batching.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "heed/tensor/error.h"

namespace heed::data {
namespace {

// n synthetic examples with source lengths 1..13 and target lengths 1..9.
std::vector<Example> synthetic(int64_t n) {
  std::vector<Example> ex;
  for (int64_t i = 0; i < n; ++i) {
    Example e;
    e.src.assign(static_cast<size_t>(1 + (i * 7) % 13), 4 + i % 5);
    e.tgt.assign(static_cast<size_t>(1 + (i * 5) % 9), 4 + i % 3);
    e.entry = 1000 + i;
    ex.push_back(std::move(e));
  }
  return ex;
}

std::vector<int64_t> sorted_indices(const std::vector<std::vector<int64_t>>& batches) {
  std::vector<int64_t> all;
  for (const auto& b : batches) all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  return all;
}

TEST(Batching, EveryExampleExactlyOncePerEpoch) {
  const std::vector<Example> ex = synthetic(1001);
  std::vector<int64_t> expected(ex.size());
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int64_t>(i);
  for (const BatchingOptions& o : {BatchingOptions{.max_batch_size = 32, .pool_batches = 4, .seed = 7},
                                   BatchingOptions{.max_batch_size = 1000, .max_tokens = 200, .seed = 1},
                                   BatchingOptions{.max_batch_size = 17, .pool_batches = 0, .shuffle = false}}) {
    for (int64_t epoch = 0; epoch < 3; ++epoch) {
      const auto plan = plan_batches(ex, o, epoch);
      EXPECT_EQ(sorted_indices(plan), expected);
      for (const auto& b : plan) {
        EXPECT_GE(b.size(), 1u);
        EXPECT_LE(static_cast<int64_t>(b.size()), o.max_batch_size);
      }
    }
  }
}

TEST(Batching, PaddingBosAndEosAreWhereTheyBelong) {
  std::vector<Example> ex(2);
  ex[0] = Example{{7, 8, 9}, {4, 5}, 10, 0};
  ex[1] = Example{{6}, {4, 5, 6, 7}, 11, 1};
  const std::vector<int64_t> rows = {1, 0};
  const Batch b = make_batch(ex, rows);
  EXPECT_EQ(b.batch_size, 2);
  EXPECT_EQ(b.src_len, 3);
  EXPECT_EQ(b.tgt_len, 5);
  EXPECT_EQ(b.src, (std::vector<int64_t>{6, kPadId, kPadId, 7, 8, 9}));
  EXPECT_EQ(b.src_lengths, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(b.tgt_in, (std::vector<int64_t>{kBosId, 4, 5, 6, 7, kBosId, 4, 5, kPadId, kPadId}));
  EXPECT_EQ(b.tgt_out, (std::vector<int64_t>{4, 5, 6, 7, kEosId, 4, 5, kEosId, kPadId, kPadId}));
  EXPECT_EQ(b.tgt_lengths, (std::vector<int64_t>{5, 3}));
  EXPECT_EQ(b.example_indices, rows);
  EXPECT_EQ(b.entries, (std::vector<int64_t>{11, 10}));
  EXPECT_EQ(b.src_tokens(), 4);
  EXPECT_EQ(b.tgt_tokens(), 8);
  EXPECT_THROW(make_batch(ex, std::vector<int64_t>{2}), Error);
  EXPECT_THROW(make_batch(ex, std::vector<int64_t>{}), Error);
}

TEST(Batching, PaddingIsConsistentWithLengthsInEveryBatch) {
  const std::vector<Example> ex = synthetic(300);
  for (const Batch& b : make_batches(ex, BatchingOptions{.max_batch_size = 16, .seed = 3}, 0)) {
    for (int64_t r = 0; r < b.batch_size; ++r) {
      const Example& e = ex[static_cast<size_t>(b.example_indices[static_cast<size_t>(r)])];
      for (int64_t s = 0; s < b.src_len; ++s) {
        const int64_t want = s < static_cast<int64_t>(e.src.size()) ? e.src[static_cast<size_t>(s)] : kPadId;
        ASSERT_EQ(b.src[static_cast<size_t>(r * b.src_len + s)], want) << "row " << r << " col " << s;
      }
      ASSERT_EQ(b.tgt_lengths[static_cast<size_t>(r)], static_cast<int64_t>(e.tgt.size()) + 1);
      for (int64_t t = b.tgt_lengths[static_cast<size_t>(r)]; t < b.tgt_len; ++t) {
        ASSERT_EQ(b.tgt_in[static_cast<size_t>(r * b.tgt_len + t)], kPadId);
        ASSERT_EQ(b.tgt_out[static_cast<size_t>(r * b.tgt_len + t)], kPadId);
      }
    }
  }
}

TEST(Batching, SameSeedSameBatchesOtherSeedOrEpochOthers) {
  const std::vector<Example> ex = synthetic(500);
  const BatchingOptions o{.max_batch_size = 16, .pool_batches = 3, .seed = 42};
  const auto a = plan_batches(ex, o, 2);
  EXPECT_EQ(plan_batches(ex, o, 2), a);
  EXPECT_NE(plan_batches(ex, o, 3), a);
  BatchingOptions other = o;
  other.seed = 43;
  EXPECT_NE(plan_batches(ex, other, 2), a);
  EXPECT_EQ(seeded_permutation(5, 1, 0), seeded_permutation(5, 1, 0));
  EXPECT_NE(seeded_permutation(50, 1, 0), seeded_permutation(50, 1, 1));
}

TEST(Batching, PoolsAreSortedAndTheTokenBudgetHolds) {
  const std::vector<Example> ex = synthetic(400);
  const BatchingOptions sorted_all{.max_batch_size = 8, .pool_batches = 0, .shuffle = false};
  const auto plan = plan_batches(ex, sorted_all, 0);
  int64_t last = 0;
  for (const auto& b : plan) {
    for (int64_t i : b) {
      const auto len = static_cast<int64_t>(ex[static_cast<size_t>(i)].src.size());
      EXPECT_GE(len, last);
      last = len;
    }
  }
  const BatchingOptions budget{.max_batch_size = 1000, .max_tokens = 64, .seed = 5};
  for (const Batch& b : make_batches(ex, budget, 1)) {
    if (b.batch_size > 1) EXPECT_LE(b.batch_size * std::max(b.src_len, b.tgt_len), 64);
  }
  EXPECT_THROW(plan_batches(ex, BatchingOptions{.max_batch_size = 0}, 0), Error);
}

TEST(Batching, G2PExamplesFromALexicon) {
  std::istringstream in("cat K AE1 T\nread R IY1 D\nread(2) R EH1 D\ntact T AE1 K T\n");
  const Lexicon lex = parse_cmudict(in, "mini.dict");
  const std::vector<int64_t> all = {0, 1, 2};
  const G2PVocabs vocabs = build_g2p_vocabs(lex, all);
  EXPECT_EQ(vocabs.chars.size(), kSpecialCount + 6);     // a c d e r t
  EXPECT_EQ(vocabs.phonemes.size(), kSpecialCount + 7);  // AE D EH IY K R T
  const std::vector<Example> every = make_g2p_examples(lex, all, vocabs);
  ASSERT_EQ(every.size(), 4u);
  EXPECT_EQ(every[2].entry, 1);
  EXPECT_EQ(every[2].pronunciation, 1);
  EXPECT_EQ(decode_tokens(vocabs.phonemes, every[2].tgt), (std::vector<std::string>{"R", "EH", "D"}));
  EXPECT_EQ(decode_chars(vocabs.chars, every[1].src), "read");
  const auto first = make_g2p_examples(lex, all, vocabs, G2PExampleOptions{.pronunciations = Pronunciations::kFirst});
  EXPECT_EQ(first.size(), 3u);
}

}  // namespace
}  // namespace heed::data
