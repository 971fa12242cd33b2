// The CUDA backend and kernels (cuda/kernels.cuh) against the CPU ops.
//
// Every op: random inputs, the CPU op on Var<float> (forward, then backward
// from a random output gradient) and the CUDA kernels on the same values;
// forward values and every gradient must agree within
//   |cuda - cpu| <= tol * (|cpu| + rms(cpu))   with tol = 1e-4
// (float32 both sides; the two differ only in summation order and in
// recomputed softmax probabilities). Gradient buffers start at the CPU
// gradient, so a correct accumulating (+=) backward gives exactly twice it.
//
// Compiled only when the flowless_cuda target is linked (FLOWLESS_WITH_CUDA).
// A test that needs a device returns early with "no GPU: skipped" when
// cuda_available() is false. The same file also runs against the host
// emulation of the kernels (flowless_cuda_emulated_tests, cuda/emulation.cuh).
#ifdef FLOWLESS_WITH_CUDA

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "flowless/backend/cuda.hpp"
#include "flowless/core/random.hpp"
#include "flowless/ops/activations.hpp"
#include "flowless/ops/conv1d.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/layer_norm.hpp"
#include "flowless/ops/local_attention.hpp"
#include "flowless/ops/losses.hpp"
#include "flowless/ops/pooling.hpp"
#include "flowless/train/optimizer.hpp"
#include "kernels.cuh"

using namespace flowless;

namespace {

using DTensor = Tensor<float, Cuda>;
using VarF = Var<float>;

constexpr double kTol = 1e-4;

#define FLOWLESS_SKIP_WITHOUT_GPU()  \
  do {                               \
    if (!cuda_available()) {         \
      MESSAGE("no GPU: skipped");    \
      return;                        \
    }                                \
  } while (0)

Tensor<float> randn(const Shape& s, Rng& rng, double scale = 1.0) {
  Tensor<float> t(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = float(scale * rng.normal());
  return t;
}

DTensor dev(const Tensor<float>& t) { return DTensor::from_host(t.data(), t.shape()); }

Tensor<float> host(const DTensor& t) {
  std::vector<float> v = t.to_vector();
  return Tensor<float>::from_vector(v, t.shape());
}

Tensor<float> twice(const Tensor<float>& t) {
  Tensor<float> o(t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) o[i] = 2.f * t[i];
  return o;
}

/// |got - want| <= tol * (|want| + rms(want)) for every element (NaN fails).
void check_close(const Tensor<float>& got, const Tensor<float>& want, const std::string& what, double tol = kTol) {
  REQUIRE(got.numel() == want.numel());
  double ss = 0;
  for (int64_t i = 0; i < want.numel(); ++i) ss += double(want[i]) * double(want[i]);
  const double rms = want.numel() ? std::sqrt(ss / double(want.numel())) : 0.0;
  double worst = 0;
  int64_t at = -1;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double err = std::abs(double(got[i]) - double(want[i])) / (std::abs(double(want[i])) + rms + 1e-30);
    if (!(err <= worst)) {  // also catches NaN
      worst = std::isnan(err) ? INFINITY : err;
      at = i;
    }
  }
  INFO(what, ": worst relative error ", worst, " at element ", at, " (got ", at >= 0 ? got[at] : 0.f, ", want ",
       at >= 0 ? want[at] : 0.f, ")");
  CHECK(worst <= tol);
}

bool bitwise_equal(const DTensor& a, const DTensor& b) {
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), sizeof(float) * x.size()) == 0;
}

VarF param(const Tensor<float>& t) { return VarF::parameter(t.clone()); }

/// CPU forward + backward from `seed`; returns the output value.
Tensor<float> run_cpu(const VarF& y, const Tensor<float>& seed) {
  backward(y, seed);
  return y.value();
}

}  // namespace

// ---------------------------------------------------------------------------
// Backend vocabulary.

