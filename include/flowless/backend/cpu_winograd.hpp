// flowless/backend/cpu_winograd.hpp - Winograd F(2,3) with its transforms
// fused into the packed GEMM's tasks (builds with the packed GEMM: AVX-512 or AVX2).
//
//   bool done = cpu::winograd_f23_fused(x, Tx, Cin, slabs, Cout, y, Ly, accumulate, bias);
//
// Computes the kernel-3, stride-1, padding-1 correlation
//   y[t] (+)= sum_{k<3} x[t - 1 + k] g_k  (+ bias)    for t in [0, Ly),
// x: Tx rows of Cin floats (rows outside [0, Tx) read as zero), y: Ly rows of
// Cout floats, the taps g_k given by their Winograd transform V (4 slabs of
// Cin x Cout, see ops/conv1d.hpp) already packed: slabs[0..3] are PackedB of
// V_i (not transposed). Per output pair m, with d_j = x[2m - 1 + j]:
//   U = (d0 - d2, d1 + d2, d2 - d1, d1 - d3),  M_i = U_i V_i,
//   y[2m] = (M0 + M1) + M2,  y[2m+1] = (M1 - M2) - M3.
//
// The unfused form (ops/conv1d.hpp, detail::conv3_winograd) writes U and M for
// a whole sequence to memory and reads them back: four passes over 2 T x C
// floats that cost about as much as a third of the products at C = 512. Here
// each task takes 48 output pairs and one column group, builds U_i for its
// pairs in a per-thread buffer that stays in cache, runs the packed product's
// own task code (gemm_detail::PackedProductTasks) into a per-thread M tile and
// writes y from it: memory sees x once and y once.
//
// The arithmetic is exactly the unfused path's (same U, same products, which
// depend only on K, same output sums), so the results are bit-identical to it
// and independent of the thread count. Returns false without touching y when
// this build or these slabs cannot take the fused path (no packed GEMM, slabs
// packed in another precision than the calling thread's, products below the
// packed GEMM's size threshold); the caller then runs the unfused form.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "flowless/backend/cpu_gemm.hpp"
#include "flowless/core/thread_pool.hpp"

