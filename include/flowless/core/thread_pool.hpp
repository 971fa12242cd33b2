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

  void run(int64_t chunks, std::function<void(int64_t)>& job) {
    std::unique_lock<std::mutex> lk(mu_);
    job_ = &job;
    total_ = chunks;
    next_.store(0);
    done_ = 0;
    error_ = nullptr;
    ++generation_;
    lk.unlock();
    cv_.notify_all();
    work(/*is_caller=*/true);
    lk.lock();
    done_cv_.wait(lk, [&] { return done_ == num_threads_; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  void work(bool is_caller) {
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
    std::lock_guard<std::mutex> g(mu_);
    ++done_;
    if (done_ == num_threads_) done_cv_.notify_all();
    (void)is_caller;
  }

  void start_workers() {
    stopping_ = false;
    for (int i = 1; i < num_threads_; ++i) {
      uint64_t start_gen = generation_;
      workers_.emplace_back([this, start_gen] {
        uint64_t seen = start_gen;
        for (;;) {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
          if (stopping_) return;
          seen = generation_;
          lk.unlock();
          work(false);
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
  int done_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

inline void set_num_threads(int n) { ThreadPool::global().set_num_threads(n); }
inline int num_threads() { return ThreadPool::global().num_threads(); }

template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
  ThreadPool::global().parallel_for(n, grain, std::forward<F>(fn));
}

}  // namespace flowless
