// Fused vs composed attention through the op and autograd: values, weights and every
// gradient, for each mask kind and combinations, odd sizes (1, 7, 33, 257, 1000), GQA,
// sigmoid weighting, fully masked rows and dropout with a fixed seed; which path the default
// takes, chosen weights, bf16 products.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "heed/autograd/graph.h"
#include "heed/heed.h"
#include "heed/kernels/cpu/flash_attention.h"
#include "heed/ops/attention.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using testing::all_close;
using testing::graph_has;
using testing::kReduction;

struct FusedCase {
  const char* name;
  int64_t b, hq, hkv, t, s, d, dv;
  bool key_lengths = false, causal = false, window = false, bool_mask = false, additive = false;
  int64_t causal_offset = 0;
  bool sigmoid = false;
  double dropout = 0.0;
};

struct Outcome {
  Tensor out, weights, gq, gk, gv, gm;
};

Outcome run(const FusedCase& c, AttentionPath path) {
  Tensor q = Tensor::randn({c.b, c.hq, c.t, c.d}, 1), k = Tensor::randn({c.b, c.hkv, c.s, c.d}, 2);
  Tensor v = Tensor::randn({c.b, c.hkv, c.s, c.dv}, 3);
  q.requires_grad_();
  k.requires_grad_();
  v.requires_grad_();
  AttentionOptions o;
  o.path = path;
  o.need_weights = true;
  o.weighting = c.sigmoid ? AttentionWeighting::kSigmoid : AttentionWeighting::kSoftmax;
  if (c.key_lengths) {
    std::vector<int64_t> lens;
    for (int64_t i = 0; i < c.b; ++i) lens.push_back(i == 0 ? 0 : std::max<int64_t>(1, c.s - 3 * i));  // row 0 fully masked
    o.mask.key_lengths = Tensor::from_vector(lens, {c.b});
  }
  o.mask.causal = c.causal;
  o.mask.causal_offset = c.causal_offset;
  if (c.window) o.mask.window_left = 3;
  if (c.bool_mask) {
    Tensor m = Tensor::uniform({c.t, c.s}, 0, 1, 7).to(DType::kF64);
    std::vector<uint8_t> bits;
    for (double x : m.to_vector<double>()) bits.push_back(x > 0.3);
    o.mask.bool_mask = Tensor::from_vector(bits, {c.t, c.s});  // [T, S] broadcast over B, H
  }
  Tensor mask;
  if (c.additive) {
    mask = Tensor::randn({1, c.hq, c.t, c.s}, 9);  // [1, Hq, T, S] broadcast over B
    mask.requires_grad_();
    o.mask.additive_mask = mask;
  }
  if (c.dropout > 0) {
    o.training = true;
    o.dropout_p = c.dropout;
    o.dropout_seed = 42;
    o.dropout_stream = 5;
  }
  AttentionResult r = attention(q, k, v, o);
  Tensor w = Tensor::randn(r.out.shape(), 11);
  sum(mul(r.out, w)).backward();
  return {r.out, r.weights, q.grad(), k.grad(), v.grad(), c.additive ? mask.grad() : Tensor()};
}

class FusedVsComposed : public ::testing::TestWithParam<FusedCase> {};

TEST_P(FusedVsComposed, ValuesWeightsAndGradients) {
  const FusedCase& c = GetParam();
  Outcome f = run(c, AttentionPath::kFused), r = run(c, AttentionPath::kComposed);
  EXPECT_TRUE(all_close(f.out, r.out, kReduction)) << "out";
  EXPECT_TRUE(all_close(f.weights, r.weights, kReduction)) << "weights";
  EXPECT_TRUE(all_close(f.gq, r.gq, kReduction)) << "grad q";
  EXPECT_TRUE(all_close(f.gk, r.gk, kReduction)) << "grad k";
  EXPECT_TRUE(all_close(f.gv, r.gv, kReduction)) << "grad v";
  if (c.additive) EXPECT_TRUE(all_close(f.gm, r.gm, kReduction)) << "grad additive mask";
  for (const Tensor& t : {f.out, f.gq, f.gk, f.gv})
    for (float x : t.to_vector<float>()) ASSERT_TRUE(std::isfinite(x));
}

