// cuda/local_attention.cu - masked multi-head attention (local window or
// global), forward and backward.
//
// A block is one (batch, head, tile of kQueriesPerBlock queries); each warp
// owns one query and does everything for it in registers: the scaled query
// (lane l holds channels l, l + 32, ...), one warp-sum dot product per key,
// the mask (-1e4 added for padded keys in local mode; keys outside [0, T) or,
// in global mode, past the valid length are never visited), an online
// softmax and the weighted sum of v. The forward keeps (max logit, 1 / sum)
// per query; the backward recomputes each probability from them:
//   pass 1, per query i : D_i = dy_i . y_i, dq_i += scale * sum_j P_ij (dy_i . v_j - D_i) k_j
//   pass 2, per key j   : dk_j += sum_i dS_ij qs_i, dv_j += sum_i P_ij dy_i  (a gather, no atomics)
// over the queries i that see key j.
#include <cmath>

#include "common.cuh"

namespace flowless::cuda {

namespace {

using detail::kWarp;
using detail::Lengths;
using detail::warp_sum;

constexpr int kQueriesPerBlock = 4;  // one warp each
constexpr int kMaxHeadDim = 512;

struct AttnDims {
  int64_t B, T, C, H, d, w, tiles;
  bool local;
  float scale;
};

struct Row {
  int64_t b, h, i, L;  // batch, head, query (or key) index, valid length of b
};

__device__ __forceinline__ Row row_of_block(const AttnDims& a, const Lengths& Ls) {
  const int64_t tile = blockIdx.x % a.tiles, bh = blockIdx.x / a.tiles;
  Row r;
  r.h = bh % a.H;
  r.b = bh / a.H;
  r.i = tile * kQueriesPerBlock + threadIdx.x / kWarp;
  r.L = detail::valid_length(Ls, r.b, a.T);
  return r;
}

/// Loads channels lane + 32u of a head row (0 past head_dim), times `mul`.
template <int NV>
__device__ __forceinline__ void load_row(const float* p, int64_t d, int lane, float mul, float (&out)[NV]) {
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = lane + kWarp * u;
    out[u] = c < d ? p[c] * mul : 0.f;
  }
}

template <int NV>
__device__ __forceinline__ float dot_row(const float (&a)[NV], const float* p, int64_t d, int lane) {
  float s = 0.f;
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = lane + kWarp * u;
    if (c < d) s += a[u] * p[c];
  }
  return warp_sum(s);
}

template <int NV>
__device__ __forceinline__ float dot_regs(const float (&a)[NV], const float (&b)[NV]) {
  float s = 0.f;
#pragma unroll
  for (int u = 0; u < NV; ++u) s += a[u] * b[u];
  return warp_sum(s);
}

template <int NV>
__global__ void __launch_bounds__(kQueriesPerBlock * kWarp)
    attn_fwd(AttnDims a, Lengths Ls, const float* q, const float* k, const float* v, float* y, float* stats) {
  const int lane = int(threadIdx.x) % kWarp;
  const Row r = row_of_block(a, Ls);
  if (r.i >= a.T) return;  // whole warp
  const int64_t qoff = (r.b * a.T + r.i) * a.C + r.h * a.d;
  float* st = stats + ((r.b * a.H + r.h) * a.T + r.i) * 2;
  if (r.i >= r.L) {  // padded query: output 0
    for (int64_t c = lane; c < a.d; c += kWarp) y[qoff + c] = 0.f;
    if (lane == 0) st[0] = st[1] = 0.f;
    return;
  }
  float qs[NV], acc[NV];
  load_row<NV>(q + qoff, a.d, lane, a.scale, qs);
#pragma unroll
  for (int u = 0; u < NV; ++u) acc[u] = 0.f;
  const int64_t jlo = a.local ? detail::imax(0, r.i - a.w) : 0;
  const int64_t jhi = a.local ? detail::imin(a.T - 1, r.i + a.w) : r.L - 1;
  float m = -INFINITY, l = 0.f;
  for (int64_t j = jlo; j <= jhi; ++j) {
    const int64_t koff = (r.b * a.T + j) * a.C + r.h * a.d;
    float s = dot_row<NV>(qs, k + koff, a.d, lane);
    if (a.local && j >= r.L) s += -1e4f;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);
    const float p = expf(s - m_new);
    l = l * corr + p;
    const float* vr = v + koff;
#pragma unroll
    for (int u = 0; u < NV; ++u) {
      const int64_t c = lane + kWarp * u;
      acc[u] = acc[u] * corr + (c < a.d ? p * vr[c] : 0.f);
    }
    m = m_new;
  }
  const float inv = 1.f / l;
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = lane + kWarp * u;
    if (c < a.d) y[qoff + c] = acc[u] * inv;
  }
  if (lane == 0) {
    st[0] = m;
    st[1] = inv;
  }
}

