// flowless/backend/cpu_gemm.hpp - matrix products on the CPU.
//
// gemm computes, on row-major buffers,
//   C(M, N) = alpha * op(A) * op(B) + beta * C
// op(A) is A (M x K, row stride lda) or, with trans_a, the transpose of a
// (K x M, row stride lda) buffer; likewise for B. Row strides smaller than the
// row length are allowed for A and B (overlapping rows), which is how
// convolutions read their input patches without im2col. With beta == 0, C is
// not read (it may hold garbage or NaN). An optional bias (N values) is added
// to every row of C in the same call (C = ... + beta * C + bias).
//
// Implementation:
//  - float with AVX-512 (compiled with -mavx512f, e.g. -march=native on such
//    a CPU): a packed, cache-blocked product (BLIS-style). op(B) is packed
//    once into K-blocks of kKC rows x 32-column slivers (in parallel); the
//    rows of C are cut into fixed blocks whose tasks pack their rows of op(A)
//    per K-block (12-row slivers) and run a 12 x 32 register-tile kernel
//    (24 zmm accumulators, fused multiply-add). With AVX2 and FMA instead
//    (no AVX-512: e.g. AMD Zen 2/3, Intel before Skylake-X) the same product
//    with 6 x 16 tiles (12 ymm accumulators), 16-column slivers and K-blocks
//    of 256; FLOWLESS_CPU_PACKED_GEMM says whether a build has either. Every element of C is
//      C = fma(alpha, acc_0, beta * C); C = fma(alpha, acc_p, C) for p = 1, 2, ...
//    (with a bias, its value is added in the store of the last K-block)
//    where acc_p is the sum over K-block p in increasing k (one FMA chain),
//    so its value depends only on K - not on M, N, the tiling or the thread
//    count.
//  - everything else (double, CPUs without AVX2 + FMA, tiny products): Eigen, with C cut
//    into fixed tiles (rows when M >= N, else columns) of a size that depends
//    only on the shape, each tile one single-threaded Eigen product over the
//    full K.
// Either way the result is identical for every thread count.
// gemm_rows is gemm with the rows of A given as pointers (convolution patches
// read in place, with separate buffers only at the sequence ends).
// gemm_serial is the plain single-threaded Eigen product (used as a baseline
// by the benchmarks).
//
// Reduced precision (inference): with MatmulPrecisionScope(MatmulPrecision::bf16)
// on the calling thread, float products that take the packed path round op(A)
// and op(B) to bfloat16 (round to nearest even) while packing and multiply them
// with AVX-512 BF16 dot products (vdpbf16ps: twice the multiply-adds of an fp32
// FMA per instruction), accumulating in fp32; C, alpha and beta stay fp32. The
// relative error of each product is about 2^-8 (bfloat16 has 8 significand
// bits), like torch.autocast(dtype=torch.bfloat16) on the CPU. Inputs must be
// finite (NaN/Inf are not preserved by the rounding). Without AVX-512 BF16
// (compiled without __AVX512BF16__, e.g. no -march=native on such a CPU) the
// setting is ignored: matmul_bf16_available() says which. The result is still
// independent of the thread count. Training never uses it unless asked.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

// The packed path: AVX-512 (12 x 32 register tiles) or AVX2 with FMA (6 x 16).
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define FLOWLESS_CPU_PACKED_GEMM 1
#include <immintrin.h>
#else
#define FLOWLESS_CPU_PACKED_GEMM 0
#endif

#include "flowless/backend/host_block_cache.hpp"
#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"

namespace flowless::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Single-threaded Eigen product on one block (see file comment for the contract).
template <class T>
void gemm_serial(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                 const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  MutMap<T> c(C, M, N, Eigen::OuterStride<>(ldc));
  if (K <= 0) {
    if (beta == T(0)) c.setZero(); else c *= beta;
    return;
  }
  auto run = [&](const auto& a, const auto& b) {
    if (beta == T(0)) {
      c.noalias() = alpha * (a * b);
    } else {
      if (beta != T(1)) c *= beta;
      c.noalias() += alpha * (a * b);
    }
  };
  if (!trans_a && !trans_b)
    run(ConstMap<T>(A, M, K, Eigen::OuterStride<>(lda)), ConstMap<T>(B, K, N, Eigen::OuterStride<>(ldb)));
  else if (trans_a && !trans_b)
    run(ConstMap<T>(A, K, M, Eigen::OuterStride<>(lda)).transpose(), ConstMap<T>(B, K, N, Eigen::OuterStride<>(ldb)));
  else if (!trans_a && trans_b)
    run(ConstMap<T>(A, M, K, Eigen::OuterStride<>(lda)), ConstMap<T>(B, N, K, Eigen::OuterStride<>(ldb)).transpose());
  else
    run(ConstMap<T>(A, K, M, Eigen::OuterStride<>(lda)).transpose(),
        ConstMap<T>(B, N, K, Eigen::OuterStride<>(ldb)).transpose());
}

/// Arithmetic of float matrix products (see the file comment).
enum class MatmulPrecision { fp32, bf16 };

namespace gemm_detail {
inline MatmulPrecision& matmul_precision_ref() {
  thread_local MatmulPrecision p = MatmulPrecision::fp32;
  return p;
}
}  // namespace gemm_detail

/// The calling thread's setting (fp32 unless a MatmulPrecisionScope is active).
inline MatmulPrecision matmul_precision() { return gemm_detail::matmul_precision_ref(); }

/// Whether MatmulPrecision::bf16 takes effect in this build (AVX-512 BF16 compiled in).
constexpr bool matmul_bf16_available() {
#if defined(__AVX512F__) && defined(__AVX512BF16__)
  return true;
#else
  return false;
#endif
}

