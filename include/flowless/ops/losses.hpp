// flowless/ops/losses.hpp - training losses, forward + backward w.r.t. the
// prediction (targets are constants).
//
// Every loss returns a scalar Var<T> (Shape{}) holding the SUM over elements;
// the caller divides by its normaliser (actionformer.md A.6).
//   sigmoid_focal_loss(logits, targets, alpha, gamma)  logits/targets: same shape, e.g. (N, C)
//   diou_loss_1d(pred, target, eps)                      pred/target: (N, 2) distances (left, right)
//   mse_loss(x, target, row_weight)                      sum_r w_r * sum_c (x - t)^2
//   bce_with_logits(logits, target_probs, row_weight)    soft targets in [0, 1]
//   l1_loss(x, target, row_weight)                       sum_r w_r * sum_c |x - t|
// A "row" is a slice along the last dimension (numel / size(-1) rows); an
// empty row_weight means every weight is 1.
//
// Precision: per-element terms are computed in T with the reference's
// formulas term by term (PyTorch float32 for ActionFormer: fvcore's
// sigmoid_focal_loss and ctr_diou_loss_1d of libs/modeling/losses.py); the
// sum is accumulated in double per fixed chunk of rows and the chunk sums are
// added in chunk order, so the result does not depend on the thread count.
// Gradients follow PyTorch's autograd formulas (torch.min/max split the
// gradient evenly on ties; clamp(min=eps) passes it where x >= eps).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "flowless/autograd/variable.hpp"

namespace flowless {

namespace detail {

/// Rows (slices along the last dimension) and their length.
template <class T>
inline void loss_rows(const Tensor<T>& x, int64_t& rows, int64_t& cols) {
  cols = x.dim() == 0 ? 1 : x.size(x.dim() - 1);
  rows = cols == 0 ? 0 : x.numel() / cols;
}

template <class T>
inline void loss_check(const char* name, const Tensor<T>& x, const Tensor<T>& t, size_t n_weights, int64_t rows) {
  FLOWLESS_CHECK(x.shape() == t.shape(), name, ": prediction ", x.shape().str(), " vs target ", t.shape().str());
  FLOWLESS_CHECK(n_weights == 0 || int64_t(n_weights) == rows, name, ": ", n_weights, " row weights for ", rows,
                 " rows");
}

/// Chunked deterministic sum: row_sum(r) returns a double for row r.
template <class F>
double loss_sum_rows(int64_t rows, int64_t cols, F&& row_sum) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1));
  std::vector<double> part(static_cast<size_t>(ThreadPool::num_chunks(rows, grain)), 0.0);
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    double s = 0;
    for (int64_t r = r0; r < r1; ++r) s += row_sum(r);
    part[r0 / grain] = s;
  });
  double total = 0;
  for (double s : part) total += s;
  return total;
}

/// Element-wise backward: g(r, c) gives d(loss)/dx for element (r, c) without the seed.
template <class T, class F>
void loss_backward_rows(T* dx, int64_t rows, int64_t cols, F&& g) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < cols; ++c) dx[r * cols + c] += g(r, c);
  });
}

/// The target as kept for the backward: a private copy when the graph is
/// recorded (the caller may reuse its buffer), nothing otherwise.
template <class T>
inline Tensor<T> loss_keep(const Tensor<T>& t, const Var<T>& x) {
  return grad_enabled() && x.requires_grad() ? t.clone() : Tensor<T>();
}

template <class T>
inline Tensor<T> loss_scalar(double v) {
  Tensor<T> t(Shape{});
  t[0] = T(v);
  return t;
}

/// PyTorch's binary_cross_entropy_with_logits element (no pos_weight), in its
/// operation order: m = max(-x, 0); (1 - y) * x + m + log(exp(-m) + exp(-x - m)).
template <class T>
inline T bce_logits_elem(T x, T y) {
  const T m = std::max(-x, T(0));
  return ((T(1) - y) * x + m) + std::log(std::exp(-m) + std::exp(-x - m));
}

/// PyTorch's pow(x, scalar) special cases (x*x for 2, ...).
template <class T>
inline T pow_scalar(T x, T e) {
  if (e == T(2)) return x * x;
  if (e == T(3)) return x * x * x;
  if (e == T(1)) return x;
  if (e == T(0)) return T(1);
  if (e == T(0.5)) return std::sqrt(x);
  return std::pow(x, e);
}

/// d/dx of torch.minimum(x, o) (is_min) or torch.maximum: 1, 1/2 on ties, 0.
template <class T>
inline T minmax_grad(T x, T o, bool is_min) {
  if (x == o) return T(0.5);
  return (is_min ? x < o : x > o) ? T(1) : T(0);
}

}  // namespace detail

