// Module system, parameter layers and training utilities (AdamW, gradient
// clipping, LinearWarmupCosine, ModelEma). Reference numbers were computed
// offline with /usr/bin/python3 and torch 1.13 (torch.optim.AdamW,
// torch.nn.utils.clip_grad_norm_, and the reference's
// LinearWarmupCosineAnnealingLR driven like train_one_epoch).
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "flowless/io/pth.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/nn/layers.hpp"
#include "flowless/nn/module.hpp"
#include "flowless/train/ema.hpp"
#include "flowless/train/lr_schedule.hpp"
#include "flowless/train/optimizer.hpp"
#include "gradcheck.hpp"

using namespace flowless;
using flowless::test::random_tensor;

namespace {

// A small composite: own parameter first, then children (one of them a list).
template <class T>
struct Composite : nn::Module<T> {
  Var<T>& rel_pe;
  nn::MaskedConv1d<T> embd;
  nn::LayerNorm<T> norm;
  nn::ModuleList<T, nn::Scale<T>> scales;
  nn::AffineDropPath<T> dp;
  explicit Composite(Rng* rng)
      : rel_pe(this->register_parameter("rel_pe", Tensor<T>::zeros(Shape{1, 4}), false)),
        embd(2, 3, 3, 1, 1, 1, true, rng),
        norm(3),
        dp(3, 0.1) {
    this->register_module("embd", embd);
    this->register_module("norm", norm);
    this->register_module("scales", scales);
    this->register_module("dp", dp);
    scales.emplace_back(1.0);
    scales.emplace_back(2.0);
  }
};

// The module of the optimizer tests: "conv.weight" (2,2,1) decays,
// "conv.bias" (2) and "s.scale" (1) do not.
template <class T>
struct ConvAndScale : nn::Module<T> {
  nn::Conv1d<T> conv;
  nn::Scale<T> s;
  ConvAndScale() : conv(2, 2, 1), s(1.0) {
    this->register_module("conv", conv);
    this->register_module("s", s);
  }
};

template <class T>
void set_values(Var<T>& v, const std::vector<double>& vals) {
  REQUIRE(int64_t(vals.size()) == v.value().numel());
  for (size_t i = 0; i < vals.size(); ++i) v.value()[int64_t(i)] = T(vals[i]);
}
template <class T>
void set_grad(Var<T>& v, const std::vector<double>& vals) {
  Tensor<T> g(v.shape());
  for (size_t i = 0; i < vals.size(); ++i) g[int64_t(i)] = T(vals[i]);
  v.grad() = g;
}
template <class T>
void check_values(const Tensor<T>& t, const std::vector<double>& want, double rel) {
  REQUIRE(t.numel() == int64_t(want.size()));
  for (size_t i = 0; i < want.size(); ++i)
    CHECK_MESSAGE(std::abs(double(t[int64_t(i)]) - want[i]) <= rel * std::max(1.0, std::abs(want[i])),
                  "element ", i, ": ", double(t[int64_t(i)]), " vs ", want[i]);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

io::Array f32_array(std::vector<int64_t> shape, float fill) {
  const int64_t n = io::shape_numel(shape, "test");
  std::vector<float> v(static_cast<size_t>(n), fill);
  for (int64_t i = 0; i < n; ++i) v[i] = fill + 0.25f * float(i);
  return io::Array::from_float32(v.data(), std::move(shape));
}

}  // namespace

TEST_CASE("nn module: names, order, decay groups, train/eval and counts") {
  Rng rng(1);
  Composite<float> m(&rng);
  auto named = m.named_parameters();
  std::vector<std::string> names;
  for (auto& np : named) names.push_back(np.first);
  const std::vector<std::string> want = {"rel_pe",      "embd.conv.weight", "embd.conv.bias", "norm.weight",
                                         "norm.bias",   "scales.0.scale",   "scales.1.scale", "dp.scale"};
  CHECK(names == want);
  CHECK(named[1].second == &m.embd.conv.weight());
  CHECK(m.parameters().size() == want.size());
  CHECK(m.num_parameters() == 4 + 18 + 3 + 3 + 3 + 1 + 1 + 3);
  // Only the conv weight decays (the reference's make_optimizer rules).
  for (auto& [name, p] : named) CHECK_MESSAGE(m.decays(p) == (name == "embd.conv.weight"), name);
  Var<float> stranger = Var<float>::parameter(Tensor<float>::zeros(Shape{1}));
  CHECK_THROWS_AS(m.decays(&stranger), Error);

  CHECK(m.is_training());
  m.eval();
  CHECK(!m.is_training());
  CHECK(!m.scales[1].is_training());
  CHECK(!m.embd.conv.is_training());
  m.train();
  CHECK(m.dp.is_training());

  // state_dict shares storage; zero_grad drops gradients.
  auto sd = m.state_dict();
  CHECK(sd.size() == want.size());
  CHECK(sd.at("scales.1.scale")[0] == 2.0f);
  CHECK(sd.at("norm.weight").shares_storage(m.norm.weight().value()));
  m.norm.weight().grad() = Tensor<float>::full(Shape{1, 3, 1}, 1.f);
  m.zero_grad();
  CHECK(!m.norm.weight().grad().defined());

  // Registration errors.
  struct Bad : nn::Module<float> {
    nn::Scale<float> a, b;
    void twice_name() {
      register_module("a", a);
      register_module("a", b);
    }
    void twice_module() {
      register_module("x", a);
      register_module("y", a);
    }
    void param_clash() {
      register_parameter("p", Tensor<float>::zeros(Shape{1}), false);
      register_parameter("p", Tensor<float>::zeros(Shape{1}), false);
    }
  };
  CHECK_THROWS_AS(Bad().twice_name(), Error);
  CHECK_THROWS_AS(Bad().twice_module(), Error);
  CHECK_THROWS_AS(Bad().param_clash(), Error);
}

TEST_CASE("nn module: strict loading errors name the file, the parameter and the shapes") {
  Rng rng(2);
  Composite<float> m(&rng);
  std::map<std::string, io::Array> arrays;
  for (auto& [name, p] : m.named_parameters()) {
    std::vector<int64_t> shape;
    for (int i = 0; i < p->value().dim(); ++i) shape.push_back(p->value().size(i));
    arrays[name] = f32_array(shape, 0.5f);
  }
  const auto before = m.embd.conv.weight().value().to_vector();

  SUBCASE("missing") {
    arrays.erase("norm.bias");
    std::string e = error_of([&] { m.load_state_dict(arrays, "ckpt/model.safetensors"); });
    CHECK(e.find("ckpt/model.safetensors") != std::string::npos);
    CHECK(e.find("missing") != std::string::npos);
    CHECK(e.find("norm.bias") != std::string::npos);
    // Non-strict: loads what is there.
    m.load_state_dict(arrays, "ckpt/model.safetensors", false);
    CHECK(m.norm.weight().value()[1] == 0.75f);
    CHECK(m.norm.bias().value()[1] == 0.0f);
  }
  SUBCASE("unexpected") {
    arrays["head.extra.weight"] = f32_array({2}, 1.f);
    std::string e = error_of([&] { m.load_state_dict(arrays, "ckpt/model.safetensors"); });
    CHECK(e.find("ckpt/model.safetensors") != std::string::npos);
    CHECK(e.find("unexpected") != std::string::npos);
    CHECK(e.find("head.extra.weight") != std::string::npos);
    m.load_state_dict(arrays, "ckpt/model.safetensors", false);
    CHECK(m.embd.conv.weight().value()[2] == 1.0f);
  }
  SUBCASE("wrong shape") {
    arrays["embd.conv.weight"] = f32_array({3, 3, 2}, 0.f);
    std::string e = error_of([&] { m.load_state_dict(arrays, "ckpt/model.pth.tar", false); });
    CHECK(e.find("ckpt/model.pth.tar") != std::string::npos);
    CHECK(e.find("embd.conv.weight") != std::string::npos);
    CHECK(e.find("(3, 2, 3)") != std::string::npos);
    CHECK(e.find("(3, 3, 2)") != std::string::npos);
    // Nothing was modified by the failed load.
    CHECK(m.embd.conv.weight().value().to_vector() == before);
    CHECK(m.rel_pe.value()[0] == 0.f);
    // Same element count but not a singleton difference: still an error.
    arrays["embd.conv.weight"] = f32_array({2, 3, 3}, 0.f);
    CHECK_THROWS_AS(m.load_state_dict(arrays, "x"), Error);
    arrays["embd.conv.weight"] = f32_array({18}, 0.f);
    CHECK_THROWS_AS(m.load_state_dict(arrays, "x"), Error);
    // Truncated data: an error before anything is copied.
    arrays["embd.conv.weight"] = f32_array({3, 2, 3}, 0.f);
    arrays["rel_pe"].data.resize(12);
    e = error_of([&] { m.load_state_dict(arrays, "ckpt/bad.safetensors"); });
    CHECK(e.find("rel_pe") != std::string::npos);
    CHECK(m.embd.conv.weight().value().to_vector() == before);
  }
  SUBCASE("all present loads every value") {
    m.load_state_dict(arrays, "ok");
    CHECK(m.embd.conv.weight().value()[17] == 0.5f + 0.25f * 17);
    CHECK(m.dp.scale().value()[2] == 1.0f);
  }
}

TEST_CASE("nn module: shape-flexible loading of () / (1,) scales and (C) / (1,C,1) affines, f64 exactly") {
  struct Head : nn::Module<double> {
    nn::Scale<double> scale;
    nn::LayerNorm<double> norm;
    Head() : norm(4) {
      register_module("scale", scale);
      register_module("norm", norm);
    }
  } h;
  std::map<std::string, io::Array> a;
  a["scale.scale"] = f32_array({}, 3.5f);  // () as in .pth.tar
  a["norm.weight"] = f32_array({4}, 1.f);  // (C)
  io::Array bias;
  bias.dtype = io::DType::f64;
  bias.shape = {1, 4, 1};
  const double bv[4] = {0.1, 0.2, 1.0 / 3.0, -1e-300};
  bias.data.resize(32);
  std::memcpy(bias.data.data(), bv, 32);
  a["norm.bias"] = bias;
  h.load_state_dict(a, "head.pth.tar");
  CHECK(h.scale.scale().value()[0] == 3.5);
  CHECK(h.norm.weight().value().shape() == Shape{1, 4, 1});
  CHECK(h.norm.weight().value()[3] == 1.75);
  CHECK(h.norm.bias().value()[2] == 1.0 / 3.0);  // f64 read exactly, not through float
  CHECK(h.norm.bias().value()[3] == -1e-300);
  a["scale.scale"] = f32_array({1}, -2.f);  // (1,) as in weights.safetensors
  h.load_state_dict(a, "head.safetensors");
  CHECK(h.scale.scale().value()[0] == -2.0);
  a["scale.scale"] = f32_array({2}, -2.f);
  CHECK_THROWS_AS(h.load_state_dict(a, "head.safetensors"), Error);

  // Tensor overload, incl. a module loading its own state.
  auto sd = h.state_dict();
  h.load_state_dict(sd, "self");
  CHECK(h.norm.weight().value()[3] == 1.75);
  std::map<std::string, Tensor<double>> t;
  t["scale.scale"] = Tensor<double>::full(Shape{}, 9.0);
  t["norm.weight"] = Tensor<double>::full(Shape{4}, 2.0);
  t["norm.bias"] = Tensor<double>::full(Shape{4, 1}, -1.0);
  h.load_state_dict(t, "tensors");
  CHECK(h.scale.scale().value()[0] == 9.0);
  CHECK(h.norm.bias().value()[0] == -1.0);
  t.erase("norm.bias");
  CHECK(error_of([&] { h.load_state_dict(t, "tensors"); }).find("norm.bias") != std::string::npos);

  // to_float32_arrays / array_to_tensor round trip.
  auto arrs = nn::to_float32_arrays(h.state_dict());
  CHECK(arrs.at("norm.weight").shape == std::vector<int64_t>{1, 4, 1});
  auto back = nn::array_to_tensor<double>(arrs.at("norm.weight"), "rt");
  CHECK(back.shape() == Shape{1, 4, 1});
  CHECK(back[0] == 2.0);
}

TEST_CASE("nn module: the reference checkpoint's scales and affines load from .pth.tar and .safetensors") {
  // Part of the reference model's tree, with the reference's names.
  struct Part : nn::Module<float> {
    nn::ModuleList<float, nn::Scale<float>> scales;
    nn::LayerNorm<float> norm0;
    nn::MaskedConv1d<float> cls;
    nn::AffineDropPath<float> dp;
    Part() : norm0(64), cls(64, 5, 3, 1, 1), dp(64) {
      register_module("reg_head.scale", scales);
      register_module("neck.fpn_norms.0", norm0);
      register_module("cls_head.cls_head", cls);
      register_module("backbone.stem.0.drop_path_attn", dp);
      for (int i = 0; i < 6; ++i) scales.emplace_back(7.0);
    }
  };
  const std::string dir = std::string(FLOWLESS_TEST_DATA) + "/actionformer_small/";
  Part a, b;
  auto st = io::load_safetensors(dir + "weights.safetensors");
  auto pth = io::load_pth_state_dict(dir + "checkpoint.pth.tar", "state_dict_ema");
  CHECK(pth.at("reg_head.scale.0.scale").shape.empty());
  CHECK(st.tensors.at("reg_head.scale.0.scale").shape == std::vector<int64_t>{1});
  // Strict fails (the files hold the whole model) and names the file.
  std::string e = error_of([&] { a.load_state_dict(st.tensors, dir + "weights.safetensors"); });
  CHECK(e.find("weights.safetensors") != std::string::npos);
  CHECK(e.find("unexpected") != std::string::npos);
  a.load_state_dict(st.tensors, dir + "weights.safetensors", false);
  b.load_state_dict(pth, dir + "checkpoint.pth.tar", false);
  auto sa = a.state_dict(), sb = b.state_dict();
  for (auto& [name, t] : sa) CHECK_MESSAGE(t.to_vector() == sb.at(name).to_vector(), name);
  CHECK(a.scales[5].scale().value()[0] == 1.0f);  // was 7
  CHECK(std::abs(a.norm0.weight().value()[0] - 1.1678881645202637f) < 1e-7f);
  CHECK(std::abs(a.cls.conv.bias().value()[1] - (-4.653209209442139f)) < 1e-6f);
}

TEST_CASE("nn layers: initialisation follows PyTorch's defaults and the reference") {
  Rng rng(3);
  nn::Conv1d<double> c(16, 32, 3, 1, 1, 1, true, &rng);
  const double bound = 1.0 / std::sqrt(16.0 * 3.0);
  double wmax = 0, bmax = 0, wsum = 0;
  for (int64_t i = 0; i < c.weight().value().numel(); ++i) {
    wmax = std::max(wmax, std::abs(c.weight().value()[i]));
    wsum += c.weight().value()[i];
  }
  for (int64_t i = 0; i < 32; ++i) bmax = std::max(bmax, std::abs(c.bias().value()[i]));
  CHECK(wmax <= bound);
  CHECK(wmax > 0.97 * bound);  // 1536 uniform draws reach the edge
  CHECK(bmax <= bound);
  CHECK(bmax > 0.5 * bound);
  CHECK(std::abs(wsum / 1536) < 0.1 * bound);
  // Depthwise: fan_in = (in / groups) * k = 3.
  nn::Conv1d<float> dw(8, 8, 3, 1, 1, 8, false, &rng);
  CHECK(dw.weight().value().shape() == Shape{8, 1, 3});
  CHECK(!dw.has_bias());
  for (int64_t i = 0; i < 24; ++i) CHECK(std::abs(dw.weight().value()[i]) <= 1.0f / std::sqrt(3.0f));
  // MaskedConv1d biases start at 0; same seed, same weights.
  Rng r1(9), r2(9);
  nn::MaskedConv1d<float> m1(4, 6, 3, 1, 1, 1, true, &r1), m2(4, 6, 3, 1, 1, 1, true, &r2);
  CHECK(m1.conv.weight().value().to_vector() == m2.conv.weight().value().to_vector());
  for (int64_t i = 0; i < 6; ++i) CHECK(m1.conv.bias().value()[i] == 0.f);
  CHECK_THROWS_AS(nn::MaskedConv1d<float>(4, 6, 3, 1, 0), Error);  // padding must be k/2
  CHECK_THROWS_AS(nn::MaskedConv1d<float>(4, 6, 2, 1, 1), Error);  // odd kernel
  CHECK_THROWS_AS(nn::Conv1d<float>(4, 6, 3, 1, 1, 4), Error);     // 6 % 4
  // Without an Rng the default generator is used and manual_seed reproduces it.
  nn::manual_seed(42);
  nn::Conv1d<float> d1(3, 3, 1);
  nn::manual_seed(42);
  nn::Conv1d<float> d2(3, 3, 1);
  CHECK(d1.weight().value().to_vector() == d2.weight().value().to_vector());
  nn::LayerNorm<float> ln(5);
  CHECK(ln.weight().value().shape() == Shape{1, 5, 1});
  CHECK(ln.weight().value()[4] == 1.f);
  CHECK(ln.bias().value()[4] == 0.f);
  CHECK(nn::Scale<float>().scale().value().shape() == Shape{1});
  CHECK(nn::Scale<float>(2.5).scale().value()[0] == 2.5f);
  nn::AffineDropPath<float> adp(7, 0.1);
  CHECK(adp.scale().value().shape() == Shape{1, 7, 1});
  CHECK(adp.scale().value()[6] == 1e-4f);
  // trunc_normal_ stays inside its bounds.
  Tensor<double> tn(Shape{1000});
  nn::init::trunc_normal_(tn, 0.0, 0.02, -0.04, 0.04, rng);
  for (int64_t i = 0; i < 1000; ++i) CHECK((tn[i] >= -0.04 && tn[i] <= 0.04));
}

TEST_CASE("nn layers: forward values against naive definitions") {
  Rng rng(4);
  const int64_t B = 2, T = 7, Cin = 4, Cout = 3, K = 3;
  nn::Conv1d<double> c(Cin, Cout, K, 2, 1, 1, true, &rng);
  Tensor<double> x = random_tensor(Shape{B, T, Cin}, rng);
  Var<double> y = c.forward(Var<double>(x));
  const int64_t To = (T + 2 - K) / 2 + 1;
  REQUIRE(y.shape() == Shape{B, To, Cout});
  const Tensor<double>& W = c.weight().value();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < To; ++t)
      for (int64_t o = 0; o < Cout; ++o) {
        double acc = c.bias().value()[o];
        for (int64_t i = 0; i < Cin; ++i)
          for (int64_t k = 0; k < K; ++k) {
            int64_t j = t * 2 + k - 1;
            if (j >= 0 && j < T) acc += W[(o * Cin + i) * K + k] * x[(b * T + j) * Cin + i];
          }
        CHECK(y.value()[(b * To + t) * Cout + o] == doctest::Approx(acc).epsilon(1e-12));
      }
  // Masked: identical values inside, zeros from ceil(len / 2) on.
  nn::MaskedConv1d<double> mc(Cin, Cout, K, 2, 1, 1, true, &rng);
  mc.conv.bias().value().fill_(0.5);
  std::vector<int> len = {7, 4};
  CHECK(mc.out_lengths(len) == std::vector<int>{4, 2});
  Var<double> ym = mc.forward(Var<double>(x), len);
  Var<double> yu = mc.conv.forward(Var<double>(x));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < To; ++t)
      for (int64_t o = 0; o < Cout; ++o) {
        const double want = t < mc.out_lengths(len)[b] ? yu.value()[(b * To + t) * Cout + o] : 0.0;
        CHECK(ym.value()[(b * To + t) * Cout + o] == want);
      }
  CHECK_THROWS_AS(mc.forward(Var<double>(x), std::vector<int>{3}), Error);
  // LayerNorm over C with biased variance, then affine.
  nn::LayerNorm<double> ln(Cin);
  set_values(ln.weight(), {1.0, 2.0, -1.0, 0.5});
  set_values(ln.bias(), {0.0, 0.1, 0.2, 0.3});
  Var<double> yl = ln.forward(Var<double>(x));
  for (int64_t r = 0; r < B * T; ++r) {
    double mu = 0, var = 0;
    for (int64_t i = 0; i < Cin; ++i) mu += x[r * Cin + i] / Cin;
    for (int64_t i = 0; i < Cin; ++i) var += (x[r * Cin + i] - mu) * (x[r * Cin + i] - mu) / Cin;
    for (int64_t i = 0; i < Cin; ++i) {
      double want = (x[r * Cin + i] - mu) / std::sqrt(var + 1e-5) * ln.weight().value()[i] + ln.bias().value()[i];
      CHECK(yl.value()[r * Cin + i] == doctest::Approx(want).epsilon(1e-12));
    }
  }
  nn::LayerNorm<double> ln_plain(Cin, 1e-5, false);
  CHECK(ln_plain.named_parameters().empty());
  Var<double> yp = ln_plain.forward(Var<double>(x));
  CHECK(yp.value()[5] == doctest::Approx((yl.value()[5] - 0.1) / 2.0).epsilon(1e-12));
  CHECK_THROWS_AS(ln.forward(Var<double>(random_tensor(Shape{2, 3, 5}, rng))), Error);
  // Scale and AffineDropPath (eval: only the per-channel scale).
  nn::Scale<double> s(-1.5);
  CHECK(s.forward(Var<double>(x)).value()[9] == -1.5 * x[9]);
  nn::AffineDropPath<double> dp(Cin, 0.5, 0.25);
  set_values(dp.scale(), {0.25, 0.5, 1.0, 2.0});
  dp.eval();
  Var<double> yd = dp.forward(Var<double>(x), rng);
  for (int64_t r = 0; r < B * T; ++r)
    for (int64_t i = 0; i < Cin; ++i) CHECK(yd.value()[r * Cin + i] == x[r * Cin + i] * dp.scale().value()[i]);
  // Training: each sample is either dropped or rescaled by 1 / (1 - p).
  dp.train();
  int kept = 0, dropped = 0;
  for (int rep = 0; rep < 20; ++rep) {
    Var<double> yt = dp.forward(Var<double>(x), rng);
    for (int64_t b = 0; b < B; ++b) {
      bool zero = true, scaled = true;
      for (int64_t j = 0; j < T * Cin; ++j) {
        const double v = yt.value()[b * T * Cin + j], ref = yd.value()[b * T * Cin + j] / 0.5;
        zero = zero && v == 0.0;
        scaled = scaled && std::abs(v - ref) <= 1e-12 * std::max(1.0, std::abs(ref));
      }
      CHECK((zero || scaled));
      (zero ? dropped : kept) += 1;
    }
  }
  CHECK(kept > 5);
  CHECK(dropped > 5);
}