/// The precision the calling thread's float products actually run in (bf16 only where available).
inline MatmulPrecision effective_matmul_precision() {
  return matmul_bf16_available() && matmul_precision() == MatmulPrecision::bf16 ? MatmulPrecision::bf16
                                                                                 : MatmulPrecision::fp32;
}

/// Sets the calling thread's matmul precision for its lifetime (RAII; nests).
class MatmulPrecisionScope {
 public:
  explicit MatmulPrecisionScope(MatmulPrecision p) : saved_(gemm_detail::matmul_precision_ref()) {
    gemm_detail::matmul_precision_ref() = p;
  }
  ~MatmulPrecisionScope() { gemm_detail::matmul_precision_ref() = saved_; }
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  MatmulPrecision saved_;
};

/// Parses "fp32" | "bf16" (command-line options, configs).
inline MatmulPrecision parse_matmul_precision(const std::string& s) {
  if (s == "fp32") return MatmulPrecision::fp32;
  if (s == "bf16") return MatmulPrecision::bf16;
  FLOWLESS_FAIL("unknown precision '", s, "' (fp32 or bf16)");
}

namespace gemm_detail {

/// Eigen tiles over the pool (see file comment).
template <class T>
void gemm_eigen_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
                      const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  constexpr int64_t kTile = 128;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  if (flops < 2e6 || (M <= kTile && N <= kTile)) {
    gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M >= N) {
    parallel_for(M, kTile, [&](int64_t r0, int64_t r1) {
      const T* a = trans_a ? A + r0 : A + r0 * lda;
      gemm_serial(trans_a, trans_b, r1 - r0, N, K, alpha, a, lda, B, ldb, beta, C + r0 * ldc, ldc);
    });
  } else {
    parallel_for(N, kTile, [&](int64_t c0, int64_t c1) {
      const T* b = trans_b ? B + c0 * ldb : B + c0;
      gemm_serial(trans_a, trans_b, M, c1 - c0, K, alpha, A, lda, b, ldb, beta, C + c0, ldc);
    });
  }
}

#if FLOWLESS_CPU_PACKED_GEMM
#if defined(__AVX512F__)

constexpr int64_t kMR = 12;   // rows of C per register tile (broadcast A)
constexpr int64_t kNR = 32;   // columns of C per register tile (two zmm)
constexpr int64_t kKC = 384;  // K-block
constexpr int64_t kNC = 256;  // columns of C per inner block (a K-block of packed B this wide stays in L2)
constexpr int64_t kMB = 96;   // rows of C per task (8 slivers)

#else  // AVX2 with FMA: 16 ymm registers

constexpr int64_t kMR = 6;    // rows of C per register tile (broadcast A)
constexpr int64_t kNR = 16;   // columns of C per register tile (two ymm)
constexpr int64_t kKC = 256;  // K-block (one 16-column sliver of it, 16 KiB, stays in L1)
constexpr int64_t kNC = 256;  // columns of C per inner block (a K-block of packed B this wide stays in L2)
constexpr int64_t kMB = 96;   // rows of C per task (16 slivers)

#endif

struct AlignedFree {
  void operator()(float* p) const noexcept { std::free(p); }
};
using AlignedBuf = std::unique_ptr<float[], AlignedFree>;

inline AlignedBuf aligned_floats(int64_t n) {
  size_t bytes = (size_t(std::max<int64_t>(n, 16)) * sizeof(float) + 63) / 64 * 64;
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  return AlignedBuf(p);
}

/// Per-thread scratch for packed A (grows, never shrinks).
inline float* a_scratch(int64_t n) {
  thread_local AlignedBuf buf;
  thread_local int64_t cap = 0;
  if (n > cap) {
    buf = aligned_floats(n);
    cap = n;
  }
  return buf.get();
}

/// Space for a packed B of n floats. Panels up to kKeepB floats (16 MiB: every
/// weight matrix of the THUMOS network, 4 MiB at most) live in the calling
/// thread's buffer, reused from call to call, so a GEMM does not page-fault a
/// fresh panel each time; larger ones (the activations a weight gradient
/// reads, which grow with T) are allocated into `own` for this call only, so
/// no thread keeps them.
constexpr int64_t kKeepB = int64_t(4) << 20;
inline float* b_panel(int64_t n, AlignedBuf& own) {
  if (n > kKeepB) {
    own = aligned_floats(n);
    return own.get();
  }
  thread_local AlignedBuf buf;
  thread_local int64_t cap = 0;
  if (n > cap) {
    buf = aligned_floats(n);
    cap = n;
  }
  return buf.get();
}

/// pack_a_sliver's transposed case (ISA-independent): op(A) column i of row k is
/// row(k)[i], so each of the kc packed columns is mv <= kMR contiguous values, zero-padded.
template <class Row>
void pack_a_sliver_trans(const Row& row, int64_t mv, int64_t m0, int64_t p0, int64_t kc, float* dst) {
  for (int64_t k = 0; k < kc; ++k) {
    const float* src = row(p0 + k) + m0;
    float* d = dst + k * kMR;
    int64_t r = 0;
    for (; r < mv; ++r) d[r] = src[r];
    for (; r < kMR; ++r) d[r] = 0.f;
  }
}

