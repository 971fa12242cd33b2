// flowless/train/optimizer.hpp - AdamW (PyTorch's, exactly) and global
// gradient-norm clipping.
//
// AdamW<T>: parameter groups with their own weight decay; one lr for all
// groups (the reference's schedule sets the same lr everywhere). step() is
// torch.optim.AdamW (amsgrad off), per parameter with a gradient:
//     step += 1
//     p  *= 1 - lr * wd
//     m   = beta1 * m + (1 - beta1) * g
//     v   = beta2 * v + (1 - beta2) * g * g
//     p  -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// Scalars are computed in double and applied in T, in PyTorch's order of
// operations. Parameters without a gradient (undefined grad) are skipped and
// keep their step count, as in PyTorch. State (m, v) is created on a
// parameter's first step.
//
// Constructing from a Module builds the reference's make_optimizer groups:
//   group 0: parameters with decays(p), weight_decay = wd
//   group 1: the others,                weight_decay = 0
// each sorted by full parameter name (as the reference's sorted(list(...))).
//
// State dict (checkpoint/resume), keyed by parameter name:
//   "<name>.step" (1) step count, "<name>.exp_avg", "<name>.exp_avg_sq" (param shape)
// only for parameters that have state.
//
// clip_grad_norm(params, max_norm): torch.nn.utils.clip_grad_norm_ (L2):
// total = ||(||g_1||, ..., ||g_n||)||, every gradient is multiplied by
// min(1, max_norm / (total + 1e-6)); returns total (before clipping).
// Parameters without a gradient are ignored. Squares are summed in T over
// blocks of 256 and the blocks in double, in fixed chunks combined in order,
// so the result does not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "flowless/autograd/variable.hpp"
#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/nn/module.hpp"

namespace flowless::train {

namespace detail {
constexpr int64_t kElemGrain = 1 << 15;  // elements per parallel chunk

template <class T>
using Vec = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CVec = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Sum of squares in double: fixed chunks, each reduced by Eigen (vectorised,
// fixed order), partials combined in chunk order.
template <class T>
double sum_squares(const T* g, int64_t n) {
  const int64_t chunks = ThreadPool::num_chunks(n, kElemGrain);
  std::vector<double> part(static_cast<size_t>(chunks), 0.0);
  parallel_for(n, kElemGrain, [&](int64_t b, int64_t e) {
    // Blocks of 256 summed in T by Eigen (vectorised), blocks added in double.
    double acc = 0;
    for (int64_t i = b; i < e; i += 256) acc += double(CVec<T>(g + i, std::min<int64_t>(256, e - i)).square().sum());
    part[static_cast<size_t>(b / kElemGrain)] = acc;
  });
  double s = 0;
  for (double p : part) s += p;
  return s;
}
}  // namespace detail

/// Global L2 norm of the gradients; scales them so it is at most max_norm.
/// Returns the norm before clipping (0 when no parameter has a gradient).
template <class T>
double clip_grad_norm(const std::vector<Var<T>*>& params, double max_norm) {
  FLOWLESS_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be positive, got ", max_norm);
  double total_sq = 0;
  std::vector<Tensor<T>*> grads;
  for (Var<T>* p : params) {
    FLOWLESS_CHECK(p != nullptr, "clip_grad_norm: null parameter");
    if (!p->grad().defined()) continue;
    grads.push_back(&p->grad());
    const double n = std::sqrt(detail::sum_squares(p->grad().data(), p->grad().numel()));
    total_sq += n * n;
  }
  const double total = std::sqrt(total_sq);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0) {
    const T c = static_cast<T>(coef);
    for (Tensor<T>* g : grads) {
      T* d = g->data();
      parallel_for(g->numel(), detail::kElemGrain,
                   [&](int64_t b, int64_t e) { detail::Vec<T>(d + b, e - b) *= c; });
    }
  }
  return total;
}

template <class T>
class AdamW {
 public:
  struct ParamGroup {
    std::vector<Var<T>*> params;
    double weight_decay = 0.0;
    std::vector<std::string> names;  // optional; default "group<g>.<i>" (state-dict keys)
    ParamGroup(std::vector<Var<T>*> p = {}, double wd = 0.0, std::vector<std::string> n = {})
        : params(std::move(p)), weight_decay(wd), names(std::move(n)) {}
  };