INSTANTIATE_TEST_SUITE_P(
    Masks, FusedVsComposed,
    ::testing::Values(FusedCase{"plain", 2, 2, 2, 7, 33, 16, 16},
                      FusedCase{"lengths", 3, 2, 2, 7, 33, 8, 5, true},
                      FusedCase{"causal", 1, 2, 2, 33, 33, 7, 7, false, true},
                      FusedCase{"causal_offset", 2, 4, 2, 5, 33, 16, 16, false, true, false, false, false, 28},
                      FusedCase{"window", 1, 2, 1, 33, 33, 16, 16, false, true, true},
                      FusedCase{"bool", 2, 2, 2, 7, 33, 16, 16, false, false, false, true},
                      FusedCase{"additive", 2, 2, 2, 7, 33, 16, 16, false, false, false, false, true},
                      FusedCase{"all", 3, 4, 2, 33, 33, 16, 9, true, true, true, true, true},
                      FusedCase{"gqa_long", 1, 8, 2, 1, 257, 64, 64, true, true},
                      FusedCase{"sigmoid", 2, 2, 2, 7, 33, 16, 16, true, true, false, false, true, 0, true},
                      FusedCase{"dropout", 2, 2, 1, 7, 33, 16, 16, true, true, false, false, false, 0, false, 0.25},
                      FusedCase{"one", 1, 1, 1, 1, 1, 1, 1},
                      // Two and three mask kinds at once, with dropout and sigmoid weighting.
                      FusedCase{"lengths_bool", 2, 2, 2, 7, 33, 16, 16, true, false, false, true},
                      FusedCase{"causal_additive", 2, 2, 1, 33, 33, 8, 8, false, true, false, false, true},
                      FusedCase{"lengths_window", 3, 2, 2, 20, 20, 16, 16, true, true, true},
                      FusedCase{"window_bool_additive", 2, 4, 2, 33, 40, 16, 16, false, true, true, true, true},
                      FusedCase{"offset_bool_dropout", 2, 2, 2, 5, 33, 16, 16, false, true, false, true, false, 28,
                                false, 0.2},
                      FusedCase{"sigmoid_window_bool", 2, 2, 2, 33, 33, 16, 16, false, true, true, true, false, 0,
                                true},
                      // 1,000 queries and keys: many whole and partial blocks (with key lengths,
                      // batch 0 is fully masked and batch 1 has 3 padded keys).
                      FusedCase{"long_1000", 2, 2, 1, 1000, 1000, 16, 16, true, true}),
    [](const ::testing::TestParamInfo<FusedCase>& info) { return std::string(info.param.name); });

// An identity op whose backward notes the strides of the gradient it receives.
Tensor stride_probe(const Tensor& x, Shape* seen) {
  Tensor out = x.detach();
  autograd::record("stride_probe", out, {x}, [seen](const Tensor& g) {
    *seen = g.strides();
    return std::vector<Tensor>{g};
  });
  return out;
}

