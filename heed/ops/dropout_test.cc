// dropout: the index contract shared with the fused attention kernel (element i kept iff
// dropout_keep(seed, stream, i, p)), scaling, the special cases p = 0 / 1 / eval, bitwise
// reproducibility, and its gradient.
#include "heed/ops/dropout.h"

#include <gtest/gtest.h>

#include <cmath>

#include "heed/heed.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/tensor/random.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using ref::Layout;
using testing::all_close;
using testing::bitwise_equal;

TEST(Dropout, KeepsExactlyTheElementsTheContractNames) {
  uint64_t seed = 1;
  for (const Shape& shape : {Shape{1}, Shape{7}, Shape{257}, Shape{33, 17}, Shape{3, 7, 33}})
    for (Layout layout : ref::kAllLayouts)
      for (double p : {0.1, 0.5, 0.9})
        for (DType dtype : {DType::kF32, DType::kF64}) {
          Tensor x = ref::make_input(shape, layout, ++seed, dtype, 0.5, 2.0);  // never 0
          const DropoutOptions o{.p = p, .seed = 1000 + seed, .stream = seed % 3};
          Tensor y = dropout(x, o);
          EXPECT_TRUE(all_close(y, ref::dropout(x, p, o.seed, o.stream), testing::kElementwise))
              << x.str() << " " << ref::layout_name(layout) << " p " << p;
          // The rule, element by element, on the row-major index of the output.
          std::vector<double> yv = y.to_vector<double>();
          for (size_t i = 0; i < yv.size(); ++i)
            ASSERT_EQ(yv[i] != 0, random::dropout_keep(o.seed, o.stream, i, static_cast<float>(p))) << i;
        }
}

TEST(Dropout, KeepFractionAndScale) {
  Tensor x = Tensor::ones({1 << 16});
  for (double p : {0.1, 0.3, 0.75}) {
    std::vector<float> y = dropout(x, {.p = p, .seed = 7}).to_vector<float>();
    int64_t kept = 0;
    for (float v : y) {
      if (v != 0) {
        ++kept;
        EXPECT_FLOAT_EQ(v, static_cast<float>(1 / (1 - p)));
      }
    }
    const double frac = static_cast<double>(kept) / y.size();
    EXPECT_NEAR(frac, 1 - p, 0.01) << p;  // ~4.6 standard deviations at n = 65536
  }
}

TEST(Dropout, SameSeedIsBitwiseIdenticalOtherSeedOrStreamDiffers) {
  Tensor x = Tensor::randn({33, 257}, 1);
  const DropoutOptions o{.p = 0.3, .seed = 42, .stream = 5};
  EXPECT_TRUE(bitwise_equal(dropout(x, o), dropout(x, o)));
  DropoutOptions other_seed = o, other_stream = o;
  other_seed.seed = 43;
  other_stream.stream = 6;
  EXPECT_FALSE(bitwise_equal(dropout(x, o), dropout(x, other_seed)));
  EXPECT_FALSE(bitwise_equal(dropout(x, o), dropout(x, other_stream)));
}

TEST(Dropout, IdentityWhenEvaluatingOrPZeroAndZerosForPOne) {
  Tensor x = testing::rand_param({4, 5}, 1);
  EXPECT_TRUE(dropout(x, {.p = 0.5, .training = false}).same(x));
  EXPECT_TRUE(dropout(x, {.p = 0.0}).same(x));
  Tensor y = dropout(x, {.p = 1.0, .seed = 3});
  for (double v : y.to_vector<double>()) EXPECT_EQ(v, 0.0);
  sum(y).backward();
  for (double v : x.grad().to_vector<double>()) EXPECT_EQ(v, 0.0);
}

