// Tensor core, thread pool, GEMM, autograd engine and conv1d.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>

#include <flowless/flowless.hpp>
#include <flowless/ops/drop_path.hpp>
#include "gradcheck.hpp"

using namespace flowless;
using flowless::test::random_tensor;

TEST_CASE("tensor: views share storage, clone does not") {
  auto t = Tensor<float>::zeros(Shape{2, 3, 4});
  CHECK(t.numel() == 24);
  auto v = t.select0(1);
  CHECK(v.shape() == Shape{3, 4});
  v[0] = 5.f;
  CHECK(t[12] == 5.f);
  auto c = t.clone();
  c[12] = 1.f;
  CHECK(t[12] == 5.f);
  CHECK(t.reshape(Shape{6, 4}).narrow0(3, 1)[0] == 5.f);
  CHECK_THROWS_AS(t.reshape(Shape{5, 5}), Error);
}

TEST_CASE("thread pool: chunking does not depend on the thread count") {
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    std::vector<int> owner(1000, -1);
    parallel_for(1000, 64, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) owner[i] = int(a / 64);
    });
    for (int i = 0; i < 1000; ++i) CHECK(owner[i] == i / 64);
  }
  set_num_threads(2);
  CHECK_THROWS_AS(parallel_for(10, 1, [&](int64_t a, int64_t) { if (a == 5) FLOWLESS_FAIL("boom"); }), Error);
  set_num_threads(1);
}

namespace {
// Naive reference: PyTorch semantics on (B, T, C) layout.
std::vector<double> conv_ref(const Tensor<double>& x, const Tensor<double>& w, const Tensor<double>* bias, int s, int p,
                             int G, const std::vector<int>& lengths) {
  int64_t B = x.size(0), Tn = x.size(1), Cin = x.size(2), Cout = w.size(0), K = w.size(2);
  int64_t Tout = (Tn + 2 * p - K) / s + 1, Cg = Cin / G, Og = Cout / G;
  std::vector<double> y(B * Tout * Cout, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tout; ++t)
      for (int64_t o = 0; o < Cout; ++o) {
        double acc = bias ? (*bias)[o] : 0.0;
        int64_t g = o / Og;
        for (int64_t i = 0; i < Cg; ++i)
          for (int64_t k = 0; k < K; ++k) {
            int64_t j = t * s + k - p;
            if (j < 0 || j >= Tn) continue;
            acc += w[(o * Cg + i) * K + k] * x[(b * Tn + j) * Cin + g * Cg + i];
          }
        bool valid = lengths.empty() || t < (lengths[b] + s - 1) / s;
        y[(b * Tout + t) * Cout + o] = valid ? acc : 0.0;
      }
  return y;
}
}  // namespace

TEST_CASE("conv1d: forward matches the naive definition and gradients match finite differences") {
  Rng rng(3);
  struct Case { int B, T, Cin, Cout, K, s, p, G; bool bias; std::vector<int> len; };
  std::vector<Case> cases = {
      {2, 9, 4, 6, 3, 1, 1, 1, true, {9, 6}},   // masked, k3
      {1, 8, 5, 3, 1, 1, 0, 1, true, {}},       // 1x1 projection
      {2, 9, 5, 4, 1, 2, 0, 1, true, {9, 5}},   // 1x1 stride 2, masked (dW straight from dY^T X)
      {2, 10, 4, 4, 3, 2, 1, 4, false, {10, 7}},  // depthwise strided (attention Q/K/V)
      {2, 9, 70, 70, 5, 1, 2, 70, true, {9, 4}},  // depthwise k5 with bias, more channels than one dW block (64)
      {1, 7, 4, 6, 3, 1, 1, 2, true, {5}},      // grouped
      {1, 11, 3, 2, 5, 2, 2, 1, false, {}},     // k5 stride 2
  };
  for (auto& c : cases) {
    CAPTURE(c.Cin); CAPTURE(c.K); CAPTURE(c.s); CAPTURE(c.G);
    Conv1dOptions opt{c.s, c.p, c.G, c.len};
    auto x = Var<double>::parameter(random_tensor(Shape{c.B, c.T, c.Cin}, rng));
    auto w = Var<double>::parameter(random_tensor(Shape{c.Cout, c.Cin / c.G, c.K}, rng));
    Var<double> b = c.bias ? Var<double>::parameter(random_tensor(Shape{c.Cout}, rng)) : Var<double>();
    {
      NoGradGuard ng;
      auto y = conv1d(x, w, b, opt);
      auto ref = conv_ref(x.value(), w.value(), c.bias ? &b.value() : nullptr, c.s, c.p, c.G, c.len);
      REQUIRE(y.value().numel() == int64_t(ref.size()));
      for (size_t i = 0; i < ref.size(); ++i) CHECK(y.value()[i] == doctest::Approx(ref[i]).epsilon(1e-12));
    }
    flowless::test::check_gradients([&](std::vector<Var<double>>& in) { return conv1d(in[0], in[1], in[2], opt); },
                                    {x, w, b});
  }
}

