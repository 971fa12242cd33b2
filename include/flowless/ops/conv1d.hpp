// flowless/ops/conv1d.hpp - masked 1-D convolution (forward + backward).
//
//   y = conv1d(x, weight, bias, opt)
//   x      : (B, T, Cin)                 time-major input
//   weight : (Cout, Cin / groups, K)     PyTorch's Conv1d layout (checkpoints load as-is)
//   bias   : (Cout) or undefined Var     optional
//   y      : (B, T_out, Cout), T_out = (T + 2 * padding - K) / stride + 1
// Masking (opt.lengths non-empty, one valid length per batch element): the
// output is zeroed at t >= ceil(len / stride), i.e. the reference's
// MaskedConv1D, whose mask is downsampled by nearest neighbour (index s*i is
// kept). Use conv_out_lengths() to get those lengths. The input is not
// masked by this op (the reference relies on upstream masking).
//
// Implementation: groups == 1 is one GEMM per batch element over the output
// rows that survive the mask (masked rows are zero and never computed),
// reading input patches in place (K*Cin consecutive values per output step;
// only rows at the sequence ends use zero-padded copies); the backward is
// dW += patches^T dY and, for stride 1, dX += patches(dY) W^T as one GEMM
// each (stride > 1: dP = dY W^T, then overlap-add), over the valid rows only.
// 1x1 convs use the weight as stored (the GEMM transposes it while packing;
// dW and, for stride 1, dX need no layout change either).
// float kernel-3 / stride-1 / padding-1 convs with >= 64 input and output
// channels compute the forward and the input gradient with Winograd F(2,3)
// (4 GEMMs of half the rows instead of one of 3*Cin columns: 2/3 of the
// multiply-adds; float rounding differs from the direct sum at the 1e-7
// relative level). On AVX-512 builds the input and output transforms run
// inside the products' tasks (backend/cpu_winograd.hpp), 48 output pairs at a
// time, so the transformed input and the four products never go to memory.
// With both widths >= 256 (and >= 64 output pairs) the weight gradient of such
// a conv uses Winograd F(3,2) over the output pairs of the whole batch
// (conv3_winograd_weight_grad); narrower convs keep the direct product, one
// per batch element in element order.
// depthwise (groups == Cin == Cout) is a vectorised loop over channels; other
// group counts use one GEMM per group and tap.
#pragma once

#include <algorithm>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/backend/cpu_gemm.hpp"
#include "flowless/backend/cpu_winograd.hpp"

namespace flowless {

struct Conv1dOptions {
  int stride = 1;
  int padding = 0;
  int groups = 1;
  std::vector<int> lengths;  // valid input lengths per batch element; empty = no mask
};

/// Valid lengths after a stride-s masked conv / pooling (nearest downsampling).
inline std::vector<int> conv_out_lengths(const std::vector<int>& lengths, int stride) {
  std::vector<int> out(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) out[i] = (lengths[i] + stride - 1) / stride;
  return out;
}

namespace detail {

// Zero-padded copy of x_b (T, C) with `pad` rows before and enough after.
template <class T>
std::vector<T> pad_rows(const T* x, int64_t Tn, int64_t C, int64_t pad_before, int64_t total_rows) {
  std::vector<T> xp(static_cast<size_t>(total_rows * C), T(0));
  int64_t n = std::min<int64_t>(Tn, total_rows - pad_before);
  std::copy(x, x + n * C, xp.data() + pad_before * C);
  return xp;
}

/// The taps of a depthwise weight (C x 1 x K) channel-contiguous: out[k*C + c] = w[c*K + k].
template <class T>
std::vector<T> depthwise_taps(const T* w, int64_t C, int64_t K) {
  std::vector<T> out(static_cast<size_t>(K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K; ++k) out[size_t(k * C + c)] = w[c * K + k];
  return out;
}

/// Wr[(k*Cin + i)*Cout + o] = w[(o*Cin + i)*K + k]: the GEMM layout of a
/// groups == 1 weight (rows = patch entries, tap-major).
template <class T>
void conv_weight_to_gemm(const T* w, int64_t Cout, int64_t Cin, int64_t K, T* Wr) {
  parallel_for(Cin, 32, [&](int64_t i0, int64_t i1) {
    constexpr int64_t kOB = 64;
    for (int64_t o0 = 0; o0 < Cout; o0 += kOB) {
      const int64_t o1 = std::min(Cout, o0 + kOB);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t k = 0; k < K; ++k) {
          T* dst = Wr + (k * Cin + i) * Cout;
          for (int64_t o = o0; o < o1; ++o) dst[o] = w[(o * Cin + i) * K + k];
        }
    }
  });
}

/// dw[(o*Cin + i)*K + k] (+)= tap(k, i, o) for a gradient computed in the
/// GEMM's channel-major layout (stored when `store`, else added).
/// fill(i, o0, no, t) writes t[oo*stride + k] = tap(k, i, o0 + oo) for oo < no,
/// k < K (stride = 8*K). A task takes 8 input channels: their taps are read in
/// runs of up to 512 output channels into an L1-sized tile, then each output
/// channel's 8*K values are written contiguously. (16 x 16 tiles, reading one
/// cache line from each of 48 rows 2 KiB apart, ran twice as slow right after
/// the GEMM: the prefetcher does not follow that pattern.)
template <class T, class Fill>
void weight_grad_to_oik(int64_t Cout, int64_t Cin, int64_t K, T* dw, bool store, const Fill& fill) {
  constexpr int64_t kOB = 512, kIB = 8;
  const int64_t nib = (Cin + kIB - 1) / kIB, stride = kIB * K;
  parallel_for(nib, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> tile(static_cast<size_t>(std::min(kOB, Cout) * stride));
    for (int64_t ib = b0; ib < b1; ++ib) {
      const int64_t i0 = ib * kIB, ni = std::min(kIB, Cin - i0), run = ni * K;
      for (int64_t o0 = 0; o0 < Cout; o0 += kOB) {
        const int64_t no = std::min(kOB, Cout - o0);
        for (int64_t ii = 0; ii < ni; ++ii) fill(i0 + ii, o0, no, tile.data() + ii * K);
        for (int64_t oo = 0; oo < no; ++oo) {
          T* dst = dw + ((o0 + oo) * Cin + i0) * K;
          const T* t = tile.data() + oo * stride;
          if (store)
            std::copy(t, t + run, dst);
          else
            for (int64_t e = 0; e < run; ++e) dst[e] += t[e];
        }
      }
    }
  });
}

/// dw[(o*Cin + i)*K + k] (+)= dWr[(k*Cin + i)*Cout + o] (the inverse layout change).
template <class T>
void conv_weight_grad_from_gemm(const T* dWr, int64_t Cout, int64_t Cin, int64_t K, T* dw, bool store) {
  const int64_t stride = 8 * K;
  weight_grad_to_oik<T>(Cout, Cin, K, dw, store, [&](int64_t i, int64_t o0, int64_t no, T* t) {
    for (int64_t k = 0; k < K; ++k) {
      const T* src = dWr + (k * Cin + i) * Cout + o0;
      for (int64_t oo = 0; oo < no; ++oo) t[oo * stride + k] = src[oo];
    }
  });
}

/// Wt[(k*Cout + o)*Cin + i] = w[(o*Cin + i)*K + (K - 1 - k)]: the weight of the
/// stride-1 input-gradient GEMM (flipped taps, transposed channels).
template <class T>
void conv_weight_to_dx_gemm(const T* w, int64_t Cout, int64_t Cin, int64_t K, T* Wt) {
  parallel_for(Cout, 16, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t k = 0; k < K; ++k) {
        T* dst = Wt + (k * Cout + o) * Cin;
        const T* src = w + o * Cin * K + (K - 1 - k);
        for (int64_t i = 0; i < Cin; ++i) dst[i] = src[i * K];
      }
  });
}

