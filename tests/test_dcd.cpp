// Decomposed cross-modal distillation: the window aggregation and LAF ops
// (naive references, finite differences), the student's graph and file
// format, the distillation terms, the asymmetric gradient routing, and short
// training runs of every task on the tiny synthetic dataset.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>

#include "test_util.hpp"
#include "flowless/data/synth.hpp"
#include "flowless/dcd/tasks.hpp"
#include "flowless/models/any_model.hpp"
#include "flowless/workflow/training.hpp"
#include "gradcheck.hpp"

using namespace flowless;
using flowless::test::check_gradients;
using flowless::test::random_tensor;

namespace {

// ---------------------------------------------------------------------------
// Naive references.

std::vector<double> naive_window(const Tensor<double>& x, const std::vector<int>& lengths, int k, bool is_max) {
  const int64_t B = x.size(0), Tn = x.size(1), C = x.size(2), h = k / 2;
  std::vector<double> y(size_t(x.numel()), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < std::min<int64_t>(Tn, lengths[b]); ++t)
      for (int64_t c = 0; c < C; ++c) {
        double acc = is_max ? -std::numeric_limits<double>::infinity() : 0.0;
        int n = 0;
        for (int64_t j = t - h; j <= t + h; ++j) {
          if (j < 0 || j >= lengths[b] || j >= Tn) continue;
          const double v = x[(b * Tn + j) * C + c];
          acc = is_max ? std::max(acc, v) : acc + v;
          ++n;
        }
        y[size_t((b * Tn + t) * C + c)] = is_max ? acc : acc / n;
      }
  return y;
}

// y[b, t, o] = sum_i W[o, i] x[b, t, i] + bias[o] on valid rows, 0 elsewhere.
std::vector<double> naive_1x1(const std::vector<double>& x, int64_t B, int64_t Tn, int64_t C, const Tensor<double>& W,
                              const Tensor<double>& bias, const std::vector<int>& lengths) {
  const int64_t O = W.size(0);
  std::vector<double> y(size_t(B * Tn * O), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < std::min<int64_t>(Tn, lengths[b]); ++t)
      for (int64_t o = 0; o < O; ++o) {
        double acc = bias[o];
        for (int64_t i = 0; i < C; ++i) acc += W[o * C + i] * x[size_t((b * Tn + t) * C + i)];
        y[size_t((b * Tn + t) * O + o)] = acc;
      }
  return y;
}

std::vector<double> as_vec(const Tensor<double>& t) { return t.to_vector(); }

void randomise(nn::Module<double>& m, Rng& rng, double scale = 0.5) {
  for (auto& [name, p] : m.named_parameters())
    for (int64_t i = 0; i < p->value().numel(); ++i) p->value()[i] = scale * rng.normal();
}

bool grad_is_zero(const Var<float>& v) {
  if (!v.grad().defined()) return true;
  for (int64_t i = 0; i < v.grad().numel(); ++i)
    if (v.grad()[i] != 0.0f) return false;
  return true;
}

bool all_grads_zero(nn::Module<float>& m) {
  for (auto& [name, p] : m.named_parameters())
    if (!grad_is_zero(*p)) return false;
  return true;
}

bool any_grad_nonzero(nn::Module<float>& m) {
  for (auto& [name, p] : m.named_parameters())
    if (!grad_is_zero(*p)) return true;
  return false;
}

// ---------------------------------------------------------------------------
// The tiny synthetic benchmark, a fixed batch and small configurations.

std::string scratch_dir() {
  static const flowless::test::ScratchDir d("dcd");
  return d.path;
}

const std::string& tiny_dataset() {
  static const std::string dir = [] {
    std::string d = scratch_dir() + "/tiny";
    data::write_synthetic_dataset(d, data::synth_preset("tiny"), 7);
    return d;
  }();
  return dir;
}

const data::Dataset& train_set() {
  static const data::Dataset ds(tiny_dataset());
  return ds;
}

// The first 4 training videos, untruncated, padded to 256 steps, 32 channels (rgb 0-15, flow 16-31).
const data::Batch& fixed_batch() {
  static const data::Batch b = [] {
    Rng rng(1);
    data::EpochOptions eo;
    eo.batch_size = 4;
    eo.shuffle = false;
    eo.truncate = false;
    eo.padded_T = 256;
    data::EpochIterator it(train_set(), rng, eo);
    data::Batch out;
    REQUIRE(it.next(out));
    return out;
  }();
  return b;
}

DetectorConfig tiny_config(const std::string& arch, const std::string& modality) {
  DetectorConfig c;
  c.arch = arch;
  c.input_dim = 16;
  c.num_classes = 4;
  c.embd_dim = c.fpn_dim = c.head_dim = 16;
  c.n_head = 4;
  c.backbone_arch = arch == "actionformer" ? std::vector<int>{2, 1, 3} : std::vector<int>{2, 0, 3};
  c.mha_win_size = {9, 9, 9, 9};
  c.max_seq_len = 256;
  c.droppath = 0.0;
  c.modality = modality;
  c.channels = modality == "flow" ? std::array<int, 2>{16, 32} : std::array<int, 2>{0, 16};
  // The running normaliser's fixed point on the fixed batch, so losses compare across steps.
  c.init_loss_norm = 1.0;
  c.validate("tiny config");
  return c;
}

int64_t fixed_batch_positives(const DetectorConfig& c) {
  const data::Batch& b = fixed_batch();
  const PointSet pts = dcd::pyramid_points(c, b.T);
  int64_t n = 0;
  for (auto& t : dcd::assign_targets(c, pts, dcd::batch_targets(b))) n += t.num_positive();
  return n;
}

DetectorConfig fixed_point_config(const std::string& arch, const std::string& modality) {
  DetectorConfig c = tiny_config(arch, modality);
  c.init_loss_norm = double(std::max<int64_t>(1, fixed_batch_positives(c)));
  return c;
}

/// Adam steps on one batch; returns the loss before each step.
std::vector<double> train_steps(train::TrainTask<float>& task, const data::Batch& b, int steps, double lr = 2e-3) {
  nn::Module<float>& m = task.module();
  m.train(true);
  train::AdamW<float> opt(m, lr, 0.0);
  std::vector<double> losses;
  for (int i = 0; i < steps; ++i) {
    std::map<std::string, double> parts;
    Var<float> loss = task.loss(b, parts);
    losses.push_back(double(loss.value()[0]));
    m.zero_grad();
    backward(loss);
    train::clip_grad_norm(m.parameters(), 1.0);
    opt.step();
  }
  return losses;
}

double tail_mean(const std::vector<double>& v, size_t n = 3) {
  double s = 0;
  for (size_t i = v.size() - n; i < v.size(); ++i) s += v[i];
  return s / double(n);
}

/// A flow teacher trained for a few steps on the fixed batch (shared, then frozen).
models::Detector<float>& flow_teacher() {
  static std::unique_ptr<models::Detector<float>> t = [] {
    auto det = std::make_unique<models::Detector<float>>(fixed_point_config("actionformer", "flow"), 11);
    dcd::DetectorTask<float> task(*det);
    train_steps(task, fixed_batch(), 40, 3e-3);
    det->zero_grad();
    det->train(false);
    return det;
  }();
  return *t;
}

std::map<std::string, std::vector<float>> snapshot(const nn::Module<float>& m) {
  std::map<std::string, std::vector<float>> out;
  for (auto& [name, t] : m.state_dict()) out[name] = t.to_vector();
  return out;
}

bool same_detections(const std::vector<Detection>& a, const std::vector<Detection>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].start != b[i].start || a[i].end != b[i].end || a[i].label != b[i].label || a[i].score != b[i].score)
      return false;
  return true;
}

}  // namespace

