// TemporalMaxer checkpoints: the parameter-free GroupNorm neck (ops/group_norm.hpp),
// TemporalMaxer's own config layout, end-to-end parity with the reference
// code, and its training with SimOTA label assignment (train/simota.hpp)
// (tests/data/temporalmaxer_small, written by dev/temporalmaxer_reference.py).
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
  CHECK(c.simota.iou_weight == 2);
  CHECK(c.simota.center_radius == 1.5);
  CHECK(c.simota.keep_percent == 1.0);
  CHECK(c.simota.confuse_weight == 0.0);
  CHECK(c.simota.cls_weight == 1.0);
  CHECK(c.inference_padding == "max_seq_len");
  CHECK(c.max_div_factor() == 32);
  // Written and read back (flowless's layout: three-entry arch, explicit keys).
  const DetectorConfig r = parse_detector_config(detector_config_to_json(c), "round trip");
  CHECK(r.backbone_arch == c.backbone_arch);
  CHECK(r.fpn_norm == "groupnorm");
  CHECK(r.fpn_num_groups == 4);
  CHECK_FALSE(r.mask_embedding);
  CHECK(r.label_assigner == "simota");
  CHECK(r.simota.iou_weight == 2);
  CHECK(r.simota.center_radius == 1.5);
  CHECK(r.simota.keep_percent == 1.0);
  CHECK(r.simota.confuse_weight == 0.0);
  CHECK(r.inference_padding == "max_seq_len");
  // An empty assigner dict takes the reference class's defaults.
  const DetectorConfig dflt = parse_detector_config(json::parse_file(kDir + "assigner_defaults/config.json"), "defaults");
  CHECK(dflt.label_assigner == "simota");
  CHECK(dflt.simota.iou_weight == 3.0);
  CHECK(dflt.simota.center_radius == 2.5);
  CHECK(dflt.simota.keep_percent == 0.65);
  CHECK(dflt.simota.confuse_weight == 0.1);
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
  bad["model"]["assigner"]["topk"] = json::Value(10);
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("unknown model.assigner key 'topk'"));
  bad = json::parse_file(kDir + "config.json");
  bad["model"]["assigner"]["iou_weight"] = json::Value(0);
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("assigner.iou_weight must be > 0, got 0"));
  bad = json::parse_file(kDir + "config.json");
  bad["model"]["assigner"]["keep_percent"] = json::Value(1.5);
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("keep_percent must be in (0, 1], got 1.5"));
  bad = json::parse_file(kDir + "config.json");
  bad["model"]["assigner"] = json::Value(2);
  CHECK_THROWS_WITH(parse_detector_config(bad, "tm.json"), doctest::Contains("model.assigner must be an object"));
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

namespace {
// The fixture's training batch as the reference assigned it: per video b,
// cls_targets.b (N, C), reg_targets.b (N, 2), weights.b (N).
void check_assignment(const std::string& dir) {
  const DetectorConfig cfg = parse_detector_config(json::parse_file(dir + "config.json"), dir + "config.json");
  auto model = models::load_reference_detector<float>(cfg, kDir + "weights.safetensors");
  const test::TrainingBatch batch = test::load_training_batch(dir, cfg);
  const int64_t Tbuf = cfg.max_seq_len;
  const std::vector<models::VideoTargets>& targets = batch.targets;
  auto out = model->forward(Var<float>(batch.x), batch.lengths);
  const PointSet pts = model->points(Tbuf);
  std::vector<std::vector<int>> valid(2);
  for (int b = 0; b < 2; ++b)
    for (auto& l : out.lengths) valid[size_t(b)].push_back(l[size_t(b)]);
  const auto mine = models::assign_batch(cfg, pts, targets, concat_time(out.cls_logits), concat_time(out.offsets), valid,
                                         cfg.loss_config());
  io::SafeTensors ref = io::load_safetensors(dir + "train_assignment.safetensors");
  const int64_t N = pts.size(), C = cfg.num_classes;
  int positives = 0, other_gt = 0, light = 0;
  for (int b = 0; b < 2; ++b) {
    CAPTURE(b);
    const auto cls = ref.tensors.at("cls_targets." + std::to_string(b)).to_float32("cls");
    const auto reg = ref.tensors.at("reg_targets." + std::to_string(b)).to_float32("reg");
    const auto w = ref.tensors.at("weights." + std::to_string(b)).to_float32("w");
    REQUIRE(int64_t(cls.size()) == N * C);
    REQUIRE(int64_t(w.size()) == N);
    const PointTargets& m = mine[size_t(b)];
    const PointTargets center = label_points(pts, targets[size_t(b)].segments, targets[size_t(b)].labels, int(C),
                                             "radius", float(cfg.simota.center_radius));
    for (int64_t i = 0; i < N; ++i) {
      CAPTURE(i);
      for (int64_t c = 0; c < C; ++c) CHECK(m.cls[size_t(i * C + c)] == cls[size_t(i * C + c)]);
      CHECK(m.weights[size_t(i)] == w[size_t(i)]);
      if (!m.positive(i)) continue;
      ++positives;
      light += w[size_t(i)] < 1.0f;
      CHECK(std::abs(m.offsets[size_t(2 * i)] - reg[size_t(2 * i)]) <= 1e-6f * std::max(1.0f, std::abs(reg[size_t(2 * i)])));
      CHECK(std::abs(m.offsets[size_t(2 * i + 1)] - reg[size_t(2 * i + 1)]) <=
            1e-6f * std::max(1.0f, std::abs(reg[size_t(2 * i + 1)])));
      // The positives are center sampling's; the regression target may be another GT.
      for (int64_t c = 0; c < C; ++c) CHECK(m.cls[size_t(i * C + c)] == center.cls[size_t(i * C + c)]);
      other_gt += m.offsets[size_t(2 * i)] != center.offsets[size_t(2 * i)];
    }
  }
  MESSAGE(dir, ": ", positives, " positive points, ", other_gt, " regressed to another GT than the shortest, ", light,
          " weighted below 1");
  CHECK(positives > 20);
}
}  // namespace