TEST_CASE("conv1d: bad shapes are clear errors") {
  auto x = Var<float>(Tensor<float>::zeros(Shape{1, 8, 4}));
  auto w = Var<float>(Tensor<float>::zeros(Shape{3, 5, 3}));
  CHECK_THROWS_WITH_AS(conv1d(x, w, Var<float>(), Conv1dOptions{}), doctest::Contains("does not fit"), Error);
}

TEST_CASE("autograd: shared weights accumulate, no-grad records nothing") {
  Rng rng(1);
  auto w = Var<double>::parameter(random_tensor(Shape{2, 2, 1}, rng));
  auto x1 = Var<double>(random_tensor(Shape{1, 3, 2}, rng));
  auto x2 = Var<double>(random_tensor(Shape{1, 3, 2}, rng));
  auto y1 = conv1d(x1, w, Var<double>(), {});
  auto y2 = conv1d(x2, w, Var<double>(), {});
  backward(y1, Tensor<double>::full(y1.shape(), 1.0));
  backward(y2, Tensor<double>::full(y2.shape(), 1.0));
  // d/dw sum(x w^T) = sum_t x[t, i] for each output o.
  for (int o = 0; o < 2; ++o)
    for (int i = 0; i < 2; ++i) {
      double expect = 0;
      for (int t = 0; t < 3; ++t) expect += x1.value()[t * 2 + i] + x2.value()[t * 2 + i];
      CHECK(w.grad()[o * 2 + i] == doctest::Approx(expect));
    }
  NoGradGuard ng;
  auto y3 = conv1d(x1, w, Var<double>(), {});
  CHECK_FALSE(y3.requires_grad());
  CHECK(y3.node()->inputs.empty());
}

TEST_CASE("conv1d: 1 and 2 threads give bitwise identical forward and gradients") {
  Rng rng(11);
  Tensor<float> xv(Shape{2, 300, 48}), wv(Shape{40, 48, 3});
  for (int64_t i = 0; i < xv.numel(); ++i) xv[i] = float(rng.normal());
  for (int64_t i = 0; i < wv.numel(); ++i) wv[i] = float(rng.normal());
  std::vector<std::vector<float>> outs, grads;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto x = Var<float>::parameter(xv.clone());
    auto w = Var<float>::parameter(wv.clone());
    auto y = conv1d(x, w, Var<float>(), {1, 1, 1, {300, 211}});
    outs.push_back(y.value().to_vector());
    backward(y, Tensor<float>::full(y.shape(), 0.5f));
    auto g = w.grad().to_vector();
    auto gx = x.grad().to_vector();
    g.insert(g.end(), gx.begin(), gx.end());
    grads.push_back(g);
  }
  set_num_threads(1);
  CHECK(outs[0] == outs[1]);
  CHECK(grads[0] == grads[1]);
}

