// flowless/ops/elementwise.hpp - elementwise, broadcast-by-channel, reduction
// and shape ops with their backward passes.
//
// Shapes (C = the last dimension, "rows" = numel / C):
//   add(a, b), sub(a, b), mul(a, b)   a, b same shape -> same shape
//   scale(x, s)                       x * constant s (T)
//   mul_scalar(x, s)                  s: numel 1 (a learnable scalar, e.g. the regression Scale)
//   power(x, e), rsub_scalar(s, x)    x^e and s - x for a constant e, s
//   mul_channels(x, g)                x: (..., C), g: numel C (any shape, e.g. (1, C, 1)); y[r, c] = x[r, c] * g[c]
//   add_channels(x, b)                x: (..., C), b: numel C;                            y[r, c] = x[r, c] + b[c]
//   mask_time(x, lengths)             x: (B, T, ...); rows t >= lengths[b] become 0; empty lengths = identity
//   sum(x), mean(x)                   -> Shape{} (numel 1)
//   concat_channels(xs)               (..., C_i) -> (..., sum C_i), leading dims equal
//   narrow_channels(x, start, len)    (..., C) -> (..., len), channels [start, start + len)
//   concat_time(xs)                   (B, T_i, ...) -> (B, sum T_i, ...)
//   narrow_time(x, start, len)        (B, T, ...) -> (B, len, ...), dim 1 [start, start + len)
//   gather_rows(x, rows)              x viewed as (R, C) -> (N, C); backward scatter-adds (duplicates allowed)
//   reshape(x, s)                     same storage, new shape (numel equal)
//
// Determinism: every reduction (sum, mean, the gradients of mul_scalar,
// mul_channels, add_channels, gather_rows) uses fixed chunks whose partial
// results are combined in chunk order, so results are bitwise identical for
// any thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/core/thread_pool.hpp"

namespace flowless {

namespace detail {

constexpr int64_t kEwGrain = 16384;  // elements per parallel chunk

template <class T>
using EwArr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using EwCArr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

/// fn(begin, end) over [0, n) in fixed chunks (parallel).
template <class F>
void ew_for(int64_t n, F&& fn) {
  parallel_for(n, kEwGrain, std::forward<F>(fn));
}

/// d = v into a fresh gradient buffer (Node::input_grad_store), d += v into one holding contributions.
template <class T, class Expr>
void ew_store_or_add(EwArr<T>& d, const Expr& v, bool fresh) {
  if (fresh)
    d = v;
  else
    d += v;
}

/// Rows per chunk for column reductions over a (rows, C) matrix: a function of C only.
inline int64_t ew_row_grain(int64_t C) { return std::max<int64_t>(64, kEwGrain / std::max<int64_t>(C, 1)); }

/// out[c] += sum over rows; fn(r0, r1, partial) adds rows [r0, r1) into a zeroed
/// partial of C values. Partials are combined in chunk order (thread-count independent).
template <class T, class F>
void ew_colreduce(int64_t rows, int64_t C, T* out, F&& fn) {
  const int64_t grain = ew_row_grain(C);
  const int64_t nch = ThreadPool::num_chunks(rows, grain);
  if (nch == 0) return;
  std::vector<T> part(static_cast<size_t>(nch * C), T(0));
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) { fn(r0, r1, part.data() + (r0 / grain) * C); });
  for (int64_t ch = 0; ch < nch; ++ch) {
    const T* p = part.data() + ch * C;
    for (int64_t c = 0; c < C; ++c) out[c] += p[c];
  }
}

/// Sum over [0, n) of fn(begin, end) (each a chunk's partial), combined in chunk order.
template <class T, class F>
T ew_total(int64_t n, F&& fn) {
  const int64_t nch = ThreadPool::num_chunks(n, kEwGrain);
  std::vector<T> part(static_cast<size_t>(nch), T(0));
  parallel_for(n, kEwGrain, [&](int64_t i0, int64_t i1) { part[i0 / kEwGrain] = fn(i0, i1); });
  T acc = T(0);
  for (T p : part) acc += p;
  return acc;
}

template <class T>
void ew_check_same(const Var<T>& a, const Var<T>& b, const char* op) {
  FLOWLESS_CHECK(a.defined() && b.defined(), op, ": undefined input");
  FLOWLESS_CHECK(a.shape() == b.shape(), op, ": shapes differ, ", a.shape().str(), " vs ", b.shape().str());
}

