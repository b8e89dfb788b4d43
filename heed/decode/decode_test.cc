// Greedy and beam search: the cached decoder against full-prefix recomputation, beam size 1
// against greedy, scores against teacher-forced log-probabilities, batch independence, and
// a briefly trained model that reverses its training sequences.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "heed/decode/beam.h"
#include "heed/decode/ensemble.h"
#include "heed/decode/greedy.h"
#include "heed/decode/kv_cache.h"
#include "heed/heed.h"
#include "heed/ops/loss.h"
#include "heed/ops/softmax.h"
#include "heed/train/g2p.h"
#include "heed/train/optimizer.h"

namespace heed::decode {
namespace {

constexpr int64_t kBos = 1, kEos = 2;

Tensor ids(const std::vector<int64_t>& v, int64_t b) {
  return Tensor::from_vector(v, {b, static_cast<int64_t>(v.size()) / b});
}
Tensor lengths(const std::vector<int64_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

// Reverse-the-source task: source tokens 3..8, target = reversed source + EOS.
struct Data {
  Tensor src = ids({3, 4, 5, 6, 6, 5, 0, 0, 4, 4, 3, 0, 8, 7, 0, 0}, 4);
  Tensor lens = lengths({4, 2, 3, 2});
  Tensor tgt_in = ids({1, 6, 5, 4, 3, 1, 5, 6, 0, 0, 1, 3, 4, 4, 0, 1, 7, 8, 0, 0}, 4);
  Tensor tgt_out = ids({6, 5, 4, 3, 2, 5, 6, 2, 0, 0, 3, 4, 4, 2, 0, 7, 8, 2, 0, 0}, 4);
};

// One tiny model trained for a few steps, shared by the tests (training takes ~1 s).
const models::TransformerSeq2Seq& trained_model() {
  static std::unique_ptr<models::TransformerSeq2Seq> model = [] {
    auto m = std::make_unique<models::TransformerSeq2Seq>(models::TransformerSeq2SeqOptions{
        .src_vocab = 9, .tgt_vocab = 9, .d_model = 16, .heads = 2, .encoder_layers = 1, .decoder_layers = 2,
        .ff_width = 32, .dropout = 0.0, .max_len = 32, .seed = 5});
    Data d;
    train::Adam opt(m->named_parameters(), train::AdamOptions{.lr = 0.01});
    for (int step = 0; step < 120; ++step) {
      opt.zero_grad();
      cross_entropy(m->forward(d.src, d.lens, d.tgt_in), d.tgt_out, {.ignore_index = 0}).backward();
      opt.step();
    }
    m->eval();
    return m;
  }();
  return *model;
}

// Sources the model did not see, of several lengths, to get varied outputs.
struct Unseen {
  Tensor src = ids({5, 3, 8, 6, 7, 4, 3, 0, 0, 0, 6, 6, 6, 6, 6, 8, 0, 0, 0, 0}, 4);
  Tensor lens = lengths({5, 2, 5, 1});
};

// Sum of log p(token) under teacher forcing for BOS + tokens (+ EOS when finished).
double teacher_forced_log_prob(const models::TransformerSeq2Seq& m, const Tensor& src, const Tensor& len,
                               const Hypothesis& h) {
  std::vector<int64_t> in = {kBos}, out = h.tokens;
  in.insert(in.end(), h.tokens.begin(), h.tokens.end());
  if (h.finished) out.push_back(kEos);
  else in.pop_back();
  if (out.empty()) return 0;
  autograd::NoGradGuard no_grad;
  Tensor lp = log_softmax(m.forward(src, len, ids(in, 1)), -1);  // [1, T, V]
  std::vector<double> v = lp.to_vector<double>();
  double total = 0;
  for (size_t t = 0; t < out.size(); ++t) total += v[t * lp.size(2) + out[t]];
  return total;
}

TEST(Decode, TrainedModelReversesItsTrainingSequences) {
  const auto& m = trained_model();
  Data d;
  CachedSeq2SeqDecoder dec(m);
  std::vector<Hypothesis> got = greedy_decode(dec, d.src, d.lens, {.bos_id = kBos, .eos_id = kEos, .max_len = 10});
  std::vector<std::vector<int64_t>> want = {{6, 5, 4, 3}, {5, 6}, {3, 4, 4}, {7, 8}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got[i].tokens, want[i]) << "source " << i;
    EXPECT_TRUE(got[i].finished);
  }
}

TEST(Decode, GreedyCachedEqualsRecomputed) {
  const auto& m = trained_model();
  Unseen u;
  CachedSeq2SeqDecoder cached(m);
  RecomputeSeq2SeqDecoder full(m);
  GreedyOptions go{.bos_id = kBos, .eos_id = kEos, .max_len = 7};
  std::vector<Hypothesis> a = greedy_decode(cached, u.src, u.lens, go), b = greedy_decode(full, u.src, u.lens, go);
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens) << i;
    EXPECT_EQ(a[i].finished, b[i].finished) << i;
    EXPECT_NEAR(a[i].log_prob, b[i].log_prob, 1e-5) << i;
    Tensor one_src = u.src.raw_slice(0, i, i + 1), one_len = u.lens.raw_slice(0, i, i + 1);
    EXPECT_NEAR(a[i].log_prob, teacher_forced_log_prob(m, one_src, one_len, a[i]), 1e-5) << i;
  }
}

