// ActionFormer's ActivityNet-style inference path: resampling every video to a
// fixed length (force_upsampling), the rescaled feature grid, the absolute
// position encoding and external classifier-score fusion. Golden files in
// tests/data/anet_style/ come from torch 1.13 and a numpy port of the
// reference's postprocess_results (dev/anet_reference.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "flowless/io/json.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/models/backbones.hpp"
#include "flowless/models/detector_config.hpp"
#include "flowless/models/model_file.hpp"
#include "flowless/ops/resample.hpp"
#include "flowless/workflow/score_fusion.hpp"
#include "flowless/workflow/video_input.hpp"
#include "reference_parity.hpp"
#include "test_util.hpp"

using namespace flowless;

namespace {

std::string anet_data(const std::string& rel) { return std::string(FLOWLESS_TEST_DATA) + "/" + rel; }

std::vector<float> npy_floats(const std::string& path, int64_t& rows, int64_t& cols) {
  io::Array a = io::load_npy(path);
  REQUIRE(a.shape.size() == 2);
  rows = a.shape[0];
  cols = a.shape[1];
  return a.to_float32(path);
}

// Largest |a - b| / max(1, |b|).
double worst_rel(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double w = 0;
  for (size_t i = 0; i < a.size(); ++i)
    w = std::max(w, std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i]))));
  return w;
}

const std::string& scratch() {
  static const test::ScratchDir d("anet_style");
  return d.path;
}

std::string write_text(const std::string& name, const std::string& text) {
  const std::string p = scratch() + "/" + name;
  std::ofstream(p) << text;
  return p;
}

workflow::VideoDetections fixture_detections() {
  const json::Value fx = json::parse_file(anet_data("actionformer_small/expected_detections.json"));
  workflow::VideoDetections v;
  for (const auto& [vid, val] : fx.items()) {
    std::vector<Detection> d;
    for (const auto& e : val.at("detections").as_array())
      d.push_back({e.at("segment")[0].as_number(), e.at("segment")[1].as_number(),
                   static_cast<int>(e.at("label_id").as_int()), e.at("score").as_number()});
    v.push_back({vid, d});
  }
  return v;
}

}  // namespace

TEST_CASE("resample_linear: equals torch F.interpolate(linear, align_corners=False) bit for bit") {
  for (int T : {37, 300, 192, 1}) {
    int64_t Tn, C, L, C2;
    std::vector<float> x = npy_floats(anet_data("anet_style/feats_T" + std::to_string(T) + ".npy"), Tn, C);
    std::vector<float> want =
        npy_floats(anet_data("anet_style/resampled_T" + std::to_string(T) + "_L192.npy"), L, C2);
    REQUIRE(C2 == C);
    std::vector<float> got = resample_linear(x.data(), Tn, C, L);
    const double w = worst_rel(got, want);
    MESSAGE("T = ", T, " -> 192: worst relative difference ", w);
    CHECK(got == want);
    if (T == 192) CHECK(got == x);  // the identity: every weight is 0 or 1
  }
  CHECK_THROWS_WITH(resample_linear<float>(nullptr, 0, 4, 8), doctest::Contains("T >= 1"));
}

TEST_CASE("abs position encoding: the reference's table and its re-interpolation at inference, bit for bit") {
  int64_t L, C;
  std::vector<float> table = npy_floats(anet_data("anet_style/pos_embd_64x16.npy"), L, C);
  Tensor<float> ours = models::sinusoid_encoding<float>(L, C);
  CHECK(std::vector<float>(ours.data(), ours.data() + L * C) == table);
  for (int T : {64, 100}) {
    int64_t Tn, C2;
    std::vector<float> want = npy_floats(anet_data("anet_style/pos_embd_64x16_T" + std::to_string(T) + ".npy"), Tn, C2);
    Tensor<float> pe = models::abs_position_encoding<float>(L, C, Tn, /*training=*/false);
    const double w = worst_rel(std::vector<float>(pe.data(), pe.data() + Tn * C), want);
    MESSAGE("inference, T = ", T, ": worst relative difference ", w);
    CHECK(w == 0);
  }
  // Shorter sequences take the first rows; training refuses sequences past max_len.
  Tensor<float> head = models::abs_position_encoding<float>(L, C, 10, true);
  CHECK(std::equal(head.data(), head.data() + 10 * C, ours.data()));
  CHECK_THROWS_WITH(models::abs_position_encoding<float>(L, C, L + 1, true), doctest::Contains("exceeds max_seq_len"));
}