TEST_CASE("nn layers: gradients through the module API (double)") {
  Rng rng(5);
  SUBCASE("MaskedConv1d, stride 1 and 2, dense and depthwise") {
    for (int stride : {1, 2})
      for (int groups : {1, 4}) {
        nn::MaskedConv1d<double> mc(4, 4, 3, stride, 1, groups, true, &rng);
        set_values(mc.conv.bias(), {0.1, -0.2, 0.3, 0.05});
        Var<double> x = Var<double>::parameter(random_tensor(Shape{2, 8, 4}, rng));
        const std::vector<int> len = {8, 5};
        auto r = test::check_gradients(
            [&](std::vector<Var<double>>& in) { return mc.forward(in[0], len); },
            {x, mc.conv.weight(), mc.conv.bias()});
        CHECK(r.max_rel_err < 1e-6);
      }
  }
  SUBCASE("AffineDropPath in eval mode") {
    nn::AffineDropPath<double> dp(5, 0.3);
    set_values(dp.scale(), {0.5, -1.0, 2.0, 0.25, 1.5});
    dp.eval();
    Var<double> x = Var<double>::parameter(random_tensor(Shape{2, 3, 5}, rng));
    auto r = test::check_gradients([&](std::vector<Var<double>>& in) { return dp.forward(in[0], rng); },
                                   {x, dp.scale()});
    CHECK(r.max_rel_err < 1e-6);
  }
  SUBCASE("LayerNorm and Scale") {
    nn::LayerNorm<double> ln(6);
    set_values(ln.weight(), {1.0, 0.5, -2.0, 1.5, 0.7, 1.1});
    set_values(ln.bias(), {0.0, 0.1, -0.1, 0.2, 0.3, -0.3});
    nn::Scale<double> s(1.7);
    Var<double> x = Var<double>::parameter(random_tensor(Shape{2, 4, 6}, rng));
    auto r = test::check_gradients(
        [&](std::vector<Var<double>>& in) { return s.forward(ln.forward(in[0])); },
        {x, ln.weight(), ln.bias(), s.scale()});
    CHECK(r.max_rel_err < 1e-6);
  }
}