#if defined(__AVX512F__)
// GCC 12 reports the undefined pass-through operand of its own unpack/shuffle
// intrinsics as uninitialised once they are inlined here (a false positive,
// fixed in GCC 13); keep it out of the builds of programs that include this header.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// In-register transpose of a 16 x 16 float block (rows r[0..15]).
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  __m512 o[16];
  for (int e = 0; e < 4; ++e) {
    const __m512 ab_lo = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x44), ab_hi = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xEE);
    const __m512 cd_lo = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x44), cd_hi = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xEE);
    o[e] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);
    o[e + 4] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);
    o[e + 8] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
    o[e + 12] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
  }
  for (int i = 0; i < 16; ++i) r[i] = o[i];
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/// Packs op(B)[p0:p0+kc, n0:n0+32) as kc rows of 32 floats (zero beyond N).
inline void pack_b_sliver(bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t p0, int64_t kc, int64_t n0,
                          float* dst) {
  const int64_t nv = std::min<int64_t>(kNR, N - n0);
  if (!trans_b) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (p0 + k) * ldb + n0;
      float* d = dst + k * kNR;
      if (nv == kNR) {
        _mm512_store_ps(d, _mm512_loadu_ps(src));
        _mm512_store_ps(d + 16, _mm512_loadu_ps(src + 16));
      } else {
        int64_t c = 0;
        for (; c < nv; ++c) d[c] = src[c];
        for (; c < kNR; ++c) d[c] = 0.f;
      }
    }
  } else {
    // op(B) column n is stored row n of B: 16 x 16 blocks transposed in registers.
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16)
      for (int h = 0; h < 2; ++h) {
        __m512 v[16];
        for (int r = 0; r < 16; ++r)
          v[r] = h * 16 + r < nv ? _mm512_loadu_ps(B + (n0 + h * 16 + r) * ldb + p0 + k0) : _mm512_setzero_ps();
        transpose16x16(v);
        for (int k = 0; k < 16; ++k) _mm512_store_ps(dst + (k0 + k) * kNR + h * 16, v[k]);
      }
    for (int64_t c = 0; c < kNR; ++c) {
      const float* src = B + (n0 + c) * ldb + p0;
      for (int64_t k = k0; k < kc; ++k) dst[k * kNR + c] = c < nv ? src[k] : 0.f;
    }
  }
}

/// Packs op(A)[m0:m0+12, p0:p0+kc) as kc columns of 12 floats (zero beyond M).
/// row(q) is the start of stored row q of A: op(A)(i, k) = row(i)[k], or with
/// trans_a row(k)[i].
template <class Row>
void pack_a_sliver(bool trans_a, const Row& row, int64_t M, int64_t m0, int64_t p0, int64_t kc, float* dst) {
  const int64_t mv = std::min<int64_t>(kMR, M - m0);
  if (trans_a) {
    pack_a_sliver_trans(row, mv, m0, p0, kc, dst);
    return;
  }
  const float* src[kMR];
  for (int64_t r = 0; r < kMR; ++r) src[r] = r < mv ? row(m0 + r) + p0 : nullptr;
  int64_t k0 = 0;
  for (; k0 + 16 <= kc; k0 += 16) {
    __m512 v[16];
    for (int r = 0; r < 16; ++r) v[r] = (r < kMR && src[r]) ? _mm512_loadu_ps(src[r] + k0) : _mm512_setzero_ps();
    transpose16x16(v);
    for (int c = 0; c < 16; ++c) _mm512_mask_storeu_ps(dst + (k0 + c) * kMR, __mmask16(0x0FFF), v[c]);
  }
  for (; k0 < kc; ++k0)
    for (int64_t r = 0; r < kMR; ++r) dst[k0 * kMR + r] = src[r] ? src[r][k0] : 0.f;
}

/// C = fma(alpha, acc, cb * C) [+ bias] for a full 12 x 32 tile (cb = 0: C is
/// not read; bias: 32 column values added to every row, or null).
inline void store_tile(const __m512 (&acc)[kMR][2], float* c, int64_t ldc, float alpha, float cb, const float* bias) {
  const __m512 va = _mm512_set1_ps(alpha);
  const __m512 z = _mm512_setzero_ps();
  const __m512 b0 = bias ? _mm512_loadu_ps(bias) : z, b1 = bias ? _mm512_loadu_ps(bias + 16) : z;
  if (cb == 0.f) {
    for (int r = 0; r < kMR; ++r) {
      _mm512_storeu_ps(c + r * ldc, _mm512_fmadd_ps(va, acc[r][0], b0));
      _mm512_storeu_ps(c + r * ldc + 16, _mm512_fmadd_ps(va, acc[r][1], b1));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(cb);
    for (int r = 0; r < kMR; ++r) {
      float* cr = c + r * ldc;
      _mm512_storeu_ps(cr, _mm512_add_ps(_mm512_fmadd_ps(va, acc[r][0], _mm512_mul_ps(vb, _mm512_loadu_ps(cr))), b0));
      _mm512_storeu_ps(cr + 16,
                       _mm512_add_ps(_mm512_fmadd_ps(va, acc[r][1], _mm512_mul_ps(vb, _mm512_loadu_ps(cr + 16))), b1));
    }
  }
}

/// The 12 x 32 register tile: acc = sum_k a[k, r] * b[k, c], then
/// C = fma(alpha, acc, cb * C) [+ bias] (cb = 0: C is not read). Full tiles only.
inline void kernel_12x32(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                         float alpha, float cb, const float* bias) {
  __m512 acc[kMR][2];
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b + k * kNR);
    const __m512 b1 = _mm512_load_ps(b + k * kNR + 16);
    const float* ak = a + k * kMR;
#pragma GCC unroll 12
    for (int r = 0; r < kMR; ++r) {
      const __m512 ar = _mm512_set1_ps(ak[r]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  store_tile(acc, c, ldc, alpha, cb, bias);
}
/// The fp32 register tile of this build.
inline void kernel_fp32(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float cb,
                        const float* bias) {
  kernel_12x32(kc, a, b, c, ldc, alpha, cb, bias);
}

#else  // AVX2 with FMA

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// In-register transpose of an 8 x 8 float block (rows r[0..7]).
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/// Packs op(B)[p0:p0+kc, n0:n0+16) as kc rows of 16 floats (zero beyond N).
inline void pack_b_sliver(bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t p0, int64_t kc, int64_t n0,
                          float* dst) {
  const int64_t nv = std::min<int64_t>(kNR, N - n0);
  if (!trans_b) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (p0 + k) * ldb + n0;
      float* d = dst + k * kNR;
      if (nv == kNR) {
        _mm256_store_ps(d, _mm256_loadu_ps(src));
        _mm256_store_ps(d + 8, _mm256_loadu_ps(src + 8));
      } else {
        int64_t c = 0;
        for (; c < nv; ++c) d[c] = src[c];
        for (; c < kNR; ++c) d[c] = 0.f;
      }
    }
  } else {
    // op(B) column n is stored row n of B: 8 x 8 blocks transposed in registers.
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8)
      for (int h = 0; h < 2; ++h) {
        __m256 v[8];
        for (int r = 0; r < 8; ++r)
          v[r] = h * 8 + r < nv ? _mm256_loadu_ps(B + (n0 + h * 8 + r) * ldb + p0 + k0) : _mm256_setzero_ps();
        transpose8x8(v);
        for (int k = 0; k < 8; ++k) _mm256_store_ps(dst + (k0 + k) * kNR + h * 8, v[k]);
      }
    for (int64_t c = 0; c < kNR; ++c) {
      const float* src = B + (n0 + c) * ldb + p0;
      for (int64_t k = k0; k < kc; ++k) dst[k * kNR + c] = c < nv ? src[k] : 0.f;
    }
  }
}