TEST_CASE("cuda: invalid arguments are Errors before any device work") {
  // Argument checks run on the host first, so these need no GPU.
  cuda::Conv1dShape cs;
  cs.B = 1, cs.T = 8, cs.Cin = 6, cs.Cout = 4, cs.K = 3, cs.groups = 4;  // 4 does not divide 6
  CHECK_THROWS_AS(cuda::conv1d_forward(cs, nullptr, nullptr, nullptr, nullptr, nullptr), Error);
  cs.groups = 1, cs.T = 1, cs.K = 3;  // too short
  CHECK_THROWS_AS(cuda::conv1d_forward(cs, nullptr, nullptr, nullptr, nullptr, nullptr), Error);
  cs.T = 8;
  const int negative[1] = {-1};
  CHECK_THROWS_AS(cuda::conv1d_forward(cs, nullptr, nullptr, nullptr, negative, nullptr), Error);
  cuda::AttentionShape as;
  as.B = 1, as.T = 4, as.C = 6, as.heads = 4;
  CHECK_THROWS_AS(cuda::local_attention_forward(as, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr), Error);
  as.C = 2048, as.heads = 2;  // head_dim 1024 > 512
  CHECK_THROWS_AS(cuda::local_attention_forward(as, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr), Error);
  cuda::PoolShape ps;
  ps.B = 1, ps.T = 4, ps.C = 2, ps.kernel = 3, ps.padding = 2;  // padding > kernel / 2
  CHECK_THROWS_AS(cuda::max_pool1d_forward(ps, nullptr, nullptr, nullptr), Error);
  std::vector<int> many(cuda::kMaxBatch + 1, 1);
  CHECK_THROWS_AS(cuda::mask_time_forward(cuda::kMaxBatch + 1, 2, 2, many.data(), nullptr, nullptr), Error);
  CHECK_THROWS_AS(cuda::layer_norm_forward(4, 0, nullptr, nullptr, nullptr, 1e-5f, nullptr, nullptr), Error);
}

TEST_CASE("cuda: backend allocates, copies and fills device tensors") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  static_assert(!Cuda::is_host);
  CHECK(std::string(Cuda::name) == "cuda");
  Rng rng(1);
  Tensor<float> h = randn(Shape{3, 5, 7}, rng);
  DTensor d = dev(h);
  CHECK(d.shape() == h.shape());
  CHECK(d.to_vector() == h.to_vector());
  DTensor c = d.clone();  // device -> device
  CHECK(!c.shares_storage(d));
  CHECK(c.to_vector() == h.to_vector());
  // Views address device memory with offsets.
  CHECK(d.select0(1).to_vector() == h.select0(1).to_vector());
  CHECK(d.narrow0(1, 2).clone().to_vector() == h.narrow0(1, 2).to_vector());
  // Fill for 4-, 8-, 2- and 1-byte elements, zero and non-zero patterns.
  CHECK(Tensor<float, Cuda>::full(Shape{1000}, -2.5f).to_vector() == std::vector<float>(1000, -2.5f));
  CHECK(Tensor<float, Cuda>::zeros(Shape{17}).to_vector() == std::vector<float>(17, 0.f));
  CHECK(Tensor<double, Cuda>::full(Shape{33}, 1.0 / 3).to_vector() == std::vector<double>(33, 1.0 / 3));
  CHECK(Tensor<int16_t, Cuda>::full(Shape{9}, int16_t(-7)).to_vector() == std::vector<int16_t>(9, int16_t(-7)));
  CHECK(Tensor<uint8_t, Cuda>::full(Shape{5}, uint8_t(200)).to_vector() == std::vector<uint8_t>(5, uint8_t(200)));
  CHECK(Tensor<int32_t, Cuda>::full(Shape{0}, 3).numel() == 0);
  DTensor e(Shape{0});
  CHECK(e.to_vector().empty());
  d.copy_(c);
  Cuda::synchronize();
  CHECK(d.to_vector() == h.to_vector());
}

// ---------------------------------------------------------------------------
// Pointwise ops and the time mask.