/// Patch rows of a conv over x (Tn rows of C values, rows >= Tn and < 0 are
/// zero): rows[t] for t in [0, L) points at the K*C values starting at x row
/// t*s - p - in place when the whole window is inside [0, Tn), else at a
/// zero-padded copy kept in `scratch`.
template <class T>
void conv_patch_rows(const T* x, int64_t Tn, int64_t C, int64_t K, int64_t s, int64_t p, int64_t L,
                     std::vector<const T*>& rows, std::vector<T>& scratch) {
  rows.resize(static_cast<size_t>(std::max<int64_t>(L, 0)));
  int64_t nb = 0;
  for (int64_t t = 0; t < L; ++t) {
    const int64_t j0 = t * s - p;
    if (j0 < 0 || j0 + K > Tn) ++nb;
  }
  scratch.assign(static_cast<size_t>(nb * K * C), T(0));
  int64_t b = 0;
  for (int64_t t = 0; t < L; ++t) {
    const int64_t j0 = t * s - p;
    if (j0 >= 0 && j0 + K <= Tn) {
      rows[t] = x + j0 * C;
      continue;
    }
    T* dst = scratch.data() + b * K * C;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t j = j0 + k;
      if (j >= 0 && j < Tn) std::copy(x + j * C, x + (j + 1) * C, dst + k * C);
    }
    rows[t] = dst;
    ++b;
  }
}

/// The Winograd weight transform of one tap triple: (g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2).
template <class T>
inline void winograd_tap(T g0, T g1, T g2, T* V, int64_t CC, int64_t e) {
  V[e] = g0;
  V[CC + e] = T(0.5) * ((g0 + g1) + g2);
  V[2 * CC + e] = T(0.5) * ((g0 - g1) + g2);
  V[3 * CC + e] = g2;
}

/// V (4 x Cin x Cout) of the forward correlation: g_k[i][o] = w[o][i][k] (w: Cout x Cin x 3).
template <class T>
void winograd_weights_forward(const T* w, int64_t Cout, int64_t Cin, T* V) {
  const int64_t CC = Cin * Cout;
  parallel_for(Cin, 32, [&](int64_t i0, int64_t i1) {
    constexpr int64_t kOB = 64;
    for (int64_t o0 = 0; o0 < Cout; o0 += kOB) {
      const int64_t o1 = std::min(Cout, o0 + kOB);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t o = o0; o < o1; ++o) {
          const T* g = w + (o * Cin + i) * 3;
          winograd_tap(g[0], g[1], g[2], V, CC, i * Cout + o);
        }
    }
  });
}

/// V (4 x Cout x Cin) of the input-gradient correlation over dY: g_k[o][i] = w[o][i][2 - k].
template <class T>
void winograd_weights_input_grad(const T* w, int64_t Cout, int64_t Cin, T* V) {
  const int64_t CC = Cin * Cout;
  parallel_for(Cout, 16, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t i = 0; i < Cin; ++i) {
        const T* g = w + (o * Cin + i) * 3;
        winograd_tap(g[2], g[1], g[0], V, CC, o * Cin + i);
      }
  });
}

/// Winograd F(2,3) for a kernel-3, stride-1, padding-1 correlation:
///   y[t] (+)= sum_{k<3} x[t - 1 + k] g_k   for t in [0, Ly),
/// x: Tx rows of Cin (rows outside [0, Tx) are zero), g_k: Cin x Cout taps
/// given through their transform V (4 x Cin x Cout, winograd_weights_*),
/// y: rows of Cout (overwritten, or added to with accumulate), plus bias (Cout
/// values, or null) in the same pass. Per output pair (2m, 2m+1), with d_j = x[2m - 1 + j]:
///   U = (d0 - d2, d1 + d2, d2 - d1, d1 - d3),  V = (g0, (g0 + g1 + g2)/2, (g0 - g1 + g2)/2, g2),
///   M_i = U_i V_i (four GEMMs of Ly/2 rows),  y[2m] = M0 + M1 + M2,  y[2m+1] = M1 - M2 - M3:
/// 4 instead of 6 multiply-adds per output pair and channel pair.
/// The four slabs V_i (Cin x Cout) of a Winograd weight transform packed for
/// cpu::gemm_prepacked (in the calling thread's matmul precision); they refer to V.
inline std::vector<cpu::PackedB> pack_winograd(const float* V, int64_t Cin, int64_t Cout) {
  std::vector<cpu::PackedB> slabs;
  slabs.reserve(4);
  for (int64_t i = 0; i < 4; ++i) slabs.emplace_back(false, Cin, Cout, V + i * Cin * Cout, Cout);
  return slabs;
}