TEST_CASE("train optimizer: AdamW matches torch.optim.AdamW with the reference's weight-decay groups") {
  // torch: groups [{w, wd 0.05}, {b, s, wd 0}], lr per step 0.01, 0.02, 0.005;
  // grads: w = (0.3(it+1), -0.7, 0.05 it, 1.2 - it), b = (-0.4 + 0.3 it, 2/(it+1)),
  // s = 0.25 - 0.5 it except at it = 1 (no gradient: skipped).
  const std::vector<std::vector<double>> want_w = {
      {0.4897500003333333, -0.28985000014285717, 0.19990000000000002, 0.7896000000833334},
      {0.46995661022346, -0.26956015042842874, 0.18481736773708024, 0.7731438533002156},
      {0.46504911502430313, -0.26449276046225023, 0.18062830089336948, 0.7721778546669553}};
  const std::vector<std::vector<double>> want_b = {{0.10999999975000001, -0.20999999995000002},
                                                   {0.12661194985359892, -0.22864359260829792},
                                                   {0.12810470851932354, -0.2330093852175786}};
  const std::vector<double> want_s = {1.4900000004, 1.4900000004, 1.4924709495222925};
  auto run = [&](auto tag, double tol) {
    using T = decltype(tag);
    ConvAndScale<T> m;
    set_values(m.conv.weight(), {0.5, -0.3, 0.2, 0.8});
    set_values(m.conv.bias(), {0.1, -0.2});
    set_values(m.s.scale(), {1.5});
    train::AdamW<T> opt(m, 0.01, 0.05);
    REQUIRE(opt.param_groups().size() == 2);
    CHECK(opt.param_groups()[0].names == std::vector<std::string>{"conv.weight"});
    CHECK(opt.param_groups()[0].weight_decay == 0.05);
    CHECK(opt.param_groups()[1].names == std::vector<std::string>{"conv.bias", "s.scale"});
    CHECK(opt.param_groups()[1].weight_decay == 0.0);
    const double lrs[3] = {0.01, 0.02, 0.005};
    for (int it = 0; it < 3; ++it) {
      opt.set_lr(lrs[it]);
      opt.zero_grad();
      set_grad(m.conv.weight(), {0.3 * (it + 1), -0.7, 0.05 * it, 1.2 - it});
      set_grad(m.conv.bias(), {-0.4 + 0.3 * it, 2.0 / (it + 1)});
      if (it != 1) set_grad(m.s.scale(), {0.25 - 0.5 * it});
      opt.step();
      check_values(m.conv.weight().value(), want_w[it], tol);
      check_values(m.conv.bias().value(), want_b[it], tol);
      check_values(m.s.scale().value(), {want_s[it]}, tol);
    }
    CHECK(opt.lr() == 0.005);
    CHECK(opt.step_count(1, 1) == 2);  // s skipped once
    auto st = opt.state_dict();
    check_values(st.at("conv.weight.exp_avg"),
                 {0.16829999999999995, -0.18969999999999998, 0.014499999999999997, 0.035199999999999995}, tol);
    check_values(st.at("conv.weight.exp_avg_sq"),
                 {0.001259460090000001, 0.001468530490000001, 1.2497500000000014e-05, 0.002117081440000002}, tol);
    CHECK(st.at("s.scale.step")[0] == T(2));
  };
  run(double(), 1e-13);
  run(float(), 2e-7);
}

