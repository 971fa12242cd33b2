// cuda/common.cuh - what every kernel file shares: the CUDA error macro, the
// launch macro, prefix-mask lengths passed by value, warp/block sums, the
// fixed-order reductions, stream-ordered scratch buffers and the cuBLAS GEMM.
// Internal to the .cu files (users include kernels.cuh).
//
// Determinism: no atomics. Scalar sums use a grid whose size depends only on
// the element count, then one block adds the per-block partials in order;
// column sums use fixed chunks of rows combined in chunk order.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#ifdef FLOWLESS_CUDA_EMULATE
#include "emulation.cuh"
#else
#include <cuda_runtime.h>
#endif

#include "flowless/core/error.hpp"
#include "kernels.cuh"

/// Throws flowless::Error when a CUDA runtime call fails.
#define FLOWLESS_CUDA_CHECK(expr)                                                     \
  do {                                                                                \
    const cudaError_t flowless_cuda_err_ = (expr);                                    \
    if (flowless_cuda_err_ != cudaSuccess)                                            \
      FLOWLESS_FAIL("CUDA error in ", #expr, ": ", cudaGetErrorString(flowless_cuda_err_)); \
  } while (0)

/// kernel<<<grid, block, smem>>>(args...) on the default stream, then checks the
/// launch. `kernel` is a kernel name or a pointer to one (write
/// `auto k = my_kernel<4>;` first for templates).
#ifdef FLOWLESS_CUDA_EMULATE
#define FLOWLESS_LAUNCH(kernel, grid, block, smem, ...) \
  ::flowless_emu::launch(kernel, dim3(grid), dim3(block), size_t(smem), __VA_ARGS__)
#else
#define FLOWLESS_LAUNCH(kernel, grid, block, smem, ...)         \
  do {                                                          \
    kernel<<<dim3(grid), dim3(block), size_t(smem)>>>(__VA_ARGS__); \
    FLOWLESS_CUDA_CHECK(cudaGetLastError());                    \
  } while (0)
#endif

namespace flowless::cuda::detail {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kThreads = 256;              // default block size
constexpr int64_t kMaxGrid = int64_t(1) << 20;  // grid-stride loops cover the rest
constexpr int64_t kRowChunk = 64;          // rows per partial in column sums

/// Blocks of `threads` for a grid-stride loop over n items (at least 1).
inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  return unsigned(std::clamp<int64_t>((n + threads - 1) / threads, 1, kMaxGrid));
}

__device__ __forceinline__ int64_t global_index() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * blockDim.x; }

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

/// Butterfly sum over the 32 lanes of a warp; every lane gets the result.
/// All 32 lanes must call it.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

/// Sum over a block (blockDim.x a multiple of 32, 1-D); the result is valid in
/// thread 0. Every thread of the block must call it.
__device__ inline double block_sum(double v) {
  __shared__ double part[32];
  v = warp_sum(v);
  const int lane = int(threadIdx.x) % kWarp, warp = int(threadIdx.x) / kWarp;
  if (lane == 0) part[warp] = v;
  __syncthreads();
  double r = 0;
  if (warp == 0) {
    r = lane < int(blockDim.x) / kWarp ? part[lane] : 0.0;
    r = warp_sum(r);
  }
  __syncthreads();  // part may be reused by the next call
  return r;
}

/// Prefix-mask lengths passed to kernels by value (n == 0: no mask).
struct Lengths {
  int n = 0;
  int v[kMaxBatch];
};

/// Copies and checks a host lengths array (nullptr = no mask).
inline Lengths make_lengths(const int* lengths, int64_t B, const char* op) {
  Lengths L;
  if (!lengths) return L;
  FLOWLESS_CHECK(B <= kMaxBatch, op, ": batch ", B, " exceeds the ", kMaxBatch, " lengths a CUDA kernel accepts");
  for (int64_t b = 0; b < B; ++b) {
    FLOWLESS_CHECK(lengths[b] >= 0, op, ": negative length ", lengths[b]);
    L.v[b] = lengths[b];
  }
  L.n = int(B);
  return L;
}

/// Valid length of batch element b, clipped to T.
__device__ __forceinline__ int64_t valid_length(const Lengths& L, int64_t b, int64_t T) {
  return L.n == 0 ? T : imin(L.v[b], T);
}

/// A stream-ordered device buffer of n elements (uninitialised).
template <class T>
class Scratch {
 public:
  explicit Scratch(int64_t n) {
    if (n > 0) FLOWLESS_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&p_), sizeof(T) * size_t(n), 0));
  }
  ~Scratch() {
    if (p_) cudaFreeAsync(p_, 0);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* get() const { return p_; }

 private:
  T* p_ = nullptr;
};

// ---- fixed-order scalar sums ----------------------------------------------------
constexpr int kReduceThreads = 256;
constexpr int kReduceMaxBlocks = 1024;

/// Grid size of a scalar sum: a function of n only.
inline int reduce_blocks(int64_t n) {
  return int(std::clamp<int64_t>((n + 4 * kReduceThreads - 1) / (4 * kReduceThreads), 1, kReduceMaxBlocks));
}

template <class F>
__global__ void __launch_bounds__(kReduceThreads) sum_terms_kernel(int64_t n, F f, double* partial) {
  double acc = 0;
  for (int64_t i = global_index(); i < n; i += grid_stride()) acc += double(f(i));
  acc = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/// *out_f = float(sum) and/or *out_d = sum of partial[0:count] in order (device pointers, each may be null).
void finish_sum(const double* partial, int count, float* out_f, double* out_d);

/// sum_{i < n} double(f(i)) into device *out_f (as float) and/or *out_d.
/// f is a device functor float(int64_t).
template <class F>
void sum_terms(int64_t n, F f, float* out_f, double* out_d) {
  const int blocks = reduce_blocks(n);
  Scratch<double> partial(blocks);
  auto kernel = sum_terms_kernel<F>;
  FLOWLESS_LAUNCH(kernel, blocks, kReduceThreads, 0, n, f, partial.get());
  finish_sum(partial.get(), blocks, out_f, out_d);
}

// ---- fixed-order column sums ----------------------------------------------------
/// out[c] += sum over ch in order of partial[ch * cols + c].
void sum_chunks_into(const float* partial, int64_t chunks, int64_t cols, float* out);
/// out[c] += sum_r x[r * cols + c] (chunks of kRowChunk rows, combined in order).
void column_sum_into(const float* x, int64_t rows, int64_t cols, float* out);

// ---- GEMM -----------------------------------------------------------------------
/// Column-major strided-batched SGEMM with cuBLAS's semantics and argument
/// rules: C_i = alpha * op(A_i) * op(B_i) + beta * C_i, op(A_i) m x k,
/// op(B_i) k x n, for i < batch. Full fp32 (cuBLAS default math, no TF32).
void gemm_batched(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* A, int lda,
                  int64_t stride_a, const float* B, int ldb, int64_t stride_b, float beta, float* C, int ldc,
                  int64_t stride_c, int batch);

/// Checks an element count fits the int arguments of cuBLAS.
inline int as_int(int64_t v, const char* what) {
  FLOWLESS_CHECK(v >= 0 && v <= int64_t(2147483647), what, " = ", v, " is too large for cuBLAS");
  return int(v);
}

}  // namespace flowless::cuda::detail
