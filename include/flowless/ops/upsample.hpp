// flowless/ops/upsample.hpp - nearest-neighbour upsampling along time.
//
//   y = upsample_nearest_time(x, factor)
//   x: (B, T, C) -> y: (B, T * factor, C), y[b, t, c] = x[b, t / factor, c]
// (torch's F.interpolate(scale_factor=f, mode='nearest') on (B, C, T)).
#pragma once

#include "flowless/autograd/variable.hpp"

namespace flowless {

template <class T>
Var<T> upsample_nearest_time(const Var<T>& x, int factor) {
  const Tensor<T>& X = x.value();
  FLOWLESS_CHECK(X.dim() == 3 && factor >= 1, "upsample_nearest_time: x must be (B, T, C), got ", X.shape().str());
  const int64_t B = X.size(0), Tn = X.size(1), C = X.size(2), To = Tn * factor;
  Tensor<T> Y(Shape{B, To, C});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < To; ++t) {
      const T* src = X.data() + (b * Tn + t / factor) * C;
      std::copy(src, src + C, Y.data() + (b * To + t) * C);
    }
  return make_op<T>(std::move(Y), {x}, "upsample_nearest_time", [=](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    T* dx = out.input_grad(0).data();
    const T* dy = out.grad.data();
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < To; ++t) {
        T* d = dx + (b * Tn + t / factor) * C;
        const T* g = dy + (b * To + t) * C;
        for (int64_t c = 0; c < C; ++c) d[c] += g[c];
      }
  });
}

}  // namespace flowless