TEST_CASE("train optimizer: state save/load resumes exactly, errors") {
  ConvAndScale<float> a, b;
  b.load_state_dict(a.state_dict(), "copy");
  train::AdamW<float> oa(a, 1e-3, 0.05), ob(b, 1e-3, 0.05);
  auto grads = [&](ConvAndScale<float>& m, int it) {
    Rng r(100 + it);
    for (auto& [n, p] : m.named_parameters()) {
      Tensor<float> g(p->shape());
      for (int64_t i = 0; i < g.numel(); ++i) g[i] = float(r.normal());
      p->grad() = g;
    }
  };
  for (int it = 0; it < 3; ++it) {
    grads(a, it);
    oa.step();
  }
  // b gets a's parameters and optimizer state, then both continue.
  b.load_state_dict(a.state_dict(), "params");
  ob.load_state_dict(oa.state_dict(), "optimizer.safetensors");
  for (int it = 3; it < 5; ++it) {
    grads(a, it);
    grads(b, it);
    oa.step();
    ob.step();
  }
  for (auto& [n, t] : a.state_dict()) CHECK_MESSAGE(t.to_vector() == b.state_dict().at(n).to_vector(), n);
  auto st = oa.state_dict();
  st["conv.weight.bogus"] = Tensor<float>::zeros(Shape{1});
  CHECK(error_of([&] { ob.load_state_dict(st, "optimizer.safetensors"); }).find("conv.weight.bogus") !=
        std::string::npos);
  st.erase("conv.weight.bogus");
  st["conv.bias.exp_avg"] = Tensor<float>::zeros(Shape{3});
  CHECK(error_of([&] { ob.load_state_dict(st, "optimizer.safetensors"); }).find("conv.bias") != std::string::npos);
  // Explicit groups; a parameter in two groups is an error.
  std::vector<train::AdamW<float>::ParamGroup> groups = {{{&a.conv.weight()}, 0.1}, {{&a.conv.weight()}, 0.0}};
  CHECK_THROWS_AS(train::AdamW<float>(groups, 1e-3), Error);
  train::AdamW<float> og({{{&a.conv.weight(), &a.conv.bias()}, 0.1}}, 1e-3);
  CHECK(og.param_groups()[0].names == std::vector<std::string>{"group0.0", "group0.1"});
}

