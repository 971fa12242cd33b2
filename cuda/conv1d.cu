// cuda/conv1d.cu - masked 1-D convolution, forward and backward.
//
// groups == 1 and grouped: im2col into P (B*T_out, Cin*K), laid out
// [row][group][tap][channel in group], then per group one cuBLAS SGEMM
// (strided-batched over groups) against Wr (groups*K*Cg, Og), the weight
// rearranged as the CPU op does: Wr[(g*K + k)*Cg + i, o] = W[g*Og + o, i, k].
// Row-major products are issued as their column-major transposes.
//   forward : Y_g (N, Og)       = P_g (N, K*Cg) Wr_g (K*Cg, Og)
//   dW      : dWr_g (K*Cg, Og)  = P_g^T dYm_g
//   dX      : dP_g (N, K*Cg)    = dYm_g Wr_g^T, then overlap-add (gather) into dx
// where N = B*T_out and dYm is dy with the output mask applied.
// Depthwise (groups == Cin == Cout): direct kernels, one thread per element,
// the weight gradient as per-chunk partials added in chunk order.
#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::global_index;
using detail::grid_stride;
using detail::Lengths;

struct Dims {
  int64_t B, T, Cin, Cout, K, s, p, G, Cg, Og, Tout, N;
};

Dims check(const Conv1dShape& sh) {
  FLOWLESS_CHECK(sh.B >= 0 && sh.T >= 0 && sh.Cin >= 1 && sh.Cout >= 1, "conv1d: bad shape (B ", sh.B, ", T ", sh.T,
                 ", Cin ", sh.Cin, ", Cout ", sh.Cout, ")");
  FLOWLESS_CHECK(sh.stride >= 1 && sh.padding >= 0 && sh.K >= 1, "conv1d: bad stride/padding/kernel");
  FLOWLESS_CHECK(sh.groups >= 1 && sh.Cin % sh.groups == 0 && sh.Cout % sh.groups == 0, "conv1d: groups ", sh.groups,
                 " do not divide Cin ", sh.Cin, " and Cout ", sh.Cout);
  Dims d{sh.B, sh.T, sh.Cin, sh.Cout, sh.K, sh.stride, sh.padding, sh.groups, 0, 0, 0, 0};
  d.Cg = d.Cin / d.G;
  d.Og = d.Cout / d.G;
  d.Tout = sh.out_length();
  FLOWLESS_CHECK(d.Tout >= 1, "conv1d: input length ", d.T, " too short for kernel ", d.K);
  d.N = d.B * d.Tout;
  return d;
}

bool depthwise(const Dims& d) { return d.G == d.Cin && d.G == d.Cout; }

/// Output lengths ceil(len / stride) (the nearest-neighbour downsampled mask).
Lengths out_lengths(const int* lengths, const Dims& d) {
  Lengths L = detail::make_lengths(lengths, d.B, "conv1d");
  for (int b = 0; b < L.n; ++b) L.v[b] = int((int64_t(L.v[b]) + d.s - 1) / d.s);
  return L;
}

// P[r, g*K*Cg + k*Cg + i] = x[b, t*s + k - p, g*Cg + i] (0 outside [0, T)), r = b*Tout + t.
__global__ void im2col_kernel(Dims d, const float* x, float* P) {
  const int64_t KC = d.K * d.Cin, total = d.N * KC;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t col = e % KC, r = e / KC;
    const int64_t g = col / (d.K * d.Cg), rem = col % (d.K * d.Cg), k = rem / d.Cg, i = rem % d.Cg;
    const int64_t b = r / d.Tout, t = r % d.Tout, j = t * d.s + k - d.p;
    P[e] = (j >= 0 && j < d.T) ? x[(b * d.T + j) * d.Cin + g * d.Cg + i] : 0.f;
  }
}

// Wr[(g*K + k)*Cg + i, o] = W[(g*Og + o), i, k]
__global__ void rearrange_weight_kernel(Dims d, const float* W, float* Wr) {
  const int64_t total = d.Cout * d.Cg * d.K;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t o = e % d.Og, rest = e / d.Og, i = rest % d.Cg, gk = rest / d.Cg, k = gk % d.K, g = gk / d.K;
    Wr[e] = W[((g * d.Og + o) * d.Cg + i) * d.K + k];
  }
}

// dW[(g*Og + o), i, k] += dWr[(g*K + k)*Cg + i, o]
__global__ void accumulate_weight_grad_kernel(Dims d, const float* dWr, float* dW) {
  const int64_t total = d.Cout * d.Cg * d.K;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t k = e % d.K, rest = e / d.K, i = rest % d.Cg, go = rest / d.Cg, o = go % d.Og, g = go / d.Og;
    dW[e] += dWr[((g * d.K + k) * d.Cg + i) * d.Og + o];
  }
}

