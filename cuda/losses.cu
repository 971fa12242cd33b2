// cuda/losses.cu - sigmoid focal loss (fvcore) and the 1-D DIoU loss
// (ctr_diou_loss_1d): per-element terms in float with the CPU op's formulas
// term by term, summed in double in a fixed order; backward one thread per
// element (focal) or segment (DIoU), scaled by the device scalar dloss.
#include <cmath>

#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::global_index;
using detail::grid_stride;

/// PyTorch's pow(x, scalar) special cases, as the CPU op.
__device__ __forceinline__ float pow_scalar(float x, float e) {
  if (e == 2.f) return x * x;
  if (e == 3.f) return x * x * x;
  if (e == 1.f) return x;
  if (e == 0.f) return 1.f;
  if (e == 0.5f) return sqrtf(x);
  return powf(x, e);
}

/// BCE with logits, PyTorch's operation order: (1 - y) x + max(-x, 0) + log(1 + exp(-|x|)).
__device__ __forceinline__ float bce_logits(float x, float y) {
  return ((1.f - y) * x + fmaxf(-x, 0.f)) + logf(1.f + expf(-fabsf(x)));
}

struct FocalTerm {
  const float* x;
  const float* y;
  float alpha, one_m_alpha, gamma;
  bool use_alpha;
  __device__ float operator()(int64_t i) const {
    const float xv = x[i], yv = y[i];
    const float p = 1.f / (1.f + expf(-xv));
    const float ce = bce_logits(xv, yv);
    const float m = 1.f - (p * yv + (1.f - p) * (1.f - yv));
    float out = ce * pow_scalar(m, gamma);
    if (use_alpha) out = (alpha * yv + one_m_alpha * (1.f - yv)) * out;
    return out;
  }
};

__global__ void focal_bwd(int64_t n, FocalTerm f, const float* dloss, float* dx) {
  const float g = *dloss;
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    const float xv = f.x[i], yv = f.y[i];
    const float p = 1.f / (1.f + expf(-xv));
    const float ce = bce_logits(xv, yv);
    const float m = 1.f - (p * yv + (1.f - p) * (1.f - yv));
    const float at = f.use_alpha ? f.alpha * yv + f.one_m_alpha * (1.f - yv) : 1.f;
    const float d_ce = at * pow_scalar(m, f.gamma);
    const float d_pt = f.gamma == 0.f ? 0.f : -(at * ce * f.gamma * pow_scalar(m, f.gamma - 1.f));
    const float d = d_ce * (p - yv) + (d_pt * yv - d_pt * (1.f - yv)) * (p * (1.f - p));
    dx[i] += g * d;
  }
}

struct DiouTerm {
  const float* x;
  const float* t;
  float eps;
  __device__ float operator()(int64_t r) const {
    const float lp = x[2 * r], rp = x[2 * r + 1], lg = t[2 * r], rg = t[2 * r + 1];
    const float lkis = fminf(lp, lg), rkis = fminf(rp, rg);
    const float intsct = rkis + lkis;
    const float unio = (lp + rp) + (lg + rg) - intsct;
    const float iou = intsct / fmaxf(unio, eps);
    const float lc = fmaxf(lp, lg), rc = fmaxf(rp, rg);
    const float len_c = lc + rc;
    const float rho = 0.5f * (rp - lp - rg + lg);
    const float ratio = rho / fmaxf(len_c, eps);
    return (1.f - iou) + ratio * ratio;
  }
};

/// d/dx of torch.minimum(x, o) (is_min) or torch.maximum: 1, 1/2 on ties, 0.
__device__ __forceinline__ float minmax_grad(float x, float o, bool is_min) {
  if (x == o) return 0.5f;
  return (is_min ? x < o : x > o) ? 1.f : 0.f;
}

__global__ void diou_bwd(int64_t N, const float* x, const float* t, float eps, const float* dloss, float* dx) {
  const float g = *dloss;
  for (int64_t r = global_index(); r < N; r += grid_stride()) {
    const float lp = x[2 * r], rp = x[2 * r + 1], lg = t[2 * r], rg = t[2 * r + 1];
    const float lkis = fminf(lp, lg), rkis = fminf(rp, rg);
    const float intsct = rkis + lkis;
    const float unio = (lp + rp) + (lg + rg) - intsct;
    const float uc = fmaxf(unio, eps);
    const float lc = fmaxf(lp, lg), rc = fmaxf(rp, rg);
    const float len_c = lc + rc;
    const float cc = fmaxf(len_c, eps);
    const float rho = 0.5f * (rp - lp - rg + lg);
    const float ratio = rho / cc;
    const float d_iou = -g;
    const float d_ratio = g * (2.f * ratio);
    const float d_rho = d_ratio / cc;
    const float d_cc = -d_ratio * rho / (cc * cc);
    const float d_len_c = len_c >= eps ? d_cc : 0.f;
    const float d_int_div = d_iou / uc;
    const float d_uc = -d_iou * intsct / (uc * uc);
    const float d_union = unio >= eps ? d_uc : 0.f;
    const float d_int = d_int_div - d_union;
    float d_lp = d_union, d_rp = d_union;
    d_lp += d_int * minmax_grad(lp, lg, true) + d_len_c * minmax_grad(lp, lg, false);
    d_rp += d_int * minmax_grad(rp, rg, true) + d_len_c * minmax_grad(rp, rg, false);
    d_lp -= 0.5f * d_rho;
    d_rp += 0.5f * d_rho;
    dx[2 * r] += d_lp;
    dx[2 * r + 1] += d_rp;
  }
}

FocalTerm focal(const float* x, const float* y, float alpha, float gamma) {
  return FocalTerm{x, y, alpha, float(1.0 - double(alpha)), gamma, alpha >= 0.f};
}

}  // namespace

void sigmoid_focal_loss_forward(int64_t n, const float* logits, const float* targets, float alpha, float gamma,
                                float* loss) {
  FLOWLESS_CHECK(n >= 0, "sigmoid_focal_loss: negative element count ", n);
  detail::sum_terms(n, focal(logits, targets, alpha, gamma), loss, nullptr);
}

void sigmoid_focal_loss_backward(int64_t n, const float* logits, const float* targets, float alpha, float gamma,
                                 const float* dloss, float* dlogits) {
  FLOWLESS_CHECK(n >= 0, "sigmoid_focal_loss: negative element count ", n);
  if (n == 0 || !dlogits) return;
  FLOWLESS_LAUNCH(focal_bwd, detail::blocks_for(n), detail::kThreads, 0, n, focal(logits, targets, alpha, gamma),
                  dloss, dlogits);
}

void diou_loss_1d_forward(int64_t N, const float* pred, const float* target, float eps, float* loss) {
  FLOWLESS_CHECK(N >= 0, "diou_loss_1d: negative row count ", N);
  detail::sum_terms(N, DiouTerm{pred, target, eps}, loss, nullptr);
}

void diou_loss_1d_backward(int64_t N, const float* pred, const float* target, float eps, const float* dloss,
                           float* dpred) {
  FLOWLESS_CHECK(N >= 0, "diou_loss_1d: negative row count ", N);
  if (N == 0 || !dpred) return;
  FLOWLESS_LAUNCH(diou_bwd, detail::blocks_for(N), detail::kThreads, 0, N, pred, target, eps, dloss, dpred);
}

}  // namespace flowless::cuda