/// Packs op(A)[m0:m0+6, p0:p0+kc) as kc columns of 6 floats (zero beyond M).
/// row(q) is the start of stored row q of A: op(A)(i, k) = row(i)[k], or with
/// trans_a row(k)[i].
template <class Row>
void pack_a_sliver(bool trans_a, const Row& row, int64_t M, int64_t m0, int64_t p0, int64_t kc, float* dst) {
  const int64_t mv = std::min<int64_t>(kMR, M - m0);
  if (trans_a) {
    pack_a_sliver_trans(row, mv, m0, p0, kc, dst);
    return;
  }
  const float* src[kMR];
  for (int64_t r = 0; r < kMR; ++r) src[r] = r < mv ? row(m0 + r) + p0 : nullptr;
  const __m256i six = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
  int64_t k0 = 0;
  for (; k0 + 8 <= kc; k0 += 8) {
    __m256 v[8];
    for (int r = 0; r < 8; ++r) v[r] = (r < kMR && src[r]) ? _mm256_loadu_ps(src[r] + k0) : _mm256_setzero_ps();
    transpose8x8(v);
    for (int c = 0; c < 8; ++c) _mm256_maskstore_ps(dst + (k0 + c) * kMR, six, v[c]);
  }
  for (; k0 < kc; ++k0)
    for (int64_t r = 0; r < kMR; ++r) dst[k0 * kMR + r] = src[r] ? src[r][k0] : 0.f;
}

/// The 6 x 16 register tile (12 ymm accumulators): acc = sum_k a[k, r] * b[k, c],
/// then C = fma(alpha, acc, cb * C) [+ bias] (cb = 0: C is not read). Full tiles only.
inline void kernel_fp32(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                        float alpha, float cb, const float* bias) {
  // Every loop over the rows is unrolled so that the accumulators stay in registers
  // (with a rolled loop GCC 12 keeps the array on the stack and stores it every k).
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b + k * kNR);
    const __m256 b1 = _mm256_load_ps(b + k * kNR + 8);
    const float* ak = a + k * kMR;
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      const __m256 ar = _mm256_broadcast_ss(ak + r);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
  const __m256 va = _mm256_set1_ps(alpha);
  const __m256 z = _mm256_setzero_ps();
  const __m256 bi0 = bias ? _mm256_loadu_ps(bias) : z, bi1 = bias ? _mm256_loadu_ps(bias + 8) : z;
  if (cb == 0.f) {
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      _mm256_storeu_ps(c + r * ldc, _mm256_fmadd_ps(va, acc[r][0], bi0));
      _mm256_storeu_ps(c + r * ldc + 8, _mm256_fmadd_ps(va, acc[r][1], bi1));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(cb);
#pragma GCC unroll 6
    for (int r = 0; r < kMR; ++r) {
      float* cr = c + r * ldc;
      _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_fmadd_ps(va, acc[r][0], _mm256_mul_ps(vb, _mm256_loadu_ps(cr))), bi0));
      _mm256_storeu_ps(cr + 8,
                       _mm256_add_ps(_mm256_fmadd_ps(va, acc[r][1], _mm256_mul_ps(vb, _mm256_loadu_ps(cr + 8))), bi1));
    }
  }
}

#endif  // AVX-512 / AVX2 primitives

/// Edge tile (mv <= kMR rows, nv <= kNR columns): the same arithmetic through a local tile.
template <class Kernel, class E>
void kernel_edge(const Kernel& kernel, int64_t kc, const E* a, const E* b, float* c, int64_t ldc, int64_t mv,
                 int64_t nv, float alpha, float cb, const float* bias) {
  alignas(64) float tile[kMR * kNR];
  kernel(kc, a, b, tile, kNR, 1.f, 0.f, nullptr);
  for (int64_t r = 0; r < mv; ++r)
    for (int64_t j = 0; j < nv; ++j) {
      float& y = c[r * ldc + j];
      const float bj = bias ? bias[j] : 0.f;
      y = cb == 0.f ? std::fma(alpha, tile[r * kNR + j], bj) : std::fma(alpha, tile[r * kNR + j], cb * y) + bj;
    }
}

#if defined(__AVX512BF16__)
// bfloat16 pairs: a 32-bit slot holds (lo: element k, hi: element k + 1) of a
// K-pair, both rounded to nearest even; K-blocks are packed as kc2 = ceil(kc/2)
// pairs (an odd tail pairs with zero).