TEST(Decode, BeamCachedEqualsRecomputedAndScoresAreConsistent) {
  const auto& m = trained_model();
  Unseen u;
  for (double alpha : {0.0, 0.6}) {
    BeamOptions bo{.beam_size = 3, .alpha = alpha, .nbest = 3, .bos_id = kBos, .eos_id = kEos, .max_len = 7};
    CachedSeq2SeqDecoder cached(m);
    RecomputeSeq2SeqDecoder full(m);
    auto a = beam_search(cached, u.src, u.lens, bo), b = beam_search(full, u.src, u.lens, bo);
    ASSERT_EQ(a.size(), 4u);
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].size(), b[i].size()) << i;
      ASSERT_FALSE(a[i].empty());
      EXPECT_LE(a[i].size(), 3u);
      Tensor one_src = u.src.raw_slice(0, i, i + 1), one_len = u.lens.raw_slice(0, i, i + 1);
      for (size_t j = 0; j < a[i].size(); ++j) {
        const Hypothesis& h = a[i][j];
        EXPECT_EQ(h.tokens, b[i][j].tokens) << i << "/" << j;
        EXPECT_NEAR(h.score, b[i][j].score, 1e-5) << i << "/" << j;
        EXPECT_NEAR(h.log_prob, teacher_forced_log_prob(m, one_src, one_len, h), 1e-5) << i << "/" << j;
        const double len = static_cast<double>(h.tokens.size() + (h.finished ? 1 : 0));
        EXPECT_NEAR(h.score, h.log_prob / std::pow(len, alpha), 1e-12);
        if (j > 0) EXPECT_GE(a[i][j - 1].score, h.score);
      }
    }
  }
}

TEST(Decode, BeamOfOneEqualsGreedy) {
  const auto& m = trained_model();
  Unseen u;
  CachedSeq2SeqDecoder d1(m), d2(m);
  auto g = greedy_decode(d1, u.src, u.lens, {.bos_id = kBos, .eos_id = kEos, .max_len = 6});
  auto bs = beam_search(d2, u.src, u.lens,
                        {.beam_size = 1, .alpha = 1.0, .nbest = 1, .bos_id = kBos, .eos_id = kEos, .max_len = 6});
  for (size_t i = 0; i < g.size(); ++i) {
    ASSERT_EQ(bs[i].size(), 1u);
    EXPECT_EQ(bs[i][0].tokens, g[i].tokens) << i;
    EXPECT_EQ(bs[i][0].finished, g[i].finished) << i;
    EXPECT_DOUBLE_EQ(bs[i][0].log_prob, g[i].log_prob) << i;
  }
}

TEST(Decode, BatchedEqualsOneByOne) {
  const auto& m = trained_model();
  Unseen u;
  BeamOptions bo{.beam_size = 4, .alpha = 1.0, .nbest = 2, .bos_id = kBos, .eos_id = kEos, .max_len = 7};
  CachedSeq2SeqDecoder dec(m);
  auto batched = beam_search(dec, u.src, u.lens, bo);
  for (int64_t i = 0; i < 4; ++i) {
    auto single = beam_search(dec, u.src.raw_slice(0, i, i + 1), u.lens.raw_slice(0, i, i + 1), bo);
    ASSERT_EQ(single[0].size(), batched[i].size());
    for (size_t j = 0; j < single[0].size(); ++j) {
      EXPECT_EQ(single[0][j].tokens, batched[i][j].tokens);
      EXPECT_NEAR(single[0][j].score, batched[i][j].score, 1e-5);
    }
  }
  EXPECT_THROW(beam_search(dec, u.src, u.lens, {.beam_size = 2, .nbest = 3}), Error);
}

// A second model over the same vocabularies, untrained (other seed): its distributions
// differ from trained_model()'s everywhere, so a mixture of the two is visible.
const models::TransformerSeq2Seq& other_model() {
  static std::unique_ptr<models::TransformerSeq2Seq> model = [] {
    auto m = std::make_unique<models::TransformerSeq2Seq>(models::TransformerSeq2SeqOptions{
        .src_vocab = 9, .tgt_vocab = 9, .d_model = 16, .heads = 2, .encoder_layers = 1, .decoder_layers = 1,
        .ff_width = 24, .dropout = 0.0, .max_len = 32, .seed = 11});
    m->eval();
    return m;
  }();
  return *model;
}

