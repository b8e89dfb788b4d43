// Attention modules: parameter names and shapes (PyTorch's where one exists), forward against
// the double reference built from plain loops, gradients reaching every parameter, seeded
// dropout only in training mode, and errors.
#include "heed/nn/attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "heed/heed.h"
#include "heed/kernels/cpu/flash_attention.h"
#include "heed/kernels/ref/attention_ref_composed.h"
#include "heed/testing/numerics.h"

namespace heed::nn {
namespace {

using kernels::ref::composed_attention_ref;
using kernels::ref::ComposedAttentionRef;
using kernels::ref::RefScore;
using testing::all_close;
using testing::bitwise_equal;
using testing::graph_has;
using testing::kReduction;

std::vector<std::pair<std::string, Shape>> names_and_shapes(const Module& m) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [name, t] : m.named_parameters()) out.emplace_back(name, t.shape());
  return out;
}

using NamedShapes = std::vector<std::pair<std::string, Shape>>;

TEST(AttentionModules, ParameterNamesAndShapes) {
  EXPECT_TRUE(DotProductAttention().named_parameters().empty());
  EXPECT_TRUE(ScaledDotProductAttention().named_parameters().empty());
  EXPECT_EQ(names_and_shapes(GeneralAttention({.query_dim = 6, .key_dim = 4})), (NamedShapes{{"weight", {6, 4}}}));
  EXPECT_EQ(names_and_shapes(AdditiveAttention({.query_dim = 6, .key_dim = 4, .hidden_dim = 5})),
            (NamedShapes{{"v", {5}}, {"query_proj.weight", {5, 6}}, {"key_proj.weight", {5, 4}}}));
  // The names and order of torch.nn.MultiheadAttention(8, 2).state_dict().
  EXPECT_EQ(names_and_shapes(MultiHeadAttention({.embed_dim = 8, .num_heads = 2})),
            (NamedShapes{{"in_proj_weight", {24, 8}},
                         {"in_proj_bias", {24}},
                         {"out_proj.weight", {8, 8}},
                         {"out_proj.bias", {8}}}));
  // torch.nn.MultiheadAttention(8, 2, kdim=5, vdim=3).
  EXPECT_EQ(names_and_shapes(MultiHeadAttention({.embed_dim = 8, .num_heads = 2, .kdim = 5, .vdim = 3})),
            (NamedShapes{{"q_proj_weight", {8, 8}},
                         {"k_proj_weight", {8, 5}},
                         {"v_proj_weight", {8, 3}},
                         {"in_proj_bias", {24}},
                         {"out_proj.weight", {8, 8}},
                         {"out_proj.bias", {8}}}));
  // Grouped-query: 4 query heads of size 2 share 2 kv heads, so key/value rows are 2 * 2.
  EXPECT_EQ(names_and_shapes(MultiHeadAttention({.embed_dim = 8, .num_heads = 4, .num_kv_heads = 2})),
            (NamedShapes{{"q_proj_weight", {8, 8}},
                         {"k_proj_weight", {4, 8}},
                         {"v_proj_weight", {4, 8}},
                         {"in_proj_bias", {16}},
                         {"out_proj.weight", {8, 8}},
                         {"out_proj.bias", {8}}}));
  EXPECT_EQ(names_and_shapes(MultiHeadAttention({.embed_dim = 8, .num_heads = 2, .bias = false})),
            (NamedShapes{{"in_proj_weight", {24, 8}}, {"out_proj.weight", {8, 8}}}));
}

TEST(AttentionModules, InitialisationIsSeededAndLikePyTorch) {
  MultiHeadAttention a({.embed_dim = 8, .num_heads = 2, .seed = 5}), b({.embed_dim = 8, .num_heads = 2, .seed = 5}),
      c({.embed_dim = 8, .num_heads = 2, .seed = 6});
  EXPECT_TRUE(bitwise_equal(a.parameter("in_proj_weight"), b.parameter("in_proj_weight")));
  EXPECT_FALSE(bitwise_equal(a.parameter("in_proj_weight"), c.parameter("in_proj_weight")));
  // Xavier-uniform over the packed [3C, C] matrix; zero biases.
  const double bound = std::sqrt(6.0 / (24 + 8));
  for (double x : a.parameter("in_proj_weight").to_vector<double>()) EXPECT_LE(std::abs(x), bound);
  for (double x : a.parameter("in_proj_bias").to_vector<double>()) EXPECT_EQ(x, 0.0);
  for (double x : a.parameter("out_proj.bias").to_vector<double>()) EXPECT_EQ(x, 0.0);
}

