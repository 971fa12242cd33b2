// flowless/backend/cpu_gemm.hpp - matrix products on the CPU through Eigen.
//
// gemm computes, on row-major buffers,
//   C(M, N) = alpha * op(A) * op(B) + beta * C
// op(A) is A (M x K, row stride lda) or, with trans_a, the transpose of a
// (K x M, row stride lda) buffer; likewise for B. Row strides smaller than the
// row length are allowed for A and B (overlapping rows), which is how
// convolutions read their input patches without im2col.
//
// Parallelism: C is cut into fixed tiles (rows when M >= N, else columns) of
// a size that depends only on the shape; each tile is one single-threaded
// Eigen product over the full K. Results are therefore identical for every
// thread count.
#pragma once

#include <Eigen/Core>
#include <algorithm>

#include "flowless/core/thread_pool.hpp"

namespace flowless::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using MutMap = Eigen::Map<RowMat<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// Single-threaded product on one block (see file comment for the contract).
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

/// Parallel product with thread-count-independent tiling.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda, const T* B,
          int64_t ldb, T beta, T* C, int64_t ldc) {
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

}  // namespace flowless::cpu
