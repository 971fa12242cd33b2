// flowless/ops/activations.hpp - pointwise activations and the last-dim softmax.
//
//   relu(x)     max(x, 0); gradient 0 where x <= 0 (PyTorch's threshold_backward)
//   gelu(x)     x * 0.5 * (1 + erf(x / sqrt(2)))   exact form, as torch.nn.GELU()
//   sigmoid(x)  1 / (1 + exp(-x))
//   tanh(x)
//   softmax(x)  over the last dimension: exp(x - max) * (1 / sum)
// All keep the input shape (any rank). Inner loops are Eigen array
// expressions (vectorised erf/exp/tanh for float) over fixed chunks, so the
// results do not depend on the thread count.
//
// Note: flowless::tanh hides ::tanh for unqualified calls made inside
// namespace flowless; write std::tanh for scalars there.
#pragma once

#include <Eigen/Core>
#include <unsupported/Eigen/SpecialFunctions>
#include <cmath>
#include <limits>

#include "flowless/ops/elementwise.hpp"

namespace flowless {

template <class T>
Var<T> relu(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "relu: undefined input");
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] = px[i] > T(0) ? px[i] : (px[i] != px[i] ? px[i] : T(0));
  });
  return make_op<T>(std::move(Y), {x}, "relu", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    const T* y = out.value.data();
    auto [dg, fresh] = out.input_grad_store(0);
    T* d = dg->data();
    detail::ew_for(n, [&, fresh = fresh](int64_t i0, int64_t i1) {
      detail::EwArr<T> da(d + i0, i1 - i0);
      detail::ew_store_or_add(
          da, (detail::EwCArr<T>(y + i0, i1 - i0) > T(0)).select(detail::EwCArr<T>(g + i0, i1 - i0), T(0)), fresh);
    });
  });
}

template <class T>
Var<T> gelu(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "gelu: undefined input");
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  const T alpha = T(0.70710678118654752440);  // M_SQRT1_2
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    detail::EwCArr<T> xa(px + i0, i1 - i0);
    detail::EwArr<T> ya(py + i0, i1 - i0);
    ya = xa * T(0.5) * (T(1) + (xa * alpha).erf());
  });
  return make_op<T>(std::move(Y), {x}, "gelu", [n, alpha](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    const T* px = out.inputs[0]->value.data();
    auto [dg, fresh] = out.input_grad_store(0);
    T* d = dg->data();
    const T beta = T(1.12837916709551257390 * 0.70710678118654752440 * 0.5);  // M_2_SQRTPI * M_SQRT1_2 / 2
    detail::ew_for(n, [&, fresh = fresh](int64_t i0, int64_t i1) {
      detail::EwCArr<T> xa(px + i0, i1 - i0);
      detail::EwCArr<T> ga(g + i0, i1 - i0);
      detail::EwArr<T> da(d + i0, i1 - i0);
      detail::ew_store_or_add(
          da, ga * (T(0.5) * (T(1) + (xa * alpha).erf()) + xa * (beta * (xa * xa * T(-0.5)).exp())), fresh);
    });
  });
}

template <class T>
Var<T> sigmoid(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "sigmoid: undefined input");
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    detail::EwCArr<T> xa(px + i0, i1 - i0);
    detail::EwArr<T> ya(py + i0, i1 - i0);
    ya = T(1) / (T(1) + (-xa).exp());
  });
  return make_op<T>(std::move(Y), {x}, "sigmoid", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    const T* y = out.value.data();
    T* d = out.input_grad(0).data();
    detail::ew_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g[i] * (T(1) - y[i]) * y[i];
    });
  });
}

template <class T>
Var<T> tanh(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "tanh: undefined input");
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    detail::EwCArr<T> xa(px + i0, i1 - i0);
    detail::EwArr<T> ya(py + i0, i1 - i0);
    ya = xa.tanh();
  });
  return make_op<T>(std::move(Y), {x}, "tanh", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    const T* y = out.value.data();
    T* d = out.input_grad(0).data();
    detail::ew_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g[i] * (T(1) - y[i] * y[i]);
    });
  });
}

/// Softmax over the last dimension (any rank; a row is the last dim).
/// A row of all -inf gives NaN, as in PyTorch.
template <class T>
Var<T> softmax(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "softmax: undefined input");
  const int64_t C = detail::ew_last_dim(x.shape());
  const int64_t R = C == 0 ? 0 : x.value().numel() / C;
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  parallel_for(R, detail::ew_row_grain(C) / 4 + 1, [&](int64_t r0, int64_t r1) {
    // Shift each row by its max, exponentiate the whole chunk at once (fast
    // for short rows such as attention windows), then normalise each row.
    for (int64_t r = r0; r < r1; ++r) {
      detail::EwCArr<T> xa(px + r * C, C);
      detail::EwArr<T>(py + r * C, C) = xa - xa.maxCoeff();
    }
    detail::EwArr<T> chunk(py + r0 * C, (r1 - r0) * C);
    chunk = chunk.exp();
    for (int64_t r = r0; r < r1; ++r) {
      detail::EwArr<T> ya(py + r * C, C);
      const T inv = T(1) / ya.sum();
      ya *= inv;
    }
  });
  return make_op<T>(std::move(Y), {x}, "softmax", [R, C](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    const T* y = out.value.data();
    T* d = out.input_grad(0).data();
    parallel_for(R, detail::ew_row_grain(C) / 4 + 1, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        detail::EwCArr<T> ya(y + r * C, C);
        detail::EwCArr<T> ga(g + r * C, C);
        detail::EwArr<T> da(d + r * C, C);
        const T dot = (ya * ga).sum();
        da += ya * (ga - dot);
      }
    });
  });
}

}  // namespace flowless
