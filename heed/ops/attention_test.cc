// Composed attention against the naive double reference: every score function x every mask
// kind x (self, cross, grouped-query) on awkward sizes with non-contiguous views; gradient
// checks in double; fully masked rows; the Philox dropout contract; argument errors.
#include "heed/ops/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <source_location>
#include <string>

#include "heed/heed.h"
#include "heed/kernels/ref/attention_ref_composed.h"
#include "heed/tensor/random.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using kernels::ref::composed_attention_ref;
using kernels::ref::ComposedAttentionRef;
using kernels::ref::RefScore;
using testing::all_close;
using testing::bitwise_equal;
using testing::gradcheck;
using testing::kReduction;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int64_t kAdditiveWidth = 5;  // A, the hidden width of the additive score

enum class MaskKind { kNone, kKeyLengths, kCausal, kCausalOffset, kWindow, kBool, kAdditive, kCombined };

const char* mask_name(MaskKind m) {
  switch (m) {
    case MaskKind::kNone: return "NoMask";
    case MaskKind::kKeyLengths: return "KeyLengths";
    case MaskKind::kCausal: return "Causal";
    case MaskKind::kCausalOffset: return "CausalOffset";
    case MaskKind::kWindow: return "Window";
    case MaskKind::kBool: return "Bool";
    case MaskKind::kAdditive: return "Additive";
    case MaskKind::kCombined: return "Combined";
  }
  return "?";
}

const char* score_label(AttentionScore s) {
  switch (s) {
    case AttentionScore::kScaledDot: return "ScaledDot";
    case AttentionScore::kDot: return "Dot";
    case AttentionScore::kGeneral: return "General";
    case AttentionScore::kAdditive: return "Additive";
  }
  return "?";
}

struct Problem {
  int64_t b, hq, hkv, t, s, dq, dk, dv;
};

std::string problem_str(const Problem& p) {
  return "B=" + std::to_string(p.b) + " Hq=" + std::to_string(p.hq) + " Hkv=" + std::to_string(p.hkv) +
         " T=" + std::to_string(p.t) + " S=" + std::to_string(p.s) + " Dq=" + std::to_string(p.dq) +
         " Dk=" + std::to_string(p.dk) + " Dv=" + std::to_string(p.dv);
}

// A random tensor from a standard normal scaled by `scale`, as a fresh leaf.
Tensor randn_scaled(const Shape& shape, uint64_t seed, DType dtype, double scale) {
  Tensor t = Tensor::randn(shape, seed, dtype);
  return scale == 1.0 ? t : mul(t, scale);
}

ScoreParams make_params(AttentionScore score, const Problem& p, uint64_t seed, DType dtype) {
  ScoreParams params;
  if (score == AttentionScore::kGeneral)
    params.weight = randn_scaled({p.dq, p.dk}, seed + 10, dtype, 1.0 / std::sqrt(static_cast<double>(p.dq)));
  if (score == AttentionScore::kAdditive) {
    params.query_weight = randn_scaled({kAdditiveWidth, p.dq}, seed + 11, dtype, 1.0 / std::sqrt(double(p.dq)));
    params.key_weight = randn_scaled({kAdditiveWidth, p.dk}, seed + 12, dtype, 1.0 / std::sqrt(double(p.dk)));
    params.v = Tensor::randn({kAdditiveWidth}, seed + 13, dtype);
  }
  return params;
}

struct Inputs {
  Tensor q, k, v;
};

// q is a permuted [B, T, Hq, Dq] buffer and k a stride-2 slice: neither is contiguous.
Inputs make_strided_inputs(const Problem& p, uint64_t seed, DType dtype) {
  Inputs in;
  in.q = Tensor::randn({p.b, p.t, p.hq, p.dq}, seed, dtype).raw_permute({0, 2, 1, 3});     // [B, Hq, T, Dq]
  in.k = Tensor::randn({p.b, p.hkv, p.s, 2 * p.dk}, seed + 1, dtype).raw_slice(3, 0, 2 * p.dk, 2);  // [B, Hkv, S, Dk]
  in.v = Tensor::randn({p.b, p.hkv, p.s, p.dv}, seed + 2, dtype);                            // [B, Hkv, S, Dv]
  return in;
}

