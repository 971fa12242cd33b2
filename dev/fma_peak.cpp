// The machine's fp32 fused-multiply-add peak: 12 independent FMA chains per
// thread on registers only (no memory traffic), on 1 thread and then on every
// core at once. The ceiling the GEMM and the network are compared with in
// docs/performance.md. AVX-512 (zmm) where the build has it, else AVX2 + FMA.
//
//   g++ -O2 -march=native dev/fma_peak.cpp -o /tmp/fma_peak -lpthread && /tmp/fma_peak
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
using V = __m512;
static V splat(float x) { return _mm512_set1_ps(x); }
static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static float first(V v) { return _mm512_cvtss_f32(v); }
static const char* kIsa = "AVX-512 (zmm)";
#elif defined(__AVX2__) && defined(__FMA__)
using V = __m256;
static V splat(float x) { return _mm256_set1_ps(x); }
static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
static float first(V v) { return _mm256_cvtss_f32(v); }
static const char* kIsa = "AVX2 + FMA (ymm)";
#else
#error "needs AVX2 + FMA or AVX-512 (compile with -march=native on such a CPU)"
#endif

static double gflops(long iters) {
  V acc[12];
  const V x = splat(1.0000001f), y = splat(0.9999999f);
  for (int i = 0; i < 12; ++i) acc[i] = splat(float(i));
  const auto t0 = std::chrono::steady_clock::now();
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) acc[i] = fma(acc[i], x, y);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += first(acc[i]);
  if (sink == 12345.f) std::puts("");  // keeps the chains alive
  return double(iters) * 12 * (sizeof(V) / sizeof(float)) * 2 / s / 1e9;
}

int main() {
  const long iters = 400000000L / long(sizeof(V) / 32);
  const unsigned n = std::max(1u, std::thread::hardware_concurrency());
  std::printf("%s, 1 thread: %.1f GFLOP/s\n", kIsa, gflops(iters));
  std::vector<double> r(n);
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < n; ++i) ts.emplace_back([&r, i, iters] { r[i] = gflops(iters); });
  double sum = 0;
  for (unsigned i = 0; i < n; ++i) {
    ts[i].join();
    sum += r[i];
  }
  std::printf("%s, %u threads at once: %.1f GFLOP/s in all\n", kIsa, n, sum);
}