// ---- single-head modules against the reference ----

// Copies reference-ready views: [B, T, D] -> [B, 1, T, D]; rank-3 masks -> [B, 1, T, S].
Tensor head1(const Tensor& t) { return t.defined() && t.dim() == 3 ? t.raw_unsqueeze(1) : t; }

TEST(AttentionModules, ScoreModulesMatchTheReferenceWithEveryMaskKind) {
  const int64_t b = 2, t = 7, s = 9, dq = 6, dk = 4, dv = 3;
  Tensor query = Tensor::randn({b, t, dq}, 1), values = Tensor::randn({b, s, dv}, 3);
  std::vector<AttentionMask> masks(5);
  masks[1].key_lengths = Tensor::from_vector(std::vector<int64_t>{9, 4}, {2});
  masks[2].causal = true;
  masks[2].causal_offset = s - t;
  masks[2].window_left = 3;
  std::vector<uint8_t> bits(b * t * s);
  for (size_t e = 0; e < bits.size(); ++e) bits[e] = (e * 5 + 1) % 4 != 0;
  masks[3].bool_mask = Tensor::from_vector(bits, {b, t, s});   // [B, T, S]
  masks[4].additive_mask = Tensor::randn({b, t, s}, 9);        // [B, T, S]
  masks[4].key_lengths = masks[1].key_lengths;
  for (int kind = 0; kind < 4; ++kind)
    for (size_t mi = 0; mi < masks.size(); ++mi) {
      std::unique_ptr<ScoreAttention> module;
      ComposedAttentionRef ref;
      const bool dot = kind < 2;
      Tensor keys = Tensor::randn({b, s, dot ? dq : dk}, 2);
      if (kind == 0) {
        module = std::make_unique<DotProductAttention>();
        ref.score = RefScore::kDot;
      } else if (kind == 1) {
        module = std::make_unique<ScaledDotProductAttention>(ScoreAttentionOptions{.weighting = AttentionWeighting::kSigmoid});
        ref.score = RefScore::kDot;
        ref.scale = 1.0 / std::sqrt(static_cast<double>(dq));
        ref.sigmoid = true;
      } else if (kind == 2) {
        auto m = std::make_unique<GeneralAttention>(GeneralAttentionOptions{.query_dim = dq, .key_dim = dk});
        ref.score = RefScore::kGeneral;
        ref.weight = m->weight();
        module = std::move(m);
      } else {
        module = std::make_unique<AdditiveAttention>(AdditiveAttentionOptions{.query_dim = dq, .key_dim = dk, .hidden_dim = 5});
        ref.score = RefScore::kAdditive;
        ref.query_weight = module->parameter("query_proj.weight");
        ref.key_weight = module->parameter("key_proj.weight");
        ref.v_weight = module->parameter("v");
      }
      const AttentionMask& m = masks[mi];
      ref.key_lengths = m.key_lengths;
      ref.causal = m.causal;
      ref.causal_offset = m.causal_offset;
      ref.window_left = m.window_left;
      ref.bool_mask = head1(m.bool_mask);
      ref.additive_mask = head1(m.additive_mask);
      AttentionOutput got = module->forward(query, keys, values, m, /*need_weights=*/true);
      auto want = composed_attention_ref(head1(query), head1(keys), head1(values), ref);
      ASSERT_EQ(got.out.shape(), (Shape{b, t, dv}));
      ASSERT_EQ(got.weights.shape(), (Shape{b, t, s}));
      EXPECT_TRUE(all_close(got.out, want.out.raw_squeeze(1), kReduction)) << "module " << kind << " mask " << mi;
      EXPECT_TRUE(all_close(got.weights, want.weights.raw_squeeze(1), kReduction)) << "module " << kind << " mask " << mi;
    }
}

