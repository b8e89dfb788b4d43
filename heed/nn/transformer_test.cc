// Transformer layers: shapes and parameter names, PyTorch-equivalent maths for one
// post-norm encoder layer built by hand from primitives, gradchecks in double, and
// cached incremental decoding equal to the full causal pass.
#include "heed/nn/transformer.h"

#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/nn/embedding.h"
#include "heed/nn/dropout.h"
#include "heed/ops/layer_norm.h"
#include "heed/ops/softmax.h"
#include "heed/testing/numerics.h"

namespace heed::nn {
namespace {

using testing::all_close;
using testing::kReduction;

// Every parameter of a module converted to f64 in place (for gradchecks).
void to_double(Module& m) {
  for (auto& [name, p] : m.named_parameters()) {
    Tensor d = p.to(DType::kF64);
    TensorImpl& impl = p.impl();
    impl.storage = d.storage();
    impl.strides = d.strides();
    impl.offset = d.offset();
    impl.dtype = DType::kF64;
  }
}

TransformerLayerOptions small_layer(bool norm_first) {
  return TransformerLayerOptions{.width = 8, .heads = 2, .ff_width = 12, .dropout = 0.0,
                                 .norm_first = norm_first, .seed = 11};
}

TEST(Transformer, ParameterNamesFollowPyTorch) {
  TransformerEncoder enc({.layers = 2, .layer = small_layer(true)});
  TransformerDecoder dec({.layers = 1, .layer = small_layer(true)});
  std::set<std::string> names;
  for (auto& [n, p] : enc.named_parameters()) names.insert("encoder." + n);
  for (auto& [n, p] : dec.named_parameters()) names.insert("decoder." + n);
  for (const char* want :
       {"encoder.layers.0.self_attn.in_proj_weight", "encoder.layers.0.self_attn.in_proj_bias",
        "encoder.layers.1.self_attn.out_proj.weight", "encoder.layers.1.self_attn.out_proj.bias",
        "encoder.layers.0.linear1.weight", "encoder.layers.0.linear2.bias", "encoder.layers.0.norm1.weight",
        "encoder.layers.1.norm2.bias", "encoder.norm.weight", "decoder.layers.0.multihead_attn.in_proj_weight",
        "decoder.layers.0.norm3.weight", "decoder.norm.bias"})
    EXPECT_TRUE(names.count(want)) << want;
  EXPECT_EQ(enc.parameter("layers.0.self_attn.in_proj_weight").shape(), (Shape{24, 8}));
  EXPECT_EQ(enc.parameter("layers.0.linear1.weight").shape(), (Shape{12, 8}));
  // Per encoder layer: attn 3*8*8+24 + 8*8+8, ff 12*8+12 + 8*12+8, norms 4*8.
  const int64_t per_layer = 192 + 24 + 64 + 8 + 96 + 12 + 96 + 8 + 32;
  EXPECT_EQ(enc.parameter_count(), 2 * per_layer + 16);
}

// PyTorch's post-norm TransformerEncoderLayer written out with primitives:
// x = LN1(x + out_proj(MHA(x))); x = LN2(x + linear2(relu(linear1(x)))).
Tensor encoder_layer_reference(const Module& layer, const Tensor& x, const Tensor& key_lengths, int64_t heads) {
  auto p = [&](const char* n) { return layer.parameter(n); };
  const int64_t b = x.size(0), s = x.size(1), c = x.size(2), d = c / heads;
  Tensor qkv = linear(x, p("self_attn.in_proj_weight"), p("self_attn.in_proj_bias"));  // [B, S, 3C]
  auto head = [&](int64_t i) {
    return permute(reshape(contiguous(slice(qkv, 2, i * c, (i + 1) * c)), {b, s, heads, d}), {0, 2, 1, 3});
  };
  Tensor scores = mul(matmul(head(0), transpose(head(1), 2, 3)), 1.0 / std::sqrt(static_cast<double>(d)));
  std::vector<double> bias(b * s);
  std::vector<int64_t> lens = key_lengths.to_vector<int64_t>();
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < s; ++j) bias[i * s + j] = j < lens[i] ? 0.0 : -1e30;
  scores = add(scores, Tensor::from_vector(bias, {b, 1, 1, s}).to(x.dtype()));
  Tensor attn = matmul(softmax(scores, -1), head(2));                         // [B, H, S, D]
  Tensor merged = reshape(contiguous(permute(attn, {0, 2, 1, 3})), {b, s, c});  // [B, S, C]
  Tensor a = linear(merged, p("self_attn.out_proj.weight"), p("self_attn.out_proj.bias"));
  Tensor h = layer_norm(add(x, a), c, p("norm1.weight"), p("norm1.bias"));
  Tensor f = linear(relu(linear(h, p("linear1.weight"), p("linear1.bias"))), p("linear2.weight"), p("linear2.bias"));
  return layer_norm(add(h, f), c, p("norm2.weight"), p("norm2.bias"));
}

TEST(Transformer, PostNormEncoderLayerMatchesPrimitives) {
  TransformerEncoderLayer layer(small_layer(false));
  Tensor x = Tensor::randn({3, 5, 8}, 1);
  Tensor lens = Tensor::from_vector(std::vector<int64_t>{5, 3, 1}, {3});
  Tensor got = layer.forward(x, AttentionMask{.key_lengths = lens}, 0);
  ASSERT_EQ(got.shape(), (Shape{3, 5, 8}));
  EXPECT_TRUE(all_close(got, encoder_layer_reference(layer, x, lens, 2), kReduction));
}

TEST(Transformer, EncoderLayerGradcheckInDouble) {
  for (bool norm_first : {true, false}) {
    TransformerEncoderLayer layer(small_layer(norm_first));
    to_double(layer);
    Tensor lens = Tensor::from_vector(std::vector<int64_t>{3, 2}, {2});
    std::vector<Tensor> inputs = {testing::rand_param({2, 3, 8}, 3)};
    for (const std::string n : {"self_attn.in_proj_bias", "linear1.bias", "norm1.weight", "self_attn.out_proj.bias"})
      inputs.push_back(layer.parameter(n));
    EXPECT_TRUE(testing::gradcheck(
        [&](const std::vector<Tensor>& in) { return layer.forward(in[0], AttentionMask{.key_lengths = lens}, 0); },
        inputs))
        << "norm_first " << norm_first;
  }
}

TEST(Transformer, DecoderLayerGradcheckInDouble) {
  TransformerDecoderLayer layer(small_layer(true));
  to_double(layer);
  Tensor lens = Tensor::from_vector(std::vector<int64_t>{3, 2}, {2});
  Tensor memory = testing::rand_param({2, 3, 8}, 4);
  std::vector<Tensor> inputs = {testing::rand_param({2, 3, 8}, 5), memory,
                                layer.parameter("multihead_attn.in_proj_bias"), layer.parameter("norm3.bias")};
  EXPECT_TRUE(testing::gradcheck(
      [&](const std::vector<Tensor>& in) {
        return layer.forward(in[0], in[1], AttentionMask{.key_lengths = lens}, 0);
      },
      inputs));
}

TEST(Transformer, CapturedWeightsOfChosenLayersHeadsAndRows) {
  // One attention sublayer: what it keeps is softmax(q k^T / sqrt(D)) of its own projections.
  TransformerAttention attn({.width = 16, .heads = 4, .seed = 3});
  Tensor x = Tensor::randn({2, 9, 16}, 1);
  const AttentionMask mask{.key_lengths = Tensor::from_vector(std::vector<int64_t>{9, 6}, {2})};
  Tensor plain = attn.forward_self(x, mask, 0);
  attn.capture_weights(WeightsSelection{.heads = {3, 1}, .row_begin = 2, .row_end = 7});
  EXPECT_TRUE(testing::bitwise_equal(attn.forward_self(x, mask, 0), plain));
  auto heads = [&](int64_t part) {  // [B, T, C] -> q, k or v [B, H, T, D]
    Tensor w = slice(attn.in_proj_weight(), 0, part * 16, (part + 1) * 16);
    Tensor b = slice(attn.in_proj_bias(), 0, part * 16, (part + 1) * 16);
    return permute(reshape(linear(x, w, b), {2, 9, 4, 4}), {0, 2, 1, 3});
  };
  AttentionOptions o{.mask = mask, .need_weights = true, .path = AttentionPath::kComposed};
  Tensor full = attention(heads(0), heads(1), heads(2), o).weights;  // [B, H, T, S]
  Tensor expected =
      contiguous(slice(index_select(full, 1, Tensor::from_vector(std::vector<int64_t>{3, 1}, {2})), 2, 2, 7));
  EXPECT_TRUE(all_close(attn.captured_weights(), expected, kReduction));
  EXPECT_THROW(attn.capture_weights(WeightsSelection{.heads = {4}}), Error);
  attn.stop_capture();
  attn.forward_self(x, mask, 0);
  EXPECT_FALSE(attn.captured_weights().defined());

  // Stacks: only the chosen layer keeps weights (cross-attention: [B, heads, rows, S] over the
  // memory), and the outputs do not change.
  TransformerEncoder enc({.layers = 2, .layer = small_layer(true)});
  TransformerDecoder dec({.layers = 2, .layer = small_layer(true)});
  Tensor src = Tensor::randn({2, 5, 8}, 2), tgt = Tensor::randn({2, 4, 8}, 3);
  const AttentionMask src_mask{.key_lengths = Tensor::from_vector(std::vector<int64_t>{5, 3}, {2})};
  Tensor memory = enc.forward(src, src_mask, 0), out = dec.forward(tgt, memory, src_mask, 0);
  enc.layer(1).self_attention().capture_weights(WeightsSelection{.heads = {0}});
  dec.layer(0).cross_attention().capture_weights(WeightsSelection{.row_begin = 1, .row_end = 3});
  EXPECT_TRUE(testing::bitwise_equal(enc.forward(src, src_mask, 0), memory));
  EXPECT_TRUE(testing::bitwise_equal(dec.forward(tgt, memory, src_mask, 0), out));
  EXPECT_FALSE(enc.layer(0).self_attention().captured_weights().defined());
  EXPECT_EQ(enc.layer(1).self_attention().captured_weights().shape(), (Shape{2, 1, 5, 5}));
  const Tensor& cross = dec.layer(0).cross_attention().captured_weights();
  ASSERT_EQ(cross.shape(), (Shape{2, 2, 2, 5}));
  const std::vector<float> w = cross.to_vector<float>();
  for (int64_t row = 0; row < 8; ++row) {  // each row sums to 1 over the unpadded source positions
    double total = 0;
    for (int64_t j = 0; j < 5; ++j) total += w[static_cast<size_t>(row * 5 + j)];
    EXPECT_NEAR(total, 1.0, 1e-5);
    if (row >= 4)  // batch 1: source length 3
      for (int64_t j = 3; j < 5; ++j) EXPECT_EQ(w[static_cast<size_t>(row * 5 + j)], 0.0f);
  }
  EXPECT_FALSE(dec.layer(0).self_attention().captured_weights().defined());
}

TEST(Transformer, DecoderIsCausal) {
  TransformerDecoder dec({.layers = 2, .layer = small_layer(true)});
  dec.eval();
  Tensor memory = Tensor::randn({1, 3, 8}, 6), x = Tensor::randn({1, 5, 8}, 7);
  Tensor lens = Tensor::from_vector(std::vector<int64_t>{3}, {1});
  Tensor full = dec.forward(x, memory, AttentionMask{.key_lengths = lens}, 0);
  // Changing position 3 leaves positions 0..2 unchanged.
  Tensor x2 = x.clone_data();
  x2.raw_slice(1, 3, 4).fill_(0.5);
  Tensor changed = dec.forward(x2, memory, AttentionMask{.key_lengths = lens}, 0);
  EXPECT_TRUE(testing::bitwise_equal(full.raw_slice(1, 0, 3).raw_contiguous(),
                                     changed.raw_slice(1, 0, 3).raw_contiguous()));
  EXPECT_FALSE(all_close(full.raw_slice(1, 3, 4), changed.raw_slice(1, 3, 4), kReduction));
}

// Single positions go through the fused step (TransformerDecoderLayer::fused_step) unless
// rotary; several at once through the op-by-op path; both share one cache here.
TEST(Transformer, CachedDecodingMatchesFullPass) {
  for (bool norm_first : {true, false})
    for (bool rotary : {false, true})
      for (Activation act : {Activation::kRelu, Activation::kGelu}) {
        TransformerLayerOptions lo = small_layer(norm_first);
        lo.rotary = rotary;
        lo.activation = act;
        TransformerDecoder dec({.layers = 2, .layer = lo});
        dec.eval();
        Tensor memory = Tensor::randn({2, 4, 8}, 8), x = Tensor::randn({2, 6, 8}, 9);
        Tensor lens = Tensor::from_vector(std::vector<int64_t>{4, 2}, {2});
        const AttentionMask mm{.key_lengths = lens};
        Tensor full = dec.forward(x, memory, mm, 0);  // [2, 6, 8]
        DecoderCache cache = dec.start(memory, 8);
        // One position, then two at once, then the last three one by one.
        std::vector<std::pair<int64_t, int64_t>> chunks = {{0, 1}, {1, 3}, {3, 4}, {4, 5}, {5, 6}};
        for (auto [from, to] : chunks) {
          Tensor step = dec.forward_cached(x.raw_slice(1, from, to), cache, mm);
          EXPECT_TRUE(all_close(step, full.raw_slice(1, from, to), kReduction))
              << "positions " << from << ".." << to << " norm_first " << norm_first << " rotary " << rotary
              << " gelu " << (act == Activation::kGelu);
        }
        EXPECT_EQ(cache.length, 6);
        EXPECT_THROW(dec.forward_cached(x.raw_slice(1, 0, 3), cache, mm), Error);  // capacity 8 exceeded
      }
}

TEST(Transformer, CacheReorderFollowsBatchRows) {
  TransformerDecoder dec({.layers = 1, .layer = small_layer(true)});
  dec.eval();
  Tensor memory = Tensor::randn({2, 3, 8}, 10), x = Tensor::randn({2, 3, 8}, 11);
  Tensor lens = Tensor::from_vector(std::vector<int64_t>{3, 3}, {2});
  DecoderCache cache = dec.start(memory, 4);
  dec.forward_cached(x.raw_slice(1, 0, 2), cache, AttentionMask{.key_lengths = lens});
  Tensor swap = Tensor::from_vector(std::vector<int64_t>{1, 1, 0}, {3});
  cache.reorder(swap);
  Tensor x3 = index_select(x, 0, swap);
  Tensor lens3 = Tensor::from_vector(std::vector<int64_t>{3, 3, 3}, {3});
  Tensor got = dec.forward_cached(x3.raw_slice(1, 2, 3), cache, AttentionMask{.key_lengths = lens3});
  Tensor full = dec.forward(x3, index_select(memory, 0, swap), AttentionMask{.key_lengths = lens3}, 0);
  EXPECT_TRUE(all_close(got, full.raw_slice(1, 2, 3), kReduction));
}

// Beam search reorders every step: same-shaped reorders alternate between two buffers per
// cached tensor (no fresh allocation), and the result still matches the full pass.
TEST(Transformer, RepeatedReordersReuseTwoBuffers) {
  TransformerDecoder dec({.layers = 1, .layer = small_layer(false)});
  dec.eval();
  Tensor memory = Tensor::randn({3, 3, 8}, 12), x = Tensor::randn({3, 4, 8}, 13);
  Tensor lens = Tensor::from_vector(std::vector<int64_t>{3, 2, 3}, {3});
  DecoderCache cache = dec.start(memory, 4);
  Tensor perm = Tensor::from_vector(std::vector<int64_t>{2, 0, 1}, {3});
  Tensor xs = x, mem = memory, ls = lens;
  const void* first = nullptr;
  for (int64_t t = 0; t < 4; ++t) {
    Tensor got = dec.forward_cached(xs.raw_slice(1, t, t + 1), cache, AttentionMask{.key_lengths = ls});
    Tensor full = dec.forward(xs, mem, AttentionMask{.key_lengths = ls}, 0);
    EXPECT_TRUE(all_close(got, full.raw_slice(1, t, t + 1), kReduction)) << "step " << t;
    cache.reorder(perm);
    xs = index_select(xs, 0, perm);
    mem = index_select(mem, 0, perm);
    ls = index_select(ls, 0, perm);
    if (t == 0) first = cache.layers[0].self_attn.k.raw_data();
    if (t == 2) EXPECT_EQ(cache.layers[0].self_attn.k.raw_data(), first);  // back in the first buffer
  }
}

TEST(Transformer, DropoutOnlyInTrainingAndSeeded) {
  TransformerLayerOptions lo = small_layer(true);
  lo.dropout = 0.3;
  lo.attention_dropout = 0.2;
  lo.activation_dropout = 0.1;
  TransformerEncoderLayer layer(lo);
  Tensor x = Tensor::randn({2, 4, 8}, 12);
  Tensor a = layer.forward(x, AttentionMask{}, 5), b = layer.forward(x, AttentionMask{}, 5);
  Tensor c = layer.forward(x, AttentionMask{}, 6);
  EXPECT_TRUE(testing::bitwise_equal(a, b));
  EXPECT_FALSE(all_close(a, c, kReduction));
  layer.eval();
  EXPECT_TRUE(testing::bitwise_equal(layer.forward(x, AttentionMask{}, 5), layer.forward(x, AttentionMask{}, 6)));
}

// In training, dropout acts on each residual branch, never on the residual stream: with
// every branch's last projection zeroed, a pre-norm layer must return its input exactly,
// however much it drops (a residual connection wired the wrong way round would drop x).
TEST(Transformer, TrainingDropsTheBranchesNotTheResidualStream) {
  TransformerLayerOptions lo = small_layer(true);
  lo.dropout = 0.5;
  lo.activation_dropout = 0.3;
  auto zero_branch_outputs = [](Module& m) {
    for (auto& [name, p] : m.named_parameters())
      if (name.find("out_proj") != std::string::npos || name.find("linear2") != std::string::npos) p.fill_(0.0);
  };
  TransformerEncoderLayer enc(lo);
  TransformerDecoderLayer dec(lo);
  zero_branch_outputs(enc);
  zero_branch_outputs(dec);
  Tensor x = Tensor::randn({2, 5, 8}, 21), memory = Tensor::randn({2, 3, 8}, 22);
  EXPECT_TRUE(testing::bitwise_equal(enc.forward(x, AttentionMask{}, 3), x));
  EXPECT_TRUE(testing::bitwise_equal(dec.forward(x, memory, AttentionMask{}, 3), x));
}

TEST(Modules, EmbeddingLayerNormDropoutFeedForward) {
  Embedding emb({.num_embeddings = 5, .dim = 3, .padding_idx = 0, .seed = 1});
  EXPECT_EQ(emb.weight().raw_slice(0, 0, 1).to_vector<float>(), (std::vector<float>{0, 0, 0}));
  Tensor ids = Tensor::from_vector(std::vector<int64_t>{0, 2, 2, 4}, {2, 2});
  Tensor e = emb.forward(ids);
  ASSERT_EQ(e.shape(), (Shape{2, 2, 3}));
  sum(e).backward();
  std::vector<float> g = emb.weight().grad().to_vector<float>();
  EXPECT_EQ(g[0], 0.0f);       // padding row: no gradient
  EXPECT_EQ(g[2 * 3], 2.0f);   // row 2 used twice
  EXPECT_EQ(g[1 * 3], 0.0f);   // row 1 unused
  EXPECT_THROW(Embedding({.num_embeddings = 5, .dim = 3, .padding_idx = 5}), Error);

  LayerNorm ln({.width = 4});
  Tensor y = ln.forward(Tensor::randn({3, 4}, 2));
  std::vector<float> v = y.to_vector<float>();
  for (int r = 0; r < 3; ++r) {
    double m = 0;
    for (int c = 0; c < 4; ++c) m += v[r * 4 + c];
    EXPECT_NEAR(m / 4, 0.0, 1e-6);
  }

  Dropout drop({.p = 0.5, .stream = 3});
  Tensor ones = Tensor::ones({1000});
  std::vector<float> dv = drop.forward(ones, 9).to_vector<float>();
  int kept = 0;
  for (float f : dv) {
    EXPECT_TRUE(f == 0.0f || f == 2.0f);
    kept += f != 0;
  }
  EXPECT_GT(kept, 400);
  EXPECT_LT(kept, 600);
  drop.eval();
  EXPECT_TRUE(testing::bitwise_equal(drop.forward(ones, 9), ones));

  FeedForward ff({.width = 4, .ff_width = 6, .activation = Activation::kGelu, .seed = 3});
  EXPECT_EQ(ff.parameter("linear1.weight").shape(), (Shape{6, 4}));
  Tensor xin = Tensor::randn({2, 4}, 4);
  Tensor want = linear(gelu(linear(xin, ff.parameter("linear1.weight"), ff.parameter("linear1.bias"))),
                       ff.parameter("linear2.weight"), ff.parameter("linear2.bias"));
  EXPECT_TRUE(all_close(ff.forward(xin), want, kReduction));
}

}  // namespace
}  // namespace heed::nn
