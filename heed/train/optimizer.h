// Optimisers: SGD (momentum, Nesterov), Adam and AdamW with PyTorch's exact update rules.
// Each updates parameter data in place (no gradient recording) from the parameters' .grad(),
// keeps its per-parameter state tensors, and can export/import that state for checkpoints.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "heed/tensor/tensor.h"

namespace heed::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Optimizer {
 public:
  // params: (name, parameter) pairs, e.g. Module::named_parameters(); names key the state.
  Optimizer(NamedTensors params, double lr);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // One update from each parameter's gradient; parameters without a gradient are skipped
  // (their state and step count do not move), as in PyTorch. Every gradient is multiplied
  // by grad_scale first, inside the update's own pass (clip_coefficient() folded in: the
  // same result, bit for bit, as scaling the gradients with clip_grad_norm and then step()).
  void step(double grad_scale = 1.0);
  // Drops every parameter's gradient.
  void zero_grad() const;

  double lr() const { return lr_; }
  void set_lr(double lr) { lr_ = lr; }

  // State for checkpoints: "<param name>.<buffer>" -> tensor, and "<param name>.step" as a
  // one-element i64 tensor. load_state() checks names and shapes and copies the values in.
  NamedTensors state() const;
  void load_state(const NamedTensors& state);

 protected:
  struct ParamState {
    std::string name;
    Tensor param;
    int64_t step = 0;
    NamedTensors buffers;  // created lazily on the first step, in a fixed order
    Tensor& buffer(const std::string& key);
  };
  // Updates one parameter given its contiguous gradient, to be multiplied by `scale` (in the
  // parameter's dtype) before use; state.step is already incremented.
  virtual void update(ParamState& state, const Tensor& grad, double scale) = 0;
  // The buffers this optimiser keeps per parameter (for load_state of a fresh optimiser).
  virtual std::vector<std::string> buffer_names() const = 0;

  std::vector<ParamState> states_;
  double lr_;
};

struct SgdOptions {
  double lr = 0.01;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;  // L2 penalty added to the gradient
  bool nesterov = false;
};

// torch.optim.SGD: g += wd p; buf = momentum buf + (1 - dampening) g (buf = g on the first
// step); g = nesterov ? g + momentum buf : buf; p -= lr g.
class Sgd final : public Optimizer {
 public:
  Sgd(NamedTensors params, const SgdOptions& options);

 private:
  void update(ParamState& state, const Tensor& grad, double scale) override;
  std::vector<std::string> buffer_names() const override;
  SgdOptions options_;
};

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // Adam: L2 added to the gradient; AdamW: decoupled decay
  bool decoupled_weight_decay = false;  // true = AdamW
};

// torch.optim.Adam / AdamW (amsgrad off):
//   AdamW: p *= 1 - lr wd.   Adam: g += wd p.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
class Adam final : public Optimizer {
 public:
  Adam(NamedTensors params, const AdamOptions& options);

 private:
  void update(ParamState& state, const Tensor& grad, double scale) override;
  std::vector<std::string> buffer_names() const override;
  AdamOptions options_;
};

// AdamW is Adam with decoupled weight decay (PyTorch's default wd for AdamW is 0.01).
inline AdamOptions adamw_options(double lr, double weight_decay = 0.01) {
  return AdamOptions{.lr = lr, .weight_decay = weight_decay, .decoupled_weight_decay = true};
}

}  // namespace heed::train
