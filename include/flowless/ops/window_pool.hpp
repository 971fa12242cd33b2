// flowless/ops/window_pool.hpp - masked centred sliding-window aggregation
// over time (stride 1, output length = input length).
//
//   y = window_pool1d(x, lengths, window, mode)
//   x       : (B, T, C) time-major
//   lengths : valid length per batch element (prefix masks); empty = all T valid
//   window  : odd k >= 1, half width h = k / 2
//   mode    : WindowAgg::mean or WindowAgg::max
//   y       : (B, T, C)
// For a valid step t < len_b the window is J_t = [max(0, t - h), min(len_b, t + h + 1)):
// positions outside the sequence and in the padded tail are EXCLUDED (not
// zero-padded), so
//   mean: y[b, t, c] = (1 / |J_t|) * sum_{j in J_t} x[b, j, c]
//   max:  y[b, t, c] = max_{j in J_t} x[b, j, c]   (NaN propagates)
// and for t >= len_b, y = 0 with no gradient. len_b = 0 gives an all-zero row.
// Backward: mean spreads g_t / |J_t| over J_t; max sends g_t to the FIRST
// maximal element of J_t (PyTorch's CPU rule for max pooling). Both are
// computed as gathers per input row (dx[j] = sum over the outputs whose
// window holds j), so every output element is written by one chunk and the
// result does not depend on the thread count. Cost O(B T C k).
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/ops/elementwise.hpp"

namespace flowless {

enum class WindowAgg { mean, max };

inline WindowAgg parse_window_agg(const std::string& s) {
  if (s == "mean") return WindowAgg::mean;
  if (s == "max") return WindowAgg::max;
  FLOWLESS_FAIL("window aggregation '", s, "' is not supported (mean, max)");
}
inline const char* window_agg_name(WindowAgg a) { return a == WindowAgg::mean ? "mean" : "max"; }

namespace detail {

inline std::vector<int64_t> window_lengths(const std::vector<int>& lengths, int64_t B, int64_t Tn, const char* op) {
  FLOWLESS_CHECK(lengths.empty() || int64_t(lengths.size()) == B, op, ": ", lengths.size(), " lengths for batch ", B);
  std::vector<int64_t> L(static_cast<size_t>(B), Tn);
  for (int64_t b = 0; b < int64_t(lengths.size()); ++b) {
    FLOWLESS_CHECK(lengths[b] >= 0, op, ": negative length ", lengths[b]);
    L[b] = std::min<int64_t>(lengths[b], Tn);
  }
  return L;
}

}  // namespace detail

template <class T>
Var<T> window_pool1d(const Var<T>& x, const std::vector<int>& lengths, int window, WindowAgg mode = WindowAgg::mean) {
  FLOWLESS_CHECK(x.defined(), "window_pool1d: undefined input");
  const Tensor<T>& X = x.value();
  FLOWLESS_CHECK(X.dim() == 3, "window_pool1d: x must be (B, T, C), got ", X.shape().str());
  FLOWLESS_CHECK(window >= 1 && window % 2 == 1, "window_pool1d: the window must be odd and >= 1, got ", window);
  const int64_t B = X.size(0), Tn = X.size(1), C = X.size(2), h = window / 2;
  FLOWLESS_CHECK(Tn < int64_t(std::numeric_limits<int32_t>::max()), "window_pool1d: sequence too long");
  std::vector<int64_t> L = detail::window_lengths(lengths, B, Tn, "window_pool1d");
  const bool is_max = mode == WindowAgg::max;
  const bool record = grad_enabled() && x.requires_grad();
  Tensor<T> Y(X.shape());
  std::vector<int32_t> idx(is_max && record ? static_cast<size_t>(B * Tn * C) : 0);
  const T* px = X.data();
  T* py = Y.data();
  const int64_t grain = std::max<int64_t>(1, detail::ew_row_grain(C) / std::max<int64_t>(1, window));
  parallel_for(B * Tn, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t b = r / Tn, t = r % Tn;
      T* yr = py + r * C;
      if (t >= L[b]) {
        std::fill(yr, yr + C, T(0));
        continue;
      }
      const int64_t ja = std::max<int64_t>(0, t - h), jb = std::min<int64_t>(L[b], t + h + 1);
      const T* xb = px + b * Tn * C;
      std::copy(xb + ja * C, xb + (ja + 1) * C, yr);
      if (!is_max) {
        for (int64_t j = ja + 1; j < jb; ++j) {
          const T* xr = xb + j * C;
          for (int64_t c = 0; c < C; ++c) yr[c] += xr[c];
        }
        const T inv = T(1) / T(jb - ja);
        for (int64_t c = 0; c < C; ++c) yr[c] *= inv;
      } else if (record) {
        int32_t* ir = idx.data() + r * C;
        std::fill(ir, ir + C, int32_t(ja));
        for (int64_t j = ja + 1; j < jb; ++j) {
          const T* xr = xb + j * C;
          for (int64_t c = 0; c < C; ++c) {
            const bool take = (xr[c] > yr[c]) || (xr[c] != xr[c] && yr[c] == yr[c]);
            yr[c] = take ? xr[c] : yr[c];
            ir[c] = take ? int32_t(j) : ir[c];
          }
        }
      } else {
        for (int64_t j = ja + 1; j < jb; ++j) {
          const T* xr = xb + j * C;
          for (int64_t c = 0; c < C; ++c) {
            const bool take = (xr[c] > yr[c]) || (xr[c] != xr[c] && yr[c] == yr[c]);
            yr[c] = take ? xr[c] : yr[c];
          }
        }
      }
    }
  });
  return make_op<T>(std::move(Y), {x}, is_max ? "window_max1d" : "window_mean1d",
                    [B, Tn, C, h, grain, is_max, L = std::move(L), idx = std::move(idx)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    parallel_for(B * Tn, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / Tn, j = r % Tn, len = L[b];
        if (j >= len) continue;
        // Outputs t whose window holds j: t in [j - h, j + h] within [0, len).
        const int64_t ta = std::max<int64_t>(0, j - h), tb = std::min<int64_t>(len, j + h + 1);
        T* dr = d + r * C;
        for (int64_t t = ta; t < tb; ++t) {
          const T* gr = g + (b * Tn + t) * C;
          if (!is_max) {
            const int64_t n = std::min<int64_t>(len, t + h + 1) - std::max<int64_t>(0, t - h);
            const T inv = T(1) / T(n);
            for (int64_t c = 0; c < C; ++c) dr[c] += gr[c] * inv;
          } else {
            const int32_t* ir = idx.data() + (b * Tn + t) * C;
            const int32_t jj = int32_t(j);
            for (int64_t c = 0; c < C; ++c) dr[c] += ir[c] == jj ? gr[c] : T(0);
          }
        }
      }
    });
  });
}

}  // namespace flowless
