// Shape ops (views, concat/split, index_select, sum_to) against the double reference on
// awkward sizes and non-contiguous inputs, and their gradients by finite differences.
#include "heed/ops/shape.h"

#include <gtest/gtest.h>

#include "heed/heed.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using ref::Layout;
using testing::all_close;
using testing::gradcheck;
using testing::rand_param;

// Data movement is exact: compare bitwise-close (values are copied, never computed).
constexpr testing::Tol kExact{0, 0};

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

TEST(Shape, ViewsMatchReference) {
  uint64_t seed = 1;
  for (Layout layout : ref::kAllLayouts)
    for (DType dtype : {DType::kF32, DType::kF64}) {
      Tensor x = ref::make_input({3, 7, 33}, layout, ++seed, dtype);  // [3, 7, 33]
      const char* ln = ref::layout_name(layout);
      EXPECT_TRUE(all_close(permute(x, {2, 0, 1}), ref::permute(x, {2, 0, 1}), kExact)) << ln;
      EXPECT_TRUE(all_close(permute(x, {-1, 1, 0}), ref::permute(x, {2, 1, 0}), kExact)) << ln;
      EXPECT_TRUE(all_close(transpose(x, 0, -1), ref::permute(x, {2, 1, 0}), kExact)) << ln;
      EXPECT_TRUE(all_close(slice(x, 2, 1, 30, 3), ref::slice(x, 2, 1, 30, 3), kExact)) << ln;
      EXPECT_TRUE(all_close(slice(x, 1, -5, -1), ref::slice(x, 1, -5, -1, 1), kExact)) << ln;
      EXPECT_TRUE(all_close(slice(x, 0, 1, 100, 2), ref::slice(x, 0, 1, 100, 2), kExact)) << ln;
      // reshape of a non-contiguous view copies; of a contiguous one it is a view.
      Tensor r = reshape(x, {21, -1});  // [3, 7, 33] -> [21, 33]
      EXPECT_EQ(r.shape(), (Shape{21, 33}));
      EXPECT_EQ(ref::values(r), ref::values(x)) << ln;
      EXPECT_EQ(ref::values(reshape(x, {33, 21})), ref::values(x)) << ln;
      Tensor u = unsqueeze(x, 1);  // [3, 1, 7, 33]
      EXPECT_EQ(u.shape(), (Shape{3, 1, 7, 33}));
      EXPECT_EQ(ref::values(u), ref::values(x));
      EXPECT_EQ(squeeze(u, 1).shape(), x.shape());
      EXPECT_EQ(ref::values(unsqueeze(x, -1)), ref::values(x));
      Tensor c = contiguous(x);
      EXPECT_TRUE(c.is_contiguous());
      EXPECT_EQ(ref::values(c), ref::values(x)) << ln;
    }
}

TEST(Shape, ExpandMatchesReference) {
  Tensor col = ref::make_input({7, 1}, Layout::kStrided, 1);
  EXPECT_TRUE(all_close(expand(col, {2, 7, 257}), ref::expand(col, {2, 7, 257}), kExact));
  Tensor row = ref::make_input({1, 33}, Layout::kTransposed, 2);
  EXPECT_TRUE(all_close(expand(row, {17, 33}), ref::expand(row, {17, 33}), kExact));
  Tensor already = ref::make_input({4, 33}, Layout::kExpanded, 3);  // a view of a view
  EXPECT_TRUE(all_close(expand(unsqueeze(already, 0), {2, 4, 33}), ref::expand(already, {2, 4, 33}), kExact));
}

TEST(Shape, ConcatSplitIndexSelectMatchReference) {
  uint64_t seed = 10;
  for (Layout layout : ref::kAllLayouts) {
    Tensor a = ref::make_input({7, 33}, layout, ++seed), b = ref::make_input({7, 1}, layout, ++seed);
    Tensor c = ref::make_input({7, 17}, Layout::kContiguous, ++seed);
    EXPECT_TRUE(all_close(concat({a, b, c}, 1), ref::concat({a, b, c}, 1), kExact)) << ref::layout_name(layout);
    Tensor d = ref::make_input({1, 33}, layout, ++seed);
    EXPECT_TRUE(all_close(concat({a, d}, 0), ref::concat({a, d}, 0), kExact)) << ref::layout_name(layout);
    std::vector<Tensor> parts = split(a, {5, 0, 28}, -1);
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_TRUE(all_close(parts[0], ref::slice(a, 1, 0, 5, 1), kExact));
    EXPECT_EQ(parts[1].shape(), (Shape{7, 0}));
    EXPECT_TRUE(all_close(parts[2], ref::slice(a, 1, 5, 33, 1), kExact));
    const std::vector<int64_t> idx = {6, 0, 3, 3, 1};
    Tensor it = Tensor::from_vector(idx, {5});
    EXPECT_TRUE(all_close(index_select(a, 0, it), ref::index_select(a, 0, idx), kExact));
    const std::vector<int64_t> idx1 = {32, 0, 16};
    EXPECT_TRUE(all_close(index_select(a, -1, Tensor::from_vector(idx1, {3})), ref::index_select(a, 1, idx1),
                          kExact));
  }
}