  /// The reference's two groups from a module (see the file comment).
  AdamW(const nn::Module<T>& model, double lr, double weight_decay, std::pair<double, double> betas = {0.9, 0.999},
        double eps = 1e-8)
      : lr_(lr), beta1_(betas.first), beta2_(betas.second), eps_(eps) {
    ParamGroup decay, no_decay;
    decay.weight_decay = weight_decay;
    no_decay.weight_decay = 0.0;
    auto named = model.named_parameters();
    std::sort(named.begin(), named.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [name, p] : named) {
      ParamGroup& g = model.decays(p) ? decay : no_decay;
      g.params.push_back(p);
      g.names.push_back(name);
    }
    groups_.push_back(std::move(decay));
    groups_.push_back(std::move(no_decay));
    init_state();
  }

  /// Explicit groups.
  AdamW(std::vector<ParamGroup> groups, double lr, std::pair<double, double> betas = {0.9, 0.999}, double eps = 1e-8)
      : groups_(std::move(groups)), lr_(lr), beta1_(betas.first), beta2_(betas.second), eps_(eps) {
    for (size_t g = 0; g < groups_.size(); ++g) {
      auto& grp = groups_[g];
      if (grp.names.empty())
        for (size_t i = 0; i < grp.params.size(); ++i)
          grp.names.push_back("group" + std::to_string(g) + "." + std::to_string(i));
      FLOWLESS_CHECK(grp.names.size() == grp.params.size(), "AdamW: group ", g, " has ", grp.params.size(),
                     " parameters but ", grp.names.size(), " names");
    }
    init_state();
  }

  void step() {
    for (size_t g = 0; g < groups_.size(); ++g) {
      const double wd = groups_[g].weight_decay;
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        Var<T>* p = groups_[g].params[i];
        if (!p->grad().defined()) continue;
        update(*p, state_[g][i], wd);
      }
    }
  }

  /// Drops the gradients of all parameters in the groups.
  void zero_grad() {
    for (auto& grp : groups_)
      for (Var<T>* p : grp.params) p->zero_grad();
  }

  void set_lr(double lr) {
    FLOWLESS_CHECK(lr >= 0 && std::isfinite(lr), "AdamW::set_lr: invalid lr ", lr);
    lr_ = lr;
  }
  double lr() const { return lr_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  /// Number of steps taken by parameter (g, i) (0 before its first update).
  int64_t step_count(size_t g, size_t i) const { return state_.at(g).at(i).step; }

  std::map<std::string, Tensor<T>> state_dict() const {
    std::map<std::string, Tensor<T>> out;
    for (size_t g = 0; g < groups_.size(); ++g)
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        const State& s = state_[g][i];
        if (s.step == 0) continue;
        const std::string& n = groups_[g].names[i];
        out.emplace(n + ".step", Tensor<T>::full(Shape{1}, static_cast<T>(s.step)));
        out.emplace(n + ".exp_avg", s.exp_avg.clone());
        out.emplace(n + ".exp_avg_sq", s.exp_avg_sq.clone());
      }
    return out;
  }

