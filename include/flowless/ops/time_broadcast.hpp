// flowless/ops/time_broadcast.hpp - a per-sequence summary over time and its
// broadcast back over time (TriDet's SGP block: the instant-level branch's
// video-level gate phi = ReLU(FC(mean_t(x))) multiplies every step).
//
//   m = mean_time(x)                 x: (B, T, C) -> m: (B, 1, C)
//       m[b, 0, c] = sum_t x[b, t, c] / T over the WHOLE buffer, padded steps
//       included (the reference's out.mean(dim=-1) on the padded batch), so
//       the value depends on how far the buffer was padded.
//   y = mul_time_broadcast(x, g)     x: (B, T, C), g: (B, 1, C) -> (B, T, C)
//       y[b, t, c] = x[b, t, c] * g[b, 0, c]
//
// Sums are accumulated in double per (b, c) in time order, so forward and
// backward do not depend on the thread count. Both have backward passes
// (tests/test_sgp.cpp checks them against finite differences).
#pragma once

#include <cstdint>
#include <vector>

#include "flowless/ops/elementwise.hpp"

namespace flowless {

template <class T>
Var<T> mean_time(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "mean_time: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd == 3 && s[1] >= 1, "mean_time: expected (B, T, C) with T >= 1, got ", s.str());
  const int64_t B = s[0], L = s[1], C = s[2];
  Tensor<T> Y(Shape{B, 1, C});
  const T* px = x.value().data();
  T* py = Y.data();
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> acc(static_cast<size_t>(C));
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const T* xb = px + b * L * C;
      for (int64_t t = 0; t < L; ++t)
        for (int64_t c = 0; c < C; ++c) acc[size_t(c)] += double(xb[t * C + c]);
      for (int64_t c = 0; c < C; ++c) py[b * C + c] = T(acc[size_t(c)] / double(L));
    }
  });
  return make_op<T>(std::move(Y), {x}, "mean_time", [B, L, C](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* dy = out.grad.data();
    auto [g, fresh] = out.input_grad_store(0);
    T* dx = g->data();
    const bool store = fresh;
    const T inv = T(1.0 / double(L));
    parallel_for(B * L, detail::ew_row_grain(C), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* d = dy + (r / L) * C;
        T* o = dx + r * C;
        for (int64_t c = 0; c < C; ++c) o[c] = store ? d[c] * inv : o[c] + d[c] * inv;
      }
    });
  });
}

template <class T>
Var<T> mul_time_broadcast(const Var<T>& x, const Var<T>& g) {
  FLOWLESS_CHECK(x.defined() && g.defined(), "mul_time_broadcast: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd == 3, "mul_time_broadcast: x must be (B, T, C), got ", s.str());
  const int64_t B = s[0], L = s[1], C = s[2];
  FLOWLESS_CHECK(g.shape().nd == 3 && g.size(0) == B && g.size(1) == 1 && g.size(2) == C, "mul_time_broadcast: g ",
                 g.shape().str(), " is not (", B, ", 1, ", C, ") for x ", s.str());
  Tensor<T> Y(s);
  const T* px = x.value().data();
  const T* pg = g.value().data();
  T* py = Y.data();
  parallel_for(B * L, detail::ew_row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* gb = pg + (r / L) * C;
      for (int64_t c = 0; c < C; ++c) py[r * C + c] = px[r * C + c] * gb[c];
    }
  });
  return make_op<T>(std::move(Y), {x, g}, "mul_time_broadcast", [B, L, C](Node<T>& out) {
    const T* dy = out.grad.data();
    if (out.needs_grad(0)) {
      const T* pg = out.inputs[1]->value.data();
      auto [gx, fresh] = out.input_grad_store(0);
      T* dx = gx->data();
      const bool store = fresh;
      parallel_for(B * L, detail::ew_row_grain(C), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const T* gb = pg + (r / L) * C;
          for (int64_t c = 0; c < C; ++c) {
            const T v = dy[r * C + c] * gb[c];
            dx[r * C + c] = store ? v : dx[r * C + c] + v;
          }
        }
      });
    }
    if (out.needs_grad(1)) {
      const T* px = out.inputs[0]->value.data();
      auto [gg, fresh] = out.input_grad_store(1);
      T* dg = gg->data();
      const bool store = fresh;
      parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
        std::vector<double> acc(static_cast<size_t>(C));
        for (int64_t b = b0; b < b1; ++b) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t t = 0; t < L; ++t)
            for (int64_t c = 0; c < C; ++c) acc[size_t(c)] += double(dy[(b * L + t) * C + c]) * double(px[(b * L + t) * C + c]);
          for (int64_t c = 0; c < C; ++c) dg[b * C + c] = store ? T(acc[size_t(c)]) : dg[b * C + c] + T(acc[size_t(c)]);
        }
      });
    }
  });
}

}  // namespace flowless