inline int64_t ew_last_dim(const Shape& s) { return s.nd == 0 ? 1 : s[s.nd - 1]; }

}  // namespace detail

// ---------------------------------------------------------------------------
// Binary ops on equal shapes.

template <class T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
  detail::ew_check_same(a, b, "add");
  const int64_t n = a.value().numel();
  Tensor<T> Y(a.shape());
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] = pa[i] + pb[i];
  });
  return make_op<T>(std::move(Y), {a, b}, "add", [n](Node<T>& out) {
    const T* g = out.grad.data();
    for (size_t k = 0; k < 2; ++k) {
      if (!out.needs_grad(k)) continue;
      auto [dg, fresh] = out.input_grad_store(k);  // k = 1 sees k = 0's store when a and b are one node
      T* d = dg->data();
      detail::ew_for(n, [&, fresh = fresh](int64_t i0, int64_t i1) {
        detail::EwArr<T> da(d + i0, i1 - i0);
        detail::ew_store_or_add(da, detail::EwCArr<T>(g + i0, i1 - i0), fresh);
      });
    }
  });
}

template <class T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
  detail::ew_check_same(a, b, "sub");
  const int64_t n = a.value().numel();
  Tensor<T> Y(a.shape());
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] = pa[i] - pb[i];
  });
  return make_op<T>(std::move(Y), {a, b}, "sub", [n](Node<T>& out) {
    const T* g = out.grad.data();
    if (out.needs_grad(0)) {
      T* d = out.input_grad(0).data();
      detail::ew_for(n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) d[i] += g[i];
      });
    }
    if (out.needs_grad(1)) {
      T* d = out.input_grad(1).data();
      detail::ew_for(n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) d[i] -= g[i];
      });
    }
  });
}

template <class T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
  detail::ew_check_same(a, b, "mul");
  const int64_t n = a.value().numel();
  Tensor<T> Y(a.shape());
  const T* pa = a.value().data();
  const T* pb = b.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] = pa[i] * pb[i];
  });
  return make_op<T>(std::move(Y), {a, b}, "mul", [n](Node<T>& out) {
    const T* g = out.grad.data();
    for (size_t k = 0; k < 2; ++k) {
      if (!out.needs_grad(k)) continue;
      const T* other = out.inputs[1 - k]->value.data();
      T* d = out.input_grad(k).data();
      detail::ew_for(n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) d[i] += g[i] * other[i];
      });
    }
  });
}

// ---------------------------------------------------------------------------
// Scalings and per-channel broadcasts.

/// y = x * s for a constant s.
template <class T>
Var<T> scale(const Var<T>& x, T s) {
  FLOWLESS_CHECK(x.defined(), "scale: undefined input");
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] = px[i] * s;
  });
  return make_op<T>(std::move(Y), {x}, "scale", [n, s](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    detail::ew_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g[i] * s;
    });
  });
}

/// y = x * s where s holds one value (a learnable scalar).
template <class T>
Var<T> mul_scalar(const Var<T>& x, const Var<T>& s) {
  FLOWLESS_CHECK(x.defined() && s.defined(), "mul_scalar: undefined input");
  FLOWLESS_CHECK(s.value().numel() == 1, "mul_scalar: s must hold one value, got shape ", s.shape().str());
  const int64_t n = x.value().numel();
  const T sv = s.value().data()[0];
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  T* py = Y.data();
  detail::ew_for(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) py[i] = px[i] * sv;
  });
  return make_op<T>(std::move(Y), {x, s}, "mul_scalar", [n](Node<T>& out) {
    const T* g = out.grad.data();
    const T sv = out.inputs[1]->value.data()[0];
    if (out.needs_grad(0)) {
      T* d = out.input_grad(0).data();
      detail::ew_for(n, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) d[i] += g[i] * sv;
      });
    }
    if (out.needs_grad(1)) {
      const T* px = out.inputs[0]->value.data();
      const T tot = detail::ew_total<T>(n, [&](int64_t i0, int64_t i1) {
        return (detail::EwCArr<T>(g + i0, i1 - i0) * detail::EwCArr<T>(px + i0, i1 - i0)).sum();
      });
      out.input_grad(1).data()[0] += tot;
    }
  });
}

