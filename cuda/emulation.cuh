// cuda/emulation.cuh - a host emulation of the small CUDA subset the kernels
// in this folder use, so that their logic is tested on machines without a GPU
// (CI). Compiled only with FLOWLESS_CUDA_EMULATE (common.cuh includes it
// instead of the CUDA headers); never part of the real library.
//
// What it models: a launch runs its blocks one after another; the threads
// of a block are cooperative fibers (ucontext) on the calling thread that
// switch only at __syncthreads, __syncwarp and warp shuffles, so barriers,
// shuffles and __shared__ data behave as on the device. A barrier that not
// every thread of its block (or warp) reaches is reported and aborts instead
// of hanging. `__shared__` variables are function statics (one block at a
// time). Device memory is host memory filled with 0xFF bytes (NaN floats) on
// allocation, so reading memory nobody wrote shows up in the results. Launch
// limits (1024 threads per block, 48 KiB dynamic shared memory, grid y/z <=
// 65535) are checked. Not modelled: races between blocks or between threads
// between two barriers, memory coalescing, speed, streams (everything is
// synchronous).
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
  unsigned x, y, z;
};

namespace flowless_emu {

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "CUDA emulation: %s\n", what);
  std::abort();
}

struct ThreadCtx {
  uint3 tid{0, 0, 0}, bid{0, 0, 0};
  dim3 bdim, gdim;
  int linear = 0, lane = 0, warp = 0;
};
inline ThreadCtx ctx;  // the running fiber's

enum class State { runnable, at_block_barrier, at_warp_barrier, done };

struct Fiber {
  ucontext_t uc;
  ThreadCtx ctx;
  State state = State::runnable;
};

/// The block being run: its fibers, the scheduler context and warp exchange buffers.
struct BlockRun {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  struct Lanes {
    alignas(8) unsigned char v[32][8];
  };
  std::vector<Lanes> warp_buf;
  int current = 0;
  const std::function<void()>* body = nullptr;
};
inline BlockRun* run = nullptr;

inline void fiber_entry() {
  (*run->body)();
  run->fibers[size_t(run->current)].state = State::done;
  // returning resumes uc_link, the scheduler
}

/// Suspends the running fiber until the scheduler releases its barrier.
inline void wait_at(State s) {
  Fiber& f = run->fibers[size_t(run->current)];
  f.state = s;
  swapcontext(&f.uc, &run->scheduler);
  ctx = f.ctx;
}

inline std::vector<std::unique_ptr<char[]>>& stacks() {
  static std::vector<std::unique_ptr<char[]>> s;
  return s;
}
constexpr size_t kStackBytes = 256 * 1024;

/// Runs fiber t until it finishes or waits at a barrier (kept out of line:
/// swapcontext returns twice, which must not clobber the caller's locals).
[[gnu::noinline]] inline void resume(BlockRun& r, int t) {
  r.current = t;
  ctx = r.fibers[size_t(t)].ctx;
  swapcontext(&r.scheduler, &r.fibers[size_t(t)].uc);
}

/// Sets up fiber t of a block (out of line: getcontext returns twice).
[[gnu::noinline]] inline void init_fiber(BlockRun& r, int t, const ThreadCtx& proto) {
  Fiber& f = r.fibers[size_t(t)];
  f.ctx = proto;
  f.ctx.linear = t;
  f.ctx.tid = uint3{unsigned(t % proto.bdim.x), unsigned((t / proto.bdim.x) % proto.bdim.y),
                    unsigned(t / (proto.bdim.x * proto.bdim.y))};
  f.ctx.lane = t % 32;
  f.ctx.warp = t / 32;
  getcontext(&f.uc);
  f.uc.uc_stack.ss_sp = stacks()[size_t(t)].get();
  f.uc.uc_stack.ss_size = kStackBytes;
  f.uc.uc_link = &r.scheduler;
  makecontext(&f.uc, fiber_entry, 0);
}