TEST_CASE("cuda: relu, gelu and sigmoid match the CPU ops") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  Rng rng(2);
  const Shape s{3, 11, 13};
  Tensor<float> xv = randn(s, rng, 2.0);
  for (int64_t i = 0; i < xv.numel(); i += 7) xv[i] = 0.f;  // relu's kink
  const Tensor<float> seed = randn(s, rng);
  const int64_t n = xv.numel();
  for (const char* op : {"relu", "gelu", "sigmoid"}) {
    INFO(op);
    VarF x = param(xv);
    VarF y = op == std::string("relu") ? relu(x) : op == std::string("gelu") ? gelu(x) : sigmoid(x);
    const Tensor<float> want = run_cpu(y, seed);
    DTensor dx = dev(xv), dy = DTensor(s), dg = dev(seed), ddx = dev(x.grad());
    if (op == std::string("relu")) {
      cuda::relu_forward(n, dx.data(), dy.data());
      cuda::relu_backward(n, dy.data(), dg.data(), ddx.data());
    } else if (op == std::string("gelu")) {
      cuda::gelu_forward(n, dx.data(), dy.data());
      cuda::gelu_backward(n, dx.data(), dg.data(), ddx.data());
    } else {
      cuda::sigmoid_forward(n, dx.data(), dy.data());
      cuda::sigmoid_backward(n, dy.data(), dg.data(), ddx.data());
    }
    check_close(host(dy), want, std::string(op) + " forward");
    check_close(host(ddx), twice(x.grad()), std::string(op) + " backward");
  }
}

TEST_CASE("cuda: mask_time matches the CPU op") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  Rng rng(3);
  const Shape s{3, 9, 6};
  const Tensor<float> xv = randn(s, rng), seed = randn(s, rng);
  const std::vector<int> lengths{9, 4, 0};
  VarF x = param(xv);
  const Tensor<float> want = run_cpu(mask_time(x, lengths), seed);
  DTensor dx = dev(xv), dy(s), dg = dev(seed), ddx = dev(x.grad());
  cuda::mask_time_forward(3, 9, 6, lengths.data(), dx.data(), dy.data());
  cuda::mask_time_backward(3, 9, 6, lengths.data(), dg.data(), ddx.data());
  check_close(host(dy), want, "mask_time forward", 0.0);
  check_close(host(ddx), twice(x.grad()), "mask_time backward", 0.0);
  // Lengths past T mean "all valid"; in place works.
  const std::vector<int> long_lengths{20, 20, 20};
  cuda::mask_time_forward(3, 9, 6, long_lengths.data(), dx.data(), dx.data());
  CHECK(dx.to_vector() == xv.to_vector());
}

// ---------------------------------------------------------------------------
// Max pooling.

TEST_CASE("cuda: max_pool1d matches the CPU op (first maximum, padded tail)") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  struct Case {
    int k, s, p;
  };
  for (Case c : {Case{3, 2, 1}, Case{3, 1, 1}, Case{2, 2, 0}, Case{1, 1, 0}, Case{5, 3, 2}, Case{4, 2, 2}}) {
    INFO("kernel ", c.k, " stride ", c.s, " padding ", c.p);
    Rng rng(4 + c.k * 10 + c.s);
    const int64_t B = 2, T = 17, C = 10;
    std::vector<float> xs = randn(Shape{B, T, C}, rng).to_vector();
    for (float& v : xs) v = std::round(v * 2.f) / 2.f;  // many ties
    std::fill(xs.end() - 4 * C, xs.end(), 0.f);         // zero-masked tail of the last element
    const Tensor<float> xv = Tensor<float>::from_vector(xs, Shape{B, T, C});
    cuda::PoolShape ps;
    ps.B = B, ps.T = T, ps.C = C, ps.kernel = c.k, ps.stride = c.s, ps.padding = c.p;
    const Shape ys{B, ps.out_length(), C};
    const Tensor<float> seed = randn(ys, rng);
    VarF x = param(xv);
    const Tensor<float> want = run_cpu(max_pool1d(x, c.k, c.s, c.p), seed);
    REQUIRE(want.shape() == ys);
    DTensor dx = dev(xv), dy(ys), dg = dev(seed), ddx = dev(x.grad());
    Tensor<int32_t, Cuda> idx(ys);
    cuda::max_pool1d_forward(ps, dx.data(), dy.data(), idx.data());
    cuda::max_pool1d_backward(ps, idx.data(), dg.data(), ddx.data());
    check_close(host(dy), want, "max_pool1d forward", 0.0);
    check_close(host(ddx), twice(x.grad()), "max_pool1d backward");
    DTensor dy2(ys);
    cuda::max_pool1d_forward(ps, dx.data(), dy2.data(), nullptr);  // inference: no indices
    CHECK(bitwise_equal(dy, dy2));
  }
}

