// Basic differentiable ops: elementwise/shape ops, activations, layer_norm,
// max_pool1d, drop_path. Forward against naive or hand values, gradients
// against finite differences (double), thread-count independence.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "flowless/ops/activations.hpp"
#include "flowless/ops/drop_path.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/layer_norm.hpp"
#include "flowless/ops/pooling.hpp"
#include "gradcheck.hpp"

using namespace flowless;
using flowless::test::check_gradients;
using flowless::test::random_tensor;

namespace {

using VarD = Var<double>;
using Vars = std::vector<VarD>;

VarD param(const Shape& s, Rng& rng, double scale = 1.0) { return VarD::parameter(random_tensor(s, rng, scale)); }
VarD constant(const std::vector<double>& v, const Shape& s) { return VarD(Tensor<double>::from_vector(v, s)); }
VarD leaf(const std::vector<double>& v, const Shape& s) { return VarD::parameter(Tensor<double>::from_vector(v, s)); }

std::vector<double> values(const VarD& v) { return v.value().to_vector(); }

void check_close(const std::vector<double>& got, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i);
    CHECK(std::abs(got[i] - want[i]) <= tol * std::max(1.0, std::abs(want[i])));
  }
}

template <class T>
bool bitwise_equal(const Tensor<T>& a, const Tensor<T>& b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), sizeof(T) * a.numel()) == 0;
}

}  // namespace

// ---------------------------------------------------------------------------
// Elementwise and shape ops.

TEST_CASE("ops: elementwise forward hand values") {
  VarD a = constant({1, 2, 3, 4, 5, 6}, Shape{2, 3});
  VarD b = constant({6, 5, 4, 3, 2, 1}, Shape{2, 3});
  check_close(values(add(a, b)), {7, 7, 7, 7, 7, 7});
  check_close(values(sub(a, b)), {-5, -3, -1, 1, 3, 5});
  check_close(values(mul(a, b)), {6, 10, 12, 12, 10, 6});
  check_close(values(scale(a, 0.5)), {0.5, 1, 1.5, 2, 2.5, 3});
  check_close(values(mul_scalar(a, constant({-2}, Shape{}))), {-2, -4, -6, -8, -10, -12});
  // LayerScale stored as (1, C, 1) and a plain (C) bias.
  check_close(values(mul_channels(a, constant({1, 10, 100}, Shape{1, 3, 1}))), {1, 20, 300, 4, 50, 600});
  check_close(values(add_channels(a, constant({1, 10, 100}, Shape{3}))), {2, 12, 103, 5, 15, 106});
  CHECK(add(a, b).shape() == Shape{2, 3});

  VarD s = sum(a), m = mean(a);
  CHECK(s.shape() == Shape{});
  CHECK(s.value().numel() == 1);
  CHECK(s.value()[0] == 21.0);
  CHECK(m.value()[0] == 3.5);

  CHECK_THROWS_AS(add(a, constant({1, 2, 3, 4, 5, 6}, Shape{3, 2})), Error);
  CHECK_THROWS_AS(mul_scalar(a, constant({1, 2}, Shape{2})), Error);
  CHECK_THROWS_AS(mul_channels(a, constant({1, 2}, Shape{2})), Error);
  CHECK_THROWS_AS(add_channels(a, constant({1, 2, 3, 4}, Shape{4})), Error);
}