// Inputs as a Transformer passes them: views [B, H, T, D] of [B, T, H, D] projections, one
// of [T, B, H, D] (a permutation that is not its own inverse) and a strided slice (not a
// permuted dense layout). Same values and gradients as the composed path; the output and
// the gradients come back in their inputs' memory order, so merging the heads again is a view.
TEST(FusedAttention, HeadSplitViewsAndTheOutputsLayout) {
  const int64_t b = 2, t = 7, s = 9, h = 3, d = 8;
  Shape q_grad_strides, k_grad_strides;
  auto run_path = [&](AttentionPath path) {
    Tensor pq = Tensor::randn({t, b, h, d}, 1).requires_grad_(), pk = Tensor::randn({b, s, h, d}, 2).requires_grad_();
    Tensor pv = Tensor::randn({b, s, 2 * h, d}, 3).requires_grad_();  // every other head: not dense
    Tensor q = stride_probe(permute(pq, {1, 2, 0, 3}), &q_grad_strides);
    Tensor k = stride_probe(permute(pk, {0, 2, 1, 3}), &k_grad_strides);
    Tensor v = permute(slice(pv, 2, 0, 2 * h, 2), {0, 2, 1, 3});
    AttentionOptions o;
    o.path = path;
    o.mask.causal = true;
    AttentionResult r = attention(q, k, v, o);
    sum(mul(r.out, Tensor::randn(r.out.shape(), 4))).backward();
    return std::vector<Tensor>{r.out, pq.grad(), pk.grad(), pv.grad()};
  };
  std::vector<Tensor> c = run_path(AttentionPath::kComposed), f = run_path(AttentionPath::kFused);
  for (size_t i = 0; i < f.size(); ++i) EXPECT_TRUE(all_close(f[i], c[i], kReduction)) << i;
  EXPECT_TRUE(f[0].raw_permute({2, 0, 1, 3}).is_contiguous());  // out [B, H, T, D] stored as [T, B, H, D]
  EXPECT_EQ(q_grad_strides, (Shape{h * d, d, b * h * d, 1}));     // grad q stored as [T, B, H, D]
  EXPECT_EQ(k_grad_strides, (Shape{s * h * d, d, h * d, 1}));     // grad k stored as [B, S, H, D]
}

TEST(FusedAttention, AutoChoosesFusedAndExplicitFusedRejectsWhatItCannotDo) {
  Tensor q = Tensor::randn({1, 1, 3, 4}, 1), k = Tensor::randn({1, 1, 5, 4}, 2), v = Tensor::randn({1, 1, 5, 4}, 3);
  EXPECT_TRUE(fused_attention_applies(q, {}));
  AttentionOptions o;
  o.softcap = 5;
  EXPECT_FALSE(fused_attention_applies(q, o));
  o.path = AttentionPath::kFused;
  EXPECT_THROW(attention(q, k, v, o), Error);
  EXPECT_FALSE(fused_attention_applies(q.to(DType::kF64), {}));
}

TEST(FusedAttention, DefaultPathRunsTheFusedKernel) {
  Tensor q = Tensor::randn({2, 2, 9, 8}, 1), k = Tensor::randn({2, 2, 11, 8}, 2), v = Tensor::randn({2, 2, 11, 8}, 3);
  q.requires_grad_();
  EXPECT_TRUE(graph_has(attention(q, k, v).out, "fused_attention"));
  const Tensor composed = attention(q, k, v, {.path = AttentionPath::kComposed}).out;
  EXPECT_FALSE(graph_has(composed, "fused_attention"));
  EXPECT_TRUE(graph_has(composed, "safe_softmax"));  // a graph was recorded: the composed ops
  AttentionOptions general;  // a score the kernel does not do: kAuto falls back to the composed ops
  general.score = AttentionScore::kGeneral;
  general.params.weight = Tensor::randn({8, 8}, 4);
  EXPECT_FALSE(graph_has(attention(q, k, v, general).out, "fused_attention"));
}

// weights [B, Hq, T, S] -> the chosen heads and rows, by plain loops.
Tensor pick(const Tensor& w, const std::vector<int64_t>& heads, int64_t r0, int64_t r1) {
  const int64_t b = w.size(0), t = w.size(2), s = w.size(3), hq = w.size(1);
  const std::vector<float> all = w.to_vector<float>();
  std::vector<float> out;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t h : heads)
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = 0; j < s; ++j) out.push_back(all[static_cast<size_t>(((bi * hq + h) * t + i) * s + j)]);
  return Tensor::from_vector(out, {b, static_cast<int64_t>(heads.size()), r1 - r0, s});
}

