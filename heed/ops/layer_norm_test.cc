// layer_norm: forward and all three gradients against the double reference on awkward sizes
// and non-contiguous inputs, gradchecks with and without affine parameters, and the fused op
// against the same maths composed from primitives.
#include "heed/ops/layer_norm.h"

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using ref::Layout;
using testing::all_close;
using testing::gradcheck;
using testing::kReduction;
using testing::rand_param;

TEST(LayerNorm, ForwardAndBackwardMatchReference) {
  uint64_t seed = 1;
  for (const Shape& shape : {Shape{1, 1}, Shape{3, 7}, Shape{33, 257}, Shape{2, 5, 33}, Shape{257}, Shape{4, 1}})
    for (Layout layout : ref::kAllLayouts)
      for (bool affine : {false, true})
        for (DType dtype : {DType::kF32, DType::kF64}) {
          const int64_t c = shape.back();
          Tensor x = ref::make_input(shape, layout, ++seed, dtype, -3, 5);
          x.requires_grad_();
          Tensor w = affine ? ref::make_input({c}, Layout::kStrided, ++seed, dtype) : Tensor();
          Tensor b = affine ? ref::make_input({c}, Layout::kContiguous, ++seed, dtype) : Tensor();
          if (affine) {
            w = w.clone_data();
            w.requires_grad_();
            b.requires_grad_();
          }
          const std::string what = x.str() + " " + ref::layout_name(layout) + (affine ? " affine" : "");
          Tensor y = layer_norm(x, c, w, b);
          EXPECT_TRUE(all_close(y, ref::layer_norm(x, w, b, 1e-5), kReduction)) << what;
          Tensor g = ref::make_input(shape, Layout::kTransposed, ++seed, dtype);
          autograd::backward(y, g);
          ref::LayerNormGrads expected = ref::layer_norm_grad(x, w, g, 1e-5);
          EXPECT_TRUE(all_close(x.grad(), expected.x, kReduction)) << what;
          if (affine) {
            EXPECT_TRUE(all_close(w.grad(), expected.weight, kReduction)) << what;
            EXPECT_TRUE(all_close(b.grad(), expected.bias, kReduction)) << what;
          }
        }
}

TEST(LayerNorm, ConstantRowsAndLargeOffsets) {
  // A constant row normalises to 0 (variance 0, eps keeps it finite).
  Tensor c = Tensor::full({2, 9}, 3.5f);
  for (float v : layer_norm(c, 9).to_vector<float>()) EXPECT_EQ(v, 0.0f);
  // A large common offset: two-pass statistics keep the variance accurate.
  Tensor x = add(Tensor::randn({7, 33}, 2), 1e3);
  EXPECT_TRUE(all_close(layer_norm(x, 33), ref::layer_norm(x, Tensor(), Tensor(), 1e-5), kReduction));
}

TEST(LayerNorm, Gradients) {
  using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return layer_norm(x[0], 5, x[1], x[2]); },
                        {rand_param({3, 5}, 1), rand_param({5}, 2), rand_param({5}, 3)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return layer_norm(x[0], 4); }, {rand_param({2, 3, 4}, 4)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return layer_norm(x[0], 3, x[1]); },
                        {rand_param({4, 3}, 5), rand_param({3}, 6)}));
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return layer_norm(x[0], 3, Tensor(), x[1], 0.1); },
                        {rand_param({4, 3}, 7), rand_param({3}, 8)}));
  Fn transposed = [](const std::vector<Tensor>& x) { return layer_norm(transpose(x[0], 0, 1), 4, x[1], x[2]); };
  EXPECT_TRUE(gradcheck(transposed, {rand_param({4, 3}, 9), rand_param({4}, 10), rand_param({4}, 11)}));
  // A single element row: y = b, gradient of x is 0.
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return layer_norm(x[0], 1, x[1], x[2]); },
                        {rand_param({3, 1}, 12), rand_param({1}, 13), rand_param({1}, 14)}));
}

TEST(LayerNorm, FusedMatchesComposed) {
  Tensor x1 = rand_param({4, 6, 7}, 20), w1 = rand_param({7}, 21), b1 = rand_param({7}, 22);
  Tensor x2 = rand_param({4, 6, 7}, 20), w2 = rand_param({7}, 21), b2 = rand_param({7}, 22);
  const double eps = 1e-5;
  Tensor fused = layer_norm(x1, 7, w1, b1, eps);
  Tensor centred = sub(x2, mean(x2, {-1}, true));
  Tensor var = mean(mul(centred, centred), {-1}, true);
  Tensor composed = add(mul(div(centred, sqrt(add(var, eps))), w2), b2);
  EXPECT_TRUE(all_close(fused, composed, {1e-13, 1e-12}));
  Tensor g = Tensor::randn({4, 6, 7}, 23, DType::kF64);
  sum(mul(fused, g)).backward();
  sum(mul(composed, g)).backward();
  EXPECT_TRUE(all_close(x1.grad(), x2.grad(), {1e-12, 1e-10}));
  EXPECT_TRUE(all_close(w1.grad(), w2.grad(), {1e-12, 1e-10}));
  EXPECT_TRUE(all_close(b1.grad(), b2.grad(), {1e-12, 1e-10}));
}

}  // namespace
}  // namespace heed