TEST_CASE("autograd: ops that store a fresh input gradient give the bits of adding into zeros") {
  // input_grad_store: an op stores (=) into an input gradient no other op has touched and adds (+=)
  // otherwise. Both must give the same bits, and every element must be written: the fresh buffer
  // comes from blocks first filled with NaN and freed, so a skipped row shows up.
  Rng rng(21);
  const int64_t B = 2, T = 6000;  // every buffer >= 1 MiB: from the block cache, not malloc
  struct Case { const char* name; int64_t C; std::function<Var<float>(const Var<float>&)> f; };
  auto conv = [&rng](int64_t Cin, int64_t Cout, int K, int s, int p, std::vector<int> len) {
    Tensor<float> w(Shape{Cout, Cin, K});
    for (int64_t i = 0; i < w.numel(); ++i) w[i] = float(rng.normal() * 0.1);
    return [w, s, p, len](const Var<float>& x) {
      return conv1d(x, Var<float>::parameter(w.clone()), Var<float>(), Conv1dOptions{s, p, 1, len});
    };
  };
  auto chan = [&rng](int64_t C) {  // a per-channel parameter
    Tensor<float> t(Shape{C});
    for (int64_t i = 0; i < C; ++i) t[i] = float(1.0 + 0.1 * rng.normal());
    return Var<float>::parameter(t);
  };
  uint64_t drop_seed = 1;  // a seed whose drop_path mask (prob 0.5, B = 2) drops exactly one sample
  for (;; ++drop_seed) {
    Rng r(drop_seed);
    const bool keep0 = std::floor(0.5 + r.uniform()) != 0, keep1 = std::floor(0.5 + r.uniform()) != 0;
    if (keep0 != keep1) break;
  }
  std::vector<Case> cases = {
      {"conv 1x1, masked", 48, conv(48, 40, 1, 1, 0, {6000, 4100})},
      {"conv k3 Winograd, one empty sequence", 64, conv(64, 64, 3, 1, 1, {6000, 0})},
      {"conv k3 Winograd, masked", 64, conv(64, 72, 3, 1, 1, {5000, 6000})},
      {"conv k3 im2col, masked", 24, conv(24, 16, 3, 1, 1, {6000, 2600})},
      {"conv k3 stride 2, masked", 24, conv(24, 16, 3, 2, 1, {6000, 3800})},
      {"gelu", 24, [](const Var<float>& x) { return gelu(x); }},
      {"relu", 24, [](const Var<float>& x) { return relu(x); }},
      {"add of one variable to itself", 24, [](const Var<float>& x) { return add(x, x); }},
      {"mask_time", 24, [](const Var<float>& x) { return mask_time(x, {4700, 1800}); }},
      {"layer_norm", 24, [gam = chan(24), bet = chan(24)](const Var<float>& x) { return layer_norm(x, gam, bet); }},
      {"mul_channels", 24, [g = chan(24)](const Var<float>& x) { return mul_channels(x, g); }},
      {"add_channels", 24, [g = chan(24)](const Var<float>& x) { return add_channels(x, g); }},
      {"drop_path, one sample dropped", 24, [drop_seed](const Var<float>& x) {
         Rng r(drop_seed);
         return drop_path(x, 0.5, true, r);
       }},
  };
  for (auto& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    Tensor<float> xv(Shape{B, T, c.C});
    for (int64_t i = 0; i < xv.numel(); ++i) xv[i] = float(rng.normal());
    Tensor<float> seed;
    auto run = [&](bool prefill) {
      auto x = Var<float>::parameter(xv.clone());
      if (prefill) x.node()->ensure_grad();  // zeros: the op must add
      auto y = c.f(x);
      if (!seed.defined()) {
        seed = Tensor<float>(y.shape());
        for (int64_t i = 0; i < seed.numel(); ++i) seed[i] = float(rng.normal());
      }
      if (!prefill) {  // poison the cached blocks the backward will get
        std::vector<Tensor<float>> nan;
        for (int k = 0; k < 4; ++k) nan.push_back(Tensor<float>::full(xv.shape(), std::numeric_limits<float>::quiet_NaN()));
      }
      backward(y, seed.clone());
      return x.grad().to_vector();
    };
    const auto added = run(true);
    const auto stored = run(false);
    REQUIRE(stored.size() == added.size());
    CHECK(std::all_of(stored.begin(), stored.end(), [](float v) { return std::isfinite(v); }));
    CHECK(stored == added);
  }
}

