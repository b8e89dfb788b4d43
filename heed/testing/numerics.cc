// Implementation of the shared numerics test helpers.
#include "heed/testing/numerics.h"

#include <cmath>
#include <memory>
#include <set>
#include <sstream>

#include "heed/autograd/graph.h"
#include "heed/ops/elementwise.h"
#include "heed/ops/reduce.h"
#include "heed/tensor/random.h"

namespace heed::testing {


::testing::AssertionResult all_close(const Tensor& actual, const Tensor& expected, Tol tol) {
  if (actual.shape() != expected.shape())
    return ::testing::AssertionFailure() << "shape " << shape_str(actual.shape()) << " vs expected "
                                         << shape_str(expected.shape());
  std::vector<double> a = actual.to_vector<double>(), e = expected.to_vector<double>();
  int64_t worst = -1;
  double worst_excess = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    double bound = tol.atol + tol.rtol * std::abs(e[i]);
    double diff = std::abs(a[i] - e[i]);
    bool bad = std::isnan(a[i]) != std::isnan(e[i]) || (!std::isnan(e[i]) && !(diff <= bound));
    if (std::isinf(e[i]) && a[i] == e[i]) bad = false;
    double excess = std::isnan(diff) ? 1e300 : diff - bound;
    if (bad && (worst < 0 || excess > worst_excess)) {
      worst = static_cast<int64_t>(i);
      worst_excess = excess;
    }
  }
  if (worst < 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "worst element " << position_str(actual.shape(), worst) << ": actual "
                                       << a[worst] << " expected " << e[worst] << " (|diff| "
                                       << std::abs(a[worst] - e[worst]) << ", atol " << tol.atol << ", rtol "
                                       << tol.rtol << ")";
}

::testing::AssertionResult bitwise_equal(const Tensor& x, const Tensor& y) {
  if (x.shape() != y.shape() || x.dtype() != y.dtype())
    return ::testing::AssertionFailure() << x.str() << " vs " << y.str();
  Tensor a = x.raw_contiguous(), b = y.raw_contiguous();
  const size_t bytes = a.numel() * dtype_size(a.dtype());
  const auto* pa = static_cast<const unsigned char*>(a.raw_data());
  const auto* pb = static_cast<const unsigned char*>(b.raw_data());
  for (size_t i = 0; i < bytes; ++i)
    if (pa[i] != pb[i]) {
      int64_t el = static_cast<int64_t>(i / dtype_size(a.dtype()));
      return ::testing::AssertionFailure() << "first differing element " << position_str(a.shape(), el) << ": "
                                           << a.to_vector<double>()[el] << " vs " << b.to_vector<double>()[el];
    }
  return ::testing::AssertionSuccess();
}

std::vector<float> uniform_floats(int64_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = 2.0f * random::uniform(seed, 0, static_cast<uint64_t>(i)) - 1.0f;
  return v;
}

Tensor rand_param(const Shape& shape, uint64_t seed, DType dtype) {
  Tensor t = Tensor::randn(shape, seed, dtype);
  t.requires_grad_();
  return t;
}

::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     std::vector<Tensor> inputs, double eps, double max_rel) {
  // Weighted sum so every output element carries a distinct weight.
  Tensor probe = f(inputs);
  Tensor w = Tensor::randn(probe.shape(), 1234, probe.dtype());
  auto loss = [&](const std::vector<Tensor>& xs) { return sum(mul(f(xs), w)); };
  for (Tensor& x : inputs)
    if (x.requires_grad()) x.zero_grad();
  Tensor l = loss(inputs);
  l.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    if (x.dtype() != DType::kF64)
      return ::testing::AssertionFailure() << "gradcheck: input " << k << " is " << x.str() << ", expected f64";
    Tensor analytic = x.grad();
    if (!analytic.defined()) analytic = Tensor::zeros(x.shape(), DType::kF64);
    std::vector<double> ga = analytic.to_vector<double>();
    std::vector<double> gn(ga.size());
    autograd::NoGradGuard no_grad;
    double* px = x.data<double>();
    Tensor xc = x.raw_contiguous();
    if (!xc.same(x)) return ::testing::AssertionFailure() << "gradcheck: inputs must be contiguous";
    for (size_t i = 0; i < gn.size(); ++i) {
      double orig = px[i];
      px[i] = orig + eps;
      double up = loss(inputs).item();
      px[i] = orig - eps;
      double down = loss(inputs).item();
      px[i] = orig;
      gn[i] = (up - down) / (2 * eps);
    }
    double num = 0, den = 0;
    size_t worst = 0;
    for (size_t i = 0; i < gn.size(); ++i) {
      num += (ga[i] - gn[i]) * (ga[i] - gn[i]);
      den += gn[i] * gn[i];
      if (std::abs(ga[i] - gn[i]) > std::abs(ga[worst] - gn[worst])) worst = i;
    }
    double rel = std::sqrt(num) / std::max(std::sqrt(den), 1e-12);
    if (!(rel <= max_rel))
      return ::testing::AssertionFailure() << "gradcheck: input " << k << " " << x.str() << " relative error "
                                           << rel << " > " << max_rel << "; worst element "
                                           << position_str(x.shape(), static_cast<int64_t>(worst)) << ": analytic "
                                           << ga[worst] << " numeric " << gn[worst];
  }
  return ::testing::AssertionSuccess();
}

bool graph_has(const Tensor& t, const std::string& name) {
  std::vector<std::shared_ptr<autograd::Node>> stack{autograd::gradient_edge(t)};
  std::set<const autograd::Node*> seen;
  while (!stack.empty()) {
    std::shared_ptr<autograd::Node> n = stack.back();
    stack.pop_back();
    if (n == nullptr || !seen.insert(n.get()).second) continue;
    if (name == n->name()) return true;
    for (const auto& next : n->next) stack.push_back(next);
  }
  return false;
}

}  // namespace heed::testing
