// The reverse pass: orders the recorded nodes topologically, runs each node's backward
// rule once with the summed gradient of its output, and accumulates into leaves.
#include <unordered_map>
#include <unordered_set>

#include "heed/autograd/graph.h"
#include "heed/kernels/cpu/elementwise.h"
#include "heed/tensor/strided.h"

namespace heed::autograd {

namespace {

thread_local bool t_grad_enabled = true;

// a + b for same-shaped floating tensors, as a fresh contiguous tensor.
Tensor add_same_shape(const Tensor& a, const Tensor& b) {
  HEED_CHECK(a.shape() == b.shape(), "backward: gradient of shape ", shape_str(b.shape()),
             " cannot accumulate into ", shape_str(a.shape()));
  if (a.dtype() == b.dtype() && a.is_contiguous() && b.is_contiguous()) {  // the usual case: one pass
    Tensor out = Tensor::empty(a.shape(), a.dtype());
    dispatch_float(out.dtype(), "backward", [&](auto tag) {
      using T = decltype(tag);
      const T *pa = a.data<T>(), *pb = b.data<T>();
      T* o = out.data<T>();
      const int64_t n = out.numel();
#pragma omp parallel for schedule(static) if (n > kernels::cpu::kParallelGrain)
      for (int64_t i = 0; i < n; ++i) o[i] = pa[i] + pb[i];
    });
    return out;
  }
  Tensor out = a.clone_data();
  dispatch_float(out.dtype(), "backward", [&](auto tag) {
    using T = decltype(tag);
    Tensor bb = b.to(out.dtype());
    T* o = out.data<T>();
    const T* p = bb.data<T>();
    for_each_strided2(out.shape(), out.strides(), bb.strides(),
                      [&](int64_t io, int64_t ib) { o[io] += p[ib]; });
  });
  return out;
}

// True when `t` is the only handle to its impl and the only view of its storage, and is
// exactly its storage: a gradient the engine alone holds (backward() moves
// each gradient out of its table before applying a node), which a leaf may then keep as
// its .grad. A gradient passed to several inputs (add's backward), a user's grad_root or a
// slice of a larger gradient is shared and is copied instead, so in-place updates of one
// .grad (clipping) never reach another.
bool owns_its_memory(const Tensor& t) {
  return t.impl_ptr().use_count() == 1 && t.storage().use_count() == 1 && t.is_contiguous() && t.offset() == 0 &&
         t.storage()->bytes() == static_cast<size_t>(t.numel()) * dtype_size(t.dtype());  // not a slice of a larger one
}

// Adds gradients into a leaf's .grad.
struct AccumulateGrad final : Node {
  std::weak_ptr<TensorImpl> leaf;
  const char* name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(const Tensor& grad) override {
    auto impl = leaf.lock();
    if (!impl) return {};
    Meta& meta = *impl->autograd;
    HEED_CHECK(grad.shape() == impl->shape, "backward: gradient of shape ", shape_str(grad.shape()),
               " for a leaf of shape ", shape_str(impl->shape));
    if (meta.grad.defined())
      meta.grad = add_same_shape(meta.grad, grad.dtype() == impl->dtype ? grad : grad.to(impl->dtype));
    else if (grad.dtype() != impl->dtype)
      meta.grad = grad.to(impl->dtype);  // a fresh tensor
    else if (owns_its_memory(grad))
      meta.grad = grad;  // nothing else can see this buffer: keep it rather than copy it
    else
      meta.grad = grad.clone_data();
    return {};
  }
};

}  // namespace

bool grad_enabled() { return t_grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(t_grad_enabled) { t_grad_enabled = false; }
NoGradGuard::~NoGradGuard() { t_grad_enabled = previous_; }

bool requires_grad(const Tensor& t) {
  const auto& meta = t.autograd_meta();
  return meta && meta->requires_grad;
}

std::shared_ptr<Node> gradient_edge(const Tensor& t) {
  const auto& meta = t.autograd_meta();
  if (!meta || !meta->requires_grad) return nullptr;
  if (meta->grad_fn) return meta->grad_fn;
  if (!meta->accumulator) {
    auto acc = std::make_shared<AccumulateGrad>();
    acc->leaf = t.impl_ptr();
    acc->out_shape = t.shape();
    acc->out_dtype = t.dtype();
    meta->accumulator = std::move(acc);
  }
  return meta->accumulator;
}

void backward(const Tensor& root, const Tensor& grad_root, BackwardOptions options) {
  HEED_CHECK(requires_grad(root), "backward: the tensor ", root.str(),
             " does not require grad (no parameter or input with requires_grad reached it)");
  Tensor seed = grad_root;
  if (!seed.defined()) {
    HEED_CHECK(root.numel() == 1, "backward: implicit gradient only for a one-element tensor, got ",
               root.str(), " (pass grad_root)");
    seed = Tensor::ones(root.shape(), root.dtype());
  }
  HEED_CHECK(seed.shape() == root.shape(), "backward: grad_root ", seed.str(), " does not match ", root.str());
  std::shared_ptr<Node> start = gradient_edge(root);

  // Count, for every node reachable from the root, how many edges lead into it.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack{start.get()};
  std::unordered_set<Node*> seen{start.get()};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const auto& next : n->next) {
      if (!next) continue;
      ++pending[next.get()];
      if (seen.insert(next.get()).second) stack.push_back(next.get());
    }
  }

  std::unordered_map<Node*, Tensor> grads{{start.get(), seed}};
  std::vector<Node*> ready{start.get()};
  NoGradGuard no_grad;
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    auto it = grads.find(n);
    std::vector<Tensor> input_grads;
    if (it != grads.end()) {  // a node no gradient reached is passed over
      Tensor g = std::move(it->second);
      grads.erase(it);
      HEED_CHECK(!n->released, "backward: the graph through ", n->name(),
                 " was freed by an earlier backward(); pass BackwardOptions{.retain_graph = true} "
                 "to the first call to run backward twice");
      input_grads = n->apply(g);
      if (!options.retain_graph && !dynamic_cast<AccumulateGrad*>(n)) {
        n->release();
        n->released = true;
      }
    }
    for (size_t i = 0; i < n->next.size(); ++i) {
      Node* next = n->next[i].get();
      if (!next) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        Tensor& slot = grads[next];
        slot = slot.defined() ? add_same_shape(slot, input_grads[i]) : input_grads[i];
      }
      if (--pending[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace heed::autograd

namespace heed {

bool Tensor::requires_grad() const { return autograd::requires_grad(*this); }

Tensor& Tensor::requires_grad_(bool value) {
  const auto& meta = autograd_meta();
  HEED_CHECK(!(meta && meta->grad_fn), "requires_grad_: only leaf tensors can be marked, ", str(),
             " is the result of ", meta ? meta->grad_fn->name() : "?");
  HEED_CHECK(!value || is_floating(), "requires_grad_: only floating tensors take gradients, got ", str());
  if (!meta) set_autograd_meta(std::make_shared<autograd::Meta>());
  autograd_meta()->requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& meta = autograd_meta();
  return meta ? meta->grad : Tensor();
}

void Tensor::zero_grad() const {
  if (const auto& meta = autograd_meta()) meta->grad = Tensor();
}

Tensor Tensor::detach() const { return view_as_strided(shape(), strides(), offset()); }

void Tensor::backward() const { autograd::backward(*this); }

}  // namespace heed