/// fvcore sigmoid focal loss, summed: p = sigmoid(x), ce = BCE-with-logits,
/// p_t = p*y + (1-p)*(1-y), loss = ce * (1-p_t)^gamma, times
/// alpha_t = alpha*y + (1-alpha)*(1-y) when alpha >= 0.
template <class T>
Var<T> sigmoid_focal_loss(const Var<T>& logits, const Tensor<T>& targets, T alpha = T(0.25), T gamma = T(2)) {
  const Tensor<T>& X = logits.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("sigmoid_focal_loss", X, targets, 0, rows);
  const T one_m_alpha = T(1.0 - double(alpha));
  const bool use_alpha = alpha >= T(0);
  auto elem = [=](T x, T y) {
    const T p = T(1) / (T(1) + std::exp(-x));
    const T ce = detail::bce_logits_elem(x, y);
    const T p_t = p * y + (T(1) - p) * (T(1) - y);
    T loss = ce * detail::pow_scalar(T(1) - p_t, gamma);
    if (use_alpha) loss = (alpha * y + one_m_alpha * (T(1) - y)) * loss;
    return loss;
  };
  const T* xd = X.data();
  const T* yd = targets.data();
  const double total = detail::loss_sum_rows(rows, cols, [&](int64_t r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += double(elem(xd[r * cols + c], yd[r * cols + c]));
    return s;
  });
  return make_op<T>(detail::loss_scalar<T>(total), {logits}, "sigmoid_focal_loss",
                    [=, Y = detail::loss_keep(targets, logits)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad[0];
    const T* x = out.inputs[0]->value.data();
    const T* y = Y.data();
    detail::loss_backward_rows(out.input_grad(0).data(), rows, cols, [&](int64_t r, int64_t c) {
      const T xv = x[r * cols + c], yv = y[r * cols + c];
      const T p = T(1) / (T(1) + std::exp(-xv));
      const T ce = detail::bce_logits_elem(xv, yv);
      const T p_t = p * yv + (T(1) - p) * (T(1) - yv);
      const T m = T(1) - p_t;
      const T ga = use_alpha ? g * (alpha * yv + one_m_alpha * (T(1) - yv)) : g;
      const T d_ce = ga * detail::pow_scalar(m, gamma);
      const T d_mg = ga * ce;
      const T d_m = gamma == T(0) ? T(0) : d_mg * gamma * detail::pow_scalar(m, gamma - T(1));
      const T d_pt = -d_m;
      const T d_p = d_pt * yv - d_pt * (T(1) - yv);
      return d_ce * (p - yv) + d_p * (p * (T(1) - p));
    });
  });
}

/// ctr_diou_loss_1d, summed over rows: pred/target (N, 2) = (left, right)
/// distances from the same point.
template <class T>
Var<T> diou_loss_1d(const Var<T>& pred, const Tensor<T>& target, T eps = T(1e-8)) {
  const Tensor<T>& X = pred.value();
  FLOWLESS_CHECK(X.dim() == 2 && X.size(1) == 2, "diou_loss_1d: pred must be (N, 2), got ", X.shape().str());
  detail::loss_check("diou_loss_1d", X, target, 0, X.size(0));
  const int64_t N = X.size(0);
  const T* xd = X.data();
  const T* td = target.data();
  const double total = detail::loss_sum_rows(N, 2, [&](int64_t r) {
    const T lp = xd[2 * r], rp = xd[2 * r + 1], lg = td[2 * r], rg = td[2 * r + 1];
    const T lkis = std::min(lp, lg), rkis = std::min(rp, rg);
    const T intsct = rkis + lkis;
    const T unio = (lp + rp) + (lg + rg) - intsct;
    const T iou = intsct / std::max(unio, eps);
    const T lc = std::max(lp, lg), rc = std::max(rp, rg);
    const T len_c = lc + rc;
    const T rho = T(0.5) * (rp - lp - rg + lg);
    const T ratio = rho / std::max(len_c, eps);
    return double((T(1) - iou) + ratio * ratio);
  });
  return make_op<T>(detail::loss_scalar<T>(total), {pred}, "diou_loss_1d", [=, Tg = detail::loss_keep(target, pred)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad[0];
    const T* x = out.inputs[0]->value.data();
    const T* t = Tg.data();
    T* dx = out.input_grad(0).data();
    parallel_for(N, 1024, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T lp = x[2 * r], rp = x[2 * r + 1], lg = t[2 * r], rg = t[2 * r + 1];
        const T lkis = std::min(lp, lg), rkis = std::min(rp, rg);
        const T intsct = rkis + lkis;
        const T unio = (lp + rp) + (lg + rg) - intsct;
        const T uc = std::max(unio, eps);
        const T lc = std::max(lp, lg), rc = std::max(rp, rg);
        const T len_c = lc + rc;
        const T cc = std::max(len_c, eps);
        const T rho = T(0.5) * (rp - lp - rg + lg);
        const T ratio = rho / cc;
        // loss = (1 - iou) + ratio^2
        const T d_iou = -g;
        const T d_ratio = g * (T(2) * ratio);
        const T d_rho = d_ratio / cc;
        const T d_cc = -d_ratio * rho / (cc * cc);
        const T d_len_c = len_c >= eps ? d_cc : T(0);
        const T d_int_div = d_iou / uc;
        const T d_uc = -d_iou * intsct / (uc * uc);
        const T d_union = unio >= eps ? d_uc : T(0);
        const T d_int = d_int_div - d_union;
        T d_lp = d_union, d_rp = d_union;
        d_lp += d_int * detail::minmax_grad(lp, lg, true) + d_len_c * detail::minmax_grad(lp, lg, false);
        d_rp += d_int * detail::minmax_grad(rp, rg, true) + d_len_c * detail::minmax_grad(rp, rg, false);
        d_lp -= T(0.5) * d_rho;
        d_rp += T(0.5) * d_rho;
        dx[2 * r] += d_lp;
        dx[2 * r + 1] += d_rp;
      }
    });
  });
}

