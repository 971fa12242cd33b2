// flowless/autograd/variable.hpp - a readable tape-free autograd.
//
// Var<T> is a handle (shared pointer) to a Node holding
//   value : the forward result (a Tensor<T>)
//   grad  : d(loss)/d(value), allocated on first use, accumulated (+=)
//   inputs + backward closure : how to push grad to the inputs.
// Ops (flowless/ops/*) build the graph as they run; backward(loss) walks it
// in reverse topological order and then frees it. A leaf with
// requires_grad = true is a parameter; applying the same parameter several
// times (a head shared across pyramid levels and branches) accumulates its
// gradient. Users composing layers never write backward code.
//
// Inference: inside a NoGradGuard (or with grad mode off) ops record nothing,
// so intermediate values are freed as soon as they go out of scope and memory
// stays flat.
//
// Backward-closure contract for op writers (see make_op below): the closure
// receives the output node; it reads out.grad and calls
// out.input_grad(i) (a zero-initialised accumulator of input i's shape) only
// when out.needs_grad(i). It must accumulate (+=), never overwrite; an op
// that writes a whole input gradient in one pass may use
// out.input_grad_store(i) instead (store when fresh, add otherwise).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "flowless/core/tensor.hpp"

namespace flowless {

namespace detail {
inline bool& grad_mode_flag() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

inline bool grad_enabled() { return detail::grad_mode_flag(); }

/// RAII: disables graph recording (inference mode) in this thread.
class NoGradGuard {
 public:
  NoGradGuard() : prev_(detail::grad_mode_flag()) { detail::grad_mode_flag() = false; }
  ~NoGradGuard() { detail::grad_mode_flag() = prev_; }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

template <class T>
struct Node {
  Tensor<T> value;
  Tensor<T> grad;
  bool requires_grad = false;
  std::vector<std::shared_ptr<Node>> inputs;
  std::function<void(Node&)> backward_fn;
  const char* op = "leaf";

  bool is_leaf() const { return !backward_fn; }
  bool needs_grad(size_t i) const { return i < inputs.size() && inputs[i] && inputs[i]->requires_grad; }
  /// Accumulator for input i's gradient (allocated and zeroed on first use).
  Tensor<T>& input_grad(size_t i) { return inputs[i]->ensure_grad(); }
  /// For an op that produces all of input i's gradient in one pass: the
  /// gradient buffer and whether it is fresh. Fresh means no other op has
  /// contributed yet; the buffer is then uninitialised and the op must store
  /// (=) every element. Otherwise it holds earlier contributions and the op
  /// must add (+=), as with input_grad(). This skips the zero fill and the
  /// re-read of an input whose gradient has a single contributor.
  std::pair<Tensor<T>*, bool> input_grad_store(size_t i) {
    Node& in = *inputs[i];
    const bool fresh = !in.grad.defined();
    if (fresh) in.grad = Tensor<T>(in.value.shape());
    return {&in.grad, fresh};
  }
  Tensor<T>& ensure_grad() {
    if (!grad.defined()) grad = Tensor<T>::zeros(value.shape());
    return grad;
  }
};

template <class T>
class Var {
 public:
  using scalar_type = T;
  Var() = default;
  /// A constant (no gradient) wrapping a tensor.
  explicit Var(Tensor<T> value, bool requires_grad = false) : node_(std::make_shared<Node<T>>()) {
    node_->value = std::move(value);
    node_->requires_grad = requires_grad;
  }
  static Var parameter(Tensor<T> value) { return Var(std::move(value), true); }

  bool defined() const { return node_ != nullptr; }
  const Tensor<T>& value() const { return node_->value; }
  Tensor<T>& value() { return node_->value; }
  const Shape& shape() const { return node_->value.shape(); }
  int64_t size(int i) const { return node_->value.size(i); }
  bool requires_grad() const { return node_ && node_->requires_grad; }
  /// The accumulated gradient (undefined until a backward reached this variable).
  const Tensor<T>& grad() const { return node_->grad; }
  Tensor<T>& grad() { return node_->grad; }
  void zero_grad() { node_->grad = Tensor<T>(); }
  /// A constant sharing this value, cut from the graph (no gradient flows back).
  Var detach() const { return Var(node_->value, false); }
  const std::shared_ptr<Node<T>>& node() const { return node_; }
  explicit Var(std::shared_ptr<Node<T>> n) : node_(std::move(n)) {}

 private:
  std::shared_ptr<Node<T>> node_;
};

/// Builds the output of an op. The graph is recorded only when grad mode is
/// on and at least one input requires grad; otherwise `backward` is dropped.
template <class T, class Fn>
Var<T> make_op(Tensor<T> value, std::vector<Var<T>> inputs, const char* name, Fn&& backward) {
  auto node = std::make_shared<Node<T>>();
  node->value = std::move(value);
  node->op = name;
  if (grad_enabled()) {
    bool any = false;
    for (auto& v : inputs) any = any || v.requires_grad();
    if (any) {
      node->requires_grad = true;
      node->inputs.reserve(inputs.size());
      for (auto& v : inputs) node->inputs.push_back(v.node());
      node->backward_fn = std::forward<Fn>(backward);
    }
  }
  return Var<T>(std::move(node));
}

/// Back-propagates from `root`. If root is a scalar and no seed is given the
/// seed is 1. The graph behind root is freed afterwards unless retain_graph.
template <class T>
void backward(const Var<T>& root, Tensor<T> seed = Tensor<T>(), bool retain_graph = false) {
  FLOWLESS_CHECK(root.defined(), "backward: undefined variable");
  if (!root.requires_grad()) return;
  Node<T>* r = root.node().get();
  if (!seed.defined()) {
    FLOWLESS_CHECK(r->value.numel() == 1, "backward: root of shape ", r->value.shape().str(),
                   " is not a scalar; pass a seed gradient");
    seed = Tensor<T>::full(r->value.shape(), T(1));
  }
  FLOWLESS_CHECK(seed.shape() == r->value.shape(), "backward: seed ", seed.shape().str(), " vs root ",
                 r->value.shape().str());
  // Iterative DFS for a topological order (inputs before outputs). The order
  // holds shared ownership: freeing a consumer's inputs below must not free a
  // producer that is still to be processed.
  std::vector<std::shared_ptr<Node<T>>> order;
  std::unordered_set<Node<T>*> visited;
  std::vector<std::pair<std::shared_ptr<Node<T>>, size_t>> stack{{root.node(), 0}};
  visited.insert(r);
  while (!stack.empty()) {
    auto& top = stack.back();
    Node<T>* n = top.first.get();
    if (top.second < n->inputs.size()) {
      const std::shared_ptr<Node<T>>& c = n->inputs[top.second++];
      if (c && c->requires_grad && !visited.count(c.get())) {
        visited.insert(c.get());
        stack.push_back({c, 0});
      }
    } else {
      order.push_back(std::move(top.first));
      stack.pop_back();
    }
  }
  Tensor<T>& g = r->ensure_grad();
  {
    T* gd = g.data();
    const T* sd = seed.data();
    const int64_t n = g.numel();
    for (int64_t k = 0; k < n; ++k) gd[k] += sd[k];
  }
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node<T>* n = it->get();
    if (n->is_leaf()) continue;
    if (n->grad.defined()) n->backward_fn(*n);
    if (!retain_graph) {
      n->backward_fn = nullptr;
      n->inputs.clear();
      n->grad = Tensor<T>();  // intermediate gradients are not kept
    }
  }
}

}  // namespace flowless
