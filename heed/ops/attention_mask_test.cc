// AttentionMask: the materialised allowed pattern and bias against the per-element rules,
// the output shape, broadcasting of smaller masks, the additive gradient, and errors.
#include "heed/ops/attention_mask.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "heed/heed.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

// The rule of attention_mask.h written out for one element.
bool allowed_by_rule(const AttentionMask& m, const std::vector<int64_t>& lengths, const std::vector<uint8_t>& given,
                     int64_t b, int64_t i, int64_t j, int64_t at) {
  const int64_t diag = i + m.causal_offset;
  if (!lengths.empty() && j >= lengths[b]) return false;
  if (m.causal && j > diag) return false;
  if (m.window_left >= 0 && j < diag - m.window_left) return false;
  if (m.window_right >= 0 && j > diag + m.window_right) return false;
  if (!given.empty() && given[at] == 0) return false;
  return true;
}

TEST(AttentionMask, AllowedPatternFollowsTheRuleForEveryCombination) {
  const AttentionDims dims{3, 2, 6, 9};
  std::vector<uint8_t> bits(3 * 6 * 9);
  for (size_t e = 0; e < bits.size(); ++e) bits[e] = (e * 7 + 3) % 5 != 0;
  const Tensor bool_mask = Tensor::from_vector(bits, {3, 1, 6, 9});
  const Tensor lengths = Tensor::from_vector(std::vector<int64_t>{9, 4, 0}, {3});
  int checked = 0;
  for (bool use_lengths : {false, true})
    for (bool causal : {false, true})
      for (int64_t offset : {-2, 0, 3})
        for (int64_t left : {-1, 0, 2})
          for (int64_t right : {-1, 0, 1})
            for (bool use_bool : {false, true}) {
              AttentionMask m;
              if (use_lengths) m.key_lengths = lengths;
              m.causal = causal;
              m.causal_offset = offset;
              m.window_left = left;
              m.window_right = right;
              if (use_bool) m.bool_mask = bool_mask;
              if (!m.has_structural()) continue;
              Tensor allowed = attention_allowed(m, dims, "test");
              const Shape shape = attention_mask_shape(m, dims);
              ASSERT_EQ(allowed.shape(), shape);
              EXPECT_EQ(shape[0], use_lengths || use_bool ? 3 : 1);
              EXPECT_EQ(shape[1], 1);
              std::vector<uint8_t> got = allowed.to_vector<uint8_t>();
              std::vector<uint8_t> given = use_bool ? bool_mask.raw_expand(shape).to_vector<uint8_t>()
                                                    : std::vector<uint8_t>();
              std::vector<int64_t> lv = use_lengths ? lengths.to_vector<int64_t>() : std::vector<int64_t>();
              for (int64_t b = 0; b < shape[0]; ++b)
                for (int64_t i = 0; i < dims.q_len; ++i)
                  for (int64_t j = 0; j < dims.kv_len; ++j) {
                    const int64_t at = (b * dims.q_len + i) * dims.kv_len + j;
                    ASSERT_EQ(got[at] != 0, allowed_by_rule(m, lv, given, b, i, j, at))
                        << "b=" << b << " i=" << i << " j=" << j << " causal=" << causal << " offset=" << offset
                        << " left=" << left << " right=" << right << " lengths=" << use_lengths
                        << " bool=" << use_bool;
                  }
              ++checked;
            }
  EXPECT_GT(checked, 200);
}

