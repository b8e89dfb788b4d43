// sum / mean / max over several dims with and without keepdim, against the double reference
// on awkward sizes and non-contiguous inputs, and their gradients by finite differences.
#include "heed/ops/reduce.h"

#include <gtest/gtest.h>

#include <omp.h>

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

TEST(Reduce, SumAndMeanMatchReference) {
  const std::vector<std::vector<int64_t>> dim_sets = {{}, {0}, {-1}, {1}, {0, 2}, {2, 0, 1}};
  uint64_t seed = 1;
  for (const Shape& shape : {Shape{7, 33, 17}, Shape{1, 257, 3}, Shape{2, 1, 257}})
    for (Layout layout : ref::kAllLayouts)
      for (const auto& dims : dim_sets)
        for (bool keepdim : {false, true}) {
          Tensor x = ref::make_input(shape, layout, ++seed);
          const std::string what = shape_str(shape) + " " + ref::layout_name(layout) + " dims " + shape_str(dims) +
                                   (keepdim ? " keepdim" : "");
          Tensor s = sum(x, dims, keepdim);
          EXPECT_TRUE(all_close(s, ref::sum(x, dims, keepdim), kReduction)) << what;
          EXPECT_TRUE(all_close(mean(x, dims, keepdim), ref::mean(x, dims, keepdim), kReduction)) << what;
        }
  // A long reduction in f32 accumulates in double: exact to f32 rounding.
  Tensor big = Tensor::full({1 << 20}, 0.1f);
  EXPECT_TRUE(all_close(sum(big), ref::sum(big, {}, false), {0, 1e-7}));
}

// Leading dims of a contiguous tensor (bias gradients) take a column-parallel path: the same
// additions in the same order as the general strided loop (bitwise, checked on a transposed
// copy, which takes that loop), with 1 and 2 threads.
TEST(Reduce, SumOverLeadingDimsMatchesGeneralPathBitwise) {
  for (const Shape& shape : {Shape{1536, 300}, Shape{3, 700, 257}, Shape{40000, 2}}) {
    Tensor x = Tensor::randn(shape, 7);
    std::vector<int64_t> lead(shape.size() - 1);
    for (size_t i = 0; i < lead.size(); ++i) lead[i] = static_cast<int64_t>(i);
    // The same values with the last dim outermost in memory: not contiguous, so the general loop.
    const int64_t r = static_cast<int64_t>(shape.size());
    std::vector<int64_t> last_first{r - 1}, back;
    for (int64_t i = 0; i + 1 < r; ++i) last_first.push_back(i);
    for (int64_t i = 1; i < r; ++i) back.push_back(i);
    back.push_back(0);
    Tensor strided = x.raw_permute(last_first).clone_data().raw_permute(back);
    ASSERT_FALSE(strided.is_contiguous());
    const Tensor want = sum(strided, lead);
    const int saved = omp_get_max_threads();
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      EXPECT_TRUE(testing::bitwise_equal(sum(x, lead), want)) << shape_str(shape) << " threads " << threads;
    }
    omp_set_num_threads(saved);
  }
}

TEST(Reduce, MaxMatchesReference) {
  uint64_t seed = 50;
  for (const Shape& shape : {Shape{7, 33}, Shape{257}, Shape{3, 1, 17}})
    for (Layout layout : ref::kAllLayouts)
      for (int64_t dim = -static_cast<int64_t>(shape.size()); dim < static_cast<int64_t>(shape.size()); ++dim)
        for (bool keepdim : {false, true}) {
          Tensor x = ref::make_input(shape, layout, ++seed);
          EXPECT_TRUE(all_close(max(x, dim, keepdim), ref::max(x, dim, keepdim), {0, 0}))
              << shape_str(shape) << " " << ref::layout_name(layout) << " dim " << dim;
        }
  Tensor with_nan = Tensor::from_vector<float>({1, NAN, 3}, {3});
  EXPECT_TRUE(std::isnan(max(with_nan, 0).item()));
}

TEST(Reduce, Gradients) {
  using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
  const std::vector<std::pair<const char*, Fn>> cases = {
      {"sum_all", [](const std::vector<Tensor>& x) { return sum(x[0]); }},
      {"sum_0_2", [](const std::vector<Tensor>& x) { return sum(x[0], {0, 2}); }},
      {"sum_keepdim", [](const std::vector<Tensor>& x) { return sum(x[0], {-1, 0}, true); }},
      {"mean_1", [](const std::vector<Tensor>& x) { return mean(x[0], {1}); }},
      {"mean_keepdim", [](const std::vector<Tensor>& x) { return mean(x[0], {1, 2}, true); }},
      {"max_1", [](const std::vector<Tensor>& x) { return max(x[0], 1); }},
      {"max_keepdim", [](const std::vector<Tensor>& x) { return max(x[0], -1, true); }},
      {"sum_of_view", [](const std::vector<Tensor>& x) { return sum(transpose(x[0], 0, 2), {1}); }},
      {"max_of_view", [](const std::vector<Tensor>& x) { return max(slice(x[0], 2, 0, 4, 2), 0); }},
  };
  uint64_t seed = 100;
  for (const auto& [name, f] : cases) EXPECT_TRUE(gradcheck(f, {rand_param({2, 3, 4}, ++seed)})) << name;
}

TEST(Reduce, MaxGradientGoesToFirstMaximum) {
  Tensor x = Tensor::from_vector<double>({1, 5, 5, 2}, {1, 4});
  x.requires_grad_();
  sum(max(x, 1)).backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 0, 0}));
}

}  // namespace
}  // namespace heed