/// Round to nearest even bfloat16; the result sits in the upper 16 bits (finite inputs).
inline __m512i bf16_round_hi(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  return _mm512_and_si512(r, _mm512_set1_epi32(int(0xFFFF0000u)));
}
/// Lane-wise pair (lo = x0, hi = x1) of rounded bfloat16 values.
inline __m512i bf16_pair(__m512 x0, __m512 x1) {
  return _mm512_or_si512(bf16_round_hi(x1), _mm512_srli_epi32(bf16_round_hi(x0), 16));
}
/// pack_b_sliver in bfloat16 pairs: kc2 rows of 32 slots.
inline void pack_b_sliver_bf16(bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t p0, int64_t kc,
                               int64_t n0, uint32_t* dst) {
  // The fp32 sliver first (kc + 1 rows: an odd tail pairs with a zero row), then pairs of rows.
  static thread_local AlignedBuf tmp;
  static thread_local int64_t cap = 0;
  if (cap < (kc + 1) * kNR) {
    tmp = aligned_floats((kc + 1) * kNR);
    cap = (kc + 1) * kNR;
  }
  float* rows = tmp.get();
  pack_b_sliver(trans_b, B, ldb, N, p0, kc, n0, rows);
  if (kc % 2) std::fill(rows + kc * kNR, rows + (kc + 1) * kNR, 0.f);
  for (int64_t k = 0; k < kc; k += 2) {
    const float* r0 = rows + k * kNR;
    const float* r1 = r0 + kNR;
    uint32_t* o = dst + (k / 2) * kNR;
    _mm512_store_si512(o, bf16_pair(_mm512_load_ps(r0), _mm512_load_ps(r1)));
    _mm512_store_si512(o + 16, bf16_pair(_mm512_load_ps(r0 + 16), _mm512_load_ps(r1 + 16)));
  }
}

/// pack_a_sliver in bfloat16 pairs: kc2 columns of 12 slots (packs fp32 through tmp, kc x 12 floats).
template <class Row>
void pack_a_sliver_bf16(bool trans_a, const Row& row, int64_t M, int64_t m0, int64_t p0, int64_t kc, float* tmp,
                        uint32_t* dst) {
  pack_a_sliver(trans_a, row, M, m0, p0, kc, tmp);
  const __mmask16 m12 = 0x0FFF;
  int64_t k = 0;
  for (; k + 1 < kc; k += 2) {
    const __m512 x0 = _mm512_maskz_loadu_ps(m12, tmp + k * kMR), x1 = _mm512_maskz_loadu_ps(m12, tmp + (k + 1) * kMR);
    _mm512_mask_storeu_epi32(dst + (k / 2) * kMR, m12, bf16_pair(x0, x1));
  }
  if (k < kc) {
    const __m512 x0 = _mm512_maskz_loadu_ps(m12, tmp + k * kMR);
    _mm512_mask_storeu_epi32(dst + (k / 2) * kMR, m12, bf16_pair(x0, _mm512_setzero_ps()));
  }
}

/// kernel_12x32 over kc2 bfloat16 pairs (vdpbf16ps), fp32 accumulators.
inline void kernel_12x32_bf16(int64_t kc2, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c,
                              int64_t ldc, float alpha, float cb, const float* bias) {
  __m512 acc[kMR][2];
  for (int r = 0; r < kMR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc2; ++k) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + k * kNR);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + k * kNR + 16);
    const uint32_t* ak = a + k * kMR;
#pragma GCC unroll 12
    for (int r = 0; r < kMR; ++r) {
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(int(ak[r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
    }
  }
  store_tile(acc, c, ldc, alpha, cb, bias);
}
#endif  // __AVX512BF16__

/// The packing and micro-kernel of one operand precision: fp32 slots, or
/// bfloat16 pairs in 32-bit slots (E). Primitives<true> exists only with
/// AVX512-BF16, and every Bf16 = true path is compiled under that condition.
/// pack_a's staging (one fp32 sliver of kMR x kc) is used by bf16 only.
template <bool Bf16>
struct Primitives {
  using E = float;
  static void pack_b(bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t p0, int64_t kc, int64_t n0, E* dst) {
    pack_b_sliver(trans_b, B, ldb, N, p0, kc, n0, dst);
  }
  template <class Row>
  static void pack_a(bool trans_a, const Row& row, int64_t M, int64_t m0, int64_t p0, int64_t kc, float* /*staging*/,
                     E* dst) {
    pack_a_sliver(trans_a, row, M, m0, p0, kc, dst);
  }
  static void kernel(int64_t kl, const E* a, const E* b, float* c, int64_t ldc, float alpha, float cb,
                     const float* bias) {
    kernel_fp32(kl, a, b, c, ldc, alpha, cb, bias);
  }
};
#if defined(__AVX512BF16__)
template <>
struct Primitives<true> {
  using E = uint32_t;
  static void pack_b(bool trans_b, const float* B, int64_t ldb, int64_t N, int64_t p0, int64_t kc, int64_t n0, E* dst) {
    pack_b_sliver_bf16(trans_b, B, ldb, N, p0, kc, n0, dst);
  }
  template <class Row>
  static void pack_a(bool trans_a, const Row& row, int64_t M, int64_t m0, int64_t p0, int64_t kc, float* staging,
                     E* dst) {
    pack_a_sliver_bf16(trans_a, row, M, m0, p0, kc, staging, dst);
  }
  static void kernel(int64_t kl, const E* a, const E* b, float* c, int64_t ldc, float alpha, float cb,
                     const float* bias) {
    kernel_12x32_bf16(kl, a, b, c, ldc, alpha, cb, bias);
  }
};
#endif

/// Packed length of a K-block of kc values (bf16 pairs take half the slots).
template <bool Bf16>
constexpr int64_t packed_klen(int64_t kc) {
  return Bf16 ? (kc + 1) / 2 : kc;
}
/// K-block: bf16 pairs take half the bytes, so its blocks hold twice the K values
/// (fewer passes over C; the packed panels keep the fp32 footprints).
template <bool Bf16>
constexpr int64_t packed_kc() {
  return Bf16 ? 2 * kKC : kKC;
}
/// Floats (32-bit slots) of a packed op(B) of K x N.
inline int64_t packed_b_floats(int64_t K, int64_t N) { return K * ((N + kNR - 1) / kNR) * kNR; }

/// Packs op(B) (K x N) for the kernel, in parallel: K-block p occupies
/// [klen(p*KC)*nsl*32, ...), sliver j at j*klen(kc)*32 inside it.
template <bool Bf16>
void pack_b_panel(bool trans_b, const float* B, int64_t ldb, int64_t K, int64_t N, void* out) {
  using E = typename Primitives<Bf16>::E;
  E* Bp = static_cast<E*>(out);
  constexpr int64_t KC = packed_kc<Bf16>();
  const int64_t nsl = (N + kNR - 1) / kNR, npc = (K + KC - 1) / KC;
  parallel_for(npc * nsl, std::max<int64_t>(1, 4096 / KC), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t p = t / nsl, j = t % nsl, p0 = p * KC, kc = std::min(KC, K - p0);
      E* dst = Bp + packed_klen<Bf16>(p0) * nsl * kNR + j * packed_klen<Bf16>(kc) * kNR;
      Primitives<Bf16>::pack_b(trans_b, B, ldb, N, p0, kc, j * kNR, dst);
    }
  });
}