// ---------------------------------------------------------------------------
// LayerNorm.

TEST_CASE("cuda: layer_norm matches the CPU op") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  for (int64_t C : {48, 7, 300}) {
    for (int affine = 0; affine < 2; ++affine) {
      INFO("C ", C, " affine ", affine);
      Rng rng(5 + C + affine);
      const Shape s{2, 37, C};
      Tensor<float> xv = randn(s, rng, 3.0);
      const Tensor<float> gv = randn(Shape{C}, rng), bv = randn(Shape{C}, rng), seed = randn(s, rng);
      for (int64_t i = 0; i < xv.numel(); ++i) xv[i] += 5.f;  // offset mean
      VarF x = param(xv), g = affine ? param(gv) : VarF(), b = affine ? param(bv) : VarF();
      const Tensor<float> want = run_cpu(layer_norm(x, g, b, 1e-5f), seed);
      const int64_t rows = 2 * 37;
      DTensor dx = dev(xv), dgam = dev(gv), dbet = dev(bv), dy(s), stats(Shape{rows, 2}), dseed = dev(seed);
      cuda::layer_norm_forward(rows, C, dx.data(), affine ? dgam.data() : nullptr, affine ? dbet.data() : nullptr,
                               1e-5f, dy.data(), stats.data());
      check_close(host(dy), want, "layer_norm forward");
      DTensor ddx = dev(x.grad());
      DTensor ddg = affine ? dev(g.grad()) : DTensor(), ddb = affine ? dev(b.grad()) : DTensor();
      cuda::layer_norm_backward(rows, C, dx.data(), affine ? dgam.data() : nullptr, stats.data(), dseed.data(),
                                ddx.data(), affine ? ddg.data() : nullptr, affine ? ddb.data() : nullptr);
      check_close(host(ddx), twice(x.grad()), "layer_norm dx");
      if (affine) {
        check_close(host(ddg), twice(g.grad()), "layer_norm dgamma");
        check_close(host(ddb), twice(b.grad()), "layer_norm dbeta");
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Masked conv1d.

TEST_CASE("cuda: conv1d matches the CPU op (dense, strided, grouped, depthwise, masked)") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  struct Case {
    int64_t B, T, Cin, Cout, K;
    int s, p, G;
    bool bias;
    std::vector<int> lengths;
  };
  const std::vector<Case> cases{
      {2, 19, 16, 24, 3, 1, 1, 1, true, {19, 11}},   // MaskedConv1D k3
      {2, 19, 16, 24, 3, 2, 1, 1, true, {19, 10}},   // downsampling
      {2, 20, 12, 12, 3, 1, 1, 12, true, {20, 7}},   // depthwise
      {2, 20, 12, 12, 5, 2, 2, 12, false, {}},       // depthwise, strided, no mask
      {1, 17, 8, 12, 3, 1, 1, 4, true, {13}},        // grouped
      {2, 15, 6, 10, 1, 1, 0, 1, false, {15, 4}},    // 1x1 projection
      {2, 16, 8, 8, 4, 2, 0, 1, true, {16, 3}},      // kernel > stride, no padding
      {2, 9, 5, 7, 3, 1, 2, 1, true, {9, 0}},        // padding beyond K/2, an empty element
  };
  for (const Case& c : cases) {
    INFO("B ", c.B, " T ", c.T, " Cin ", c.Cin, " Cout ", c.Cout, " K ", c.K, " stride ", c.s, " padding ", c.p,
         " groups ", c.G);
    Rng rng(6 + c.T * 7 + c.G);
    const Tensor<float> xv = randn(Shape{c.B, c.T, c.Cin}, rng), wv = randn(Shape{c.Cout, c.Cin / c.G, c.K}, rng, 0.3),
                        bv = randn(Shape{c.Cout}, rng);
    Conv1dOptions opt;
    opt.stride = c.s, opt.padding = c.p, opt.groups = c.G, opt.lengths = c.lengths;
    VarF x = param(xv), w = param(wv), b = c.bias ? param(bv) : VarF();
    VarF y = conv1d(x, w, b, opt);
    const Tensor<float> seed = randn(y.shape(), rng);
    const Tensor<float> want = run_cpu(y, seed);
    cuda::Conv1dShape cs;
    cs.B = c.B, cs.T = c.T, cs.Cin = c.Cin, cs.Cout = c.Cout, cs.K = c.K, cs.stride = c.s, cs.padding = c.p,
    cs.groups = c.G;
    REQUIRE(cs.out_length() == want.size(1));
    const int* len = c.lengths.empty() ? nullptr : c.lengths.data();
    DTensor dx = dev(xv), dw = dev(wv), db = dev(bv), dy(want.shape()), dseed = dev(seed);
    cuda::conv1d_forward(cs, dx.data(), dw.data(), c.bias ? db.data() : nullptr, len, dy.data());
    check_close(host(dy), want, "conv1d forward");
    DTensor ddx = dev(x.grad()), ddw = dev(w.grad()), ddb = c.bias ? dev(b.grad()) : DTensor();
    cuda::conv1d_backward(cs, dx.data(), dw.data(), len, dseed.data(), ddx.data(), ddw.data(),
                          c.bias ? ddb.data() : nullptr);
    check_close(host(ddx), twice(x.grad()), "conv1d dx");
    check_close(host(ddw), twice(w.grad()), "conv1d dweight");
    if (c.bias) check_close(host(ddb), twice(b.grad()), "conv1d dbias");
  }
}

// ---------------------------------------------------------------------------
// Masked local / global attention.

TEST_CASE("cuda: local_attention matches the CPU op (local windows, global, masks, head sizes)") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  struct Case {
    int64_t B, T, C;
    int H, window;
    std::vector<int> lengths;
  };
  const std::vector<Case> cases{
      {2, 23, 32, 4, 5, {23, 14}},  // head_dim 8, padded keys inside windows
      {2, 16, 64, 2, 9, {16, 5}},   // head_dim 32
      {1, 12, 80, 2, 19, {}},       // head_dim 40, window wider than the sequence
      {2, 21, 48, 1, 1, {21, 9}},   // global, head_dim 48
      {2, 10, 16, 2, 0, {10, 0}},   // global with an empty element
      {1, 7, 512, 1, 3, {6}},       // head_dim 512 (16 values per lane)
      {2, 13, 384, 2, 7, {13, 8}},  // head_dim 192 (8 values per lane, partly used)
  };
  for (const Case& c : cases) {
    INFO("B ", c.B, " T ", c.T, " C ", c.C, " heads ", c.H, " window ", c.window);
    Rng rng(7 + c.T + c.C);
    const Shape s{c.B, c.T, c.C};
    const Tensor<float> qv = randn(s, rng), kv = randn(s, rng), vv = randn(s, rng), seed = randn(s, rng);
    VarF q = param(qv), k = param(kv), v = param(vv);
    const Tensor<float> want = run_cpu(local_attention(q, k, v, c.H, c.window, c.lengths), seed);
    cuda::AttentionShape as;
    as.B = c.B, as.T = c.T, as.C = c.C, as.heads = c.H, as.window = c.window;
    const int* len = c.lengths.empty() ? nullptr : c.lengths.data();
    DTensor dq = dev(qv), dk = dev(kv), dv = dev(vv), dy(s), stats(Shape{c.B, c.H, c.T, 2}), dseed = dev(seed);
    cuda::local_attention_forward(as, dq.data(), dk.data(), dv.data(), len, dy.data(), stats.data());
    check_close(host(dy), want, "attention forward");
    DTensor gq = dev(q.grad()), gk = dev(k.grad()), gv = dev(v.grad());
    cuda::local_attention_backward(as, dq.data(), dk.data(), dv.data(), len, dy.data(), stats.data(), dseed.data(),
                                   gq.data(), gk.data(), gv.data());
    check_close(host(gq), twice(q.grad()), "attention dq");
    check_close(host(gk), twice(k.grad()), "attention dk");
    check_close(host(gv), twice(v.grad()), "attention dv");
    // Only some gradients requested.
    DTensor gv2 = dev(v.grad());
    cuda::local_attention_backward(as, dq.data(), dk.data(), dv.data(), len, dy.data(), stats.data(), dseed.data(),
                                   nullptr, nullptr, gv2.data());
    check_close(host(gv2), twice(v.grad()), "attention dv alone");
  }
}

// ---------------------------------------------------------------------------
// Losses.

TEST_CASE("cuda: sigmoid_focal_loss matches the CPU op") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  struct Case {
    float alpha, gamma;
  };
  for (Case c : {Case{0.25f, 2.f}, Case{-1.f, 0.f}, Case{0.5f, 1.5f}, Case{0.25f, 1.f}}) {
    INFO("alpha ", c.alpha, " gamma ", c.gamma);
    Rng rng(8);
    const Shape s{53, 7};
    const Tensor<float> xv = randn(s, rng, 3.0);
    Tensor<float> tv(s);
    for (int64_t i = 0; i < tv.numel(); ++i) tv[i] = i % 3 == 0 ? float(rng.uniform()) : float(rng.uniform() < 0.2);
    VarF x = param(xv);
    Tensor<float> seed = Tensor<float>::full(Shape{}, 0.7f);
    const Tensor<float> want = run_cpu(sigmoid_focal_loss(x, tv, c.alpha, c.gamma), seed);
    DTensor dx = dev(xv), dt = dev(tv), loss(Shape{}), dseed = dev(seed), ddx = dev(x.grad());
    cuda::sigmoid_focal_loss_forward(xv.numel(), dx.data(), dt.data(), c.alpha, c.gamma, loss.data());
    cuda::sigmoid_focal_loss_backward(xv.numel(), dx.data(), dt.data(), c.alpha, c.gamma, dseed.data(), ddx.data());
    check_close(host(loss), want, "focal loss");
    check_close(host(ddx), twice(x.grad()), "focal loss gradient");
  }
}

