// flowless/ops/losses.hpp - training losses, forward + backward w.r.t. the
// prediction (targets are constants).
//
// Every loss returns a scalar Var<T> (Shape{}) holding the SUM over elements;
// the caller divides by its normaliser (actionformer.md A.6).
//   sigmoid_focal_loss(logits, targets, alpha, gamma[, row_weight])  logits/targets: same shape, e.g. (N, C)
//   diou_loss_1d(pred, target, eps[, row_weight])        pred/target: (N, 2) distances (left, right)
//   mse_loss(x, target, row_weight)                      sum_r w_r * sum_c (x - t)^2
//   bce_with_logits(logits, target_probs, row_weight)    soft targets in [0, 1]
//   l1_loss(x, target, row_weight)                       sum_r w_r * sum_c |x - t|
//   sigmoid_focal_loss_elementwise(logits, targets)      per element, not summed (TriDet)
//   iou_loss_1d_rows(pred, target, eps)                  (N,) per row 1 - IoU (TriDet's ctr_giou_loss_1d)
// A "row" is a slice along the last dimension (numel / size(-1) rows); an
// empty row_weight means every weight is 1.
//
// Precision: per-element terms are computed in T with the reference's
// formulas term by term (PyTorch float32 for ActionFormer: fvcore's
// sigmoid_focal_loss and ctr_diou_loss_1d of libs/modeling/losses.py); the
// sum is accumulated in double per fixed chunk of rows and the chunk sums are
// added in chunk order, so the result does not depend on the thread count.
// The element-wise transcendental functions are Eigen's vectorised ones
// (within an ulp or so of PyTorch's).
// Gradients follow PyTorch's autograd formulas (torch.min/max split the
// gradient evenly on ties; clamp(min=eps) passes it where x >= eps).
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <vector>

#include "flowless/autograd/variable.hpp"

namespace flowless {

namespace detail {

template <class T>
using LossArr = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using LossMap = Eigen::Map<const LossArr<T>>;

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

/// Sum of p[0:n] in double with a fixed order (8 lanes, then a fixed tree, then the tail).
template <class T>
inline double sum_as_double(const T* p, int64_t n) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += double(p[i + l]);
  double s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
  for (; i < n; ++i) s += double(p[i]);
  return s;
}

inline int64_t loss_grain(int64_t cols) { return std::max<int64_t>(1, 4096 / std::max<int64_t>(cols, 1)); }

/// sum_r w_r * sum_c term(r, c). terms(off, n, out) writes the terms of the flat
/// elements [off, off + n) into out (an aligned Eigen array, so Eigen's
/// vectorised loops start at element 0 whatever the inputs' addresses).
/// Fixed chunks of rows, per-chunk double sums added in chunk order.
template <class T, class Terms>
double loss_sum(int64_t rows, int64_t cols, const std::vector<T>& w, Terms&& terms) {
  const int64_t grain = loss_grain(cols);
  std::vector<double> part(static_cast<size_t>(ThreadPool::num_chunks(rows, grain)), 0.0);
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    LossArr<T> buf;
    terms(r0 * cols, (r1 - r0) * cols, buf);
    double s = 0;
    if (w.empty()) {
      s = sum_as_double(buf.data(), (r1 - r0) * cols);
    } else {
      for (int64_t r = r0; r < r1; ++r) s += double(w[r]) * sum_as_double(buf.data() + (r - r0) * cols, cols);
    }
    part[r0 / grain] = s;
  });
  double total = 0;
  for (double s : part) total += s;
  return total;
}