namespace flowless::cpu {

namespace winograd_detail {

/// Row i of the input transform for one output pair: d[j] = x[2m - 1 + j]
/// (a zero row outside the sequence), U = (d0 - d2, d1 + d2, d2 - d1, d1 - d3).
template <class T>
void input_row(int64_t i, const T* const (&d)[4], T* __restrict u, int64_t C) {
  const T* __restrict d0 = d[0];
  const T* __restrict d1 = d[1];
  const T* __restrict d2 = d[2];
  const T* __restrict d3 = d[3];
  switch (i) {
    case 0: for (int64_t c = 0; c < C; ++c) u[c] = d0[c] - d2[c]; break;
    case 1: for (int64_t c = 0; c < C; ++c) u[c] = d1[c] + d2[c]; break;
    case 2: for (int64_t c = 0; c < C; ++c) u[c] = d2[c] - d1[c]; break;
    default: for (int64_t c = 0; c < C; ++c) u[c] = d1[c] - d3[c]; break;
  }
}

/// The output transform of one pair over columns [c0, c1), from its rows
/// q_i = q + i * stride of the four products: y0 (+)= (q0 + q1) + q2, and,
/// when y1 is not null, y1 (+)= (q1 - q2) - q3; without accumulate, plus bias
/// (or null).
template <class T>
void output_pair(const T* q, int64_t stride, T* y0, T* y1, int64_t c0, int64_t c1, bool accumulate, const T* bias) {
  const T* q0 = q;
  const T* q1 = q0 + stride;
  const T* q2 = q1 + stride;
  const T* q3 = q2 + stride;
  if (accumulate)
    for (int64_t c = c0; c < c1; ++c) y0[c] += (q0[c] + q1[c]) + q2[c];
  else if (bias)
    for (int64_t c = c0; c < c1; ++c) y0[c] = ((q0[c] + q1[c]) + q2[c]) + bias[c];
  else
    for (int64_t c = c0; c < c1; ++c) y0[c] = (q0[c] + q1[c]) + q2[c];
  if (!y1) return;
  if (accumulate)
    for (int64_t c = c0; c < c1; ++c) y1[c] += (q1[c] - q2[c]) - q3[c];
  else if (bias)
    for (int64_t c = c0; c < c1; ++c) y1[c] = ((q1[c] - q2[c]) - q3[c]) + bias[c];
  else
    for (int64_t c = c0; c < c1; ++c) y1[c] = (q1[c] - q2[c]) - q3[c];
}

#if FLOWLESS_CPU_PACKED_GEMM
constexpr int64_t kPairs = 48;  // output pairs per task (4 slivers of 12 rows, or 8 of 6 with AVX2)

/// Per-thread work space (grows, never shrinks), separate from the GEMM's own A scratch.
inline float* scratch(int64_t n) {
  thread_local gemm_detail::AlignedBuf buf;
  thread_local int64_t cap = 0;
  if (n > cap) {
    buf = gemm_detail::aligned_floats(n);
    cap = n;
  }
  return buf.get();
}

template <bool Bf16>
void run(const float* x, int64_t Tx, int64_t Cin, const PackedB* slabs, int64_t Cout, float* y, int64_t Ly,
         bool accumulate, const float* bias) {
  using E = typename gemm_detail::Primitives<Bf16>::E;
  using Tasks = gemm_detail::PackedProductTasks<Bf16, gemm_detail::RowsOf>;
  const int64_t P = (Ly + 1) / 2;
  const int64_t nrb = (P + kPairs - 1) / kPairs;
  // The task layout of one product of <= kPairs rows (one row block): its column groups.
  const Tasks layout{false, kPairs, Cout, Cin, 1.f, gemm_detail::RowsOf{nullptr, Cin}, nullptr, 0.f, nullptr, Cout, nullptr};
  const int64_t ncg = layout.count();
  const std::vector<float> zero(static_cast<size_t>(Cin), 0.f);  // the rows outside [0, Tx)
  parallel_for(nrb * ncg, 1, [&](int64_t t0, int64_t t1) {
    float* U = scratch(kPairs * Cin + 4 * kPairs * Cout);
    float* Mt = U + kPairs * Cin;  // 4 tiles of kPairs x Cout (row stride Cout)
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t rb = t / ncg, g = t % ncg;
      const int64_t mbeg = rb * kPairs, pc = std::min(kPairs, P - mbeg);
      for (int64_t i = 0; i < 4; ++i) {
        for (int64_t mm = 0; mm < pc; ++mm) {
          const int64_t m = mbeg + mm;
          const float* d[4];
          for (int64_t j = 0; j < 4; ++j) {
            const int64_t r = 2 * m - 1 + j;
            d[j] = (r >= 0 && r < Tx) ? x + r * Cin : zero.data();
          }
          input_row(i, d, U + mm * Cin, Cin);
        }
        const Tasks pt{false, pc, Cout, Cin, 1.f, gemm_detail::RowsOf{U, Cin},
                       reinterpret_cast<const E*>(slabs[i].panel()), 0.f, Mt + i * kPairs * Cout, Cout, nullptr};
        pt.run(g);
      }
      const auto [c0, c1] = layout.columns(g);  // the columns the products' task g wrote
      for (int64_t mm = 0; mm < pc; ++mm) {
        float* y0 = y + 2 * (mbeg + mm) * Cout;
        output_pair(Mt + mm * Cout, kPairs * Cout, y0, 2 * (mbeg + mm) + 1 < Ly ? y0 + Cout : nullptr, c0, c1,
                    accumulate, bias);
      }
    }
  });
}
#endif  // FLOWLESS_CPU_PACKED_GEMM

}  // namespace winograd_detail

/// See the file comment. slabs: 4 PackedB of V_i (Cin x Cout, not transposed).
inline bool winograd_f23_fused(const float* x, int64_t Tx, int64_t Cin, const PackedB* slabs, int64_t Cout, float* y,
                               int64_t Ly, bool accumulate, const float* bias) {
#if FLOWLESS_CPU_PACKED_GEMM
  if (!slabs || Ly <= 0 || Cin <= 0 || Cout <= 0) return false;
  for (int i = 0; i < 4; ++i) {
    const PackedB& s = slabs[i];
    if (s.trans() || s.rows() != Cin || s.cols() != Cout || !s.panel() || s.precision() != effective_matmul_precision())
      return false;
  }
  // gemm()'s own threshold for the packed path, per product of one task.
  if (2.0 * double(std::min<int64_t>((Ly + 1) / 2, winograd_detail::kPairs)) * double(Cout) * double(Cin) < 1e5)
    return false;
#if defined(__AVX512BF16__)
  if (slabs[0].precision() == MatmulPrecision::bf16) {
    winograd_detail::run<true>(x, Tx, Cin, slabs, Cout, y, Ly, accumulate, bias);
    return true;
  }
#endif
  winograd_detail::run<false>(x, Tx, Cin, slabs, Cout, y, Ly, accumulate, bias);
  return true;
#else
  (void)x, (void)Tx, (void)Cin, (void)slabs, (void)Cout, (void)y, (void)Ly, (void)accumulate, (void)bias;
  return false;
#endif
}

}  // namespace flowless::cpu