/// The unfused form: U and M for a whole chunk of output pairs in memory.
/// slabs: V packed by pack_winograd (float only), or null to pack it here,
/// once for all chunks. The four products of a chunk run as one batch.
template <class T>
void conv3_winograd_unfused(const T* x, int64_t Tx, int64_t Cin, const T* V, int64_t Cout, T* y, int64_t Ly,
                            bool accumulate, const T* bias = nullptr, const cpu::PackedB* slabs = nullptr) {
  std::vector<cpu::PackedB> own;
  if constexpr (std::is_same_v<T, float>) {
    if (!slabs) {
      own = pack_winograd(V, Cin, Cout);
      slabs = own.data();
    }
  }
  const int64_t P = (Ly + 1) / 2, CC = Cin * Cout;
  // Work buffers without zero-fill, from the backend's allocator (reused from
  // call to call instead of fresh pages); output pairs in equal chunks so that
  // U and M stay under 24 MB.
  const int64_t pmax = std::max<int64_t>(96, (int64_t(6) << 20) / (4 * (Cin + Cout)));
  const int64_t nchunks = (P + pmax - 1) / pmax;
  const int64_t Pc = std::min(P, ((P + nchunks - 1) / nchunks + 11) / 12 * 12);
  Tensor<T> wbuf(Shape{4 * Pc * (Cin + Cout)});
  std::vector<T> zero(static_cast<size_t>(Cin), T(0));
  for (int64_t mc = 0; mc < P; mc += Pc) {
    const int64_t pc = std::min(Pc, P - mc);
    T* u = wbuf.data();
    T* mb = u + 4 * pc * Cin;
    parallel_for(pc, 32, [&](int64_t m0, int64_t m1) {
      for (int64_t mm = m0; mm < m1; ++mm) {
        const int64_t m = mc + mm;
        const T* d[4];
        for (int64_t j = 0; j < 4; ++j) {
          const int64_t r = 2 * m - 1 + j;
          d[j] = (r >= 0 && r < Tx) ? x + r * Cin : zero.data();
        }
        for (int64_t i = 0; i < 4; ++i) cpu::winograd_detail::input_row(i, d, u + (i * pc + mm) * Cin, Cin);
      }
    });
    if constexpr (std::is_same_v<T, float>) {
      std::vector<cpu::PrepackedProduct> batch;
      for (int64_t i = 0; i < 4; ++i) batch.push_back({&slabs[i], pc, u + i * pc * Cin, Cin, mb + i * pc * Cout, Cout});
      cpu::gemm_prepacked(1.f, 0.f, batch);
    } else {
      for (int64_t i = 0; i < 4; ++i)
        cpu::gemm<T>(false, false, pc, Cout, Cin, T(1), u + i * pc * Cin, Cin, V + i * CC, Cout, T(0),
                     mb + i * pc * Cout, Cout);
    }
    parallel_for(pc, 32, [&](int64_t m0, int64_t m1) {
      for (int64_t mm = m0; mm < m1; ++mm) {
        T* y0 = y + 2 * (mc + mm) * Cout;
        cpu::winograd_detail::output_pair(mb + mm * Cout, pc * Cout, y0, 2 * (mc + mm) + 1 < Ly ? y0 + Cout : nullptr,
                                          int64_t(0), Cout, accumulate, bias);
      }
    });
  }
}

/// conv3_winograd: the fused form (cpu::winograd_f23_fused: the transforms
/// inside the products' tasks, U and M never in memory) where it applies,
/// else the unfused one; both give the same bits. slabs: V packed by
/// pack_winograd, or null to pack it here.
template <class T>
void conv3_winograd(const T* x, int64_t Tx, int64_t Cin, const T* V, int64_t Cout, T* y, int64_t Ly, bool accumulate,
                    const T* bias = nullptr, const cpu::PackedB* slabs = nullptr) {
  if constexpr (std::is_same_v<T, float>) {
    std::vector<cpu::PackedB> own;
    if (!slabs) {
      own = pack_winograd(V, Cin, Cout);
      slabs = own.data();
    }
    if (cpu::winograd_f23_fused(x, Tx, Cin, slabs, Cout, y, Ly, accumulate, bias)) return;
  }
  conv3_winograd_unfused(x, Tx, Cin, V, Cout, y, Ly, accumulate, bias, slabs);
}

/// Whether a groups-1 conv takes the Winograd path: float, kernel 3, stride 1,
/// padding 1, and channel counts large enough for the GEMMs to dominate.
template <class T>
bool conv3_use_winograd(int64_t K, int64_t s, int64_t p, int64_t Cin, int64_t Cout, int64_t rows) {
  return std::is_same_v<T, float> && K == 3 && s == 1 && p == 1 && Cin >= 64 && Cout >= 64 && rows >= 16;
}

/// Whether a conv's weight gradient takes conv3_winograd_weight_grad: float,
/// kernel 3, stride 1, padding 1, both widths >= 256 and at least 64 output
/// pairs in the batch. Narrower convs keep the direct products, whose
/// rounding the small models' trainings (the DCD experiments of docs/dcd.md)
/// were measured with.
template <class T>
bool conv3_use_winograd_weight_grad(int64_t K, int64_t s, int64_t p, int64_t Cin, int64_t Cout,
                                    const std::vector<int64_t>& Lout) {
  if (!(std::is_same_v<T, float> && K == 3 && s == 1 && p == 1 && Cin >= 256 && Cout >= 256)) return false;
  int64_t pairs = 0;
  for (int64_t L : Lout) pairs += (L + 1) / 2;
  return pairs >= 64;
}

