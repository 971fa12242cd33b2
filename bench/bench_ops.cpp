// bench/bench_ops.cpp - Google Benchmark micro-benchmarks of the hot ops at
// the THUMOS ActionFormer sizes (C = 512, T = 2304, 4 heads, window 19).
//
// Threads: FLOWLESS_THREADS (default 1) -> flowless::set_num_threads. Every
// benchmark uses wall-clock time (UseRealTime), so GFLOP/s counts all threads.
// Counters:
//   GFLOP/s  (benchmark::Counter, kIsIterationInvariantRate): the op's
//            arithmetic FLOPs per call / wall time. For GEMM-shaped ops
//            (conv1d, GEMM, attention) 2 FLOPs per multiply-add; for the
//            memory-bound ops (layer norm, GELU, max-pool, focal loss) a
//            nominal count given next to each benchmark - compare those by
//            bytes_per_second instead.
// The GEMM baseline of the same shape as conv1d (M = 2304, K = 1536, N = 512)
// runs in the same binary: BM_GemmEigen is one plain single-threaded Eigen
// product, BM_GemmCpu is flowless::cpu::gemm (the packed AVX-512 kernel, Eigen
// tiles elsewhere), BM_GemmCpuBf16 the same call in bfloat16.
// BM_ParallelForHandoff measures the thread pool's own overhead per call.
// BM_SGPBlockForward / BM_DepthwiseConvWide: TriDet's SGP block (THUMOS size);
// BM_TridentDecodeAll / BM_TridentDecodeTop2000: its head's decoding.
// BM_AssignCenterSampling / BM_AssignSimOTA: label assignment of one video.
// BM_Conv1dWeightGrad counts the direct product's FLOPs (2 rows Cout Cin K)
// also where Winograd F(3,2) does a third fewer: its GFLOP/s is nominal.
//
// Usage: FLOWLESS_THREADS=2 flowless_bench_ops [--benchmark_filter=Conv]

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "flowless/backend/cpu_gemm.hpp"
#include "flowless/core/random.hpp"
#include "flowless/infer/nms.hpp"
#include "flowless/infer/trident.hpp"
#include "flowless/models/sgp_block.hpp"
#include "flowless/ops/activations.hpp"
#include "flowless/ops/conv1d.hpp"
#include "flowless/ops/layer_norm.hpp"
#include "flowless/ops/local_attention.hpp"
#include "flowless/train/label_assignment.hpp"
#include "flowless/train/simota.hpp"
#include "flowless/ops/losses.hpp"
#include "flowless/ops/pooling.hpp"

using namespace flowless;