TEST_CASE("simota_assign: the reference assigner's class targets, regression targets and weights") {
  check_assignment(kDir);
  check_assignment(kDir + "assigner_defaults/");
}

TEST_CASE("temporalmaxer training: SimOTA losses and every gradient match the reference code") {
  auto model = models::load_reference_detector<float>(tm_config(), kDir + "weights.safetensors");
  test::check_reference_training(*model, kDir);
  // The assigner's defaults: confuse_weight 0.1 weighs some positives 0.1, and
  // the normaliser counts the positive weights' float32 sum (34.3 in this
  // batch; torch's vectorised order and flowless's sequential one differ by
  // one float32 ulp of the sum, 4e-9 of the updated normaliser).
  const std::string dd = kDir + "assigner_defaults/";
  const DetectorConfig dc = parse_detector_config(json::parse_file(dd + "config.json"), dd + "config.json");
  auto dmodel = models::load_reference_detector<float>(dc, kDir + "weights.safetensors");
  test::check_reference_training(*dmodel, dd, 1e-7);
}

TEST_CASE("simota_assign: hand-made cases") {
  // One level of 8 points (stride 1, range [0, 100]); two overlapping GTs.
  const PointSet pts = make_points({8}, {1}, {{0.0f, 100.0f}});
  const std::vector<int> valid{6};  // points 6 and 7 are padding
  std::vector<float> logits(8 * 2, -2.0f), offsets(8 * 2, 1.0f);
  SimOTAConfig sc;
  sc.center_radius = 10;  // the whole segment is its centre region
  sc.keep_percent = 1.0;
  sc.confuse_weight = 0.0;
  // GT 0 [0.5, 4.5] label 0 and GT 1 [1.5, 5.5] label 1, both 4 long.
  // Point 3 is inside both, and its prediction (1.5, 2.5) is GT 1's exactly.
  offsets[2 * 3] = 1.5f;
  offsets[2 * 3 + 1] = 2.5f;
  const std::vector<std::array<float, 2>> segs{{0.5f, 4.5f}, {1.5f, 5.5f}};
  const std::vector<int> labels{0, 1};
  PointTargets t = simota_assign(pts, valid, logits.data(), offsets.data(), segs, labels, 2, sc);
  REQUIRE(t.weights.size() == 8);
  // Point 3: the lengths tie, so both labels; it regresses to the cheaper GT 1.
  CHECK(t.cls[3 * 2 + 0] == 1.0f);
  CHECK(t.cls[3 * 2 + 1] == 1.0f);
  CHECK(t.offsets[3 * 2] == 1.5f);
  CHECK(t.offsets[3 * 2 + 1] == 2.5f);
  // Center sampling would have regressed it to GT 0 (first of the shortest).
  const PointTargets c = label_points(pts, segs, labels, 2, "radius", 10.0f);
  CHECK(c.offsets[3 * 2] == 2.5f);
  // Point 0 is outside both GTs: negative, weight 1; padding points weigh 0.
  CHECK_FALSE(t.positive(0));
  CHECK(t.weights[0] == 1.0f);
  CHECK(t.weights[6] == 0.0f);
  CHECK(t.weights[7] == 0.0f);
  CHECK(t.positive(1));
  CHECK(t.weights[1] == 1.0f);
  // keep_percent 0.5 and confuse_weight 0.25: GT 0 holds points 1..4, GT 1
  // points 2..5 (the 2 cheapest of each weigh 1); the others inside a GT 0.25.
  sc.keep_percent = 0.5;
  sc.confuse_weight = 0.25;
  t = simota_assign(pts, valid, logits.data(), offsets.data(), segs, labels, 2, sc);
  int full = 0, conf = 0;
  for (int i = 1; i <= 5; ++i) (t.weights[size_t(i)] == 1.0f ? full : conf) += 1;
  CHECK(full >= 2);
  CHECK(full <= 4);
  CHECK(full + conf == 5);
  CHECK(t.weights[3] == 1.0f);  // the exact fit is GT 1's cheapest point
  // No GT: all negative, valid points weigh 1.
  t = simota_assign(pts, valid, logits.data(), offsets.data(), {}, {}, 2, sc);
  CHECK(t.num_positive() == 0);
  CHECK(t.weights[0] == 1.0f);
  CHECK(t.weights[7] == 0.0f);
  // Bad input.
  logits[2 * 2] = std::nanf("");
  CHECK_THROWS_WITH(simota_assign(pts, valid, logits.data(), offsets.data(), segs, labels, 2, sc),
                    doctest::Contains("classification output 2, class 0 is not finite"));
  logits[2 * 2] = -2.0f;
  logits[2 * 7] = std::nanf("");  // padding is not read
  CHECK_NOTHROW(simota_assign(pts, valid, logits.data(), offsets.data(), segs, labels, 2, sc));
  const std::vector<int> bad_labels{0, 2};
  CHECK_THROWS_WITH(simota_assign(pts, valid, logits.data(), offsets.data(), segs, bad_labels, 2, sc),
                    doctest::Contains("label 2 of GT 1 is outside [0, 2)"));
  CHECK_THROWS_WITH(simota_assign(pts, {9}, logits.data(), offsets.data(), segs, labels, 2, sc),
                    doctest::Contains("valid length 9 of level 0 outside [0, 8]"));
  sc.keep_percent = 0;
  CHECK_THROWS_WITH(simota_assign(pts, valid, logits.data(), offsets.data(), segs, labels, 2, sc),
                    doctest::Contains("keep_percent must be in (0, 1], got 0"));
}