/// Sum over rows r of w_r * sum_c (x - t)^2.
template <class T>
Var<T> mse_loss(const Var<T>& x, const Tensor<T>& target, const std::vector<T>& row_weight = {}) {
  const Tensor<T>& X = x.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("mse_loss", X, target, row_weight.size(), rows);
  const T* xd = X.data();
  const T* td = target.data();
  const double total = detail::loss_sum_rows(rows, cols, [&](int64_t r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const T e = xd[r * cols + c] - td[r * cols + c];
      s += double(e * e);
    }
    return row_weight.empty() ? s : double(row_weight[r]) * s;
  });
  return make_op<T>(detail::loss_scalar<T>(total), {x}, "mse_loss", [=, Tg = detail::loss_keep(target, x)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad[0];
    const T* xv = out.inputs[0]->value.data();
    const T* t = Tg.data();
    detail::loss_backward_rows(out.input_grad(0).data(), rows, cols, [&](int64_t r, int64_t c) {
      const T gw = row_weight.empty() ? g : g * row_weight[r];
      return gw * (T(2) * (xv[r * cols + c] - t[r * cols + c]));
    });
  });
}

/// Binary cross-entropy with logits and soft targets, summed (row-weighted),
/// per element as PyTorch: (1 - y) * x + m + log(exp(-m) + exp(-x - m)), m = max(-x, 0).
template <class T>
Var<T> bce_with_logits(const Var<T>& logits, const Tensor<T>& target_probs, const std::vector<T>& row_weight = {}) {
  const Tensor<T>& X = logits.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("bce_with_logits", X, target_probs, row_weight.size(), rows);
  const T* xd = X.data();
  const T* td = target_probs.data();
  const double total = detail::loss_sum_rows(rows, cols, [&](int64_t r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const T xv = xd[r * cols + c], y = td[r * cols + c];
      s += double(detail::bce_logits_elem(xv, y));
    }
    return row_weight.empty() ? s : double(row_weight[r]) * s;
  });
  return make_op<T>(detail::loss_scalar<T>(total), {logits}, "bce_with_logits",
                    [=, Tg = detail::loss_keep(target_probs, logits)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad[0];
    const T* xv = out.inputs[0]->value.data();
    const T* t = Tg.data();
    detail::loss_backward_rows(out.input_grad(0).data(), rows, cols, [&](int64_t r, int64_t c) {
      const T gw = row_weight.empty() ? g : g * row_weight[r];
      const T p = T(1) / (T(1) + std::exp(-xv[r * cols + c]));
      return gw * (p - t[r * cols + c]);
    });
  });
}

/// Sum over rows r of w_r * sum_c |x - t| (gradient sign(x - t), 0 at 0).
template <class T>
Var<T> l1_loss(const Var<T>& x, const Tensor<T>& target, const std::vector<T>& row_weight = {}) {
  const Tensor<T>& X = x.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("l1_loss", X, target, row_weight.size(), rows);
  const T* xd = X.data();
  const T* td = target.data();
  const double total = detail::loss_sum_rows(rows, cols, [&](int64_t r) {
    double s = 0;
    for (int64_t c = 0; c < cols; ++c) s += double(std::abs(xd[r * cols + c] - td[r * cols + c]));
    return row_weight.empty() ? s : double(row_weight[r]) * s;
  });
  return make_op<T>(detail::loss_scalar<T>(total), {x}, "l1_loss", [=, Tg = detail::loss_keep(target, x)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad[0];
    const T* xv = out.inputs[0]->value.data();
    const T* t = Tg.data();
    detail::loss_backward_rows(out.input_grad(0).data(), rows, cols, [&](int64_t r, int64_t c) {
      const T e = xv[r * cols + c] - t[r * cols + c];
      const T gw = row_weight.empty() ? g : g * row_weight[r];
      return e > T(0) ? gw : (e < T(0) ? -gw : T(0));
    });
  });
}

}  // namespace flowless
