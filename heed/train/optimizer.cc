// SGD, Adam and AdamW: per-parameter loops over contiguous data, in the parameter's dtype.
#include "heed/train/optimizer.h"

#include <cmath>
#include <set>

#include "heed/autograd/graph.h"

namespace heed::train {

namespace {

// Element count above which an update loop is split across OpenMP threads.
constexpr int64_t kParallelGrain = 1 << 14;

void check_param(const std::string& name, const Tensor& p) {
  HEED_CHECK(p.defined() && (p.dtype() == DType::kF32 || p.dtype() == DType::kF64),
             "optimizer: parameter '", name, "' must be a f32 or f64 tensor, got ", p.str());
  HEED_CHECK(p.is_contiguous(), "optimizer: parameter '", name, "' must be contiguous, got strides ",
             shape_str(p.strides()));
}

}  // namespace

Tensor& Optimizer::ParamState::buffer(const std::string& key) {
  for (auto& [k, t] : buffers)
    if (k == key) return t;
  buffers.emplace_back(key, Tensor::zeros(param.shape(), param.dtype()));
  return buffers.back().second;
}

Optimizer::Optimizer(NamedTensors params, double lr) : lr_(lr) {
  HEED_CHECK(lr >= 0, "optimizer: learning rate must be >= 0, got ", lr);
  std::set<std::string> names;
  for (auto& [name, p] : params) {
    check_param(name, p);
    HEED_CHECK(names.insert(name).second, "optimizer: parameter name '", name, "' given twice");
    states_.push_back(ParamState{.name = name, .param = p, .step = 0, .buffers = {}});
  }
}

void Optimizer::step(double grad_scale) {
  HEED_CHECK(std::isfinite(grad_scale) && grad_scale >= 0, "optimizer: step(grad_scale) needs a finite scale >= 0, got ",
             grad_scale);
  autograd::NoGradGuard no_grad;
  for (ParamState& s : states_) {
    Tensor g = s.param.grad();
    if (!g.defined()) continue;
    HEED_CHECK(g.shape() == s.param.shape(), "optimizer: gradient ", g.str(), " of '", s.name,
               "' does not match the parameter ", s.param.str());
    ++s.step;
    update(s, g.to(s.param.dtype()).raw_contiguous(), grad_scale);
  }
}

void Optimizer::zero_grad() const {
  for (const ParamState& s : states_) s.param.zero_grad();
}

NamedTensors Optimizer::state() const {
  NamedTensors out;
  for (const ParamState& s : states_) {
    out.emplace_back(s.name + ".step", Tensor::full({}, static_cast<double>(s.step), DType::kI64));
    for (const auto& [k, t] : s.buffers) out.emplace_back(s.name + "." + k, t);
  }
  return out;
}

void Optimizer::load_state(const NamedTensors& state) {
  std::set<std::string> used;
  auto find = [&](const std::string& key) -> const Tensor* {
    for (const auto& [k, t] : state)
      if (k == key) {
        used.insert(k);
        return &t;
      }
    return nullptr;
  };
  for (ParamState& s : states_) {
    const Tensor* step = find(s.name + ".step");
    HEED_CHECK(step != nullptr, "optimizer: state has no entry '", s.name, ".step'");
    HEED_CHECK(step->numel() == 1, "optimizer: '", s.name, ".step' must hold one value, got ", step->str());
    s.step = static_cast<int64_t>(step->item());
    s.buffers.clear();
    for (const std::string& key : buffer_names()) {
      const Tensor* t = find(s.name + "." + key);
      if (t == nullptr) {
        HEED_CHECK(s.step == 0, "optimizer: state has no entry '", s.name, ".", key, "' after ", s.step,
                   " steps");
        continue;
      }
      HEED_CHECK(t->shape() == s.param.shape(), "optimizer: state '", s.name, ".", key, "' is ", t->str(),
                 ", expected shape ", shape_str(s.param.shape()));
      s.buffer(key).copy_from(*t);
    }
  }
  for (const auto& [k, t] : state)
    HEED_CHECK(used.count(k), "optimizer: state entry '", k, "' matches no parameter of this optimizer");
}

// ---------------------------------------------------------------- SGD

Sgd::Sgd(NamedTensors params, const SgdOptions& o) : Optimizer(std::move(params), o.lr), options_(o) {
  HEED_CHECK(o.momentum >= 0, "sgd: momentum must be >= 0, got ", o.momentum);
  HEED_CHECK(o.weight_decay >= 0, "sgd: weight_decay must be >= 0, got ", o.weight_decay);
  HEED_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0),
             "sgd: nesterov needs momentum > 0 and dampening 0, got momentum ", o.momentum, " dampening ",
             o.dampening);
}

