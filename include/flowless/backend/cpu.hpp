// flowless/backend/cpu.hpp - the CPU backend policy.
//
// A backend is a stateless struct with a fixed vocabulary, passed to tensors
// and ops as a template parameter (the Eigen Tensor "device" idea):
//   static constexpr const char* name;
//   static constexpr bool is_host;              // may the host dereference its pointers?
//   static void* allocate(size_t bytes);        // 64-byte aligned, throws Error on failure
//   static void deallocate(void* p) noexcept;
//   static void copy_to_host(void* dst, const void* src, size_t bytes);
//   static void copy_from_host(void* dst, const void* src, size_t bytes);
//   static void copy(void* dst, const void* src, size_t bytes);   // within the device
//   template <class T> static void fill(T* p, int64_t n, T value);
//   template <class F> static void parallel_for(int64_t n, int64_t grain, F&& fn);  // fn(begin, end)
//   static void synchronize();
// The CUDA backend (flowless/backend/cuda.hpp) declares the same vocabulary.
#pragma once

#include <cstdlib>
#include <cstring>

#include "flowless/backend/host_block_cache.hpp"
#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"

namespace flowless {

struct Cpu {
  static constexpr const char* name = "cpu";
  static constexpr bool is_host = true;

  // Through HostBlockCache (backend/host_block_cache.hpp): blocks of 1 MiB and
  // more are reused after they are freed instead of going back to the kernel.
  static void* allocate(size_t bytes) { return HostBlockCache::global().allocate(bytes); }
  static void deallocate(void* p) noexcept { HostBlockCache::global().deallocate(p); }
  static void copy_to_host(void* dst, const void* src, size_t bytes) { if (bytes) std::memcpy(dst, src, bytes); }
  static void copy_from_host(void* dst, const void* src, size_t bytes) { if (bytes) std::memcpy(dst, src, bytes); }
  static void copy(void* dst, const void* src, size_t bytes) { if (bytes) std::memcpy(dst, src, bytes); }
  template <class T>
  static void fill(T* p, int64_t n, T value) {
    for (int64_t i = 0; i < n; ++i) p[i] = value;
  }
  template <class F>
  static void parallel_for(int64_t n, int64_t grain, F&& fn) {
    ThreadPool::global().parallel_for(n, grain, std::forward<F>(fn));
  }
  static void synchronize() {}
};

}  // namespace flowless