TEST_CASE("ops: mask_time zeroes the padded tail of each batch element") {
  // x (2, 3, 2)
  VarD x = constant({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, Shape{2, 3, 2});
  check_close(values(mask_time(x, {2, 5})), {1, 2, 3, 4, 0, 0, 7, 8, 9, 10, 11, 12});
  check_close(values(mask_time(x, {0, 1})), {0, 0, 0, 0, 0, 0, 7, 8, 0, 0, 0, 0});
  VarD same = mask_time(x, {});
  CHECK(same.node() == x.node());
  CHECK_THROWS_AS(mask_time(x, {1}), Error);
  CHECK_THROWS_AS(mask_time(x, {1, -1}), Error);
}

TEST_CASE("ops: concat / narrow over channels and time, gather_rows, reshape") {
  VarD a = constant({1, 2, 3, 4}, Shape{1, 2, 2});
  VarD b = constant({5, 6, 7, 8, 9, 10}, Shape{1, 2, 3});
  VarD cc = concat_channels<double>({a, b});
  CHECK(cc.shape() == Shape{1, 2, 5});
  check_close(values(cc), {1, 2, 5, 6, 7, 3, 4, 8, 9, 10});
  VarD nc = narrow_channels(cc, 1, 3);
  CHECK(nc.shape() == Shape{1, 2, 3});
  check_close(values(nc), {2, 5, 6, 4, 8, 9});
  CHECK_THROWS_AS(narrow_channels(cc, 3, 3), Error);
  CHECK_THROWS_AS(concat_channels<double>({a, constant({1, 2, 3}, Shape{1, 3, 1})}), Error);

  // (2, T_i, 2) along time.
  VarD p = constant({1, 2, 3, 4}, Shape{2, 1, 2});
  VarD q = constant({5, 6, 7, 8, 9, 10, 11, 12}, Shape{2, 2, 2});
  VarD ct = concat_time<double>({p, q});
  CHECK(ct.shape() == Shape{2, 3, 2});
  check_close(values(ct), {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  VarD nt = narrow_time(ct, 1, 2);
  CHECK(nt.shape() == Shape{2, 2, 2});
  check_close(values(nt), {5, 6, 7, 8, 9, 10, 11, 12});
  CHECK_THROWS_AS(narrow_time(ct, 2, 2), Error);
  CHECK_THROWS_AS(concat_time<double>({p, constant({1, 2, 3}, Shape{1, 1, 3})}), Error);

  // gather_rows views (2, 3, 2) as (6, 2).
  VarD g = gather_rows(ct, {5, 0, 5, 2});
  CHECK(g.shape() == Shape{4, 2});
  check_close(values(g), {11, 12, 1, 2, 11, 12, 7, 8});
  CHECK_THROWS_AS(gather_rows(ct, {6}), Error);
  CHECK_THROWS_AS(gather_rows(ct, {-1}), Error);

  VarD r = reshape(ct, Shape{3, 4});
  CHECK(r.shape() == Shape{3, 4});
  check_close(values(r), values(ct));
  CHECK_THROWS_AS(reshape(ct, Shape{5}), Error);
}

TEST_CASE("ops: gather_rows backward scatter-adds duplicates") {
  VarD x = leaf({1, 2, 3, 4, 5, 6}, Shape{3, 2});
  VarD y = gather_rows(x, {2, 0, 2, 2});
  backward(y, Tensor<double>::from_vector({1, 2, 3, 4, 5, 6, 7, 8}, Shape{4, 2}));
  check_close(x.grad().to_vector(), {3, 4, 0, 0, 1 + 5 + 7, 2 + 6 + 8});
}

TEST_CASE("ops: gradients of elementwise and shape ops match finite differences") {
  Rng rng(11);
  const Shape s{2, 5, 3};
  SUBCASE("add / sub / mul, including the same input twice") {
    check_gradients([](Vars& v) { return add(v[0], v[1]); }, {param(s, rng), param(s, rng)});
    check_gradients([](Vars& v) { return sub(v[0], v[1]); }, {param(s, rng), param(s, rng)});
    check_gradients([](Vars& v) { return mul(v[0], v[1]); }, {param(s, rng), param(s, rng)});
    check_gradients([](Vars& v) { return mul(v[0], v[0]); }, {param(s, rng)});
    check_gradients([](Vars& v) { return sub(v[0], v[0]); }, {param(s, rng)});
    // One side a constant.
    VarD c(random_tensor(s, rng));
    check_gradients([c](Vars& v) { return mul(c, v[0]); }, {param(s, rng)});
  }
  SUBCASE("scale / mul_scalar / mul_channels / add_channels") {
    check_gradients([](Vars& v) { return scale(v[0], -1.7); }, {param(s, rng)});
    check_gradients([](Vars& v) { return mul_scalar(v[0], v[1]); }, {param(s, rng), param(Shape{}, rng)});
    check_gradients([](Vars& v) { return mul_channels(v[0], v[1]); }, {param(s, rng), param(Shape{1, 3, 1}, rng)});
    check_gradients([](Vars& v) { return add_channels(v[0], v[1]); }, {param(s, rng), param(Shape{3}, rng)});
  }
  SUBCASE("mask_time / sum / mean") {
    check_gradients([](Vars& v) { return mask_time(v[0], {3, 0}); }, {param(s, rng)});
    check_gradients([](Vars& v) { return mask_time(v[0], {5, 2}); }, {param(s, rng)});
    check_gradients([](Vars& v) { return sum(v[0]); }, {param(s, rng)});
    check_gradients([](Vars& v) { return mean(v[0]); }, {param(s, rng)});
  }
  SUBCASE("concat / narrow / gather / reshape") {
    check_gradients([](Vars& v) { return concat_channels<double>({v[0], v[1], v[0]}); },
                    {param(s, rng), param(Shape{2, 5, 4}, rng)});
    check_gradients([](Vars& v) { return narrow_channels(v[0], 1, 2); }, {param(s, rng)});
    check_gradients([](Vars& v) { return concat_time<double>({v[0], v[1]}); },
                    {param(s, rng), param(Shape{2, 2, 3}, rng)});
    check_gradients([](Vars& v) { return narrow_time(v[0], 1, 3); }, {param(s, rng)});
    check_gradients([](Vars& v) { return gather_rows(v[0], {9, 0, 3, 9, 9, 4}); }, {param(s, rng)});
    check_gradients([](Vars& v) { return reshape(mul(v[0], v[0]), Shape{10, 3}); }, {param(s, rng)});
  }
}

// ---------------------------------------------------------------------------
// Activations.

TEST_CASE("ops: activations forward against their formulas") {
  Rng rng(3);
  Tensor<double> xd = random_tensor(Shape{4, 7, 33}, rng, 3.0);
  xd[0] = 0.0;
  xd[1] = -12.0;
  xd[2] = 12.0;
  Tensor<float> xf = cast<float>(xd);
  VarD x(xd);
  Var<float> x32(xf);
  const auto yr = values(relu(x)), yg = values(gelu(x)), ys = values(sigmoid(x)), yt = values(flowless::tanh(x));
  const auto fg = gelu(x32).value().to_vector(), fs = sigmoid(x32).value().to_vector();
  const auto ft = flowless::tanh(x32).value().to_vector();
  for (int64_t i = 0; i < xd.numel(); ++i) {
    const double v = xd[i];
    INFO("x = ", v);
    CHECK(yr[i] == std::max(v, 0.0));
    const double g = 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0)));
    CHECK(std::abs(yg[i] - g) <= 1e-14 * std::max(1.0, std::abs(g)));
    const double sg = 1.0 / (1.0 + std::exp(-v));
    CHECK(std::abs(ys[i] - sg) <= 1e-15);
    CHECK(std::abs(yt[i] - std::tanh(v)) <= 1e-15);
    // float versions (vectorised erf/exp/tanh) stay within a few float ulps.
    const double vf = double(xf[i]);
    const double gf = 0.5 * vf * (1.0 + std::erf(vf / std::sqrt(2.0)));
    CHECK(std::abs(double(fg[i]) - gf) <= 1e-6 * std::max(1.0, std::abs(gf)));
    CHECK(std::abs(double(fs[i]) - 1.0 / (1.0 + std::exp(-vf))) <= 1e-6);
    CHECK(std::abs(double(ft[i]) - std::tanh(vf)) <= 1e-6);
  }
  // GELU hand values (exact erf form, not the tanh approximation).
  VarD h = constant({1.0, -1.0, 3.0}, Shape{3});
  check_close(values(gelu(h)), {0.8413447460685429, -0.15865525393145707, 2.99595030590511}, 1e-15);
}

