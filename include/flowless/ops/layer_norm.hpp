// flowless/ops/layer_norm.hpp - LayerNorm over the channel (last) dimension.
//
//   y = layer_norm(x, gamma, beta, eps)
//   x     : (..., C), e.g. (B, T, C); every row of C values is normalised
//   gamma : numel C (checkpoints store (1, C, 1)) or an undefined Var (no scale)
//   beta  : numel C or an undefined Var (no shift)
//   y     : same shape as x
// Exactly the reference's LayerNorm on (B, C, T):
//   mu = mean(x), r = x - mu, var = mean(r^2) (biased), y = r / sqrt(var + eps) * gamma + beta
// computed in the scalar type with a two-pass loop. No mask: padded rows are
// normalised like the others, as in the reference.
//
// Implementation: rows in fixed parallel chunks, each row's reductions and
// updates are Eigen array expressions over the contiguous C values. The
// gamma/beta gradients are per-chunk partial sums combined in chunk order, so
// forward and backward are bitwise identical for any thread count.
#pragma once

#include <cmath>
#include <vector>

#include "flowless/ops/elementwise.hpp"

namespace flowless {

template <class T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& gamma, const Var<T>& beta, T eps = T(1e-5)) {
  FLOWLESS_CHECK(x.defined(), "layer_norm: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd >= 1, "layer_norm: scalar input");
  const int64_t C = s[s.nd - 1];
  FLOWLESS_CHECK(C > 0, "layer_norm: zero channels in ", s.str());
  const int64_t R = x.value().numel() / C;
  const bool has_g = gamma.defined(), has_b = beta.defined();
  if (has_g) FLOWLESS_CHECK(gamma.value().numel() == C, "layer_norm: gamma has ", gamma.value().numel(), " values for ", C, " channels");
  if (has_b) FLOWLESS_CHECK(beta.value().numel() == C, "layer_norm: beta has ", beta.value().numel(), " values for ", C, " channels");

  using Arr = detail::EwArr<T>;
  using CArr = detail::EwCArr<T>;
  Tensor<T> Y(s);
  const T* px = x.value().data();
  const T* pg = has_g ? gamma.value().data() : nullptr;
  const T* pb = has_b ? beta.value().data() : nullptr;
  T* py = Y.data();
  // Per row: mean and 1/sqrt(var + eps), kept for the backward.
  std::vector<T> stats(static_cast<size_t>(2 * R));
  const int64_t grain = std::max<int64_t>(1, detail::ew_row_grain(C) / 4);
  parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      CArr xr(px + r * C, C);
      Arr yr(py + r * C, C);
      const T mu = xr.sum() / T(C);
      yr = xr - mu;  // residual, reused below
      const T var = yr.square().sum() / T(C);
      const T den = std::sqrt(var + eps);
      if (has_g && has_b)
        yr = yr / den * CArr(pg, C) + CArr(pb, C);
      else if (has_g)
        yr = yr / den * CArr(pg, C);
      else if (has_b)
        yr = yr / den + CArr(pb, C);
      else
        yr = yr / den;
      stats[2 * r] = mu;
      stats[2 * r + 1] = T(1) / den;
    }
  });

  return make_op<T>(std::move(Y), {x, gamma, beta}, "layer_norm",
                    [R, C, has_g, stats = std::move(stats)](Node<T>& out) {
    const bool need_x = out.needs_grad(0), need_g = out.needs_grad(1), need_b = out.needs_grad(2);
    if (!need_x && !need_g && !need_b) return;
    const T* px = out.inputs[0]->value.data();
    const T* pg = has_g ? out.inputs[1]->value.data() : nullptr;
    const T* dy = out.grad.data();
    // dx is stored when fresh (input_grad_store: no zero fill, no re-read), else added
    T* dx = nullptr;
    bool dx_fresh = false;
    if (need_x) {
      auto [g, fresh] = out.input_grad_store(0);
      dx = g->data();
      dx_fresh = fresh;
    }
    const int64_t grain = detail::ew_row_grain(C);
    const int64_t nch = ThreadPool::num_chunks(R, grain);
    std::vector<T> pgam(need_g ? static_cast<size_t>(nch * C) : 0, T(0));
    std::vector<T> pbet(need_b ? static_cast<size_t>(nch * C) : 0, T(0));
    parallel_for(R, grain, [&](int64_t r0, int64_t r1) {
      const int64_t ch = r0 / grain;
      Eigen::Array<T, Eigen::Dynamic, 1> xhat(C), gh(C);
      for (int64_t r = r0; r < r1; ++r) {
        const T mu = stats[2 * r], rstd = stats[2 * r + 1];
        CArr xr(px + r * C, C);
        CArr dr(dy + r * C, C);
        xhat = (xr - mu) * rstd;
        if (need_g) Arr(pgam.data() + ch * C, C) += dr * xhat;
        if (need_b) Arr(pbet.data() + ch * C, C) += dr;
        if (need_x) {
          if (has_g)
            gh = dr * CArr(pg, C);
          else
            gh = dr;
          const T m1 = gh.sum() / T(C);
          const T m2 = (gh * xhat).sum() / T(C);
          Arr dxr(dx + r * C, C);
          detail::ew_store_or_add(dxr, rstd * (gh - m1 - xhat * m2), dx_fresh);
        }
      }
    });
    if (need_g) {
      T* dg = out.input_grad(1).data();
      for (int64_t ch = 0; ch < nch; ++ch)
        for (int64_t c = 0; c < C; ++c) dg[c] += pgam[ch * C + c];
    }
    if (need_b) {
      T* db = out.input_grad(2).data();
      for (int64_t ch = 0; ch < nch; ++ch)
        for (int64_t c = 0; c < C; ++c) db[c] += pbet[ch * C + c];
    }
  });
}

}  // namespace flowless
