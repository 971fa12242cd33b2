// TriDet checkpoints: the SGP block (models/sgp_block.hpp) and its two new
// ops (ops/time_broadcast.hpp), the Trident head's decoding
// (infer/trident.hpp), TriDet's config layout, and end-to-end parity with the
// reference code (tests/data/tridet_small, written by dev/tridet_reference.py).
#include <doctest/doctest.h>

#include <cmath>

#include "flowless/io/npy.hpp"
#include "flowless/models/model_file.hpp"
#include "flowless/workflow/training.hpp"
#include "gradcheck.hpp"
#include "reference_parity.hpp"

using namespace flowless;

namespace {
const std::string kDir = std::string(FLOWLESS_TEST_DATA) + "/tridet_small/";

DetectorConfig td_config(const std::string& name = "config.json") {
  return parse_detector_config(json::parse_file(kDir + name), kDir + name);
}

void check_td_video(models::Detector<float>& model, const std::string& vid) {
  const json::Value expected = json::parse_file(kDir + "expected_detections.json").at(vid);
  CHECK(model.config().inference_length(expected.at("num_feats").as_int()) == expected.at("padded_len").as_int());
  test::check_fixture_video(model, kDir, vid);
}
}  // namespace

TEST_CASE("mean_time and mul_time_broadcast: values over the whole buffer, and their gradients") {
  Rng rng(11);
  Tensor<double> xt = test::random_tensor(Shape{2, 5, 3}, rng);
  Var<double> m = mean_time(Var<double>(xt));
  REQUIRE(m.shape() == Shape{2, 1, 3});
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t c = 0; c < 3; ++c) {
      double s = 0;
      for (int64_t t = 0; t < 5; ++t) s += xt[(b * 5 + t) * 3 + c];
      CHECK(m.value()[b * 3 + c] == doctest::Approx(s / 5).epsilon(1e-14));
    }
  Tensor<double> gt = test::random_tensor(Shape{2, 1, 3}, rng);
  Var<double> y = mul_time_broadcast(Var<double>(xt), Var<double>(gt));
  for (int64_t i = 0; i < xt.numel(); ++i) CHECK(y.value()[i] == xt[i] * gt[(i / 15) * 3 + i % 3]);
  test::check_gradients([](std::vector<Var<double>>& v) { return mean_time(v[0]); },
                        {Var<double>::parameter(test::random_tensor(Shape{2, 6, 4}, rng))});
  test::check_gradients([](std::vector<Var<double>>& v) { return mul_time_broadcast(v[0], v[1]); },
                        {Var<double>::parameter(test::random_tensor(Shape{2, 6, 4}, rng)),
                         Var<double>::parameter(test::random_tensor(Shape{2, 1, 4}, rng))});
  // Both inputs one node: the two gradient contributions add up.
  test::check_gradients([](std::vector<Var<double>>& v) { return mul_time_broadcast(v[0], mean_time(v[0])); },
                        {Var<double>::parameter(test::random_tensor(Shape{1, 4, 3}, rng))});
  CHECK_THROWS_WITH(mul_time_broadcast(Var<double>(xt), Var<double>(test::random_tensor(Shape{2, 5, 3}, rng))),
                    doctest::Contains("is not (2, 1, 3)"));
  CHECK_THROWS_WITH(mean_time(Var<double>(test::random_tensor(Shape{5, 3}, rng))), doctest::Contains("expected (B, T, C)"));
}

TEST_CASE("sgp block: the wide kernel follows Python's round, and the block's gradients") {
  CHECK(models::sgp_wide_kernel(1, 5.0) == 11);   // THUMOS: round(10) = 10, made odd
  CHECK(models::sgp_wide_kernel(15, 1.3) == 21);  // ActivityNet: round(20.8)
  CHECK(models::sgp_wide_kernel(5, 2.0) == 13);   // EPIC: round(12) = 12, made odd
  CHECK(models::sgp_wide_kernel(1, 1.25) == 3);   // round(2.5) = 2 (half to even), made odd
  CHECK(models::sgp_wide_kernel(1, 1.75) == 5);   // round(3.5) = 4 (half to even), made odd
  Rng rng(5);
  for (int stride : {1, 2}) {
    models::SGPBlock<double> block(16, 3, stride, 1.5, 24, 0.0, rng);
    block.reset_depthwise(0.3, rng);
    CHECK(block.convkw.kernel_size() == 7);
    Var<double> x = Var<double>::parameter(test::random_tensor(Shape{2, 8, 16}, rng));
    const std::vector<int> lengths{8, 5};
    auto [y, len] = block.forward(x, lengths, rng);
    CHECK(y.shape() == Shape{2, 8 / stride, 16});
    CHECK(len == (stride == 1 ? lengths : std::vector<int>{4, 3}));
    auto params = block.named_parameters();
    std::vector<Var<double>> inputs{x};
    for (auto& [name, p] : params)
      if (name == "convkw.weight" || name == "global_fc.weight" || name == "fc.bias" || name == "gn.weight" ||
          name == "ln.bias" || name == "psi.weight" || name == "mlp.0.weight")
        inputs.push_back(*p);
    REQUIRE(inputs.size() == 8);
    CAPTURE(stride);
    test::check_gradients(
        [&](std::vector<Var<double>>& v) { return block.forward(v[0], lengths, rng).first; }, inputs);
  }
  CHECK_THROWS_WITH(models::SGPBlock<float>(24, 3, 1, 1.5, 8, 0.0, rng), doctest::Contains("divisible by 16"));
  CHECK_THROWS_WITH(models::SGPBlock<float>(16, 4, 1, 1.5, 8, 0.0, rng), doctest::Contains("must be odd"));
}

