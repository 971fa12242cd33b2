// cuda/backend.cu - the Cuda backend policy (flowless/backend/cuda.hpp) and the
// shared helpers of common.cuh: fixed-order sums and the cuBLAS GEMM.
#include "common.cuh"

#include <cstring>

#ifndef FLOWLESS_CUDA_EMULATE
#include <cublas_v2.h>
#endif

#include "flowless/backend/cuda.hpp"

namespace flowless {

bool cuda_available() {
  static const bool available = [] {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();  // clear the sticky-free error state
      return false;
    }
    return n > 0;
  }();
  return available;
}

namespace {

template <class U>
__global__ void fill_kernel(U* p, int64_t n, U value) {
  for (int64_t i = cuda::detail::global_index(); i < n; i += cuda::detail::grid_stride()) p[i] = value;
}

template <class U>
void fill_as(void* p, int64_t n, const void* value) {
  U v;
  std::memcpy(&v, value, sizeof(U));
  auto kernel = fill_kernel<U>;
  FLOWLESS_LAUNCH(kernel, cuda::detail::blocks_for(n), cuda::detail::kThreads, 0, static_cast<U*>(p), n, v);
}

}  // namespace

namespace cuda_detail {

void* allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    FLOWLESS_FAIL("cuda backend: cannot allocate ", bytes, " bytes: ", cudaGetErrorString(e));
  }
  return p;
}