// y[r, c] = (t < L_out[b]) ? y[r, c] + bias[c] : 0
__global__ void bias_mask_kernel(Dims d, Lengths L, const float* bias, float* y) {
  const int64_t total = d.N * d.Cout;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t c = e % d.Cout, r = e / d.Cout, b = r / d.Tout, t = r % d.Tout;
    if (t >= detail::valid_length(L, b, d.Tout))
      y[e] = 0.f;
    else if (bias)
      y[e] += bias[c];
  }
}

// dYm = dy with the output mask applied.
__global__ void mask_grad_kernel(Dims d, Lengths L, const float* dy, float* dym) {
  const int64_t total = d.N * d.Cout;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t r = e / d.Cout, b = r / d.Tout, t = r % d.Tout;
    dym[e] = t < detail::valid_length(L, b, d.Tout) ? dy[e] : 0.f;
  }
}

// dx[b, j, g*Cg + i] += sum_k dP[b*Tout + t, g*K*Cg + k*Cg + i] over t*s + k = j + p.
__global__ void col2im_kernel(Dims d, const float* dP, float* dx) {
  const int64_t total = d.B * d.T * d.Cin, KC = d.K * d.Cin;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t c = e % d.Cin, r = e / d.Cin, j = r % d.T, b = r / d.T;
    const int64_t g = c / d.Cg, i = c % d.Cg;
    float acc = dx[e];
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t num = j + d.p - k;
      if (num < 0 || num % d.s) continue;
      const int64_t t = num / d.s;
      if (t >= d.Tout) continue;
      acc += dP[(b * d.Tout + t) * KC + g * d.K * d.Cg + k * d.Cg + i];
    }
    dx[e] = acc;
  }
}

// Depthwise forward: y[b, t, c] = bias[c] + sum_k w[c, k] x[b, t*s + k - p, c], masked.
__global__ void depthwise_fwd_kernel(Dims d, Lengths L, const float* x, const float* w, const float* bias, float* y) {
  const int64_t C = d.Cout, total = d.N * C;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t c = e % C, r = e / C, b = r / d.Tout, t = r % d.Tout;
    if (t >= detail::valid_length(L, b, d.Tout)) {
      y[e] = 0.f;
      continue;
    }
    float acc = bias ? bias[c] : 0.f;
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t j = t * d.s + k - d.p;
      if (j >= 0 && j < d.T) acc += w[c * d.K + k] * x[(b * d.T + j) * C + c];
    }
    y[e] = acc;
  }
}

// Depthwise dx[b, j, c] += sum_k w[c, k] dYm[b, t, c] over t*s + k = j + p.
__global__ void depthwise_dx_kernel(Dims d, const float* w, const float* dym, float* dx) {
  const int64_t C = d.Cin, total = d.B * d.T * C;
  for (int64_t e = global_index(); e < total; e += grid_stride()) {
    const int64_t c = e % C, r = e / C, j = r % d.T, b = r / d.T;
    float acc = dx[e];
    for (int64_t k = 0; k < d.K; ++k) {
      const int64_t num = j + d.p - k;
      if (num < 0 || num % d.s) continue;
      const int64_t t = num / d.s;
      if (t >= d.Tout) continue;
      acc += w[c * d.K + k] * dym[(b * d.Tout + t) * C + c];
    }
    dx[e] = acc;
  }
}

// Depthwise weight-gradient partials: partial[ch, c*K + k] = sum over the rows r of chunk ch of
// dYm[r, c] * x[b, t*s + k - p, c].
__global__ void depthwise_dw_partial_kernel(Dims d, const float* x, const float* dym, float* partial) {
  const int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, ch = blockIdx.y;
  const int64_t C = d.Cout, cols = C * d.K;
  if (q >= cols) return;
  const int64_t c = q / d.K, k = q % d.K;
  const int64_t r0 = ch * detail::kRowChunk, r1 = detail::imin(d.N, r0 + detail::kRowChunk);
  float acc = 0.f;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t b = r / d.Tout, t = r % d.Tout, j = t * d.s + k - d.p;
    if (j >= 0 && j < d.T) acc += dym[r * C + c] * x[(b * d.T + j) * C + c];
  }
  partial[ch * cols + q] = acc;
}

void check_rows(int64_t N) {
  FLOWLESS_CHECK((N + detail::kRowChunk - 1) / detail::kRowChunk <= 65535, "conv1d: ", N,
                 " output rows exceed the supported ", 65535 * detail::kRowChunk);
}

}  // namespace

