// TemporalMaxer checkpoints: the parameter-free GroupNorm neck (ops/group_norm.hpp),
// TemporalMaxer's own config layout, and end-to-end parity with the reference
// code (tests/data/temporalmaxer_small, written by dev/temporalmaxer_reference.py).
#include <doctest/doctest.h>

#include <cmath>

#include "flowless/io/npy.hpp"
#include "flowless/models/model_file.hpp"
#include "flowless/ops/group_norm.hpp"
#include "gradcheck.hpp"
#include "reference_parity.hpp"

using namespace flowless;

namespace {
const std::string kDir = std::string(FLOWLESS_TEST_DATA) + "/temporalmaxer_small/";

DetectorConfig tm_config() { return parse_detector_config(json::parse_file(kDir + "config.json"), kDir + "config.json"); }

void check_tm_video(models::Detector<float>& model, const std::string& vid) {
  const json::Value expected = json::parse_file(kDir + "expected_detections.json").at(vid);
  CHECK(model.config().inference_length(expected.at("num_feats").as_int()) == expected.at("padded_len").as_int());
  test::check_fixture_video(model, kDir, vid);
}
}  // namespace

TEST_CASE("group_norm_time: statistics over every step of each channel group, and its gradient") {
  Rng rng(3);
  const int64_t B = 2, T = 7, C = 6, G = 3;
  Tensor<double> xt = test::random_tensor(Shape{B, T, C}, rng, 2.0);
  for (int64_t i = 0; i < xt.numel(); ++i) xt.data()[i] += 0.5;  // a mean to remove
  Var<double> y = group_norm_time(Var<double>(xt), int(G));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < G; ++g) {
      double mu = 0, var = 0;
      const int64_t n = T * (C / G);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = g * (C / G); c < (g + 1) * (C / G); ++c) mu += xt.data()[(b * T + t) * C + c];
      mu /= double(n);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = g * (C / G); c < (g + 1) * (C / G); ++c) {
          const double d = xt.data()[(b * T + t) * C + c] - mu;
          var += d * d;
        }
      var /= double(n);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t c = g * (C / G); c < (g + 1) * (C / G); ++c) {
          const int64_t i = (b * T + t) * C + c;
          CHECK(y.value().data()[i] == doctest::Approx((xt.data()[i] - mu) / std::sqrt(var + 1e-5)).epsilon(1e-12));
        }
    }
  test::check_gradients([](std::vector<Var<double>>& v) { return group_norm_time(v[0], 3); },
                        {Var<double>::parameter(test::random_tensor(Shape{B, T, C}, rng))});
  test::check_gradients([](std::vector<Var<double>>& v) { return group_norm_time(v[0], 1); },
                        {Var<double>::parameter(test::random_tensor(Shape{1, 5, 4}, rng))});
  CHECK_THROWS_WITH(group_norm_time(Var<double>(test::random_tensor(Shape{1, 5, 4}, rng)), 3),
                    doctest::Contains("4 channels do not split into 3 groups"));
  CHECK_THROWS_WITH(group_norm_time(Var<double>(test::random_tensor(Shape{5, 4}, rng)), 2),
                    doctest::Contains("expected (B, T, C)"));
}

TEST_CASE("temporalmaxer config: TemporalMaxer's own layout is read as the reference builds it") {
  const DetectorConfig c = tm_config();
  CHECK(c.arch == "temporalmaxer");
  CHECK(c.backbone_arch == std::vector<int>{2, 0, 5});
  CHECK(c.fpn_norm == "groupnorm");
  CHECK(c.fpn_num_groups == 4);
  CHECK_FALSE(c.mask_embedding);
  CHECK(c.label_assigner == "simota");
  CHECK(c.inference_padding == "max_seq_len");
  CHECK(c.max_div_factor() == 32);
  // Written and read back (flowless's layout: three-entry arch, explicit keys).
  const DetectorConfig r = parse_detector_config(detector_config_to_json(c), "round trip");
  CHECK(r.backbone_arch == c.backbone_arch);
  CHECK(r.fpn_norm == "groupnorm");
  CHECK(r.fpn_num_groups == 4);
  CHECK_FALSE(r.mask_embedding);
  CHECK(r.label_assigner == "simota");
  CHECK(r.inference_padding == "max_seq_len");
  // flowless's own temporalmaxer family is unchanged: LayerNorm neck, masked embedding.
  json::Value own = json::Value::object();
  own["model"]["backbone_type"] = json::Value("convPooler");
  const DetectorConfig f = parse_detector_config(own, "own");
  CHECK(f.arch == "temporalmaxer");
  CHECK(f.fpn_norm == "layernorm");
  CHECK(f.mask_embedding);
  CHECK(f.label_assigner == "center");
  CHECK(f.inference_padding == "divisible");
  // Bad values name the key.
  json::Value bad = json::parse_file(kDir + "config.json");
  bad["model"]["fpn_norm"] = json::Value("batchnorm");
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("unknown model.fpn_norm 'batchnorm'"));
  bad = json::parse_file(kDir + "config.json");
  bad["model"]["num_group"] = json::Value(5);
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("divisible by num_group (5)"));
  bad = json::parse_file(kDir + "config.json");
  bad["flowless"]["label_assigner"] = json::Value("atss");
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("unknown label_assigner 'atss'"));
  bad = json::parse_file(kDir + "config.json");
  bad["flowless"]["arch"] = json::Value("actionformer");
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"),
                    doctest::Contains("mask_embedding false applies to the temporalmaxer family only"));
}

TEST_CASE("temporalmaxer parity: per-level outputs and detections match the reference code") {
  auto model = models::load_reference_detector<float>(tm_config(), kDir + "weights.safetensors");
  CHECK(model->num_parameters() > 0);
  for (const char* vid : {"vid00", "vid01", "vid02"}) check_tm_video(*model, vid);
}

TEST_CASE("temporalmaxer parity: the group norm sees the padding, so a shorter buffer changes the outputs") {
  // The reference pads a 300-step video to max_seq_len (768) and its neck's
  // statistics include the padded steps; padding only to the pyramid's
  // multiple (320) gives other values. This is why TemporalMaxer configs
  // default to inference_padding max_seq_len.
  DetectorConfig cfg = tm_config();
  cfg.inference_padding = "divisible";
  auto model = models::load_reference_detector<float>(cfg, kDir + "weights.safetensors");
  io::Array feats = io::load_npy(kDir + "vid00.npy");
  auto x = feats.to_float32("vid00");
  VideoMeta meta{"vid00", 30.0, 40.5, 4.0, 16.0};
  models::DetectorOutput<float> raw;
  model->detect(x.data(), feats.shape[0], feats.shape[1], meta, &raw);
  CHECK(model->config().inference_length(feats.shape[0]) == 320);
  io::SafeTensors exp = io::load_safetensors(kDir + "vid00.expected.safetensors");
  auto ev = exp.tensors.at("fpn_feats.0").to_float32("fpn_feats.0");
  REQUIRE(raw.lengths[0][0] == 300);
  REQUIRE(ev.size() == size_t(300 * 64));
  // raw.feats[0] is the (1, 320, 64) buffer; its first 300 rows are the video.
  CHECK(test::worst_violation(raw.feats[0].value().data(), ev.data(), int64_t(ev.size()), 1e-4) > 10.0);
}