TEST_CASE("ops: softmax rows sum to 1 and are stable for large inputs") {
  VarD big = constant({1000, 1001, 1002, -1000, -1001, -1002}, Shape{2, 3});
  const auto y = values(softmax(big));
  const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
  check_close(y, {std::exp(-2.0) / z, std::exp(-1.0) / z, 1 / z, 1 / z, std::exp(-1.0) / z, std::exp(-2.0) / z}, 1e-15);
  for (double v : y) CHECK(std::isfinite(v));

  Rng rng(5);
  Tensor<double> xd = random_tensor(Shape{3, 4, 19}, rng, 10.0);
  const auto yd = values(softmax(VarD(xd)));
  const auto yf = softmax(Var<float>(cast<float>(xd))).value().to_vector();
  for (int64_t r = 0; r < 12; ++r) {
    double m = -1e300, s = 0, sd = 0, sf = 0;
    for (int c = 0; c < 19; ++c) m = std::max(m, xd[r * 19 + c]);
    for (int c = 0; c < 19; ++c) s += std::exp(xd[r * 19 + c] - m);
    for (int c = 0; c < 19; ++c) {
      const double want = std::exp(xd[r * 19 + c] - m) / s;
      CHECK(std::abs(yd[r * 19 + c] - want) <= 1e-15);
      CHECK(std::abs(double(yf[r * 19 + c]) - want) <= 2e-6);
      sd += yd[r * 19 + c];
      sf += yf[r * 19 + c];
    }
    CHECK(std::abs(sd - 1) < 1e-14);
    CHECK(std::abs(sf - 1) < 1e-5);
  }
  // Softmax is invariant to adding a constant per row.
  Tensor<double> shifted = xd.clone();
  for (int64_t i = 0; i < shifted.numel(); ++i) shifted[i] += 500.0;
  check_close(values(softmax(VarD(shifted))), yd, 1e-13);
}