// Key lengths in [1, S] (varying with b), so no row is fully masked by them alone.
Tensor some_lengths(const Problem& p, uint64_t seed) {
  std::vector<int64_t> lengths(p.b);
  for (int64_t b = 0; b < p.b; ++b) lengths[b] = 1 + static_cast<int64_t>((seed + 5 * b) % p.s);
  lengths[0] = p.s;
  return Tensor::from_vector(lengths, {p.b});
}

// A u8 mask of `shape` with about 70% of the keys allowed.
Tensor random_bool(const Shape& shape, uint64_t seed) {
  std::vector<uint8_t> m(shape_numel(shape));
  for (size_t e = 0; e < m.size(); ++e) m[e] = random::uniform(seed, 7, e) < 0.7f ? 1 : 0;
  return Tensor::from_vector(m, shape);
}

// A normal additive mask of `shape` with every 5th entry -inf.
Tensor random_additive(const Shape& shape, uint64_t seed, DType dtype) {
  Tensor t = Tensor::randn(shape, seed, DType::kF64);
  std::vector<double> x = t.to_vector<double>();
  for (size_t e = 0; e < x.size(); e += 5) x[e] = -kInf;
  return Tensor::from_vector(x, shape).to(dtype);
}

AttentionMask make_mask(MaskKind kind, const Problem& p, uint64_t seed, DType dtype) {
  AttentionMask m;
  switch (kind) {
    case MaskKind::kNone: break;
    case MaskKind::kKeyLengths: m.key_lengths = some_lengths(p, seed); break;
    case MaskKind::kCausal: m.causal = true; break;
    case MaskKind::kCausalOffset:
      m.causal = true;
      m.causal_offset = p.s - p.t;  // decoding with a cache: the last query sees every key
      break;
    case MaskKind::kWindow:
      m.causal_offset = p.s - p.t;
      m.window_left = 2;
      m.window_right = 1;
      break;
    case MaskKind::kBool: m.bool_mask = random_bool({p.b, 1, p.t, p.s}, seed); break;
    case MaskKind::kAdditive: m.additive_mask = random_additive({p.hq, p.t, p.s}, seed, dtype); break;
    case MaskKind::kCombined:
      m.key_lengths = some_lengths(p, seed);
      m.causal = true;
      m.causal_offset = p.s - p.t;
      m.window_left = 3;
      m.bool_mask = random_bool({p.t, p.s}, seed);
      m.additive_mask = random_additive({p.b, p.hq, p.t, p.s}, seed + 1, dtype);
      break;
  }
  return m;
}

ComposedAttentionRef to_ref(const AttentionOptions& o, int64_t dq) {
  ComposedAttentionRef r;
  switch (o.score) {
    case AttentionScore::kScaledDot:
      r.score = RefScore::kDot;
      r.scale = o.scale.value_or(1.0 / std::sqrt(static_cast<double>(dq)));
      break;
    case AttentionScore::kDot: r.score = RefScore::kDot; r.scale = o.scale.value_or(1.0); break;
    case AttentionScore::kGeneral: r.score = RefScore::kGeneral; r.scale = o.scale.value_or(1.0); break;
    case AttentionScore::kAdditive: r.score = RefScore::kAdditive; r.scale = o.scale.value_or(1.0); break;
  }
  r.softcap = o.softcap;
  r.sigmoid = o.weighting == AttentionWeighting::kSigmoid;
  r.weight = o.params.weight;
  r.query_weight = o.params.query_weight;
  r.key_weight = o.params.key_weight;
  r.v_weight = o.params.v;
  r.key_lengths = o.mask.key_lengths;
  r.causal = o.mask.causal;
  r.causal_offset = o.mask.causal_offset;
  r.window_left = o.mask.window_left;
  r.window_right = o.mask.window_right;
  r.bool_mask = o.mask.bool_mask;
  r.additive_mask = o.mask.additive_mask;
  if (o.training) {
    r.dropout_p = o.dropout_p;
    r.dropout_seed = o.dropout_seed;
    r.dropout_stream = o.dropout_stream;
  }
  return r;
}