TEST_CASE("cuda: diou_loss_1d matches the CPU op (ties included)") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  Rng rng(9);
  const int64_t N = 61;
  Tensor<float> pv(Shape{N, 2}), tv(Shape{N, 2});
  for (int64_t i = 0; i < 2 * N; ++i) {
    pv[i] = float(0.05 + 3 * rng.uniform());
    tv[i] = float(0.05 + 3 * rng.uniform());
  }
  for (int64_t r = 0; r < N; r += 5) pv[2 * r] = tv[2 * r];  // min/max ties split the gradient
  VarF p = param(pv);
  Tensor<float> seed = Tensor<float>::full(Shape{}, 1.3f);
  const Tensor<float> want = run_cpu(diou_loss_1d(p, tv, 1e-8f), seed);
  DTensor dp = dev(pv), dt = dev(tv), loss(Shape{}), dseed = dev(seed), ddp = dev(p.grad());
  cuda::diou_loss_1d_forward(N, dp.data(), dt.data(), 1e-8f, loss.data());
  cuda::diou_loss_1d_backward(N, dp.data(), dt.data(), 1e-8f, dseed.data(), ddp.data());
  check_close(host(loss), want, "diou loss");
  check_close(host(ddp), twice(p.grad()), "diou loss gradient");
  // Empty input: a zero loss.
  cuda::diou_loss_1d_forward(0, dp.data(), dt.data(), 1e-8f, loss.data());
  CHECK(loss.to_vector()[0] == 0.f);
}