namespace {

constexpr int64_t kT = 2304, kC = 512, kHeads = 4, kWindow = 19;

Tensor<float> randn(const Shape& s, uint64_t seed, double scale = 1.0) {
  Rng rng(seed);
  Tensor<float> t(s);
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(rng.normal() * scale);
  return t;
}

void set_flops(benchmark::State& st, double flops_per_call) {
  st.counters["GFLOP/s"] = benchmark::Counter(flops_per_call / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}
void set_bytes(benchmark::State& st, double bytes_per_call) {
  st.SetBytesProcessed(int64_t(bytes_per_call * double(st.iterations())));
}

/// Runs the recorded op's own backward closure (not the whole graph walk):
/// out.grad = seed, then backward_fn(out). Input gradients accumulate.
void run_backward(const Var<float>& y, const Tensor<float>& seed) {
  Node<float>& n = *y.node();
  n.grad = seed;
  n.backward_fn(n);
}

// ---- conv1d (Cin -> 512, k=3, pad 1, T steps): the heads' and embedding's conv ----
// T = 2304 is the first pyramid level at the THUMOS size; the heads run the
// same conv at every level (1152 ... 72 steps), where threads have less to share.
void BM_Conv1dForward(benchmark::State& st) {
  const int64_t Cin = st.range(0), Tn = st.range(1), K = 3;
  Var<float> x(randn(Shape{1, Tn, Cin}, 1));
  Var<float> w(randn(Shape{kC, Cin, K}, 2, 0.02));
  Conv1dOptions o;
  o.padding = 1;
  o.lengths = {int(Tn)};
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(conv1d(x, w, Var<float>(), o).value().data());
  set_flops(st, 2.0 * Tn * kC * Cin * K);
}
BENCHMARK(BM_Conv1dForward)
    ->Args({512, kT})
    ->Args({2048, kT})
    ->Args({512, kT / 4})
    ->Args({512, kT / 32})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- a head conv (512 -> 512, k=3) over the six pyramid levels (2304 ... 72 steps) ----
// as the detector's shared heads run it: one weight, every level, inside one
// ConvWeightCacheScope (its Winograd transform and packing made once per pass).
void BM_HeadConvAllLevels(benchmark::State& st) {
  std::vector<Var<float>> xs;
  std::vector<Conv1dOptions> opts;
  int64_t steps = 0;
  for (int64_t Tl = kT; Tl >= kT / 32; Tl /= 2) {
    xs.emplace_back(randn(Shape{1, Tl, kC}, uint64_t(20 + Tl)));
    opts.emplace_back();
    opts.back().padding = 1;
    opts.back().lengths.assign(1, int(Tl));
    steps += Tl;
  }
  Var<float> w(randn(Shape{kC, kC, 3}, 2, 0.02));
  NoGradGuard ng;
  for (auto _ : st) {
    ConvWeightCacheScope cache;
    for (size_t l = 0; l < xs.size(); ++l)
      benchmark::DoNotOptimize(conv1d(xs[l], w, Var<float>(), opts[l]).value().data());
  }
  set_flops(st, 2.0 * steps * kC * kC * 3);
}
BENCHMARK(BM_HeadConvAllLevels)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same in bfloat16 (MatmulPrecision::bf16; fp32 where the CPU lacks AVX-512 BF16).
void BM_HeadConvAllLevelsBf16(benchmark::State& st) {
  cpu::MatmulPrecisionScope scope(cpu::MatmulPrecision::bf16);
  BM_HeadConvAllLevels(st);
  st.SetLabel(cpu::matmul_bf16_available() ? "bf16" : "fp32 (no AVX-512 BF16)");
}
BENCHMARK(BM_HeadConvAllLevelsBf16)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- multiclass Soft-NMS as the THUMOS config runs it (max 200 per class) ----
// 2000 candidates per class over a 2304-snippet video, 20 classes, the
// overlapping, weakly separated scores of an untrained or uncertain head.
void BM_SoftNmsMulticlass(benchmark::State& st) {
  const int per_class = int(st.range(0)), classes = 20;
  Rng rng(31);
  infer::Segments in;
  for (int c = 0; c < classes; ++c)
    for (int i = 0; i < per_class; ++i) {
      const float a = float(rng.uniform(0.0, 2300.0));
      in.start.push_back(a);
      in.end.push_back(a + float(rng.uniform(2.0, 60.0)));
      in.score.push_back(float(rng.uniform(0.002, 0.05)));
      in.label.push_back(c);
    }
  infer::NmsConfig cfg;  // soft, sigma 0.5, min_score 0.001, max_seg_num 200, multiclass
  for (auto _ : st) benchmark::DoNotOptimize(infer::batched_nms(in, cfg).score.data());
}
BENCHMARK(BM_SoftNmsMulticlass)->Arg(500)->Arg(2000)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Conv1dBackward(benchmark::State& st) {
  const int64_t Cin = st.range(0), K = 3;
  Var<float> x = Var<float>::parameter(randn(Shape{1, kT, Cin}, 1));
  Var<float> w = Var<float>::parameter(randn(Shape{kC, Cin, K}, 2, 0.02));
  Conv1dOptions o;
  o.padding = 1;
  o.lengths = {int(kT)};
  Var<float> y = conv1d(x, w, Var<float>(), o);
  Tensor<float> seed = randn(y.shape(), 3);
  for (auto _ : st) run_backward(y, seed);
  set_flops(st, 2.0 * 2.0 * kT * kC * Cin * K);  // dx and dW
}
BENCHMARK(BM_Conv1dBackward)->Arg(512)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- a conv's weight gradient as a training step needs it (batch 2, one masked) ----
// Cin -> 512, k = 3 (Winograd F(3,2) for these widths) or k = 1 (the transformer's
// projections and MLP), over one level of T steps or over the six pyramid levels
// (2304 ... 72) of a shared head conv; the second video is 80 % as long. Only the
// weight needs a gradient (dW alone; BM_Conv1dBackward times dX and dW).
// Args: Cin, K, all levels (0 = T = 2304 only).
void BM_Conv1dWeightGrad(benchmark::State& st) {
  const int64_t Cin = st.range(0), K = st.range(1);
  const bool all_levels = st.range(2) != 0;
  Var<float> w = Var<float>::parameter(randn(Shape{kC, Cin, K}, 2, 0.02));
  std::vector<Var<float>> ys;
  std::vector<Tensor<float>> seeds;
  double flops = 0;
  for (int64_t Tl = kT; Tl >= (all_levels ? kT / 32 : kT); Tl /= 2) {
    Var<float> x(randn(Shape{2, Tl, Cin}, uint64_t(40 + Tl)));
    Conv1dOptions o;
    o.padding = K / 2;
    o.lengths = {int(Tl), int(Tl - Tl / 5)};
    ys.push_back(conv1d(x, w, Var<float>(), o));
    seeds.push_back(randn(ys.back().shape(), uint64_t(60 + Tl)));
    flops += 2.0 * (Tl + (Tl - Tl / 5)) * kC * Cin * K;
  }
  for (auto _ : st)
    for (size_t l = 0; l < ys.size(); ++l) run_backward(ys[l], seeds[l]);
  set_flops(st, flops);
}
BENCHMARK(BM_Conv1dWeightGrad)
    ->ArgNames({"Cin", "K", "levels"})
    ->Args({512, 3, 1})
    ->Args({2048, 3, 0})
    ->Args({512, 1, 1})
    ->Args({2048, 1, 1})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

// ---- the GEMM baseline of the conv's shape: (2304 x 1536) * (1536 x 512) ----
void BM_GemmEigen(benchmark::State& st) {
  const int64_t M = kT, K = 3 * st.range(0), N = kC;
  Tensor<float> A = randn(Shape{M, K}, 4), B = randn(Shape{K, N}, 5, 0.02), C(Shape{M, N});
  for (auto _ : st) {
    cpu::gemm_serial<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_GemmEigen)->Arg(512)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_GemmCpu(benchmark::State& st) {
  const int64_t M = kT, K = 3 * st.range(0), N = kC;
  Tensor<float> A = randn(Shape{M, K}, 4), B = randn(Shape{K, N}, 5, 0.02), C(Shape{M, N});
  for (auto _ : st) {
    cpu::gemm<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(st, 2.0 * M * N * K);
}
BENCHMARK(BM_GemmCpu)->Arg(512)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

// The same product in bfloat16 (cpu::MatmulPrecision::bf16: bf16 operands,
// fp32 accumulation; fp32 where the build has no AVX-512 BF16). GFLOP/s counts
// the same 2 M N K, so it compares directly with BM_GemmCpu.
void BM_GemmCpuBf16(benchmark::State& st) {
  const int64_t M = kT, K = 3 * st.range(0), N = kC;
  Tensor<float> A = randn(Shape{M, K}, 4), B = randn(Shape{K, N}, 5, 0.02), C(Shape{M, N});
  cpu::MatmulPrecisionScope bf16(cpu::MatmulPrecision::bf16);
  for (auto _ : st) {
    cpu::gemm<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
    benchmark::DoNotOptimize(C.data());
  }
  set_flops(st, 2.0 * M * N * K);
  st.SetLabel(cpu::matmul_bf16_available() ? "bf16" : "fp32 (no AVX-512 BF16 in this build)");
}
BENCHMARK(BM_GemmCpuBf16)->Arg(512)->Arg(2048)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- 1x1 conv (the q/k/v/proj projections and the MLP): a plain GEMM ----
void BM_Conv1x1Forward(benchmark::State& st) {
  const int64_t Cin = st.range(0), Cout = st.range(1);
  Var<float> x(randn(Shape{1, kT, Cin}, 1));
  Var<float> w(randn(Shape{Cout, Cin, 1}, 2, 0.02));
  Var<float> b(randn(Shape{Cout}, 3));
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(conv1d(x, w, b, Conv1dOptions{}).value().data());
  set_flops(st, 2.0 * kT * Cout * Cin);
}
BENCHMARK(BM_Conv1x1Forward)->Args({512, 2048})->Args({2048, 512})->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- local attention (C=512, 4 heads, window 19, T=2304) ----
// forward: q.k (2 W C per query) + p.v (2 W C) = 4 T W C
// backward: dP = dy.v, dq, dk, dv: 8 T W C
void BM_LocalAttentionForward(benchmark::State& st) {
  Var<float> q(randn(Shape{1, kT, kC}, 6)), k(randn(Shape{1, kT, kC}, 7)), v(randn(Shape{1, kT, kC}, 8));
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(local_attention(q, k, v, kHeads, kWindow, {int(kT - 100)}).value().data());
  set_flops(st, 4.0 * kT * kWindow * kC);
}
BENCHMARK(BM_LocalAttentionForward)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_LocalAttentionForwardRecord(benchmark::State& st) {  // training forward (keeps probabilities)
  Var<float> q = Var<float>::parameter(randn(Shape{1, kT, kC}, 6));
  Var<float> k = Var<float>::parameter(randn(Shape{1, kT, kC}, 7));
  Var<float> v = Var<float>::parameter(randn(Shape{1, kT, kC}, 8));
  for (auto _ : st) benchmark::DoNotOptimize(local_attention(q, k, v, kHeads, kWindow, {int(kT - 100)}).value().data());
  set_flops(st, 4.0 * kT * kWindow * kC);
}
BENCHMARK(BM_LocalAttentionForwardRecord)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_LocalAttentionBackward(benchmark::State& st) {
  Var<float> q = Var<float>::parameter(randn(Shape{1, kT, kC}, 6));
  Var<float> k = Var<float>::parameter(randn(Shape{1, kT, kC}, 7));
  Var<float> v = Var<float>::parameter(randn(Shape{1, kT, kC}, 8));
  Var<float> y = local_attention(q, k, v, kHeads, kWindow, {int(kT - 100)});
  Tensor<float> seed = randn(y.shape(), 9);
  for (auto _ : st) run_backward(y, seed);
  set_flops(st, 8.0 * kT * kWindow * kC);
}
BENCHMARK(BM_LocalAttentionBackward)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- layer norm over C=512 (nominal 8 FLOPs per element) ----
void BM_LayerNormForward(benchmark::State& st) {
  Var<float> x(randn(Shape{1, kT, kC}, 10)), g(randn(Shape{kC}, 11)), b(randn(Shape{kC}, 12));
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(layer_norm(x, g, b).value().data());
  set_flops(st, 8.0 * kT * kC);
  set_bytes(st, 2.0 * 4 * kT * kC);
}
BENCHMARK(BM_LayerNormForward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_LayerNormBackward(benchmark::State& st) {
  Var<float> x = Var<float>::parameter(randn(Shape{1, kT, kC}, 10));
  Var<float> g = Var<float>::parameter(randn(Shape{kC}, 11)), b = Var<float>::parameter(randn(Shape{kC}, 12));
  Var<float> y = layer_norm(x, g, b);
  Tensor<float> seed = randn(y.shape(), 13);
  for (auto _ : st) run_backward(y, seed);
  set_flops(st, 12.0 * kT * kC);
  set_bytes(st, 4.0 * 4 * kT * kC);  // read x, dy, dx; write dx
}
BENCHMARK(BM_LayerNormBackward)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- depthwise strided conv (the attention's q/k/v conv at a branch level): k3, s2, groups C ----
void BM_DepthwiseConvStride2(benchmark::State& st) {
  Var<float> x(randn(Shape{1, kT, kC}, 14));
  Var<float> w(randn(Shape{kC, 1, 3}, 15, 0.5));
  Conv1dOptions o;
  o.stride = 2;
  o.padding = 1;
  o.groups = int(kC);
  o.lengths = {int(kT)};
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(conv1d(x, w, Var<float>(), o).value().data());
  set_flops(st, 2.0 * (kT / 2) * kC * 3);
  set_bytes(st, 4.0 * (kT + kT / 2) * kC);
}
BENCHMARK(BM_DepthwiseConvStride2)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_DepthwiseConvStride2Backward(benchmark::State& st) {
  Var<float> x = Var<float>::parameter(randn(Shape{1, kT, kC}, 14));
  Var<float> w = Var<float>::parameter(randn(Shape{kC, 1, 3}, 15, 0.5));
  Conv1dOptions o;
  o.stride = 2;
  o.padding = 1;
  o.groups = int(kC);
  o.lengths = {int(kT)};
  Var<float> y = conv1d(x, w, Var<float>(), o);
  Tensor<float> seed = randn(y.shape(), 16);
  for (auto _ : st) run_backward(y, seed);
  set_flops(st, 2.0 * 2.0 * (kT / 2) * kC * 3);
  set_bytes(st, 4.0 * (2 * kT + kT / 2) * kC);
}
BENCHMARK(BM_DepthwiseConvStride2Backward)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- TriDet's SGP block at its THUMOS size (C 512, window 1, k 5 -> wide
// kernel 11, MLP 768, stride 1: a stem block). GFLOP/s counts the MLP's and
// the five depthwise convolutions' multiply-adds (2 FLOPs each); the norms,
// GELU, the gate and the adds are not counted. ----
void BM_SGPBlockForward(benchmark::State& st) {
  Rng rng(21);
  models::SGPBlock<float> block(int(kC), 1, 1, 5.0, 768, 0.0, rng);
  block.reset_depthwise(0.2, rng);
  Var<float> x(randn(Shape{1, kT, kC}, 22));
  const std::vector<int> lengths{int(kT)};
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(block.forward(x, lengths, rng).first.value().data());
  set_flops(st, 2.0 * kT * (2.0 * kC * 768 + kC * (1 + 1 + 11 + 1)) + 2.0 * kC);
}
BENCHMARK(BM_SGPBlockForward)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- the SGP block's wide depthwise conv (k 11, stride 1, unmasked) ----
void BM_DepthwiseConvWide(benchmark::State& st) {
  Var<float> x(randn(Shape{1, kT, kC}, 23));
  Var<float> w(randn(Shape{kC, 1, 11}, 24, 0.3));
  Var<float> b(randn(Shape{kC}, 25, 0.1));
  Conv1dOptions o;
  o.padding = 5;
  o.groups = int(kC);
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(conv1d(x, w, b, o).value().data());
  set_flops(st, 2.0 * kT * kC * 11);
  set_bytes(st, 4.0 * 2 * kT * kC);
}
BENCHMARK(BM_DepthwiseConvWide)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- TriDet's Trident head decoded on level 0 at THUMOS size (T 2304, 20
// classes, 16 bins): every (t, c) entry (what detection did before decoding
// on demand) against the 2000 candidates the post-processing keeps per level
// (pre_nms_topk). Nominal GFLOP/s: 2 x 17 exponentials per entry, counted
// as 20 FLOPs each. ----
struct TridentLevel {
  std::vector<float> bins, start, end;
  TridentLevel() {
    Tensor<float> b = randn(Shape{kT, 34}, 26), s = randn(Shape{kT, 20}, 27), e = randn(Shape{kT, 20}, 28);
    bins.assign(b.data(), b.data() + b.numel());
    start.assign(s.data(), s.data() + s.numel());
    end.assign(e.data(), e.data() + e.numel());
  }
};
void BM_TridentDecodeAll(benchmark::State& st) {
  TridentLevel lv;
  for (auto _ : st) benchmark::DoNotOptimize(trident_decode(lv.bins, lv.start, lv.end, kT, 20, 16).data());
  set_flops(st, 20.0 * 34 * kT * 20);
}
BENCHMARK(BM_TridentDecodeAll)->UseRealTime()->Unit(benchmark::kMillisecond);
void BM_TridentDecodeTop2000(benchmark::State& st) {
  TridentLevel lv;
  Rng rng(29);
  std::vector<std::pair<int64_t, int64_t>> cand;
  for (int i = 0; i < 2000; ++i) cand.push_back({int64_t(rng.uniform() * kT) % kT, int64_t(rng.uniform() * 20) % 20});
  for (auto _ : st) {
    float acc = 0;
    for (auto [t, c] : cand) acc += trident_decode_at(lv.bins, lv.start, lv.end, kT, 20, 16, t, c)[0];
    benchmark::DoNotOptimize(acc);
  }
  set_flops(st, 20.0 * 34 * 2000);
}
BENCHMARK(BM_TridentDecodeTop2000)->UseRealTime()->Unit(benchmark::kMillisecond);

// ---- max-pool k3 s2 p1 (the branch skip; 2 comparisons per output) ----
void BM_MaxPool(benchmark::State& st) {
  Var<float> x(randn(Shape{1, kT, kC}, 17));
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(max_pool1d(x, 3, 2, 1).value().data());
  set_flops(st, 2.0 * (kT / 2) * kC);
  set_bytes(st, 4.0 * (kT + kT / 2) * kC);
}
BENCHMARK(BM_MaxPool)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- GELU on the MLP's hidden (T, 4C) (nominal 20 FLOPs per element for erf) ----
void BM_GeluForward(benchmark::State& st) {
  Var<float> x(randn(Shape{1, kT, 4 * kC}, 18));
  NoGradGuard ng;
  for (auto _ : st) benchmark::DoNotOptimize(gelu(x).value().data());
  set_flops(st, 20.0 * kT * 4 * kC);
  set_bytes(st, 2.0 * 4 * kT * 4 * kC);
}
BENCHMARK(BM_GeluForward)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_GeluBackward(benchmark::State& st) {
  Var<float> x = Var<float>::parameter(randn(Shape{1, kT, 4 * kC}, 18));
  Var<float> y = gelu(x);
  Tensor<float> seed = randn(y.shape(), 19);
  for (auto _ : st) run_backward(y, seed);
  set_flops(st, 30.0 * kT * 4 * kC);
  set_bytes(st, 4.0 * 4 * kT * 4 * kC);
}
BENCHMARK(BM_GeluBackward)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- sigmoid focal loss on a training batch's logits: (2, 4536 points, 20 classes) ----
// nominal 30 FLOPs per element (sigmoid, BCE, power, alpha weighting)
void BM_FocalLoss(benchmark::State& st) {
  const int64_t N = 2 * 4536, Cl = 20;
  Var<float> x = Var<float>::parameter(randn(Shape{N, Cl}, 20, 3.0));
  Tensor<float> y = Tensor<float>::zeros(Shape{N, Cl});
  Rng rng(21);
  for (int64_t i = 0; i < N; ++i)
    if (rng.uniform() < 0.05) y[i * Cl + rng.randint(0, Cl - 1)] = 1.f;
  const bool backward_too = st.range(0) != 0;
  for (auto _ : st) {
    Var<float> l = sigmoid_focal_loss(x, y);
    if (backward_too) {
      x.zero_grad();
      backward(l);
    }
    benchmark::DoNotOptimize(l.value().data());
  }
  set_flops(st, (backward_too ? 70.0 : 30.0) * N * Cl);
}
BENCHMARK(BM_FocalLoss)->Arg(0)->Arg(1)->ArgName("backward")->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- label assignment of one THUMOS training video (T = 2304, 6 levels:
// 4,536 points, 20 classes, 20 GT segments): center sampling (ActionFormer)
// against SimOTA (TemporalMaxer), which also reads the outputs. No FLOP
// counter: compare the times. ----
struct AssignCase {
  PointSet pts = make_points({2304, 1152, 576, 288, 144, 72}, {1, 2, 4, 8, 16, 32},
                             {{0, 4}, {4, 8}, {8, 16}, {16, 32}, {32, 64}, {64, 10000}});
  std::vector<int> valid{2000, 1000, 500, 250, 125, 63};
  std::vector<std::array<float, 2>> segs;
  std::vector<int> labels;
  std::vector<float> logits, offsets;
  AssignCase() {
    Rng rng(30);
    for (int g = 0; g < 20; ++g) {
      const float a = float(rng.uniform() * 1900), len = float(2 + rng.uniform() * 150);
      segs.push_back({a, std::min(a + len, 2000.0f)});
      labels.push_back(int(rng.uniform() * 20) % 20);
    }
    Tensor<float> l = randn(Shape{pts.size(), 20}, 31), o = randn(Shape{pts.size(), 2}, 32);
    logits.assign(l.data(), l.data() + l.numel());
    for (int64_t i = 0; i < o.numel(); ++i) offsets.push_back(std::abs(o[i]) * 4.0f);
  }
};
void BM_AssignCenterSampling(benchmark::State& st) {
  AssignCase c;
  for (auto _ : st) benchmark::DoNotOptimize(label_points(c.pts, c.segs, c.labels, 20, "radius", 1.5f).cls.data());
}
BENCHMARK(BM_AssignCenterSampling)->UseRealTime()->Unit(benchmark::kMicrosecond);
void BM_AssignSimOTA(benchmark::State& st) {
  AssignCase c;
  SimOTAConfig sc;
  for (auto _ : st)
    benchmark::DoNotOptimize(simota_assign(c.pts, c.valid, c.logits.data(), c.offsets.data(), c.segs, c.labels, 20, sc)
                                 .cls.data());
}
BENCHMARK(BM_AssignSimOTA)->UseRealTime()->Unit(benchmark::kMicrosecond);

// ---- runtime overhead: the thread pool's hand-off ----
// One parallel_for of 2 trivial chunks: what an op pays for going parallel
// (with FLOWLESS_THREADS=2, a hand-off to the worker and back).
void BM_ParallelForHandoff(benchmark::State& st) {
  std::vector<int64_t> sink(2, 0);
  for (auto _ : st) {
    parallel_for(2, 1, [&](int64_t a, int64_t) { sink[size_t(a)] += a; });
    benchmark::DoNotOptimize(sink.data());
  }
}
BENCHMARK(BM_ParallelForHandoff)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  if (const char* e = std::getenv("FLOWLESS_THREADS")) threads = std::max(1, std::atoi(e));
  flowless::set_num_threads(threads);
  benchmark::AddCustomContext("flowless_threads", std::to_string(threads));
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