  /// Restores a state_dict() (parameters absent from it start fresh). Unknown
  /// keys and shape mismatches are Errors naming `context`.
  void load_state_dict(const std::map<std::string, Tensor<T>>& sd, const std::string& context = "optimizer state") {
    std::vector<std::vector<State>> fresh(groups_.size());
    size_t used = 0;
    for (size_t g = 0; g < groups_.size(); ++g) {
      fresh[g].resize(groups_[g].params.size());
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        const std::string& n = groups_[g].names[i];
        auto st = sd.find(n + ".step");
        if (st == sd.end()) continue;
        auto m = sd.find(n + ".exp_avg");
        auto v = sd.find(n + ".exp_avg_sq");
        FLOWLESS_CHECK(m != sd.end() && v != sd.end(), context, ": parameter '", n,
                       "' has a step count but no exp_avg/exp_avg_sq");
        const Shape& ps = groups_[g].params[i]->value().shape();
        FLOWLESS_CHECK(st->second.numel() == 1, context, ": '", n, ".step' must hold one value");
        FLOWLESS_CHECK(m->second.shape() == ps && v->second.shape() == ps, context, ": parameter '", n,
                       "': moments of shape ", m->second.shape().str(), "/", v->second.shape().str(),
                       " for a parameter of shape ", ps.str());
        const double step = static_cast<double>(st->second.data()[0]);
        FLOWLESS_CHECK(step >= 1 && step == std::floor(step), context, ": '", n, ".step' = ", step,
                       " is not a positive integer");
        fresh[g][i].step = static_cast<int64_t>(step);
        fresh[g][i].exp_avg = m->second.clone();
        fresh[g][i].exp_avg_sq = v->second.clone();
        used += 3;
      }
    }
    if (used != sd.size()) {
      std::vector<std::string> known;
      for (auto& grp : groups_)
        for (auto& n : grp.names) known.push_back(n);
      std::sort(known.begin(), known.end());
      for (auto& kv : sd) {
        const std::string& k = kv.first;
        bool ok = false;
        for (const char* suf : {".step", ".exp_avg", ".exp_avg_sq"}) {
          const std::string s(suf);
          if (k.size() > s.size() && k.compare(k.size() - s.size(), s.size(), s) == 0 &&
              std::binary_search(known.begin(), known.end(), k.substr(0, k.size() - s.size())) &&
              sd.count(k.substr(0, k.size() - s.size()) + ".step"))
            ok = true;
        }
        FLOWLESS_CHECK(ok, context, ": unexpected optimizer state entry '", k, "'");
      }
    }
    state_ = std::move(fresh);
  }

 private:
  struct State {
    int64_t step = 0;
    Tensor<T> exp_avg, exp_avg_sq;
  };

  void init_state() {
    FLOWLESS_CHECK(lr_ >= 0 && eps_ >= 0 && beta1_ >= 0 && beta1_ < 1 && beta2_ >= 0 && beta2_ < 1,
                   "AdamW: invalid lr/betas/eps");
    std::map<const Var<T>*, std::string> seen;
    state_.assign(groups_.size(), {});
    for (size_t g = 0; g < groups_.size(); ++g) {
      FLOWLESS_CHECK(groups_[g].weight_decay >= 0, "AdamW: negative weight decay in group ", g);
      state_[g].resize(groups_[g].params.size());
      for (size_t i = 0; i < groups_[g].params.size(); ++i) {
        Var<T>* p = groups_[g].params[i];
        FLOWLESS_CHECK(p != nullptr && p->defined(), "AdamW: null parameter '", groups_[g].names[i], "'");
        auto [it, fresh] = seen.emplace(p, groups_[g].names[i]);
        FLOWLESS_CHECK(fresh, "AdamW: parameter '", groups_[g].names[i], "' appears twice (also as '", it->second, "')");
      }
    }
  }

  void update(Var<T>& p, State& s, double wd) {
    Tensor<T>& P = p.value();
    const Tensor<T>& G = p.grad();
    FLOWLESS_CHECK(G.numel() == P.numel(), "AdamW: gradient ", G.shape().str(), " for parameter ", P.shape().str());
    if (s.step == 0) {
      s.exp_avg = Tensor<T>::zeros(P.shape());
      s.exp_avg_sq = Tensor<T>::zeros(P.shape());
    }
    s.step += 1;
    const double step = static_cast<double>(s.step);
    const T decay = static_cast<T>(1.0 - lr_ * wd);
    const T b1 = static_cast<T>(beta1_), one_b1 = static_cast<T>(1.0 - beta1_);
    const T b2 = static_cast<T>(beta2_), one_b2 = static_cast<T>(1.0 - beta2_);
    const double bc1 = 1.0 - std::pow(beta1_, step);
    const double bc2 = 1.0 - std::pow(beta2_, step);
    const T neg_step_size = static_cast<T>(-(lr_ / bc1));
    const T bc2_sqrt = static_cast<T>(std::sqrt(bc2));
    const T eps = static_cast<T>(eps_);
    T* pd = P.data();
    const T* gd = G.data();
    T* md = s.exp_avg.data();
    T* vd = s.exp_avg_sq.data();
    parallel_for(P.numel(), detail::kElemGrain, [&](int64_t b, int64_t e) {
      // Elementwise in PyTorch's order (Eigen vectorises sqrt and division).
      const int64_t n = e - b;
      detail::Vec<T> p(pd + b, n), m(md + b, n), v(vd + b, n);
      detail::CVec<T> g(gd + b, n);
      p *= decay;
      m = m * b1 + one_b1 * g;
      v = v * b2 + (one_b2 * g) * g;
      p += neg_step_size * (m / (v.sqrt() / bc2_sqrt + eps));
    });
  }

  std::vector<ParamGroup> groups_;
  std::vector<std::vector<State>> state_;
  double lr_, beta1_, beta2_, eps_;
};

}  // namespace flowless::train