TEST_CASE("ops: gradients of activations match finite differences") {
  Rng rng(21);
  const Shape s{2, 4, 6};
  check_gradients([](Vars& v) { return relu(v[0]); }, {param(s, rng)});
  check_gradients([](Vars& v) { return gelu(v[0]); }, {param(s, rng, 2.0)});
  check_gradients([](Vars& v) { return sigmoid(v[0]); }, {param(s, rng, 2.0)});
  check_gradients([](Vars& v) { return flowless::tanh(v[0]); }, {param(s, rng, 2.0)});
  check_gradients([](Vars& v) { return softmax(v[0]); }, {param(s, rng, 2.0)});
  check_gradients([](Vars& v) { return softmax(v[0]); }, {param(Shape{5, 19}, rng, 3.0)});
}

// ---------------------------------------------------------------------------
// LayerNorm.

namespace {
std::vector<double> layer_norm_ref(const Tensor<double>& x, const double* g, const double* b, double eps) {
  const int64_t C = x.size(x.dim() - 1), R = x.numel() / C;
  std::vector<double> y(x.numel());
  for (int64_t r = 0; r < R; ++r) {
    double mu = 0, var = 0;
    for (int64_t c = 0; c < C; ++c) mu += x[r * C + c];
    mu /= double(C);
    for (int64_t c = 0; c < C; ++c) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
    var /= double(C);
    for (int64_t c = 0; c < C; ++c) {
      double v = (x[r * C + c] - mu) / std::sqrt(var + eps);
      if (g) v *= g[c];
      if (b) v += b[c];
      y[r * C + c] = v;
    }
  }
  return y;
}
}  // namespace

TEST_CASE("ops: layer_norm matches the direct formula (affine, partial and none)") {
  Rng rng(8);
  Tensor<double> x = random_tensor(Shape{2, 5, 7}, rng, 3.0);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] += 10.0;  // a large mean tests the two-pass variance
  Tensor<double> g = random_tensor(Shape{1, 7, 1}, rng), b = random_tensor(Shape{1, 7, 1}, rng);
  VarD xv(x), gv(g), bv(b);
  check_close(values(layer_norm(xv, gv, bv)), layer_norm_ref(x, g.data(), b.data(), 1e-5), 1e-13);
  check_close(values(layer_norm(xv, gv, VarD())), layer_norm_ref(x, g.data(), nullptr, 1e-5), 1e-13);
  check_close(values(layer_norm(xv, VarD(), bv)), layer_norm_ref(x, nullptr, b.data(), 1e-5), 1e-13);
  check_close(values(layer_norm(xv, VarD(), VarD(), 0.1)), layer_norm_ref(x, nullptr, nullptr, 0.1), 1e-13);
  // Hand values: row (1, 2, 3) -> mean 2, biased var 2/3.
  VarD h = constant({1, 2, 3}, Shape{1, 1, 3});
  const double d = std::sqrt(2.0 / 3.0 + 1e-5);
  check_close(values(layer_norm(h, VarD(), VarD())), {-1 / d, 0, 1 / d}, 1e-15);
  // float: two-pass keeps precision with a large offset.
  Tensor<float> xf = cast<float>(x);
  for (int64_t i = 0; i < xf.numel(); ++i) xf[i] += 1000.f;
  Tensor<double> xo = cast<double>(xf);
  const auto want = layer_norm_ref(xo, g.data(), b.data(), 1e-5);
  const auto got = layer_norm(Var<float>(xf), Var<float>(cast<float>(g)), Var<float>(cast<float>(b))).value().to_vector();
  for (size_t i = 0; i < want.size(); ++i) CHECK(std::abs(double(got[i]) - want[i]) < 1e-4);
  CHECK_THROWS_AS(layer_norm(xv, VarD(Tensor<double>::zeros(Shape{6})), bv), Error);
}