// ===========================================================================

TEST_CASE("dcd window_pool1d: mean and max equal a naive loop (masks, sequence ends, windows 1..7)") {
  Rng rng(3);
  Tensor<double> x = random_tensor(Shape{3, 11, 5}, rng);
  const std::vector<int> lengths{11, 6, 1};
  for (int k : {1, 3, 5, 7})
    for (bool is_max : {false, true}) {
      CAPTURE(k);
      CAPTURE(is_max);
      Var<double> y = window_pool1d(Var<double>(x), lengths, k, is_max ? WindowAgg::max : WindowAgg::mean);
      auto ref = naive_window(x, lengths, k, is_max);
      for (int64_t i = 0; i < x.numel(); ++i) CHECK(y.value()[i] == doctest::Approx(ref[size_t(i)]).epsilon(1e-12));
    }
  // The padded tail is excluded, not zero-padded: a window over [4, 5] at the end
  // of a length-6 sequence averages those 2 values only.
  Tensor<double> ones = Tensor<double>::full(Shape{1, 8, 1}, 2.0);
  Var<double> m = window_pool1d(Var<double>(ones), {6}, 5, WindowAgg::mean);
  for (int t = 0; t < 6; ++t) CHECK(m.value()[t] == 2.0);
  CHECK(m.value()[6] == 0.0);
  CHECK(m.value()[7] == 0.0);
  // float32 agrees with the double reference; empty lengths = all valid.
  Tensor<float> xf = cast<float>(x);
  Var<float> yf = window_pool1d(Var<float>(xf), {}, 5, WindowAgg::mean);
  auto ref = naive_window(x, {11, 11, 11}, 5, false);
  for (int64_t i = 0; i < x.numel(); ++i) CHECK(double(yf.value()[i]) == doctest::Approx(ref[size_t(i)]).epsilon(1e-6));
  // Max propagates NaN.
  Tensor<double> xn = x.clone();
  xn[(0 * 11 + 3) * 5 + 2] = std::nan("");
  Var<double> yn = window_pool1d(Var<double>(xn), lengths, 3, WindowAgg::max);
  CHECK(std::isnan(yn.value()[(0 * 11 + 2) * 5 + 2]));
  CHECK(std::isnan(yn.value()[(0 * 11 + 4) * 5 + 2]));
  CHECK(!std::isnan(yn.value()[(0 * 11 + 5) * 5 + 2]));
  // Errors.
  CHECK_THROWS_AS(window_pool1d(Var<double>(x), lengths, 4), Error);
  CHECK_THROWS_AS(window_pool1d(Var<double>(x), {1, 2}, 3), Error);
  CHECK_THROWS_AS(parse_window_agg("median"), Error);
}

TEST_CASE("dcd window_pool1d: gradients (double, finite differences), nothing flows from or into padding") {
  Rng rng(5);
  const std::vector<int> lengths{9, 4};
  for (int k : {1, 3, 5})
    for (bool is_max : {false, true}) {
      CAPTURE(k);
      CAPTURE(is_max);
      Var<double> x = Var<double>::parameter(random_tensor(Shape{2, 9, 3}, rng));
      check_gradients(
          [&](std::vector<Var<double>>& in) {
            return window_pool1d(in[0], lengths, k, is_max ? WindowAgg::max : WindowAgg::mean);
          },
          {x});
      // Padded inputs (batch 1, t >= 4) get exactly zero gradient.
      for (int64_t t = 4; t < 9; ++t)
        for (int64_t c = 0; c < 3; ++c) CHECK(x.grad()[(9 + t) * 3 + c] == 0.0);
    }
  // Max routes each output's gradient to the first maximal element of its window.
  Var<double> x = Var<double>::parameter(Tensor<double>::from_vector({1, 3, 3, 2}, Shape{1, 4, 1}));
  Var<double> y = window_pool1d(x, {4}, 3, WindowAgg::max);
  backward(sum(y));
  CHECK(as_vec(y.value()) == std::vector<double>{3, 3, 3, 3});
  CHECK(as_vec(x.grad()) == std::vector<double>{0, 3, 1, 0});
}

