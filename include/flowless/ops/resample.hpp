// flowless/ops/resample.hpp - linear resampling of a time-major sequence to a
// fixed length: torch's F.interpolate(x, size=L, mode='linear',
// align_corners=False) on x of shape (1, C, T), here on (T, C) row-major.
//
//   std::vector<float> y = resample_linear(x, T, C, L);   // (L, C)
//
// Output row i reads the source position (scale = T / L rounded to T's type)
//   s = max(0, scale * (i + 0.5) - 0.5)   in double,   i0 = floor(s),  i1 = min(i0 + 1, T - 1),
//   w1 = (T) (s - i0),  w0 = 1 - w1,  y[i] = fma(x[i0], w0, w1 * x[i1]),
// which is what torch 1.13's CPU kernel computes for float on an AVX2 + FMA
// machine: the outputs equal its outputs bit for bit (tests/test_anet_style.cpp,
// golden files from dev/anet_reference.py). Used by
// ActionFormer's ActivityNet path (every video resampled to max_seq_len,
// `force_upsampling`, see data/dataset.hpp fixed_length_grid) and by the
// absolute position encoding at inference (models/backbones.hpp).
// Not differentiable: it prepares inputs and constant tables.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless {

template <class T>
std::vector<T> resample_linear(const T* x, int64_t Tn, int64_t C, int64_t L) {
  FLOWLESS_CHECK(Tn >= 1 && C >= 1 && L >= 1, "resample_linear: needs T >= 1, C >= 1 and L >= 1 (got T = ", Tn,
                 ", C = ", C, ", L = ", L, ")");
  std::vector<T> y(static_cast<size_t>(L * C));
  const T scale = static_cast<T>(Tn) / static_cast<T>(L);
  for (int64_t i = 0; i < L; ++i) {
    double src = static_cast<double>(scale) * (static_cast<double>(i) + 0.5) - 0.5;
    if (src < 0) src = 0;
    const int64_t i0 = std::min<int64_t>(static_cast<int64_t>(std::floor(src)), Tn - 1);
    const int64_t i1 = std::min<int64_t>(i0 + 1, Tn - 1);
    const T w1 = static_cast<T>(std::min(std::max(src - static_cast<double>(i0), 0.0), 1.0));
    const T w0 = T(1) - w1;
    const T* a = x + i0 * C;
    const T* b = x + i1 * C;
    T* out = y.data() + i * C;
    for (int64_t c = 0; c < C; ++c) {
      const T q = w1 * b[c];  // rounded: an argument of fma, never contracted into it
      out[c] = std::fma(a[c], w0, q);
    }
  }
  return y;
}

}  // namespace flowless
