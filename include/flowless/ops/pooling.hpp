// flowless/ops/pooling.hpp - 1-D max pooling over time.
//
//   y = max_pool1d(x, kernel, stride, padding)
//   x : (B, T, C)  time-major; each channel is pooled independently
//   y : (B, T_out, C), T_out = (T + 2 * padding - kernel) / stride + 1
// Exactly torch.nn.MaxPool1d (ceil_mode false, dilation 1): the implicit
// padding is -inf and exists only at the two ends of the array, so the whole
// buffer, a zero-masked padded tail included, is pooled (ActionFormer quirk
// A.13.10: a window straddling the last valid step returns 0 when all valid
// values are negative). NaN propagates. The gradient goes to the FIRST
// maximal element of each window (PyTorch's CPU rule); windows overlapping
// the same input accumulate.
// Requires 0 <= padding <= kernel / 2 (as PyTorch does).
//
// TemporalMaxer / the transformer skip pool the masked buffer and then
// downsample the mask by nearest neighbour: pooled_lengths(lengths, stride)
// gives the new valid lengths (ceil(len / stride)); multiply by the mask with
// mask_time (elementwise.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "flowless/ops/conv1d.hpp"
#include "flowless/ops/elementwise.hpp"

namespace flowless {

/// Valid lengths after a stride-s pooling with nearest mask downsampling.
inline std::vector<int> pooled_lengths(const std::vector<int>& lengths, int stride) {
  FLOWLESS_CHECK(stride >= 1, "pooled_lengths: stride ", stride);
  return conv_out_lengths(lengths, stride);
}

namespace detail {

template <class T, bool kIdx>
void max_pool1d_rows(const T* X, T* Y, int32_t* I, int64_t Tn, int64_t C, int64_t Tout, int64_t k, int64_t s,
                     int64_t p, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / Tout, t = r % Tout;
    const int64_t j0 = t * s - p;
    const int64_t ja = std::max<int64_t>(j0, 0), jb = std::min<int64_t>(j0 + k, Tn);
    T* yr = Y + r * C;
    int32_t* ir = kIdx ? I + r * C : nullptr;
    for (int64_t c = 0; c < C; ++c) yr[c] = -std::numeric_limits<T>::infinity();
    if (kIdx)
      for (int64_t c = 0; c < C; ++c) ir[c] = int32_t(ja);
    for (int64_t j = ja; j < jb; ++j) {
      const T* xr = X + (b * Tn + j) * C;
      if (kIdx) {
        const int32_t jj = int32_t(j);
        for (int64_t c = 0; c < C; ++c) {
          const T v = xr[c];
          const bool take = (v > yr[c]) || (v != v);
          yr[c] = take ? v : yr[c];
          ir[c] = take ? jj : ir[c];
        }
      } else {
        for (int64_t c = 0; c < C; ++c) {
          const T v = xr[c];
          yr[c] = ((v > yr[c]) || (v != v)) ? v : yr[c];
        }
      }
    }
  }
}

}  // namespace detail

template <class T>
Var<T> max_pool1d(const Var<T>& x, int kernel, int stride, int padding) {
  FLOWLESS_CHECK(x.defined(), "max_pool1d: undefined input");
  const Tensor<T>& X = x.value();
  FLOWLESS_CHECK(X.dim() == 3, "max_pool1d: x must be (B, T, C), got ", X.shape().str());
  FLOWLESS_CHECK(kernel >= 1 && stride >= 1, "max_pool1d: kernel ", kernel, " stride ", stride);
  FLOWLESS_CHECK(padding >= 0 && padding <= kernel / 2, "max_pool1d: padding ", padding,
                 " must be in [0, kernel / 2] for kernel ", kernel);
  const int64_t B = X.size(0), Tn = X.size(1), C = X.size(2);
  const int64_t k = kernel, s = stride, p = padding;
  FLOWLESS_CHECK(Tn + 2 * p >= k, "max_pool1d: input length ", Tn, " too short for kernel ", k);
  const int64_t Tout = (Tn + 2 * p - k) / s + 1;
  FLOWLESS_CHECK(Tn < int64_t(std::numeric_limits<int32_t>::max()), "max_pool1d: sequence too long");
  const bool record = grad_enabled() && x.requires_grad();
  Tensor<T> Y(Shape{B, Tout, C});
  std::vector<int32_t> idx(record ? static_cast<size_t>(B * Tout * C) : 0);
  const int64_t grain = std::max<int64_t>(1, detail::ew_row_grain(C) / 4);
  parallel_for(B * Tout, grain, [&](int64_t r0, int64_t r1) {
    if (record)
      detail::max_pool1d_rows<T, true>(X.data(), Y.data(), idx.data(), Tn, C, Tout, k, s, p, r0, r1);
    else
      detail::max_pool1d_rows<T, false>(X.data(), Y.data(), nullptr, Tn, C, Tout, k, s, p, r0, r1);
  });
  return make_op<T>(std::move(Y), {x}, "max_pool1d", [B, Tn, C, Tout, k, s, p, idx = std::move(idx)](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* d = out.input_grad(0).data();
    // Gather form: input row j collects dy[t] of the windows t that contain j
    // and chose j, in increasing t (the order a scatter would add them in).
    // Rows are written by one chunk each: no conflicts, any thread count.
    parallel_for(B * Tn, std::max<int64_t>(1, detail::ew_row_grain(C) / 4), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / Tn, j = r % Tn;
        const int64_t lo_num = j + p - k + 1;
        const int64_t tlo = lo_num <= 0 ? 0 : (lo_num + s - 1) / s;
        const int64_t thi = std::min<int64_t>(Tout - 1, (j + p) / s);
        T* dr = d + r * C;
        const int32_t jj = int32_t(j);
        for (int64_t t = tlo; t <= thi; ++t) {
          const int32_t* ir = idx.data() + (b * Tout + t) * C;
          const T* gr = g + (b * Tout + t) * C;
          for (int64_t c = 0; c < C; ++c) dr[c] = ir[c] == jj ? dr[c] + gr[c] : dr[c];
        }
      }
    });
  });
}

}  // namespace flowless