TEST_CASE("trident decode: the expected distance under the boundary-plus-bin softmax") {
  // 3 steps, 2 classes, 2 bins (3 positions per side).
  const int64_t len = 3, C = 2;
  const int nb = 2;
  Rng rng(9);
  std::vector<float> bins(size_t(len * 2 * (nb + 1))), start(size_t(len * C)), end(size_t(len * C));
  for (auto* v : {&bins, &start, &end})
    for (auto& x : *v) x = float(rng.normal());
  const std::vector<float> d = trident_decode(bins, start, end, len, C, nb);
  REQUIRE(d.size() == size_t(len * C * 2));
  for (int64_t t = 0; t < len; ++t)
    for (int64_t c = 0; c < C; ++c) {
      double zl[3], zr[3], sl = 0, sr = 0, left = 0, right = 0;
      for (int j = 0; j <= nb; ++j) {
        const int64_t i = t - nb + j, k = t + j;
        zl[j] = std::exp((i >= 0 ? start[size_t(i * C + c)] : 0.0) + bins[size_t(t * 2 * (nb + 1) + j)]);
        zr[j] = std::exp((k < len ? end[size_t(k * C + c)] : 0.0) + bins[size_t(t * 2 * (nb + 1) + nb + 1 + j)]);
        sl += zl[j];
        sr += zr[j];
      }
      for (int j = 0; j <= nb; ++j) {
        left += zl[j] / sl * (nb - j);
        right += zr[j] / sr * j;
      }
      CAPTURE(t); CAPTURE(c);
      CHECK(d[size_t((t * C + c) * 2)] == doctest::Approx(left).epsilon(1e-6));
      CHECK(d[size_t((t * C + c) * 2 + 1)] == doctest::Approx(right).epsilon(1e-6));
    }
  // A start boundary head sure of step t - 2 (and an end head of t + 1) gives those distances.
  std::vector<float> b0(size_t(len * 2 * (nb + 1)), 0.0f), s0(size_t(len * C), 0.0f), e0(size_t(len * C), 0.0f);
  s0[size_t(0 * C + 1)] = 60.0f;  // step 0, class 1
  e0[size_t(2 * C + 1)] = 60.0f;  // step 2, class 1
  const std::vector<float> d0 = trident_decode(b0, s0, e0, len, C, nb);
  CHECK(d0[size_t((2 * C + 1) * 2)] == doctest::Approx(2.0).epsilon(1e-6));      // t = 2: start at 0
  CHECK(d0[size_t((1 * C + 1) * 2 + 1)] == doctest::Approx(1.0).epsilon(1e-6));  // t = 1: end at 2
  CHECK(d0[size_t((1 * C + 0) * 2 + 1)] == doctest::Approx(1.0).epsilon(1e-6));  // class 0: uniform, mean 1
  CHECK_THROWS_WITH(trident_decode(b0, s0, e0, len, C, 3), doctest::Contains("bin logits"));
}

