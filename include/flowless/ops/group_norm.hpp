// flowless/ops/group_norm.hpp - GroupNorm over time and a group of channels,
// without an affine transform (TemporalMaxer's FPNIdentity neck:
// nn.GroupNorm(G, C, affine=False) on (B, C, T)).
//
//   y = group_norm_time(x, groups, eps)
//   x : (B, T, C) with C divisible by groups; group g holds channels
//       [g * C/G, (g + 1) * C/G)
//   y : same shape; per batch element and group, over its T x C/G values:
//       y = (x - mean) / sqrt(var + eps), var biased
// Every step of the buffer counts, padded ones included, as in the reference:
// a video's outputs depend on how far its buffer was padded (the reference
// pads inputs shorter than max_seq_len to max_seq_len at inference; use
// inference_padding "max_seq_len" to match it).
//
// Sums are accumulated in double, per (batch, group) task, so forward and
// backward do not depend on the thread count.
#pragma once

#include <cmath>
#include <vector>

#include "flowless/ops/elementwise.hpp"

namespace flowless {

template <class T>
Var<T> group_norm_time(const Var<T>& x, int groups, T eps = T(1e-5)) {
  FLOWLESS_CHECK(x.defined(), "group_norm_time: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd == 3, "group_norm_time: expected (B, T, C), got ", s.str());
  const int64_t B = s[0], L = s[1], C = s[2];
  FLOWLESS_CHECK(groups >= 1 && C % groups == 0, "group_norm_time: ", C, " channels do not split into ", groups,
                 " groups");
  FLOWLESS_CHECK(L >= 1, "group_norm_time: empty sequence in ", s.str());
  const int64_t G = groups, Cg = C / G;
  const double n = double(L) * double(Cg);
  Tensor<T> Y(s);
  const T* px = x.value().data();
  T* py = Y.data();
  std::vector<double> stats(static_cast<size_t>(2 * B * G));  // mean, 1/sqrt(var + eps)
  parallel_for(B * G, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t b = j / G, c0 = (j % G) * Cg;
      const T* xb = px + b * L * C + c0;
      double sum = 0;
      for (int64_t t = 0; t < L; ++t)
        for (int64_t c = 0; c < Cg; ++c) sum += double(xb[t * C + c]);
      const double mu = sum / n;
      double sq = 0;
      for (int64_t t = 0; t < L; ++t)
        for (int64_t c = 0; c < Cg; ++c) {
          const double d = double(xb[t * C + c]) - mu;
          sq += d * d;
        }
      const double rstd = 1.0 / std::sqrt(sq / n + double(eps));
      T* yb = py + b * L * C + c0;
      for (int64_t t = 0; t < L; ++t)
        for (int64_t c = 0; c < Cg; ++c) yb[t * C + c] = T((double(xb[t * C + c]) - mu) * rstd);
      stats[2 * j] = mu;
      stats[2 * j + 1] = rstd;
    }
  });

  return make_op<T>(std::move(Y), {x}, "group_norm_time", [B, L, C, G, Cg, n, stats = std::move(stats)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* px = out.inputs[0]->value.data();
    const T* dy = out.grad.data();
    auto [g, fresh] = out.input_grad_store(0);
    T* dx = g->data();
    const bool store = fresh;
    // dx = rstd * (dy - mean(dy) - xhat * mean(dy * xhat)) over the group.
    parallel_for(B * G, 1, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t off = (j / G) * L * C + (j % G) * Cg;
        const double mu = stats[2 * j], rstd = stats[2 * j + 1];
        double m1 = 0, m2 = 0;
        for (int64_t t = 0; t < L; ++t)
          for (int64_t c = 0; c < Cg; ++c) {
            const int64_t i = off + t * C + c;
            const double xh = (double(px[i]) - mu) * rstd;
            m1 += double(dy[i]);
            m2 += double(dy[i]) * xh;
          }
        m1 /= n;
        m2 /= n;
        for (int64_t t = 0; t < L; ++t)
          for (int64_t c = 0; c < Cg; ++c) {
            const int64_t i = off + t * C + c;
            const double xh = (double(px[i]) - mu) * rstd;
            const T v = T(rstd * (double(dy[i]) - m1 - xh * m2));
            dx[i] = store ? v : dx[i] + v;
          }
      }
    });
  });
}

}  // namespace flowless