TEST_CASE("fixed_length_grid: the strides of anet.py's three cases") {
  // Variable-length features resampled: ((T - 1) * stride + num_frames) / L.
  data::FeatureGrid g = data::fixed_length_grid(100, 16, 16, 192, true, 0, 0, "v");
  CHECK(g.feat_stride == doctest::Approx((99.0 * 16 + 16) / 192).epsilon(1e-15));
  CHECK(g.num_frames == g.feat_stride);
  // Fixed-length features: the video's frames over L (upsampled) or T steps.
  g = data::fixed_length_grid(100, -1, 16, 192, true, 40.0, 25.0, "v");
  CHECK(g.feat_stride == doctest::Approx(1000.0 / 192).epsilon(1e-15));
  g = data::fixed_length_grid(100, 0, 16, 192, false, 40.0, 25.0, "v");
  CHECK(g.feat_stride == doctest::Approx(10.0).epsilon(1e-15));
  CHECK_THROWS_WITH(data::fixed_length_grid(100, -1, 16, 192, true, 0, 25.0, "v.npy"),
                    doctest::Contains("v.npy: fixed-length features"));
  CHECK_THROWS_WITH(data::fixed_length_grid(300, -1, 16, 192, false, 40, 25.0, "v.npy"),
                    doctest::Contains("exceed max_seq_len 192"));
}

TEST_CASE("prepare_video_input: resamples only for force_upsampling configs") {
  DetectorConfig cfg;
  cfg.max_seq_len = 192;
  int64_t T = 37, C;
  std::vector<float> x = npy_floats(anet_data("anet_style/feats_T37.npy"), T, C);
  const std::vector<float> original = x;
  VideoMeta meta{"v", 30, 5.0, cfg.feat_stride, cfg.num_frames};
  CHECK_FALSE(workflow::prepare_video_input(cfg, x, T, C, meta, "v.npy"));
  CHECK(x == original);
  CHECK(T == 37);

  cfg.force_upsampling = true;
  cfg.feat_stride = 16;
  cfg.num_frames = 16;
  meta.feat_stride = 16;
  meta.num_frames = 16;
  CHECK(workflow::prepare_video_input(cfg, x, T, C, meta, "v.npy"));
  CHECK(T == 192);
  CHECK(x == resample_linear(original.data(), 37, C, 192));
  CHECK(meta.feat_stride == (36.0 * 16 + 16) / 192);
  CHECK(meta.num_frames == meta.feat_stride);
  CHECK(meta.duration == 5.0);

  std::vector<float> empty;
  int64_t T0 = 0;
  CHECK_THROWS_WITH(workflow::prepare_video_input(cfg, empty, T0, C, meta, "empty.npy"),
                    doctest::Contains("empty.npy: the video has no feature rows"));
}