/// The weight gradient of a kernel-3, stride-1, padding-1 conv by Winograd
/// F(3, 2), the transpose of the forward's F(2, 3): dW_k = sum_t x[t - 1 + k]^T dY[t]
/// over the valid rows of every batch element is, per output pair m
/// (t = 2m, 2m + 1) with d_j = x[2m - 1 + j] (zero outside [0, Tn)),
/// y0 = dY[2m] and y1 = dY[2m + 1] (zero past the element's length),
///   U = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)   (the forward's input transform)
///   G = (y0, y0 + y1, y0 - y1, y1)
///   M_i = sum over pairs of U_i^T G_i          (four products, inner dimension = pairs,
///                                               computed transposed: (Cout x Cin), dw's own order)
///   dW_0 = M0 + (M1 + M2)/2, dW_1 = (M1 - M2)/2, dW_2 = (M1 + M2)/2 - M3:
/// 4 multiply-adds per pair and weight element instead of 6. The pairs of all
/// batch elements form one inner dimension, in chunks of 1024 (bounded
/// memory). x: (B, Tn, Cin); dY: (B, Tout, Cout), rows >= Lout[b] never read;
/// dw: (Cout, Cin, 3), stored when `store`, else added.
inline void conv3_winograd_weight_grad(const float* x, int64_t Tn, int64_t Cin, const float* dY, int64_t Tout,
                                       int64_t Cout, const std::vector<int64_t>& Lout, float* dw, bool store) {
  std::vector<std::pair<int64_t, int64_t>> pairs;  // (batch element, pair)
  for (size_t b = 0; b < Lout.size(); ++b)
    for (int64_t m = 0; m < (Lout[b] + 1) / 2; ++m) pairs.emplace_back(int64_t(b), m);
  const int64_t P = int64_t(pairs.size());
  constexpr int64_t kChunk = 1024;
  const std::vector<float> zero(static_cast<size_t>(std::max(Cin, Cout)), 0.f);
  Tensor<float> M(Shape{4, Cout, Cin});  // M_i^T
  for (int64_t c0 = 0; c0 < P; c0 += kChunk) {
    const int64_t pc = std::min(kChunk, P - c0);
    Tensor<float> U(Shape{4, pc, Cin}), G(Shape{4, pc, Cout});
    float* u = U.data();
    float* g = G.data();
    parallel_for(pc, 16, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        const auto [b, m] = pairs[size_t(c0 + q)];
        const float* xb = x + b * Tn * Cin;
        const float* d[4];
        for (int64_t j = 0; j < 4; ++j) {
          const int64_t r = 2 * m - 1 + j;
          d[j] = (r >= 0 && r < Tn) ? xb + r * Cin : zero.data();
        }
        for (int64_t i = 0; i < 4; ++i) cpu::winograd_detail::input_row(i, d, u + (i * pc + q) * Cin, Cin);
        const float* __restrict y0 = dY + (b * Tout + 2 * m) * Cout;
        const float* __restrict y1 = 2 * m + 1 < Lout[size_t(b)] ? y0 + Cout : zero.data();
        float* __restrict g0 = g + q * Cout;
        float* __restrict g1 = g0 + pc * Cout;
        float* __restrict g2 = g1 + pc * Cout;
        float* __restrict g3 = g2 + pc * Cout;
        for (int64_t c = 0; c < Cout; ++c) {
          g0[c] = y0[c];
          g1[c] = y0[c] + y1[c];
          g2[c] = y0[c] - y1[c];
          g3[c] = y1[c];
        }
      }
    });
    // M_i^T (Cout x Cin) = G_i^T U_i: the products come out in the weight's own (o, i) order
    for (int64_t i = 0; i < 4; ++i)
      cpu::gemm<float>(true, false, Cout, Cin, pc, 1.f, g + i * pc * Cout, Cout, u + i * pc * Cin, Cin,
                       c0 == 0 ? 0.f : 1.f, M.data() + i * Cin * Cout, Cin);
  }
  const int64_t CC = Cin * Cout;
  const float* mt = M.data();
  parallel_for(Cout, 16, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const float* a0 = mt + o * Cin;
      const float* a1 = a0 + CC;
      const float* a2 = a1 + CC;
      const float* a3 = a2 + CC;
      float* d = dw + o * Cin * 3;
      for (int64_t i = 0; i < Cin; ++i) {
        const float h = 0.5f * (a1[i] + a2[i]);
        const float w0 = a0[i] + h, w1 = 0.5f * (a1[i] - a2[i]), w2 = h - a3[i];
        if (store) {
          d[3 * i] = w0;
          d[3 * i + 1] = w1;
          d[3 * i + 2] = w2;
        } else {
          d[3 * i] += w0;
          d[3 * i + 1] += w1;
          d[3 * i + 2] += w2;
        }
      }
    }
  });
}

template <class T>
void apply_length_mask(T* y, int64_t B, int64_t Tout, int64_t C, const std::vector<int>& out_len) {
  if (out_len.empty()) return;
  for (int64_t b = 0; b < B; ++b) {
    int64_t L = std::min<int64_t>(out_len[b], Tout);
    std::fill(y + (b * Tout + L) * C, y + (b + 1) * Tout * C, T(0));
  }
}