TEST_CASE("dcd window_pool1d and laf_gate: results and gradients do not depend on the thread count") {
  Rng rng(6);
  const std::vector<int> lengths{300, 177, 1};
  Tensor<float> x(Shape{3, 300, 40}), q(Shape{3, 300, 40}), k(Shape{3, 300, 40});
  for (Tensor<float>* t : {&x, &q, &k})
    for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = float(rng.normal());
  const int prev = num_threads();
  auto run = [&](int threads) {
    set_num_threads(threads);
    std::vector<std::vector<float>> out;
    for (WindowAgg a : {WindowAgg::mean, WindowAgg::max}) {
      Var<float> xv = Var<float>::parameter(x.clone()), qv = Var<float>::parameter(q.clone());
      Var<float> y = laf_gate(qv, Var<float>(k), window_pool1d(xv, lengths, 5, a), lengths);
      backward(y, k);
      out.push_back(y.value().to_vector());
      out.push_back(xv.grad().to_vector());
      out.push_back(qv.grad().to_vector());
    }
    set_num_threads(prev);
    return out;
  };
  CHECK(run(1) == run(2));
}

TEST_CASE("dcd laf_gate: forward equals sigmoid(q k) x on valid rows, gradients (double)") {
  Rng rng(9);
  const std::vector<int> lengths{5, 2};
  Var<double> q = Var<double>::parameter(random_tensor(Shape{2, 5, 4}, rng));
  Var<double> k = Var<double>::parameter(random_tensor(Shape{2, 5, 4}, rng));
  Var<double> x = Var<double>::parameter(random_tensor(Shape{2, 5, 4}, rng));
  Var<double> y = laf_gate(q, k, x, lengths);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 5; ++t)
      for (int64_t c = 0; c < 4; ++c) {
        const int64_t i = (b * 5 + t) * 4 + c;
        const double want = t < lengths[b] ? x.value()[i] / (1 + std::exp(-q.value()[i] * k.value()[i])) : 0.0;
        CHECK(y.value()[i] == doctest::Approx(want).epsilon(1e-14));
      }
  check_gradients([&](std::vector<Var<double>>& in) { return laf_gate(in[0], in[1], in[2], lengths); }, {q, k, x});
  // Gradient flows into one input only when only that one requires it.
  Var<double> xc(x.value().clone());
  Var<double> qq = Var<double>::parameter(q.value().clone());
  backward(sum(laf_gate(qq, Var<double>(k.value()), xc, lengths)));
  CHECK(qq.grad().defined());
}

TEST_CASE("dcd LAF: forward equals the naive definition (mean and max windows)") {
  Rng rng(13);
  const int D = 6;
  const std::vector<int> lengths{10, 7};
  Tensor<double> tgt = random_tensor(Shape{2, 10, D}, rng), ref = random_tensor(Shape{2, 10, D}, rng);
  for (const char* agg : {"mean", "max"}) {
    CAPTURE(agg);
    dcd::LafOptions o;
    o.aggregation = agg;
    o.window = 5;
    dcd::LAF<double> laf(D, o, &rng);
    randomise(laf, rng);
    Var<double> out = laf.forward(Var<double>(tgt), Var<double>(ref), lengths);
    auto a = naive_window(tgt, lengths, 5, std::string(agg) == "max");
    auto q = naive_1x1(a, 2, 10, D, laf.query.conv.weight().value(), laf.query.conv.bias().value(), lengths);
    auto k = naive_1x1(as_vec(ref), 2, 10, D, laf.key.conv.weight().value(), laf.key.conv.bias().value(), lengths);
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t t = 0; t < 10; ++t)
        for (int64_t c = 0; c < D; ++c) {
          const size_t i = size_t((b * 10 + t) * D + c);
          const double want = t < lengths[b] ? tgt[int64_t(i)] / (1 + std::exp(-q[i] * k[i])) : 0.0;
          CHECK(out.value()[int64_t(i)] == doctest::Approx(want).epsilon(1e-12));
        }
    // The attention is one weight per step and channel in (0, 1).
    Var<double> w = laf.attention(Var<double>(tgt), Var<double>(ref), lengths);
    CHECK(w.shape() == Shape{2, 10, D});
  }
  // Names: the minimal layer has exactly W_q and W_k.
  dcd::LAF<double> plain(D);
  std::vector<std::string> names;
  for (auto& [n, p] : plain.named_parameters()) names.push_back(n);
  CHECK(names == std::vector<std::string>{"query.conv.weight", "query.conv.bias", "key.conv.weight", "key.conv.bias"});
  dcd::LafOptions all;
  all.residual = all.norm = all.out_proj = true;
  dcd::LAF<double> full(D, all);
  CHECK(full.named_parameters().size() == 8);
  dcd::LafOptions bad;
  bad.window = 4;
  CHECK_THROWS_AS(dcd::LAF<double>(D, bad), Error);
  CHECK_THROWS_AS(plain.forward(Var<double>(tgt), Var<double>(random_tensor(Shape{2, 9, D}, rng)), lengths), Error);
}