/// The row-block tasks of one product C = alpha op(A) Bp + beta C (+ bias) with
/// op(B) already packed (pack_b_panel): rows of C in blocks of kMB, with few
/// row blocks also column groups of kNC. The tasks depend only on the shape,
/// never on the thread count; run(t) for every t < count() computes C.
template <bool Bf16, class Row>
struct PackedProductTasks {
  using E = typename Primitives<Bf16>::E;
  bool trans_a;
  int64_t M, N, K;
  float alpha;
  Row arow;
  const E* Bp;
  float beta;
  float* C;
  int64_t ldc;
  const float* bias;
  int64_t nrb = (M + kMB - 1) / kMB;
  int64_t ncg = nrb >= 8 ? 1 : (N + kNC - 1) / kNC;

  int64_t count() const { return nrb * ncg; }
  /// The columns [first, second) of C that task t computes.
  std::pair<int64_t, int64_t> columns(int64_t t) const {
    const int64_t cg_cols = ncg == 1 ? N : kNC;
    const int64_t g0 = (t % ncg) * cg_cols;
    return {g0, std::min(N, g0 + cg_cols)};
  }
  void run(int64_t t) const {
    const auto kernel = [](auto... args) { Primitives<Bf16>::kernel(args...); };
    constexpr int64_t KC = packed_kc<Bf16>();
    const int64_t nsl = (N + kNR - 1) / kNR, npc = (K + KC - 1) / KC;
    const int64_t m0 = (t / ncg) * kMB, m1 = std::min(M, m0 + kMB);
    const auto [g0, g1] = columns(t);
    const int64_t nas = (m1 - m0 + kMR - 1) / kMR;
    // fp32: nas packed slivers; bf16: the same space holds them as pairs, plus one fp32 sliver of staging.
    float* scratch = a_scratch(nas * kMR * packed_klen<Bf16>(KC) + (Bf16 ? kMR * KC : 0));
    E* Ap = reinterpret_cast<E*>(scratch);
    for (int64_t p = 0; p < npc; ++p) {
      const int64_t p0 = p * KC, kc = std::min(KC, K - p0), kl = packed_klen<Bf16>(kc);
      const float cb = p == 0 ? beta : 1.f;
      const bool last = p == npc - 1;
      for (int64_t s = 0; s < nas; ++s) {
        Primitives<Bf16>::pack_a(trans_a, arow, M, m0 + s * kMR, p0, kc, scratch + nas * kMR * packed_klen<Bf16>(KC),
                                 Ap + s * kMR * kl);
      }
      const E* Bblk = Bp + packed_klen<Bf16>(p0) * nsl * kNR;
      for (int64_t n0 = g0; n0 < g1; n0 += kNC) {
        const int64_t n1 = std::min(g1, n0 + kNC);
        for (int64_t s = 0; s < nas; ++s) {
          const int64_t r0 = m0 + s * kMR, mv = std::min(kMR, m1 - r0);
          const E* as = Ap + s * kMR * kl;
          for (int64_t c0 = n0; c0 < n1; c0 += kNR) {
            const int64_t nv = std::min(kNR, N - c0);
            const E* bs = Bblk + (c0 / kNR) * kl * kNR;
            float* cp = C + r0 * ldc + c0;
            const float* bi = last && bias ? bias + c0 : nullptr;
            if (mv == kMR && nv == kNR)
              kernel(kl, as, bs, cp, ldc, alpha, cb, bi);
            else
              kernel_edge(kernel, kl, as, bs, cp, ldc, mv, nv, alpha, cb, bi);
          }
        }
      }
    }
  }
};

