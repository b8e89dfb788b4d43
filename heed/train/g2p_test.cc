// Tests for scoring another system's pronunciations (`heed score`) on hand-computed cases.
#include "heed/train/g2p.h"

#include <gtest/gtest.h>

#include <sstream>

#include "heed/tensor/error.h"

namespace heed::train {
namespace {

data::Lexicon parse(const std::string& text, std::string_view name) {
  std::istringstream in(text);
  return data::parse_cmudict(in, name);
}

TEST(G2PScore, ScoresAnotherSystemsBestPronunciation) {
  const data::Lexicon refs = parse("read R IY1 D\nread(2) R EH1 D\ncat K AE1 T\ndog D AO1 G\n", "refs");
  const std::vector<int64_t> all = {0, 1, 2};
  // read: equals the second reference (0 edits / 3); cat: the first line (K AE, 1 edit / 3)
  // is the best and counts, not the exact second one; dog: one substitution (1 / 3).
  const data::Lexicon hyp = parse("read R EH D\ncat K AE\ncat(2) K AE T\ndog D AA G\nextra EH K S\n", "hyp");
  const SequenceErrorRates r = score_g2p_hypotheses(refs, all, hyp, "hyp");
  EXPECT_EQ(r.words, 3);
  EXPECT_EQ(r.word_errors, 2);
  EXPECT_EQ(r.edits, 2);
  EXPECT_EQ(r.reference_phonemes, 9);

  const std::vector<int64_t> only_read = {0};
  EXPECT_EQ(score_g2p_hypotheses(refs, only_read, hyp, "hyp").word_errors, 0);
}

TEST(G2PScore, AMissingWordNamesItAndTheCount) {
  const data::Lexicon refs = parse("read R IY1 D\ncat K AE1 T\ndog D AO1 G\n", "refs");
  const data::Lexicon hyp = parse("read R IY D\n", "out.txt");
  const std::vector<int64_t> all = {0, 1, 2};
  try {
    score_g2p_hypotheses(refs, all, hyp, "out.txt");
    FAIL() << "expected heed::Error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("out.txt has no pronunciation for 'cat'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2 of 3 words missing"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace heed::train