TEST_CASE("dcd LAF: gradients of the whole layer w.r.t. inputs and every parameter (double)") {
  Rng rng(17);
  const int D = 4;
  const std::vector<int> lengths{7, 5};
  struct Case {
    const char* agg;
    int window;
    bool residual, norm, out_proj;
  };
  for (Case cs : {Case{"mean", 5, false, false, false}, Case{"max", 3, false, false, false}, Case{"mean", 1, true, false, false},
                  Case{"mean", 3, true, true, true}}) {
    CAPTURE(cs.agg);
    CAPTURE(cs.window);
    CAPTURE(cs.norm);
    dcd::LafOptions o;
    o.aggregation = cs.agg;
    o.window = cs.window;
    o.residual = cs.residual;
    o.norm = cs.norm;
    o.out_proj = cs.out_proj;
    dcd::LAF<double> laf(D, o, &rng);
    randomise(laf, rng);
    std::vector<Var<double>> inputs{Var<double>::parameter(random_tensor(Shape{2, 7, D}, rng)),
                                    Var<double>::parameter(random_tensor(Shape{2, 7, D}, rng))};
    for (Var<double>* p : laf.parameters()) inputs.push_back(*p);
    check_gradients([&](std::vector<Var<double>>& in) { return laf.forward(in[0], in[1], lengths); }, inputs);
  }
}

TEST_CASE("dcd student: shapes for both detector families, parameter names, fusion variants, config round trip") {
  for (const char* arch : {"actionformer", "temporalmaxer"}) {
    for (const char* fusion : {"laf", "concat"}) {
      CAPTURE(arch);
      CAPTURE(fusion);
      dcd::DcdStudentConfig sc;
      sc.detector = tiny_config(arch, "rgb");
      sc.branch_dim = 12;
      sc.fusion = fusion;
      dcd::DcdStudent<float> s(sc, 3);
      Rng rng(1);
      Tensor<float> x(Shape{2, 128, 16});
      for (int64_t i = 0; i < x.numel(); ++i) x[i] = float(rng.normal());
      dcd::DcdStudentOutput<float> o = s.forward_all(Var<float>(x), {128, 70});
      REQUIRE(o.motion.size() == 4);
      for (size_t l = 0; l < 4; ++l) {
        const int64_t Tl = 128 >> l;
        CHECK(o.trunk[l].shape() == Shape{2, Tl, 16});
        CHECK(o.motion[l].shape() == Shape{2, Tl, 12});
        CHECK(o.appearance[l].shape() == Shape{2, Tl, 12});
        CHECK(o.fused[l].shape() == Shape{2, Tl, 24});
        CHECK(o.joint.cls_logits[l].shape() == Shape{2, Tl, 4});
        CHECK(o.joint.offsets[l].shape() == Shape{2, Tl, 2});
        CHECK(o.lengths[l] == std::vector<int>{int(Tl), int((70 + (1 << l) - 1) >> l)});
        // Padded positions of the fused features are zero.
        const int64_t len1 = o.lengths[l][1];
        for (int64_t t = len1; t < Tl; ++t)
          for (int64_t c = 0; c < 24; ++c) CHECK(o.fused[l].value()[(Tl + t) * 24 + c] == 0.0f);
      }
      auto br = s.branch_heads(o.motion, o.lengths);
      CHECK(br.cls_logits[2].shape() == Shape{2, 32, 4});
      // The inference path is the joint path.
      auto inf = s.forward(Var<float>(x), {128, 70});
      CHECK(inf.cls_logits[0].value().to_vector() == o.joint.cls_logits[0].value().to_vector());
      // The analysis heads: forward() reads the shared branch heads on one branch.
      CHECK(s.inference_head() == dcd::StudentHead::joint);
      auto ba = s.branch_heads(o.appearance, o.lengths);
      for (auto [h, want] : {std::pair{dcd::StudentHead::motion, &br}, std::pair{dcd::StudentHead::appearance, &ba}}) {
        s.set_inference_head(h);
        auto got = s.forward(Var<float>(x), {128, 70});
        for (size_t l = 0; l < 4; ++l) {
          CHECK(got.cls_logits[l].value().to_vector() == want->cls_logits[l].value().to_vector());
          CHECK(got.offsets[l].value().to_vector() == want->offsets[l].value().to_vector());
        }
      }
      s.set_inference_head(dcd::parse_student_head("joint"));
      CHECK(s.forward(Var<float>(x), {128, 70}).cls_logits[1].value().to_vector() ==
            o.joint.cls_logits[1].value().to_vector());
      CHECK(dcd::parse_student_head("motion") == dcd::StudentHead::motion);
      CHECK_THROWS_AS(dcd::parse_student_head("fused"), Error);
      // Stable names in the documented order.
      std::vector<std::string> prefixes;
      for (auto& [n, p] : s.named_parameters()) {
        std::string pre = n.substr(0, n.find('.'));
        if (prefixes.empty() || prefixes.back() != pre) prefixes.push_back(pre);
      }
      std::vector<std::string> want{"backbone", "neck", "proj_motion", "proj_appearance", "branch_cls_head", "branch_reg_head"};
      if (std::string(fusion) == "laf") {
        want.push_back("laf_motion");
        want.push_back("laf_appearance");
      }
      want.push_back("joint_cls_head");
      want.push_back("joint_reg_head");
      CHECK(prefixes == want);
      // The trunk starts exactly as a detector from the same config and seed.
      models::Detector<float> det(sc.detector, 3);
      auto sd = s.state_dict();
      for (auto& [n, t] : det.state_dict())
        if (n.rfind("backbone.", 0) == 0 || n.rfind("neck.", 0) == 0) CHECK(sd.at(n).to_vector() == t.to_vector());
      // Config JSON round trip.
      dcd::DcdStudentConfig back = dcd::parse_dcd_student_config(
          json::parse(json::dump(dcd::dcd_student_config_to_json(sc)), "rt"), "rt");
      CHECK(back.branch_dim == 12);
      CHECK(back.fusion == fusion);
      CHECK(back.laf.window == 5);
      CHECK(back.detector.arch == arch);
      CHECK(back.detector.channels == sc.detector.channels);
    }
  }
  dcd::DcdStudentConfig bad;
  bad.detector = tiny_config("actionformer", "rgb");
  bad.fusion = "sum";
  CHECK_THROWS_AS(dcd::DcdStudent<float>{bad}, Error);
}

