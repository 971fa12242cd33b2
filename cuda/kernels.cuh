// cuda/kernels.cuh - the CUDA kernels of flowless behind a plain C++ API.
//
// Usable from ordinary .cpp files: no CUDA type appears here. Link the
// flowless_cuda target (it defines FLOWLESS_WITH_CUDA and puts this folder on
// the include path) and include "kernels.cuh".
//
// Conventions (the library's, see flowless/core/tensor.hpp):
//  - every float pointer is DEVICE memory (Cuda::allocate / Tensor<float, Cuda>),
//    float32, contiguous and row-major;
//  - sequences are time-major, x: (B, T, C);
//  - masks are prefix masks: `lengths` is a HOST array of B valid lengths
//    (nullptr = every step valid), at most kMaxBatch entries;
//  - work is queued on the legacy default stream (asynchronous for the host,
//    ordered on the device); functions returning a host value wait for it;
//  - backward functions ACCUMULATE (+=) into the gradient buffers, like the
//    autograd closures; a null gradient pointer skips that gradient;
//  - results match the CPU ops (flowless/ops/*.hpp, flowless/train/optimizer.hpp)
//    to float rounding; the semantics notes below name the CPU op each
//    function mirrors. Reductions use a fixed order: results are bitwise
//    reproducible run to run on the same GPU (no atomics).
// Errors (bad shapes, CUDA failures) throw flowless::Error.
#pragma once

#include <cmath>
#include <cstdint>

namespace flowless::cuda {

/// The largest batch a `lengths` array may describe.
constexpr int kMaxBatch = 512;

// ---------------------------------------------------------------------------
// Masked 1-D convolution: flowless::conv1d (ops/conv1d.hpp).
//   x      : (B, T, Cin)
//   weight : (Cout, Cin / groups, K)   PyTorch layout
//   bias   : (Cout) or nullptr
//   y      : (B, T_out, Cout), T_out = (T + 2 * padding - K) / stride + 1
// With lengths, output rows t >= ceil(len / stride) are 0 and the gradient is
// masked the same way (the reference's MaskedConv1D). groups == 1 and grouped
// convolutions are im2col + cuBLAS SGEMM (full fp32, no TF32); depthwise
// (groups == Cin == Cout) is a direct kernel.
struct Conv1dShape {
  int64_t B = 0, T = 0, Cin = 0, Cout = 0, K = 0;
  int stride = 1, padding = 0, groups = 1;
  int64_t out_length() const { return (T + 2 * int64_t(padding) - K) / stride + 1; }
};
void conv1d_forward(const Conv1dShape& s, const float* x, const float* weight, const float* bias, const int* lengths,
                    float* y);
void conv1d_backward(const Conv1dShape& s, const float* x, const float* weight, const int* lengths, const float* dy,
                     float* dx, float* dweight, float* dbias);

// ---------------------------------------------------------------------------
// LayerNorm over the last dimension: flowless::layer_norm (ops/layer_norm.hpp).
//   x, y  : (rows, C)    gamma, beta : (C) or nullptr
//   stats : (rows, 2)    written by the forward (mean, 1 / sqrt(var + eps)), read by the backward
void layer_norm_forward(int64_t rows, int64_t C, const float* x, const float* gamma, const float* beta, float eps,
                        float* y, float* stats);
void layer_norm_backward(int64_t rows, int64_t C, const float* x, const float* gamma, const float* stats,
                         const float* dy, float* dx, float* dgamma, float* dbeta);

// ---------------------------------------------------------------------------
// Masked multi-head attention: flowless::local_attention (ops/local_attention.hpp).
//   q, k, v, y : (B, T, C), C = heads * head_dim, head_dim <= 512
//   stats      : (B, heads, T, 2) written by the forward (max logit, 1 / sum of exp), read by the backward
// window > 1: query i sees keys [i - window/2, i + window/2] inside [0, T);
// padded keys (j >= len) get -1e4 added to their logit. window <= 1: global
// attention over the valid keys. Padded queries give 0. Logits are
// (q * 1/sqrt(head_dim)) . k. One kernel, one warp per (b, head, query):
// scores, mask, online softmax and the weighted sum of v. The backward
// recomputes the probabilities from stats (no (T, window) matrix is stored):
// dq per query, dk and dv gathered per key (no atomics).
struct AttentionShape {
  int64_t B = 0, T = 0, C = 0;
  int heads = 1, window = 1;
};
void local_attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                             const int* lengths, float* y, float* stats);
void local_attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                              const int* lengths, const float* y, const float* stats, const float* dy, float* dq,
                              float* dk, float* dv);

