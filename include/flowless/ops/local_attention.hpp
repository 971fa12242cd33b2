// flowless/ops/local_attention.hpp - masked multi-head attention, local
// (windowed) or global, forward + backward w.r.t. q, k and v.
//
//   y = local_attention(q, k, v, num_heads, window, lengths)
//   q, k, v : (B, T, C) already projected (after the 1x1 query/key/value
//             convs); C = num_heads * head_dim, head h = channels
//             [h*d, (h+1)*d).
//   lengths : valid length per batch element (prefix masks); empty = all valid.
//   y       : (B, T, C), heads concatenated in channel order.
//
// Semantics (the reference's LocalMaskedMHCA / MaskedMHCA, actionformer.md A.3
// item 7, A.4, A.13 item 7), with d = C / num_heads and scale = 1/sqrt(d)
// rounded to T, the logit of query i and key j is (q_i * scale) . k_j: q is
// scaled element-wise first, as the reference does (`q *= self.scale`).
//  - window > 1 (LocalMaskedMHCA): w = window / 2; query i attends keys
//    j in [i-w, i+w]. Keys outside [0, T) are excluded (-inf); keys
//    j >= lengths[b] (padded tail) get -1e4 ADDED to their logit (not -inf);
//    softmax over the window; the output of a padded query (i >= lengths[b])
//    is 0. Any T works (the reference's T % (2w) == 0 requirement comes from
//    its chunked implementation only); a window wider than the sequence is
//    simply clipped to [0, T) and keeps these local semantics.
//  - window <= 1 (MaskedMHCA): global attention over all keys; keys
//    j >= lengths[b] get -inf (and are zeroed in v, which is equivalent);
//    padded queries give 0 (the reference's rows there are non-zero but are
//    zeroed by the following masked output projection; a zero-length element
//    gives 0 here instead of NaN).
// Softmax as PyTorch's: max-subtracted exp, multiplied by 1/sum.
//
// Implementation: the local path is fused per query and head (2w+1 dot
// products, mask, softmax, weighted sum of v rows), parallel over (b, time
// tiles) and vectorised over head_dim. The global path uses per-(b, head)
// GEMMs over the valid prefix only. The probabilities are cached for the
// backward only when the graph is recorded (grad mode on and an input
// requires grad): (B, H, T, 2w+1) for local, L_b x L_b per (b, head) for
// global. The backward for k and v is a gather over the queries that see each
// key, so every output row is written by one chunk in a fixed order: results
// are bitwise identical for every thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/backend/cpu_gemm.hpp"

namespace flowless {

namespace detail {

/// Dot product with a fixed summation order (16 lane accumulators, then a
/// fixed pairwise tree, then the tail). Vectorises without -ffast-math.
template <class T>
inline T attn_dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  constexpr int L = 16;
  T acc[L] = {};
  int64_t c = 0;
  for (; c + L <= n; c += L)
    for (int l = 0; l < L; ++l) acc[l] += a[c + l] * b[c + l];
  for (int l = 0; l < L / 2; ++l) acc[l] += acc[l + L / 2];
  for (int l = 0; l < L / 4; ++l) acc[l] += acc[l + L / 4];
  T s = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; c < n; ++c) s += a[c] * b[c];
  return s;
}

/// y[0:n] += alpha * x[0:n]
template <class T>
inline void attn_axpy(T alpha, const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += alpha * x[c];
}

/// In-place softmax of s[0:n] (PyTorch order: max, exp(x - max), sum, * 1/sum).
template <class T>
inline void attn_softmax(T* s, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t o = 0; o < n; ++o) m = std::max(m, s[o]);
  T sum = 0;
  for (int64_t o = 0; o < n; ++o) {
    s[o] = std::exp(s[o] - m);
    sum += s[o];
  }
  const T inv = T(1) / sum;
  for (int64_t o = 0; o < n; ++o) s[o] *= inv;
}

/// Softmax of a long row (global attention): Eigen's vectorised exp, fixed-order sum.
template <class T>
inline void attn_softmax_long(T* s, int64_t n) {
  Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>> r(s, n);
  const T m = r.maxCoeff();
  r = (r - m).exp();
  constexpr int L = 16;
  T acc[L] = {};
  int64_t o = 0;
  for (; o + L <= n; o += L)
    for (int l = 0; l < L; ++l) acc[l] += s[o + l];
  for (int l = 0; l < L / 2; ++l) acc[l] += acc[l + L / 2];
  for (int l = 0; l < L / 4; ++l) acc[l] += acc[l + L / 4];
  T sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
  for (; o < n; ++o) sum += s[o];
  const T inv = T(1) / sum;
  for (o = 0; o < n; ++o) s[o] *= inv;
}