TEST_CASE("dcd distillation: d_f and d_p equal their documented normalisations, padding is ignored") {
  Rng rng(21);
  const std::vector<std::vector<int>> lens{{6, 3}, {3, 2}};
  // d_f
  std::vector<Var<double>> s, t;
  for (int64_t Tl : {6, 3}) {
    s.push_back(Var<double>::parameter(random_tensor(Shape{2, Tl, 5}, rng)));
    t.push_back(Var<double>(random_tensor(Shape{2, Tl, 5}, rng)));
  }
  double want = 0;
  for (size_t l = 0; l < 2; ++l)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t k = 0; k < lens[l][b]; ++k)
        for (int64_t c = 0; c < 5; ++c) {
          const int64_t i = (b * s[l].size(1) + k) * 5 + c;
          want += std::pow(s[l].value()[i] - t[l].value()[i], 2);
        }
  want /= double(6 + 3 + 3 + 2) * 5;
  Var<double> df = dcd::feature_distillation(s, t, lens);
  CHECK(df.value()[0] == doctest::Approx(want).epsilon(1e-12));
  check_gradients([&](std::vector<Var<double>>& in) { return dcd::feature_distillation(in, t, lens); }, s);
  // d_p: identical outputs give 0 (KL), shifted ones the documented value.
  models::DetectorOutput<double> st, te;
  st.lengths = te.lengths = lens;
  for (int64_t Tl : {6, 3}) {
    te.cls_logits.push_back(Var<double>(random_tensor(Shape{2, Tl, 3}, rng, 2.0)));
    Tensor<double> off(Shape{2, Tl, 2});
    for (int64_t i = 0; i < off.numel(); ++i) off[i] = 1 + rng.uniform();
    te.offsets.push_back(Var<double>(off));
    st.cls_logits.push_back(Var<double>::parameter(te.cls_logits.back().value().clone()));
    st.offsets.push_back(Var<double>::parameter(off.clone()));
  }
  dcd::DistillationOptions o;
  o.reg_threshold = 0.7;
  auto same = dcd::prediction_distillation(st, te, nullptr, o);
  CHECK(std::abs(same.cls.value()[0]) < 1e-12);
  CHECK(same.reg.value()[0] == 0.0);
  int64_t sel = 0;
  for (size_t l = 0; l < 2; ++l)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t k = 0; k < lens[l][b]; ++k) {
        double pmax = 0;
        for (int c = 0; c < 3; ++c)
          pmax = std::max(pmax, 1 / (1 + std::exp(-te.cls_logits[l].value()[(b * te.cls_logits[l].size(1) + k) * 3 + c])));
        sel += pmax > 0.7;
      }
  CHECK(same.num_reg == sel);
  CHECK(same.num_valid == 14);
  // Move every student logit by +0.5 and offset by +0.25: reg = 0.25 exactly, cls = mean KL.
  for (size_t l = 0; l < 2; ++l) {
    for (int64_t i = 0; i < st.cls_logits[l].value().numel(); ++i) st.cls_logits[l].value()[i] += 0.5;
    for (int64_t i = 0; i < st.offsets[l].value().numel(); ++i) st.offsets[l].value()[i] += 0.25;
  }
  auto moved = dcd::prediction_distillation(st, te, nullptr, o);
  if (sel > 0) CHECK(moved.reg.value()[0] == doctest::Approx(0.25).epsilon(1e-12));
  double kl = 0;
  for (size_t l = 0; l < 2; ++l)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t k = 0; k < lens[l][b]; ++k)
        for (int c = 0; c < 3; ++c) {
          const int64_t i = (b * te.cls_logits[l].size(1) + k) * 3 + c;
          const double p = 1 / (1 + std::exp(-te.cls_logits[l].value()[i]));
          const double q = 1 / (1 + std::exp(-st.cls_logits[l].value()[i]));
          kl += p * std::log(p / q) + (1 - p) * std::log((1 - p) / (1 - q));
        }
  CHECK(moved.cls.value()[0] == doctest::Approx(kl / 14).epsilon(1e-9));
  CHECK(moved.total.value()[0] == doctest::Approx(moved.cls.value()[0] + moved.reg.value()[0]).epsilon(1e-12));
  std::vector<Var<double>> params{st.cls_logits[0], st.cls_logits[1], st.offsets[0], st.offsets[1]};
  check_gradients(
      [&](std::vector<Var<double>>& in) {
        models::DetectorOutput<double> x = st;
        x.cls_logits = {in[0], in[1]};
        x.offsets = {in[2], in[3]};
        return dcd::prediction_distillation(x, te, nullptr, o).total;
      },
      params, 1e-6, 2e-5);
}

