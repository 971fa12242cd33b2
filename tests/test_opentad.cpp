// OpenTAD checkpoints (models/opentad.hpp): its Python config read without
// Python, its parameter names, and end-to-end parity with OpenTAD's own code
// (tests/data/opentad_small/actionformer, written by dev/opentad_reference.py:
// a real OpenTAD training checkpoint with state_dict and state_dict_ema).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>

#include "flowless/io/pyconfig.hpp"
#include "flowless/models/model_file.hpp"
#include "reference_parity.hpp"
#include "test_util.hpp"

using namespace flowless;

namespace {
const std::string kOtDir = std::string(FLOWLESS_TEST_DATA) + "/opentad_small/actionformer/";
const std::string kOtTmDir = std::string(FLOWLESS_TEST_DATA) + "/opentad_small/temporalmaxer/";
const std::string kOtTdDir = std::string(FLOWLESS_TEST_DATA) + "/opentad_small/tridet/";

std::string ot_scratch() {
  static const test::ScratchDir d("opentad");
  return d.path;
}

void check_ot_video(models::Detector<float>& model, const std::string& vid, const std::string& dir = kOtDir) {
  const json::Value expected = json::parse_file(dir + "expected_detections.json").at(vid);
  CHECK(model.config().inference_length(expected.at("num_feats").as_int()) == expected.at("padded_len").as_int());
  test::check_fixture_video(model, dir, vid);
}
}  // namespace

TEST_CASE("opentad config: the Python config merges like mmengine and maps to the original layout") {
  // The fixture's config.py (with _base_ files, one of them in the parent
  // folder) read here equals the tree the Python script merged.
  const json::Value py = io::read_pyconfig(kOtDir + "config.py");
  const json::Value merged = json::parse_file(kOtDir + "config.json");
  CHECK(py == merged);
  CHECK(models::is_opentad_config(py));

  for (const std::string name : {"config.py", "config.json"}) {
    CAPTURE(name);
    const DetectorConfig c = models::read_config_file(kOtDir + name);
    CHECK(c.arch == "actionformer");
    CHECK(c.input_dim == 32);
    CHECK(c.embd_dim == 32);
    CHECK(c.fpn_dim == 32);
    CHECK(c.head_dim == 32);
    CHECK(c.num_classes == 5);
    CHECK(c.n_head == 4);
    CHECK(c.backbone_arch == std::vector<int>{2, 2, 5});
    CHECK(c.mha_win_size == std::vector<int>(6, 9));
    CHECK(c.head_num_layers == 3);  // num_convs 2 + the classifier
    CHECK(c.max_seq_len == 768);
    CHECK(c.feat_stride == 4);
    CHECK(c.num_frames == 16);  // 2 x offset_frames
    CHECK(c.droppath == doctest::Approx(0.1));
    CHECK(c.clip_grad_l2norm == 1);
    CHECK(c.conv_remask);
    CHECK(c.conv_norm_eps == 1e-6);
    CHECK(c.inference_padding == "max_seq_len");
    CHECK(c.test.pre_nms_scope == "video");
    CHECK(c.test.pre_nms_thresh == doctest::Approx(0.001));
    CHECK(c.test.pre_nms_topk == 2000);
    CHECK(c.test.nms.method == "soft");
    CHECK(c.test.nms.max_seg_num == 2000);
    CHECK(c.test.nms.min_score == doctest::Approx(0.001));
    CHECK(c.test.nms.sigma == doctest::Approx(0.5));
    CHECK(c.test.nms.multiclass);
    CHECK(!c.test.nms.voting_iou_weight);
    // The OpenTAD semantics survive a flowless model file's config.
    const DetectorConfig back = parse_detector_config(detector_config_to_json(c), "round trip");
    CHECK(back.conv_remask);
    CHECK(back.conv_norm_eps == 1e-6);
    CHECK(back.test.pre_nms_scope == "video");
    CHECK(!back.test.nms.voting_iou_weight);
  }
  // OpenTAD's defaults for absent keys; a flowless section overrides (v0.1's eps 1e-5).
  json::Value tree = merged;
  tree["post_processing"] = json::Value::object();
  tree["post_processing"]["nms"] = json::Value::object();
  tree["flowless"]["conv_norm_eps"] = json::Value(1e-5);
  const DetectorConfig d = parse_detector_config(models::opentad_to_reference_config(tree, "t.py"), "t.py");
  CHECK(d.test.nms.max_seg_num == 100);
  CHECK(d.test.nms.min_score == 0);
  CHECK(d.test.nms.voting_thresh == 0);
  CHECK(d.conv_norm_eps == 1e-5);
  tree["post_processing"]["nms"] = json::Value(nullptr);
  CHECK(parse_detector_config(models::opentad_to_reference_config(tree, "t.py"), "t.py").test.nms.method == "none");
}