// Runs attention and the reference on the same problem and compares out, weights and scores.
void expect_matches_reference(const Problem& p, AttentionOptions o, uint64_t seed) {
  Inputs in = make_strided_inputs(p, seed, DType::kF32);
  o.need_weights = true;
  o.need_scores = true;
  AttentionResult got = attention(in.q, in.k, in.v, o);
  auto want = composed_attention_ref(in.q, in.k, in.v, to_ref(o, p.dq));
  EXPECT_TRUE(all_close(got.out, want.out, kReduction)) << problem_str(p) << " (out)";
  EXPECT_TRUE(all_close(got.weights, want.weights, kReduction)) << problem_str(p) << " (weights)";
  EXPECT_TRUE(all_close(got.scores, want.scores, kReduction)) << problem_str(p) << " (scores)";
}

class AttentionVsReference : public ::testing::TestWithParam<std::tuple<AttentionScore, MaskKind>> {};

TEST_P(AttentionVsReference, SelfCrossAndGroupedOnAwkwardSizes) {
  auto [score, mask_kind] = GetParam();
  const int64_t sizes[] = {1, 7, 33};
  const int64_t head_dims[] = {1, 7, 64};
  uint64_t seed = 100;
  for (int64_t d : head_dims)
    for (int64_t t : sizes)
      for (int64_t s : sizes) {
        // Additive and general scores may use a key width different from the query's.
        const bool dot = score == AttentionScore::kScaledDot || score == AttentionScore::kDot;
        const int64_t dk = dot ? d : (d % 5) + 2;
        std::vector<Problem> problems = {
            {2, 3, 3, t, s, d, dk, d + 1},  // cross attention, one kv head per query head
            {2, 4, 2, t, s, d, dk, 3},      // grouped-query: two query heads per kv head
        };
        if (t == s) problems.push_back({2, 2, 2, t, t, d, dk, d});  // self attention
        for (const Problem& p : problems) {
          ++seed;
          AttentionOptions o;
          o.score = score;
          o.params = make_params(score, p, seed, DType::kF32);
          o.mask = make_mask(mask_kind, p, seed, DType::kF32);
          SCOPED_TRACE(std::string(score_label(score)) + " " + mask_name(mask_kind) + " " + problem_str(p));
          expect_matches_reference(p, o, seed);
        }
      }
}

INSTANTIATE_TEST_SUITE_P(
    AllScoresAllMasks, AttentionVsReference,
    ::testing::Combine(::testing::Values(AttentionScore::kScaledDot, AttentionScore::kDot, AttentionScore::kGeneral,
                                         AttentionScore::kAdditive),
                       ::testing::Values(MaskKind::kNone, MaskKind::kKeyLengths, MaskKind::kCausal,
                                         MaskKind::kCausalOffset, MaskKind::kWindow, MaskKind::kBool,
                                         MaskKind::kAdditive, MaskKind::kCombined)),
    [](const auto& info) {
      return std::string(score_label(std::get<0>(info.param))) + "_" + mask_name(std::get<1>(info.param));
    });

TEST(Attention, SigmoidWeightingEveryMaskKind) {
  uint64_t seed = 900;
  for (MaskKind kind : {MaskKind::kNone, MaskKind::kKeyLengths, MaskKind::kCausal, MaskKind::kCausalOffset,
                        MaskKind::kWindow, MaskKind::kBool, MaskKind::kAdditive, MaskKind::kCombined})
    for (AttentionScore score : {AttentionScore::kScaledDot, AttentionScore::kAdditive}) {
      Problem p{2, 4, 2, 7, 33, 7, 7, 5};
      AttentionOptions o;
      o.score = score;
      o.weighting = AttentionWeighting::kSigmoid;
      o.params = make_params(score, p, ++seed, DType::kF32);
      o.mask = make_mask(kind, p, seed, DType::kF32);
      SCOPED_TRACE(mask_name(kind));
      expect_matches_reference(p, o, seed);
    }
}