// Pass 1, per query: D_i and dq_i.
template <int NV>
__global__ void __launch_bounds__(kQueriesPerBlock * kWarp)
    attn_bwd_query(AttnDims a, Lengths Ls, const float* q, const float* k, const float* v, const float* y,
                   const float* stats, const float* dy, float* dq, float* D) {
  const int lane = int(threadIdx.x) % kWarp;
  const Row r = row_of_block(a, Ls);
  if (r.i >= a.T) return;
  const int64_t bhi = (r.b * a.H + r.h) * a.T + r.i;
  if (r.i >= r.L) {
    if (lane == 0) D[bhi] = 0.f;
    return;
  }
  const int64_t qoff = (r.b * a.T + r.i) * a.C + r.h * a.d;
  float dyi[NV], yi[NV];
  load_row<NV>(dy + qoff, a.d, lane, 1.f, dyi);
  load_row<NV>(y + qoff, a.d, lane, 1.f, yi);
  const float Di = dot_regs<NV>(dyi, yi);
  if (lane == 0) D[bhi] = Di;
  if (!dq) return;
  const float m = stats[2 * bhi], inv = stats[2 * bhi + 1];
  float qs[NV], acc[NV];
  load_row<NV>(q + qoff, a.d, lane, a.scale, qs);
#pragma unroll
  for (int u = 0; u < NV; ++u) acc[u] = 0.f;
  const int64_t jlo = a.local ? detail::imax(0, r.i - a.w) : 0;
  const int64_t jhi = a.local ? detail::imin(a.T - 1, r.i + a.w) : r.L - 1;
  for (int64_t j = jlo; j <= jhi; ++j) {
    const int64_t koff = (r.b * a.T + j) * a.C + r.h * a.d;
    float s = dot_row<NV>(qs, k + koff, a.d, lane);
    if (a.local && j >= r.L) s += -1e4f;
    const float p = expf(s - m) * inv;
    const float dp = dot_row<NV>(dyi, v + koff, a.d, lane);
    const float ds = p * (dp - Di);
    const float* kr = k + koff;
#pragma unroll
    for (int u = 0; u < NV; ++u) {
      const int64_t c = lane + kWarp * u;
      if (c < a.d) acc[u] += ds * kr[c];
    }
  }
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = lane + kWarp * u;
    if (c < a.d) dq[qoff + c] += acc[u] * a.scale;
  }
}

// Pass 2, per key j (r.i is the key index here): gather over the queries that see it.
template <int NV>
__global__ void __launch_bounds__(kQueriesPerBlock * kWarp)
    attn_bwd_key(AttnDims a, Lengths Ls, const float* q, const float* k, const float* v, const float* stats,
                 const float* dy, const float* D, float* dk, float* dv) {
  const int lane = int(threadIdx.x) % kWarp;
  const Row r = row_of_block(a, Ls);
  const int64_t j = r.i;
  if (j >= a.T) return;
  int64_t ilo, ihi;
  if (a.local) {
    ilo = detail::imax(0, j - a.w);
    ihi = detail::imin(r.L - 1, j + a.w);
  } else {
    ilo = 0;
    ihi = j < r.L ? r.L - 1 : -1;  // padded keys are never seen in global mode
  }
  const int64_t koff = (r.b * a.T + j) * a.C + r.h * a.d;
  float kj[NV], vj[NV], dk_acc[NV], dv_acc[NV];
  load_row<NV>(k + koff, a.d, lane, 1.f, kj);
  load_row<NV>(v + koff, a.d, lane, 1.f, vj);
#pragma unroll
  for (int u = 0; u < NV; ++u) dk_acc[u] = dv_acc[u] = 0.f;
  for (int64_t i = ilo; i <= ihi; ++i) {
    const int64_t qoff = (r.b * a.T + i) * a.C + r.h * a.d;
    const int64_t bhi = (r.b * a.H + r.h) * a.T + i;
    float qs[NV], dyi[NV];
    load_row<NV>(q + qoff, a.d, lane, a.scale, qs);
    load_row<NV>(dy + qoff, a.d, lane, 1.f, dyi);
    float s = dot_regs<NV>(qs, kj);
    if (a.local && j >= r.L) s += -1e4f;
    const float p = expf(s - stats[2 * bhi]) * stats[2 * bhi + 1];
    const float dp = dot_regs<NV>(dyi, vj);
    const float ds = p * (dp - D[bhi]);
#pragma unroll
    for (int u = 0; u < NV; ++u) {
      dk_acc[u] += ds * qs[u];
      dv_acc[u] += p * dyi[u];
    }
  }
#pragma unroll
  for (int u = 0; u < NV; ++u) {
    const int64_t c = lane + kWarp * u;
    if (c < a.d) {
      if (dk) dk[koff + c] += dk_acc[u];
      if (dv) dv[koff + c] += dv_acc[u];
    }
  }
}