/// y = x^e elementwise (torch.pow(x, e) for a Python float e); backward
/// e * x^(e - 1).
template <class T>
Var<T> power(const Var<T>& x, T e) {
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  for (int64_t i = 0; i < n; ++i) Y[i] = e == T(1) ? px[i] : std::pow(px[i], e);
  return make_op<T>(std::move(Y), {x}, "power", [n, e](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* px = out.inputs[0]->value.data();
    const T* g = out.grad.data();
    T* dx = out.input_grad(0).data();
    for (int64_t i = 0; i < n; ++i) dx[i] += g[i] * (e == T(1) ? T(1) : e * std::pow(px[i], e - T(1)));
  });
}

/// y = s - x elementwise (a Python scalar minus a tensor).
template <class T>
Var<T> rsub_scalar(T s, const Var<T>& x) {
  const int64_t n = x.value().numel();
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  for (int64_t i = 0; i < n; ++i) Y[i] = s - px[i];
  return make_op<T>(std::move(Y), {x}, "rsub_scalar", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* dx = out.input_grad(0).data();
    for (int64_t i = 0; i < n; ++i) dx[i] -= g[i];
  });
}

/// y[r, c] = x[r, c] * g[c]; x: (..., C), g: numel C (LayerScale).
template <class T>
Var<T> mul_channels(const Var<T>& x, const Var<T>& g) {
  FLOWLESS_CHECK(x.defined() && g.defined(), "mul_channels: undefined input");
  const int64_t C = detail::ew_last_dim(x.shape());
  FLOWLESS_CHECK(g.value().numel() == C, "mul_channels: ", g.value().numel(), " scales for ", C, " channels of ",
                 x.shape().str());
  const int64_t R = C == 0 ? 0 : x.value().numel() / C;
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  const T* pg = g.value().data();
  T* py = Y.data();
  parallel_for(R, detail::ew_row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < C; ++c) py[r * C + c] = px[r * C + c] * pg[c];
  });
  return make_op<T>(std::move(Y), {x, g}, "mul_channels", [R, C](Node<T>& out) {
    const T* dy = out.grad.data();
    if (out.needs_grad(0)) {
      const T* pg = out.inputs[1]->value.data();
      auto [g, fresh] = out.input_grad_store(0);
      T* dx = g->data();
      parallel_for(R, detail::ew_row_grain(C), [&, fresh = fresh](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          detail::EwArr<T> da(dx + r * C, C);
          detail::ew_store_or_add(da, detail::EwCArr<T>(dy + r * C, C) * detail::EwCArr<T>(pg, C), fresh);
        }
      });
    }
    if (out.needs_grad(1)) {
      const T* px = out.inputs[0]->value.data();
      detail::ew_colreduce<T>(R, C, out.input_grad(1).data(), [&](int64_t r0, int64_t r1, T* acc) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < C; ++c) acc[c] += dy[r * C + c] * px[r * C + c];
      });
    }
  });
}

/// y[r, c] = x[r, c] + b[c]; x: (..., C), b: numel C.
template <class T>
Var<T> add_channels(const Var<T>& x, const Var<T>& b) {
  FLOWLESS_CHECK(x.defined() && b.defined(), "add_channels: undefined input");
  const int64_t C = detail::ew_last_dim(x.shape());
  FLOWLESS_CHECK(b.value().numel() == C, "add_channels: ", b.value().numel(), " biases for ", C, " channels of ",
                 x.shape().str());
  const int64_t R = C == 0 ? 0 : x.value().numel() / C;
  Tensor<T> Y(x.shape());
  const T* px = x.value().data();
  const T* pb = b.value().data();
  T* py = Y.data();
  parallel_for(R, detail::ew_row_grain(C), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < C; ++c) py[r * C + c] = px[r * C + c] + pb[c];
  });
  return make_op<T>(std::move(Y), {x, b}, "add_channels", [R, C](Node<T>& out) {
    const T* dy = out.grad.data();
    if (out.needs_grad(0)) {
      auto [g, fresh] = out.input_grad_store(0);
      T* dx = g->data();
      detail::ew_for(R * C, [&, fresh = fresh](int64_t i0, int64_t i1) {
        detail::EwArr<T> da(dx + i0, i1 - i0);
        detail::ew_store_or_add(da, detail::EwCArr<T>(dy + i0, i1 - i0), fresh);
      });
    }
    if (out.needs_grad(1)) {
      detail::ew_colreduce<T>(R, C, out.input_grad(1).data(), [&](int64_t r0, int64_t r1, T* acc) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < C; ++c) acc[c] += dy[r * C + c];
      });
    }
  });
}

