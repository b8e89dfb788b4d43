// Fused vs composed attention through the op and autograd: values, weights and every
// gradient, for each mask kind and combinations, odd sizes, GQA, sigmoid weighting,
// fully masked rows and dropout with a fixed seed.
#include <gtest/gtest.h>

#include <cmath>

#include "heed/autograd/graph.h"
#include "heed/heed.h"
#include "heed/ops/attention.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using testing::all_close;
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
                      FusedCase{"one", 1, 1, 1, 1, 1, 1, 1}),
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

}  // namespace
}  // namespace heed