// ---------------------------------------------------------------------------
// Pointwise activations (ops/activations.hpp), n elements of any shape.
//   relu    y = max(x, 0) (NaN kept);           backward dx += y > 0 ? dy : 0
//   gelu    y = x / 2 * (1 + erf(x / sqrt(2)));  backward from x
//   sigmoid y = 1 / (1 + exp(-x));               backward dx += dy * (1 - y) * y
void relu_forward(int64_t n, const float* x, float* y);
void relu_backward(int64_t n, const float* y, const float* dy, float* dx);
void gelu_forward(int64_t n, const float* x, float* y);
void gelu_backward(int64_t n, const float* x, const float* dy, float* dx);
void sigmoid_forward(int64_t n, const float* x, float* y);
void sigmoid_backward(int64_t n, const float* y, const float* dy, float* dx);

// Time mask: flowless::mask_time (ops/elementwise.hpp). x, y: (B, T, inner);
// rows t >= lengths[b] become 0 (y may equal x). Backward: dx += dy on valid rows.
void mask_time_forward(int64_t B, int64_t T, int64_t inner, const int* lengths, const float* x, float* y);
void mask_time_backward(int64_t B, int64_t T, int64_t inner, const int* lengths, const float* dy, float* dx);

// ---------------------------------------------------------------------------
// Max pooling over time: flowless::max_pool1d (ops/pooling.hpp).
//   x : (B, T, C) -> y : (B, T_out, C), T_out = (T + 2 * padding - kernel) / stride + 1
//   argmax : (B, T_out, C) int32 input time index of each maximum (the FIRST
//            maximum; NaN propagates), nullptr in inference. 0 <= padding <= kernel / 2.
struct PoolShape {
  int64_t B = 0, T = 0, C = 0;
  int kernel = 1, stride = 1, padding = 0;
  int64_t out_length() const { return (T + 2 * int64_t(padding) - kernel) / stride + 1; }
};
void max_pool1d_forward(const PoolShape& s, const float* x, float* y, int32_t* argmax);
void max_pool1d_backward(const PoolShape& s, const int32_t* argmax, const float* dy, float* dx);

// ---------------------------------------------------------------------------
// Losses (ops/losses.hpp): SUMS over the elements, written to one device float
// `loss`; the terms are float, their sum is accumulated in double. The
// backward reads the loss gradient from the device float `dloss`.
//   sigmoid_focal_loss: logits/targets n elements (fvcore; alpha < 0 disables alpha weighting)
//   diou_loss_1d:       pred/target (N, 2) distances (left, right); ctr_diou_loss_1d
void sigmoid_focal_loss_forward(int64_t n, const float* logits, const float* targets, float alpha, float gamma,
                                float* loss);
void sigmoid_focal_loss_backward(int64_t n, const float* logits, const float* targets, float alpha, float gamma,
                                 const float* dloss, float* dlogits);
void diou_loss_1d_forward(int64_t N, const float* pred, const float* target, float eps, float* loss);
void diou_loss_1d_backward(int64_t N, const float* pred, const float* target, float eps, const float* dloss,
                           float* dpred);

// ---------------------------------------------------------------------------
// Optimiser (train/optimizer.hpp).
// One AdamW update of n parameters in PyTorch's order of operations:
//   p *= decay; m = m * b1 + one_b1 * g; v = v * b2 + (one_b2 * g) * g;
//   p += neg_step_size * (m / (sqrt(v) / bc2_sqrt + eps))
// with the scalars computed in double on the host by AdamWScalars::make for
// the step count AFTER the increment (1 on the first update).
struct AdamWScalars {
  float decay, b1, one_b1, b2, one_b2, neg_step_size, bc2_sqrt, eps;
  static AdamWScalars make(double lr, double weight_decay, double beta1, double beta2, double eps, int64_t step) {
    const double bc1 = 1.0 - std::pow(beta1, double(step));
    const double bc2 = 1.0 - std::pow(beta2, double(step));
    return AdamWScalars{float(1.0 - lr * weight_decay), float(beta1),           float(1.0 - beta1),
                        float(beta2),                   float(1.0 - beta2),     float(-(lr / bc1)),
                        float(std::sqrt(bc2)),          float(eps)};
  }
};
void adamw_step(int64_t n, const AdamWScalars& a, float* param, const float* grad, float* exp_avg, float* exp_avg_sq);

/// Sum of squares of g[0:n] for gradient clipping (clip_grad_norm): each
/// square in float, summed in double in a fixed order. Waits for the result.
double sum_squares(int64_t n, const float* g);
/// x[0:n] *= c (clip_grad_norm's rescaling).
void scale_inplace(int64_t n, float c, float* x);

}  // namespace flowless::cuda
