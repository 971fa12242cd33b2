// cuda/layer_norm.cu - LayerNorm over the last dimension: one warp per row
// (two-pass mean and biased variance, as the CPU op), the backward's dx per
// row, and the gamma/beta gradients as per-chunk column partials added in
// chunk order (deterministic).
#include <cmath>

#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::kWarp;
using detail::warp_sum;

constexpr int kRowsPerBlock = 8;  // warps per block

__global__ void __launch_bounds__(kRowsPerBlock * kWarp)
    ln_fwd(int64_t rows, int64_t C, const float* x, const float* gamma, const float* beta, float eps, float* y,
           float* stats) {
  const int lane = int(threadIdx.x) % kWarp;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;  // whole warps leave together
  const float* xr = x + r * C;
  float* yr = y + r * C;
  float s = 0.f;
  for (int64_t c = lane; c < C; c += kWarp) s += xr[c];
  const float mu = warp_sum(s) / float(C);
  float q = 0.f;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float d = xr[c] - mu;
    q += d * d;
  }
  const float var = warp_sum(q) / float(C);
  const float den = sqrtf(var + eps);
  for (int64_t c = lane; c < C; c += kWarp) {
    float v = (xr[c] - mu) / den;
    if (gamma) v *= gamma[c];
    if (beta) v += beta[c];
    yr[c] = v;
  }
  if (lane == 0) {
    stats[2 * r] = mu;
    stats[2 * r + 1] = 1.f / den;
  }
}

__global__ void __launch_bounds__(kRowsPerBlock * kWarp)
    ln_bwd_dx(int64_t rows, int64_t C, const float* x, const float* gamma, const float* stats, const float* dy,
              float* dx) {
  const int lane = int(threadIdx.x) % kWarp;
  const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / kWarp;
  if (r >= rows) return;
  const float mu = stats[2 * r], rstd = stats[2 * r + 1];
  const float* xr = x + r * C;
  const float* dr = dy + r * C;
  float s1 = 0.f, s2 = 0.f;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float xhat = (xr[c] - mu) * rstd;
    const float gh = gamma ? dr[c] * gamma[c] : dr[c];
    s1 += gh;
    s2 += gh * xhat;
  }
  const float m1 = warp_sum(s1) / float(C), m2 = warp_sum(s2) / float(C);
  float* dxr = dx + r * C;
  for (int64_t c = lane; c < C; c += kWarp) {
    const float xhat = (xr[c] - mu) * rstd;
    const float gh = gamma ? dr[c] * gamma[c] : dr[c];
    dxr[c] += rstd * (gh - m1 - xhat * m2);
  }
}

// Per chunk of kRowChunk rows (blockIdx.y) and column (thread): partial sums of dy * xhat and dy.
__global__ void ln_bwd_params(int64_t rows, int64_t C, const float* x, const float* stats, const float* dy,
                              float* pgamma, float* pbeta) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t ch = blockIdx.y;
  if (c >= C) return;
  const int64_t r0 = ch * detail::kRowChunk, r1 = detail::imin(rows, r0 + detail::kRowChunk);
  float ag = 0.f, ab = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const float d = dy[r * C + c];
    ag += d * ((x[r * C + c] - stats[2 * r]) * stats[2 * r + 1]);
    ab += d;
  }
  if (pgamma) pgamma[ch * C + c] = ag;
  if (pbeta) pbeta[ch * C + c] = ab;
}

void check_shape(int64_t rows, int64_t C) {
  FLOWLESS_CHECK(rows >= 0 && C > 0, "layer_norm: bad shape (", rows, ", ", C, ")");
}

}  // namespace

void layer_norm_forward(int64_t rows, int64_t C, const float* x, const float* gamma, const float* beta, float eps,
                        float* y, float* stats) {
  check_shape(rows, C);
  if (rows == 0) return;
  FLOWLESS_LAUNCH(ln_fwd, unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock), kRowsPerBlock * kWarp, 0, rows, C,
                  x, gamma, beta, eps, y, stats);
}

void layer_norm_backward(int64_t rows, int64_t C, const float* x, const float* gamma, const float* stats,
                         const float* dy, float* dx, float* dgamma, float* dbeta) {
  check_shape(rows, C);
  if (rows == 0) return;
  if (dx)
    FLOWLESS_LAUNCH(ln_bwd_dx, unsigned((rows + kRowsPerBlock - 1) / kRowsPerBlock), kRowsPerBlock * kWarp, 0, rows,
                    C, x, gamma, stats, dy, dx);
  if (!dgamma && !dbeta) return;
  const int64_t chunks = (rows + detail::kRowChunk - 1) / detail::kRowChunk;
  FLOWLESS_CHECK(chunks <= 65535, "layer_norm: ", rows, " rows exceed the supported ", 65535 * detail::kRowChunk);
  detail::Scratch<float> pg(dgamma ? chunks * C : 0), pb(dbeta ? chunks * C : 0);
  FLOWLESS_LAUNCH(ln_bwd_params, dim3(unsigned((C + detail::kThreads - 1) / detail::kThreads), unsigned(chunks)),
                  detail::kThreads, 0, rows, C, x, stats, dy, pg.get(), pb.get());
  if (dgamma) detail::sum_chunks_into(pg.get(), chunks, C, dgamma);
  if (dbeta) detail::sum_chunks_into(pb.get(), chunks, C, dbeta);
}

}  // namespace flowless::cuda