void deallocate(void* p) noexcept {
  if (p) (void)cudaFree(p);
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) FLOWLESS_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void copy_from_host(void* dst, const void* src, size_t bytes) {
  if (bytes) FLOWLESS_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void copy(void* dst, const void* src, size_t bytes) {
  if (bytes) FLOWLESS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
}

void fill(void* p, int64_t n, const void* value, size_t elem_size) {
  FLOWLESS_CHECK(n >= 0, "Cuda::fill: negative count ", n);
  if (n == 0) return;
  bool all_zero = true;
  for (size_t i = 0; i < elem_size; ++i) all_zero = all_zero && static_cast<const unsigned char*>(value)[i] == 0;
  if (all_zero || elem_size == 1) {
    FLOWLESS_CUDA_CHECK(cudaMemsetAsync(p, *static_cast<const unsigned char*>(value), size_t(n) * elem_size, 0));
    return;
  }
  switch (elem_size) {
    case 2: fill_as<uint16_t>(p, n, value); break;
    case 4: fill_as<uint32_t>(p, n, value); break;
    case 8: fill_as<uint64_t>(p, n, value); break;
    default: FLOWLESS_FAIL("Cuda::fill: element size ", elem_size, " is not 1, 2, 4 or 8 bytes");
  }
}

void synchronize() { FLOWLESS_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace cuda_detail

namespace cuda::detail {

namespace {

__global__ void finish_sum_kernel(const double* partial, int count, float* out_f, double* out_d) {
  double acc = 0;
  for (int i = int(threadIdx.x); i < count; i += int(blockDim.x)) acc += partial[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) {
    if (out_f) *out_f = float(acc);
    if (out_d) *out_d = acc;
  }
}

/// out[c] += sum over chunks in order.
__global__ void sum_chunks_kernel(const float* partial, int64_t chunks, int64_t cols, float* out) {
  for (int64_t c = global_index(); c < cols; c += grid_stride()) {
    float acc = 0.f;
    for (int64_t ch = 0; ch < chunks; ++ch) acc += partial[ch * cols + c];
    out[c] += acc;
  }
}

/// partial[ch, c] = sum of x[r, c] over the rows of chunk ch (block (column tile, chunk)).
__global__ void column_partial_kernel(const float* x, int64_t rows, int64_t cols, float* partial) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t ch = blockIdx.y;
  if (c >= cols) return;
  const int64_t r0 = ch * kRowChunk, r1 = imin(rows, r0 + kRowChunk);
  float acc = 0.f;
  for (int64_t r = r0; r < r1; ++r) acc += x[r * cols + c];
  partial[ch * cols + c] = acc;
}

}  // namespace

void finish_sum(const double* partial, int count, float* out_f, double* out_d) {
  FLOWLESS_LAUNCH(finish_sum_kernel, 1, kReduceThreads, 0, partial, count, out_f, out_d);
}

void sum_chunks_into(const float* partial, int64_t chunks, int64_t cols, float* out) {
  if (cols == 0) return;
  FLOWLESS_LAUNCH(sum_chunks_kernel, blocks_for(cols), kThreads, 0, partial, chunks, cols, out);
}

void column_sum_into(const float* x, int64_t rows, int64_t cols, float* out) {
  if (rows == 0 || cols == 0) return;
  const int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  FLOWLESS_CHECK(chunks <= 65535, "column sum: ", rows, " rows exceed the supported ", 65535 * kRowChunk);
  Scratch<float> partial(chunks * cols);
  FLOWLESS_LAUNCH(column_partial_kernel, dim3(unsigned((cols + kThreads - 1) / kThreads), unsigned(chunks)), kThreads,
                  0, x, rows, cols, partial.get());
  sum_chunks_into(partial.get(), chunks, cols, out);
}

#ifdef FLOWLESS_CUDA_EMULATE

// Host stand-in for cublasSgemmStridedBatched with the same argument checks.
void gemm_batched(bool ta, bool tb, int m, int n, int k, float alpha, const float* A, int lda, int64_t sa,
                  const float* B, int ldb, int64_t sb, float beta, float* C, int ldc, int64_t sc, int batch) {
  FLOWLESS_CHECK(m >= 0 && n >= 0 && k >= 0 && batch >= 0, "gemm: negative size");
  FLOWLESS_CHECK(lda >= std::max(1, ta ? k : m) && ldb >= std::max(1, tb ? n : k) && ldc >= std::max(1, m),
                 "cuBLAS would reject these leading dimensions (CUBLAS_STATUS_INVALID_VALUE)");
  for (int bi = 0; bi < batch; ++bi) {
    const float* a = A + bi * sa;
    const float* b = B + bi * sb;
    float* c = C + bi * sc;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        float acc = 0.f;
        for (int l = 0; l < k; ++l) {
          const float av = ta ? a[l + int64_t(i) * lda] : a[i + int64_t(l) * lda];
          const float bv = tb ? b[j + int64_t(l) * ldb] : b[l + int64_t(j) * ldb];
          acc += av * bv;
        }
        float& out = c[i + int64_t(j) * ldc];
        out = beta == 0.f ? alpha * acc : alpha * acc + beta * out;
      }
  }
}

#else

namespace {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

#define FLOWLESS_CUBLAS_CHECK(expr)                                                    \
  do {                                                                                 \
    const cublasStatus_t flowless_st_ = (expr);                                        \
    if (flowless_st_ != CUBLAS_STATUS_SUCCESS)                                         \
      FLOWLESS_FAIL("cuBLAS error in ", #expr, ": ", cublas_status_name(flowless_st_)); \
  } while (0)

/// One handle per host thread, created on first use and kept for the
/// thread's lifetime (destroying it at exit could race the CUDA teardown).
cublasHandle_t cublas_handle() {
  thread_local cublasHandle_t handle = [] {
    cublasHandle_t h = nullptr;
    FLOWLESS_CUBLAS_CHECK(cublasCreate(&h));
    FLOWLESS_CUBLAS_CHECK(cublasSetStream(h, 0));
    return h;
  }();
  return handle;
}

}  // namespace

void gemm_batched(bool ta, bool tb, int m, int n, int k, float alpha, const float* A, int lda, int64_t sa,
                  const float* B, int ldb, int64_t sb, float beta, float* C, int ldc, int64_t sc, int batch) {
  if (m == 0 || n == 0 || batch == 0) return;
  FLOWLESS_CUBLAS_CHECK(cublasSgemmStridedBatched(cublas_handle(), ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                                  tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A, lda, sa, B,
                                                  ldb, sb, &beta, C, ldc, sc, batch));
}

#endif

}  // namespace cuda::detail

}  // namespace flowless