TEST(Attention, ExplicitScaleAndSoftcap) {
  Problem p{2, 4, 4, 7, 33, 64, 64, 7};
  for (AttentionScore score : {AttentionScore::kScaledDot, AttentionScore::kDot, AttentionScore::kGeneral,
                               AttentionScore::kAdditive}) {
    AttentionOptions o;
    o.score = score;
    o.params = make_params(score, p, 31, DType::kF32);
    o.scale = 0.3;
    o.softcap = 2.5;
    o.mask = make_mask(MaskKind::kCombined, p, 31, DType::kF32);
    SCOPED_TRACE(score_label(score));
    expect_matches_reference(p, o, 31);
  }
}

TEST(Attention, DoublePrecisionMatchesReferenceTightly) {
  Problem p{2, 4, 2, 7, 33, 7, 7, 5};
  for (AttentionScore score : {AttentionScore::kScaledDot, AttentionScore::kGeneral, AttentionScore::kAdditive}) {
    Inputs in = make_strided_inputs(p, 55, DType::kF64);
    AttentionOptions o;
    o.score = score;
    o.params = make_params(score, p, 55, DType::kF64);
    o.mask = make_mask(MaskKind::kCombined, p, 55, DType::kF64);
    o.need_weights = true;
    AttentionResult got = attention(in.q, in.k, in.v, o);
    auto want = composed_attention_ref(in.q, in.k, in.v, to_ref(o, p.dq));
    EXPECT_TRUE(all_close(got.out, want.out, {1e-12, 1e-10})) << score_label(score);
    EXPECT_TRUE(all_close(got.weights, want.weights, {1e-12, 1e-10})) << score_label(score);
  }
}

// ---- gradients ----

// Runs gradcheck on attention's output (or weights) for q, k, v, the score parameters and the
// additive mask, all f64 leaves.
void check_gradients(AttentionScore score, AttentionWeighting weighting, MaskKind kind, bool of_weights) {
  Problem p{2, 4, 2, 3, 4, 3, score == AttentionScore::kGeneral || score == AttentionScore::kAdditive ? 2 : 3, 2};
  AttentionOptions base;
  base.score = score;
  base.weighting = weighting;
  base.mask = make_mask(kind, p, 77, DType::kF64);
  std::vector<Tensor> inputs = {testing::rand_param({p.b, p.hq, p.t, p.dq}, 1),
                                testing::rand_param({p.b, p.hkv, p.s, p.dk}, 2),
                                testing::rand_param({p.b, p.hkv, p.s, p.dv}, 3)};
  ScoreParams params = make_params(score, p, 4, DType::kF64);
  const size_t first_param = inputs.size();
  for (Tensor t : {params.weight, params.query_weight, params.key_weight, params.v})
    if (t.defined()) inputs.push_back(t.clone_data().requires_grad_());
  const bool has_additive = base.mask.additive_mask.defined();
  if (has_additive) inputs.push_back(base.mask.additive_mask.clone_data().requires_grad_());
  auto f = [&](const std::vector<Tensor>& x) {
    AttentionOptions o = base;
    size_t at = first_param;
    if (score == AttentionScore::kGeneral) o.params.weight = x[at++];
    if (score == AttentionScore::kAdditive) {
      o.params.query_weight = x[at++];
      o.params.key_weight = x[at++];
      o.params.v = x[at++];
    }
    if (has_additive) o.mask.additive_mask = x[at++];
    o.need_weights = of_weights;
    AttentionResult r = attention(x[0], x[1], x[2], o);
    return of_weights ? r.weights : r.out;
  };
  EXPECT_TRUE(gradcheck(f, inputs)) << score_label(score) << " " << mask_name(kind)
                                    << (weighting == AttentionWeighting::kSigmoid ? " sigmoid" : " softmax")
                                    << (of_weights ? " (weights)" : " (out)");
}