// ---------------------------------------------------------------------------
// Optimiser.

TEST_CASE("cuda: adamw_step, sum_squares and scale_inplace match train::AdamW / clip_grad_norm") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  Rng rng(10);
  const int64_t n = 5003;
  const double lr = 1e-3, wd = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  VarF p = param(randn(Shape{n}, rng));
  DTensor dp = dev(p.value()), dm = DTensor::zeros(Shape{n}), dv = DTensor::zeros(Shape{n});
  train::AdamW<float> opt({train::AdamW<float>::ParamGroup({&p}, wd)}, lr, {b1, b2}, eps);
  for (int64_t step = 1; step <= 3; ++step) {
    const Tensor<float> g = randn(Shape{n}, rng, 0.1 * double(step));
    p.grad() = g.clone();
    opt.step();
    DTensor dg = dev(g);
    cuda::adamw_step(n, cuda::AdamWScalars::make(lr, wd, b1, b2, eps, step), dp.data(), dg.data(), dm.data(),
                     dv.data());
  }
  check_close(host(dp), p.value(), "adamw parameters");
  const auto state = opt.state_dict();
  check_close(host(dm), state.at("group0.0.exp_avg"), "adamw exp_avg");
  check_close(host(dv), state.at("group0.0.exp_avg_sq"), "adamw exp_avg_sq");

  const Tensor<float> g = randn(Shape{n}, rng, 0.3);
  DTensor dg = dev(g);
  const double want = train::detail::sum_squares(g.data(), n);
  CHECK(cuda::sum_squares(n, dg.data()) == doctest::Approx(want).epsilon(1e-5));  // the CPU sums blocks of 256 in float
  CHECK(cuda::sum_squares(0, dg.data()) == 0.0);
  cuda::scale_inplace(n, 0.25f, dg.data());
  Tensor<float> scaled = g.clone();
  for (int64_t i = 0; i < n; ++i) scaled[i] *= 0.25f;
  check_close(host(dg), scaled, "scale_inplace", 0.0);
}