TEST(FusedAttention, SelectedWeightsAreThoseOfTheFullMatrix) {
  // Awkward sizes, grouped heads, padding and causal masks; heads out of order.
  const int64_t b = 2, hq = 4, hkv = 2, t = 37, s = 37, d = 16;
  Tensor q = Tensor::randn({b, hq, t, d}, 1), k = Tensor::randn({b, hkv, s, d}, 2), v = Tensor::randn({b, hkv, s, d}, 3);
  AttentionOptions o;
  o.mask.key_lengths = Tensor::from_vector(std::vector<int64_t>{37, 20}, {b});
  o.mask.causal = true;
  o.need_weights = true;
  o.path = AttentionPath::kComposed;
  const Tensor full = attention(q, k, v, o).weights;  // [B, Hq, T, S]
  o.weights_selection = {.heads = {3, 0}, .row_begin = 5, .row_end = 31};
  const Tensor expected = pick(full, {3, 0}, 5, 31);
  const Tensor composed = attention(q, k, v, o).weights;
  EXPECT_EQ(composed.shape(), (Shape{b, 2, 26, s}));
  EXPECT_TRUE(all_close(composed, expected, {0, 0}));
  o.path = AttentionPath::kFused;
  const Tensor fused = attention(q, k, v, o).weights;
  EXPECT_EQ(fused.shape(), (Shape{b, 2, 26, s}));
  EXPECT_TRUE(all_close(fused, expected, kReduction));
  o.weights_selection = {.heads = {2}, .row_begin = 36};  // row_end -1: to T
  EXPECT_TRUE(all_close(attention(q, k, v, o).weights, pick(full, {2}, 36, t), kReduction));

  o.weights_selection = {.heads = {4}};
  try {
    attention(q, k, v, o);
    ADD_FAILURE() << "head 4 of 4 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("weights_selection head 4 expected within [0, 4)"), std::string::npos) << e.what();
  }
  for (const WeightsSelection& bad : {WeightsSelection{.heads = {-1}}, WeightsSelection{.row_begin = 30, .row_end = 38},
                                      WeightsSelection{.row_begin = 30, .row_end = 29},
                                      WeightsSelection{.row_begin = -1}, WeightsSelection{.row_end = -2}})
    EXPECT_THROW(attention(q, k, v, {.mask = o.mask, .need_weights = true, .weights_selection = bad}), Error);
  // A head twice and an empty row range are allowed.
  o.path = AttentionPath::kFused;
  o.weights_selection = {.heads = {1, 1}, .row_begin = 3, .row_end = 9};
  EXPECT_TRUE(all_close(attention(q, k, v, o).weights, pick(full, {1, 1}, 3, 9), kReduction));
  o.weights_selection = {.row_begin = 7, .row_end = 7};
  EXPECT_EQ(attention(q, k, v, o).weights.shape(), (Shape{b, hq, 0, s}));
}

TEST(FusedAttention, Bf16PrecisionIsNearF32AndOnlyOnTheFusedPath) {
  const int64_t b = 2, h = 2, t = 65, s = 70, d = 64;
  Tensor q = Tensor::randn({b, h, t, d}, 1), k = Tensor::randn({b, h, s, d}, 2), v = Tensor::randn({b, h, s, d}, 3);
  q.requires_grad_();
  const Tensor f32 = attention(q, k, v).out;
  AttentionOptions o;
  o.precision = AttentionPrecision::kBF16;
  o.path = AttentionPath::kComposed;  // the composed ops ignore it: the same f32 result
  EXPECT_TRUE(all_close(attention(q, k, v, o).out, attention(q, k, v, {.path = AttentionPath::kComposed}).out, {0, 0}));
  if (!kernels::cpu::cpu_has_amx_bf16()) GTEST_SKIP() << "no usable AMX here: kBF16 stays f32";
  o.path = AttentionPath::kAuto;
  AttentionResult r = attention(q, k, v, o);
  double worst = 0;
  const std::vector<float> a = r.out.to_vector<float>(), e = f32.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a[i]) - e[i]));
  EXPECT_GT(worst, 1e-5) << "bf16 products should differ from f32 somewhere";
  EXPECT_LT(worst, 3e-2) << "bf16 products: 8 significant bits on unit-variance inputs";
  sum(r.out).backward();  // the backward runs in f32 from the bf16 forward's out and lse
  for (float x : q.grad().to_vector<float>()) ASSERT_TRUE(std::isfinite(x));
}

}  // namespace
}  // namespace heed