TEST(AttentionGrad, EveryScoreFunctionWithCombinedMasks) {
  for (AttentionScore score : {AttentionScore::kScaledDot, AttentionScore::kDot, AttentionScore::kGeneral,
                               AttentionScore::kAdditive}) {
    check_gradients(score, AttentionWeighting::kSoftmax, MaskKind::kCombined, false);
    check_gradients(score, AttentionWeighting::kSoftmax, MaskKind::kNone, false);
    check_gradients(score, AttentionWeighting::kSigmoid, MaskKind::kCombined, false);
  }
}

TEST(AttentionGrad, EveryMaskKindAndTheWeightsOutput) {
  for (MaskKind kind : {MaskKind::kKeyLengths, MaskKind::kCausal, MaskKind::kCausalOffset, MaskKind::kWindow,
                        MaskKind::kBool, MaskKind::kAdditive})
    check_gradients(AttentionScore::kScaledDot, AttentionWeighting::kSoftmax, kind, false);
  check_gradients(AttentionScore::kScaledDot, AttentionWeighting::kSoftmax, MaskKind::kAdditive, true);
  check_gradients(AttentionScore::kAdditive, AttentionWeighting::kSoftmax, MaskKind::kCombined, true);
}

TEST(AttentionGrad, SoftcapAndDropout) {
  std::vector<Tensor> inputs = {testing::rand_param({1, 2, 3, 4}, 5), testing::rand_param({1, 1, 5, 4}, 6),
                                testing::rand_param({1, 1, 5, 2}, 7)};
  auto f = [](const std::vector<Tensor>& x) {
    AttentionOptions o;
    o.softcap = 1.5;
    o.training = true;
    o.dropout_p = 0.3;  // the mask depends only on (seed, stream, index): a fixed function of x
    o.dropout_seed = 9;
    return attention(x[0], x[1], x[2], o).out;
  };
  EXPECT_TRUE(gradcheck(f, inputs));
}

// ---- fully masked rows ----

void expect_all_finite(const Tensor& t, const char* what) {
  ASSERT_TRUE(t.defined()) << what;
  for (double x : t.to_vector<double>()) ASSERT_TRUE(std::isfinite(x)) << what << " has " << x;
}