std::vector<std::string> Sgd::buffer_names() const {
  if (options_.momentum == 0) return {};
  return {"momentum_buffer"};
}

void Sgd::update(ParamState& s, const Tensor& grad, double scale) {
  const SgdOptions& o = options_;
  const bool first = s.buffers.empty();  // PyTorch: buf = g on the first update
  Tensor buf = o.momentum != 0 ? s.buffer("momentum_buffer") : Tensor();
  dispatch_float(s.param.dtype(), "sgd", [&](auto tag) {
    using T = decltype(tag);
    T* p = s.param.data<T>();
    const T* g = grad.data<T>();
    T* b = buf.defined() ? buf.data<T>() : nullptr;
    const T lr = static_cast<T>(lr_), wd = static_cast<T>(o.weight_decay), mom = static_cast<T>(o.momentum);
    const T damp = static_cast<T>(1 - o.dampening), gs = static_cast<T>(scale);
    const bool scaled = scale != 1.0;
    const int64_t n = s.param.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const T gi = scaled ? g[i] * gs : g[i];
      T d = gi + wd * p[i];
      if (b != nullptr) {
        b[i] = first ? d : mom * b[i] + damp * d;
        d = o.nesterov ? d + mom * b[i] : b[i];
      }
      p[i] -= lr * d;
    }
  });
}

// ---------------------------------------------------------------- Adam / AdamW

Adam::Adam(NamedTensors params, const AdamOptions& o) : Optimizer(std::move(params), o.lr), options_(o) {
  HEED_CHECK(o.beta1 >= 0 && o.beta1 < 1, "adam: beta1 must be in [0, 1), got ", o.beta1);
  HEED_CHECK(o.beta2 >= 0 && o.beta2 < 1, "adam: beta2 must be in [0, 1), got ", o.beta2);
  HEED_CHECK(o.eps >= 0, "adam: eps must be >= 0, got ", o.eps);
  HEED_CHECK(o.weight_decay >= 0, "adam: weight_decay must be >= 0, got ", o.weight_decay);
}

std::vector<std::string> Adam::buffer_names() const { return {"exp_avg", "exp_avg_sq"}; }

void Adam::update(ParamState& s, const Tensor& grad, double scale) {
  const AdamOptions& o = options_;
  Tensor m = s.buffer("exp_avg"), v = s.buffer("exp_avg_sq");
  const double t = static_cast<double>(s.step);
  const double bias1 = 1 - std::pow(o.beta1, t), bias2_sqrt = std::sqrt(1 - std::pow(o.beta2, t));
  dispatch_float(s.param.dtype(), "adam", [&](auto tag) {
    using T = decltype(tag);
    T* p = s.param.data<T>();
    const T* g = grad.data<T>();
    T* pm = m.data<T>();
    T* pv = v.data<T>();
    const T b1 = static_cast<T>(o.beta1), b2 = static_cast<T>(o.beta2), eps = static_cast<T>(o.eps);
    const T step_size = static_cast<T>(lr_ / bias1), inv_bias2_sqrt = static_cast<T>(1 / bias2_sqrt);
    const T decay = static_cast<T>(o.decoupled_weight_decay ? 1 - lr_ * o.weight_decay : 1);
    const T l2 = static_cast<T>(o.decoupled_weight_decay ? 0 : o.weight_decay);
    const T gs = static_cast<T>(scale);
    const bool scaled = scale != 1.0;
    const int64_t n = s.param.numel();
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
    for (int64_t i = 0; i < n; ++i) {
      const T gi = (scaled ? g[i] * gs : g[i]) + l2 * p[i];
      pm[i] = b1 * pm[i] + (1 - b1) * gi;
      pv[i] = b2 * pv[i] + (1 - b2) * gi * gi;
      const T denom = std::sqrt(pv[i]) * inv_bias2_sqrt + eps;
      p[i] = decay * p[i] - step_size * pm[i] / denom;
    }
  });
}

}  // namespace heed::train
