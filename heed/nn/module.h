// Module: a tree of named parameters and submodules, with train/eval mode. Parameter
// names are dotted paths from the tree (encoder.layers.0.self_attn.in_proj_weight),
// matching PyTorch's state_dict names where an equivalent exists.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "heed/tensor/tensor.h"

namespace heed::nn {

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter below this module, depth-first in registration order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  // Looks a parameter up by its dotted name; throws naming the name when absent.
  Tensor parameter(const std::string& name) const;
  int64_t parameter_count() const;

  void train(bool on = true);
  void eval() { train(false); }
  bool training() const { return training_; }
  void zero_grad() const;

 protected:
  // Registers a leaf tensor as a parameter (sets requires_grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    children_.emplace_back(name, module);
    return module;
  }

 private:
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

// Seeded initialisers (same seed, same values). fan_in/fan_out from a [out, in] weight.
Tensor xavier_uniform(const Shape& shape, uint64_t seed, double gain = 1.0);
Tensor kaiming_uniform_linear(const Shape& shape, uint64_t seed);  // PyTorch's nn.Linear default
Tensor uniform_bias(int64_t n, int64_t fan_in, uint64_t seed);     // U(-1/sqrt(fan_in), 1/sqrt(fan_in))

}  // namespace heed::nn