TEST_CASE("conv1d: float weight gradients match a double-precision sum, store and add agree, threads agree") {
  // Covers both weight-gradient paths: the direct products (one per batch element) with the layout
  // change into (Cout, Cin, K), and, for k3 convs with both widths >= 256, Winograd F(3, 2) over the
  // pairs of the whole batch (odd lengths, an empty sequence, more pairs than one 1024-pair chunk).
  // The gradient is stored into a fresh buffer (first filled with NaN and freed) or added into zeros:
  // the same bits either way.
  Rng rng(31);
  struct Case { const char* name; int64_t Cin, Cout, K, s, p, T; std::vector<int> len; bool winograd; };
  const std::vector<Case> cases = {
      // every weight >= 1 MiB, so its fresh gradient buffer comes from the (poisoned) block cache
      {"k3 Winograd, odd lengths, > 1 chunk", 336, 264, 3, 1, 1, 1400, {1301, 1000}, true},
      {"k3 Winograd, one empty sequence", 384, 288, 3, 1, 1, 300, {0, 257}, true},
      {"k3 direct (narrow)", 240, 380, 3, 1, 1, 900, {900, 611}, false},
      {"k3 direct, too few pairs for Winograd", 256, 352, 3, 1, 1, 60, {60, 51}, false},
      {"1x1, masked", 600, 480, 1, 1, 0, 700, {700, 333}, false},
      {"k3 stride 2", 300, 300, 3, 2, 1, 500, {500, 377}, false},
  };
  for (const auto& c : cases) {
    const std::string name = c.name;
    CAPTURE(name);
    const Conv1dOptions opt{int(c.s), int(c.p), 1, c.len};
    Tensor<float> xv(Shape{2, c.T, c.Cin}), wv(Shape{c.Cout, c.Cin, c.K});
    for (int64_t i = 0; i < xv.numel(); ++i) xv[i] = float(rng.normal());
    for (int64_t i = 0; i < wv.numel(); ++i) wv[i] = float(rng.normal() * 0.05);
    const int64_t Tout = (c.T + 2 * c.p - c.K) / c.s + 1;
    Tensor<float> seed(Shape{2, Tout, c.Cout});
    for (int64_t i = 0; i < seed.numel(); ++i) seed[i] = float(rng.normal());
    std::vector<int64_t> Lout(2);
    for (int b = 0; b < 2; ++b) Lout[b] = std::min<int64_t>(Tout, (c.len[b] + c.s - 1) / c.s);
    CHECK(detail::conv3_use_winograd_weight_grad<float>(c.K, c.s, c.p, c.Cin, c.Cout, Lout) == c.winograd);
    auto weight_grad = [&](bool prefill, int threads) {
      set_num_threads(threads);
      auto x = Var<float>(xv.clone());
      auto w = Var<float>::parameter(wv.clone());
      if (prefill) w.node()->ensure_grad();  // zeros: the op must add
      auto y = conv1d(x, w, Var<float>(), opt);
      if (!prefill) {  // poison the cached blocks the backward will get
        std::vector<Tensor<float>> nan;
        for (int k = 0; k < 4; ++k) nan.push_back(Tensor<float>::full(wv.shape(), std::numeric_limits<float>::quiet_NaN()));
      }
      backward(y, seed.clone());
      return w.grad().to_vector();
    };
    const auto stored = weight_grad(false, 2);
    CHECK(weight_grad(true, 2) == stored);
    CHECK(weight_grad(false, 1) == stored);
    set_num_threads(1);
    // dW[o][i][k] = sum over valid t of dY[t][o] x[t s - p + k][i], in double
    double worst = 0;
    for (int64_t o = 0; o < c.Cout; o += 7)
      for (int64_t i = 0; i < c.Cin; i += 5)
        for (int64_t k = 0; k < c.K; ++k) {
          double want = 0, scale = 0;
          for (int64_t b = 0; b < 2; ++b)
            for (int64_t t = 0; t < Lout[b]; ++t) {
              const int64_t j = t * c.s - c.p + k;
              if (j < 0 || j >= c.T) continue;
              const double term = double(seed[(b * Tout + t) * c.Cout + o]) * xv[(b * c.T + j) * c.Cin + i];
              want += term;
              scale += std::abs(term);
            }
          const double got = stored[size_t((o * c.Cin + i) * c.K + k)];
          REQUIRE(std::isfinite(got));
          worst = std::max(worst, std::abs(got - want) / std::max(scale, 1e-30));
        }
    CAPTURE(worst);
    CHECK(worst < 2e-6);
  }
}

