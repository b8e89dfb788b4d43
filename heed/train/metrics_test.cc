// Tests for edit distance, WER and PER on hand-computed cases.
#include "heed/train/metrics.h"

#include <gtest/gtest.h>

#include <cmath>

#include "heed/tensor/error.h"

namespace heed::train {
namespace {

using Seq = std::vector<std::string>;

Seq chars(std::string_view s) {
  Seq out;
  for (char c : s) out.emplace_back(1, c);
  return out;
}

TEST(G2PMetrics, EditDistanceHandCases) {
  EXPECT_EQ(edit_distance(chars("kitten"), chars("sitting")), 3);  // 2 substitutions, 1 insertion
  EXPECT_EQ(edit_distance(chars("sitting"), chars("kitten")), 3);
  EXPECT_EQ(edit_distance(chars("flaw"), chars("lawn")), 2);       // delete f, insert n
  EXPECT_EQ(edit_distance(chars(""), chars("abc")), 3);
  EXPECT_EQ(edit_distance(chars(""), chars("")), 0);
  const std::vector<int64_t> a = {1, 2, 3, 4}, b = {2, 1, 3, 4}, c = {1, 3}, d = {1, 2, 3, 4};
  EXPECT_EQ(edit_distance(a, b), 2);  // a swap is two substitutions, not one transposition
  EXPECT_EQ(edit_distance(a, c), 2);
  EXPECT_EQ(edit_distance(a, d), 0);
}

TEST(G2PMetrics, ScoreWordTakesTheClosestReference) {
  const std::vector<Seq> read = {{"R", "IY", "D"}, {"R", "EH", "D"}};
  const WordScore s = score_word(Seq{"R", "EH", "D"}, read);
  EXPECT_TRUE(s.correct);
  EXPECT_EQ(s.edits, 0);
  EXPECT_EQ(s.closest, 1);
  EXPECT_EQ(s.reference_length, 3);

  const std::vector<Seq> cat = {{"K", "AE", "T"}};
  const WordScore w = score_word(Seq{"K", "AE", "T", "S"}, cat);
  EXPECT_FALSE(w.correct);
  EXPECT_EQ(w.edits, 1);
  EXPECT_EQ(w.reference_length, 3);

  // Two references one edit away: the earlier one (length 2) is the closest.
  const std::vector<Seq> tie = {{"A", "B"}, {"A", "B", "C", "D"}};
  const WordScore t = score_word(Seq{"A", "B", "C"}, tie);
  EXPECT_EQ(t.edits, 1);
  EXPECT_EQ(t.closest, 0);
  EXPECT_EQ(t.reference_length, 2);

  const std::vector<std::vector<int64_t>> ids = {{5, 6, 7}, {5, 8, 7, 9}};
  const WordScore i = score_word(std::vector<int64_t>{5, 8, 7}, ids);
  EXPECT_EQ(i.edits, 1);
  EXPECT_EQ(i.closest, 0);  // {5,6,7} and {5,8,7,9} are both one edit away
  EXPECT_THROW(score_word(Seq{"A"}, std::vector<Seq>{}), Error);
}

TEST(G2PMetrics, WordAndPhonemeErrorRatesOverASet) {
  SequenceErrorRates rates;
  EXPECT_EQ(rates.wer(), 0.0);
  EXPECT_EQ(rates.per(), 0.0);
  // read: right (0 of 3); cats: one insertion (1 of 3); data: right against its second
  // reference (0 of 4); hello: empty hypothesis, 4 deletions (4 of 4).
  rates.add(score_word(Seq{"R", "EH", "D"}, std::vector<Seq>{{"R", "IY", "D"}, {"R", "EH", "D"}}));
  rates.add(score_word(Seq{"K", "AE", "T", "S"}, std::vector<Seq>{{"K", "AE", "T"}}));
  rates.add(score_word(Seq{"D", "EY", "T", "AH"}, std::vector<Seq>{{"D", "AE", "T", "AH"}, {"D", "EY", "T", "AH"}}));
  rates.add(score_word(Seq{}, std::vector<Seq>{{"HH", "AH", "L", "OW"}}));
  EXPECT_EQ(rates.words, 4);
  EXPECT_EQ(rates.word_errors, 2);
  EXPECT_EQ(rates.edits, 5);
  EXPECT_EQ(rates.reference_phonemes, 14);
  EXPECT_DOUBLE_EQ(rates.wer(), 0.5);
  EXPECT_DOUBLE_EQ(rates.per(), 5.0 / 14.0);

  SequenceErrorRates more;
  more.add(score_word(Seq{"AH"}, std::vector<Seq>{{"EY"}, {"AH"}}));
  rates.merge(more);
  EXPECT_DOUBLE_EQ(rates.wer(), 2.0 / 5.0);
  EXPECT_DOUBLE_EQ(rates.per(), 5.0 / 15.0);

  SequenceErrorRates empty_refs;
  empty_refs.add(score_word(Seq{"AH"}, std::vector<Seq>{{}}));
  EXPECT_TRUE(std::isinf(empty_refs.per()));
}

}  // namespace
}  // namespace heed::train
