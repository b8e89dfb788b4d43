// Tests for scoring another system's pronunciations (`heed score`) on hand-computed cases,
// and for models that read their targets right to left (alone and beside left-to-right ones).
#include "heed/train/g2p.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "heed/decode/beam.h"
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

// ---------------------------------------------------------------- reading directions

models::TransformerSeq2SeqOptions tiny(uint64_t seed, bool reverse) {
  return {.src_vocab = 9, .tgt_vocab = 12, .d_model = 16, .heads = 2, .encoder_layers = 1, .decoder_layers = 1,
          .ff_width = 32, .dropout = 0.0, .max_len = 32, .seed = seed, .reverse_target = reverse};
}

const std::vector<std::vector<int64_t>> kWords = {{3, 4, 5}, {6, 3}, {7, 8, 4, 5, 6}, {5}, {4, 4, 7, 3}};

std::vector<int64_t> reversed(std::vector<int64_t> v) {
  std::reverse(v.begin(), v.end());
  return v;
}

TEST(G2PDirections, AReversedModelsOutputsAreReadBack) {
  // The same weights, once marked as reading its targets right to left.
  models::TransformerSeq2Seq l2r(tiny(3, false)), r2l(tiny(3, true));
  l2r.eval();
  r2l.eval();
  const G2PDecodeOptions o{.beam_size = 3, .nbest = 2, .max_len = 10};
  const auto a = predict_ids(l2r, kWords, o), b = predict_ids(r2l, kWords, o);
  for (size_t i = 0; i < kWords.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size());
    for (size_t k = 0; k < a[i].size(); ++k) {
      EXPECT_EQ(b[i][k].ids, reversed(a[i][k].ids));
      EXPECT_EQ(b[i][k].score, a[i][k].score);
    }
  }
  std::vector<data::Example> ex = {{.src = {3}, .tgt = {4, 5, 6}}, {.src = {4}, .tgt = {7}}};
  reverse_targets(ex);
  EXPECT_EQ(ex[0].tgt, (std::vector<int64_t>{6, 5, 4}));
  EXPECT_EQ(ex[1].tgt, (std::vector<int64_t>{7}));
}

TEST(G2PDirections, TeacherForcedLogProbsEqualTheSearchsOwn) {
  for (bool reverse : {false, true}) {
    models::TransformerSeq2Seq m(tiny(4, reverse));
    m.eval();
    const auto preds = predict_ids(m, kWords, {.beam_size = 4, .nbest = 4, .max_len = 12});
    std::vector<int64_t> word;
    std::vector<std::vector<int64_t>> cands;
    std::vector<double> expected;
    for (size_t i = 0; i < preds.size(); ++i)
      for (const PhonemePrediction& p : preds[i])
        if (p.finished) {  // the search's log_prob includes EOS only for ended hypotheses
          word.push_back(static_cast<int64_t>(i));
          cands.push_back(p.ids);
          expected.push_back(p.log_prob);
        }
    ASSERT_GE(cands.size(), 5u) << "too few ended hypotheses to compare";
    const std::vector<double> got = target_log_probs(m, kWords, word, cands, /*batch_size=*/3);
    for (size_t k = 0; k < got.size(); ++k) EXPECT_NEAR(got[k], expected[k], 1e-4) << "candidate " << k;
  }
}

TEST(G2PDirections, BothDirectionsPickTheBestMeanOfTheirProposals) {
  models::TransformerSeq2Seq l2r(tiny(5, false)), r2l(tiny(6, true));
  l2r.eval();
  r2l.eval();
  const G2PDecodeOptions o{.beam_size = 3, .alpha = 1.0, .nbest = 2, .max_len = 10};
  const models::TransformerSeq2Seq* both[] = {&l2r, &r2l};
  const auto got = predict_ids(both, kWords, o);
  G2PDecodeOptions three = o;
  three.nbest = 3;
  const auto a = predict_ids(l2r, kWords, three), b = predict_ids(r2l, kWords, three);
  for (size_t i = 0; i < kWords.size(); ++i) {
    std::vector<std::vector<int64_t>> cands;  // every proposal of either direction
    for (const auto* list : {&a[i], &b[i]})
      for (const PhonemePrediction& p : *list)
        if (std::find(cands.begin(), cands.end(), p.ids) == cands.end()) cands.push_back(p.ids);
    const std::vector<int64_t> word(cands.size(), static_cast<int64_t>(i));
    const std::vector<double> la = target_log_probs(l2r, kWords, word, cands), lb = target_log_probs(r2l, kWords, word, cands);
    double best = -1e300;
    for (size_t k = 0; k < cands.size(); ++k)
      best = std::max(best, decode::length_normalised((la[k] + lb[k]) / 2, cands[k].size() + 1, o.alpha));
    ASSERT_EQ(got[i].size(), std::min<size_t>(2, cands.size())) << "word " << i;
    // Within f32 noise: the batches that score a candidate here and inside predict_ids differ
    // in padding, so their products are tiled differently.
    EXPECT_NEAR(got[i][0].score, best, 1e-5) << "word " << i;
    for (size_t r = 0; r < got[i].size(); ++r) {
      const size_t k = static_cast<size_t>(std::find(cands.begin(), cands.end(), got[i][r].ids) - cands.begin());
      ASSERT_LT(k, cands.size()) << "not a proposal of either direction";
      EXPECT_NEAR(got[i][r].log_prob, (la[k] + lb[k]) / 2, 1e-5);
      if (r > 0) EXPECT_LE(got[i][r].score, got[i][r - 1].score);
    }
  }
}

}  // namespace
}  // namespace heed::train
