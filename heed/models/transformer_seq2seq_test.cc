// The encoder-decoder: shapes, tying variants and their parameter names, padding that does
// not leak into the output, and a tiny model that overfits a few sequences.
#include "heed/models/transformer_seq2seq.h"

#include <set>

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/ops/loss.h"
#include "heed/testing/numerics.h"
#include "heed/train/optimizer.h"

namespace heed::models {
namespace {

TransformerSeq2SeqOptions tiny(TieEmbeddings tie, nn::PositionKind positions = nn::PositionKind::kSinusoidal) {
  return TransformerSeq2SeqOptions{.src_vocab = 9, .tgt_vocab = tie == TieEmbeddings::kAll ? 9 : 7, .d_model = 16,
                                   .heads = 2, .encoder_layers = 1, .decoder_layers = 1, .ff_width = 32,
                                   .dropout = 0.0, .positions = positions, .max_len = 16, .tie = tie, .seed = 3};
}

Tensor ids(const std::vector<int64_t>& v, int64_t b) {
  return Tensor::from_vector(v, {b, static_cast<int64_t>(v.size()) / b});
}

std::set<std::string> names(const nn::Module& m) {
  std::set<std::string> out;
  for (auto& [n, p] : m.named_parameters()) out.insert(n);
  return out;
}

TEST(TransformerSeq2Seq, ShapesAndTying) {
  TransformerSeq2Seq none(tiny(TieEmbeddings::kNone)), dec(tiny(TieEmbeddings::kDecoder)),
      all(tiny(TieEmbeddings::kAll));
  Tensor src = ids({1, 2, 3, 4, 5, 0}, 2), lens = Tensor::from_vector(std::vector<int64_t>{3, 2}, {2});
  Tensor tgt = ids({1, 4, 5, 6, 1, 2, 0, 0}, 2);
  EXPECT_EQ(none.forward(src, lens, tgt).shape(), (Shape{2, 4, 7}));
  EXPECT_EQ(all.forward(src, lens, tgt).shape(), (Shape{2, 4, 9}));
  EXPECT_TRUE(names(none).count("output_proj.weight"));
  EXPECT_TRUE(names(none).count("src_embed.weight"));
  EXPECT_FALSE(names(dec).count("output_proj.weight"));
  EXPECT_TRUE(names(dec).count("src_embed.weight"));
  EXPECT_FALSE(names(all).count("src_embed.weight"));
  EXPECT_TRUE(names(all).count("tgt_embed.weight"));
  EXPECT_TRUE(names(all).count("encoder.layers.0.self_attn.in_proj_weight"));
  EXPECT_TRUE(names(all).count("decoder.layers.0.multihead_attn.out_proj.bias"));
  EXPECT_EQ(none.parameter_count() - dec.parameter_count(), 7 * 16);
  TransformerSeq2Seq learned(tiny(TieEmbeddings::kDecoder, nn::PositionKind::kLearned));
  EXPECT_TRUE(names(learned).count("src_positions.weight"));
  EXPECT_TRUE(names(learned).count("tgt_positions.weight"));
  EXPECT_THROW(TransformerSeq2Seq(TransformerSeq2SeqOptions{.src_vocab = 5, .tgt_vocab = 6, .tie = TieEmbeddings::kAll}),
               Error);
}

TEST(TransformerSeq2Seq, SourcePaddingDoesNotLeak) {
  TransformerSeq2Seq model(tiny(TieEmbeddings::kDecoder, nn::PositionKind::kRotary));
  model.eval();
  Tensor lens = Tensor::from_vector(std::vector<int64_t>{3}, {1});
  Tensor tgt = ids({1, 4, 5}, 1);
  Tensor a = model.forward(ids({2, 3, 4, 0, 0}, 1), lens, tgt);
  Tensor b = model.forward(ids({2, 3, 4, 7, 8}, 1), lens, tgt);  // different padding contents
  Tensor c = model.forward(ids({2, 3, 4}, 1), lens, tgt);        // no padding at all
  EXPECT_TRUE(testing::all_close(a, b, testing::kReduction));
  EXPECT_TRUE(testing::all_close(a, c, testing::kReduction));
}

TEST(TransformerSeq2Seq, TinyModelOverfitsFewSequences) {
  for (nn::PositionKind positions : {nn::PositionKind::kSinusoidal, nn::PositionKind::kRotary}) {
    TransformerSeq2Seq model(tiny(TieEmbeddings::kDecoder, positions));
    // Reverse the source (tokens 3..8); target vocabulary 0 pad, 1 bos, 2 eos, 3..6.
    Tensor src = ids({3, 4, 5, 6, 6, 5, 0, 0, 4, 4, 3, 0}, 3);
    Tensor lens = Tensor::from_vector(std::vector<int64_t>{4, 2, 3}, {3});
    Tensor tgt_in = ids({1, 6, 5, 4, 3, 1, 5, 6, 0, 0, 1, 3, 4, 4, 0}, 3);
    Tensor tgt_out = ids({6, 5, 4, 3, 2, 5, 6, 2, 0, 0, 3, 4, 4, 2, 0}, 3);
    train::Adam opt(model.named_parameters(), train::AdamOptions{.lr = 0.01});
    double first = 0, last = 0;
    for (int step = 0; step < 150; ++step) {
      opt.zero_grad();
      Tensor loss = cross_entropy(model.forward(src, lens, tgt_in), tgt_out, {.ignore_index = 0});
      if (step == 0) first = loss.item();
      last = loss.item();
      loss.backward();
      opt.step();
    }
    EXPECT_GT(first, 1.0);
    EXPECT_LT(last, 0.01) << "positions " << to_string(positions);
  }
}

}  // namespace
}  // namespace heed::models