/// The packed product; with Bf16, op(A) and op(B) are packed as bfloat16 pairs
/// (same buffer sizes: a K-block of kc values takes ceil(kc/2) 32-bit slots)
/// and multiplied with kernel_12x32_bf16. bias (N values or null) is added to
/// every row in the store of the last K-block (no extra pass over C).
template <bool Bf16, class Row>
void gemm_packed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const Row& arow,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias) {
  using E = typename Primitives<Bf16>::E;
  AlignedBuf b_own;
  E* Bp = reinterpret_cast<E*>(b_panel(packed_b_floats(K, N), b_own));
  pack_b_panel<Bf16>(trans_b, B, ldb, K, N, Bp);
  const PackedProductTasks<Bf16, Row> tasks{trans_a, M, N, K, alpha, arow, Bp, beta, C, ldc, bias};
  parallel_for(tasks.count(), 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) tasks.run(t);
  });
}

/// gemm_packed in the calling thread's precision (bf16 only where available).
template <class Row>
void gemm_packed_dispatch(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const Row& arow,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias) {
#if defined(__AVX512BF16__)
  if (matmul_precision() == MatmulPrecision::bf16) {
    gemm_packed<true>(trans_a, trans_b, M, N, K, alpha, arow, B, ldb, beta, C, ldc, bias);
    return;
  }
#endif
  gemm_packed<false>(trans_a, trans_b, M, N, K, alpha, arow, B, ldb, beta, C, ldc, bias);
}

#endif  // FLOWLESS_CPU_PACKED_GEMM

/// C[m, :] += bias for every row (the epilogue of the paths without one built in).
template <class T>
void add_bias_rows(T* C, int64_t ldc, int64_t M, int64_t N, const T* bias) {
  if (!bias) return;
  parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1)), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = 0; n < N; ++n) C[m * ldc + n] += bias[n];
  });
}

}  // namespace gemm_detail

/// Parallel product, identical results for every thread count (see file comment).
/// bias (N values, or null): C = alpha * op(A) * op(B) + beta * C + bias, the
/// bias added to every row of C; on the packed path inside the store of the
/// last K-block, so a layer's bias costs no extra pass over its output.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc, const T* bias = nullptr) {
  if (M <= 0 || N <= 0) return;
#if FLOWLESS_CPU_PACKED_GEMM
  if constexpr (std::is_same_v<T, float>) {
    if (K > 0 && 2.0 * double(M) * double(N) * double(K) >= 1e5) {
      gemm_detail::gemm_packed_dispatch(trans_a, trans_b, M, N, K, alpha, [A, lda](int64_t q) { return A + q * lda; }, B, ldb,
                               beta, C, ldc, bias);
      return;
    }
  }
#endif
  gemm_detail::gemm_eigen_tiled(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm_detail::add_bias_rows(C, ldc, M, N, bias);
}

/// gemm with op(A) given by row pointers: arows[q] is stored row q of A (M rows
/// of K values, or with trans_a K rows of M values); rows may alias anything
/// (patch rows of a sequence, a shared zero row). Same arithmetic and the same
/// thread-count independence as gemm (bias likewise).
template <class T>
void gemm_rows(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* const* arows,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc, const T* bias = nullptr) {
  if (M <= 0 || N <= 0) return;
#if FLOWLESS_CPU_PACKED_GEMM
  if constexpr (std::is_same_v<T, float>) {
    if (K > 0 && 2.0 * double(M) * double(N) * double(K) >= 1e5) {
      gemm_detail::gemm_packed_dispatch(trans_a, trans_b, M, N, K, alpha, [arows](int64_t q) { return arows[q]; }, B, ldb,
                               beta, C, ldc, bias);
      return;
    }
  }
#endif
  // Gather op(A) into a dense buffer for the Eigen path.
  const int64_t rows = trans_a ? K : M, cols = trans_a ? M : K;
  std::vector<T> a(static_cast<size_t>(std::max<int64_t>(rows * cols, 1)));
  for (int64_t q = 0; q < rows; ++q) std::copy(arows[q], arows[q] + cols, a.data() + q * cols);
  gemm_detail::gemm_eigen_tiled(trans_a, trans_b, M, N, K, alpha, a.data(), cols, B, ldb, beta, C, ldc);
  gemm_detail::add_bias_rows(C, ldc, M, N, bias);
}

/// op(B) (K x N) packed once, in the calling thread's matmul precision, for
/// many products (gemm_prepacked): a weight that several products share, such
/// as the Winograd slabs of a head conv run at every pyramid level, is then
/// packed once instead of once per product. It refers to B, which must
/// outlive it: products that take another path (tiny ones, another precision,
/// builds without the packed GEMM) read B itself.
class PackedB {
 public:
  PackedB(bool trans_b, int64_t K, int64_t N, const float* B, int64_t ldb)
      : trans_b_(trans_b), K_(K), N_(N), ldb_(ldb), B_(B), precision_(effective_matmul_precision()) {
    FLOWLESS_CHECK(K >= 0 && N >= 0 && B, "PackedB: bad matrix ", K, " x ", N);
#if FLOWLESS_CPU_PACKED_GEMM
    if (K > 0 && N > 0) {
      // From the backend's allocator: panels packed per forward reuse their blocks.
      panel_.reset(static_cast<float*>(
          HostBlockCache::global().allocate(size_t(gemm_detail::packed_b_floats(K, N)) * sizeof(float))));
#if defined(__AVX512BF16__)
      if (precision_ == MatmulPrecision::bf16) {
        gemm_detail::pack_b_panel<true>(trans_b, B, ldb, K, N, panel_.get());
        return;
      }
#endif
      gemm_detail::pack_b_panel<false>(trans_b, B, ldb, K, N, panel_.get());
    }
#endif
  }
  int64_t rows() const { return K_; }
  int64_t cols() const { return N_; }
  bool trans() const { return trans_b_; }
  const float* source() const { return B_; }
  int64_t ldb() const { return ldb_; }
  MatmulPrecision precision() const { return precision_; }
  const float* panel() const {
#if FLOWLESS_CPU_PACKED_GEMM
    return panel_.get();
#else
    return nullptr;
#endif
  }