TEST_CASE("detector config: the ActivityNet keys are read, written and read back") {
  json::Value root = json::parse(
      R"({"dataset": {"force_upsampling": true, "file_prefix": "v_", "file_ext": ".npy", "max_seq_len": 192},
          "model": {"n_mha_win_size": [7, 7, 7, 7, 7, -1], "use_abs_pe": true, "embd_dim": 256, "fpn_dim": 256,
                    "head_dim": 256},
          "test_cfg": {"multiclass_nms": false, "ext_score_file": "cuhk.json"}})",
      "anet.json");
  DetectorConfig c = parse_detector_config(root, "anet.json");
  CHECK(c.force_upsampling);
  CHECK(c.file_prefix == "v_");
  CHECK(c.file_ext == ".npy");
  CHECK(c.ext_score_file == "cuhk.json");
  CHECK(c.max_seq_len == 192);
  DetectorConfig back = parse_detector_config(detector_config_to_json(c), "round trip");
  CHECK(back.force_upsampling);
  CHECK(back.file_prefix == "v_");
  CHECK(back.ext_score_file == "cuhk.json");
  // The reference's null means none.
  DetectorConfig none = parse_detector_config(json::parse(R"({"test_cfg": {"ext_score_file": null}})", "t"), "t");
  CHECK(none.ext_score_file.empty());
  CHECK_FALSE(none.force_upsampling);
}

TEST_CASE("score fusion: the reference's postprocess_results on the fixture's detections") {
  const workflow::ExternalScores ext = workflow::load_external_scores(anet_data("anet_style/ext_scores.json"));
  CHECK(ext.num_classes == 7);
  for (auto [num_pred, topk] : {std::pair<int, int>{200, 2}, {5, 3}}) {
    workflow::VideoDetections v = fixture_detections();
    workflow::fuse_external_scores(v, ext, num_pred, topk);
    const json::Value want = json::parse_file(anet_data("anet_style/fused_top" + std::to_string(num_pred) + "_k" +
                                                        std::to_string(topk) + ".json"));
    REQUIRE(v.size() == want.size());
    size_t n = 0;
    double worst = 0;
    for (const auto& [vid, dets] : v) {
      const auto& w = want.at(vid).as_array();
      REQUIRE(dets.size() == w.size());
      for (size_t i = 0; i < dets.size(); ++i, ++n) {
        CHECK(dets[i].label == w[i].at("label_id").as_int());
        CHECK(dets[i].start == w[i].at("segment")[0].as_number());
        CHECK(dets[i].end == w[i].at("segment")[1].as_number());
        worst = std::max(worst, std::abs(dets[i].score - w[i].at("score").as_number()));
      }
    }
    MESSAGE(n, " fused detections (top ", num_pred, ", ", topk, " classes), worst score difference ", worst);
    CHECK(n > 0);
    CHECK(worst <= 1e-15);
  }
}

TEST_CASE("score fusion: bad score files name the file and the problem") {
  auto fails = [](const std::string& text, const std::string& what) {
    const std::string p = write_text("ext.json", text);
    CHECK_THROWS_WITH(workflow::load_external_scores(p), doctest::Contains(what.c_str()));
    CHECK_THROWS_WITH(workflow::load_external_scores(p), doctest::Contains(p.c_str()));
  };
  fails("[1, 2]", "must be a JSON object");
  fails(R"({"results": [0.5]})", "\"results\" must map video ids");
  fails(R"({"results": {}})", "no videos");
  fails(R"({"results": {"a": []}})", "video 'a': expected a non-empty list");
  fails(R"({"results": {"a": 0.5}})", "video 'a': expected a non-empty list");
  fails(R"({"results": {"a": [0.5, "x"]}})", "video 'a': class score 1 is a string");
  fails(R"({"results": {"a": [0.5, -0.25]}})", "video 'a': class score 1 is -0.25");
  fails(R"({"results": {"a": [NaN, 0.5]}})", "video 'a': class score 0 is nan");
  fails(R"({"results": {"a": [0.5, Infinity]}})", "video 'a': class score 1 is inf");
  fails(R"({"a": [0.5, 0.5], "b": [1]})", "video 'b' has 1 class scores, the videos before it 2");
  fails("{\"results\": {\"a\": [0.5", "ext.json");
  CHECK_THROWS_WITH(workflow::load_external_scores(scratch() + "/missing.json"), doctest::Contains("missing.json"));

  // The bare layout works; a video the file lacks, or a negative detection score, is refused.
  const workflow::ExternalScores ext =
      workflow::load_external_scores(write_text("bare.json", R"({"vid00": [0.25, 0.75]})"));
  workflow::VideoDetections v = {{"vid00", {{1, 2, 0, 0.5}}}, {"v_vid01", {{1, 2, 0, 0.5}}}};
  CHECK_THROWS_WITH(workflow::fuse_external_scores(v, ext), doctest::Contains("no classifier scores for video 'v_vid01'"));
  workflow::VideoDetections neg = {{"vid00", {{1, 2, 0, -0.5}}}};
  CHECK_THROWS_WITH(workflow::fuse_external_scores(neg, ext), doctest::Contains("score -0.5"));
  workflow::VideoDetections ok = {{"vid00", {{1, 2, 0, 0.5}}}, {"vid00", {}}};
  workflow::fuse_external_scores(ok, ext);
  REQUIRE(ok[0].second.size() == 2);
  CHECK(ok[0].second[0].label == 1);
  CHECK(ok[0].second[0].score == doctest::Approx(std::sqrt(0.75 * 0.5)));
  CHECK(ok[1].second.empty());
}