/// dx[r, c] += g * w_r * dterm(r, c); grads(off, n, out) writes dterm for the flat elements [off, off + n).
template <class T, class Grads>
void loss_grad(T* dx, int64_t rows, int64_t cols, const std::vector<T>& w, T g, Grads&& grads) {
  const int64_t grain = loss_grain(cols);
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    LossArr<T> buf;
    grads(r0 * cols, (r1 - r0) * cols, buf);
    for (int64_t r = r0; r < r1; ++r) {
      const T gw = w.empty() ? g : g * w[r];
      const T* src = buf.data() + (r - r0) * cols;
      T* dst = dx + r * cols;
      for (int64_t c = 0; c < cols; ++c) dst[c] += gw * src[c];
    }
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

template <class T>
inline LossArr<T> pow_array(const LossArr<T>& m, T e) {
  if (e == T(2)) return m * m;
  return m.unaryExpr([e](T v) { return pow_scalar(v, e); });
}

/// PyTorch's binary_cross_entropy_with_logits element (no pos_weight) in its
/// operation order: mx = max(-x, 0); (1 - y) * x + mx + log(exp(-mx) + exp(-x - mx)).
/// exp(-mx) + exp(-x - mx) is exactly 1 + exp(-|x|) (one of the two is exp(0)).
template <class T, class XE, class YE>
inline LossArr<T> bce_logits_terms(const XE& X, const YE& Y) {
  return ((T(1) - Y) * X + (-X).max(T(0))) + (T(1) + (-X.abs()).exp()).log();
}

/// fvcore's sigmoid focal loss per element of the arrays x (logits), y (targets).
template <class T, class XE, class YE>
inline LossArr<T> focal_terms(const XE& x, const YE& y, T alpha, T gamma) {
  using A = LossArr<T>;
  const A p = (T(1) + (-x).exp()).inverse();
  const A ce = bce_logits_terms<T>(x, y);
  const A m = T(1) - (p * y + (T(1) - p) * (T(1) - y));
  A out = ce * pow_array(m, gamma);
  if (alpha >= T(0)) out = (alpha * y + T(1.0 - double(alpha)) * (T(1) - y)) * out;
  return out;
}

/// Its derivative with respect to each logit (PyTorch's autograd formula).
template <class T, class XE, class YE>
inline LossArr<T> focal_grads(const XE& x, const YE& y, T alpha, T gamma) {
  using A = LossArr<T>;
  const int64_t n = x.size();
  const A p = (T(1) + (-x).exp()).inverse();
  const A ce = bce_logits_terms<T>(x, y);
  const A m = T(1) - (p * y + (T(1) - p) * (T(1) - y));
  const A at = alpha >= T(0) ? A(alpha * y + T(1.0 - double(alpha)) * (T(1) - y)) : A(A::Ones(n));
  const A d_ce = at * pow_array(m, gamma);
  const A d_pt = gamma == T(0) ? A(A::Zero(n)) : A(-(at * ce * gamma * pow_array(m, gamma - T(1))));
  // p_t = p*y + (1-p)*(1-y); ce'(x) = p - y; sigmoid'(x) = p (1 - p)
  return d_ce * (p - y) + (d_pt * y - d_pt * (T(1) - y)) * (p * (T(1) - p));
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
/// alpha_t = alpha*y + (1-alpha)*(1-y) when alpha >= 0; each row's sum times
/// row_weight[r] when given (SimOTA's per-point weights).
template <class T>
Var<T> sigmoid_focal_loss(const Var<T>& logits, const Tensor<T>& targets, T alpha = T(0.25), T gamma = T(2),
                          const std::vector<T>& row_weight = {}) {
  using A = detail::LossArr<T>;
  using M = detail::LossMap<T>;
  const Tensor<T>& X = logits.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("sigmoid_focal_loss", X, targets, row_weight.size(), rows);
  const T* xd = X.data();
  const T* yd = targets.data();
  const double total = detail::loss_sum<T>(rows, cols, row_weight, [&](int64_t off, int64_t n, A& out) {
    out = detail::focal_terms<T>(M(xd + off, n), M(yd + off, n), alpha, gamma);
  });
  return make_op<T>(detail::loss_scalar<T>(total), {logits}, "sigmoid_focal_loss",
                    [=, Yk = detail::loss_keep(targets, logits)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* xv = out.inputs[0]->value.data();
    const T* yv = Yk.data();
    detail::loss_grad<T>(out.input_grad(0).data(), rows, cols, row_weight, out.grad[0], [&](int64_t off, int64_t n, A& d) {
      d = detail::focal_grads<T>(M(xv + off, n), M(yv + off, n), alpha, gamma);
    });
  });
}
/// The same focal loss per element (reduction 'none'): a Var of the logits'
/// shape. TriDet reweights its positive elements before summing.
template <class T>
Var<T> sigmoid_focal_loss_elementwise(const Var<T>& logits, const Tensor<T>& targets, T alpha = T(0.25), T gamma = T(2)) {
  using A = detail::LossArr<T>;
  using M = detail::LossMap<T>;
  const Tensor<T>& X = logits.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("sigmoid_focal_loss_elementwise", X, targets, 0, rows);
  const int64_t n = X.numel();
  Tensor<T> Y(X.shape());
  const A o = detail::focal_terms<T>(M(X.data(), n), M(targets.data(), n), alpha, gamma);
  std::copy(o.data(), o.data() + n, Y.data());
  return make_op<T>(std::move(Y), {logits}, "sigmoid_focal_loss_elementwise",
                    [=, Yk = detail::loss_keep(targets, logits)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const A d = M(out.grad.data(), n) * detail::focal_grads<T>(M(out.inputs[0]->value.data(), n), M(Yk.data(), n), alpha, gamma);
    T* dx = out.input_grad(0).data();
    for (int64_t i = 0; i < n; ++i) dx[i] += d[i];
  });
}

/// ctr_giou_loss_1d with reduction 'none' (which the reference reduces to
/// 1 - IoU): pred/target (N, 2) distances -> (N,) per row, with the gradient
/// of pred (torch.min's even split on ties, clamp(min=eps) passing where
/// union >= eps).
template <class T>
Var<T> iou_loss_1d_rows(const Var<T>& pred, const Tensor<T>& target, T eps = T(1e-8)) {
  const Tensor<T>& X = pred.value();
  FLOWLESS_CHECK(X.dim() == 2 && X.size(1) == 2, "iou_loss_1d_rows: pred must be (N, 2), got ", X.shape().str());
  detail::loss_check("iou_loss_1d_rows", X, target, 0, X.size(0));
  const int64_t N = X.size(0);
  Tensor<T> Y(Shape{N});
  for (int64_t r = 0; r < N; ++r) {
    const T lp = X[2 * r], rp = X[2 * r + 1], lg = target[2 * r], rg = target[2 * r + 1];
    const T intsct = std::min(rp, rg) + std::min(lp, lg);
    const T unio = (lp + rp) + (lg + rg) - intsct;
    Y[r] = T(1) - intsct / std::max(unio, eps);
  }
  return make_op<T>(std::move(Y), {pred}, "iou_loss_1d_rows", [=, Tg = detail::loss_keep(target, pred)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* x = out.inputs[0]->value.data();
    const T* t = Tg.data();
    T* dx = out.input_grad(0).data();
    for (int64_t r = 0; r < N; ++r) {
      const T lp = x[2 * r], rp = x[2 * r + 1], lg = t[2 * r], rg = t[2 * r + 1];
      const T intsct = std::min(rp, rg) + std::min(lp, lg);
      const T unio = (lp + rp) + (lg + rg) - intsct;
      const T uc = std::max(unio, eps);
      const T d_iou = -out.grad[r];
      const T d_union = unio >= eps ? -d_iou * intsct / (uc * uc) : T(0);
      const T d_int = d_iou / uc - d_union;
      dx[2 * r] += d_union + d_int * detail::minmax_grad(lp, lg, true);
      dx[2 * r + 1] += d_union + d_int * detail::minmax_grad(rp, rg, true);
    }
  });
}

/// ctr_diou_loss_1d, summed over rows: pred/target (N, 2) = (left, right)
/// distances from the same point; row r's loss times row_weight[r] when given.
template <class T>
Var<T> diou_loss_1d(const Var<T>& pred, const Tensor<T>& target, T eps = T(1e-8), const std::vector<T>& row_weight = {}) {
  const Tensor<T>& X = pred.value();
  FLOWLESS_CHECK(X.dim() == 2 && X.size(1) == 2, "diou_loss_1d: pred must be (N, 2), got ", X.shape().str());
  detail::loss_check("diou_loss_1d", X, target, row_weight.size(), X.size(0));
  const int64_t N = X.size(0);
  const T* xd = X.data();
  const T* td = target.data();
  // One "row" per segment: loss_sum over N rows of one term each.
  const double total = detail::loss_sum<T>(N, 1, row_weight, [&](int64_t r0, int64_t n, detail::LossArr<T>& out) {
    out.resize(n);
    for (int64_t r = r0; r < r0 + n; ++r) {
      const T lp = xd[2 * r], rp = xd[2 * r + 1], lg = td[2 * r], rg = td[2 * r + 1];
      const T lkis = std::min(lp, lg), rkis = std::min(rp, rg);
      const T intsct = rkis + lkis;
      const T unio = (lp + rp) + (lg + rg) - intsct;
      const T iou = intsct / std::max(unio, eps);
      const T lc = std::max(lp, lg), rc = std::max(rp, rg);
      const T len_c = lc + rc;
      const T rho = T(0.5) * (rp - lp - rg + lg);
      const T ratio = rho / std::max(len_c, eps);
      out[r - r0] = (T(1) - iou) + ratio * ratio;
    }
  });
  return make_op<T>(detail::loss_scalar<T>(total), {pred}, "diou_loss_1d",
                    [=, Tg = detail::loss_keep(target, pred)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g0 = out.grad[0];
    const T* x = out.inputs[0]->value.data();
    const T* t = Tg.data();
    T* dx = out.input_grad(0).data();
    parallel_for(N, 1024, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T g = row_weight.empty() ? g0 : g0 * row_weight[static_cast<size_t>(r)];
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
  using A = detail::LossArr<T>;
  using M = detail::LossMap<T>;
  const Tensor<T>& X = x.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("mse_loss", X, target, row_weight.size(), rows);
  const T* xd = X.data();
  const T* td = target.data();
  const double total = detail::loss_sum<T>(rows, cols, row_weight, [&](int64_t off, int64_t n, A& out) {
    out = (M(xd + off, n) - M(td + off, n)).square();
  });
  return make_op<T>(detail::loss_scalar<T>(total), {x}, "mse_loss",
                    [=, Tk = detail::loss_keep(target, x)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* xv = out.inputs[0]->value.data();
    const T* tv = Tk.data();
    detail::loss_grad<T>(out.input_grad(0).data(), rows, cols, row_weight, out.grad[0],
                         [&](int64_t off, int64_t n, A& d) { d = T(2) * (M(xv + off, n) - M(tv + off, n)); });
  });
}

/// Binary cross-entropy with logits and soft targets, summed (row-weighted),
/// per element as PyTorch: (1 - y) * x + m + log(exp(-m) + exp(-x - m)), m = max(-x, 0).
template <class T>
Var<T> bce_with_logits(const Var<T>& logits, const Tensor<T>& target_probs, const std::vector<T>& row_weight = {}) {
  using A = detail::LossArr<T>;
  using M = detail::LossMap<T>;
  const Tensor<T>& X = logits.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("bce_with_logits", X, target_probs, row_weight.size(), rows);
  const T* xd = X.data();
  const T* td = target_probs.data();
  const double total = detail::loss_sum<T>(rows, cols, row_weight, [&](int64_t off, int64_t n, A& out) {
    out = detail::bce_logits_terms<T>(M(xd + off, n), M(td + off, n));
  });
  return make_op<T>(detail::loss_scalar<T>(total), {logits}, "bce_with_logits",
                    [=, Tk = detail::loss_keep(target_probs, logits)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* xv = out.inputs[0]->value.data();
    const T* tv = Tk.data();
    detail::loss_grad<T>(out.input_grad(0).data(), rows, cols, row_weight, out.grad[0],
                         [&](int64_t off, int64_t n, A& d) {
      d = (T(1) + (-M(xv + off, n)).exp()).inverse() - M(tv + off, n);
    });
  });
}

/// Sum over rows r of w_r * sum_c |x - t| (gradient sign(x - t), 0 at 0).
template <class T>
Var<T> l1_loss(const Var<T>& x, const Tensor<T>& target, const std::vector<T>& row_weight = {}) {
  using A = detail::LossArr<T>;
  using M = detail::LossMap<T>;
  const Tensor<T>& X = x.value();
  int64_t rows, cols;
  detail::loss_rows(X, rows, cols);
  detail::loss_check("l1_loss", X, target, row_weight.size(), rows);
  const T* xd = X.data();
  const T* td = target.data();
  const double total = detail::loss_sum<T>(rows, cols, row_weight, [&](int64_t off, int64_t n, A& out) {
    out = (M(xd + off, n) - M(td + off, n)).abs();
  });
  return make_op<T>(detail::loss_scalar<T>(total), {x}, "l1_loss",
                    [=, Tk = detail::loss_keep(target, x)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* xv = out.inputs[0]->value.data();
    const T* tv = Tk.data();
    detail::loss_grad<T>(out.input_grad(0).data(), rows, cols, row_weight, out.grad[0],
                         [&](int64_t off, int64_t n, A& d) {
      d = (M(xv + off, n) - M(tv + off, n)).unaryExpr([](T e) { return e > T(0) ? T(1) : (e < T(0) ? T(-1) : T(0)); });
    });
  });
}

}  // namespace flowless