TEST(AttentionModules, GradientsReachEveryParameter) {
  AdditiveAttention additive({.query_dim = 4, .key_dim = 3, .hidden_dim = 5});
  GeneralAttention general({.query_dim = 4, .key_dim = 3});
  MultiHeadAttention gqa({.embed_dim = 8, .num_heads = 4, .num_kv_heads = 2, .kdim = 3, .vdim = 5});
  Tensor q = Tensor::randn({2, 3, 4}, 1), k = Tensor::randn({2, 6, 3}, 2), v = Tensor::randn({2, 6, 5}, 3);
  AttentionMask mask;
  mask.key_lengths = Tensor::from_vector(std::vector<int64_t>{6, 2}, {2});
  sum(additive.forward(q, k, v, mask).out).backward();
  sum(general.forward(q, k, v, mask).out).backward();
  sum(mul(gqa.forward(Tensor::randn({2, 3, 8}, 4), k, v, mask).out, Tensor::randn({2, 3, 8}, 5))).backward();
  for (const Module* m : std::initializer_list<const Module*>{&additive, &general, &gqa})
    for (const auto& [name, p] : m->named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      double norm = 0;
      for (double g : p.grad().to_vector<double>()) {
        ASSERT_TRUE(std::isfinite(g)) << name;
        norm += g * g;
      }
      EXPECT_GT(norm, 0.0) << name;
    }
}

// ---- MultiHeadAttention against a reference from plain loops ----

// x [B, N, I] @ w[O, I]^T + bias [O] in double.
std::vector<double> project(const std::vector<double>& x, int64_t rows, int64_t in, const std::vector<double>& w,
                            int64_t out, const std::vector<double>& bias, int64_t bias_at) {
  std::vector<double> y(rows * out);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double acc = bias.empty() ? 0.0 : bias[bias_at + o];
      for (int64_t i = 0; i < in; ++i) acc += x[r * in + i] * w[o * in + i];
      y[r * out + o] = acc;
    }
  return y;
}

// [B, N, H*D] flat -> [B, H, N, D] tensor.
Tensor split_heads(const std::vector<double>& y, int64_t b, int64_t n, int64_t h, int64_t d) {
  std::vector<double> out(y.size());
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ni = 0; ni < n; ++ni)
      for (int64_t hi = 0; hi < h; ++hi)
        for (int64_t di = 0; di < d; ++di) out[((bi * h + hi) * n + ni) * d + di] = y[((bi * n + ni) * h + hi) * d + di];
  return Tensor::from_vector(out, {b, h, n, d});
}

struct MhaCase {
  const char* name;
  MultiHeadAttentionOptions options;
  int64_t t, s;
  bool self;
};

void expect_mha_matches_reference(const MhaCase& c, const AttentionMask& mask) {
  MultiHeadAttention mha(c.options);
  const MultiHeadAttentionOptions& o = c.options;
  const int64_t e = o.embed_dim, h = o.num_heads, hkv = o.num_kv_heads.value_or(h), d = e / h;
  const int64_t kdim = o.kdim.value_or(e), vdim = o.vdim.value_or(e), kvw = hkv * d, b = 2;
  // Load a "state_dict" by name, as a PyTorch checkpoint would be loaded.
  std::map<std::string, Tensor> state;
  uint64_t seed = 40;
  for (const auto& [name, p] : mha.named_parameters()) state[name] = mul(Tensor::randn(p.shape(), ++seed), 0.5);
  for (const auto& [name, value] : state) mha.parameter(name).copy_from(value);

  Tensor query = Tensor::randn({b, c.t, e}, 1);
  Tensor key = c.self ? query : Tensor::randn({b, c.s, kdim}, 2);
  Tensor value = c.self ? query : Tensor::randn({b, c.s, vdim}, 3);
  const int64_t s = c.self ? c.t : c.s;
  AttentionOutput got = mha.forward(query, key, value, mask, /*need_weights=*/true);

  auto vec = [](const Tensor& t) { return t.to_vector<double>(); };
  std::vector<double> wq, wk, wv, bias;
  if (mha.packed()) {
    std::vector<double> w = vec(state["in_proj_weight"]);
    wq.assign(w.begin(), w.begin() + e * e);
    wk.assign(w.begin() + e * e, w.begin() + 2 * e * e);
    wv.assign(w.begin() + 2 * e * e, w.end());
  } else {
    wq = vec(state["q_proj_weight"]);
    wk = vec(state["k_proj_weight"]);
    wv = vec(state["v_proj_weight"]);
  }
  if (o.bias) bias = vec(state["in_proj_bias"]);
  Tensor qh = split_heads(project(vec(query), b * c.t, e, wq, e, bias, 0), b, c.t, h, d);
  Tensor kh = split_heads(project(vec(key), b * s, kdim, wk, kvw, bias, e), b, s, hkv, d);
  Tensor vh = split_heads(project(vec(value), b * s, vdim, wv, kvw, bias, e + kvw), b, s, hkv, d);
  ComposedAttentionRef ref;
  ref.scale = 1.0 / std::sqrt(static_cast<double>(d));
  ref.key_lengths = mask.key_lengths;
  ref.causal = mask.causal;
  ref.causal_offset = mask.causal_offset;
  ref.bool_mask = mask.bool_mask;
  ref.additive_mask = mask.additive_mask;
  auto att = composed_attention_ref(qh, kh, vh, ref);
  std::vector<double> heads = vec(att.out.raw_permute({0, 2, 1, 3}).raw_contiguous());  // [B, T, H, D]
  std::vector<double> out = project(heads, b * c.t, e, vec(state["out_proj.weight"]), e,
                                    o.bias ? vec(state["out_proj.bias"]) : std::vector<double>(), 0);
  EXPECT_TRUE(all_close(got.out, Tensor::from_vector(out, {b, c.t, e}), kReduction)) << c.name;
  EXPECT_TRUE(all_close(got.weights, att.weights, kReduction)) << c.name;
}

