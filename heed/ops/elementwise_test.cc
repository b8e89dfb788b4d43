// Elementwise ops against the double reference on awkward sizes and non-contiguous
// layouts (f32 and f64), and finite-difference gradients including broadcasting.
#include "heed/ops/elementwise.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "heed/heed.h"
#include "heed/kernels/ref/ops_ref.h"
#include "heed/testing/numerics.h"

namespace heed {
namespace {

using ref::Layout;
using testing::all_close;
using testing::gradcheck;
using testing::kElementwise;

const Shape kShapes[] = {{1}, {7}, {257}, {33, 17}, {2, 7, 33}};

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo = 0, hi = 0;  // input range (normal values when lo == hi)
};

std::vector<UnaryCase> unary_cases() {
  return {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double v) { return -v; }},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double v) { return std::exp(v); }, -6, 6},
      {"log", [](const Tensor& x) { return log(x); }, [](double v) { return std::log(v); }, 0.05, 20},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }, 0.01, 20},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, -4, 4},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, ref::sigmoid, -30, 30},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double v) { return v > 0 ? v : 0.0; }},
      {"gelu", [](const Tensor& x) { return gelu(x); }, ref::gelu, -6, 6},
      {"pow3", [](const Tensor& x) { return pow(x, 3.0); }, [](double v) { return v * v * v; }},
      {"pow-1.5", [](const Tensor& x) { return pow(x, -1.5); }, [](double v) { return std::pow(v, -1.5); }, 0.5, 4},
      {"add_scalar", [](const Tensor& x) { return x + 2.5; }, [](double v) { return v + 2.5; }},
      {"sub_scalar", [](const Tensor& x) { return x - 0.75; }, [](double v) { return v - 0.75; }},
      {"mul_scalar", [](const Tensor& x) { return -1.5 * x; }, [](double v) { return -1.5 * v; }},
      {"div_scalar", [](const Tensor& x) { return x / 4.0; }, [](double v) { return v / 4.0; }},
  };
}

TEST(Elementwise, UnaryMatchesReference) {
  uint64_t seed = 1;
  for (const UnaryCase& c : unary_cases())
    for (const Shape& shape : kShapes)
      for (Layout layout : ref::kAllLayouts)
        for (DType dtype : {DType::kF32, DType::kF64}) {
          Tensor x = ref::make_input(shape, layout, ++seed, dtype, c.lo, c.hi);
          Tensor y = c.op(x);
          EXPECT_EQ(y.dtype(), dtype);
          EXPECT_TRUE(all_close(y, ref::unary(x, c.ref), kElementwise))
              << c.name << " " << x.str() << " " << ref::layout_name(layout);
        }
}

struct BinaryCase {
  const char* name;
  std::function<Tensor(const Tensor&, const Tensor&)> op;
  std::function<double(double, double)> ref;
};

TEST(Elementwise, BinaryBroadcastMatchesReference) {
  const std::vector<BinaryCase> cases = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double u, double v) { return u + v; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double u, double v) { return u - v; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double u, double v) { return u * v; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double u, double v) { return u / v; }},
  };
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{7}, {7}}, {{33, 17}, {17}}, {{33, 1}, {1, 257}}, {{1}, {257}}, {{2, 7, 33}, {7, 1}}, {{257}, {}},
      {{3, 1, 17}, {3, 7, 17}}};
  uint64_t seed = 100;
  for (const BinaryCase& c : cases)
    for (const auto& [sa, sb] : shapes)
      for (Layout la : ref::kAllLayouts)
        for (Layout lb : {Layout::kContiguous, Layout::kTransposed, Layout::kExpanded}) {
          Tensor a = ref::make_input(sa, la, ++seed);
          Tensor b = ref::make_input(sb, lb, ++seed, DType::kF32, 0.5, 2.0);  // away from 0 for div
          EXPECT_TRUE(all_close(c.op(a, b), ref::binary(a, b, c.ref), kElementwise))
              << c.name << " " << a.str() << " (" << ref::layout_name(la) << ") , " << b.str() << " ("
              << ref::layout_name(lb) << ")";
        }
  // f64 operands
  Tensor a = ref::make_input({33, 17}, Layout::kTransposed, 7, DType::kF64);
  Tensor b = ref::make_input({17}, Layout::kStrided, 8, DType::kF64, 0.5, 2.0);
  EXPECT_TRUE(all_close(a / b, ref::binary(a, b, [](double u, double v) { return u / v; }), {1e-15, 1e-15}));
}

Tensor random_mask(const Shape& shape, uint64_t seed) {
  Tensor u = Tensor::uniform(shape, 0, 1, seed);
  std::vector<uint8_t> m;
  for (float v : u.to_vector<float>()) m.push_back(v < 0.4f);
  return Tensor::from_vector(m, shape);
}

TEST(Elementwise, WhereAndMaskedFillMatchReference) {
  Tensor cond = random_mask({7, 1}, 1);
  Tensor a = ref::make_input({7, 33}, Layout::kTransposed, 2);
  Tensor b = ref::make_input({33}, Layout::kStrided, 3);
  EXPECT_TRUE(all_close(where(cond, a, b), ref::where(cond, a, b), kElementwise));
  Tensor cond_t = random_mask({33, 7}, 4).raw_transpose(0, 1);  // non-contiguous condition
  EXPECT_TRUE(all_close(where(cond_t, a, b), ref::where(cond_t, a, b), kElementwise));
  Tensor x = ref::make_input({2, 7, 257}, Layout::kStrided, 5);
  Tensor mask = random_mask({1, 257}, 6);
  EXPECT_TRUE(all_close(masked_fill(x, mask, -1e9), ref::masked_fill(x, mask, -1e9), kElementwise));
  Tensor inf_fill = masked_fill(x, mask, -INFINITY);
  EXPECT_TRUE(all_close(inf_fill, ref::masked_fill(x, mask, -INFINITY), kElementwise));
}