void conv1d_forward(const Conv1dShape& sh, const float* x, const float* weight, const float* bias, const int* lengths,
                    float* y) {
  const Dims d = check(sh);
  const Lengths L = out_lengths(lengths, d);
  if (d.N == 0) return;
  const int64_t total = d.N * d.Cout;
  if (depthwise(d)) {
    FLOWLESS_LAUNCH(depthwise_fwd_kernel, detail::blocks_for(total), detail::kThreads, 0, d, L, x, weight, bias, y);
    return;
  }
  const int64_t KC = d.K * d.Cin, KCg = d.K * d.Cg;
  detail::Scratch<float> P(d.N * KC), Wr(d.Cout * KCg);
  FLOWLESS_LAUNCH(im2col_kernel, detail::blocks_for(d.N * KC), detail::kThreads, 0, d, x, P.get());
  FLOWLESS_LAUNCH(rearrange_weight_kernel, detail::blocks_for(d.Cout * KCg), detail::kThreads, 0, d, weight, Wr.get());
  // Column-major: Y_g^T (Og x N, ld Cout) = Wr_g^T (Og x KCg, ld Og) * P_g^T (KCg x N, ld KC).
  detail::gemm_batched(false, false, detail::as_int(d.Og, "Cout / groups"), detail::as_int(d.N, "B * T_out"),
                       detail::as_int(KCg, "K * Cin / groups"), 1.f, Wr.get(), int(d.Og), KCg * d.Og, P.get(),
                       detail::as_int(KC, "K * Cin"), KCg, 0.f, y, detail::as_int(d.Cout, "Cout"), d.Og, int(d.G));
  FLOWLESS_LAUNCH(bias_mask_kernel, detail::blocks_for(total), detail::kThreads, 0, d, L, bias, y);
}

void conv1d_backward(const Conv1dShape& sh, const float* x, const float* weight, const int* lengths, const float* dy,
                     float* dx, float* dweight, float* dbias) {
  const Dims d = check(sh);
  const Lengths L = out_lengths(lengths, d);
  if (d.N == 0 || (!dx && !dweight && !dbias)) return;
  check_rows(d.N);
  const int64_t total = d.N * d.Cout;
  detail::Scratch<float> dym(total);
  FLOWLESS_LAUNCH(mask_grad_kernel, detail::blocks_for(total), detail::kThreads, 0, d, L, dy, dym.get());
  if (dbias) detail::column_sum_into(dym.get(), d.N, d.Cout, dbias);

  if (depthwise(d)) {
    if (dweight) {
      const int64_t chunks = (d.N + detail::kRowChunk - 1) / detail::kRowChunk, cols = d.Cout * d.K;
      detail::Scratch<float> partial(chunks * cols);
      FLOWLESS_LAUNCH(depthwise_dw_partial_kernel,
                      dim3(unsigned((cols + detail::kThreads - 1) / detail::kThreads), unsigned(chunks)),
                      detail::kThreads, 0, d, x, dym.get(), partial.get());
      detail::sum_chunks_into(partial.get(), chunks, cols, dweight);
    }
    if (dx)
      FLOWLESS_LAUNCH(depthwise_dx_kernel, detail::blocks_for(d.B * d.T * d.Cin), detail::kThreads, 0, d, weight,
                      dym.get(), dx);
    return;
  }
  if (!dx && !dweight) return;

  const int64_t KC = d.K * d.Cin, KCg = d.K * d.Cg;
  const int m_og = detail::as_int(d.Og, "Cout / groups"), n_rows = detail::as_int(d.N, "B * T_out");
  const int k_kcg = detail::as_int(KCg, "K * Cin / groups"), ld_kc = detail::as_int(KC, "K * Cin");
  const int ld_cout = detail::as_int(d.Cout, "Cout");
  if (dweight) {
    detail::Scratch<float> P(d.N * KC), dWr(d.Cout * KCg);
    FLOWLESS_LAUNCH(im2col_kernel, detail::blocks_for(d.N * KC), detail::kThreads, 0, d, x, P.get());
    // Column-major: dWr_g^T (Og x KCg, ld Og) = dYm_g^T (Og x N, ld Cout) * P_g (N x KCg: P_g^T stored KCg x N, ld KC).
    detail::gemm_batched(false, true, m_og, k_kcg, n_rows, 1.f, dym.get(), ld_cout, d.Og, P.get(), ld_kc, KCg, 0.f,
                         dWr.get(), m_og, KCg * d.Og, int(d.G));
    FLOWLESS_LAUNCH(accumulate_weight_grad_kernel, detail::blocks_for(d.Cout * KCg), detail::kThreads, 0, d, dWr.get(),
                    dweight);
  }
  if (dx) {
    detail::Scratch<float> Wr(d.Cout * KCg), dP(d.N * KC);
    FLOWLESS_LAUNCH(rearrange_weight_kernel, detail::blocks_for(d.Cout * KCg), detail::kThreads, 0, d, weight,
                    Wr.get());
    // Column-major: dP_g^T (KCg x N, ld KC) = Wr_g (KCg x Og: stored Og x KCg, ld Og, transposed) * dYm_g^T (Og x N, ld Cout).
    detail::gemm_batched(true, false, k_kcg, n_rows, m_og, 1.f, Wr.get(), m_og, KCg * d.Og, dym.get(), ld_cout, d.Og,
                         0.f, dP.get(), ld_kc, KCg, int(d.G));
    FLOWLESS_LAUNCH(col2im_kernel, detail::blocks_for(d.B * d.T * d.Cin), detail::kThreads, 0, d, dP.get(), dx);
  }
}

}  // namespace flowless::cuda