TEST_CASE("train optimizer: clip_grad_norm matches torch.nn.utils.clip_grad_norm_") {
  auto run = [&](auto tag, double tol) {
    using T = decltype(tag);
    ConvAndScale<T> m;
    std::vector<Var<T>*> ps = m.parameters();  // conv.weight, conv.bias, s.scale
    set_grad(m.conv.weight(), {0.3, -0.7, 0.05, 1.2});
    set_grad(m.conv.bias(), {-0.4, 2.0});
    set_grad(m.s.scale(), {0.25});
    double n = train::clip_grad_norm(ps, 1.0);
    CHECK(n == doctest::Approx(2.49899979991996).epsilon(tol));
    check_values(m.conv.weight().grad(), {0.12004798078080192, -0.2801119551552045, 0.02000799679680032, 0.4801919231232077},
                 tol);
    check_values(m.conv.bias().grad(), {-0.16006397437440256, 0.8003198718720128}, tol);
    check_values(m.s.scale().grad(), {0.1000399839840016}, tol);
    // Below the threshold: returns the norm, leaves the gradients alone.
    const auto before = m.conv.weight().grad().to_vector();
    n = train::clip_grad_norm(ps, 5.0);
    CHECK(n == doctest::Approx(0.9999995998400639).epsilon(tol));
    CHECK(m.conv.weight().grad().to_vector() == before);
    // Parameters without gradients are ignored.
    m.conv.bias().zero_grad();
    m.s.scale().zero_grad();
    n = train::clip_grad_norm(ps, 100.0);
    double sq = 0;
    for (T v : before) sq += double(v) * double(v);
    CHECK(n == doctest::Approx(std::sqrt(sq)).epsilon(tol));
  };
  run(double(), 1e-13);
  run(float(), 1e-6);
  // Thread-count independence on a large gradient.
  Var<float> big = Var<float>::parameter(Tensor<float>::zeros(Shape{300001}));
  Rng rng(8);
  Tensor<float> g(Shape{300001});
  for (int64_t i = 0; i < g.numel(); ++i) g[i] = float(rng.normal());
  double norms[2];
  for (int th : {1, 2}) {
    set_num_threads(th);
    big.grad() = g.clone();
    norms[th - 1] = train::clip_grad_norm(std::vector<Var<float>*>{&big}, 1.0);
  }
  set_num_threads(1);
  CHECK(norms[0] == norms[1]);
  CHECK(norms[0] == doctest::Approx(std::sqrt(300001.0)).epsilon(0.01));
}