TEST_CASE("ops: layer_norm gradients match finite differences") {
  Rng rng(9);
  const Shape s{2, 6, 5};
  check_gradients([](Vars& v) { return layer_norm(v[0], v[1], v[2]); },
                  {param(s, rng, 2.0), param(Shape{1, 5, 1}, rng), param(Shape{1, 5, 1}, rng)});
  check_gradients([](Vars& v) { return layer_norm(v[0], VarD(), VarD()); }, {param(s, rng, 2.0)});
  check_gradients([](Vars& v) { return layer_norm(v[0], v[1], VarD()); }, {param(s, rng, 2.0), param(Shape{5}, rng)});
  // Only the affine parameters require grad.
  VarD xc(random_tensor(s, rng));
  check_gradients([xc](Vars& v) { return layer_norm(xc, v[0], v[1]); }, {param(Shape{5}, rng), param(Shape{5}, rng)});
}

// ---------------------------------------------------------------------------
// Max pooling.

namespace {
// Naive PyTorch MaxPool1d on (B, T, C): -inf padding at the ends, first max wins.
std::vector<double> maxpool_ref(const Tensor<double>& x, int k, int s, int p) {
  const int64_t B = x.size(0), Tn = x.size(1), C = x.size(2), To = (Tn + 2 * p - k) / s + 1;
  std::vector<double> y(B * To * C);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < To; ++t)
      for (int64_t c = 0; c < C; ++c) {
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = t * s - p; j < t * s - p + k; ++j)
          if (j >= 0 && j < Tn) m = std::max(m, x[(b * Tn + j) * C + c]);
        y[(b * To + t) * C + c] = m;
      }
  return y;
}
}  // namespace

TEST_CASE("ops: max_pool1d forward matches the naive definition") {
  Rng rng(4);
  Tensor<double> x = random_tensor(Shape{2, 11, 5}, rng);
  struct Cfg { int k, s, p; };
  for (Cfg c : {Cfg{3, 2, 1}, Cfg{3, 1, 1}, Cfg{2, 2, 0}, Cfg{5, 3, 2}, Cfg{1, 1, 0}, Cfg{4, 2, 2}}) {
    INFO("k ", c.k, " s ", c.s, " p ", c.p);
    VarD y = max_pool1d(VarD(x), c.k, c.s, c.p);
    CHECK(y.shape() == Shape{2, (11 + 2 * c.p - c.k) / c.s + 1, 5});
    check_close(values(y), maxpool_ref(x, c.k, c.s, c.p), 0);
  }
  // Hand values, one channel: T = 6, k3 s2 p1 -> windows [-1,1], [1,3], [3,5].
  VarD h = constant({1, 5, 2, -3, 4, 0}, Shape{1, 6, 1});
  check_close(values(max_pool1d(h, 3, 2, 1)), {5, 5, 4}, 0);
  CHECK_THROWS_AS(max_pool1d(h, 3, 2, 2), Error);  // padding > kernel / 2
  CHECK_THROWS_AS(max_pool1d(constant({1, 2}, Shape{2, 1}), 1, 1, 0), Error);
  CHECK_THROWS_AS(max_pool1d(h, 9, 1, 0), Error);
}

TEST_CASE("ops: max_pool1d quirk - a zero padded tail beats all-negative valid values") {
  // Two videos of valid length 3 padded to 6 (tails masked to 0): all valid values negative.
  VarD x = constant({-1, -2, -3, 0, 0, 0, -5, -6, -4, 0, 0, 0}, Shape{2, 6, 1});
  VarD y = max_pool1d(x, 3, 2, 1);  // windows [-1,1], [1,3], [3,5]
  // Window [1,3] straddles the last valid step (t = 2) and the first padded zero (t = 3):
  // it returns 0, not max(-2, -3) = -2 or max(-6, -4) = -4.
  check_close(values(y), {-1, 0, 0, -5, 0, 0}, 0);
  // TemporalMaxer then keeps ceil(3 / 2) = 2 steps: the 0 at output t = 1 survives the mask,
  // exactly as in the reference.
  CHECK(pooled_lengths({3, 4, 0}, 2) == std::vector<int>{2, 2, 0});
  check_close(values(mask_time(y, pooled_lengths({3, 3}, 2))), {-1, 0, 0, -5, 0, 0}, 0);
  // Only the two array ends are -inf: a fully negative sequence with no tail.
  VarD z = constant({-3, -1, -2, -7}, Shape{1, 4, 1});
  check_close(values(max_pool1d(z, 3, 2, 1)), {-1, -1}, 0);
}

