// Errors a user can cause, one test per class across the ops: each must throw heed::Error
// whose message names the op and the shapes involved.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "heed/heed.h"

namespace heed {
namespace {

// Passes when f throws heed::Error and its message contains every one of `parts`.
::testing::AssertionResult throws_naming(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& p : parts)
      if (m.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message \"" << m << "\" does not name \"" << p << "\"";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-heed exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "nothing thrown";
}

const Tensor a23 = Tensor::zeros({2, 3});
const Tensor a43 = Tensor::zeros({4, 3});

TEST(OpErrors, ShapeMismatch) {
  EXPECT_TRUE(throws_naming([] { add(a23, a43); }, {"add:", "[2, 3]", "[4, 3]"}));
  EXPECT_TRUE(throws_naming([] { mul(a23, Tensor::zeros({2})); }, {"mul:", "[2, 3]", "[2]"}));
  EXPECT_TRUE(throws_naming([] { where(Tensor::zeros({4, 1}, DType::kU8), a23, a23); }, {"where:", "[4, 1]", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { masked_fill(a23, Tensor::zeros({4, 3}, DType::kU8), 0); },
                            {"masked_fill:", "[2, 3]", "[4, 3]"}));
  EXPECT_TRUE(throws_naming([] { matmul(a23, a43); }, {"matmul:", "f32[2, 3] @ f32[4, 3]"}));
  EXPECT_TRUE(throws_naming([] { linear(a23, Tensor::zeros({5, 4})); }, {"linear:", "[2, 3]", "[5, 4]"}));
  EXPECT_TRUE(throws_naming([] { reshape(a23, {4, 2}); }, {"reshape:", "[2, 3]", "[4, 2]"}));
  EXPECT_TRUE(throws_naming([] { expand(a23, {2, 4}); }, {"expand:", "[2, 3]", "[2, 4]"}));
  EXPECT_TRUE(throws_naming([] { concat({a23, a43}, 1); }, {"concat:", "[2, 3]", "[4, 3]"}));
  EXPECT_TRUE(throws_naming([] { split(a23, {1, 1}, 1); }, {"split:", "[1, 1]", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { sum_to(a23, {4}); }, {"sum_to:", "[2, 3]", "[4]"}));
  EXPECT_TRUE(throws_naming([] { squeeze(a23, 0); }, {"squeeze:", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { layer_norm(a23, 4); }, {"layer_norm:", "[2, 3]", "4"}));
  EXPECT_TRUE(throws_naming([] { layer_norm(a23, 3, Tensor::ones({4})); }, {"layer_norm: weight", "[4]", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { layer_norm(a23, 3, Tensor(), Tensor::ones({3, 1})); },
                            {"layer_norm: bias", "[3, 1]", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(a23, Tensor::zeros({3}, DType::kI64)); },
                            {"cross_entropy:", "i64[3]", "f32[2, 3]", "[2]"}));
  EXPECT_TRUE(throws_naming([] { embedding(Tensor::zeros({5}), Tensor::zeros({2}, DType::kI64)); },
                            {"embedding:", "f32[5]", "[V, C]"}));
}

TEST(OpErrors, DtypeMismatch) {
  const Tensor d23 = Tensor::zeros({2, 3}, DType::kF64);
  const Tensor i23 = Tensor::zeros({2, 3}, DType::kI64);
  EXPECT_TRUE(throws_naming([&] { add(a23, d23); }, {"add:", "f32[2, 3]", "f64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { div(d23, a23); }, {"div:", "f32[2, 3]", "f64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { exp(i23); }, {"exp:", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { where(Tensor::zeros({2, 3}, DType::kU8), a23, d23); },
                            {"where:", "f32[2, 3]", "f64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { matmul(a23, Tensor::zeros({3, 2}, DType::kF64)); },
                            {"matmul:", "f32[2, 3]", "f64[3, 2]"}));
  EXPECT_TRUE(throws_naming([&] { concat({a23, d23}, 0); }, {"concat:", "f32[2, 3]", "f64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { sum(i23); }, {"sum:", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { max(i23, 0); }, {"max:", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { softmax(i23, 1); }, {"softmax:", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { log_softmax(i23, 1); }, {"log_softmax:", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { layer_norm(a23, 3, Tensor::ones({3}, DType::kF64)); },
                            {"layer_norm: weight", "f64[3]", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { dropout(i23, {.p = 0.1}); }, {"dropout:", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { cross_entropy(a23, Tensor::zeros({2})); }, {"cross_entropy: targets", "f32[2]"}));
  EXPECT_TRUE(throws_naming([&] { cross_entropy(i23, Tensor::zeros({2}, DType::kI64)); },
                            {"cross_entropy: logits", "i64[2, 3]"}));
  EXPECT_TRUE(throws_naming([&] { embedding(a23, Tensor::zeros({2})); }, {"embedding: indices", "f32[2]"}));
  EXPECT_TRUE(throws_naming([&] { index_select(a23, 0, Tensor::zeros({2})); }, {"index_select:", "f32[2]"}));
}

TEST(OpErrors, IndexOutOfRange) {
  EXPECT_TRUE(throws_naming([] { index_select(a23, 1, Tensor::from_vector<int64_t>({0, 3}, {2})); },
                            {"index_select:", "index 3", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { embedding(a43, Tensor::from_vector<int64_t>({0, 1, 4}, {3})); },
                            {"embedding:", "index 4", "position [2]", "f32[4, 3]", "[0, 4)"}));
  EXPECT_TRUE(throws_naming([] { embedding(a43, Tensor::from_vector<int64_t>({-2}, {1, 1})); },
                            {"embedding:", "index -2", "position [0, 0]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(a23, Tensor::from_vector<int64_t>({0, 3}, {2})); },
                            {"cross_entropy:", "target 3", "position [1]", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(a23, Tensor::from_vector<int64_t>({-1, 0}, {2})); },
                            {"cross_entropy:", "target -1", "position [0]"}));
}

TEST(OpErrors, BadDimension) {
  EXPECT_TRUE(throws_naming([] { softmax(a23, 2); }, {"softmax:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { log_softmax(a23, -3); }, {"log_softmax:", "dimension -3", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { sum(a23, {0, 2}); }, {"sum:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { sum(a23, {1, -1}); }, {"sum:", "listed twice", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { mean(a23, {5}); }, {"mean:", "dimension 5", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { max(a23, 2); }, {"max:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { transpose(a23, 0, 2); }, {"transpose:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { permute(a23, {0, 0}); }, {"permute:", "repeated", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { permute(a23, {0}); }, {"permute:", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { slice(a23, 2, 0, 1); }, {"slice:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { unsqueeze(a23, 3); }, {"unsqueeze:", "dimension 3", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { squeeze(a23, -3); }, {"squeeze:", "dimension -3", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { concat({a23, a23}, 2); }, {"concat:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { split(a23, {3}, -3); }, {"split:", "dimension -3", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { index_select(a23, 2, Tensor::zeros({1}, DType::kI64)); },
                            {"index_select:", "dimension 2", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { softmax(Tensor::scalar(1.0), 0); }, {"softmax:", "f32[]"}));
}

TEST(OpErrors, NegativeDimension) {
  EXPECT_TRUE(throws_naming([] { Tensor::zeros({2, -3}); }, {"negative dimension", "[2, -3]"}));
  EXPECT_TRUE(throws_naming([] { reshape(a23, {-2, 3}); }, {"reshape:", "negative dimension", "[-2, 3]", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { expand(Tensor::zeros({1, 3}), {-1, 3}); },
                            {"expand:", "negative dimension", "[-1, 3]", "[1, 3]"}));
  EXPECT_TRUE(throws_naming([] { split(a23, {4, -1}, 1); }, {"split:", "negative size", "[4, -1]", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { layer_norm(a23, -3); }, {"layer_norm:", "-3", "[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { slice(a23, 1, 0, 3, -1); }, {"slice:", "step", "[2, 3]"}));
}

TEST(OpErrors, WrongMaskDtype) {
  EXPECT_TRUE(throws_naming([] { masked_fill(a23, Tensor::zeros({2, 3}), -1); },
                            {"masked_fill:", "u8", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { masked_fill(a23, Tensor::zeros({1, 3}, DType::kI64), -1); },
                            {"masked_fill:", "i64[1, 3]", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { where(Tensor::zeros({2, 3}, DType::kF64), a23, a23); },
                            {"where:", "u8", "f64[2, 3]", "f32[2, 3]"}));
}

TEST(OpErrors, BadOptionValues) {
  EXPECT_TRUE(throws_naming([] { dropout(a23, {.p = 1.5}); }, {"dropout:", "1.5", "[0, 1]", "f32[2, 3]"}));
  EXPECT_TRUE(throws_naming([] { cross_entropy(a23, Tensor::zeros({2}, DType::kI64), {.label_smoothing = -0.1}); },
                            {"cross_entropy:", "label_smoothing", "-0.1"}));
  EXPECT_TRUE(throws_naming([] { layer_norm(a23, 3, Tensor(), Tensor(), -1.0); }, {"layer_norm:", "eps"}));
  EXPECT_TRUE(throws_naming([] { embedding(a43, Tensor::zeros({1}, DType::kI64), 7); },
                            {"embedding:", "padding_idx 7", "f32[4, 3]"}));
}

}  // namespace
}  // namespace heed
