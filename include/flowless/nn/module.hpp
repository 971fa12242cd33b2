// flowless/nn/module.hpp - the module tree: named parameters, train/eval,
// weight-decay groups and state-dict load/save.
//
// A Module<T> owns its parameters (Var<T> leaves with requires_grad) and
// refers to child modules by address (a child is a member object of its
// parent, or owned by a unique_ptr member, so modules are neither copyable
// nor movable). Names follow PyTorch:
//   * a module's own parameters come first, in registration order, then each
//     child's parameters (recursively), children in registration order -
//     the order of torch.nn.Module.named_parameters() / state_dict();
//   * full names join the path with '.', e.g. "backbone.embd.0.conv.weight".
//     A registered name may itself contain '.' (e.g. a child "mlp.3"), which
//     is how Sequential/ModuleList indices of the reference are reproduced
//     without a container; ModuleList below does the same with "0", "1", ...
// Each parameter carries its weight-decay group (the reference's
// make_optimizer: conv/linear weights decay; biases, norm affines, scales and
// relative position encodings do not).
//
// State dicts map full names to tensors. load_state_dict copies values into
// the existing parameter storage (Var handles held elsewhere stay valid) and
// accepts a stored shape that differs from the parameter's only by singleton
// dimensions with the same number of elements: the reference's per-level
// Scale is () in .pth.tar and (1,) in safetensors, LayerNorm affines are
// (1, C, 1) and may be stored as (C,). Everything is validated before anything
// is copied, so a failed load leaves the module unchanged.
#pragma once

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/core/error.hpp"
#include "flowless/io/array.hpp"

namespace flowless::nn {

namespace detail {

// Shapes compare equal up to singleton dimensions (same numel).
inline bool squeezed_equal(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> sa, sb;
  for (int64_t d : a)
    if (d != 1) sa.push_back(d);
  for (int64_t d : b)
    if (d != 1) sb.push_back(d);
  return sa == sb;
}

inline std::vector<int64_t> shape_vec(const Shape& s) {
  std::vector<int64_t> v;
  for (int i = 0; i < s.nd; ++i) v.push_back(s.d[i]);
  return v;
}

// Writes the n values of a (any dtype; f64 exactly, others via float32) to dst.
template <class T>
void array_values(const io::Array& a, int64_t n, T* dst, const std::string& context) {
  FLOWLESS_CHECK(io::shape_numel(a.shape, context) == n, context, ": array ", io::shape_str(a.shape), " holds ",
                 io::shape_numel(a.shape, context), " values, expected ", n);
  if (a.dtype == io::DType::f64) {
    FLOWLESS_CHECK(a.data.size() == size_t(n) * 8, context, ": array holds ", a.data.size(), " bytes, expected ", n * 8);
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, a.data.data() + 8 * i, 8);
      dst[i] = static_cast<T>(v);
    }
  } else {
    std::vector<float> f = a.to_float32(context);
    for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<T>(f[i]);
  }
}

inline std::string join_names(const std::vector<std::string>& names, size_t max_list = 8) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < max_list; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > max_list) s += ", ... (" + std::to_string(names.size()) + " in all)";
  return s;
}

}  // namespace detail