TEST_CASE("tridet config: TriDet's layout is read as the reference builds it") {
  const DetectorConfig c = td_config();
  CHECK(c.arch == "tridet");
  CHECK(c.mha_win_size == std::vector<int>(6, 1));
  CHECK(c.sgp_mlp_dim == 96);
  CHECK(c.sgp_k == 5.0);
  CHECK(c.num_bins == 16);
  CHECK(c.trident());
  CHECK(c.offset_channels() == 34);
  CHECK(c.boundary_kernel_size == 3);
  CHECK(c.inference_padding == "max_seq_len");
  CHECK(c.max_div_factor() == 32);
  CHECK(c.inference_length(300) == 768);
  CHECK(c.inference_length(1000) == 1024);
  const DetectorConfig a = td_config("config_anet.json");
  CHECK(a.mha_win_size == std::vector<int>(6, 15));
  CHECK(a.use_abs_pe);
  CHECK(a.num_bins == 12);
  CHECK(a.max_div_factor() == 480);  // stride 32 x window 15
  CHECK(a.buffer_multiple() == 32);
  CHECK(a.inference_length(150) == 768);  // max_seq_len, not a multiple of 480
  CHECK(a.inference_length(900) == 960);
  CHECK_FALSE(a.test.nms.multiclass);
  // Written and read back.
  const DetectorConfig r = parse_detector_config(detector_config_to_json(a), "round trip");
  CHECK(r.arch == "tridet");
  CHECK(r.mha_win_size == a.mha_win_size);
  CHECK(r.sgp_k == a.sgp_k);
  CHECK(r.sgp_mlp_dim == a.sgp_mlp_dim);
  CHECK(r.num_bins == a.num_bins);
  CHECK(r.use_abs_pe);
  CHECK(r.inference_padding == "max_seq_len");
  // Bad values name the key.
  auto with = [](const char* key, json::Value v) {
    json::Value j = json::parse_file(kDir + "config.json");
    j["model"][key] = std::move(v);
    return j;
  };
  CHECK_THROWS_WITH(parse_detector_config(with("downsample_type", json::Value("avg")), "td.json"),
                    doctest::Contains("downsample_type 'avg' is not supported"));
  CHECK_THROWS_WITH(parse_detector_config(with("n_sgp_win_size", json::Value(4)), "td.json"),
                    doctest::Contains("SGP windows must be odd"));
  json::Value narrow = with("embd_dim", json::Value(40));
  narrow["model"]["fpn_dim"] = json::Value(40);
  CHECK_THROWS_WITH(parse_detector_config(narrow, "td.json"), doctest::Contains("divisible by 16"));
  CHECK_THROWS_WITH(parse_detector_config(with("backbone_type", json::Value("conv")), "td.json"),
                    doctest::Contains("backbone_type 'conv' is not supported"));
  CHECK_THROWS_WITH(parse_detector_config(with("num_bins", json::Value(-1)), "td.json"),
                    doctest::Contains("num_bins -1"));
}

TEST_CASE("tridet parity: per-level outputs and detections match the reference code (THUMOS config)") {
  auto model = models::load_reference_detector<float>(td_config(), kDir + "weights.safetensors");
  for (const char* vid : {"vid00", "vid01", "vid02"}) check_td_video(*model, vid);
}

TEST_CASE("tridet parity: ActivityNet config (window 15, position encoding, class-agnostic NMS)") {
  auto model = models::load_reference_detector<float>(td_config("config_anet.json"), kDir + "weights_anet.safetensors");
  for (const char* vid : {"vid03", "vid04"}) check_td_video(*model, vid);
}

TEST_CASE("tridet: a saved model file reloads with its config") {
  auto model = models::load_reference_detector<float>(td_config(), kDir + "weights.safetensors");
  const std::string path = std::string(FLOWLESS_BINARY_DIR) + "/test_tridet_model.safetensors";
  models::save_detector(path, *model);
  auto back = models::load_detector<float>(path);
  CHECK(back->config().arch == "tridet");
  CHECK(back->config().iou_weight_power == doctest::Approx(0.2));
  CHECK(back->num_parameters() == model->num_parameters());
  check_td_video(*back, "vid00");
  std::remove(path.c_str());
}

TEST_CASE("trident decode at chosen pairs: values as the inference decode, and gradients") {
  // Two levels (lengths 6 and 3), B = 2, C = 2, nb = 2.
  PointSet pts = make_points({6, 3}, {1, 2}, {{0, 4}, {4, 100}});
  Rng rng(13);
  const int nb = 2;
  auto bins = Var<double>::parameter(test::random_tensor(Shape{2, 9, 6}, rng));
  auto st = Var<double>::parameter(test::random_tensor(Shape{2, 9, 2}, rng));
  auto en = Var<double>::parameter(test::random_tensor(Shape{2, 9, 2}, rng));
  // First and last steps of each level (the zero padding), both classes, both videos.
  const std::vector<TridentPair> pairs{{0, 0, 0}, {0, 5, 1}, {1, 6, 0}, {1, 8, 1}, {1, 3, 1}, {0, 7, 0}, {0, 0, 0}};
  Var<double> d = trident_decode_pairs(bins, st, en, pts, nb, pairs);
  REQUIRE(d.shape() == Shape{7, 2});
  // Against the host decode of each level.
  for (size_t p = 0; p < pairs.size(); ++p) {
    const TridentPair& q = pairs[p];
    const int l = pts.level_of(q.n);
    const int64_t base = pts.offset[size_t(l)], len = pts.levels[size_t(l)].length;
    std::vector<float> b, s, e;
    for (int64_t t = 0; t < len; ++t) {
      for (int j = 0; j < 6; ++j) b.push_back(float(bins.value()[(q.b * 9 + base + t) * 6 + j]));
      for (int c = 0; c < 2; ++c) {
        s.push_back(float(st.value()[(q.b * 9 + base + t) * 2 + c]));
        e.push_back(float(en.value()[(q.b * 9 + base + t) * 2 + c]));
      }
    }
    const std::vector<float> h = trident_decode(b, s, e, len, 2, nb);
    CAPTURE(p);
    CHECK(d.value()[2 * int64_t(p)] == doctest::Approx(h[size_t(((q.n - base) * 2 + q.c) * 2)]).epsilon(1e-5));
    CHECK(d.value()[2 * int64_t(p) + 1] == doctest::Approx(h[size_t(((q.n - base) * 2 + q.c) * 2 + 1)]).epsilon(1e-5));
  }
  test::check_gradients([&](std::vector<Var<double>>& v) { return trident_decode_pairs(v[0], v[1], v[2], pts, nb, pairs); },
                        {bins, st, en});
  CHECK_THROWS_WITH(trident_decode_pairs(bins, st, en, pts, nb, {{2, 0, 0}}), doctest::Contains("outside (2, 9, 2)"));
  CHECK_THROWS_WITH(trident_decode_pairs(bins, st, en, pts, 3, pairs), doctest::Contains("for 3 bins"));
}

