// softmax / log_softmax: forward and backward against the double reference on awkward sizes,
// every dim and non-contiguous layouts; fully masked rows; stability; gradchecks; and the
// fused op against the same maths composed from primitives.
#include "heed/ops/softmax.h"

#include <gtest/gtest.h>

#include <cmath>

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

Tensor apply(bool log, const Tensor& x, int64_t dim) { return log ? log_softmax(x, dim) : softmax(x, dim); }

TEST(Softmax, ForwardAndBackwardMatchReference) {
  uint64_t seed = 1;
  for (bool log : {false, true})
    for (const Shape& shape : {Shape{1}, Shape{7}, Shape{257}, Shape{33, 17}, Shape{2, 7, 33}, Shape{5, 1}})
      for (Layout layout : ref::kAllLayouts)
        for (int64_t dim = -1; dim < static_cast<int64_t>(shape.size()); ++dim)
          for (DType dtype : {DType::kF32, DType::kF64}) {
            Tensor x = ref::make_input(shape, layout, ++seed, dtype, -8, 8);
            x.requires_grad_();
            const std::string what = std::string(log ? "log_softmax " : "softmax ") + x.str() + " " +
                                     ref::layout_name(layout) + " dim " + std::to_string(dim);
            Tensor y = apply(log, x, dim);
            EXPECT_TRUE(all_close(y, ref::softmax(x, dim, log), kReduction)) << what;
            // Backward with a contiguous and with a non-contiguous incoming gradient (they take
            // different kernels when the rows are contiguous).
            for (Layout gl : {Layout::kContiguous, Layout::kStrided}) {
              Tensor g = ref::make_input(shape, gl, ++seed, dtype);
              x.zero_grad();
              autograd::backward(y, g, {.retain_graph = true});
              EXPECT_TRUE(all_close(x.grad(), ref::softmax_grad(x, g, dim, log), kReduction))
                  << what << " gradient " << ref::layout_name(gl);
            }
          }
}

TEST(Softmax, FullyMaskedRowGivesZerosAndZeroGradient) {
  for (DType dtype : {DType::kF32, DType::kF64}) {
    Tensor x = Tensor::randn({4, 9}, 3, dtype);
    x.requires_grad_();
    std::vector<uint8_t> m(36, 0);
    for (int j = 0; j < 9; ++j) m[9 + j] = 1;  // row 1 fully masked
    m[2 * 9 + 4] = m[2 * 9 + 8] = 1;           // row 2 partly masked
    Tensor mask = Tensor::from_vector(m, {4, 9});
    for (bool log : {false, true}) {
      x.zero_grad();
      Tensor masked = masked_fill(x, mask, -INFINITY);
      Tensor y = apply(log, masked, -1);
      EXPECT_TRUE(all_close(y, ref::softmax(masked, -1, log), kReduction));
      std::vector<double> yv = y.to_vector<double>();
      for (int j = 0; j < 9; ++j) {
        if (log) EXPECT_EQ(yv[9 + j], -INFINITY);
        else EXPECT_EQ(yv[9 + j], 0.0);
      }
      if (!log) {
        EXPECT_EQ(yv[2 * 9 + 4], 0.0);
        EXPECT_EQ(yv[2 * 9 + 8], 0.0);
      }
      // A finite loss: log_softmax's -inf entries are multiplied by 0 through where().
      Tensor finite = log ? where(mask, Tensor::zeros({}, dtype), y) : y;
      Tensor w = Tensor::randn({4, 9}, 4, dtype);
      sum(finite * w).backward();
      std::vector<double> g = x.grad().to_vector<double>();
      for (double v : g) EXPECT_FALSE(std::isnan(v));
      for (int j = 0; j < 9; ++j) EXPECT_EQ(g[9 + j], 0.0) << j;
    }
  }
}

TEST(Softmax, StableForLargeLogits) {
  Tensor x = add(mul(Tensor::randn({7, 33}, 5), 10.0), 1e4);  // exp would overflow without the max shift
  EXPECT_TRUE(all_close(softmax(x, 1), ref::softmax(x, 1, false), kReduction));
  EXPECT_TRUE(all_close(log_softmax(x, 1), ref::softmax(x, 1, true), kReduction));
  Tensor neg = add(Tensor::randn({7, 33}, 6), -1e4);
  EXPECT_TRUE(all_close(softmax(neg, 0), ref::softmax(neg, 0, false), kReduction));
}

TEST(Softmax, Gradients) {
  using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
  std::vector<uint8_t> m(12, 0);
  m[1] = m[5] = 1;
  for (int j = 8; j < 12; ++j) m[j] = 1;  // last row fully masked
  Tensor mask = Tensor::from_vector(m, {3, 4});
  for (bool log : {false, true}) {
    const std::vector<std::pair<const char*, Fn>> cases = {
        {"last", [log](const std::vector<Tensor>& x) { return apply(log, x[0], -1); }},
        {"dim0", [log](const std::vector<Tensor>& x) { return apply(log, x[0], 0); }},
        {"dim1_3d", [log](const std::vector<Tensor>& x) { return apply(log, reshape(x[0], {3, 2, 2}), 1); }},
        {"transposed", [log](const std::vector<Tensor>& x) { return apply(log, transpose(x[0], 0, 1), -1); }},
        {"masked",
         [log, mask](const std::vector<Tensor>& x) {
           Tensor y = apply(log, masked_fill(x[0], mask, -INFINITY), -1);
           return log ? where(mask, Tensor::zeros({}, DType::kF64), y) : y;
         }},
    };
    uint64_t seed = 10;
    for (const auto& [name, f] : cases)
      EXPECT_TRUE(gradcheck(f, {rand_param({3, 4}, ++seed)})) << (log ? "log_softmax " : "softmax ") << name;
  }
}

TEST(Softmax, FusedMatchesComposed) {
  Tensor x1 = rand_param({5, 7, 3}, 20), x2 = rand_param({5, 7, 3}, 20);
  Tensor fused = softmax(x1, 1);
  Tensor shifted = sub(x2, max(x2, 1, true).detach());
  Tensor e = exp(shifted);
  Tensor composed = div(e, sum(e, {1}, true));
  EXPECT_TRUE(all_close(fused, composed, {1e-15, 1e-13}));
  Tensor w = Tensor::randn({5, 7, 3}, 21, DType::kF64);
  sum(mul(fused, w)).backward();
  sum(mul(composed, w)).backward();
  EXPECT_TRUE(all_close(x1.grad(), x2.grad(), {1e-15, 1e-12}));
  Tensor lcomposed = sub(shifted, log(sum(e, {1}, true)));
  EXPECT_TRUE(all_close(log_softmax(x1, 1), lcomposed, {1e-14, 1e-13}));
}

}  // namespace
}  // namespace heed