TEST_CASE("dcd training: detector, plain KD and DCD losses decrease on the tiny synthetic set, the teacher stays frozen") {
  models::Detector<float>& teacher = flow_teacher();
  const auto teacher_before = snapshot(teacher);
  const data::Batch& b = fixed_batch();
  REQUIRE(b.C == 32);

  SUBCASE("RGB-only detector") {
    models::Detector<float> det(fixed_point_config("actionformer", "rgb"), 5);
    dcd::DetectorTask<float> task(det);
    auto losses = train_steps(task, b, 25);
    CHECK(tail_mean(losses) < 0.8 * losses[0]);
  }
  SUBCASE("plain KD (entangled), TemporalMaxer student") {
    models::Detector<float> det(fixed_point_config("temporalmaxer", "rgb"), 5);
    dcd::PlainKdOptions po;
    po.lambda_p = 1.0;
    dcd::PlainKdTask<float> task(det, teacher, po);
    CHECK(task.adapter() == nullptr);
    auto losses = train_steps(task, b, 25);
    CHECK(tail_mean(losses) < 0.8 * losses[0]);
  }
  SUBCASE("DCD student, LAF fusion, ActionFormer trunk") {
    dcd::DcdStudentConfig sc;
    sc.detector = fixed_point_config("actionformer", "rgb");
    dcd::DcdStudent<float> s(sc, 5);
    dcd::DcdTask<float> task(s, teacher);
    auto t0 = task.terms(b, false);
    auto losses = train_steps(task, b, 25);
    auto t1 = task.terms(b, false);
    CHECK(tail_mean(losses) < 0.8 * losses[0]);
    // Every term went down, the distillation ones included.
    CHECK(t1.joint.final_loss.value()[0] < t0.joint.final_loss.value()[0]);
    CHECK(t1.appearance.final_loss.value()[0] < t0.appearance.final_loss.value()[0]);
    CHECK(t1.feature.value()[0] < t0.feature.value()[0]);
    CHECK(t1.prediction.total.value()[0] < t0.prediction.total.value()[0]);
    CHECK(t0.prediction.num_reg > 0);
  }
  SUBCASE("DCD student, concat fusion, TemporalMaxer trunk, a narrower branch width (adapter)") {
    dcd::DcdStudentConfig sc;
    sc.detector = fixed_point_config("temporalmaxer", "rgb");
    sc.fusion = "concat";
    sc.branch_dim = 8;
    dcd::DcdStudent<float> s(sc, 5);
    dcd::DcdTask<float> task(s, teacher);
    REQUIRE(task.adapter() != nullptr);
    bool has_adapter = false;
    for (auto& [n, p] : task.module().named_parameters()) has_adapter = has_adapter || n == "adapter.proj.conv.weight";
    CHECK(has_adapter);
    auto losses = train_steps(task, b, 25);
    CHECK(tail_mean(losses) < 0.8 * losses[0]);
  }
  // The teacher never received a gradient and never changed.
  for (auto& [name, p] : teacher.named_parameters()) {
    CAPTURE(name);
    CHECK(!p->grad().defined());
  }
  CHECK(snapshot(teacher) == teacher_before);
}

TEST_CASE("dcd gradients: F_m gets no ground-truth gradient, F_a no distillation gradient, the switch cuts the joint loss") {
  models::Detector<float>& teacher = flow_teacher();
  const data::Batch& b = fixed_batch();
  dcd::DcdStudentConfig sc;
  sc.detector = tiny_config("actionformer", "rgb");
  dcd::DcdStudent<float> s(sc, 9);
  dcd::DcdTask<float> task(s, teacher);
  s.train(true);
  auto run = [&](dcd::DcdTask<float>& tk, auto pick) {
    tk.module().zero_grad();
    auto t = tk.terms(b, false);
    backward(pick(t));
  };
  // Appearance-branch GT loss: nothing reaches the motion projection.
  run(task, [](dcd::DcdLossTerms<float>& t) { return t.appearance.final_loss; });
  CHECK(all_grads_zero(s.proj_motion()));
  CHECK(any_grad_nonzero(s.proj_appearance()));
  CHECK(any_grad_nonzero(s.branch_cls_head()));
  // Feature distillation: nothing reaches the appearance projection or any head.
  run(task, [](dcd::DcdLossTerms<float>& t) { return t.feature; });
  CHECK(all_grads_zero(s.proj_appearance()));
  CHECK(any_grad_nonzero(s.proj_motion()));
  CHECK(all_grads_zero(s.branch_cls_head()));
  CHECK(all_grads_zero(s.joint_cls_head()));
  // Prediction distillation: motion projection and the shared branch head, not the appearance projection.
  run(task, [](dcd::DcdLossTerms<float>& t) { return t.prediction.total; });
  CHECK(all_grads_zero(s.proj_appearance()));
  CHECK(any_grad_nonzero(s.proj_motion()));
  CHECK(any_grad_nonzero(s.branch_cls_head()));
  CHECK(any_grad_nonzero(s.branch_reg_head()));
  // Joint loss, default: flows through the fusion into both projections.
  run(task, [](dcd::DcdLossTerms<float>& t) { return t.joint.final_loss; });
  CHECK(any_grad_nonzero(s.proj_motion()));
  CHECK(any_grad_nonzero(s.proj_appearance()));
  CHECK(all_grads_zero(s.branch_cls_head()));
  // Joint loss with the switch off: stops at the fusion input.
  dcd::DcdTaskOptions cut;
  cut.joint_grad_to_branches = false;
  dcd::DcdTask<float> task_cut(s, teacher, cut);
  run(task_cut, [](dcd::DcdLossTerms<float>& t) { return t.joint.final_loss; });
  CHECK(all_grads_zero(s.proj_motion()));
  CHECK(all_grads_zero(s.proj_appearance()));
  for (auto& [name, p] : s.named_parameters())
    if (name.rfind("backbone.", 0) == 0 || name.rfind("neck.", 0) == 0) CHECK(grad_is_zero(*p));
  CHECK(any_grad_nonzero(*s.laf_motion()));
  CHECK(any_grad_nonzero(s.joint_reg_head()));
  for (auto& [name, p] : teacher.named_parameters()) CHECK(!p->grad().defined());
}