// ---------------------------------------------------------------------------
// Time mask.

/// x: (B, T, ...) -> same shape with rows t >= lengths[b] set to 0 (the
/// reference's `x * mask`). Empty lengths, or lengths that all reach T, return
/// x unchanged (the same variable: nothing to mask, no copy).
template <class T>
Var<T> mask_time(const Var<T>& x, const std::vector<int>& lengths) {
  FLOWLESS_CHECK(x.defined(), "mask_time: undefined input");
  if (lengths.empty()) return x;
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd >= 2, "mask_time: x must be (B, T, ...), got ", s.str());
  const int64_t B = s[0], Tn = s[1];
  FLOWLESS_CHECK(int64_t(lengths.size()) == B, "mask_time: ", lengths.size(), " lengths for batch ", B);
  const int64_t inner = B * Tn == 0 ? 0 : x.value().numel() / (B * Tn);
  std::vector<int64_t> L(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    FLOWLESS_CHECK(lengths[b] >= 0, "mask_time: negative length ", lengths[b]);
    L[b] = std::min<int64_t>(lengths[b], Tn);
  }
  // Nothing to mask (every sequence fills the buffer, as a single video at
  // inference does): x itself, not a copy.
  if (std::all_of(L.begin(), L.end(), [Tn](int64_t l) { return l == Tn; })) return x;
  Tensor<T> Y(s);
  const T* px = x.value().data();
  T* py = Y.data();
  auto run = [B, Tn, inner](const std::vector<int64_t>& L, const T* src, T* dst, bool accumulate) {
    parallel_for(B * Tn, std::max<int64_t>(1, detail::kEwGrain / std::max<int64_t>(inner, 1)),
                 [&](int64_t r0, int64_t r1) {
                   for (int64_t r = r0; r < r1; ++r) {
                     const bool valid = (r % Tn) < L[r / Tn];
                     const T* a = src + r * inner;
                     T* d = dst + r * inner;
                     if (accumulate) {
                       if (valid)
                         for (int64_t c = 0; c < inner; ++c) d[c] += a[c];
                     } else if (valid) {
                       std::copy(a, a + inner, d);
                     } else {
                       std::fill(d, d + inner, T(0));
                     }
                   }
                 });
  };
  run(L, px, py, false);
  return make_op<T>(std::move(Y), {x}, "mask_time", [L = std::move(L), run](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    auto [dg, fresh] = out.input_grad_store(0);
    run(L, out.grad.data(), dg->data(), !fresh);
  });
}

// ---------------------------------------------------------------------------
// Reductions to a scalar.

/// Sum of all elements -> Shape{} (numel 1). Fixed-chunk summation order.
template <class T>
Var<T> sum(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "sum: undefined input");
  const int64_t n = x.value().numel();
  const T* px = x.value().data();
  const T tot = detail::ew_total<T>(n, [&](int64_t i0, int64_t i1) { return detail::EwCArr<T>(px + i0, i1 - i0).sum(); });
  Tensor<T> Y = Tensor<T>::full(Shape{}, tot);
  return make_op<T>(std::move(Y), {x}, "sum", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad.data()[0];
    T* d = out.input_grad(0).data();
    detail::ew_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g;
    });
  });
}

/// Mean of all elements (sum / numel) -> Shape{}.
template <class T>
Var<T> mean(const Var<T>& x) {
  FLOWLESS_CHECK(x.defined(), "mean: undefined input");
  const int64_t n = x.value().numel();
  FLOWLESS_CHECK(n > 0, "mean: empty input");
  const T* px = x.value().data();
  const T tot = detail::ew_total<T>(n, [&](int64_t i0, int64_t i1) { return detail::EwCArr<T>(px + i0, i1 - i0).sum(); });
  Tensor<T> Y = Tensor<T>::full(Shape{}, tot / T(n));
  return make_op<T>(std::move(Y), {x}, "mean", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T g = out.grad.data()[0] / T(n);
    T* d = out.input_grad(0).data();
    detail::ew_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g;
    });
  });
}

// ---------------------------------------------------------------------------
// Concatenation and slicing.