TEST_CASE("conv1d: dense float convs (1x1, Winograd, im2col) give the same bits with and without a ConvWeightCacheScope") {
  // Sizes on the packed GEMM and Winograd paths; two lengths stand for two
  // pyramid levels sharing one weight (a head). In a scope the Winograd
  // transform or the packed GEMM weight is made once for both lengths and
  // both rounds, in each precision.
  struct Case { int K, stride, pad; };
  Rng rng(17);
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    cpu::MatmulPrecisionScope precision(bf16 ? cpu::MatmulPrecision::bf16 : cpu::MatmulPrecision::fp32);
    for (const Case c : {Case{1, 1, 0}, Case{3, 1, 1}, Case{5, 1, 2}, Case{3, 2, 1}}) {
      CAPTURE(c.K);
      CAPTURE(c.stride);
      const bool winograd = c.K == 3 && c.stride == 1;
      Tensor<float> wv(Shape{72, 80, c.K}), bv(Shape{72});
      for (int64_t i = 0; i < wv.numel(); ++i) wv[i] = float(rng.normal());
      for (int64_t i = 0; i < bv.numel(); ++i) bv[i] = float(rng.normal());
      const Var<float> w(wv), b(bv);
      std::vector<Tensor<float>> xs;
      std::vector<std::vector<float>> plain;
      for (const int T : {64, 33}) {
        Tensor<float> xv(Shape{1, T, 80});
        for (int64_t i = 0; i < xv.numel(); ++i) xv[i] = float(rng.normal());
        xs.push_back(xv);
        const Conv1dOptions opt{c.stride, c.pad, 1, {T - 3}};
        NoGradGuard ng;
        plain.push_back(conv1d(Var<float>(xv), w, b, opt).value().to_vector());
        const Tensor<double> wd = cast<double>(wv), bd = cast<double>(bv);
        const auto ref = conv_ref(cast<double>(xv), wd, &bd, c.stride, c.pad, 1, {T - 3});
        REQUIRE(ref.size() == plain.back().size());
        double worst = 0;
        for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(ref[i] - double(plain.back()[i])));
        CHECK(worst < (bf16 && cpu::matmul_bf16_available() ? 0.5 : 1e-4));
      }
      CHECK(detail::ConvWeightCache::current() == nullptr);
      {
        ConvWeightCacheScope scope;
        for (int round = 0; round < 2; ++round) {
          ConvWeightCacheScope nested;  // uses the outer cache
          for (size_t l = 0; l < xs.size(); ++l) {
            NoGradGuard ng;
            const int T = int(xs[l].size(1));
            const auto y = conv1d(Var<float>(xs[l]), w, b, Conv1dOptions{c.stride, c.pad, 1, {T - 3}}).value().to_vector();
            CHECK(y == plain[l]);  // identical bits
          }
        }
        REQUIRE(detail::ConvWeightCache::current() != nullptr);
        CHECK(detail::ConvWeightCache::current()->entries.size() == (winograd ? 1u : 0u));
        CHECK(detail::ConvWeightCache::current()->gemm_entries.size() == (winograd ? 0u : 1u));
        // the other precision inside the same scope: repacked, and again the plain path's bits
        cpu::MatmulPrecisionScope other(bf16 ? cpu::MatmulPrecision::fp32 : cpu::MatmulPrecision::bf16);
        NoGradGuard ng;
        const int T = int(xs[0].size(1));
        const Conv1dOptions opt{c.stride, c.pad, 1, {T - 3}};
        const auto y = conv1d(Var<float>(xs[0]), w, b, opt).value().to_vector();
        std::vector<float> want;
        {
          detail::ConvWeightCache* saved = detail::ConvWeightCache::current();
          detail::ConvWeightCache::current() = nullptr;  // the uncached path, same precision
          want = conv1d(Var<float>(xs[0]), w, b, opt).value().to_vector();
          detail::ConvWeightCache::current() = saved;
        }
        CHECK(y == want);
      }
      CHECK(detail::ConvWeightCache::current() == nullptr);
    }
  }
}