// Same n-best lists: equal tokens, scores and log-probabilities within tol (0: exactly).
void expect_same_hypotheses(const std::vector<std::vector<Hypothesis>>& a,
                            const std::vector<std::vector<Hypothesis>>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].size(), b[i].size()) << i;
    for (size_t j = 0; j < a[i].size(); ++j) {
      EXPECT_EQ(a[i][j].tokens, b[i][j].tokens) << i << "/" << j;
      EXPECT_NEAR(a[i][j].score, b[i][j].score, tol) << i << "/" << j;
      EXPECT_NEAR(a[i][j].log_prob, b[i][j].log_prob, tol) << i << "/" << j;
    }
  }
}

TEST(Ensemble, OfOneModelIsThatModel) {
  const auto& m = trained_model();
  Unseen u;
  BeamOptions bo{.beam_size = 3, .alpha = 1.0, .nbest = 3, .bos_id = kBos, .eos_id = kEos, .max_len = 7};
  CachedSeq2SeqDecoder alone(m), member(m);
  EnsembleDecoder ensemble({&member});
  expect_same_hypotheses(beam_search(alone, u.src, u.lens, bo), beam_search(ensemble, u.src, u.lens, bo), 0.0);
}

TEST(Ensemble, OfTheSameModelTwiceDecodesAsThatModel) {
  const auto& m = trained_model();
  Unseen u;
  BeamOptions bo{.beam_size = 4, .alpha = 0.6, .nbest = 2, .bos_id = kBos, .eos_id = kEos, .max_len = 7};
  CachedSeq2SeqDecoder alone(m), first(m), second(m);
  EnsembleDecoder ensemble({&first, &second});
  // log(mean(p, p)) = log p, up to rounding.
  expect_same_hypotheses(beam_search(alone, u.src, u.lens, bo), beam_search(ensemble, u.src, u.lens, bo), 1e-5);
}

// Each step of the ensemble is log((p_a + p_b) / 2) of the two models' own steps on the
// same tokens, through a reorder (rows dropped and duplicated) as beam search does.
TEST(Ensemble, StepIsTheMeanOfTheMembersDistributions) {
  const auto& ma = trained_model();
  const auto& mb = other_model();
  Unseen u;
  CachedSeq2SeqDecoder a(ma), b(mb), ea(ma), eb(mb);
  EnsembleDecoder ensemble({&ea, &eb});
  for (IncrementalDecoder* d : std::vector<IncrementalDecoder*>{&a, &b, &ensemble}) d->start(u.src, u.lens, 6);
  std::vector<std::vector<int64_t>> feeds = {{kBos, kBos, kBos, kBos}, {5, 3, 8, 4}, {6, 6, 7}, {3, 4, 4}};
  const Tensor keep = Tensor::from_vector(std::vector<int64_t>{3, 0, 0}, {3});
  double max_mixed_gap = 0;
  for (size_t t = 0; t < feeds.size(); ++t) {
    if (t == 2)
      for (IncrementalDecoder* d : std::vector<IncrementalDecoder*>{&a, &b, &ensemble}) d->reorder(keep);
    const Tensor tokens = Tensor::from_vector(feeds[t], {static_cast<int64_t>(feeds[t].size())});
    const Tensor la = a.step(tokens), lb = b.step(tokens), le = ensemble.step(tokens);
    ASSERT_EQ(le.shape(), la.shape());
    EXPECT_EQ(le.dtype(), la.dtype());
    const std::vector<double> va = la.to_vector<double>(), vb = lb.to_vector<double>(), ve = le.to_vector<double>();
    const int64_t v = la.size(1);
    for (int64_t r = 0; r < la.size(0); ++r) {
      double total = 0;
      for (int64_t k = 0; k < v; ++k) {
        const size_t e = static_cast<size_t>(r * v + k);
        const double want = std::log(0.5 * (std::exp(va[e]) + std::exp(vb[e])));
        // One f32 rounding of the result: relative 1e-6 (plus 1e-6 near zero).
        EXPECT_NEAR(ve[e], want, 1e-6 * std::max(1.0, std::abs(want))) << "step " << t << " row " << r << " token " << k;
        max_mixed_gap = std::max(max_mixed_gap, std::min(std::abs(ve[e] - va[e]), std::abs(ve[e] - vb[e])));
        total += std::exp(ve[e]);
      }
      EXPECT_NEAR(total, 1.0, 1e-5) << "step " << t << " row " << r;  // still a distribution
    }
  }
  EXPECT_GT(max_mixed_gap, 1e-2);  // the members really differ: the test could tell a member from the mean
}