/// Concatenates along the last dimension; all other dimensions must agree.
template <class T>
Var<T> concat_channels(const std::vector<Var<T>>& xs) {
  FLOWLESS_CHECK(!xs.empty(), "concat_channels: no inputs");
  const Shape& s0 = xs[0].shape();
  FLOWLESS_CHECK(s0.nd >= 1, "concat_channels: scalar input");
  const int nd = s0.nd;
  std::vector<int64_t> Cs, offs;
  int64_t Ctot = 0;
  for (const auto& v : xs) {
    FLOWLESS_CHECK(v.defined(), "concat_channels: undefined input");
    const Shape& s = v.shape();
    bool ok = s.nd == nd;
    for (int i = 0; ok && i < nd - 1; ++i) ok = s[i] == s0[i];
    FLOWLESS_CHECK(ok, "concat_channels: shape ", s.str(), " does not match ", s0.str(), " outside the last dim");
    offs.push_back(Ctot);
    Cs.push_back(s[nd - 1]);
    Ctot += s[nd - 1];
  }
  Shape so = s0;
  so[nd - 1] = Ctot;
  int64_t rows = 1;
  for (int i = 0; i < nd - 1; ++i) rows *= s0[i];
  Tensor<T> Y(so);
  T* py = Y.data();
  std::vector<const T*> srcs;
  for (const auto& v : xs) srcs.push_back(v.value().data());
  parallel_for(rows, detail::ew_row_grain(Ctot), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (size_t k = 0; k < xs.size(); ++k)
        std::copy(srcs[k] + r * Cs[k], srcs[k] + (r + 1) * Cs[k], py + r * Ctot + offs[k]);
  });
  return make_op<T>(std::move(Y), std::vector<Var<T>>(xs), "concat_channels", [rows, Ctot, Cs, offs](Node<T>& out) {
    const T* g = out.grad.data();
    for (size_t k = 0; k < Cs.size(); ++k) {
      if (!out.needs_grad(k)) continue;
      T* d = out.input_grad(k).data();
      const int64_t Ck = Cs[k], o = offs[k];
      parallel_for(rows, detail::ew_row_grain(Ck), [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = 0; c < Ck; ++c) d[r * Ck + c] += g[r * Ctot + o + c];
      });
    }
  });
}

/// Channels [start, start + len) of the last dimension.
template <class T>
Var<T> narrow_channels(const Var<T>& x, int64_t start, int64_t len) {
  FLOWLESS_CHECK(x.defined(), "narrow_channels: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd >= 1, "narrow_channels: scalar input");
  const int64_t C = s[s.nd - 1];
  FLOWLESS_CHECK(start >= 0 && len >= 0 && start + len <= C, "narrow_channels: [", start, ", ", start + len,
                 ") of ", s.str());
  int64_t rows = 1;
  for (int i = 0; i < s.nd - 1; ++i) rows *= s[i];
  Shape so = s;
  so[s.nd - 1] = len;
  Tensor<T> Y(so);
  const T* px = x.value().data();
  T* py = Y.data();
  parallel_for(rows, detail::ew_row_grain(len), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::copy(px + r * C + start, px + r * C + start + len, py + r * len);
  });
  return make_op<T>(std::move(Y), {x}, "narrow_channels", [rows, C, start, len](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    parallel_for(rows, detail::ew_row_grain(len), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r)
        for (int64_t c = 0; c < len; ++c) d[r * C + start + c] += g[r * len + c];
    });
  });
}

/// (B, T_i, ...) -> (B, sum T_i, ...); dims other than 1 must agree.
template <class T>
Var<T> concat_time(const std::vector<Var<T>>& xs) {
  FLOWLESS_CHECK(!xs.empty(), "concat_time: no inputs");
  const Shape& s0 = xs[0].shape();
  FLOWLESS_CHECK(s0.nd >= 2, "concat_time: inputs must be (B, T, ...), got ", s0.str());
  const int nd = s0.nd;
  const int64_t B = s0[0];
  int64_t inner = 1;
  for (int i = 2; i < nd; ++i) inner *= s0[i];
  std::vector<int64_t> Ts, offs;
  int64_t Ttot = 0;
  for (const auto& v : xs) {
    FLOWLESS_CHECK(v.defined(), "concat_time: undefined input");
    const Shape& s = v.shape();
    bool ok = s.nd == nd;
    for (int i = 0; ok && i < nd; ++i) ok = (i == 1) || s[i] == s0[i];
    FLOWLESS_CHECK(ok, "concat_time: shape ", s.str(), " does not match ", s0.str(), " outside dim 1");
    offs.push_back(Ttot);
    Ts.push_back(s[1]);
    Ttot += s[1];
  }
  Shape so = s0;
  so[1] = Ttot;
  Tensor<T> Y(so);
  T* py = Y.data();
  std::vector<const T*> srcs;
  for (const auto& v : xs) srcs.push_back(v.value().data());
  const int64_t K = int64_t(xs.size());
  parallel_for(B * K, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t b = j / K, k = j % K, n = Ts[k] * inner;
      std::copy(srcs[k] + b * n, srcs[k] + (b + 1) * n, py + (b * Ttot + offs[k]) * inner);
    }
  });
  return make_op<T>(std::move(Y), std::vector<Var<T>>(xs), "concat_time", [B, inner, Ttot, Ts, offs](Node<T>& out) {
    const T* g = out.grad.data();
    for (size_t k = 0; k < Ts.size(); ++k) {
      if (!out.needs_grad(k)) continue;
      T* d = out.input_grad(k).data();
      const int64_t n = Ts[k] * inner;
      parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const T* src = g + (b * Ttot + offs[k]) * inner;
          T* dst = d + b * n;
          for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
        }
      });
    }
  });
}