// ---------------------------------------------------------------------------
// Determinism.

TEST_CASE("cuda: repeated runs are bitwise identical (no atomics)") {
  FLOWLESS_SKIP_WITHOUT_GPU();
  Rng rng(11);
  const Shape s{2, 40, 64};
  DTensor x = dev(randn(s, rng)), k = dev(randn(s, rng)), v = dev(randn(s, rng)), g = dev(randn(s, rng));
  const std::vector<int> lengths{40, 27};
  cuda::AttentionShape as;
  as.B = 2, as.T = 40, as.C = 64, as.heads = 4, as.window = 9;
  DTensor y(s), stats(Shape{2, 4, 40, 2});
  cuda::local_attention_forward(as, x.data(), k.data(), v.data(), lengths.data(), y.data(), stats.data());
  cuda::Conv1dShape cs;
  cs.B = 2, cs.T = 40, cs.Cin = 64, cs.Cout = 64, cs.K = 3, cs.padding = 1;
  DTensor w = dev(randn(Shape{64, 64, 3}, rng, 0.1));
  std::vector<DTensor> runs;
  for (int rep = 0; rep < 2; ++rep) {
    DTensor dq = DTensor::zeros(s), dk = DTensor::zeros(s), dv = DTensor::zeros(s), dx = DTensor::zeros(s),
            dw = DTensor::zeros(Shape{64, 64, 3}), db = DTensor::zeros(Shape{64}), dgam = DTensor::zeros(Shape{64});
    cuda::local_attention_backward(as, x.data(), k.data(), v.data(), lengths.data(), y.data(), stats.data(), g.data(),
                                   dq.data(), dk.data(), dv.data());
    cuda::conv1d_backward(cs, x.data(), w.data(), lengths.data(), g.data(), dx.data(), dw.data(), db.data());
    DTensor ln_stats(Shape{80, 2}), ln_y(s);
    cuda::layer_norm_forward(80, 64, x.data(), nullptr, nullptr, 1e-5f, ln_y.data(), ln_stats.data());
    cuda::layer_norm_backward(80, 64, x.data(), nullptr, ln_stats.data(), g.data(), nullptr, dgam.data(), nullptr);
    runs.insert(runs.end(), {dq, dk, dv, dx, dw, db, dgam});
  }
  for (size_t i = 0; i < runs.size() / 2; ++i) {
    INFO("output ", i);
    CHECK(bitwise_equal(runs[i], runs[i + runs.size() / 2]));
  }
}

#endif  // FLOWLESS_WITH_CUDA