// Normal values pushed at least `margin` away from 0 (for relu's kink and division).
Tensor away_from_zero(const Shape& shape, uint64_t seed, double margin = 0.2) {
  std::vector<double> v = Tensor::randn(shape, seed, DType::kF64).to_vector<double>();
  for (double& e : v) e += e >= 0 ? margin : -margin;
  Tensor t = Tensor::from_vector(v, shape);
  t.requires_grad_();
  return t;
}

Tensor positive(const Shape& shape, uint64_t seed) {
  Tensor t = Tensor::uniform(shape, 0.5, 2.0, seed, DType::kF64);
  t.requires_grad_();
  return t;
}

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

TEST(Elementwise, BinaryGradientsWithBroadcasting) {
  using testing::rand_param;
  const std::vector<std::pair<const char*, Fn>> ops = {
      {"add", [](const std::vector<Tensor>& x) { return x[0] + x[1]; }},
      {"sub", [](const std::vector<Tensor>& x) { return x[0] - x[1]; }},
      {"mul", [](const std::vector<Tensor>& x) { return x[0] * x[1]; }},
      {"div", [](const std::vector<Tensor>& x) { return x[0] / x[1]; }},
  };
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 3}, {4, 1}}, {{}, {2, 3}}, {{5}, {1}}};
  uint64_t seed = 10;
  for (const auto& [name, f] : ops)
    for (const auto& [sa, sb] : shapes)
      EXPECT_TRUE(gradcheck(f, {rand_param(sa, ++seed), positive(sb, ++seed)}))
          << name << " " << shape_str(sa) << " " << shape_str(sb);
  // A non-contiguous operand: a transposed view broadcast against a column.
  EXPECT_TRUE(gradcheck([](const std::vector<Tensor>& x) { return transpose(x[0], 0, 1) * x[1]; },
                        {rand_param({4, 3}, 1), rand_param({3, 1}, 2)}));
}

TEST(Elementwise, UnaryGradients) {
  using testing::rand_param;
  const std::vector<std::tuple<const char*, std::function<Tensor(const Tensor&)>, Tensor>> cases = {
      {"neg", [](const Tensor& x) { return neg(x); }, rand_param({2, 3}, 1)},
      {"exp", [](const Tensor& x) { return exp(x); }, rand_param({2, 3}, 2)},
      {"log", [](const Tensor& x) { return log(x); }, positive({2, 3}, 3)},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, positive({2, 3}, 4)},
      {"tanh", [](const Tensor& x) { return tanh(x); }, rand_param({2, 3}, 5)},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, rand_param({2, 3}, 6)},
      {"relu", [](const Tensor& x) { return relu(x); }, away_from_zero({3, 4}, 7)},
      {"gelu", [](const Tensor& x) { return gelu(x); }, away_from_zero({3, 4}, 8)},
      {"pow", [](const Tensor& x) { return pow(x, 2.5); }, positive({2, 3}, 9)},
      {"pow_neg", [](const Tensor& x) { return pow(x, -1.5); }, positive({2, 3}, 10)},
      {"add_scalar", [](const Tensor& x) { return x + 3.0; }, rand_param({2, 3}, 11)},
      {"mul_scalar", [](const Tensor& x) { return x * -2.0; }, rand_param({2, 3}, 12)},
      {"sub_view", [](const Tensor& x) { return exp(slice(x, 1, 0, 4, 2)) - 1.0; }, rand_param({2, 4}, 13)},
  };
  for (const auto& [name, op, x] : cases)
    EXPECT_TRUE(gradcheck([op](const std::vector<Tensor>& xs) { return op(xs[0]); }, {x})) << name;
}

TEST(Elementwise, WhereAndMaskedFillGradients) {
  using testing::rand_param;
  Tensor cond = random_mask({3, 1}, 1);
  EXPECT_TRUE(gradcheck([cond](const std::vector<Tensor>& x) { return where(cond, x[0], x[1]); },
                        {rand_param({3, 4}, 2), rand_param({4}, 3)}));
  Tensor mask = random_mask({1, 5}, 4);
  EXPECT_TRUE(gradcheck([mask](const std::vector<Tensor>& x) { return masked_fill(x[0], mask, -3.0); },
                        {rand_param({3, 5}, 5)}));
  // Filled positions get exactly zero gradient.
  Tensor x = rand_param({3, 5}, 6);
  sum(masked_fill(x, mask, 0.0) * 2.0).backward();
  std::vector<double> g = x.grad().to_vector<double>();
  std::vector<uint8_t> m = mask.to_vector<uint8_t>();
  for (int64_t i = 0; i < 15; ++i) EXPECT_EQ(g[i], m[i % 5] ? 0.0 : 2.0) << i;
}

TEST(Elementwise, SigmoidIsStableForLargeInputs) {
  Tensor x = Tensor::from_vector<float>({-1000, -100, 0, 100, 1000}, {5});
  std::vector<float> y = sigmoid(x).to_vector<float>();
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[2], 0.5f);
  EXPECT_EQ(y[4], 1.0f);
  for (float v : y) EXPECT_FALSE(std::isnan(v));
}

}  // namespace
}  // namespace heed
