// flowless/backend/host_block_cache.hpp - the CPU backend's allocator: large
// blocks are kept after they are freed and handed out again.
//
// A forward pass allocates the same activation sizes on every call (the MLP's
// hidden layer alone is 18 MB at the THUMOS size), and a training step the same
// activations and gradients again. Blocks that large come from mmap and go back
// to the kernel when freed, so every pass paid a page fault and a zero fill per
// 4 KiB (about 13,000 faults per forward; about 34,000 per training step at
// T = 2304 even with 256 MiB cached). HostBlockCache keeps freed blocks of at
// least kMinCached bytes, by size class, and returns them for the next request
// of the same class.
//
//   void* p = HostBlockCache::global().allocate(bytes);   // 64-byte aligned
//   HostBlockCache::global().deallocate(p);
//   HostBlockCache::global().release();                   // frees every cached block
//   HostBlockCache::global().set_limit(bytes);            // 0 disables caching
//
// Size classes: a request of n >= kMinCached bytes is rounded up to a multiple
// of 1/8 of the largest power of two <= n (at most 12.5 % waste), so videos of
// nearby lengths share classes.
//
// Bound: with live = the bytes of cacheable blocks handed out now and peak =
// the most that were ever live at once (since the last release()), the cache
// holds at most (peak - live) + limit() bytes. So the memory of large blocks,
// live + cached, never exceeds peak + limit(): a training step or a forward
// that runs again finds its blocks cached, and the process holds no more than
// its own high-water mark plus limit() while doing so (the old bound was live +
// limit(), which at T = 2304 made every training step re-fault about 130 MiB).
// A miss that would break the bound frees the least recently cached blocks.
// limit() defaults to 256 MiB, or FLOWLESS_CPU_CACHE_MB in the environment at
// first use; 0 disables caching altogether. release() frees the cached blocks
// and restarts the high-water mark from what is live, e.g. after one
// exceptionally long video in a host application. Thread-safe (one mutex,
// taken only for blocks >= kMinCached). Every block carries a 64-byte header
// with its class.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
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
      live_ += cls;
      peak_ = std::max(peak_, live_);
      auto it = free_.find(cls);
      if (it != free_.end()) {  // entries are never empty
        void* p = it->second.back().first;  // the most recently cached block of the class
        it->second.pop_back();
        if (it->second.empty()) free_.erase(it);
        cached_ -= cls;
        ++hits_;
        return p;
      }
      ++misses_;
      trim_locked();  // the new block counts against the bound: make room
    }
    char* base = static_cast<char*>(std::aligned_alloc(64, cls + kHeader));
    if (base == nullptr && cls >= kMinCached) {
      std::lock_guard<std::mutex> g(mu_);
      live_ -= cls;
    }
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
      live_ -= cls;
      if (cached_ + cls <= bound_locked()) {  // never with limit 0: the bound is 0 then
        try {
          free_[cls].emplace_back(p, clock_++);
          cached_ += cls;
          return;
        } catch (...) {  // no memory for the bookkeeping: free the block instead (and keep entries non-empty)
          auto it = free_.find(cls);
          if (it != free_.end() && it->second.empty()) free_.erase(it);
        }
      }
    }
    std::free(base);
  }

  /// Frees every cached block (live blocks are untouched) and restarts the
  /// high-water mark from the bytes live now.
  void release() {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [cls, v] : free_)
      for (auto& e : v) std::free(static_cast<char*>(e.first) - kHeader);
    free_.clear();
    cached_ = 0;
    peak_ = live_;
  }

  size_t limit() const { return locked(limit_); }
  /// The cache's allowance above the high-water mark (see the bound above);
  /// 0 frees what is cached and keeps nothing from now on.
  void set_limit(size_t bytes) {
    std::lock_guard<std::mutex> g(mu_);
    limit_ = bytes;
    trim_locked();
  }
  size_t cached_bytes() const { return locked(cached_); }
  /// Bytes of cacheable blocks handed out now, and the most ever at once.
  size_t live_bytes() const { return locked(live_); }
  size_t peak_bytes() const { return locked(peak_); }
  /// Requests of cacheable size served from the cache, and those that were not.
  uint64_t hits() const { return locked(hits_); }
  uint64_t misses() const { return locked(misses_); }

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

  template <class V>
  V locked(const V& v) const {
    std::lock_guard<std::mutex> g(mu_);
    return v;
  }
  /// What may stay cached now: (peak - live) + limit; nothing when limit is 0.
  size_t bound_locked() const { return limit_ == 0 ? 0 : peak_ - live_ + limit_; }
  /// Frees the least recently cached blocks until cached <= bound.
  void trim_locked() {
    const size_t bound = bound_locked();
    while (cached_ > bound) {
      auto oldest = free_.begin();  // each class's blocks are in caching order: front() is its oldest
      for (auto it = free_.begin(); it != free_.end(); ++it)
        if (it->second.front().second < oldest->second.front().second) oldest = it;
      std::free(static_cast<char*>(oldest->second.front().first) - kHeader);
      oldest->second.erase(oldest->second.begin());
      cached_ -= oldest->first;
      if (oldest->second.empty()) free_.erase(oldest);
    }
  }

  mutable std::mutex mu_;
  std::map<size_t, std::vector<std::pair<void*, uint64_t>>> free_;  // by class: (block, when cached), oldest first
  size_t cached_ = 0, live_ = 0, peak_ = 0;
  uint64_t clock_ = 0;  // counts cachings
  size_t limit_;
  uint64_t hits_ = 0, misses_ = 0;
};

}  // namespace flowless