inline std::vector<int64_t> attn_valid_lengths(const std::vector<int>& lengths, int64_t B, int64_t Tn) {
  FLOWLESS_CHECK(lengths.empty() || int64_t(lengths.size()) == B, "local_attention: ", lengths.size(),
                 " lengths for batch ", B);
  std::vector<int64_t> L(static_cast<size_t>(B), Tn);
  for (size_t b = 0; b < lengths.size(); ++b) {
    FLOWLESS_CHECK(lengths[b] >= 0, "local_attention: negative length ", lengths[b]);
    L[b] = std::min<int64_t>(lengths[b], Tn);
  }
  return L;
}

/// Local (banded) path. See the file comment.
template <class T>
Var<T> local_attention_banded(const Var<T>& q, const Var<T>& k, const Var<T>& v, int64_t H, int64_t w,
                              std::vector<int64_t> Lv, bool record) {
  const Tensor<T>& Q = q.value();
  const Tensor<T>& K = k.value();
  const Tensor<T>& V = v.value();
  const int64_t B = Q.size(0), Tn = Q.size(1), C = Q.size(2), d = C / H, Wd = 2 * w + 1;
  const T scale = T(1.0 / std::sqrt(double(d)));
  const T pad_logit = T(-1e4);
  Tensor<T> Y = Tensor<T>::zeros(Shape{B, Tn, C});
  Tensor<T> P;
  if (record) P = Tensor<T>::zeros(Shape{B, H, Tn, Wd});
  {
    const T* qd = Q.data();
    const T* kd = K.data();
    const T* vd = V.data();
    T* yd = Y.data();
    T* pd = record ? P.data() : nullptr;
    parallel_for(B * Tn, 32, [&](int64_t r0, int64_t r1) {
      std::vector<T> qs(static_cast<size_t>(d)), s(static_cast<size_t>(Wd));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / Tn, i = r % Tn, L = Lv[b];
        if (i >= L) continue;  // padded query: output and probabilities stay 0
        const int64_t jlo = std::max<int64_t>(0, i - w), jhi = std::min<int64_t>(Tn - 1, i + w);
        const int64_t olo = jlo - (i - w), n = jhi - jlo + 1;
        for (int64_t h = 0; h < H; ++h) {
          const T* qi = qd + r * C + h * d;
          for (int64_t c = 0; c < d; ++c) qs[c] = qi[c] * scale;
          for (int64_t j = jlo; j <= jhi; ++j) {
            T sc = attn_dot(qs.data(), kd + (b * Tn + j) * C + h * d, d);
            if (j >= L) sc += pad_logit;
            s[j - jlo] = sc;
          }
          attn_softmax(s.data(), n);
          T* yi = yd + r * C + h * d;
          for (int64_t j = jlo; j <= jhi; ++j) attn_axpy(s[j - jlo], vd + (b * Tn + j) * C + h * d, yi, d);
          if (pd) std::copy(s.data(), s.data() + n, pd + ((b * H + h) * Tn + i) * Wd + olo);
        }
      }
    });
  }
  return make_op<T>(std::move(Y), {q, k, v}, "local_attention",
                    [=, P = std::move(P), Lv = std::move(Lv)](Node<T>& out) {
    const bool need_q = out.needs_grad(0), need_k = out.needs_grad(1), need_v = out.needs_grad(2);
    const T* qd = out.inputs[0]->value.data();
    const T* kd = out.inputs[1]->value.data();
    const T* vd = out.inputs[2]->value.data();
    const T* dy = out.grad.data();
    const T* pd = P.data();
    // Pass 1, per query: dP = dy_i . v_j, dS = P (dP - sum(P dP)), dq_i = scale * sum_j dS_ij k_j.
    Tensor<T> dS = Tensor<T>::zeros(Shape{B, H, Tn, Wd});
    T* dsd = dS.data();
    T* dq = need_q ? out.input_grad(0).data() : nullptr;
    parallel_for(B * Tn, 32, [&](int64_t r0, int64_t r1) {
      std::vector<T> acc(static_cast<size_t>(d));
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / Tn, i = r % Tn;
        if (i >= Lv[b]) continue;
        const int64_t jlo = std::max<int64_t>(0, i - w), jhi = std::min<int64_t>(Tn - 1, i + w);
        const int64_t olo = jlo - (i - w);
        for (int64_t h = 0; h < H; ++h) {
          const T* pr = pd + ((b * H + h) * Tn + i) * Wd + olo;
          T* sr = dsd + ((b * H + h) * Tn + i) * Wd + olo;
          const T* dyi = dy + r * C + h * d;
          T dot_pdp = 0;
          for (int64_t j = jlo; j <= jhi; ++j) {
            const T dp = attn_dot(dyi, vd + (b * Tn + j) * C + h * d, d);
            sr[j - jlo] = dp;
            dot_pdp += pr[j - jlo] * dp;
          }
          for (int64_t j = jlo; j <= jhi; ++j) sr[j - jlo] = pr[j - jlo] * (sr[j - jlo] - dot_pdp);
          if (dq) {
            std::fill(acc.begin(), acc.end(), T(0));
            for (int64_t j = jlo; j <= jhi; ++j) attn_axpy(sr[j - jlo], kd + (b * Tn + j) * C + h * d, acc.data(), d);
            T* dqi = dq + r * C + h * d;
            for (int64_t c = 0; c < d; ++c) dqi[c] += acc[c] * scale;
          }
        }
      }
    });
    if (!need_k && !need_v) return;
    // Pass 2, per key (gather): dk_j = sum_i dS_ij qs_i, dv_j = sum_i P_ij dy_i over the valid queries
    // i in [j-w, j+w]; query i stores key j at band slot o = j - i + w.
    Tensor<T> Qs;
    if (need_k) {
      Qs = Tensor<T>(Shape{B, Tn, C});
      T* qs = Qs.data();
      parallel_for(B * Tn, 64, [&](int64_t r0, int64_t r1) {
        for (int64_t e = r0 * C; e < r1 * C; ++e) qs[e] = qd[e] * scale;
      });
    }
    T* dk = need_k ? out.input_grad(1).data() : nullptr;
    T* dv = need_v ? out.input_grad(2).data() : nullptr;
    const T* qsd = need_k ? Qs.data() : nullptr;
    parallel_for(B * Tn, 32, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / Tn, j = r % Tn;
        const int64_t ilo = std::max<int64_t>(0, j - w), ihi = std::min<int64_t>(Lv[b] - 1, j + w);
        for (int64_t h = 0; h < H; ++h) {
          T* dkj = dk ? dk + r * C + h * d : nullptr;
          T* dvj = dv ? dv + r * C + h * d : nullptr;
          for (int64_t i = ilo; i <= ihi; ++i) {
            const int64_t idx = ((b * H + h) * Tn + i) * Wd + (j - i + w);
            if (dkj) attn_axpy(dsd[idx], qsd + (b * Tn + i) * C + h * d, dkj, d);
            if (dvj) attn_axpy(pd[idx], dy + (b * Tn + i) * C + h * d, dvj, d);
          }
        }
      }
    });
  });
}

