// flowless/backend/cuda.hpp - the CUDA backend policy.
//
// The same vocabulary as struct Cpu (flowless/backend/cpu.hpp):
//   static constexpr const char* name = "cuda";
//   static constexpr bool is_host = false;       // the host must not dereference its pointers
//   static void* allocate(size_t bytes);         // cudaMalloc (device memory, never managed), throws Error
//   static void deallocate(void* p) noexcept;    // cudaFree
//   static void copy_to_host(void* dst, const void* src, size_t bytes);    // device -> host, waits
//   static void copy_from_host(void* dst, const void* src, size_t bytes);  // host -> device
//   static void copy(void* dst, const void* src, size_t bytes);            // device -> device
//   template <class T> static void fill(T* p, int64_t n, T value);         // T of 1, 2, 4 or 8 bytes
//   static void synchronize();                   // waits for every queued kernel and copy
// parallel_for does not exist on the device: a host loop cannot touch device
// memory. Device ops launch kernels instead (cuda/kernels.cuh); instantiating
// Cuda::parallel_for is a compile-time error that says so.
// Work is queued on CUDA's legacy default stream, so kernels and copies run in
// the order they were issued; copy_to_host returns once the data is on the host.
//
// bool cuda_available(): true when the CUDA library was built in and a GPU is
// usable (cudaGetDeviceCount succeeds with at least one device).
//
// Built without CUDA (FLOWLESS_WITH_CUDA undefined, which the flowless_cuda
// target defines for its users), this header still declares Cuda and
// cuda_available(), so CPU-only builds keep one code path: cuda_available()
// is false and every Cuda function throws
//   flowless::Error("Cuda::<function> has no GPU implementation: flowless was built without CUDA")
// (deallocate, which can only ever see null, does nothing). These stand-ins
// live in an inline namespace of their own so they can never clash with the
// real definitions at link time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "flowless/core/error.hpp"

namespace flowless {

namespace detail {
template <class>
inline constexpr bool cuda_dependent_false = false;
}  // namespace detail

#ifdef FLOWLESS_WITH_CUDA

/// True when a CUDA device is present and usable.
bool cuda_available();

namespace cuda_detail {
void* allocate(size_t bytes);
void deallocate(void* p) noexcept;
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_from_host(void* dst, const void* src, size_t bytes);
void copy(void* dst, const void* src, size_t bytes);
/// Fills n elements of elem_size bytes (1, 2, 4 or 8) at p with the bytes at value.
void fill(void* p, int64_t n, const void* value, size_t elem_size);
void synchronize();
}  // namespace cuda_detail

struct Cuda {
  static constexpr const char* name = "cuda";
  static constexpr bool is_host = false;

  static void* allocate(size_t bytes) { return cuda_detail::allocate(bytes); }
  static void deallocate(void* p) noexcept { cuda_detail::deallocate(p); }
  static void copy_to_host(void* dst, const void* src, size_t bytes) { cuda_detail::copy_to_host(dst, src, bytes); }
  static void copy_from_host(void* dst, const void* src, size_t bytes) { cuda_detail::copy_from_host(dst, src, bytes); }
  static void copy(void* dst, const void* src, size_t bytes) { cuda_detail::copy(dst, src, bytes); }
  template <class T>
  static void fill(T* p, int64_t n, T value) {
    static_assert(std::is_trivially_copyable_v<T> && (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8),
                  "Cuda::fill: element type must be trivially copyable with 1, 2, 4 or 8 bytes");
    cuda_detail::fill(p, n, &value, sizeof(T));
  }
  template <class F>
  static void parallel_for(int64_t, int64_t, F&&) {
    static_assert(detail::cuda_dependent_false<F>,
                  "Cuda::parallel_for: a host loop cannot run on device memory; device ops launch kernels "
                  "(cuda/kernels.cuh)");
  }
  static void synchronize() { cuda_detail::synchronize(); }
};

#else  // built without CUDA: MLX's no_gpu idea

inline namespace no_gpu {

inline bool cuda_available() { return false; }

struct Cuda {
  static constexpr const char* name = "cuda";
  static constexpr bool is_host = false;

  [[noreturn]] static void unavailable(const char* fn) {
    FLOWLESS_FAIL("Cuda::", fn, " has no GPU implementation: flowless was built without CUDA");
  }
  static void* allocate(size_t) { unavailable("allocate"); }
  static void deallocate(void*) noexcept {}
  static void copy_to_host(void*, const void*, size_t) { unavailable("copy_to_host"); }
  static void copy_from_host(void*, const void*, size_t) { unavailable("copy_from_host"); }
  static void copy(void*, const void*, size_t) { unavailable("copy"); }
  template <class T>
  static void fill(T*, int64_t, T) {
    unavailable("fill");
  }
  template <class F>
  static void parallel_for(int64_t, int64_t, F&&) {
    static_assert(detail::cuda_dependent_false<F>,
                  "Cuda::parallel_for: a host loop cannot run on device memory; device ops launch kernels "
                  "(cuda/kernels.cuh)");
  }
  static void synchronize() { unavailable("synchronize"); }
};

}  // namespace no_gpu

#endif  // FLOWLESS_WITH_CUDA

}  // namespace flowless