TEST_CASE("dcd student file: save/load reproduces detections bit for bit, holds no teacher tensor, runs via load_any_model") {
  models::Detector<float>& teacher = flow_teacher();
  dcd::DcdStudentConfig sc;
  sc.detector = fixed_point_config("actionformer", "rgb");
  sc.branch_dim = 8;  // with an adapter in training: it must not end up in the file either
  dcd::DcdStudent<float> s(sc, 21);
  dcd::DcdTask<float> task(s, teacher);
  train_steps(task, fixed_batch(), 8);
  s.train(false);

  const std::string path = scratch_dir() + "/student.safetensors";
  dcd::save_dcd_student(path, s, {{"note", "test"}});
  io::SafeTensors st = io::load_safetensors(path);
  CHECK(st.metadata.at("format") == "flowless-dcd-student");
  CHECK(st.metadata.at("note") == "test");
  std::set<std::string> names, want;
  int64_t stored = 0;
  for (auto& [n, a] : st.tensors) {
    names.insert(n);
    stored += io::shape_numel(a.shape, n);
  }
  for (auto& [n, p] : s.named_parameters()) want.insert(n);
  CHECK(names == want);
  CHECK(stored == s.num_parameters());
  auto teacher_sd = teacher.state_dict();
  for (auto& [n, a] : st.tensors) {
    CHECK(n.find("adapter") == std::string::npos);
    auto it = teacher_sd.find(n);
    if (it != teacher_sd.end() && io::shape_numel(a.shape, n) == it->second.numel())
      CHECK(a.to_float32(n) != it->second.to_vector());
  }

  // Detections on a test video, original vs reloaded, bit for bit.
  data::DatasetOptions dopt;
  dopt.split = {"test"};
  data::Dataset test(tiny_dataset(), dopt);
  data::VideoItem item = test.item(0);
  REQUIRE(item.C == 32);
  std::vector<float> rgb(size_t(item.T) * 16);
  for (int t = 0; t < item.T; ++t)
    for (int c = 0; c < 16; ++c) rgb[size_t(t * 16 + c)] = item.feats[size_t(t * 32 + c)];
  VideoMeta meta{item.id, item.fps, item.duration, item.feat_stride, item.num_frames};
  models::DetectorOutput<float> raw_a, raw_b;
  auto dets_a = s.detect(rgb.data(), item.T, 16, meta, &raw_a);
  auto loaded = dcd::load_dcd_student<float>(path);
  auto dets_b = loaded->detect(rgb.data(), item.T, 16, meta, &raw_b);
  CHECK(!dets_a.empty());
  CHECK(same_detections(dets_a, dets_b));
  for (size_t l = 0; l < raw_a.cls_logits.size(); ++l) {
    CHECK(raw_a.cls_logits[l].value().to_vector() == raw_b.cls_logits[l].value().to_vector());
    CHECK(raw_a.offsets[l].value().to_vector() == raw_b.offsets[l].value().to_vector());
  }
  CHECK(loaded->config().branch_dim == 8);

  // The common interface: a two-stream feature file (32 channels) is sliced to the RGB range.
  auto any = models::load_any_model<float>(path);
  CHECK(any->format() == "flowless-dcd-student");
  CHECK(any->config().channels == std::array<int, 2>{0, 16});
  CHECK(same_detections(any->detect(item.feats.data(), item.T, 32, meta), dets_a));
  CHECK(same_detections(any->detect(rgb.data(), item.T, 16, meta), dets_a));
  CHECK_THROWS_AS(any->detect(rgb.data(), item.T, 8, meta), Error);
  // ... and a detector file through the same entry point.
  const std::string tpath = scratch_dir() + "/teacher.safetensors";
  models::save_detector(tpath, teacher);
  auto anyt = models::load_any_model<float>(tpath);
  CHECK(anyt->format() == "flowless-detector");
  std::vector<float> flow(size_t(item.T) * 16);
  for (int t = 0; t < item.T; ++t)
    for (int c = 0; c < 16; ++c) flow[size_t(t * 16 + c)] = item.feats[size_t(t * 32 + 16 + c)];
  CHECK(same_detections(anyt->detect(item.feats.data(), item.T, 32, meta), teacher.detect(flow.data(), item.T, 16, meta)));
  // A student file is not a detector file and vice versa.
  CHECK_THROWS_AS(models::load_detector<float>(path), Error);
  CHECK_THROWS_AS(dcd::load_dcd_student<float>(tpath), Error);
}

