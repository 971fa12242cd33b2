// tests/reference_parity.hpp - compare a flowless detector with what the
// reference code (ActionFormer, TemporalMaxer) wrote in a fixture folder
// (tests/data/actionformer_small, actionformer_anet_small, temporalmaxer_small):
// per-level outputs on the valid positions, the final detections, and the
// training losses and gradients.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "flowless/io/json.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/models/detector.hpp"
#include "flowless/train/detection_loss.hpp"

namespace flowless::test {

/// max over i of |a - b| / (tol * max(1, |b|)): <= 1 means "within tol, abs or rel".
inline double worst_violation(const float* a, const float* b, int64_t n, double tol) {
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    double d = std::abs(double(a[i]) - double(b[i])) / std::max(1.0, std::abs(double(b[i])));
    worst = std::max(worst, d / tol);
  }
  return worst;
}

/// x: (T, C) features as the model sees them (already resampled where the
/// config asks); meta: the grid the reference handed its model. `expected` is
/// the video's entry of expected_detections.json and `expected_outputs` the
/// path of its vidNN.expected.safetensors (cls_logits.l, offsets.l,
/// fpn_feats.l on the valid positions of level l; for TriDet also
/// start_logits.l and end_logits.l, on the valid positions or on every step
/// of the level's buffer). Features and logits within
/// 1e-4 (abs or rel); detections in the same order (up to ties), with the same
/// labels, boundaries within 1e-3 s and scores within 1e-4.
inline void check_reference_video(models::Detector<float>& model, const float* x, int64_t T, int64_t C,
                                  const VideoMeta& meta, const json::Value& expected,
                                  const std::string& expected_outputs) {
  models::DetectorOutput<float> raw;
  auto dets = model.detect(x, T, C, meta, &raw);
  io::SafeTensors exp = io::load_safetensors(expected_outputs);
  const std::string& vid = meta.id;
  for (size_t l = 0; l < raw.cls_logits.size(); ++l) {
    const int64_t len = raw.lengths[l][0];
    auto check = [&](const char* name, const Var<float>& v, int64_t width) {
      const io::Array& e = exp.tensors.at(std::string(name) + "." + std::to_string(l));
      // The valid positions, or every step of the buffer where the fixture
      // holds them all (OpenTAD's unmasked TriDet boundary logits).
      const int64_t rows = e.shape[0] == v.size(1) ? v.size(1) : len;
      REQUIRE(e.shape[0] == rows);
      REQUIRE(e.shape[1] == width);
      auto ev = e.to_float32(name);
      double worst = worst_violation(v.value().data(), ev.data(), rows * width, 1e-4);
      CAPTURE(vid); CAPTURE(name); CAPTURE(l);
      CHECK(worst <= 1.0);
    };
    check("cls_logits", raw.cls_logits[l], model.config().num_classes);
    check("offsets", raw.offsets[l], model.config().offset_channels());
    check("fpn_feats", raw.feats[l], model.config().fpn_dim);
    if (model.config().trident()) {  // TriDet's boundary heads
      REQUIRE(raw.start_logits.size() == raw.cls_logits.size());
      check("start_logits", raw.start_logits[l], model.config().num_classes);
      check("end_logits", raw.end_logits[l], model.config().num_classes);
    }
  }
  // Detections in the reference's order; two whose reference scores tie
  // (within 1e-6, below float32 rounding of the network) may come in either order.
  const auto& ed = expected.at("detections").as_array();
  REQUIRE(dets.size() == ed.size());
  auto same = [&](size_t i, size_t j) {
    return dets[i].label == ed[j].at("label_id").as_int() &&
           std::abs(dets[i].start - ed[j].at("segment")[0].as_number()) <= 1e-3 &&
           std::abs(dets[i].end - ed[j].at("segment")[1].as_number()) <= 1e-3 &&
           std::abs(dets[i].score - ed[j].at("score").as_number()) <= 1e-4;
  };
  std::vector<char> used(ed.size(), 0);
  for (size_t i = 0; i < dets.size(); ++i) {
    size_t match = i;
    if (used[i] || !same(i, i)) {
      const double si = ed[i].at("score").as_number();
      for (size_t j = 0; j < ed.size(); ++j)
        if (!used[j] && std::abs(ed[j].at("score").as_number() - si) <= 1e-6 && same(i, j)) {
          match = j;
          break;
        }
    }
    CAPTURE(vid); CAPTURE(i);
    CHECK(!used[match]);
    CHECK(dets[i].label == ed[match].at("label_id").as_int());
    CHECK(std::abs(dets[i].start - ed[match].at("segment")[0].as_number()) <= 1e-3);
    CHECK(std::abs(dets[i].end - ed[match].at("segment")[1].as_number()) <= 1e-3);
    CHECK(std::abs(dets[i].score - ed[match].at("score").as_number()) <= 1e-4);
    used[match] = 1;
  }
}

/// A fixture video as stored (dir/vid.npy, (T, C)) on the model's own grid
/// (config feat_stride and num_frames), with the fps and duration of its
/// entry in dir/expected_detections.json: check_reference_video.
inline void check_fixture_video(models::Detector<float>& model, const std::string& dir, const std::string& vid) {
  io::Array feats = io::load_npy(dir + vid + ".npy");
  auto x = feats.to_float32(vid);
  const json::Value expected = json::parse_file(dir + "expected_detections.json").at(vid);
  VideoMeta meta{vid, expected.at("fps").as_number(), expected.at("duration").as_number(), model.config().feat_stride,
                 model.config().num_frames};
  check_reference_video(model, x.data(), feats.shape[0], feats.shape[1], meta, expected,
                        dir + vid + ".expected.safetensors");
}