TEST_CASE("opentad config: what flowless cannot run is refused, naming the file") {
  const json::Value merged = json::parse_file(kOtDir + "config.json");
  auto fails_with = [&](json::Value tree, const char* what) {
    CHECK_THROWS_WITH(models::opentad_to_reference_config(tree, "cfg.py"), doctest::Contains(what));
    CHECK_THROWS_WITH(models::opentad_to_reference_config(tree, "cfg.py"), doctest::Contains("cfg.py"));
  };
  json::Value t = merged;
  t["model"]["type"] = json::Value("BMN");
  fails_with(t, "OpenTAD's ActionFormer, TemporalMaxer and TriDet are supported");
  t = merged;
  t["model"]["type"] = json::Value("TriDet");  // with ActionFormer's projection
  fails_with(t, "model.projection.type 'Conv1DTransformerProj' is not supported (TriDetProj)");
  t = merged;
  t["model"]["projection"]["type"] = json::Value("MambaProj");
  fails_with(t, "model.projection.type 'MambaProj' is not supported");
  t = merged;
  t["model"]["neck"]["type"] = json::Value("FPN");
  fails_with(t, "model.neck.type 'FPN'");
  t = merged;
  t["model"]["rpn_head"]["prior_generator"]["strides"][2] = json::Value(3);
  fails_with(t, "strides must be 2^l");
  t = merged;
  t["post_processing"]["nms"]["method"] = json::Value(3);
  fails_with(t, "nms.method 3 is not supported");
  // A .py config that is not plain data is an error naming the file and the line.
  const std::string bad = ot_scratch() + "/bad.py";
  std::ofstream(bad) << "import os\nmodel = dict(type='ActionFormer')\n";
  CHECK_THROWS_WITH(models::read_config_file(bad), doctest::Contains("bad.py: line 1"));
}

TEST_CASE("opentad checkpoint: names map to the original's, state_dict_ema is the default") {
  const auto raw = io::load_pth_state_dict(kOtDir + "weights.pth", "state_dict_ema");
  CHECK(models::is_opentad_state_dict(raw));
  CHECK(raw.count("rpn_head.loss_normalizer") == 1);  // "module." stripped
  const auto mapped = models::opentad_to_reference_names(raw, "weights.pth");
  CHECK(mapped.size() == raw.size() - 1);  // the loss normaliser dropped
  for (const char* name : {"backbone.embd.0.conv.weight", "backbone.embd_norm.1.weight", "backbone.stem.0.attn.query_conv.conv.weight",
                           "backbone.branch.4.mlp.3.bias", "neck.fpn_norms.5.bias", "cls_head.head.1.conv.weight",
                           "cls_head.norm.0.weight", "cls_head.cls_head.conv.bias", "reg_head.offset_head.conv.weight",
                           "reg_head.scale.3.scale"})
    CHECK_MESSAGE(mapped.count(name) == 1, name);
  auto extra = raw;
  extra.emplace("rpn_head.iou_head.weight", raw.at("rpn_head.cls_head.weight"));
  CHECK_THROWS_WITH(models::opentad_to_reference_names(extra, "ckpt.pth"),
                    doctest::Contains("ckpt.pth: parameter 'rpn_head.iou_head.weight' is not one of OpenTAD's"));

  const DetectorConfig cfg = models::read_config_file(kOtDir + "config.py");
  auto ema = models::load_reference_detector<float>(cfg, kOtDir + "weights.pth");
  auto live = models::load_reference_detector<float>(cfg, kOtDir + "weights.pth", "state_dict");
  const auto a = ema->state_dict(), b = live->state_dict();
  const auto& wa = a.at("cls_head.cls_head.conv.weight");
  const auto& wb = b.at("cls_head.cls_head.conv.weight");
  const auto& we = mapped.at("cls_head.cls_head.conv.weight").to_float32("w");
  double d_live = 0, d_ema = 0;
  for (int64_t i = 0; i < wa.numel(); ++i) {
    d_live = std::max(d_live, double(std::abs(wa[i] - wb[i])));
    d_ema = std::max(d_ema, double(std::abs(wa[i] - we[size_t(i)])));
  }
  CHECK(d_ema == 0);      // the EMA weights, as OpenTAD's test.py loads them
  CHECK(d_live > 1e-3);   // state_dict holds other (noisier) values
}

