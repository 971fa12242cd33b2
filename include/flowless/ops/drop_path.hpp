// flowless/ops/drop_path.hpp - stochastic depth per sample.
//
//   y = drop_path(x, prob, training, rng)
//   x : (B, ...) any shape with the batch first; y: same shape
// The reference's drop_path: identity (x itself is returned) when !training or
// prob == 0; otherwise, for each sample b in order, one uniform u_b = rng.uniform()
// is drawn and
//   mask_b = floor((1 - prob) + u_b)        (1 with probability 1 - prob, else 0)
//   y[b]   = (x[b] / (1 - prob)) * mask_b
// The gradient is dy[b] / (1 - prob) * mask_b. prob must lie in [0, 1).
// (AffineDropPath = drop_path(mul_channels(x, scale)).)
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "flowless/core/random.hpp"
#include "flowless/ops/elementwise.hpp"

namespace flowless {

template <class T>
Var<T> drop_path(const Var<T>& x, double prob, bool training, Rng& rng) {
  FLOWLESS_CHECK(x.defined(), "drop_path: undefined input");
  FLOWLESS_CHECK(prob >= 0.0 && prob < 1.0, "drop_path: probability ", prob, " not in [0, 1)");
  if (!training || prob == 0.0) return x;
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd >= 1, "drop_path: scalar input");
  const int64_t B = s[0];
  const int64_t inner = B == 0 ? 0 : x.value().numel() / B;
  const double keep = 1.0 - prob;
  std::vector<T> mask(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) mask[b] = T(std::floor(keep + rng.uniform()));
  const T kp = T(keep);
  Tensor<T> Y(s);
  const T* px = x.value().data();
  T* py = Y.data();
  for (int64_t b = 0; b < B; ++b) {
    const T m = mask[b];
    const T* xb = px + b * inner;
    T* yb = py + b * inner;
    detail::ew_for(inner, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) yb[i] = (xb[i] / kp) * m;
    });
  }
  return make_op<T>(std::move(Y), {x}, "drop_path", [B, inner, kp, mask = std::move(mask)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    auto [dg, fresh] = out.input_grad_store(0);  // stored when fresh, else added
    T* d = dg->data();
    for (int64_t b = 0; b < B; ++b) {
      const T m = mask[b];
      T* db = d + b * inner;
      if (m == T(0)) {
        if (fresh) std::fill(db, db + inner, T(0));
        continue;
      }
      const T* gb = g + b * inner;
      detail::ew_for(inner, [&, fresh = fresh](int64_t i0, int64_t i1) {
        detail::EwArr<T> da(db + i0, i1 - i0);
        detail::ew_store_or_add(da, (detail::EwCArr<T>(gb + i0, i1 - i0) / kp) * m, fresh);
      });
    }
  });
}

}  // namespace flowless
