// cuda/optim.cu - the AdamW update (PyTorch's order of operations, scalars
// from the host), the squared-norm reduction for gradient clipping and the
// rescaling.
#include <cmath>

#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::global_index;
using detail::grid_stride;

__global__ void adamw_kernel(int64_t n, AdamWScalars a, float* p, const float* g, float* m, float* v) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float gi = g[i];
    float pi = p[i] * a.decay;
    const float mi = m[i] * a.b1 + a.one_b1 * gi;
    const float vi = v[i] * a.b2 + (a.one_b2 * gi) * gi;
    pi += a.neg_step_size * (mi / (sqrtf(vi) / a.bc2_sqrt + a.eps));
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

struct SquareTerm {
  const float* g;
  __device__ float operator()(int64_t i) const { return g[i] * g[i]; }
};

__global__ void scale_kernel(int64_t n, float c, float* x) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) x[i] *= c;
}

}  // namespace

void adamw_step(int64_t n, const AdamWScalars& a, float* param, const float* grad, float* exp_avg, float* exp_avg_sq) {
  FLOWLESS_CHECK(n >= 0, "adamw_step: negative element count ", n);
  if (n) FLOWLESS_LAUNCH(adamw_kernel, detail::blocks_for(n), detail::kThreads, 0, n, a, param, grad, exp_avg, exp_avg_sq);
}

double sum_squares(int64_t n, const float* g) {
  FLOWLESS_CHECK(n >= 0, "sum_squares: negative element count ", n);
  if (n == 0) return 0.0;
  detail::Scratch<double> out(1);
  detail::sum_terms(n, SquareTerm{g}, nullptr, out.get());
  double host = 0;
  FLOWLESS_CUDA_CHECK(cudaMemcpy(&host, out.get(), sizeof(double), cudaMemcpyDeviceToHost));
  return host;
}

void scale_inplace(int64_t n, float c, float* x) {
  FLOWLESS_CHECK(n >= 0, "scale_inplace: negative element count ", n);
  if (n) FLOWLESS_LAUNCH(scale_kernel, detail::blocks_for(n), detail::kThreads, 0, n, c, x);
}

}  // namespace flowless::cuda