TEST(Shape, SumToMatchesReference) {
  Tensor g = ref::make_input({2, 7, 33}, Layout::kTransposed, 1);
  for (const Shape& target : {Shape{7, 33}, Shape{7, 1}, Shape{1, 33}, Shape{33}, Shape{}, Shape{2, 1, 1}})
    EXPECT_TRUE(all_close(sum_to(g, target), ref::sum_to(g, target), testing::kReduction)) << shape_str(target);
}

TEST(Shape, Gradients) {
  const std::vector<std::tuple<const char*, Fn, std::vector<Tensor>>> cases = {
      {"reshape", [](const std::vector<Tensor>& x) { return reshape(x[0], {3, -1}); }, {rand_param({2, 3, 2}, 1)}},
      {"reshape_of_view", [](const std::vector<Tensor>& x) { return reshape(transpose(x[0], 0, 1), {-1}); },
       {rand_param({2, 3}, 2)}},
      {"permute", [](const std::vector<Tensor>& x) { return permute(x[0], {2, 0, 1}); }, {rand_param({2, 3, 4}, 3)}},
      {"transpose", [](const std::vector<Tensor>& x) { return transpose(x[0], -1, 0); }, {rand_param({2, 3, 4}, 4)}},
      {"slice_step", [](const std::vector<Tensor>& x) { return slice(x[0], 1, 1, 7, 2); }, {rand_param({3, 7}, 5)}},
      {"slice_negative", [](const std::vector<Tensor>& x) { return slice(x[0], 0, -2, 3); }, {rand_param({3, 2}, 6)}},
      {"expand", [](const std::vector<Tensor>& x) { return expand(x[0], {2, 3, 4}); }, {rand_param({3, 1}, 7)}},
      {"unsqueeze_squeeze", [](const std::vector<Tensor>& x) { return squeeze(unsqueeze(x[0], 1), 0); },
       {rand_param({1, 4}, 8)}},
      {"contiguous", [](const std::vector<Tensor>& x) { return contiguous(transpose(x[0], 0, 1)); },
       {rand_param({3, 2}, 9)}},
      {"concat", [](const std::vector<Tensor>& x) { return concat({x[0], transpose(x[1], 0, 1), x[0]}, 1); },
       {rand_param({2, 3}, 10), rand_param({2, 2}, 11)}},
      {"split",
       [](const std::vector<Tensor>& x) {
         std::vector<Tensor> p = split(x[0], {1, 3, 1}, 1);
         return p[0] * p[2] + sum(p[1], {1}, true);
       },
       {rand_param({2, 5}, 12)}},
      {"index_select_repeated",
       [](const std::vector<Tensor>& x) {
         return index_select(x[0], 1, Tensor::from_vector<int64_t>({2, 0, 2, 2}, {4}));
       },
       {rand_param({2, 3}, 13)}},
      {"sum_to", [](const std::vector<Tensor>& x) { return sum_to(x[0], {3, 1}); }, {rand_param({2, 3, 4}, 14)}},
  };
  for (const auto& [name, f, inputs] : cases) EXPECT_TRUE(gradcheck(f, inputs)) << name;
}

TEST(Shape, ViewsShareStorageAndCopiesDoNot) {
  Tensor x = Tensor::randn({4, 6}, 1);
  EXPECT_EQ(transpose(x, 0, 1).storage(), x.storage());
  EXPECT_EQ(slice(x, 1, 0, 6, 2).storage(), x.storage());
  EXPECT_EQ(expand(unsqueeze(x, 0), {3, 4, 6}).storage(), x.storage());
  EXPECT_NE(concat({x, x}, 0).storage(), x.storage());
}

}  // namespace
}  // namespace heed
