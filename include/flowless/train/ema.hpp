// flowless/train/ema.hpp - exponential moving average of a model's
// parameters (the reference's ModelEma, decay 0.999, updated after every
// optimizer step; evaluation and checkpoints use the average).
//
//   ModelEma(m, decay)  copies m's parameters (by full name)
//   update(m)           ema = decay * ema + (1 - decay) * p   (in T, PyTorch's order)
//   set(m)              ema = p
//   state_dict()        name -> averaged tensor (shares storage with the EMA)
//   load_state_dict(sd) restores a saved average (strict, shapes must match)
//   copy_to(m)          writes the average into m's parameters
// The module passed to update/set/copy_to must have the same parameter names
// and shapes as the one the EMA was built from (an Error otherwise).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/nn/module.hpp"

namespace flowless::train {

template <class T>
class ModelEma {
 public:
  explicit ModelEma(const nn::Module<T>& m, double decay = 0.999) : decay_(decay) {
    FLOWLESS_CHECK(decay >= 0 && decay <= 1, "ModelEma: decay ", decay, " outside [0, 1]");
    for (auto& [name, p] : m.named_parameters()) entries_.emplace_back(name, p->value().clone());
  }

  void update(const nn::Module<T>& m) {
    const T d = static_cast<T>(decay_), one_d = static_cast<T>(1.0 - decay_);
    apply(m, [d, one_d](T e, T p) { return d * e + one_d * p; });
  }
  void set(const nn::Module<T>& m) {
    apply(m, [](T, T p) { return p; });
  }

  double decay() const { return decay_; }

  std::map<std::string, Tensor<T>> state_dict() const {
    std::map<std::string, Tensor<T>> out;
    for (auto& [name, t] : entries_) out.emplace(name, t);
    return out;
  }

  void load_state_dict(const std::map<std::string, Tensor<T>>& sd, const std::string& context = "ModelEma") {
    FLOWLESS_CHECK(sd.size() == entries_.size(), context, ": ", sd.size(), " tensors for an EMA of ", entries_.size(),
                   " parameters");
    for (auto& [name, t] : entries_) {
      auto it = sd.find(name);
      FLOWLESS_CHECK(it != sd.end(), context, ": missing parameter '", name, "'");
      FLOWLESS_CHECK(it->second.numel() == t.numel() &&
                         nn::detail::squeezed_equal(nn::detail::shape_vec(it->second.shape()),
                                                    nn::detail::shape_vec(t.shape())),
                     context, ": parameter '", name, "': expected shape ", t.shape().str(), ", got ",
                     it->second.shape().str());
    }
    for (auto& [name, t] : entries_) t.copy_(sd.at(name));
  }

  void copy_to(nn::Module<T>& m) const { m.load_state_dict(state_dict(), "ModelEma::copy_to", true); }

 private:
  template <class F>
  void apply(const nn::Module<T>& m, F f) {
    auto named = m.named_parameters();
    FLOWLESS_CHECK(named.size() == entries_.size(), "ModelEma: the module has ", named.size(),
                   " parameters, the EMA ", entries_.size());
    for (size_t k = 0; k < named.size(); ++k) {
      auto& [name, e] = entries_[k];
      const Tensor<T>& p = named[k].second->value();
      FLOWLESS_CHECK(named[k].first == name && p.shape() == e.shape(), "ModelEma: parameter ", k, " is '",
                     named[k].first, "' ", p.shape().str(), ", the EMA has '", name, "' ", e.shape().str());
      T* ed = e.data();
      const T* pd = p.data();
      parallel_for(e.numel(), 1 << 15, [&](int64_t b, int64_t end) {
        for (int64_t i = b; i < end; ++i) ed[i] = f(ed[i], pd[i]);
      });
    }
  }

  double decay_;
  std::vector<std::pair<std::string, Tensor<T>>> entries_;
};

}  // namespace flowless::train