TEST_CASE("tridet loss pieces: per-element focal loss, per-row IoU loss, power, and their gradients") {
  Rng rng(17);
  Tensor<double> y(Shape{3, 4});
  for (int64_t i = 0; i < y.numel(); ++i) y[i] = (i % 5 == 0) ? 1.0 : 0.0;
  auto x = Var<double>::parameter(test::random_tensor(Shape{3, 4}, rng, 2.0));
  Var<double> fe = sigmoid_focal_loss_elementwise(x, y);
  double total = 0;
  for (int64_t i = 0; i < fe.value().numel(); ++i) total += fe.value()[i];
  CHECK(total == doctest::Approx(sigmoid_focal_loss(x, y).value()[0]).epsilon(1e-12));
  test::check_gradients([&](std::vector<Var<double>>& v) { return sigmoid_focal_loss_elementwise(v[0], y); }, {x});
  Tensor<double> tg(Shape{4, 2});
  Tensor<double> pr(Shape{4, 2});
  for (int64_t i = 0; i < 8; ++i) {
    tg[i] = 0.5 + std::abs(rng.normal());
    pr[i] = 0.5 + std::abs(rng.normal());
  }
  auto pv = Var<double>::parameter(pr);
  Var<double> iou = iou_loss_1d_rows(pv, tg);
  for (int64_t r = 0; r < 4; ++r) {
    const double inter = std::min(pr[2 * r], tg[2 * r]) + std::min(pr[2 * r + 1], tg[2 * r + 1]);
    CHECK(iou.value()[r] == doctest::Approx(1.0 - inter / (pr[2 * r] + pr[2 * r + 1] + tg[2 * r] + tg[2 * r + 1] - inter)));
  }
  test::check_gradients([&](std::vector<Var<double>>& v) { return iou_loss_1d_rows(v[0], tg); }, {pv});
  test::check_gradients([](std::vector<Var<double>>& v) { return power(rsub_scalar(1.5, v[0]), 0.2); },
                        {Var<double>::parameter(Tensor<double>::from_vector({0.1, 0.4, 0.9, 1.2}, Shape{4}))});
}

TEST_CASE("tridet training parity: losses and every gradient match the reference code") {
  // The batch of dev/tridet_reference.py: two videos, a segment labelled with
  // two classes, IoU-weighted focal loss (power 0.2), DIoU on the per-class
  // decoded distances; without stochastic depth and input noise.
  auto model = models::load_reference_detector<float>(td_config(), kDir + "weights.safetensors");
  test::check_reference_training(*model, kDir);
}

TEST_CASE("tridet training: the input noise is drawn in training only") {
  DetectorConfig c = td_config();
  c.input_noise = 0.5;
  models::Detector<float> det(c, 3);
  Tensor<float> x = Tensor<float>::zeros(Shape{1, 768, 32});
  const std::vector<int> len{700};
  det.train(false);
  auto a = det.features(Var<float>(x), len);
  auto b = det.features(Var<float>(x), len);
  CHECK(test::worst_violation(a.first[0].value().data(), b.first[0].value().data(), a.first[0].value().numel(), 1e-7) == 0.0);
  det.train(true);
  auto n = det.features(Var<float>(x), len);
  CHECK(test::worst_violation(n.first[0].value().data(), a.first[0].value().data(), a.first[0].value().numel(), 1e-3) > 1.0);
}

TEST_CASE("tridet: not a DCD student family, with the reason") {
  dcd::DcdStudentConfig c;
  c.detector = td_config();
  CHECK_THROWS_WITH(c.validate("student.json"), doctest::Contains("not supported as a DCD student"));
}