TEST(MultiHeadAttention, MatchesReferenceSelfCrossWidthsGroupedAndBiasFree) {
  const MhaCase cases[] = {
      {"self, packed", {.embed_dim = 12, .num_heads = 3}, 7, 7, true},
      {"cross, packed", {.embed_dim = 12, .num_heads = 3}, 7, 9, false},
      {"cross, kdim/vdim", {.embed_dim = 12, .num_heads = 4, .kdim = 5, .vdim = 7}, 1, 33, false},
      {"self, grouped-query", {.embed_dim = 16, .num_heads = 4, .num_kv_heads = 2}, 33, 33, true},
      {"cross, grouped-query, one kv head", {.embed_dim = 16, .num_heads = 4, .num_kv_heads = 1, .kdim = 3}, 7, 5, false},
      {"self, no bias", {.embed_dim = 8, .num_heads = 2, .bias = false}, 7, 7, true},
  };
  for (const MhaCase& c : cases) {
    AttentionMask none;
    expect_mha_matches_reference(c, none);
    AttentionMask padded;
    padded.key_lengths = Tensor::from_vector(std::vector<int64_t>{c.self ? c.t : c.s, 1}, {2});
    padded.causal = c.self;
    expect_mha_matches_reference(c, padded);
    AttentionMask per_head;  // [H, T, S] additive mask and a [S] key mask
    const int64_t s = c.self ? c.t : c.s;
    per_head.additive_mask = Tensor::randn({c.options.num_heads, c.t, s}, 17);
    std::vector<uint8_t> keys(s, 1);
    keys[0] = s > 1 ? 0 : 1;
    per_head.bool_mask = Tensor::from_vector(keys, {s});
    expect_mha_matches_reference(c, per_head);
  }
}

TEST(MultiHeadAttention, DropoutOnlyInTrainingSeededAndStepped) {
  MultiHeadAttentionOptions options{.embed_dim = 8, .num_heads = 2, .dropout = 0.3, .seed = 7};
  MultiHeadAttention a(options), b(options);
  MultiHeadAttentionOptions no_dropout = options;
  no_dropout.dropout = 0;
  MultiHeadAttention plain(no_dropout);
  Tensor x = Tensor::randn({2, 5, 8}, 1);
  Tensor first = a.forward(x, x, x).out;
  EXPECT_TRUE(bitwise_equal(first, b.forward(x, x, x).out));      // same seed, same step
  EXPECT_FALSE(bitwise_equal(first, a.forward(x, x, x).out));      // the next step draws anew
  EXPECT_FALSE(bitwise_equal(first, plain.forward(x, x, x).out));  // dropout did something
  a.set_dropout_step(0);
  EXPECT_TRUE(bitwise_equal(first, a.forward(x, x, x).out));  // resumable from the step
  a.eval();
  EXPECT_TRUE(bitwise_equal(a.forward(x, x, x).out, plain.forward(x, x, x).out));
  EXPECT_EQ(a.dropout_step(), 1u);  // evaluation does not advance the stream

  ScaledDotProductAttention sdpa({.dropout = 0.5, .seed = 3});
  Tensor q = Tensor::randn({1, 4, 6}, 2), kv = Tensor::randn({1, 8, 6}, 3);
  Tensor y0 = sdpa.forward(q, kv, kv).out, y1 = sdpa.forward(q, kv, kv).out;
  EXPECT_FALSE(bitwise_equal(y0, y1));
  sdpa.eval();
  EXPECT_TRUE(bitwise_equal(sdpa.forward(q, kv, kv).out, ScaledDotProductAttention().forward(q, kv, kv).out));
}