TEST(Attention, FullyMaskedRowsGiveZeroOutputAndZeroGradients) {
  for (AttentionWeighting weighting : {AttentionWeighting::kSoftmax, AttentionWeighting::kSigmoid})
    for (AttentionScore score : {AttentionScore::kScaledDot, AttentionScore::kAdditive}) {
      Problem p{3, 2, 2, 4, 5, 3, 3, 2};
      Tensor q = testing::rand_param({p.b, p.hq, p.t, p.dq}, 1, DType::kF32);
      Tensor k = testing::rand_param({p.b, p.hkv, p.s, p.dk}, 2, DType::kF32);
      Tensor v = testing::rand_param({p.b, p.hkv, p.s, p.dv}, 3, DType::kF32);
      std::vector<double> additive(p.b * p.hq * p.t * p.s, 0.0);
      for (int64_t j = 0; j < p.s; ++j) additive[((2 * p.hq + 1) * p.t + 2) * p.s + j] = -kInf;  // b=2, h=1, row 2
      Tensor add_mask = Tensor::from_vector(additive, {p.b, p.hq, p.t, p.s}).to(DType::kF32);
      add_mask.requires_grad_();
      AttentionOptions o;
      o.score = score;
      o.weighting = weighting;
      o.params = make_params(score, p, 8, DType::kF32);
      for (Tensor t : {o.params.query_weight, o.params.key_weight, o.params.v})
        if (t.defined()) t.requires_grad_();
      o.mask.key_lengths = Tensor::from_vector(std::vector<int64_t>{5, 0, 5}, {3});  // batch 1: no keys
      o.mask.causal = true;
      o.mask.causal_offset = -1;  // row 0 of every batch sees no key
      o.mask.additive_mask = add_mask;
      o.need_weights = true;
      AttentionResult r = attention(q, k, v, o);
      Tensor w = Tensor::randn(r.out.shape(), 4);
      sum(mul(r.out, w)).backward();
      std::vector<double> out = r.out.to_vector<double>(), weights = r.weights.to_vector<double>();
      std::vector<double> gq = q.grad().to_vector<double>(), gk = k.grad().to_vector<double>(),
                          gv = v.grad().to_vector<double>();
      auto masked = [&](int64_t b, int64_t h, int64_t i) { return b == 1 || i == 0 || (b == 2 && h == 1 && i == 2); };
      for (int64_t b = 0; b < p.b; ++b)
        for (int64_t h = 0; h < p.hq; ++h)
          for (int64_t i = 0; i < p.t; ++i) {
            if (!masked(b, h, i)) continue;
            const int64_t row = (b * p.hq + h) * p.t + i;
            for (int64_t d = 0; d < p.dv; ++d) EXPECT_EQ(out[row * p.dv + d], 0.0) << b << h << i;
            for (int64_t j = 0; j < p.s; ++j) EXPECT_EQ(weights[row * p.s + j], 0.0) << b << h << i << j;
            for (int64_t d = 0; d < p.dq; ++d) EXPECT_EQ(gq[row * p.dq + d], 0.0) << b << h << i;
          }
      // Batch 1 attends to nothing: its keys and values get no gradient.
      for (int64_t e = p.hkv * p.s * p.dk; e < 2 * p.hkv * p.s * p.dk; ++e) EXPECT_EQ(gk[e], 0.0);
      for (int64_t e = p.hkv * p.s * p.dv; e < 2 * p.hkv * p.s * p.dv; ++e) EXPECT_EQ(gv[e], 0.0);
      expect_all_finite(q.grad(), "grad q");
      expect_all_finite(k.grad(), "grad k");
      expect_all_finite(v.grad(), "grad v");
      expect_all_finite(add_mask.grad(), "grad additive mask");
      for (Tensor t : {o.params.query_weight, o.params.key_weight, o.params.v})
        if (t.defined()) expect_all_finite(t.grad(), "grad score parameter");
      expect_all_finite(r.out, "out");
    }
}

TEST(Attention, SafeSoftmaxZeroRowAndGradient) {
  Tensor x = Tensor::from_vector(std::vector<double>{-kInf, -kInf, -kInf, 1.0, -kInf, 2.0}, {2, 3});
  x.requires_grad_();
  Tensor p = safe_softmax(x);
  std::vector<double> pv = p.to_vector<double>();
  EXPECT_EQ(pv[0], 0.0);
  EXPECT_EQ(pv[1], 0.0);
  EXPECT_EQ(pv[2], 0.0);
  EXPECT_NEAR(pv[3], 1.0 / (1.0 + std::exp(1.0)), 1e-15);
  EXPECT_EQ(pv[4], 0.0);
  sum(mul(p, Tensor::from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}))).backward();
  std::vector<double> g = x.grad().to_vector<double>();
  for (int j = 0; j < 3; ++j) EXPECT_EQ(g[j], 0.0);
  EXPECT_EQ(g[4], 0.0);
  EXPECT_TRUE(std::isfinite(g[3]) && std::isfinite(g[5]));
  EXPECT_NEAR(g[3] + g[5], 0.0, 1e-15);  // softmax gradients of a row sum to zero
}

// ---- dropout ----

AttentionOptions dropout_options(uint64_t seed, uint64_t stream) {
  AttentionOptions o;
  o.training = true;
  o.dropout_p = 0.25;
  o.dropout_seed = seed;
  o.dropout_stream = stream;
  o.need_weights = true;
  o.mask.causal = true;
  o.mask.causal_offset = 2;
  return o;
}