/// Runs one block of nt fibers to completion.
inline void run_block(int nt, const ThreadCtx& proto, const std::function<void()>& body) {
  BlockRun r;
  r.body = &body;
  r.fibers.resize(size_t(nt));
  r.warp_buf.resize(size_t((nt + 31) / 32));
  while (int(stacks().size()) < nt) stacks().emplace_back(new char[kStackBytes]);
  for (int t = 0; t < nt; ++t) init_fiber(r, t, proto);
  BlockRun* outer = run;
  run = &r;
  for (;;) {
    for (int t = 0; t < nt; ++t)
      if (r.fibers[size_t(t)].state == State::runnable) resume(r, t);
    // Everyone is done or waiting: release complete barriers.
    int done = 0, at_block = 0;
    for (const Fiber& f : r.fibers) {
      done += f.state == State::done;
      at_block += f.state == State::at_block_barrier;
    }
    if (done == nt) break;
    bool released = false;
    if (at_block == nt) {
      for (Fiber& f : r.fibers) f.state = State::runnable;
      released = true;
    }
    for (int w0 = 0; w0 < nt; w0 += 32) {
      const int w1 = std::min(nt, w0 + 32);
      int waiting = 0, finished = 0;
      for (int t = w0; t < w1; ++t) {
        waiting += r.fibers[size_t(t)].state == State::at_warp_barrier;
        finished += r.fibers[size_t(t)].state == State::done;
      }
      if (waiting == w1 - w0) {
        for (int t = w0; t < w1; ++t) r.fibers[size_t(t)].state = State::runnable;
        released = true;
      } else if (waiting > 0 && finished > 0) {
        die("a warp shuffle or __syncwarp that some lanes of the warp never reach (they returned)");
      }
    }
    if (!released) {
      if (at_block > 0)
        die("a __syncthreads that some threads of the block never reach (divergent barrier or early return)");
      die("deadlock: threads wait at barriers that cannot complete");
    }
  }
  run = outer;
}

template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, A&&... args) {
  const uint64_t nt = uint64_t(block.x) * block.y * block.z;
  if (nt == 0 || nt > 1024) die("invalid block size (0 or more than 1024 threads)");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) die("empty grid");
  if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u) die("grid too large");
  if (smem > 48 * 1024) die("more than 48 KiB of dynamic shared memory without cudaFuncSetAttribute");
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  const std::function<void()> body = [&] { std::apply(kernel, params); };
  ThreadCtx proto;
  proto.bdim = block;
  proto.gdim = grid;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        proto.bid = uint3{bx, by, bz};
        run_block(int(nt), proto, body);
      }
}

template <class T>
T shuffle(T v, int src) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffle of a type wider than 8 bytes");
  auto& buf = run->warp_buf[size_t(ctx.warp)];
  wait_at(State::at_warp_barrier);  // everyone has read the previous exchange
  std::memcpy(buf.v[ctx.lane], &v, sizeof(T));
  wait_at(State::at_warp_barrier);
  const int base = ctx.warp * 32;
  if (src < 0 || src >= 32 || base + src >= int(run->fibers.size())) return v;
  T out;
  std::memcpy(&out, buf.v[src], sizeof(T));
  return out;
}

}  // namespace flowless_emu

#define threadIdx (::flowless_emu::ctx.tid)
#define blockIdx (::flowless_emu::ctx.bid)
#define blockDim (::flowless_emu::ctx.bdim)
#define gridDim (::flowless_emu::ctx.gdim)

inline void __syncthreads() { ::flowless_emu::wait_at(::flowless_emu::State::at_block_barrier); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::flowless_emu::wait_at(::flowless_emu::State::at_warp_barrier); }
template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  if (width != 32) ::flowless_emu::die("shuffle width other than 32");
  return ::flowless_emu::shuffle(v, ::flowless_emu::ctx.lane ^ lane_mask);
}
template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  if (width != 32) ::flowless_emu::die("shuffle width other than 32");
  const int src = ::flowless_emu::ctx.lane + int(delta);
  return ::flowless_emu::shuffle(v, src < 32 ? src : ::flowless_emu::ctx.lane);
}
template <class T>
T __shfl_sync(unsigned, T v, int src, int width = 32) {
  if (width != 32) ::flowless_emu::die("shuffle width other than 32");
  return ::flowless_emu::shuffle(v, src & 31);
}

// ---- the runtime API subset ----------------------------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorNoDevice = 100 };
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
typedef struct flowless_emu_stream* cudaStream_t;

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
  }
  return "unknown error";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  if (!*p) return cudaErrorMemoryAllocation;
  std::memset(*p, 0xFF, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, bytes, k);
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