 private:
  bool trans_b_;
  int64_t K_, N_, ldb_;
  const float* B_;
  MatmulPrecision precision_;
#if FLOWLESS_CPU_PACKED_GEMM
  struct Release {
    void operator()(float* p) const noexcept { HostBlockCache::global().deallocate(p); }
  };
  std::unique_ptr<float[], Release> panel_;
#endif
};

/// One product of gemm_prepacked: C (M x N) = alpha * A (M x K, row stride
/// lda) * op(B) + beta * C + bias (N values, or null).
struct PrepackedProduct {
  const PackedB* B;
  int64_t M;
  const float* A;
  int64_t lda;
  float* C;
  int64_t ldc;
  const float* bias = nullptr;
};

namespace gemm_detail {
struct RowsOf {  // row q of a row-major A
  const float* A;
  int64_t lda;
  const float* operator()(int64_t q) const { return A + q * lda; }
};
struct RowPtrs {  // row q given by a pointer
  const float* const* rows;
  const float* operator()(int64_t q) const { return rows[q]; }
};

/// Whether a product of M rows over B takes B's packed panel: the conditions
/// under which gemm() itself takes the packed path, in the panel's precision.
inline bool use_packed_panel(const PackedB& b, int64_t M) {
#if FLOWLESS_CPU_PACKED_GEMM
  return b.rows() > 0 && M > 0 && b.cols() > 0 && b.precision() == effective_matmul_precision() &&
         2.0 * double(M) * double(b.cols()) * double(b.rows()) >= 1e5;
#else
  (void)b, (void)M;
  return false;
#endif
}

#if FLOWLESS_CPU_PACKED_GEMM
template <bool Bf16>
void gemm_prepacked_tasks(float alpha, float beta, const std::vector<const PrepackedProduct*>& items) {
  using E = typename Primitives<Bf16>::E;
  std::vector<PackedProductTasks<Bf16, RowsOf>> tasks;
  std::vector<int64_t> first;  // first task of each product in the joint numbering
  int64_t total = 0;
  for (const PrepackedProduct* it : items) {
    const PackedB& b = *it->B;
    tasks.push_back({false, it->M, b.cols(), b.rows(), alpha, RowsOf{it->A, it->lda},
                     reinterpret_cast<const E*>(b.panel()), beta, it->C, it->ldc, it->bias});
    first.push_back(total);
    total += tasks.back().count();
  }
  parallel_for(total, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const size_t i = size_t(std::upper_bound(first.begin(), first.end(), t) - first.begin()) - 1;
      tasks[i].run(t - first[i]);
    }
  });
}
#endif
}  // namespace gemm_detail

/// Runs every product of the batch, their row-block tasks in one parallel
/// region (several small products then share the threads instead of each
/// waiting for the slowest). Each C equals, bit for bit, what
/// gemm(false, B.trans(), M, N, K, alpha, A, lda, B.source(), B.ldb(), beta, C, ldc, bias)
/// gives in the calling thread's precision; the Cs must not overlap.
inline void gemm_prepacked(float alpha, float beta, const std::vector<PrepackedProduct>& batch) {
  std::vector<const PrepackedProduct*> packed;
  for (const PrepackedProduct& it : batch) {
    const PackedB& b = *it.B;
    if (gemm_detail::use_packed_panel(b, it.M))
      packed.push_back(&it);
    else
      gemm<float>(false, b.trans(), it.M, b.cols(), b.rows(), alpha, it.A, it.lda, b.source(), b.ldb(), beta, it.C, it.ldc,
                  it.bias);
  }
  if (packed.empty()) return;
#if FLOWLESS_CPU_PACKED_GEMM
#if defined(__AVX512BF16__)
  if (packed.front()->B->precision() == MatmulPrecision::bf16) {
    gemm_detail::gemm_prepacked_tasks<true>(alpha, beta, packed);
    return;
  }
#endif
  gemm_detail::gemm_prepacked_tasks<false>(alpha, beta, packed);
#endif
}

/// gemm_rows over a packed B: C (M x N) = alpha * A * op(B) + beta * C + bias,
/// the rows of A (K values each) given by pointers, as gemm_rows takes them
/// (convolution patches read in place). Equals, bit for bit,
/// gemm_rows(false, B.trans(), M, N, K, alpha, arows, B.source(), B.ldb(), beta, C, ldc, bias)
/// in the calling thread's precision: a weight packed once serves every call.
inline void gemm_rows_prepacked(int64_t M, float alpha, const float* const* arows, const PackedB& B, float beta, float* C,
                                int64_t ldc, const float* bias = nullptr) {
  if (M <= 0 || B.cols() <= 0) return;
  if (!gemm_detail::use_packed_panel(B, M)) {
    gemm_rows<float>(false, B.trans(), M, B.cols(), B.rows(), alpha, arows, B.source(), B.ldb(), beta, C, ldc, bias);
    return;
  }
#if FLOWLESS_CPU_PACKED_GEMM
  auto run = [&](auto bf16) {
    constexpr bool Bf16 = decltype(bf16)::value;
    using E = typename gemm_detail::Primitives<Bf16>::E;
    const gemm_detail::PackedProductTasks<Bf16, gemm_detail::RowPtrs> tasks{
        false, M, B.cols(), B.rows(), alpha, gemm_detail::RowPtrs{arows}, reinterpret_cast<const E*>(B.panel()),
        beta, C, ldc, bias};
    parallel_for(tasks.count(), 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) tasks.run(t);
    });
  };
#if defined(__AVX512BF16__)
  if (B.precision() == MatmulPrecision::bf16) {
    run(std::true_type{});
    return;
  }
#endif
  run(std::false_type{});
#endif
}

}  // namespace flowless::cpu
