// cuda/pooling.cu - max_pool1d over time, forward (first maximum, NaN
// propagates, -inf padding only at the array ends) and backward as a gather:
// input element (b, j, c) adds dy of the windows that chose j, in increasing
// window order (the order the CPU op adds them in). One thread per element.
#include <cmath>

#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::global_index;
using detail::grid_stride;
using detail::imax;
using detail::imin;

__global__ void pool_fwd(int64_t total, int64_t T, int64_t C, int64_t Tout, int64_t k, int64_t s, int64_t p,
                         const float* x, float* y, int32_t* argmax) {
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t c = e % C, r = e / C, t = r % Tout, b = r / Tout;
    const int64_t j0 = t * s - p, ja = imax(j0, 0), jb = imin(j0 + k, T);
    float best = -INFINITY;
    int32_t idx = int32_t(ja);
    for (int64_t j = ja; j < jb; ++j) {
      const float v = x[(b * T + j) * C + c];
      if (v > best || v != v) {
        best = v;
        idx = int32_t(j);
      }
    }
    y[e] = best;
    if (argmax) argmax[e] = idx;
  }
}

__global__ void pool_bwd(int64_t total, int64_t T, int64_t C, int64_t Tout, int64_t k, int64_t s, int64_t p,
                         const int32_t* argmax, const float* dy, float* dx) {
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t c = e % C, r = e / C, j = r % T, b = r / T;
    const int64_t lo_num = j + p - k + 1;
    const int64_t tlo = lo_num <= 0 ? 0 : (lo_num + s - 1) / s;
    const int64_t thi = imin(Tout - 1, (j + p) / s);
    float d = dx[e];
    for (int64_t t = tlo; t <= thi; ++t) {
      const int64_t o = (b * Tout + t) * C + c;
      if (argmax[o] == int32_t(j)) d += dy[o];
    }
    dx[e] = d;
  }
}

void check_shape(const PoolShape& s) {
  FLOWLESS_CHECK(s.B >= 0 && s.T >= 0 && s.C >= 0, "max_pool1d: bad shape (", s.B, ", ", s.T, ", ", s.C, ")");
  FLOWLESS_CHECK(s.kernel >= 1 && s.stride >= 1, "max_pool1d: kernel ", s.kernel, " stride ", s.stride);
  FLOWLESS_CHECK(s.padding >= 0 && s.padding <= s.kernel / 2, "max_pool1d: padding ", s.padding,
                 " must be in [0, kernel / 2] for kernel ", s.kernel);
  FLOWLESS_CHECK(s.T + 2 * int64_t(s.padding) >= s.kernel, "max_pool1d: input length ", s.T,
                 " too short for kernel ", s.kernel);
  FLOWLESS_CHECK(s.T < int64_t(2147483647), "max_pool1d: sequence too long");
}

}  // namespace

void max_pool1d_forward(const PoolShape& s, const float* x, float* y, int32_t* argmax) {
  check_shape(s);
  const int64_t Tout = s.out_length(), total = s.B * Tout * s.C;
  if (total == 0) return;
  FLOWLESS_LAUNCH(pool_fwd, detail::blocks_for(total), detail::kThreads, 0, total, s.T, s.C, Tout, int64_t(s.kernel),
                  int64_t(s.stride), int64_t(s.padding), x, y, argmax);
}

void max_pool1d_backward(const PoolShape& s, const int32_t* argmax, const float* dy, float* dx) {
  check_shape(s);
  FLOWLESS_CHECK(argmax != nullptr, "max_pool1d_backward: argmax from the forward is required");
  const int64_t Tout = s.out_length(), total = s.B * s.T * s.C;
  if (total == 0) return;
  FLOWLESS_LAUNCH(pool_bwd, detail::blocks_for(total), detail::kThreads, 0, total, s.T, s.C, Tout, int64_t(s.kernel),
                  int64_t(s.stride), int64_t(s.padding), argmax, dy, dx);
}

}  // namespace flowless::cuda
