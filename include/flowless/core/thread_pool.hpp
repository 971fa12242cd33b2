// flowless/core/thread_pool.hpp - the library's one thread pool.
//
// Contract:
//  - The thread count is explicit: set_num_threads(n) (default 1). No OpenMP,
//    no nested parallelism: a parallel_for issued from inside a worker runs
//    serially in that worker.
//  - parallel_for(n, grain, fn) cuts [0, n) into chunks whose boundaries
//    depend only on n and grain, never on the thread count, and calls
//    fn(begin, end) once per chunk. Ops that write disjoint outputs per chunk,
//    or reduce per chunk and combine chunk results in index order, therefore
//    give bitwise identical results for any thread count.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace flowless {

class ThreadPool {
 public:
  static ThreadPool& global() {
    static ThreadPool pool;
    return pool;
  }
  ~ThreadPool() { stop_workers(); }

  int num_threads() const { return num_threads_; }
  void set_num_threads(int n) {
    if (n < 1) n = 1;
    if (n == num_threads_) return;
    stop_workers();
    num_threads_ = n;
    start_workers();
  }

  /// Number of chunks parallel_for uses for (n, grain).
  static int64_t num_chunks(int64_t n, int64_t grain) {
    if (n <= 0) return 0;
    grain = std::max<int64_t>(grain, 1);
    return (n + grain - 1) / grain;
  }

  template <class F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    const int64_t chunks = num_chunks(n, grain);
    if (chunks == 0) return;
    grain = std::max<int64_t>(grain, 1);
    if (chunks == 1 || num_threads_ == 1 || in_worker()) {
      for (int64_t c = 0; c < chunks; ++c) fn(c * grain, std::min(n, (c + 1) * grain));
      return;
    }
    std::function<void(int64_t)> job = [&](int64_t c) { fn(c * grain, std::min(n, (c + 1) * grain)); };
    run(chunks, job);
  }

 private:
  ThreadPool() = default;

  static bool& in_worker() {
    thread_local bool flag = false;
    return flag;
  }

  // Hand-off: the caller publishes a job by bumping generation_; workers spin
  // on it for a short while before sleeping on cv_, and the caller spins on
  // done_ before sleeping on done_cv_. A forward pass issues thousands of
  // parallel_for calls a few tens of microseconds apart, so a sleep/wake per
  // call (a futex round trip and a scheduler wake-up each way) would cost a
  // measurable share of the run; between passes the workers go back to sleep.
  static constexpr auto kSpin = std::chrono::microseconds(200);

  template <class Pred>
  static bool spin_until(Pred&& ready) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    for (;;) {
      for (int i = 0; i < 64; ++i) {
        if (ready()) return true;
        cpu_relax();
      }
      if (std::chrono::steady_clock::now() >= until) return ready();
    }
  }
  static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  void run(int64_t chunks, std::function<void(int64_t)>& job) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &job;
      total_ = chunks;
      next_.store(0, std::memory_order_relaxed);
      done_.store(0, std::memory_order_relaxed);
      error_ = nullptr;
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work();
    const int n = num_threads_;
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == n; })) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return done_.load(std::memory_order_acquire) == n; });
    }
    std::lock_guard<std::mutex> lk(mu_);
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  void work() {
    bool& flag = in_worker();
    bool prev = flag;
    flag = true;
    for (;;) {
      int64_t c = next_.fetch_add(1);
      if (c >= total_) break;
      try {
        (*job_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> g(mu_);
        if (!error_) error_ = std::current_exception();
      }
    }
    flag = prev;
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == num_threads_) {
      std::lock_guard<std::mutex> g(mu_);  // the caller either sees done_ or is waiting
      done_cv_.notify_all();
    }
  }

  void start_workers() {
    stopping_ = false;
    for (int i = 1; i < num_threads_; ++i) {
      uint64_t start_gen = generation_.load();
      workers_.emplace_back([this, start_gen] {
        uint64_t seen = start_gen;
        for (;;) {
          auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
          if (!spin_until([&] { return fresh() || stopping_.load(std::memory_order_relaxed); })) {
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [&] { return stopping_.load() || fresh(); });
          }
          if (stopping_.load()) return;
          seen = generation_.load(std::memory_order_acquire);
          work();
        }
      });
    }
  }
  void stop_workers() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::function<void(int64_t)>* job_ = nullptr;
  int64_t total_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int> done_{0};
  std::atomic<uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::exception_ptr error_;
};

inline void set_num_threads(int n) { ThreadPool::global().set_num_threads(n); }
inline int num_threads() { return ThreadPool::global().num_threads(); }

template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  ThreadPool::global().parallel_for(n, grain, std::forward<F>(fn));
}

}  // namespace flowless