TEST(Dropout, ProbabilityOutsideUnitIntervalIsAnError) {
  Tensor x = Tensor::ones({2, 3});
  for (double p : {-0.1, 1.5, static_cast<double>(NAN)}) {
    try {
      dropout(x, {.p = p});
      FAIL() << p;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("dropout: p = "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("f32[2, 3]"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(dropout(x, {.p = 2.0, .training = false}), Error);  // checked in eval mode too
}

TEST(Dropout, GradientIsTheSameMaskScaled) {
  const DropoutOptions o{.p = 0.4, .seed = 9, .stream = 1};
  EXPECT_TRUE(testing::gradcheck([o](const std::vector<Tensor>& x) { return dropout(x[0], o); },
                                 {testing::rand_param({5, 7}, 2)}));
  // Through a non-contiguous input: the mask follows the output's row-major index.
  EXPECT_TRUE(testing::gradcheck(
      [o](const std::vector<Tensor>& x) { return dropout(transpose(x[0], 0, 1), o); }, {testing::rand_param({5, 7}, 3)}));
  Tensor x = testing::rand_param({6, 11}, 4);
  Tensor y = dropout(x, o);
  sum(y).backward();
  std::vector<double> g = x.grad().to_vector<double>(), yv = y.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_DOUBLE_EQ(g[i], yv[i] != 0 ? 1 / 0.6 : 0.0) << i;
}

// The fused feed-forward activation against the two ops it replaces: same values and same
// gradients, bit for bit, in f32 and f64, on an awkward size (not a multiple of the 1,024
// chunk or of 16), through a transposed input, with zeros, negatives, NaN and infinities.
TEST(Dropout, ReluDropoutIsBitwiseReluThenDropout) {
  for (DType dtype : {DType::kF32, DType::kF64}) {
    const DropoutOptions o{.p = 0.3, .seed = 21, .stream = 5};
    for (bool transposed : {false, true}) {
      Tensor base = Tensor::randn({37, 61}, 11, dtype);
      // Whole rows of each special value (so each is kept and dropped many times), a
      // positive denormal among them.
      const double denormal = dtype == DType::kF32 ? 1e-40 : 1e-310;
      const double specials[] = {0.0, -0.0, std::nan(""), INFINITY, -INFINITY, denormal, -denormal};
      dispatch_float(dtype, "test", [&](auto tag) {
        using T = decltype(tag);
        for (int r = 0; r < 7; ++r)
          for (int64_t j = 0; j < 61; ++j) base.data<T>()[(3 + 4 * r) * 61 + j] = static_cast<T>(specials[r]);
      });
      Tensor x1 = base.clone_data().requires_grad_(true), x2 = base.clone_data().requires_grad_(true);
      Tensor in1 = transposed ? transpose(x1, 0, 1) : x1, in2 = transposed ? transpose(x2, 0, 1) : x2;
      Tensor fused = relu_dropout(in1, o);
      Tensor composed = dropout(relu(in2), o);
      EXPECT_TRUE(bitwise_equal(fused, composed)) << dtype_name(dtype) << " transposed=" << transposed;
      Tensor up = Tensor::randn(fused.shape(), 12, dtype);
      sum(mul(fused, up)).backward();
      sum(mul(composed, up)).backward();
      EXPECT_TRUE(bitwise_equal(x1.grad(), x2.grad())) << dtype_name(dtype) << " transposed=" << transposed;
    }
  }
  // Evaluation, p = 0 and p = 1 take the composed path.
  Tensor x = testing::rand_param({4, 9}, 7);
  for (DropoutOptions o : {DropoutOptions{.p = 0.3, .training = false}, DropoutOptions{.p = 0.0},
                           DropoutOptions{.p = 1.0}})
    EXPECT_TRUE(bitwise_equal(relu_dropout(x, o), dropout(relu(x), o)));
  EXPECT_THROW(relu_dropout(x, {.p = -0.1}), Error);
}

// The residual connection's fused dropout + add against the two ops: same values and both
// gradients, bit for bit, f32 and f64, awkward sizes, a transposed branch; broadcasting,
// evaluation and p = 0 / 1 take the composed path.
TEST(Dropout, DropoutAddIsBitwiseDropoutThenAdd) {
  for (DType dtype : {DType::kF32, DType::kF64}) {
    const DropoutOptions o{.p = 0.1, .seed = 8, .stream = 3};
    for (bool transposed : {false, true}) {
      Tensor rb = Tensor::randn({29, 67}, 13, dtype), xb = Tensor::randn({29, 67}, 14, dtype);
      Tensor r1 = rb.clone_data().requires_grad_(true), r2 = rb.clone_data().requires_grad_(true);
      Tensor x1 = xb.clone_data().requires_grad_(true), x2 = xb.clone_data().requires_grad_(true);
      Tensor in1 = transposed ? transpose(x1, 0, 1) : x1, in2 = transposed ? transpose(x2, 0, 1) : x2;
      Tensor res1 = transposed ? transpose(r1, 0, 1) : r1, res2 = transposed ? transpose(r2, 0, 1) : r2;
      Tensor fused = dropout_add(res1, in1, o);
      Tensor composed = add(res2, dropout(in2, o));
      EXPECT_TRUE(bitwise_equal(fused, composed)) << dtype_name(dtype) << " transposed=" << transposed;
      Tensor up = Tensor::randn(fused.shape(), 15, dtype);
      sum(mul(fused, up)).backward();
      sum(mul(composed, up)).backward();
      EXPECT_TRUE(bitwise_equal(x1.grad(), x2.grad())) << dtype_name(dtype);
      EXPECT_TRUE(bitwise_equal(r1.grad(), r2.grad())) << dtype_name(dtype);
    }
  }
  Tensor r = testing::rand_param({4, 9}, 7), x = testing::rand_param({4, 9}, 8), row = testing::rand_param({9}, 9);
  EXPECT_TRUE(bitwise_equal(dropout_add(r, x, {.p = 0.3, .training = false}), add(r, x)));
  EXPECT_TRUE(bitwise_equal(dropout_add(r, x, {.p = 0.0}), add(r, x)));
  EXPECT_TRUE(bitwise_equal(dropout_add(r, x, {.p = 1.0}), add(r, Tensor::zeros(x.shape(), x.dtype()))));
  // A broadcast residual takes the two ops; the result equals the fused pass on the expanded copy.
  const DropoutOptions o{.p = 0.3, .seed = 2};
  EXPECT_TRUE(bitwise_equal(dropout_add(row, x, o), dropout_add(expand(row, x.shape()).clone_data(), x, o)));
  EXPECT_THROW(dropout_add(r, x, {.p = 1.5}), Error);
  EXPECT_TRUE(testing::gradcheck(
      [o](const std::vector<Tensor>& a) { return dropout_add(a[0], a[1], o); },
      {testing::rand_param({5, 7}, 10), testing::rand_param({5, 7}, 11)}));
}

TEST(Dropout, ReluDropoutGradientCheck) {
  const DropoutOptions o{.p = 0.25, .seed = 3, .stream = 2};
  EXPECT_TRUE(testing::gradcheck([o](const std::vector<Tensor>& x) { return relu_dropout(x[0], o); },
                                 {testing::rand_param({9, 13}, 5)}));
}

}  // namespace
}  // namespace heed