TEST_CASE("ops: max_pool1d gradient goes to the first maximum and accumulates") {
  // Ties: window [1,3] of k3 s2 p1 holds 7, 7, 7 -> grad to t = 1 (the first).
  VarD x = leaf({0, 7, 7, 7, 1}, Shape{1, 5, 1});
  VarD y = max_pool1d(x, 3, 2, 1);  // windows [-1,1] [1,3] [3,5]: maxima at 1, 1, 3
  check_close(values(y), {7, 7, 7}, 0);
  backward(y, Tensor<double>::from_vector({1, 10, 100}, Shape{1, 3, 1}));
  check_close(x.grad().to_vector(), {0, 11, 0, 100, 0}, 0);
  // All -inf window: the index is the window's first element (PyTorch).
  const double inf = std::numeric_limits<double>::infinity();
  VarD w = leaf({-inf, -inf, 2}, Shape{1, 3, 1});
  VarD yw = max_pool1d(w, 2, 1, 0);
  CHECK(yw.value()[0] == -inf);
  backward(yw, Tensor<double>::from_vector({1, 1}, Shape{1, 2, 1}));
  check_close(w.grad().to_vector(), {1, 0, 1}, 0);
  // NaN propagates.
  VarD n = constant({1, std::nan(""), 0}, Shape{1, 3, 1});
  CHECK(std::isnan(max_pool1d(n, 3, 1, 1).value()[0]));
  // No-grad mode records nothing.
  {
    NoGradGuard ng;
    VarD xp = leaf({1, 2, 3}, Shape{1, 3, 1});
    CHECK(!max_pool1d(xp, 3, 2, 1).requires_grad());
  }
}

TEST_CASE("ops: max_pool1d gradients match finite differences (no ties)") {
  // Distinct values spaced far more than the finite-difference step.
  Rng rng(6);
  for (auto [k, s, p] : std::vector<std::array<int, 3>>{{3, 2, 1}, {3, 1, 1}, {2, 2, 0}, {5, 3, 2}}) {
    std::vector<double> v(2 * 9 * 4);
    std::iota(v.begin(), v.end(), 0.0);
    for (size_t i = v.size() - 1; i > 0; --i) std::swap(v[i], v[size_t(rng.randint(0, int64_t(i)))]);
    for (double& e : v) e = 0.1 * e - 3.0;
    check_gradients([k = k, s = s, p = p](Vars& in) { return max_pool1d(in[0], k, s, p); },
                    {leaf(v, Shape{2, 9, 4})});
  }
}

// ---------------------------------------------------------------------------
// DropPath.

TEST_CASE("ops: drop_path is identity in eval or with p = 0, per-sample mask in training") {
  Rng rng(1);
  VarD x = param(Shape{4, 3, 2}, rng);
  CHECK(drop_path(x, 0.3, false, rng).node() == x.node());
  CHECK(drop_path(x, 0.0, true, rng).node() == x.node());
  CHECK_THROWS_AS(drop_path(x, 1.0, true, rng), Error);
  CHECK_THROWS_AS(drop_path(x, -0.1, true, rng), Error);

  // The mask is floor(keep + u_b) with one uniform per sample, in order.
  Rng r1(77), r2(77);
  VarD y = drop_path(x, 0.3, true, r1);
  for (int64_t b = 0; b < 4; ++b) {
    const double m = std::floor(0.7 + r2.uniform());
    for (int64_t i = 0; i < 6; ++i) CHECK(y.value()[b * 6 + i] == (x.value()[b * 6 + i] / 0.7) * m);
  }
  // Keep rate over many samples.
  Rng r3(5);
  VarD many(Tensor<double>::full(Shape{20000, 1}, 1.0));
  VarD ym = drop_path(many, 0.25, true, r3);
  int kept = 0;
  for (int64_t i = 0; i < 20000; ++i) {
    const double v = ym.value()[i];
    CHECK((v == 0.0 || v == 1.0 / 0.75));
    kept += v != 0.0;
  }
  CHECK(std::abs(kept / 20000.0 - 0.75) < 0.015);
}