TEST_CASE("train schedule: LinearWarmupCosine reproduces the reference scheduler per iteration") {
  // lr used by optimizer.step() at iterations 0..25 with base 1e-4, warmup 5, total 20.
  const std::vector<double> small = {
      0.0, 2.5e-05, 5e-05, 7.500000000000001e-05, 0.0001, 0.0001, 9.890748929868662e-05, 9.567770515484182e-05,
      9.04518046337755e-05, 8.345818466491112e-05, 7.50025e-05, 6.545430463377551e-05, 5.523090052106636e-05,
      4.477909947893369e-05, 3.455569536622452e-05, 2.5007500000000018e-05, 1.6551815335088904e-05,
      9.55819536622451e-06, 4.332294845158165e-06, 1.1025107013133848e-06, 1e-08, 1.1025107013133846e-06,
      4.3322948451581705e-06, 9.558195366224497e-06, 1.6551815335088874e-05, 2.5007499999999984e-05};
  train::LinearWarmupCosine s(1e-4, 5, 20);
  for (size_t i = 0; i < small.size(); ++i) {
    CHECK_MESSAGE(s.lr_at(int64_t(i)) == small[i], "iter ", i, ": ", s.lr_at(int64_t(i)));  // op for op
    CHECK(s.closed_form(int64_t(i)) == doctest::Approx(small[i]).epsilon(1e-9));
  }
  // THUMOS-sized: 5 warmup epochs + 30 epochs of 100 iterations.
  train::LinearWarmupCosine t(1e-4, 500, 3500);
  const std::vector<std::pair<int64_t, double>> thumos = {
      {0, 0.0},
      {1, 2.0040080160320643e-07},
      {250, 5.010020040080167e-05},
      {499, 9.99999999999992e-05},
      {500, 0.0001},
      {501, 9.999997258717628e-05},
      {1000, 9.330194006220297e-05},
      {2000, 5.000499999999991e-05},
      {3000, 6.708059937796991e-06},
      {3499, 1.0027412823716997e-08},
      {3500, 1e-08},
      {3501, 1.0027412823716999e-08},
      {3599, 2.7843255448834376e-07}};
  for (auto [i, v] : thumos) CHECK_MESSAGE(t.lr_at(i) == v, "iter ", i, ": ", t.lr_at(i));
  // Non-zero warmup start and eta_min, followed past the end (periodic cosine).
  const std::vector<double> quirky = {0.01, 0.05500000000000001, 0.1, 0.1, 0.0905463412215599, 0.06579634122155989,
                                      0.035203658778440096, 0.010453658778440105, 0.001, 0.010453658778440102,
                                      0.03520365877844012, 0.06579634122155993, 0.09054634122155995,
                                      0.10000000000000005, 0.09054634122155998, 0.06579634122155995,
                                      0.03520365877844014, 0.010453658778440116, 0.001, 0.010453658778440102};
  train::LinearWarmupCosine q(0.1, 3, 8, 0.01, 0.001);
  for (size_t i = 0; i < quirky.size(); ++i)
    CHECK_MESSAGE(q.lr_at(int64_t(i)) == quirky[i], "iter ", i, ": ", q.lr_at(int64_t(i)));
  CHECK_THROWS_AS(train::LinearWarmupCosine(1e-4, 10, 10), Error);
  CHECK_THROWS_AS(s.lr_at(-1), Error);
}

