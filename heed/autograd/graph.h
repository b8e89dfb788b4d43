// The recorded graph: per-tensor autograd state, the Node an op leaves behind, and
// record(), with which each op in heed/ops registers its backward rule beside its forward.
// (The tape sits below ops so that an op's backward can live in the op's own file.)
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "heed/tensor/tensor.h"

namespace heed::autograd {

struct Node;

struct Meta {
  bool requires_grad = false;
  Tensor grad;                          // leaves: the accumulated gradient
  std::shared_ptr<Node> grad_fn;        // non-leaves: the op that made this tensor
  std::shared_ptr<Node> accumulator;    // leaves: the node that adds into `grad`
};

// One recorded op. next[i] is where the gradient for input i goes (null: not needed).
struct Node {
  virtual ~Node() = default;
  virtual const char* name() const = 0;
  // Gradients of the inputs given the gradient of the output; undefined where not needed.
  virtual std::vector<Tensor> apply(const Tensor& grad_out) = 0;
  // Frees saved tensors after a backward pass that did not retain the graph.
  virtual void release() {}
  std::vector<std::shared_ptr<Node>> next;
  Shape out_shape;
  DType out_dtype = DType::kF32;
  bool released = false;
};

// Is gradient recording on for this thread? (off inside NoGradGuard)
bool grad_enabled();

class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// Does t take part in gradient computation (a leaf that requires grad or a recorded result)?
bool requires_grad(const Tensor& t);

// The node a gradient for t flows into: its grad_fn, or its leaf accumulator; null if none.
std::shared_ptr<Node> gradient_edge(const Tensor& t);

template <class F>
struct LambdaNode final : Node {
  const char* name_;
  std::optional<F> fn_;
  LambdaNode(const char* name, F fn) : name_(name), fn_(std::move(fn)) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> apply(const Tensor& grad_out) override { return (*fn_)(grad_out); }
  void release() override { fn_.reset(); }
};

// Records `backward` as the grad_fn of `out` when recording is on and any input needs a
// gradient. backward(grad_out) returns one gradient per input, in order (undefined
// tensors for inputs that need none). Capture saved tensors by value; capture the
// output only as out.detach() (capturing `out` itself would make a cycle).
template <class F>
void record(const char* name, const Tensor& out, const std::vector<Tensor>& inputs, F backward) {
  if (!grad_enabled()) return;
  bool any = false;
  for (const Tensor& t : inputs) any = any || (t.defined() && requires_grad(t));
  if (!any) return;
  auto node = std::make_shared<LambdaNode<F>>(name, std::move(backward));
  for (const Tensor& t : inputs) node->next.push_back(t.defined() ? gradient_edge(t) : nullptr);
  node->out_shape = out.shape();
  node->out_dtype = out.dtype();
  auto meta = std::make_shared<Meta>();
  meta->requires_grad = true;
  meta->grad_fn = std::move(node);
  out.set_autograd_meta(std::move(meta));
}

template <class F>
void record(const char* name, const Tensor& out, std::initializer_list<Tensor> inputs, F backward) {
  record(name, out, std::vector<Tensor>(inputs), std::move(backward));
}

struct BackwardOptions {
  bool retain_graph = false;  // keep saved tensors so backward can run again
};

// Reverse pass from `root` (a one-element tensor unless grad_root is given).
void backward(const Tensor& root, const Tensor& grad_root = Tensor(), BackwardOptions options = {});

}  // namespace heed::autograd