TEST(AttentionMask, ShapeFollowsTheMasksThatVary) {
  const AttentionDims dims{2, 4, 3, 5};
  AttentionMask m;
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(attention_bias(m, dims, DType::kF32, "test").defined());
  m.causal = true;
  EXPECT_EQ(attention_mask_shape(m, dims), (Shape{1, 1, 3, 5}));
  m.additive_mask = Tensor::zeros({4, 3, 5});  // [H, T, S], right-aligned
  EXPECT_EQ(attention_mask_shape(m, dims), (Shape{1, 4, 3, 5}));
  m.bool_mask = Tensor::ones({2, 1, 1, 5}, DType::kU8);
  EXPECT_EQ(attention_mask_shape(m, dims), (Shape{2, 4, 3, 5}));
  AttentionMask keys;
  keys.bool_mask = Tensor::ones({5}, DType::kU8);  // [S]: one pattern for every row
  EXPECT_EQ(attention_bias(keys, dims, DType::kF64, "test").shape(), (Shape{1, 1, 3, 5}));
}

TEST(AttentionMask, BiasIsZeroOrMinusInfinityPlusTheAdditivePart) {
  const AttentionDims dims{2, 3, 4, 5};
  AttentionMask m;
  m.key_lengths = Tensor::from_vector(std::vector<int64_t>{5, 2}, {2});
  m.causal = true;
  m.causal_offset = 1;
  Tensor additive = Tensor::randn({3, 4, 5}, 3, DType::kF64);
  additive.requires_grad_();
  m.additive_mask = additive;
  Tensor bias = attention_bias(m, dims, DType::kF64, "test");
  ASSERT_EQ(bias.shape(), (Shape{2, 3, 4, 5}));
  std::vector<double> got = bias.to_vector<double>(), add = additive.to_vector<double>();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 3; ++h)
      for (int64_t i = 0; i < 4; ++i)
        for (int64_t j = 0; j < 5; ++j) {
          const bool allowed = j < (b == 0 ? 5 : 2) && j <= i + 1;
          const double want = allowed ? add[(h * 4 + i) * 5 + j] : -std::numeric_limits<double>::infinity();
          EXPECT_EQ(got[((b * 3 + h) * 4 + i) * 5 + j], want) << b << h << i << j;
        }
  // The additive part keeps its gradient: d sum(bias * w) / d additive = sum over b of w.
  Tensor w = Tensor::randn({2, 3, 4, 5}, 4, DType::kF64);
  sum(mul(where(attention_allowed(m, dims, "test"), bias, Tensor::zeros({}, DType::kF64)), w)).backward();
  EXPECT_TRUE(testing::all_close(additive.grad(),
                                 sum(where(attention_allowed(m, dims, "test"), w, Tensor::zeros({}, DType::kF64)),
                                     {0}),
                                 testing::kElementwise));
}

TEST(AttentionMask, ErrorsNameTheOpTheMaskAndTheShape) {
  const AttentionDims dims{2, 4, 3, 5};
  AttentionMask m;
  m.bool_mask = Tensor::ones({1, 2, 4, 3, 5}, DType::kU8);
  try {
    attention_bias(m, dims, DType::kF32, "my_op");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("my_op"), std::string::npos) << msg;
    EXPECT_NE(msg.find("u8[1, 2, 4, 3, 5]"), std::string::npos) << msg;
    EXPECT_NE(msg.find("[2, 4, 3, 5]"), std::string::npos) << msg;
  }
  m = {};
  m.additive_mask = Tensor::zeros({3, 4});
  EXPECT_THROW(attention_bias(m, dims, DType::kF32, "my_op"), Error);
  m.additive_mask = Tensor::zeros({3, 5}, DType::kI64);
  EXPECT_THROW(attention_bias(m, dims, DType::kF32, "my_op"), Error);
  m = {};
  m.key_lengths = Tensor::from_vector(std::vector<int64_t>{1, -1}, {2});
  EXPECT_THROW(attention_allowed(m, dims, "my_op"), Error);
  m.key_lengths = Tensor::from_vector(std::vector<double>{1, 1}, {2});
  EXPECT_THROW(attention_allowed(m, dims, "my_op"), Error);
  m = {};
  m.window_right = -3;
  EXPECT_THROW(attention_allowed(m, dims, "my_op"), Error);
}

}  // namespace
}  // namespace heed