/// Rows [start, start + len) of dim 1 of (B, T, ...).
template <class T>
Var<T> narrow_time(const Var<T>& x, int64_t start, int64_t len) {
  FLOWLESS_CHECK(x.defined(), "narrow_time: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd >= 2, "narrow_time: x must be (B, T, ...), got ", s.str());
  const int64_t B = s[0], Tn = s[1];
  FLOWLESS_CHECK(start >= 0 && len >= 0 && start + len <= Tn, "narrow_time: [", start, ", ", start + len, ") of ",
                 s.str());
  int64_t inner = 1;
  for (int i = 2; i < s.nd; ++i) inner *= s[i];
  Shape so = s;
  so[1] = len;
  Tensor<T> Y(so);
  const T* px = x.value().data();
  T* py = Y.data();
  parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      std::copy(px + (b * Tn + start) * inner, px + (b * Tn + start + len) * inner, py + b * len * inner);
  });
  return make_op<T>(std::move(Y), {x}, "narrow_time", [B, Tn, inner, start, len](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    const int64_t n = len * inner;
    parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* dst = d + (b * Tn + start) * inner;
        const T* src = g + b * n;
        for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
      }
    });
  });
}

/// x viewed as (R, C) (C = last dim) -> (N, C) with out[n] = x[rows[n]].
/// The backward scatter-adds; duplicated rows accumulate in index order.
template <class T>
Var<T> gather_rows(const Var<T>& x, const std::vector<int64_t>& rows) {
  FLOWLESS_CHECK(x.defined(), "gather_rows: undefined input");
  const Shape& s = x.shape();
  FLOWLESS_CHECK(s.nd >= 2, "gather_rows: x must have at least 2 dims, got ", s.str());
  const int64_t C = s[s.nd - 1];
  const int64_t R = C == 0 ? 0 : x.value().numel() / C;
  const int64_t N = int64_t(rows.size());
  for (int64_t r : rows) FLOWLESS_CHECK(r >= 0 && r < R, "gather_rows: row ", r, " out of range [0, ", R, ")");
  Tensor<T> Y(Shape{N, C});
  const T* px = x.value().data();
  T* py = Y.data();
  parallel_for(N, detail::ew_row_grain(C), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) std::copy(px + rows[n] * C, px + (rows[n] + 1) * C, py + n * C);
  });
  return make_op<T>(std::move(Y), {x}, "gather_rows", [rows, C](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    const int64_t N = int64_t(rows.size());
    // Column chunks: each chunk visits every index in order, so duplicates add deterministically.
    parallel_for(C, 64, [&](int64_t c0, int64_t c1) {
      for (int64_t n = 0; n < N; ++n) {
        T* dr = d + rows[n] * C;
        const T* gr = g + n * C;
        for (int64_t c = c0; c < c1; ++c) dr[c] += gr[c];
      }
    });
  });
}

/// Same storage, new shape with the same number of elements.
template <class T>
Var<T> reshape(const Var<T>& x, const Shape& s) {
  FLOWLESS_CHECK(x.defined(), "reshape: undefined input");
  FLOWLESS_CHECK(s.numel() == x.value().numel(), "reshape: ", x.shape().str(), " -> ", s.str());
  const int64_t n = s.numel();
  return make_op<T>(x.value().reshape(s), {x}, "reshape", [n](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    detail::ew_for(n, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) d[i] += g[i];
    });
  });
}

}  // namespace flowless