TEST_CASE("detector loss: a pyramid that starts at level 1 assigns labels on the input's grid") {
  // fpn_start_level 1: the heads' first level has stride 2, so the input
  // buffer is twice its length; both assigners see the same points.
  for (const std::string assigner : {"center", "simota"}) {
    CAPTURE(assigner);
    DetectorConfig c;
    c.arch = "temporalmaxer";
    c.input_dim = 8;
    c.embd_dim = c.fpn_dim = c.head_dim = 16;
    c.num_classes = 3;
    c.backbone_arch = {1, 0, 3};
    c.fpn_start_level = 1;
    c.fpn_type = "identity";
    c.max_seq_len = 64;
    c.mha_win_size.assign(4, 9);
    c.regression_range = {{0, 4}, {4, 8}, {8, 16}, {16, 10000}};
    c.label_assigner = assigner;
    c.validate("fpn_start_level test");
    models::Detector<float> det(c);
    Rng rng(4);
    Tensor<float> x(Shape{1, 64, 8});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = float(rng.normal());
    auto out = det.forward(Var<float>(x), {50});
    REQUIRE(out.cls_logits.size() == 3);
    CHECK(out.cls_logits[0].size(1) == 32);
    models::VideoTargets gt;
    gt.segments = {{10.0f, 30.0f}, {2.0f, 9.0f}};
    gt.labels = {1, 2};
    DetectionLoss<float> crit(c.loss_config());
    auto l = det.loss(out, {gt}, crit);
    CHECK(l.num_pos > 0);
    CHECK(std::isfinite(l.final_loss.value()[0]));
    CHECK(det.points(64).size() == 32 + 16 + 8);
  }
}
