// embedding: lookup and scatter-add gradient against the double reference (repeated indices,
// padding row, indices of any rank and layout), gradcheck, and index errors.
#include "heed/ops/embedding.h"

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using ref::Layout;
using testing::all_close;

Tensor random_indices(const Shape& shape, int64_t v, uint64_t seed) {
  std::vector<int64_t> idx;
  for (float u : Tensor::uniform(shape, 0, 1, seed).to_vector<float>())
    idx.push_back(std::min<int64_t>(static_cast<int64_t>(u * v), v - 1));
  return Tensor::from_vector(idx, shape);
}

TEST(Embedding, ForwardAndBackwardMatchReference) {
  uint64_t seed = 1;
  for (const auto& [v, c] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 33}, {257, 17}, {33, 257}})
    for (const Shape& ishape : {Shape{}, Shape{7}, Shape{3, 33}, Shape{2, 3, 5}})
      for (Layout layout : {Layout::kContiguous, Layout::kStrided})
        for (int64_t padding : {int64_t{-1}, int64_t{0}}) {
          Tensor w = ref::make_input({v, c}, layout, ++seed);  // a strided table is accepted too
          w = w.is_contiguous() ? w : w.clone_data();
          w.requires_grad_();
          Tensor idx = random_indices(ishape, v, ++seed);
          if (ishape.size() >= 2) idx = idx.raw_transpose(0, 1);  // non-contiguous indices
          Tensor y = embedding(w, idx, padding);
          Shape expected_shape = idx.shape();
          expected_shape.push_back(c);
          ASSERT_EQ(y.shape(), expected_shape);
          EXPECT_TRUE(all_close(y, ref::embedding(w, idx), {0, 0}));
          Tensor g = ref::make_input(expected_shape, Layout::kTransposed, ++seed);
          autograd::backward(y, g);
          EXPECT_TRUE(all_close(w.grad(), ref::embedding_grad(idx, g, v, padding), testing::kReduction))
              << "V " << v << " C " << c << " indices " << idx.str() << " padding " << padding;
        }
}

TEST(Embedding, PaddingRowGetsNoGradient) {
  Tensor w = testing::rand_param({5, 3}, 1);
  Tensor idx = Tensor::from_vector<int64_t>({2, 0, 2, 4, 2}, {5});
  sum(embedding(w, idx, /*padding_idx=*/2)).backward();
  std::vector<double> g = w.grad().to_vector<double>();
  const std::vector<double> expected = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1};
  EXPECT_EQ(g, expected);
}

TEST(Embedding, Gradcheck) {
  Tensor idx = Tensor::from_vector<int64_t>({1, 3, 1, 0, 3, 3}, {2, 3});
  EXPECT_TRUE(testing::gradcheck([idx](const std::vector<Tensor>& x) { return embedding(x[0], idx); },
                                 {testing::rand_param({4, 5}, 1)}));
  // With a padding row that is not looked up (a looked-up padding row gets no gradient by design,
  // which a finite difference would contradict; PaddingRowGetsNoGradient checks that case).
  EXPECT_TRUE(testing::gradcheck([idx](const std::vector<Tensor>& x) { return embedding(x[0], idx, 2); },
                                 {testing::rand_param({4, 5}, 2)}));
}

TEST(Embedding, OutOfRangeIndexNamesIndexPositionAndTable) {
  Tensor w = Tensor::randn({10, 4}, 1);
  Tensor idx = Tensor::from_vector<int64_t>({1, 2, 3, 4, 10, 5}, {2, 3});
  try {
    embedding(w, idx);
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("embedding: index 10 at position [1, 1]"), std::string::npos) << m;
    EXPECT_NE(m.find("f32[10, 4]"), std::string::npos) << m;
    EXPECT_NE(m.find("[0, 10)"), std::string::npos) << m;
  }
  EXPECT_THROW(embedding(w, Tensor::from_vector<int64_t>({-1}, {1})), Error);
  EXPECT_THROW(embedding(w, Tensor::from_vector<int64_t>({1}, {1}), 10), Error);     // padding_idx
  EXPECT_THROW(embedding(w, Tensor::from_vector<float>({1}, {1})), Error);            // index dtype
  EXPECT_THROW(embedding(Tensor::randn({10}, 1), Tensor::from_vector<int64_t>({1}, {1})), Error);  // 1-D table
}

}  // namespace
}  // namespace heed