template <class T>
class Module {
 public:
  using scalar_type = T;

  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// Training mode on/off for this module and all descendants.
  void train(bool on = true) {
    training_ = on;
    for (auto& c : children_) c.module->train(on);
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  /// All parameters with full names, PyTorch order (see the file comment).
  std::vector<std::pair<std::string, Var<T>*>> named_parameters() const {
    std::vector<std::pair<std::string, Var<T>*>> out;
    collect("", out);
    return out;
  }
  std::vector<Var<T>*> parameters() const {
    std::vector<Var<T>*> out;
    for (auto& np : named_parameters()) out.push_back(np.second);
    return out;
  }
  /// Direct children with their registered names.
  std::vector<std::pair<std::string, Module<T>*>> named_children() const {
    std::vector<std::pair<std::string, Module<T>*>> out;
    for (auto& c : children_) out.emplace_back(c.name, c.module);
    return out;
  }

  /// True when p belongs to the weight-decay group. Error if p is not a
  /// parameter of this module tree.
  bool decays(const Var<T>* p) const {
    int r = find_decay(p);
    FLOWLESS_CHECK(r >= 0, "Module::decays: the variable is not a parameter of this module");
    return r == 1;
  }

  int64_t num_parameters() const {
    int64_t n = 0;
    for (auto& np : named_parameters()) n += np.second->value().numel();
    return n;
  }

  /// Drops every parameter gradient (like zero_grad(set_to_none=True)).
  void zero_grad() {
    for (auto& np : named_parameters()) np.second->zero_grad();
  }

  /// name -> parameter value. The tensors SHARE storage with the parameters
  /// (clone them to keep a snapshot).
  std::map<std::string, Tensor<T>> state_dict() const {
    std::map<std::string, Tensor<T>> out;
    for (auto& np : named_parameters()) out.emplace(np.first, np.second->value());
    return out;
  }

  /// Loads parameters by name from file arrays (any dtype; f64 is read
  /// exactly, others through float32). strict: every parameter must be
  /// present and no unknown names may appear. A shape mismatch (beyond
  /// singleton dimensions) is always an Error. Errors name `context` (the
  /// file) and the parameter.
  void load_state_dict(const std::map<std::string, io::Array>& arrays, const std::string& context,
                       bool strict = true) {
    auto plan = plan_load(arrays, context, strict, [](const io::Array& a) { return a.shape; });
    for (auto& item : plan) {  // validate every array before copying any
      const std::string where = context + ": parameter '" + item.name + "'";
      FLOWLESS_CHECK(item.src->data.size() == io::shape_nbytes(item.src->shape, item.src->dtype, where), where,
                     ": array ", io::shape_str(item.src->shape), " of ", io::dtype_name(item.src->dtype), " holds ",
                     item.src->data.size(), " bytes");
    }
    for (auto& item : plan)
      detail::array_values(*item.src, item.var->value().numel(), item.var->value().data(),
                           context + ": parameter '" + item.name + "'");
  }

  /// Same from in-memory tensors of the module's scalar type.
  void load_state_dict(const std::map<std::string, Tensor<T>>& tensors, const std::string& context,
                       bool strict = true) {
    auto plan = plan_load(tensors, context, strict, [](const Tensor<T>& t) { return detail::shape_vec(t.shape()); });
    for (auto& item : plan) {
      if (item.src->data() == item.var->value().data()) continue;  // loading a module's own state
      item.var->value().copy_(*item.src);
    }
  }

 protected:
  /// Registers a parameter owned by this module; the returned reference stays
  /// valid for the module's lifetime. weight_decay selects the AdamW group.
  Var<T>& register_parameter(const std::string& name, Tensor<T> init, bool weight_decay) {
    check_new_name(name);
    FLOWLESS_CHECK(init.defined(), "Module::register_parameter: '", name, "' has no value");
    params_.push_back(Param{name, std::make_unique<Var<T>>(Var<T>::parameter(std::move(init))), weight_decay});
    return *params_.back().var;
  }
  /// Registers a child module (a member object, or owned by a unique_ptr
  /// member): it must outlive no longer than this module and not move.
  void register_module(const std::string& name, Module<T>& child) {
    check_new_name(name);
    FLOWLESS_CHECK(&child != this, "Module::register_module: '", name, "' is the module itself");
    for (auto& c : children_)
      FLOWLESS_CHECK(c.module != &child, "Module::register_module: '", name, "' is already registered as '", c.name,
                     "'");
    children_.push_back(Child{name, &child});
    child.train(training_);
  }

 private:
  struct Param {
    std::string name;
    std::unique_ptr<Var<T>> var;
    bool decay;
  };
  struct Child {
    std::string name;
    Module<T>* module;
  };

  void check_new_name(const std::string& name) const {
    FLOWLESS_CHECK(!name.empty() && name.front() != '.' && name.back() != '.',
                   "Module: invalid parameter/module name '", name, "'");
    for (auto& p : params_) FLOWLESS_CHECK(p.name != name, "Module: name '", name, "' registered twice");
    for (auto& c : children_) FLOWLESS_CHECK(c.name != name, "Module: name '", name, "' registered twice");
  }

  void collect(const std::string& prefix, std::vector<std::pair<std::string, Var<T>*>>& out) const {
    for (auto& p : params_) out.emplace_back(prefix + p.name, p.var.get());
    for (auto& c : children_) c.module->collect(prefix + c.name + ".", out);
  }

  // 1: decays, 0: no decay, -1: not found.
  int find_decay(const Var<T>* p) const {
    for (auto& q : params_)
      if (q.var.get() == p) return q.decay ? 1 : 0;
    for (auto& c : children_) {
      int r = c.module->find_decay(p);
      if (r >= 0) return r;
    }
    return -1;
  }

  template <class Src>
  struct LoadItem {
    Var<T>* var;
    const Src* src;
    std::string name;
  };

  template <class Src, class ShapeOf>
  std::vector<LoadItem<Src>> plan_load(const std::map<std::string, Src>& src, const std::string& context,
                                                bool strict, ShapeOf shape_of) const {
    std::vector<LoadItem<Src>> plan;
    std::vector<std::string> missing, unexpected;
    auto named = named_parameters();
    std::map<std::string, Var<T>*> by_name;
    for (auto& [name, var] : named) {
      FLOWLESS_CHECK(by_name.emplace(name, var).second, context, ": the module has two parameters named '", name, "'");
      auto it = src.find(name);
      if (it == src.end()) {
        missing.push_back(name);
        continue;
      }
      const std::vector<int64_t> want = detail::shape_vec(var->value().shape());
      const std::vector<int64_t> have = shape_of(it->second);
      const bool same = (want == have) || (io::shape_numel(have, context + ": parameter '" + name + "'") ==
                                               var->value().numel() &&
                                           detail::squeezed_equal(want, have));
      FLOWLESS_CHECK(same, context, ": parameter '", name, "': expected shape ", io::shape_str(want),
                     " but the source holds ", io::shape_str(have));
      plan.push_back({var, &it->second, name});
    }
    if (strict) {
      for (auto& kv : src)
        if (!by_name.count(kv.first)) unexpected.push_back(kv.first);
      FLOWLESS_CHECK(missing.empty(), context, ": missing parameter(s): ", detail::join_names(missing));
      FLOWLESS_CHECK(unexpected.empty(), context, ": unexpected name(s) not in the model: ",
                     detail::join_names(unexpected));
    }
    return plan;
  }

  std::vector<Param> params_;
  std::vector<Child> children_;
  bool training_ = true;
};

/// A list of owned child modules named "0", "1", ... (torch.nn.ModuleList).
template <class T, class M = Module<T>>
class ModuleList : public Module<T> {
 public:
  ModuleList() = default;
  /// Appends a module constructed in place from args and registers it.
  template <class Sub = M, class... Args>
  Sub& emplace_back(Args&&... args) {
    auto p = std::make_unique<Sub>(std::forward<Args>(args)...);
    Sub& ref = *p;
    this->register_module(std::to_string(items_.size()), ref);
    items_.push_back(std::move(p));
    return ref;
  }
  /// Appends an already constructed module (ownership moves here).
  M& push_back(std::unique_ptr<M> m) {
    FLOWLESS_CHECK(m != nullptr, "ModuleList::push_back: null module");
    M& ref = *m;
    this->register_module(std::to_string(items_.size()), ref);
    items_.push_back(std::move(m));
    return ref;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  M& operator[](size_t i) {
    FLOWLESS_CHECK(i < items_.size(), "ModuleList: index ", i, " out of range (size ", items_.size(), ")");
    return *items_[i];
  }
  const M& operator[](size_t i) const {
    FLOWLESS_CHECK(i < items_.size(), "ModuleList: index ", i, " out of range (size ", items_.size(), ")");
    return *items_[i];
  }

 private:
  std::vector<std::unique_ptr<M>> items_;
};

/// Converts a state dict to float32 arrays (e.g. for io::save_safetensors).
template <class T>
std::map<std::string, io::Array> to_float32_arrays(const std::map<std::string, Tensor<T>>& tensors) {
  std::map<std::string, io::Array> out;
  for (auto& [name, t] : tensors) {
    std::vector<float> f(static_cast<size_t>(t.numel()));
    const T* s = t.data();
    for (int64_t i = 0; i < t.numel(); ++i) f[i] = static_cast<float>(s[i]);
    out.emplace(name, io::Array::from_float32(f.data(), detail::shape_vec(t.shape())));
  }
  return out;
}

/// io arrays -> tensors of scalar T (shape kept; at most 4 dimensions).
template <class T>
Tensor<T> array_to_tensor(const io::Array& a, const std::string& context) {
  FLOWLESS_CHECK(a.shape.size() <= size_t(Shape::kMaxDims), context, ": ", a.shape.size(),
                 " dimensions (at most 4 supported)");
  Shape s;
  s.nd = int(a.shape.size());
  for (int i = 0; i < s.nd; ++i) s.d[i] = a.shape[i];
  Tensor<T> t(s);
  detail::array_values(a, t.numel(), t.data(), context);
  return t;
}

}  // namespace flowless::nn