TEST(MultiHeadAttention, PathPrecisionAndChosenWeights) {
  MultiHeadAttentionOptions options{.embed_dim = 32, .num_heads = 4, .seed = 5};
  MultiHeadAttention fused(options);
  options.path = AttentionPath::kComposed;
  MultiHeadAttention composed(options);
  Tensor x = Tensor::randn({2, 37, 32}, 1);
  x.requires_grad_();
  AttentionMask mask{.key_lengths = Tensor::from_vector(std::vector<int64_t>{37, 30}, {2}), .causal = true};
  EXPECT_TRUE(graph_has(fused.forward(x, x, x, mask).out, "fused_attention"));
  AttentionOutput all = composed.forward(x, x, x, mask, true);  // [B, H, T, S]
  EXPECT_FALSE(graph_has(all.out, "fused_attention"));

  // Heads 2 and 1, query rows [4, 33): the same numbers as those of the full matrix.
  const WeightsSelection pick{.heads = {2, 1}, .row_begin = 4, .row_end = 33};
  AttentionOutput some = fused.forward(x, x, x, mask, pick);
  ASSERT_EQ(some.weights.shape(), (Shape{2, 2, 29, 37}));
  Tensor expected = contiguous(slice(index_select(all.weights, 1, Tensor::from_vector(std::vector<int64_t>{2, 1}, {2})),
                                     2, 4, 33));
  EXPECT_TRUE(all_close(some.weights, expected, kReduction));
  EXPECT_TRUE(all_close(some.out, all.out, kReduction));

  options.path = AttentionPath::kAuto;
  options.precision = AttentionPrecision::kBF16;
  MultiHeadAttention bf16(options);
  Tensor y = bf16.forward(x, x, x, mask).out;
  EXPECT_TRUE(all_close(y, all.out, {3e-2, 3e-2}));  // bf16 products: 8 significant bits per operand
  if (kernels::cpu::cpu_has_amx_bf16()) EXPECT_FALSE(bitwise_equal(y, fused.forward(x, x, x, mask).out));
}

TEST(MultiHeadAttention, ErrorsNameTheModuleAndTheShapes) {
  EXPECT_THROW(MultiHeadAttention({.embed_dim = 10, .num_heads = 3}), Error);
  EXPECT_THROW(MultiHeadAttention({.embed_dim = 12, .num_heads = 4, .num_kv_heads = 3}), Error);
  MultiHeadAttention mha({.embed_dim = 8, .num_heads = 2, .kdim = 5});
  Tensor q = Tensor::randn({2, 3, 8}, 1), k = Tensor::randn({2, 4, 5}, 2), v = Tensor::randn({2, 4, 8}, 3);
  try {
    mha.forward(q, Tensor::randn({2, 4, 6}, 2), v);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("MultiHeadAttention"), std::string::npos) << msg;
    EXPECT_NE(msg.find("f32[2, 4, 6]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("kdim = 5"), std::string::npos) << msg;
  }
  EXPECT_THROW(mha.forward(q, k, Tensor::randn({2, 5, 8}, 3)), Error);
  EXPECT_THROW(mha.forward(Tensor::randn({3, 8}, 1), k, v), Error);
  AttentionMask bad;
  bad.bool_mask = Tensor::ones({3, 3}, DType::kU8);
  EXPECT_THROW(mha.forward(q, k, v, bad), Error);
  EXPECT_THROW(GeneralAttention({.query_dim = 0, .key_dim = 3}), Error);
  EXPECT_THROW(DotProductAttention().forward(q, k, v), Error);  // Dq 8 != Dk 5
}

}  // namespace
}  // namespace heed::nn