TEST(Ensemble, MembersWithOtherVocabulariesAreAnError) {
  const auto& m = trained_model();
  models::TransformerSeq2Seq wider(models::TransformerSeq2SeqOptions{
      .src_vocab = 9, .tgt_vocab = 10, .d_model = 16, .heads = 2, .encoder_layers = 1, .decoder_layers = 1,
      .ff_width = 24, .dropout = 0.0, .max_len = 32, .seed = 3});
  wider.eval();
  Unseen u;
  CachedSeq2SeqDecoder a(m), b(wider);
  EnsembleDecoder ensemble({&a, &b});
  ensemble.start(u.src, u.lens, 4);
  try {
    ensemble.step(Tensor::from_vector(std::vector<int64_t>{kBos, kBos, kBos, kBos}, {4}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("share the target vocabulary"), std::string::npos) << e.what();
  }
  EXPECT_THROW(EnsembleDecoder({}), Error);
}

// A member that returns fixed log-probabilities, to reach the mixing rules' edge cases.
class FixedDecoder final : public IncrementalDecoder {
 public:
  explicit FixedDecoder(Tensor out) : out_(std::move(out)) {}
  void start(const Tensor&, const Tensor&, int64_t) override {}
  Tensor step(const Tensor&) override { return out_; }
  void reorder(const Tensor&) override {}

 private:
  Tensor out_;
};

TEST(Ensemble, MixingRulesForImpossibleTokensNaNAndDoubles) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  // Three members, one row of five tokens: token 0 possible for all, token 1 for one member
  // only, token 2 for none, token 3 NaN in one member, token 4 NaN in all.
  const std::vector<std::vector<double>> rows = {{std::log(0.5), std::log(0.25), -inf, std::log(0.25), nan},
                                                 {std::log(0.7), -inf, -inf, nan, nan},
                                                 {std::log(0.1), -inf, -inf, std::log(0.9), nan}};
  for (DType dt : {DType::kF32, DType::kF64}) {
    FixedDecoder a(Tensor::from_vector(rows[0], {1, 5}).to(dt)), b(Tensor::from_vector(rows[1], {1, 5}).to(dt)),
        c(Tensor::from_vector(rows[2], {1, 5}).to(dt));
    EnsembleDecoder ensemble({&a, &b, &c});
    const Tensor out = ensemble.step(Tensor::from_vector(std::vector<int64_t>{kBos}, {1}));
    EXPECT_EQ(out.dtype(), dt);
    const std::vector<double> v = out.to_vector<double>();
    const double tol = dt == DType::kF32 ? 1e-6 : 1e-14;
    EXPECT_NEAR(v[0], std::log((0.5 + 0.7 + 0.1) / 3), tol);
    EXPECT_NEAR(v[1], std::log(0.25 / 3), tol);
    EXPECT_EQ(v[2], -inf);
    EXPECT_TRUE(std::isnan(v[3]));
    EXPECT_TRUE(std::isnan(v[4]));
  }
  EXPECT_THROW(EnsembleDecoder({nullptr}), Error);
}

// The G2P prediction path with an ensemble: greedy and beam, the same model twice gives the
// model's own predictions; a model of the ensemble whose positions are too few is named.
TEST(Ensemble, PredictionsOfTheSameModelTwiceAreTheModels) {
  const auto& m = trained_model();
  const std::vector<std::vector<int64_t>> sources = {{5, 3, 8, 6, 7}, {4, 3}, {6, 6, 6, 6, 6}, {8}, {3, 4, 5, 6}};
  const models::TransformerSeq2Seq* twice[] = {&m, &m};
  for (int64_t beam : {1, 3}) {
    const train::G2PDecodeOptions o{.beam_size = beam, .alpha = 1.0, .nbest = 1, .max_len = 8, .batch_size = 2};
    auto one = train::predict_ids(m, sources, o), two = train::predict_ids(twice, sources, o);
    ASSERT_EQ(one.size(), two.size());
    for (size_t i = 0; i < one.size(); ++i) {
      ASSERT_EQ(one[i].size(), 1u);
      ASSERT_EQ(two[i].size(), 1u);
      EXPECT_EQ(one[i][0].ids, two[i][0].ids) << "beam " << beam << " source " << i;
      EXPECT_NEAR(one[i][0].log_prob, two[i][0].log_prob, 1e-5) << "beam " << beam << " source " << i;
    }
  }
  models::TransformerSeq2Seq short_positions(models::TransformerSeq2SeqOptions{
      .src_vocab = 9, .tgt_vocab = 9, .d_model = 16, .heads = 2, .encoder_layers = 1, .decoder_layers = 1,
      .ff_width = 24, .dropout = 0.0, .max_len = 6, .seed = 3});
  short_positions.eval();
  const models::TransformerSeq2Seq* mixed[] = {&m, &short_positions};
  try {
    train::predict_ids(mixed, sources, {.beam_size = 1, .max_len = 8});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model 2 of 2 has max_len 6"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace heed::decode