/// The fixture's training batch: dir/train0.npy, train1.npy ((T_b, C)
/// features) zero-padded into x (2, max_seq_len, C), their lengths, and the
/// ground truth of dir/train_gt.json (grid units).
struct TrainingBatch {
  Tensor<float> x;
  std::vector<int> lengths;
  std::vector<models::VideoTargets> targets;
};

inline TrainingBatch load_training_batch(const std::string& dir, const DetectorConfig& cfg) {
  const json::Value gt = json::parse_file(dir + "train_gt.json");
  const int64_t Tbuf = cfg.max_seq_len, C = cfg.input_dim;
  TrainingBatch tb;
  tb.x = Tensor<float>::zeros(Shape{2, Tbuf, C});
  for (int b = 0; b < 2; ++b) {
    io::Array a = io::load_npy(dir + "train" + std::to_string(b) + ".npy");
    auto v = a.to_float32("train");
    REQUIRE(a.shape[1] == C);
    REQUIRE(a.shape[0] <= Tbuf);
    std::copy(v.begin(), v.end(), tb.x.data() + b * Tbuf * C);
    tb.lengths.push_back(int(a.shape[0]));
    CHECK(gt[b].at("num_feats").as_int() == a.shape[0]);
    models::VideoTargets t;
    for (auto& s : gt[b].at("segments").as_array()) t.segments.push_back({float(s[0].as_number()), float(s[1].as_number())});
    for (auto& l : gt[b].at("labels").as_array()) t.labels.push_back(int(l.as_int()));
    tb.targets.push_back(t);
  }
  return tb;
}

/// The fixture's training batch (dir/train0.npy, train1.npy, train_gt.json:
/// features (T_b, C), ground truth in grid units) through the model's training
/// forward, padded to max_seq_len, without stochastic depth: the losses and
/// the loss normaliser's update against dir/train_losses.json (1e-5 relative),
/// then every parameter's gradient of final_loss against
/// dir/train_grads.safetensors (within 1e-3 of the tensor's largest value).
/// norm_tol: the normaliser's relative tolerance (1e-9: #pos is an integer;
/// a sum of SimOTA weights is float32, summed in another order by torch).
inline void check_reference_training(models::Detector<float>& model, const std::string& dir, double norm_tol = 1e-9) {
  const DetectorConfig& cfg = model.config();
  model.train(false);  // the fixtures were computed without stochastic depth
  const TrainingBatch batch = load_training_batch(dir, cfg);
  json::Value expected = json::parse_file(dir + "train_losses.json");
  DetectionLoss<float> criterion(cfg.loss_config());
  CHECK(criterion.loss_norm() == doctest::Approx(expected.at("init_loss_norm").as_number()));
  auto out = model.forward(Var<float>(batch.x), batch.lengths);
  auto losses = model.loss(out, batch.targets, criterion);
  auto rel = [](double a, double b) { return std::abs(a - b) / std::abs(b); };
  CHECK(rel(losses.cls_loss.value()[0], expected.at("cls_loss").as_number()) <= 1e-5);
  CHECK(rel(losses.reg_loss.value()[0], expected.at("reg_loss").as_number()) <= 1e-5);
  CHECK(rel(losses.final_loss.value()[0], expected.at("final_loss").as_number()) <= 1e-5);
  CHECK(rel(criterion.loss_norm(), expected.at("loss_norm_after").as_number()) <= norm_tol);
  backward(losses.final_loss);
  io::SafeTensors grads = io::load_safetensors(dir + "train_grads.safetensors");
  int checked = 0;
  double global_max = 0;
  for (auto& [name, a] : grads.tensors)
    for (float v : a.to_float32(name)) global_max = std::max(global_max, double(std::abs(v)));
  for (auto& [name, p] : model.named_parameters()) {
    CAPTURE(name);
    REQUIRE(grads.tensors.count(name));
    auto g = grads.tensors.at(name).to_float32(name);
    REQUIRE(p->grad().defined());
    REQUIRE(p->grad().numel() == int64_t(g.size()));
    double max_ref = 0, max_diff = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      max_ref = std::max(max_ref, double(std::abs(g[i])));
      max_diff = std::max(max_diff, double(std::abs(p->grad()[i] - g[i])));
    }
    // The key projection's bias and the key LayerNorm's bias add the same vector
    // to every key of a window, which the softmax ignores: their true gradient
    // is exactly zero and the reference stores float32 rounding noise there
    // (max ~1e-9, against a global gradient scale ~1e-1). For such tensors the
    // criterion is absolute, relative to the global gradient scale.
    const bool analytically_zero = name.find("attn.key.bias") != std::string::npos ||
                                   name.find("attn.key_norm.bias") != std::string::npos;
    if (analytically_zero) {
      CHECK(max_ref <= 1e-6 * global_max);
      CHECK(max_diff <= 1e-6 * global_max);
    } else {
      CHECK(max_diff <= 1e-3 * max_ref);
    }
    ++checked;
  }
  CHECK(checked == int(grads.tensors.size()));
}

}  // namespace flowless::test
