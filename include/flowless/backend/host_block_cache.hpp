// flowless/backend/host_block_cache.hpp - the CPU backend's allocator: large
// blocks are kept after they are freed and handed out again.
//
// A forward pass allocates the same activation sizes on every call (the MLP's
// hidden layer alone is 18 MB at the THUMOS size). Blocks that large come
// from mmap and go back to the kernel when freed, so every pass paid a page
// fault and a zero fill per 4 KiB of activations (about 13,000 faults per
// forward). HostBlockCache keeps freed blocks of at least kMinCached bytes,
// by size class, and returns them for the next request of the same class.
//
//   void* p = HostBlockCache::global().allocate(bytes);   // 64-byte aligned
//   HostBlockCache::global().deallocate(p);
//   HostBlockCache::global().release();                   // frees every cached block
//   HostBlockCache::global().set_limit(bytes);            // 0 disables caching
//
// Size classes: a request of n >= kMinCached bytes is rounded up to a multiple
// of 1/8 of the largest power of two <= n (at most 12.5 % waste), so videos of
// nearby lengths share classes. Bound: at most limit() bytes stay cached
// (default 256 MiB, or FLOWLESS_CPU_CACHE_MB in the environment at first use);
// a block freed beyond that goes back to the system. Peak memory is the live
// peak plus at most that bound. Thread-safe (one mutex, taken only for blocks
// >= kMinCached). Every block carries a 64-byte header with its class.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless {

class HostBlockCache {
 public:
  static constexpr size_t kMinCached = size_t(1) << 20;
  static constexpr size_t kHeader = 64;

  /// The process-wide cache. Never destroyed: tensors held in other static
  /// objects may be freed after it would have been (the OS reclaims the rest).
  static HostBlockCache& global() {
    static HostBlockCache* cache = new HostBlockCache;
    return *cache;
  }
  ~HostBlockCache() { release(); }

  /// The size class of a request of n bytes (n rounded to 64 below kMinCached).
  static size_t size_class(size_t n) {
    if (n == 0) n = 64;
    n = (n + 63) / 64 * 64;
    if (n < kMinCached) return n;
    size_t top = size_t(1) << (63 - __builtin_clzll(static_cast<unsigned long long>(n)));
    const size_t step = top / 8;
    return (n + step - 1) / step * step;
  }

  void* allocate(size_t bytes) {
    const size_t cls = size_class(bytes);
    if (cls >= kMinCached) {
      std::lock_guard<std::mutex> g(mu_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        ++hits_;
        return p;
      }
      ++misses_;
    }
    char* base = static_cast<char*>(std::aligned_alloc(64, cls + kHeader));
    FLOWLESS_CHECK(base != nullptr, "cpu backend: cannot allocate ", bytes, " bytes");
    *reinterpret_cast<size_t*>(base) = cls;
    return base + kHeader;
  }

  void deallocate(void* p) noexcept {
    if (!p) return;
    char* base = static_cast<char*>(p) - kHeader;
    const size_t cls = *reinterpret_cast<size_t*>(base);
    if (cls >= kMinCached) {
      std::lock_guard<std::mutex> g(mu_);
      if (cached_ + cls <= limit_) {
        try {
          free_[cls].push_back(p);
          cached_ += cls;
          return;
        } catch (...) {  // no memory for the bookkeeping: free the block instead
        }
      }
    }
    std::free(base);
  }

  /// Frees every cached block (live blocks are untouched).
  void release() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [cls, v] : free_)
      for (void* p : v) std::free(static_cast<char*>(p) - kHeader);
    free_.clear();
    cached_ = 0;
  }

  size_t limit() const {
    std::lock_guard<std::mutex> g(mu_);
    return limit_;
  }
  /// At most `bytes` stay cached from now on (blocks above it are freed now).
  void set_limit(size_t bytes) {
    {
      std::lock_guard<std::mutex> g(mu_);
      limit_ = bytes;
      if (cached_ <= limit_) return;
    }
    release();
  }
  size_t cached_bytes() const {
    std::lock_guard<std::mutex> g(mu_);
    return cached_;
  }
  /// Requests of cacheable size served from the cache, and those that were not.
  uint64_t hits() const {
    std::lock_guard<std::mutex> g(mu_);
    return hits_;
  }
  uint64_t misses() const {
    std::lock_guard<std::mutex> g(mu_);
    return misses_;
  }

 private:
  HostBlockCache() : limit_(default_limit()) {}
  static size_t default_limit() {
    const char* e = std::getenv("FLOWLESS_CPU_CACHE_MB");
    if (!e || !*e) return size_t(256) << 20;
    char* end = nullptr;
    const long long mb = std::strtoll(e, &end, 10);
    FLOWLESS_CHECK(end && *end == '\0' && mb >= 0, "FLOWLESS_CPU_CACHE_MB must be a whole number of MiB >= 0, got '",
                   e, "'");
    return static_cast<size_t>(mb) << 20;
  }

  mutable std::mutex mu_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
  size_t limit_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace flowless