TEST_CASE("train ema: update arithmetic, set, state and copy_to") {
  ConvAndScale<float> m;
  set_values(m.conv.weight(), {1, 2, 3, 4});
  set_values(m.conv.bias(), {0, 0});
  set_values(m.s.scale(), {10});
  train::ModelEma<float> ema(m, 0.9);
  set_values(m.conv.weight(), {2, 2, 2, 2});
  set_values(m.s.scale(), {0});
  ema.update(m);
  auto sd = ema.state_dict();
  // float arithmetic in PyTorch's order: 0.9f * e + 0.1f * p (0.1 computed as 1 - 0.9 in double).
  const float d = 0.9f, od = float(1.0 - 0.9);
  CHECK(sd.at("conv.weight")[0] == doctest::Approx(d * 1.f + od * 2.f).epsilon(1e-7));
  CHECK(sd.at("conv.weight")[3] == doctest::Approx(d * 4.f + od * 2.f).epsilon(1e-7));
  CHECK(sd.at("s.scale")[0] == doctest::Approx(d * 10.f).epsilon(1e-7));
  CHECK(sd.at("conv.weight")[0] == doctest::Approx(1.1));
  CHECK(sd.at("s.scale")[0] == doctest::Approx(9.0));
  ema.update(m);
  CHECK(ema.state_dict().at("s.scale")[0] == doctest::Approx(8.1));
  // The EMA is a copy: changing the model does not move it until update.
  CHECK(!ema.state_dict().at("conv.weight").shares_storage(m.conv.weight().value()));
  ConvAndScale<float> other;
  ema.copy_to(other);
  CHECK(other.s.scale().value()[0] == ema.state_dict().at("s.scale")[0]);
  ema.set(m);
  CHECK(ema.state_dict().at("s.scale")[0] == 0.f);
  // Resume: load a saved average.
  train::ModelEma<float> ema2(other, 0.999);
  ema2.load_state_dict(sd);
  CHECK(ema2.state_dict().at("conv.weight")[0] == sd.at("conv.weight")[0]);
  // A different module is an error.
  Composite<float> c(nullptr);
  CHECK_THROWS_AS(ema.update(c), Error);
}
