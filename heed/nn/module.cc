// Module tree bookkeeping and the seeded initialisers.
#include "heed/nn/module.h"

#include <cmath>

namespace heed::nn {

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  HEED_CHECK(name.find('.') == std::string::npos, "register_parameter: name '", name, "' may not contain '.'");
  for (const auto& [n, t] : params_) HEED_CHECK(n != name, "register_parameter: '", name, "' registered twice");
  value.requires_grad_();
  params_.emplace_back(name, value);
  return value;
}

void Module::collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [n, t] : params_) out.emplace_back(prefix + n, t);
  for (const auto& [n, m] : children_)
    if (m) m->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  collect("", out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

Tensor Module::parameter(const std::string& name) const {
  for (auto& [n, t] : named_parameters())
    if (n == name) return t;
  fail("module: no parameter named '", name, "'");
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, m] : children_)
    if (m) m->train(on);
}

void Module::zero_grad() const {
  for (auto& [n, t] : named_parameters()) t.zero_grad();
}

Tensor xavier_uniform(const Shape& shape, uint64_t seed, double gain) {
  HEED_CHECK(shape.size() == 2, "xavier_uniform: expected a [out, in] shape, got ", shape_str(shape));
  double bound = gain * std::sqrt(6.0 / static_cast<double>(shape[0] + shape[1]));
  return Tensor::uniform(shape, -bound, bound, seed);
}

Tensor kaiming_uniform_linear(const Shape& shape, uint64_t seed) {
  HEED_CHECK(shape.size() == 2, "kaiming_uniform: expected a [out, in] shape, got ", shape_str(shape));
  double bound = 1.0 / std::sqrt(static_cast<double>(shape[1]));
  return Tensor::uniform(shape, -bound, bound, seed);
}

Tensor uniform_bias(int64_t n, int64_t fan_in, uint64_t seed) {
  double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  return Tensor::uniform({n}, -bound, bound, seed);
}

}  // namespace heed::nn