// ---------------------------------------------------------------------------
// The whole ActivityNet-style network against the reference
// (tests/data/actionformer_anet_small, written by dev/anet_network_reference.py
// with the public ActionFormer code and its NMS extension): absolute position
// encoding, a global-attention top level, one class, class-agnostic Soft-NMS
// with segment voting, inputs resampled to max_seq_len or, without
// force_upsampling, padded beyond it with the encoding re-interpolated.
namespace {
void check_anet_fixture_video(const std::string& vid) {
  const std::string dir = anet_data("actionformer_anet_small/");
  const json::Value expected = json::parse_file(dir + "expected_detections.json").at(vid);
  const std::string cfg_path = dir + expected.at("config").as_string();
  const DetectorConfig cfg = parse_detector_config(json::parse_file(cfg_path), cfg_path);
  auto model = models::load_reference_detector<float>(cfg, dir + "weights.safetensors");
  int64_t T = 0, C = 0;
  std::vector<float> x = npy_floats(dir + vid + ".npy", T, C);
  REQUIRE(T == expected.at("num_feats").as_int());
  VideoMeta meta{vid, expected.at("fps").as_number(), expected.at("duration").as_number(), cfg.feat_stride,
                 cfg.num_frames};
  workflow::prepare_video_input(cfg, x, T, C, meta, dir + vid + ".npy");
  CAPTURE(vid);
  CHECK(T == (cfg.force_upsampling ? cfg.max_seq_len : expected.at("num_feats").as_int()));
  CHECK(meta.feat_stride == doctest::Approx(expected.at("feat_stride").as_number()).epsilon(1e-12));
  CHECK(meta.num_frames == doctest::Approx(expected.at("feat_num_frames").as_number()).epsilon(1e-12));
  test::check_reference_video(*model, x.data(), T, C, meta, expected, dir + vid + ".expected.safetensors");
}
}  // namespace

TEST_CASE("anet parity: resampled inputs (force_upsampling) match the reference network and detections") {
  for (const char* vid : {"vid00", "vid01", "vid02"}) check_anet_fixture_video(vid);
}

TEST_CASE("anet parity: over-length inputs re-interpolate the position encoding as the reference does") {
  for (const char* vid : {"vid03", "vid04"}) check_anet_fixture_video(vid);
}

TEST_CASE("anet parity: training losses (label smoothing, loss weight 2), normaliser and every gradient") {
  // Absolute position encoding and a global-attention level in the backward,
  // one class with label smoothing 0.1, the DIoU loss weighted 2.0.
  const std::string dir = anet_data("actionformer_anet_small/");
  const DetectorConfig cfg = parse_detector_config(json::parse_file(dir + "config.json"), dir + "config.json");
  CHECK(cfg.label_smoothing == doctest::Approx(0.1));
  CHECK(cfg.loss_weight == doctest::Approx(2.0));
  auto model = models::load_reference_detector<float>(cfg, dir + "weights.safetensors");
  test::check_reference_training(*model, dir);
}