AttnDims check(const AttentionShape& s) {
  FLOWLESS_CHECK(s.B >= 0 && s.T >= 0 && s.C >= 1, "local_attention: bad shape (", s.B, ", ", s.T, ", ", s.C, ")");
  FLOWLESS_CHECK(s.heads >= 1 && s.C % s.heads == 0, "local_attention: ", s.C, " channels do not split into ",
                 s.heads, " heads");
  AttnDims a;
  a.B = s.B;
  a.T = s.T;
  a.C = s.C;
  a.H = s.heads;
  a.d = s.C / s.heads;
  FLOWLESS_CHECK(a.d <= kMaxHeadDim, "local_attention: head_dim ", a.d, " exceeds the CUDA kernel's ", kMaxHeadDim);
  a.local = s.window > 1;
  a.w = s.window / 2;
  a.tiles = (s.T + kQueriesPerBlock - 1) / kQueriesPerBlock;
  a.scale = float(1.0 / std::sqrt(double(a.d)));
  FLOWLESS_CHECK(a.B * a.H * a.tiles <= int64_t(2147483647), "local_attention: grid too large");
  return a;
}

/// Values per lane for a head dimension: the smallest of 1, 2, 4, 8, 16 with 32 * nv >= d.
int values_per_lane(int64_t d) {
  int nv = 1;
  while (kWarp * nv < d) nv *= 2;
  return nv;
}

template <int NV>
void launch_forward(const AttnDims& a, const Lengths& L, const float* q, const float* k, const float* v, float* y,
                    float* stats) {
  auto kernel = attn_fwd<NV>;
  FLOWLESS_LAUNCH(kernel, unsigned(a.B * a.H * a.tiles), kQueriesPerBlock * kWarp, 0, a, L, q, k, v, y, stats);
}

template <int NV>
void launch_backward(const AttnDims& a, const Lengths& L, const float* q, const float* k, const float* v,
                     const float* y, const float* stats, const float* dy, float* dq, float* dk, float* dv) {
  const unsigned grid = unsigned(a.B * a.H * a.tiles);
  detail::Scratch<float> D(a.B * a.H * a.T);
  auto kq = attn_bwd_query<NV>;
  FLOWLESS_LAUNCH(kq, grid, kQueriesPerBlock * kWarp, 0, a, L, q, k, v, y, stats, dy, dq, D.get());
  if (!dk && !dv) return;
  auto kk = attn_bwd_key<NV>;
  FLOWLESS_LAUNCH(kk, grid, kQueriesPerBlock * kWarp, 0, a, L, q, k, v, stats, dy, D.get(), dk, dv);
}

}  // namespace

void local_attention_forward(const AttentionShape& s, const float* q, const float* k, const float* v,
                             const int* lengths, float* y, float* stats) {
  const AttnDims a = check(s);
  const Lengths L = detail::make_lengths(lengths, a.B, "local_attention");
  if (a.B * a.T == 0) return;
  switch (values_per_lane(a.d)) {
    case 1: launch_forward<1>(a, L, q, k, v, y, stats); break;
    case 2: launch_forward<2>(a, L, q, k, v, y, stats); break;
    case 4: launch_forward<4>(a, L, q, k, v, y, stats); break;
    case 8: launch_forward<8>(a, L, q, k, v, y, stats); break;
    default: launch_forward<16>(a, L, q, k, v, y, stats); break;
  }
}

void local_attention_backward(const AttentionShape& s, const float* q, const float* k, const float* v,
                              const int* lengths, const float* y, const float* stats, const float* dy, float* dq,
                              float* dk, float* dv) {
  const AttnDims a = check(s);
  const Lengths L = detail::make_lengths(lengths, a.B, "local_attention");
  if (a.B * a.T == 0 || (!dq && !dk && !dv)) return;
  switch (values_per_lane(a.d)) {
    case 1: launch_backward<1>(a, L, q, k, v, y, stats, dy, dq, dk, dv); break;
    case 2: launch_backward<2>(a, L, q, k, v, y, stats, dy, dq, dk, dv); break;
    case 4: launch_backward<4>(a, L, q, k, v, y, stats, dy, dq, dk, dv); break;
    case 8: launch_backward<8>(a, L, q, k, v, y, stats, dy, dq, dk, dv); break;
    default: launch_backward<16>(a, L, q, k, v, y, stats, dy, dq, dk, dv); break;
  }
}

}  // namespace flowless::cuda