TEST_CASE("dcd tasks: a Trainer run checkpoints the normalisers and generator, channel resolution") {
  models::Detector<float>& teacher = flow_teacher();
  dcd::DcdStudentConfig sc;
  sc.detector = tiny_config("temporalmaxer", "rgb");
  sc.detector.init_loss_norm = 100;
  dcd::DcdStudent<float> s(sc, 2);
  dcd::DcdTask<float> task(s, teacher);
  train::TrainerOptions to;
  to.epochs = 1;
  to.warmup_epochs = 0;
  to.batch_size = 4;
  to.lr = 1e-3;
  to.progress = false;
  to.checkpoint = scratch_dir() + "/dcd.ckpt";
  train::Trainer<float> tr(task, train_set(), to);
  std::vector<train::EpochSummary> epochs;
  tr.run([&](const train::EpochSummary& e) { epochs.push_back(e); });
  REQUIRE(epochs.size() == 1);
  CHECK(epochs[0].iterations == 3);
  CHECK(std::isfinite(epochs[0].mean_loss));
  CHECK(epochs[0].mean_parts.count("d_f") == 1);
  CHECK(task.joint_criterion().loss_norm() < 100);

  dcd::DcdStudent<float> s2(sc, 99);
  dcd::DcdTask<float> task2(s2, teacher);
  train::Trainer<float> tr2(task2, train_set(), to);
  tr2.load_checkpoint(to.checkpoint);
  CHECK(task2.joint_criterion().loss_norm() == task.joint_criterion().loss_norm());
  CHECK(task2.appearance_criterion().loss_norm() == task.appearance_criterion().loss_norm());
  CHECK(s2.rng().state() == s.rng().state());

  // Channel ranges: explicit > whole batch of input_dim channels > config channels.
  DetectorConfig c = tiny_config("actionformer", "flow");
  CHECK(dcd::resolve_channels({0, 0}, c, 32, "t") == dcd::ChannelRange{16, 32});
  CHECK(dcd::resolve_channels({0, 0}, c, 16, "t") == dcd::ChannelRange{0, 16});
  CHECK(dcd::resolve_channels({4, 20}, c, 32, "t") == dcd::ChannelRange{4, 20});
  CHECK_THROWS_AS(dcd::resolve_channels({0, 8}, c, 32, "t"), Error);
  c.channels = {0, 0};
  CHECK_THROWS_AS(dcd::resolve_channels({0, 0}, c, 32, "t"), Error);
  // A teacher with another pyramid is refused.
  DetectorConfig other = tiny_config("actionformer", "flow");
  other.backbone_arch = {2, 1, 2};
  other.mha_win_size = {9, 9, 9};
  models::Detector<float> wrong(other);
  CHECK_THROWS_AS(dcd::DcdTask<float>(s, wrong), Error);
  // batch_input copies exactly the selected channels.
  const data::Batch& b = fixed_batch();
  Tensor<float> x = dcd::batch_input<float>(b, {16, 32});
  CHECK(x.shape() == Shape{b.B, b.T, 16});
  CHECK(x[(1 * b.T + 5) * 16 + 3] == b.feats[size_t((1 * b.T + 5) * 32 + 16 + 3)]);
}

TEST_CASE("dcd experiment variants: names, options, file stems, bad specs name the spec and the problem") {
  workflow::TrainRequest r;
  workflow::configure_variant(r, "dcd-laf:window=9,aggregation=max,residual=1,norm=1,out_proj=1,joint_grad=0,branch_dim=32,"
                                 "branch_weight=0.5,lambda_f=2,lambda_p=0.25");
  CHECK(r.mode == "dcd");
  CHECK(r.fusion == "laf");
  CHECK(r.laf.window == 9);
  CHECK(r.laf.aggregation == "max");
  CHECK((r.laf.residual && r.laf.norm && r.laf.out_proj));
  CHECK_FALSE(r.joint_grad);
  CHECK(r.branch_dim == 32);
  CHECK(r.branch_weight == 0.5);
  CHECK(r.lambda_f == 2.0);
  CHECK(r.lambda_p == 0.25);
  workflow::TrainRequest c;
  workflow::configure_variant(c, "dcd-concat");
  CHECK((c.mode == "dcd" && c.fusion == "concat" && c.laf.window == 5 && c.joint_grad));
  workflow::TrainRequest k;
  workflow::configure_variant(k, "kd-plain:lambda_f=4");
  CHECK((k.mode == "kd-plain" && k.lambda_f == 4.0));
  workflow::TrainRequest d;
  workflow::configure_variant(d, "two-stream");
  CHECK((d.mode == "detector" && d.modality == "two-stream"));
  CHECK(workflow::variant_file_stem("dcd-laf:window=9,residual=1") == "dcd-laf_window9_residual1");
  CHECK(workflow::variant_file_stem("rgb") == "rgb");

  auto fails = [](const std::string& spec, const std::string& what) {
    workflow::TrainRequest x;
    CAPTURE(spec);
    try {
      workflow::configure_variant(x, spec);
      workflow::variant_file_stem(spec);
      FAIL("accepted");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.find(spec) != std::string::npos);
      CHECK(msg.find(what) != std::string::npos);
    }
  };
  fails("dcd-lafx", "unknown name");
  fails("rgb:window=3", "detector variants take no options");
  fails("dcd-concat:window=3", "dcd-laf variants only");
  fails("kd-plain:joint_grad=0", "dcd-* variants only");
  fails("dcd-laf:window=4", "odd");
  fails("dcd-laf:window=-3", "non-negative integer");
  fails("dcd-laf:window", "KEY=VALUE");
  fails("dcd-laf:residual=yes", "0 or 1");
  fails("dcd-laf:lambda_f=nan", "not a number");
  fails("dcd-laf:lambda_p=-1", "lambda_p must be >= 0");
  fails("dcd-laf:aggregation=median", "mean or max");
  fails("dcd-laf:speed=3", "unknown option 'speed'");
  fails("dcd-laf:window=3/", "not a number");
}