TEST_CASE("host block cache: large blocks are reused by size class, the limit bounds what stays cached") {
  auto& c = HostBlockCache::global();
  const size_t prev = c.limit();
  c.release();
  CHECK(HostBlockCache::size_class(0) == 64);
  CHECK(HostBlockCache::size_class(100) == 128);
  CHECK(HostBlockCache::size_class(size_t(1) << 20) == size_t(1) << 20);
  CHECK(HostBlockCache::size_class((size_t(1) << 20) + 1) == (size_t(1) << 20) + (size_t(1) << 17));
  CHECK(HostBlockCache::size_class(3000000) == 3145728);  // 12 steps of 2^21 / 8
  c.set_limit(size_t(64) << 20);
  void* a = c.allocate(5000000);
  CHECK(reinterpret_cast<uintptr_t>(a) % 64 == 0);
  std::memset(a, 1, 5000000);
  c.deallocate(a);
  CHECK(c.cached_bytes() == HostBlockCache::size_class(5000000));
  const uint64_t hits = c.hits();
  void* b = c.allocate(4900000);  // the same class: the cached block comes back
  CHECK(b == a);
  CHECK(c.hits() == hits + 1);
  CHECK(c.cached_bytes() == 0);
  c.deallocate(b);
  c.set_limit(0);  // frees what is cached; nothing is kept from now on
  CHECK(c.cached_bytes() == 0);
  void* d = c.allocate(5000000);
  c.deallocate(d);
  CHECK(c.cached_bytes() == 0);
  c.set_limit(size_t(64) << 20);
  { Tensor<float> t(Shape{int64_t(1) << 19}); }  // 2 MiB: through the CPU backend
  CHECK(c.cached_bytes() == size_t(2) << 20);
  { Tensor<float> small(Shape{1000}); }  // below the threshold: freed at once
  CHECK(c.cached_bytes() == size_t(2) << 20);
  c.set_limit(prev);
  c.release();
}

TEST_CASE("host block cache: blocks live at the high-water mark stay cached, a miss frees the oldest to keep the bound") {
  auto& c = HostBlockCache::global();
  const size_t prev = c.limit();
  c.release();
  CHECK(c.peak_bytes() == c.live_bytes());  // release restarts the high-water mark
  const size_t MiB = size_t(1) << 20, L0 = c.live_bytes();
  c.set_limit(4 * MiB);
  // the memory of large blocks never exceeds the high-water mark plus the limit
  auto bound_holds = [&] { return c.live_bytes() + c.cached_bytes() <= c.peak_bytes() + 4 * MiB; };
  void* a[3];
  for (auto& p : a) p = c.allocate(8 * MiB);  // 8 MiB is a class of its own
  CHECK(c.live_bytes() == L0 + 24 * MiB);
  CHECK(c.peak_bytes() == L0 + 24 * MiB);
  for (auto* p : a) {
    c.deallocate(p);
    CHECK(bound_holds());
  }
  CHECK(c.cached_bytes() == 24 * MiB);  // six times the limit: all of it was live at the peak
  const uint64_t hits = c.hits();
  void* b = c.allocate(8 * MiB);  // the next "pass" finds its block: the most recently cached one
  CHECK(b == a[2]);
  CHECK(c.hits() == hits + 1);
  CHECK(c.cached_bytes() == 16 * MiB);
  void* d = c.allocate(12 * MiB);  // not cached: live 20 MiB of the 24 MiB peak, so 8 MiB may stay cached
  CHECK(c.cached_bytes() == 8 * MiB);
  CHECK(bound_holds());
  CHECK(c.peak_bytes() == L0 + 24 * MiB);
  void* b2 = c.allocate(8 * MiB);  // the oldest block (a[0]) was the one freed
  CHECK(b2 == a[1]);
  c.deallocate(b2);
  c.deallocate(b);
  c.deallocate(d);
  CHECK(c.cached_bytes() == 28 * MiB);
  CHECK(bound_holds());
  void* e = c.allocate(40 * MiB);  // a new high-water mark: only the limit may stay cached
  CHECK(c.peak_bytes() == L0 + 40 * MiB);
  CHECK(c.cached_bytes() == 0);
  CHECK(bound_holds());
  c.deallocate(e);
  CHECK(c.cached_bytes() == 40 * MiB);
  c.set_limit(0);  // nothing stays cached, whatever the high-water mark
  CHECK(c.cached_bytes() == 0);
  void* f = c.allocate(8 * MiB);
  c.deallocate(f);
  CHECK(c.cached_bytes() == 0);
  c.set_limit(prev);
  c.release();
  CHECK(c.peak_bytes() == c.live_bytes());
}