TEST_CASE("ops: drop_path gradients match finite differences") {
  Rng rng(2);
  // Re-seed inside f so every evaluation draws the same mask; seed 3 keeps some and drops some.
  auto f = [](Vars& v) {
    Rng r(3);
    return drop_path(v[0], 0.5, true, r);
  };
  VarD x = param(Shape{6, 2, 3}, rng);
  {
    Rng r(3);
    VarD y = drop_path(x.detach(), 0.5, true, r);
    int zeros = 0;
    for (int64_t b = 0; b < 6; ++b) zeros += y.value()[b * 6] == 0.0;
    REQUIRE(zeros > 0);
    REQUIRE(zeros < 6);
  }
  check_gradients(f, {x});
}

// ---------------------------------------------------------------------------
// Determinism.

TEST_CASE("ops: layer_norm, sum, max_pool1d, mul_channels, softmax, gelu are bitwise identical for 1 and 2 threads") {
  Rng rng(13);
  Tensor<float> x = cast<float>(random_tensor(Shape{2, 300, 64}, rng, 2.0));
  Tensor<float> g = cast<float>(random_tensor(Shape{1, 64, 1}, rng));
  Tensor<float> b = cast<float>(random_tensor(Shape{1, 64, 1}, rng));
  Tensor<float> seed = cast<float>(random_tensor(Shape{2, 300, 64}, rng));
  struct Out {
    Tensor<float> y, dx, dg, db, s, ds, pool, dpool, mc, dmc, sm, dsm, ge;
  };
  Tensor<float> w19 = cast<float>(random_tensor(Shape{2, 300, 19}, rng, 4.0));
  Tensor<float> seed19 = cast<float>(random_tensor(Shape{2, 300, 19}, rng));
  auto run = [&](int threads) {
    set_num_threads(threads);
    Out o;
    auto xv = Var<float>::parameter(x.clone()), gv = Var<float>::parameter(g.clone()),
         bv = Var<float>::parameter(b.clone());
    Var<float> y = layer_norm(xv, gv, bv);
    backward(y, seed);
    o.y = y.value();
    o.dx = xv.grad();
    o.dg = gv.grad();
    o.db = bv.grad();
    auto xs = Var<float>::parameter(x.clone());
    Var<float> s = sum(mul(xs, xs));
    backward(s);
    o.s = s.value();
    o.ds = xs.grad();
    auto xp = Var<float>::parameter(x.clone());
    Var<float> pooled = max_pool1d(xp, 3, 2, 1);
    backward(pooled, Tensor<float>::full(pooled.shape(), 1.f));
    o.pool = pooled.value();
    o.dpool = xp.grad();
    auto xm = Var<float>::parameter(x.clone()), sc = Var<float>::parameter(g.clone());
    Var<float> mc = mul_channels(xm, sc);
    backward(mc, seed);
    o.mc = mc.value();
    o.dmc = sc.grad();
    auto xw = Var<float>::parameter(w19.clone());
    Var<float> sm = softmax(xw);
    backward(sm, seed19);
    o.sm = sm.value();
    o.dsm = xw.grad();
    o.ge = gelu(Var<float>(x)).value();
    set_num_threads(1);
    return o;
  };
  Out a = run(1), c = run(2);
  CHECK(bitwise_equal(a.y, c.y));
  CHECK(bitwise_equal(a.dx, c.dx));
  CHECK(bitwise_equal(a.dg, c.dg));
  CHECK(bitwise_equal(a.db, c.db));
  CHECK(bitwise_equal(a.s, c.s));
  CHECK(bitwise_equal(a.ds, c.ds));
  CHECK(bitwise_equal(a.pool, c.pool));
  CHECK(bitwise_equal(a.dpool, c.dpool));
  CHECK(bitwise_equal(a.mc, c.mc));
  CHECK(bitwise_equal(a.dmc, c.dmc));
  CHECK(bitwise_equal(a.sm, c.sm));
  CHECK(bitwise_equal(a.dsm, c.dsm));
  CHECK(bitwise_equal(a.ge, c.ge));
  // sum over 38400 floats spans several chunks; it agrees with a double sum.
  double ref = 0;
  for (int64_t i = 0; i < x.numel(); ++i) ref += double(x[i]) * double(x[i]);
  CHECK(std::abs(double(a.s[0]) - ref) < 1e-5 * ref);
}