/// The per-thread cache behind ConvWeightCacheScope: Winograd transforms by
/// weight tensor, with their slabs packed for the GEMM, and the packed GEMM
/// operand of the other dense convs (1x1: the weight read transposed; K > 1:
/// the weight rearranged to K*Cin x Cout).
struct ConvWeightCache {
  struct Entry {
    Tensor<float> weight;  // keeps the storage (and so the address) alive while cached
    std::vector<float> V;
    std::vector<cpu::PackedB> slabs;  // V packed in slabs[0].precision()
  };
  struct GemmEntry {
    Tensor<float> weight;
    std::vector<float> Wr;                 // K > 1: the rearranged weight the panel refers to
    std::unique_ptr<cpu::PackedB> packed;  // in packed->precision()
  };
  std::vector<Entry> entries;
  std::vector<GemmEntry> gemm_entries;
  static ConvWeightCache*& current() {
    thread_local ConvWeightCache* c = nullptr;
    return c;
  }
  /// The GEMM operand of a dense conv's forward with weight W (Cout x Cin x K)
  /// packed in the calling thread's matmul precision: for K == 1 op(B) = W^T
  /// (Cin x Cout), else conv_weight_to_gemm's K*Cin x Cout rearrangement.
  const cpu::PackedB& packed_forward(const Tensor<float>& W) {
    GemmEntry* hit = nullptr;
    for (auto& e : gemm_entries)
      if (e.weight.data() == W.data() && e.weight.shape() == W.shape()) hit = &e;
    const int64_t Cout = W.size(0), Cin = W.size(1), K = W.size(2);
    if (!hit) {
      gemm_entries.push_back(GemmEntry{W, {}, nullptr});
      hit = &gemm_entries.back();
      if (K > 1) {
        hit->Wr.resize(static_cast<size_t>(K * Cin * Cout));
        conv_weight_to_gemm(W.data(), Cout, Cin, K, hit->Wr.data());
      }
    }
    if (!hit->packed || hit->packed->precision() != cpu::effective_matmul_precision()) {
      if (K == 1)
        hit->packed = std::make_unique<cpu::PackedB>(true, Cin, Cout, W.data(), Cin);
      else
        hit->packed = std::make_unique<cpu::PackedB>(false, K * Cin, Cout, hit->Wr.data(), Cout);
    }
    return *hit->packed;
  }
  /// The forward Winograd transform of W (Cout x Cin x 3), computed on first
  /// use, and its packed slabs in the calling thread's matmul precision.
  std::pair<const float*, const cpu::PackedB*> winograd_forward(const Tensor<float>& W) {
    Entry* hit = nullptr;
    for (auto& e : entries)
      if (e.weight.data() == W.data() && e.weight.shape() == W.shape()) hit = &e;
    if (!hit) {
      Entry e{W, std::vector<float>(static_cast<size_t>(4 * W.size(0) * W.size(1))), {}};
      winograd_weights_forward(W.data(), W.size(0), W.size(1), e.V.data());
      entries.push_back(std::move(e));
      hit = &entries.back();
    }
    if (hit->slabs.empty() || hit->slabs.front().precision() != cpu::effective_matmul_precision())
      hit->slabs = pack_winograd(hit->V.data(), W.size(1), W.size(0));
    return {hit->V.data(), hit->slabs.data()};
  }
};

}  // namespace detail

/// While a ConvWeightCacheScope lives on this thread, conv1d's forward keeps,
/// for every dense float conv weight it sees, the Winograd transform (k = 3)
/// or the packed GEMM operand (other kernels) in the thread's matmul
/// precision, and reuses it when the same weight tensor comes again: a head
/// shared by all pyramid levels prepares its weights once instead of once per
/// level, and a scope held across many videos (flowless detect, evaluation)
/// once for all of them. Contract: the cached weights do not change while the
/// scope lives (never hold one across an optimizer step or a weight load).
/// The cache holds the packed copies (about one more copy of the conv
/// weights) until the scope ends. Scopes nest: an inner one uses the outer
/// cache. Results are identical, bit for bit, with and without a scope.
class ConvWeightCacheScope {
 public:
  ConvWeightCacheScope() {
    if (!detail::ConvWeightCache::current()) {
      own_ = std::make_unique<detail::ConvWeightCache>();
      detail::ConvWeightCache::current() = own_.get();
    }
  }
  ~ConvWeightCacheScope() {
    if (own_) detail::ConvWeightCache::current() = nullptr;
  }
  ConvWeightCacheScope(const ConvWeightCacheScope&) = delete;
  ConvWeightCacheScope& operator=(const ConvWeightCacheScope&) = delete;

 private:
  std::unique_ptr<detail::ConvWeightCache> own_;
};