TEST(AttentionDropout, SameSeedBitwiseSameOtherSeedOrStreamDifferent) {
  Problem p{2, 4, 2, 7, 9, 8, 8, 5};
  Inputs in = make_strided_inputs(p, 3, DType::kF32);
  AttentionResult a = attention(in.q, in.k, in.v, dropout_options(11, 0));
  AttentionResult b = attention(in.q, in.k, in.v, dropout_options(11, 0));
  EXPECT_TRUE(bitwise_equal(a.out, b.out));
  EXPECT_FALSE(bitwise_equal(a.out, attention(in.q, in.k, in.v, dropout_options(12, 0)).out));
  EXPECT_FALSE(bitwise_equal(a.out, attention(in.q, in.k, in.v, dropout_options(11, 1)).out));
  // Returned weights are the probabilities before dropout, whatever the seed.
  EXPECT_TRUE(bitwise_equal(a.weights, attention(in.q, in.k, in.v, dropout_options(12, 0)).weights));
  // Evaluation mode: no dropout at all.
  AttentionOptions eval = dropout_options(11, 0);
  eval.training = false;
  AttentionOptions none = eval;
  none.dropout_p = 0;
  EXPECT_TRUE(bitwise_equal(attention(in.q, in.k, in.v, eval).out, attention(in.q, in.k, in.v, none).out));
}

TEST(AttentionDropout, MatchesThePhiloxContractByHand) {
  Problem p{2, 4, 2, 5, 6, 3, 3, 2};
  Inputs in = make_strided_inputs(p, 5, DType::kF64);
  AttentionOptions o = dropout_options(21, 3);
  AttentionResult r = attention(in.q, in.k, in.v, o);
  // out[b, h, i] = sum_j keep(b, h, i, j) * w[b, h, i, j] / (1 - p) * v[b, h / G, j]
  std::vector<double> w = r.weights.to_vector<double>(), v = in.v.to_vector<double>();
  std::vector<double> expected(p.b * p.hq * p.t * p.dv, 0.0);
  int64_t kept = 0, total = 0;
  const float pf = static_cast<float>(o.dropout_p);
  for (int64_t b = 0; b < p.b; ++b)
    for (int64_t h = 0; h < p.hq; ++h)
      for (int64_t i = 0; i < p.t; ++i)
        for (int64_t j = 0; j < p.s; ++j) {
          const uint64_t index = static_cast<uint64_t>(((b * p.hq + h) * p.t + i) * p.s + j);
          const bool keep = random::uniform(o.dropout_seed, o.dropout_stream, index) >= pf;
          kept += keep;
          ++total;
          if (!keep) continue;
          const double scaled = w[index] / (1.0 - static_cast<double>(pf));
          for (int64_t d = 0; d < p.dv; ++d)
            expected[((b * p.hq + h) * p.t + i) * p.dv + d] += scaled * v[((b * p.hkv + h / 2) * p.s + j) * p.dv + d];
        }
  EXPECT_TRUE(all_close(r.out, Tensor::from_vector(expected, {p.b, p.hq, p.t, p.dv}), {1e-12, 1e-10}));
  EXPECT_GT(kept, total / 2);  // about 75% kept: the mask is neither empty nor full
  EXPECT_LT(kept, total);
  // The double reference applies the same contract.
  auto want = composed_attention_ref(in.q, in.k, in.v, to_ref(o, p.dq));
  EXPECT_TRUE(all_close(r.out, want.out, {1e-12, 1e-10}));
}

// ---- errors ----

// Expects fn to throw heed::Error whose message contains every string in `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts,
                  std::source_location where = std::source_location::current()) {
  SCOPED_TRACE("expect_error called at line " + std::to_string(where.line()));
  try {
    fn();
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const std::string& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
    return;
  }
  ADD_FAILURE() << "no heed::Error thrown";
}

