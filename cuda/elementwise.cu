// cuda/elementwise.cu - relu, gelu, sigmoid and the time mask, forward and
// backward (grid-stride loops, one element per thread step).
#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::global_index;
using detail::grid_stride;

__global__ void relu_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    y[i] = v > 0.f ? v : (v != v ? v : 0.f);
  }
}
__global__ void relu_bwd(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) dx[i] += y[i] > 0.f ? dy[i] : 0.f;
}

constexpr float kSqrt1_2 = 0.70710678118654752440f;
constexpr float kGeluBeta = float(1.12837916709551257390 * 0.70710678118654752440 * 0.5);  // 1 / sqrt(2 pi)

__global__ void gelu_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    y[i] = v * 0.5f * (1.f + erff(v * kSqrt1_2));
  }
}
__global__ void gelu_bwd(int64_t n, const float* x, const float* dy, float* dx) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    dx[i] += dy[i] * (0.5f * (1.f + erff(v * kSqrt1_2)) + v * (kGeluBeta * expf(v * v * -0.5f)));
  }
}

__global__ void sigmoid_fwd(int64_t n, const float* x, float* y) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) y[i] = 1.f / (1.f + expf(-x[i]));
}
__global__ void sigmoid_bwd(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) dx[i] += dy[i] * (1.f - y[i]) * y[i];
}

// x, y: (B, T, inner); accumulate: dx += dy on valid rows, else y = valid ? x : 0.
__global__ void mask_time_kernel(int64_t total, int64_t T, int64_t inner, detail::Lengths L, const float* src,
                                 float* dst, bool accumulate) {
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t r = e / inner, b = r / T, t = r % T;
    const bool valid = t < detail::valid_length(L, b, T);
    if (accumulate) {
      if (valid) dst[e] += src[e];
    } else {
      dst[e] = valid ? src[e] : 0.f;
    }
  }
}

void check_n(int64_t n, const char* op) { FLOWLESS_CHECK(n >= 0, op, ": negative element count ", n); }

}  // namespace

void relu_forward(int64_t n, const float* x, float* y) {
  check_n(n, "relu");
  if (n) FLOWLESS_LAUNCH(relu_fwd, detail::blocks_for(n), detail::kThreads, 0, n, x, y);
}
void relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  check_n(n, "relu");
  if (n) FLOWLESS_LAUNCH(relu_bwd, detail::blocks_for(n), detail::kThreads, 0, n, y, dy, dx);
}
void gelu_forward(int64_t n, const float* x, float* y) {
  check_n(n, "gelu");
  if (n) FLOWLESS_LAUNCH(gelu_fwd, detail::blocks_for(n), detail::kThreads, 0, n, x, y);
}
void gelu_backward(int64_t n, const float* x, const float* dy, float* dx) {
  check_n(n, "gelu");
  if (n) FLOWLESS_LAUNCH(gelu_bwd, detail::blocks_for(n), detail::kThreads, 0, n, x, dy, dx);
}
void sigmoid_forward(int64_t n, const float* x, float* y) {
  check_n(n, "sigmoid");
  if (n) FLOWLESS_LAUNCH(sigmoid_fwd, detail::blocks_for(n), detail::kThreads, 0, n, x, y);
}
void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx) {
  check_n(n, "sigmoid");
  if (n) FLOWLESS_LAUNCH(sigmoid_bwd, detail::blocks_for(n), detail::kThreads, 0, n, y, dy, dx);
}

void mask_time_forward(int64_t B, int64_t T, int64_t inner, const int* lengths, const float* x, float* y) {
  FLOWLESS_CHECK(B >= 0 && T >= 0 && inner >= 0, "mask_time: bad shape (", B, ", ", T, ", ", inner, ")");
  const detail::Lengths L = detail::make_lengths(lengths, B, "mask_time");
  const int64_t total = B * T * inner;
  if (total) FLOWLESS_LAUNCH(mask_time_kernel, detail::blocks_for(total), detail::kThreads, 0, total, T, inner, L, x, y, false);
}
void mask_time_backward(int64_t B, int64_t T, int64_t inner, const int* lengths, const float* dy, float* dx) {
  FLOWLESS_CHECK(B >= 0 && T >= 0 && inner >= 0, "mask_time: bad shape (", B, ", ", T, ", ", inner, ")");
  const detail::Lengths L = detail::make_lengths(lengths, B, "mask_time");
  const int64_t total = B * T * inner;
  if (total) FLOWLESS_LAUNCH(mask_time_kernel, detail::blocks_for(total), detail::kThreads, 0, total, T, inner, L, dy, dx, true);
}

}  // namespace flowless::cuda
