// flowless/train/lr_schedule.hpp - the reference's LinearWarmupCosineAnnealingLR
// (libs/utils/lr_schedulers.py, from pl_bolts), stepped once per iteration.
//
// lr_at(i) is the learning rate of the i-th optimizer step (i = 0, 1, ...):
// the reference calls optimizer.step() and then scheduler.step(), so step i
// runs with the value the scheduler holds after i scheduler steps
// (last_epoch = i). The values reproduce the reference's recursive
// ("chainable") form in double precision, operation for operation, including
// its quirks:
//   i = 0            : warmup_start_lr            (so the very first step has lr 0 by default)
//   0 < i < W        : lr(i-1) + (base - start) / (W - 1)   (reaches base at i = W - 1)
//   i = W            : base
//   i > W            : cosine from base to eta_min over (total - W) steps,
//                      lr(i) = (1 + cos(pi (i-W)/(N-W))) / (1 + cos(pi (i-1-W)/(N-W))) (lr(i-1) - eta) + eta
//                      (with the reference's special case when (i - 1 - N) % (2 (N - W)) == 0)
// W = warmup_iters, N = total_iters (warmup included, as make_scheduler's
// max_steps). Beyond N the reference's cosine continues periodically, and so
// does this. closed_form(i) is the analytic value (equal up to rounding).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless::train {

class LinearWarmupCosine {
 public:
  LinearWarmupCosine(double base_lr, int64_t warmup_iters, int64_t total_iters, double warmup_start_lr = 0.0,
                     double eta_min = 1e-8)
      : base_(base_lr), W_(warmup_iters), N_(total_iters), start_(warmup_start_lr), eta_(eta_min) {
    FLOWLESS_CHECK(warmup_iters >= 0 && total_iters > warmup_iters, "LinearWarmupCosine: need 0 <= warmup_iters (",
                   warmup_iters, ") < total_iters (", total_iters, ")");
    FLOWLESS_CHECK(base_lr >= 0 && eta_min >= 0 && warmup_start_lr >= 0, "LinearWarmupCosine: negative learning rate");
    table_.reserve(static_cast<size_t>(total_iters + 1));
    table_.push_back(start_);
    for (int64_t i = 1; i <= total_iters; ++i) table_.push_back(next(i, table_.back()));
  }

  /// Learning rate of optimizer step `iter` (0-based).
  double lr_at(int64_t iter) const {
    FLOWLESS_CHECK(iter >= 0, "LinearWarmupCosine::lr_at: negative iteration ", iter);
    if (iter < static_cast<int64_t>(table_.size())) return table_[static_cast<size_t>(iter)];
    double lr = table_.back();
    for (int64_t i = static_cast<int64_t>(table_.size()); i <= iter; ++i) lr = next(i, lr);
    return lr;
  }

  /// The reference's _get_closed_form_lr (analytic; lr_at equals it up to rounding).
  double closed_form(int64_t iter) const {
    if (iter == 0) return start_;
    if (iter < W_) return start_ + static_cast<double>(iter) * (base_ - start_) / static_cast<double>(W_ - 1);
    return eta_ + 0.5 * (base_ - eta_) *
                      (1 + std::cos(kPi * static_cast<double>(iter - W_) / static_cast<double>(N_ - W_)));
  }

  double base_lr() const { return base_; }
  int64_t warmup_iters() const { return W_; }
  int64_t total_iters() const { return N_; }

 private:
  static constexpr double kPi = 3.141592653589793;  // math.pi

  static int64_t py_mod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
  }

  // The reference's get_lr() at last_epoch = i, given the previous lr.
  double next(int64_t i, double prev) const {
    if (i == 0) return start_;
    if (i < W_) return prev + (base_ - start_) / static_cast<double>(W_ - 1);
    if (i == W_) return base_;
    const double span = static_cast<double>(N_ - W_);
    if (py_mod(i - 1 - N_, 2 * (N_ - W_)) == 0)
      return prev + (base_ - eta_) * (1 - std::cos(kPi / span)) / 2;
    // volatile: keep the product rounded before the add (no FMA contraction),
    // as Python evaluates it.
    volatile double prod = (1 + std::cos(kPi * static_cast<double>(i - W_) / span)) /
                           (1 + std::cos(kPi * static_cast<double>(i - W_ - 1) / span)) * (prev - eta_);
    return prod + eta_;
  }

  double base_;
  int64_t W_, N_;
  double start_, eta_;
  std::vector<double> table_;
};

}  // namespace flowless::train