/// Global path (MaskedMHCA). See the file comment.
template <class T>
Var<T> local_attention_global(const Var<T>& q, const Var<T>& k, const Var<T>& v, int64_t H, std::vector<int64_t> Lv,
                              bool record) {
  const Tensor<T>& Q = q.value();
  const Tensor<T>& K = k.value();
  const Tensor<T>& V = v.value();
  const int64_t B = Q.size(0), Tn = Q.size(1), C = Q.size(2), d = C / H;
  const T scale = T(1.0 / std::sqrt(double(d)));
  Tensor<T> Y = Tensor<T>::zeros(Shape{B, Tn, C});
  // Probabilities per (b, h): an L_b x L_b block at offset poff[b*H + h].
  std::vector<int64_t> poff(static_cast<size_t>(B * H + 1), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) poff[b * H + h + 1] = poff[b * H + h] + Lv[b] * Lv[b];
  // 64-byte aligned buffers (Tensor storage): Eigen's vectorised exp then
  // splits every row the same way on every call.
  Tensor<T> Pbuf, scratch;
  if (record) {
    Pbuf = Tensor<T>(Shape{std::max<int64_t>(poff.back(), 1)});
  } else {
    int64_t maxL = 0;
    for (int64_t b = 0; b < B; ++b) maxL = std::max(maxL, Lv[b]);
    scratch = Tensor<T>(Shape{std::max<int64_t>(maxL * maxL, 1)});
  }
  Tensor<T> Qs(Shape{B, Tn, C});
  {
    const T* qd = Q.data();
    T* qs = Qs.data();
    parallel_for(B * Tn, 64, [&](int64_t r0, int64_t r1) {
      for (int64_t e = r0 * C; e < r1 * C; ++e) qs[e] = qd[e] * scale;
    });
  }
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = Lv[b];
    if (L == 0) continue;
    const int64_t base = b * Tn * C;
    for (int64_t h = 0; h < H; ++h) {
      T* S = record ? Pbuf.data() + poff[b * H + h] : scratch.data();
      cpu::gemm<T>(false, true, L, L, d, T(1), Qs.data() + base + h * d, C, K.data() + base + h * d, C, T(0), S, L);
      parallel_for(L, 16, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) attn_softmax_long(S + i * L, L);
      });
      cpu::gemm<T>(false, false, L, d, L, T(1), S, L, V.data() + base + h * d, C, T(0), Y.data() + base + h * d, C);
    }
  }
  return make_op<T>(std::move(Y), {q, k, v}, "global_attention",
                    [=, Qs = std::move(Qs), Lv = std::move(Lv), poff = std::move(poff)](Node<T>& out) {
    const bool need_q = out.needs_grad(0), need_k = out.needs_grad(1), need_v = out.needs_grad(2);
    const T* kd = out.inputs[1]->value.data();
    const T* vd = out.inputs[2]->value.data();
    const T* dy = out.grad.data();
    T* dq = need_q ? out.input_grad(0).data() : nullptr;
    T* dk = need_k ? out.input_grad(1).data() : nullptr;
    T* dv = need_v ? out.input_grad(2).data() : nullptr;
    int64_t maxL = 0;
    for (int64_t b = 0; b < B; ++b) maxL = std::max(maxL, Lv[b]);
    std::vector<T> dS(static_cast<size_t>(maxL * maxL));
    for (int64_t b = 0; b < B; ++b) {
      const int64_t L = Lv[b];
      if (L == 0) continue;
      const int64_t base = b * Tn * C;
      for (int64_t h = 0; h < H; ++h) {
        const T* P = Pbuf.data() + poff[b * H + h];
        const int64_t o = base + h * d;
        if (dv) cpu::gemm<T>(true, false, L, d, L, T(1), P, L, dy + o, C, T(1), dv + o, C);
        if (!dq && !dk) continue;
        cpu::gemm<T>(false, true, L, L, d, T(1), dy + o, C, vd + o, C, T(0), dS.data(), L);
        parallel_for(L, 16, [&](int64_t i0, int64_t i1) {
          for (int64_t i = i0; i < i1; ++i) {
            const T* pr = P + i * L;
            T* sr = dS.data() + i * L;
            const T dot_pdp = attn_dot(pr, sr, L);
            for (int64_t j = 0; j < L; ++j) sr[j] = pr[j] * (sr[j] - dot_pdp);
          }
        });
        if (dq) cpu::gemm<T>(false, false, L, d, L, scale, dS.data(), L, kd + o, C, T(1), dq + o, C);
        if (dk) cpu::gemm<T>(true, false, L, d, L, T(1), dS.data(), L, Qs.data() + o, C, T(1), dk + o, C);
      }
    }
  });
}

}  // namespace detail

template <class T>
Var<T> local_attention(const Var<T>& q, const Var<T>& k, const Var<T>& v, int num_heads, int window,
                       const std::vector<int>& lengths) {
  const Tensor<T>& Q = q.value();
  FLOWLESS_CHECK(Q.dim() == 3, "local_attention: q must be (B, T, C), got ", Q.shape().str());
  FLOWLESS_CHECK(k.value().shape() == Q.shape() && v.value().shape() == Q.shape(), "local_attention: q ",
                 Q.shape().str(), ", k ", k.value().shape().str(), ", v ", v.value().shape().str(),
                 " must have the same shape");
  FLOWLESS_CHECK(num_heads >= 1 && Q.size(2) % num_heads == 0, "local_attention: ", Q.size(2),
                 " channels do not split into ", num_heads, " heads");
  std::vector<int64_t> Lv = detail::attn_valid_lengths(lengths, Q.size(0), Q.size(1));
  const bool record = grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (window > 1) return detail::local_attention_banded(q, k, v, num_heads, window / 2, std::move(Lv), record);
  return detail::local_attention_global(q, k, v, num_heads, std::move(Lv), record);
}

}  // namespace flowless