TEST_CASE("opentad actionformer: per-level outputs and detections match OpenTAD") {
  // vid00 (300 steps, padded to 768: the re-masked embedding and heads
  // decide the last valid positions), vid01 (768, unpadded), vid02 (1000,
  // padded to 1024: a multiple of stride x window beyond max_seq_len).
  auto model = models::open_detector<float>(kOtDir + "weights.pth", kOtDir + "config.py");
  for (const char* vid : {"vid00", "vid01", "vid02"}) {
    CAPTURE(vid);
    check_ot_video(*model, vid);
  }
  // Saved as a flowless model file, it keeps OpenTAD's semantics.
  const std::string path = ot_scratch() + "/ot.safetensors";
  models::save_detector(path, *model);
  auto again = models::load_detector<float>(path);
  check_ot_video(*again, "vid00");
}

TEST_CASE("opentad temporalmaxer: unpadded, per-level outputs and detections match OpenTAD") {
  const DetectorConfig c = models::read_config_file(kOtTmDir + "config.py");
  CHECK(c.arch == "temporalmaxer");
  CHECK(c.backbone_arch == std::vector<int>{2, 0, 5});
  CHECK(c.fpn_norm == "groupnorm");
  CHECK(c.fpn_num_groups == 4);
  CHECK(c.label_assigner == "simota");
  CHECK(c.inference_padding == "none");
  CHECK(c.test.nms.max_seg_num == 200);
  CHECK(c.inference_length(1001) == 1001);
  // vid00 (300 steps), vid01 (768), vid03 (1001: levels of 1001, 501, 251,
  // 126, 63, 32 steps, all valid; the group norm sees exactly those).
  auto model = models::open_detector<float>(kOtTmDir + "weights.pth", kOtTmDir + "config.py");
  for (const char* vid : {"vid00", "vid01", "vid03"}) {
    CAPTURE(vid);
    check_ot_video(*model, vid, kOtTmDir);
  }
  // "none" is TemporalMaxer's alone: an attention pyramid needs whole windows.
  json::Value af = detector_config_to_json(models::read_config_file(kOtDir + "config.py"));
  af["flowless"]["inference_padding"] = json::Value("none");
  CHECK_THROWS_WITH(parse_detector_config(af, "af.json"), doctest::Contains("none for the temporalmaxer family only"));
}

TEST_CASE("opentad tridet: boundary logits of the padded steps, outputs and detections match OpenTAD") {
  const DetectorConfig c = models::read_config_file(kOtTdDir + "config.py");
  CHECK(c.arch == "tridet");
  CHECK(c.trident());
  CHECK(c.unmasked_boundary_logits);
  CHECK(c.num_bins == 16);
  CHECK(c.sgp_mlp_dim == 48);
  CHECK(c.sgp_k == 5);
  CHECK(c.mha_win_size == std::vector<int>(6, 1));
  CHECK(c.inference_padding == "max_seq_len");
  // start_logits.l / end_logits.l cover every step of each level's buffer:
  // OpenTAD's decode reads the padded ones after the last valid step.
  auto model = models::open_detector<float>(kOtTdDir + "weights.pth", kOtTdDir + "config.py");
  for (const char* vid : {"vid00", "vid01", "vid02"}) {
    CAPTURE(vid);
    check_ot_video(*model, vid, kOtTdDir);
  }
  // Training from it is refused: the training decode masks the boundary logits.
  json::Value j = detector_config_to_json(c);
  CHECK(parse_detector_config(j, "td.json").unmasked_boundary_logits);
  j["flowless"]["arch"] = json::Value("actionformer");
  j["model"]["backbone_type"] = json::Value("convTransformer");
  CHECK_THROWS_WITH(parse_detector_config(j, "td.json"), doctest::Contains("applies to the Trident head (tridet) only"));
}

TEST_CASE("opentad actionformer: without its re-masking the padded video's outputs differ") {
  // The semantics the config turns on are what the fixture needs: the
  // original code's ConvModule (no re-mask) moves vid00's last valid logits.
  DetectorConfig cfg = models::read_config_file(kOtDir + "config.py");
  cfg.conv_remask = false;
  auto model = models::load_reference_detector<float>(cfg, kOtDir + "weights.pth");
  io::Array feats = io::load_npy(kOtDir + "vid00.npy");
  auto x = feats.to_float32("vid00");
  models::DetectorOutput<float> raw;
  model->detect(x.data(), feats.shape[0], feats.shape[1], VideoMeta{"vid00", 30, 40.4, 4, 16}, &raw);
  const io::SafeTensors exp = io::load_safetensors(kOtDir + "vid00.expected.safetensors");
  const auto e = exp.tensors.at("cls_logits.0").to_float32("e");
  double worst = 0;
  for (size_t i = 0; i < e.size(); ++i) worst = std::max(worst, double(std::abs(raw.cls_logits[0].value()[int64_t(i)] - e[i])));
  CHECK(worst > 1e-2);
}
