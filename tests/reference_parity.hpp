// tests/reference_parity.hpp - compare a flowless detector with the outputs
// the reference ActionFormer code wrote for one video (the fixtures
// tests/data/actionformer_small and tests/data/actionformer_anet_small):
// per-level outputs on the valid positions, then the final detections.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "flowless/io/json.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/models/detector.hpp"

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
/// fpn_feats.l on the valid positions of level l). Features and logits within
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
      REQUIRE(e.shape[0] == len);
      REQUIRE(e.shape[1] == width);
      auto ev = e.to_float32(name);
      double worst = worst_violation(v.value().data(), ev.data(), len * width, 1e-4);
      CAPTURE(vid); CAPTURE(name); CAPTURE(l);
      CHECK(worst <= 1.0);
    };
    check("cls_logits", raw.cls_logits[l], model.config().num_classes);
    check("offsets", raw.offsets[l], 2);
    check("fpn_feats", raw.feats[l], model.config().fpn_dim);
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

}  // namespace flowless::test