template <class T>
Var<T> conv1d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, const Conv1dOptions& opt) {
  const Tensor<T>& X = x.value();
  const Tensor<T>& W = weight.value();
  FLOWLESS_CHECK(X.dim() == 3, "conv1d: x must be (B, T, C), got ", X.shape().str());
  FLOWLESS_CHECK(W.dim() == 3, "conv1d: weight must be (Cout, Cin/groups, K), got ", W.shape().str());
  const int64_t B = X.size(0), Tn = X.size(1), Cin = X.size(2);
  const int64_t Cout = W.size(0), K = W.size(2), G = opt.groups, s = opt.stride, p = opt.padding;
  FLOWLESS_CHECK(G >= 1 && Cin % G == 0 && Cout % G == 0 && W.size(1) == Cin / G, "conv1d: weight ",
                 W.shape().str(), " does not fit input channels ", Cin, " with groups ", G);
  FLOWLESS_CHECK(s >= 1 && p >= 0 && K >= 1, "conv1d: bad stride/padding/kernel");
  const int64_t Tout = (Tn + 2 * p - K) / s + 1;
  FLOWLESS_CHECK(Tout >= 1, "conv1d: input length ", Tn, " too short for kernel ", K);
  FLOWLESS_CHECK(opt.lengths.empty() || int64_t(opt.lengths.size()) == B, "conv1d: ", opt.lengths.size(),
                 " lengths for batch ", B);
  const bool has_bias = bias.defined();
  if (has_bias) FLOWLESS_CHECK(bias.value().numel() == Cout, "conv1d: bias has ", bias.value().numel(), " values, expected ", Cout);
  const std::vector<int> out_len = opt.lengths.empty() ? std::vector<int>{} : conv_out_lengths(opt.lengths, int(s));
  const bool depthwise = (G == Cin && G == Cout);
  const bool dense = (G == 1 && !depthwise);
  const int64_t rows = (Tout - 1) * s + K;  // padded input rows actually read
  // Output rows that survive the mask, per batch element.
  std::vector<int64_t> Lout(static_cast<size_t>(B), Tout);
  for (size_t b = 0; b < out_len.size(); ++b) Lout[b] = std::clamp<int64_t>(out_len[b], 0, Tout);

  Tensor<T> Y(Shape{B, Tout, Cout});
  const int64_t Cg = Cin / G, Og = Cout / G;
  if (dense) {
    detail::ConvWeightCache* cache = nullptr;
    if constexpr (std::is_same_v<T, float>) cache = detail::ConvWeightCache::current();
    std::vector<T> Wr, V;  // built on first use
    std::vector<cpu::PackedB> Vslabs;  // V packed for the GEMM, once for the whole batch
    std::vector<const T*> prow;
    std::vector<T> scratch;
    for (int64_t b = 0; b < B; ++b) {
      const T* xb = X.data() + b * Tn * Cin;
      T* yb = Y.data() + b * Tout * Cout;
      const int64_t L = Lout[b];
      std::fill(yb + L * Cout, yb + Tout * Cout, T(0));
      if (L == 0) continue;
      // the bias goes into the GEMM's (or the Winograd output transform's) store
      const T* bv = has_bias ? bias.value().data() : nullptr;
      if (detail::conv3_use_winograd<T>(K, s, p, Cin, Cout, L)) {
        const T* Vp = nullptr;
        const cpu::PackedB* slabs = nullptr;
        if constexpr (std::is_same_v<T, float>)
          if (auto* cache = detail::ConvWeightCache::current()) std::tie(Vp, slabs) = cache->winograd_forward(W);
        if (!Vp) {
          if (V.empty()) {
            V.resize(static_cast<size_t>(4 * Cin * Cout));
            detail::winograd_weights_forward(W.data(), Cout, Cin, V.data());
            if constexpr (std::is_same_v<T, float>) Vslabs = detail::pack_winograd(V.data(), Cin, Cout);
          }
          Vp = V.data();
          if (!Vslabs.empty()) slabs = Vslabs.data();
        }
        detail::conv3_winograd(xb, Tn, Cin, Vp, Cout, yb, L, false, bv, slabs);
      } else if (cache) {
        // the weight packed once while a ConvWeightCacheScope lives (same bits as the branches below)
        detail::conv_patch_rows(xb, Tn, Cin, K, s, p, L, prow, scratch);
        if constexpr (std::is_same_v<T, float>)
          cpu::gemm_rows_prepacked(L, 1.f, prow.data(), cache->packed_forward(W), 0.f, yb, Cout, bv);
      } else if (K == 1) {
        // A 1x1 conv is X W^T: the GEMM reads W (Cout x Cin) transposed while packing it.
        detail::conv_patch_rows(xb, Tn, Cin, K, s, p, L, prow, scratch);
        cpu::gemm_rows<T>(false, true, L, Cout, Cin, T(1), prow.data(), W.data(), Cin, T(0), yb, Cout, bv);
      } else {
        if (Wr.empty()) {
          Wr.resize(static_cast<size_t>(K * Cin * Cout));
          detail::conv_weight_to_gemm(W.data(), Cout, Cin, K, Wr.data());
        }
        detail::conv_patch_rows(xb, Tn, Cin, K, s, p, L, prow, scratch);
        cpu::gemm_rows<T>(false, false, L, Cout, K * Cin, T(1), prow.data(), Wr.data(), Cout, T(0), yb, Cout, bv);
      }
    }
  } else {
    // Weight rearranged for the grouped GEMMs: Wr[k*Cg + i, o] = W[o, i, k] (per group).
    std::vector<T> Wr;
    if (!depthwise) {
      Wr.resize(static_cast<size_t>(G * K * Cg * Og));
      const T* w = W.data();
      for (int64_t g = 0; g < G; ++g)
        for (int64_t o = 0; o < Og; ++o)
          for (int64_t i = 0; i < Cg; ++i)
            for (int64_t k = 0; k < K; ++k)
              Wr[((g * K + k) * Cg + i) * Og + o] = w[((g * Og + o) * Cg + i) * K + k];
    }
    // Depthwise: the taps channel-contiguous (wt[k * C + c] = W[c, 0, k]) so the
    // inner loops run over contiguous channels; rows outside [0, Tn) are
    // skipped instead of copied into a zero-padded buffer.
    std::vector<T> wt;
    if (depthwise) wt = detail::depthwise_taps(W.data(), Cout, K);
    for (int64_t b = 0; b < B; ++b) {
      const T* xb = X.data() + b * Tn * Cin;
      T* yb = Y.data() + b * Tout * Cout;
      if (depthwise) {
        const T* bv = has_bias ? bias.value().data() : nullptr;
        parallel_for(Tout, 64, [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t) {
            T* yr = yb + t * Cout;
            if (bv)
              std::copy(bv, bv + Cout, yr);
            else
              std::fill(yr, yr + Cout, T(0));
            for (int64_t k = 0; k < K; ++k) {
              const int64_t r = t * s - p + k;
              if (r < 0 || r >= Tn) continue;
              const T* xr = xb + r * Cin;
              const T* wk = wt.data() + k * Cout;
              for (int64_t c = 0; c < Cout; ++c) yr[c] += wk[c] * xr[c];
            }
          }
        });
        continue;
      }
      std::vector<T> xpv;
      const T* xp = xb;
      if (p != 0 || rows > Tn) {
        xpv = detail::pad_rows(xb, Tn, Cin, p, std::max<int64_t>(rows, Tn + p));
        xp = xpv.data();
      }
      for (int64_t g = 0; g < G; ++g)
        for (int64_t k = 0; k < K; ++k)
          cpu::gemm<T>(false, false, Tout, Og, Cg, T(1), xp + k * Cin + g * Cg, s * Cin,
                       Wr.data() + (g * K + k) * Cg * Og, Og, k == 0 ? T(0) : T(1), yb + g * Og, Cout);
      if (has_bias) {
        const T* bv = bias.value().data();
        for (int64_t t = 0; t < Tout; ++t)
          for (int64_t c = 0; c < Cout; ++c) yb[t * Cout + c] += bv[c];
      }
    }
    detail::apply_length_mask(Y.data(), B, Tout, Cout, out_len);
  }

  return make_op<T>(std::move(Y), {x, weight, bias}, "conv1d", [=](Node<T>& out) {
    const Tensor<T>& Xv = out.inputs[0]->value;
    const Tensor<T>& Wv = out.inputs[1]->value;
    const T* dYd = out.grad.data();  // rows t >= Lout[b] are masked: treated as 0, never read
    if (out.needs_grad(2)) {
      T* db = out.input_grad(2).data();
      parallel_for(Cout, 256, [&](int64_t c0, int64_t c1) {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = 0; t < Lout[b]; ++t)
            for (int64_t c = c0; c < c1; ++c) db[c] += dYd[(b * Tout + t) * Cout + c];
      });
    }
    const bool need_x = out.needs_grad(0), need_w = out.needs_grad(1);
    if (!need_x && !need_w) return;

    if (dense) {
      // dx is stored, not added, when no other op has contributed to it yet (input_grad_store):
      // the GEMM then runs with beta = 0 and only rows no valid dY row reaches are zeroed.
      T* dxall = nullptr;
      bool dx_fresh = false;
      if (need_x) {
        auto [g, fresh] = out.input_grad_store(0);
        dxall = g->data();
        dx_fresh = fresh;
      }
      // rows [j0, Tn) of batch element b get nothing from this op: zero them if dx is fresh
      auto zero_tail = [&](int64_t b, int64_t j0) {
        if (dx_fresh) std::fill(dxall + (b * Tn + j0) * Cin, dxall + (b + 1) * Tn * Cin, T(0));
      };
      std::vector<const T*> prow;
      std::vector<T> scratch;
      std::vector<T> Wr, Wt, V;  // weight layouts built on first use
      std::vector<cpu::PackedB> Vslabs;  // V packed for the GEMM, once for the whole batch
      // A 1x1 conv without padding needs no layout change: dW (Cout x Cin) += dY^T X
      // straight into the weight's gradient, and for stride 1 dX += dY W.
      const bool pointwise = K == 1 && p == 0;
      if (need_w) {
        // dW, stored when the weight's gradient is fresh (no zero fill, no re-read).
        auto [gw, w_fresh] = out.input_grad_store(1);
        if (detail::conv3_use_winograd_weight_grad<T>(K, s, p, Cin, Cout, Lout)) {
          if constexpr (std::is_same_v<T, float>)
            detail::conv3_winograd_weight_grad(Xv.data(), Tn, Cin, dYd, Tout, Cout, Lout, gw->data(), w_fresh);
        } else {
          // One product per batch element, accumulated in element order (beta = 0 for the first).
          Tensor<T> dWr;  // (K*Cin, Cout): from the backend's block cache, no page faults per call
          if (!pointwise) dWr = Tensor<T>(Shape{K * Cin, Cout});
          bool first = true;
          for (int64_t b = 0; b < B; ++b) {
            const int64_t L = Lout[b];
            if (L == 0) continue;
            const T* xb = Xv.data() + b * Tn * Cin;
            const T* dyb = dYd + b * Tout * Cout;
            if (pointwise) {
              // dW (Cout x Cin) (+)= dY^T X straight into the weight's gradient
              cpu::gemm<T>(true, false, Cout, Cin, L, T(1), dyb, Cout, xb, s * Cin,
                           first && w_fresh ? T(0) : T(1), gw->data(), Cin);
            } else {
              // dWr (K*Cin x Cout) (+)= patches(L, K*Cin)^T dY(L, Cout)
              detail::conv_patch_rows(xb, Tn, Cin, K, s, p, L, prow, scratch);
              cpu::gemm_rows<T>(true, false, K * Cin, Cout, L, T(1), prow.data(), dyb, Cout, first ? T(0) : T(1),
                                dWr.data(), Cout);
            }
            first = false;
          }
          if (first) {
            if (w_fresh) gw->fill_(T(0));  // no valid row: nothing to add
          } else if (!pointwise) {
            detail::conv_weight_grad_from_gemm(dWr.data(), Cout, Cin, K, gw->data(), w_fresh);
          }
        }
      }
      if (!need_x) return;
      if (s != 1) {
        Wr.resize(static_cast<size_t>(K * Cin * Cout));
        detail::conv_weight_to_gemm(Wv.data(), Cout, Cin, K, Wr.data());
      }
      for (int64_t b = 0; b < B; ++b) {
        const int64_t L = Lout[b];
        if (L == 0) {
          zero_tail(b, 0);
          continue;
        }
        const T* dyb = dYd + b * Tout * Cout;
        T* dx = dxall + b * Tn * Cin;
        if (s == 1) {
          // dx[j] += sum_k dY[j + p - k] W_k^T: patches of the valid dY rows (K-1-p rows of zeros before)
          // times Wt; rows j >= L + K - 1 - p see no valid dY row.
          const int64_t J = std::max<int64_t>(0, std::min<int64_t>(Tn, L + K - 1 - p));
          zero_tail(b, J);
          if (J == 0) continue;
          if (detail::conv3_use_winograd<T>(K, 1, K - 1 - p, Cout, Cin, J)) {
            if (V.empty()) {
              V.resize(static_cast<size_t>(4 * Cout * Cin));
              detail::winograd_weights_input_grad(Wv.data(), Cout, Cin, V.data());
              if constexpr (std::is_same_v<T, float>) Vslabs = detail::pack_winograd(V.data(), Cout, Cin);
            }
            detail::conv3_winograd<T>(dyb, L, Cout, V.data(), Cin, dx, J, !dx_fresh, nullptr,
                                   Vslabs.empty() ? nullptr : Vslabs.data());
          } else {
            if (Wt.empty() && K != 1) {
              Wt.resize(static_cast<size_t>(K * Cout * Cin));
              detail::conv_weight_to_dx_gemm(Wv.data(), Cout, Cin, K, Wt.data());
            }
            const T* wt = K == 1 ? Wv.data() : Wt.data();  // for K = 1 the layout change is the identity
            detail::conv_patch_rows(dyb, L, Cout, K, 1, K - 1 - p, J, prow, scratch);
            cpu::gemm_rows<T>(false, false, J, Cin, K * Cout, T(1), prow.data(), wt, Cin, dx_fresh ? T(0) : T(1), dx,
                              Cin);
          }
        } else {
          zero_tail(b, 0);  // the overlap-add below accumulates
          // dP(L, K*Cin) = dY Wr^T, then overlap-add into dx.
          std::vector<T> dP(static_cast<size_t>(L * K * Cin));
          cpu::gemm<T>(false, true, L, K * Cin, Cout, T(1), dyb, Cout, Wr.data(), Cout, T(0), dP.data(), K * Cin);
          parallel_for(Tn, 64, [&](int64_t j0, int64_t j1) {
            for (int64_t j = j0; j < j1; ++j)
              for (int64_t k = 0; k < K; ++k) {
                const int64_t num = j + p - k;
                if (num < 0 || num % s) continue;
                const int64_t t = num / s;
                if (t >= L) continue;
                const T* src = dP.data() + (t * K + k) * Cin;
                for (int64_t c = 0; c < Cin; ++c) dx[j * Cin + c] += src[c];
              }
          });
        }
      }
      return;
    }

    // Depthwise and grouped: dy with the output mask applied.
    Tensor<T> dY = out.grad.clone();
    detail::apply_length_mask(dY.data(), B, Tout, Cout, out_len);
    std::vector<T> Wr;
    if (!depthwise) {
      Wr.resize(static_cast<size_t>(G * K * Cg * Og));
      const T* w = Wv.data();
      for (int64_t g = 0; g < G; ++g)
        for (int64_t o = 0; o < Og; ++o)
          for (int64_t i = 0; i < Cg; ++i)
            for (int64_t k = 0; k < K; ++k)
              Wr[((g * K + k) * Cg + i) * Og + o] = w[((g * Og + o) * Cg + i) * K + k];
    }
    std::vector<T> dWr(need_w && !depthwise ? Wr.size() : 0, T(0));
    std::vector<T> wt;  // depthwise taps, channel-contiguous (as in the forward)
    if (depthwise && need_x) wt = detail::depthwise_taps(Wv.data(), Cout, K);
    for (int64_t b = 0; b < B; ++b) {
      const T* xb = Xv.data() + b * Tn * Cin;
      const T* dyb = dY.data() + b * Tout * Cout;
      if (depthwise) {
        if (need_w) {
          // dW[c, k] += sum_t dY[t, c] x[t s - p + k, c] over rows inside [0, Tn), t ascending;
          // per channel block, accumulated tap-major in a local buffer, then added once.
          T* dw = out.input_grad(1).data();
          parallel_for(Cout, 64, [&](int64_t c0, int64_t c1) {
            const int64_t n = c1 - c0;
            std::vector<T> acc(static_cast<size_t>(K * n), T(0));
            for (int64_t k = 0; k < K; ++k) {
              T* ak = acc.data() + k * n;
              for (int64_t t = 0; t < Tout; ++t) {
                const int64_t r = t * s - p + k;
                if (r < 0 || r >= Tn) continue;
                const T* xr = xb + r * Cin + c0;
                const T* dr = dyb + t * Cout + c0;
                for (int64_t c = 0; c < n; ++c) ak[c] += dr[c] * xr[c];
              }
            }
            for (int64_t c = 0; c < n; ++c)
              for (int64_t k = 0; k < K; ++k) dw[(c0 + c) * K + k] += acc[size_t(k * n + c)];
          });
        }
        if (need_x) {
          T* dx = out.input_grad(0).data() + b * Tn * Cin;
          parallel_for(Tn, 64, [&](int64_t j0, int64_t j1) {
            for (int64_t j = j0; j < j1; ++j)
              for (int64_t k = 0; k < K; ++k) {
                int64_t num = j + p - k;
                if (num < 0 || num % s) continue;
                int64_t t = num / s;
                if (t >= Tout) continue;
                const T* dr = dyb + t * Cout;
                const T* wk = wt.data() + k * Cout;
                T* dxr = dx + j * Cin;
                for (int64_t c = 0; c < Cout; ++c) dxr[c] += wk[c] * dr[c];
              }
          });
        }
        continue;
      }
      std::vector<T> xpv;
      const T* xp = xb;
      if (need_w && (p != 0 || rows > Tn)) {
        xpv = detail::pad_rows(xb, Tn, Cin, p, std::max<int64_t>(rows, Tn + p));
        xp = xpv.data();
      }
      if (need_w) {
        for (int64_t g = 0; g < G; ++g)
          for (int64_t k = 0; k < K; ++k)
            cpu::gemm<T>(true, false, Cg, Og, Tout, T(1), xp + k * Cin + g * Cg, s * Cin, dyb + g * Og, Cout, T(1),
                         dWr.data() + (g * K + k) * Cg * Og, Og);
      }
      if (need_x) {
        // dP(Tout, G*K*Cg) = dY @ Wr^T per group, then overlap-add into dx.
        std::vector<T> dP(static_cast<size_t>(Tout * K * Cin));
        for (int64_t g = 0; g < G; ++g)
          for (int64_t k = 0; k < K; ++k)
            cpu::gemm<T>(false, true, Tout, Cg, Og, T(1), dyb + g * Og, Cout, Wr.data() + (g * K + k) * Cg * Og, Og,
                         T(0), dP.data() + k * Cin + g * Cg, K * Cin);
        T* dx = out.input_grad(0).data() + b * Tn * Cin;
        parallel_for(Tn, 64, [&](int64_t j0, int64_t j1) {
          for (int64_t j = j0; j < j1; ++j)
            for (int64_t k = 0; k < K; ++k) {
              int64_t num = j + p - k;
              if (num < 0 || num % s) continue;
              int64_t t = num / s;
              if (t >= Tout) continue;
              const T* src = dP.data() + t * K * Cin + k * Cin;
              for (int64_t c = 0; c < Cin; ++c) dx[j * Cin + c] += src[c];
            }
        });
      }
    }
    if (need_w && !depthwise) {
      T* dw = out.input_grad(1).data();
      for (int64_t g = 0; g < G; ++g)
        for (int64_t o = 0; o < Og; ++o)
          for (int64_t i = 0; i < Cg; ++i)
            for (int64_t k = 0; k < K; ++k)
              dw[((g * Og + o) * Cg + i) * K + k] += dWr[((g * K + k) * Cg + i) * Og + o];
    }
  });
}

}  // namespace flowless