TEST(AttentionErrors, NameTheOpAndTheShapes) {
  Tensor q = Tensor::randn({2, 4, 3, 8}, 1), k = Tensor::randn({2, 2, 5, 8}, 2), v = Tensor::randn({2, 2, 5, 6}, 3);
  expect_error([&] { attention(Tensor::randn({4, 3, 8}, 1), k, v); }, {"attention", "f32[4, 3, 8]", "[B, Hq, T, Dq]"});
  expect_error([&] { attention(q, Tensor::randn({2, 3, 5, 8}, 2), Tensor::randn({2, 3, 5, 6}, 2)); },
               {"attention", "Hq = 4", "Hkv = 3", "f32[2, 3, 5, 8]"});
  expect_error([&] { attention(q, Tensor::randn({3, 2, 5, 8}, 2), v); }, {"attention", "batch"});
  expect_error([&] { attention(q, Tensor::randn({2, 2, 5, 7}, 2), v); }, {"attention", "f32[2, 2, 5, 7]", "Dq == Dk"});
  expect_error([&] { attention(q, k, Tensor::randn({2, 2, 4, 6}, 3)); }, {"attention", "f32[2, 2, 4, 6]", "[B, Hkv, S]"});
  expect_error([&] { attention(q, k, v.to(DType::kF64)); }, {"attention", "f64[2, 2, 5, 6]"});
  AttentionOptions o;
  o.dropout_p = 1.0;
  expect_error([&] { attention(q, k, v, o); }, {"attention", "dropout_p = 1"});
  o = {};
  o.score = AttentionScore::kGeneral;
  expect_error([&] { attention(q, k, v, o); }, {"general_scores", "weight", "[8, 8]"});
  o.params.weight = Tensor::randn({8, 7}, 4);
  expect_error([&] { attention(q, k, v, o); }, {"general_scores", "f32[8, 7]", "[8, 8]"});
  o = {};
  o.score = AttentionScore::kAdditive;
  o.params.query_weight = Tensor::randn({5, 8}, 4);
  o.params.key_weight = Tensor::randn({5, 8}, 5);
  o.params.v = Tensor::randn({4}, 6);
  expect_error([&] { attention(q, k, v, o); }, {"additive_scores", "f32[4]", "[5]"});
  // Masks of the wrong shape or dtype.
  o = {};
  o.mask.bool_mask = Tensor::ones({5, 3}, DType::kU8);
  expect_error([&] { attention(q, k, v, o); }, {"attention", "bool_mask", "u8[5, 3]", "[2, 4, 3, 5]"});
  o.mask.bool_mask = Tensor::ones({3, 5}, DType::kF32);
  expect_error([&] { attention(q, k, v, o); }, {"attention", "bool_mask", "f32[3, 5]", "u8"});
  o = {};
  o.mask.additive_mask = Tensor::zeros({2, 3, 3, 5});
  expect_error([&] { attention(q, k, v, o); }, {"attention", "additive_mask", "f32[2, 3, 3, 5]", "[2, 4, 3, 5]"});
  o.mask.additive_mask = Tensor::zeros({3, 5}, DType::kF64);
  expect_error([&] { attention(q, k, v, o); }, {"attention", "additive_mask", "f64[3, 5]", "f32"});
  o = {};
  o.mask.key_lengths = Tensor::from_vector(std::vector<int64_t>{5, 5, 5}, {3});
  expect_error([&] { attention(q, k, v, o); }, {"attention", "key_lengths", "i64[3]", "i64[2]"});
  o.mask.key_lengths = Tensor::from_vector(std::vector<int64_t>{5, 6}, {2});
  expect_error([&] { attention(q, k, v, o); }, {"attention", "key_lengths[1] = 6", "[0, 5]"});
  o = {};
  o.mask.window_left = -2;
  expect_error([&] { attention(q, k, v, o); }, {"attention", "window_left = -2"});
}

}  // namespace
}  // namespace heed
