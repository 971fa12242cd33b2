// flowless/train/simota.hpp - TemporalMaxer's SimOTA label assignment
// (libs/modeling/simota_assigner.py with label_points_single_video of
// TemporalMaxerArchitecture; OpenTAD's AnchorFreeSimOTAAssigner is the same
// algorithm), float32 op by op as the reference.
//
// Unlike center sampling (label_assignment.hpp) the assignment reads the
// network's current outputs: for every VALID point i (inside its level's
// valid prefix; the others get all-zero targets and weight 0) and GT j
// (segments [a, b] in level-0 grid units, stride s, point t):
//   left = t - a, right = b - t
//   pre(i, j): center sampling with radius center_radius, exactly as
//              label_points(..., "radius", center_radius) decides it: inside
//              the stride-scaled centre region (strict), max(left, right) in
//              the level's regression range (inclusive), and the GT length
//              within 1e-3 of the shortest such GT
//   cost(i, j) = cls_weight * sum_c focal(logit_ic, onehot(label_j)_c)
//              + iou_weight * DIoU-loss(offsets_i, (left, right) / s)
//              and +inf where left < 0 or right < 0 (t outside the GT)
// The class target of i is the union of the one-hots of every GT with
// pre(i, j) and a finite cost (clipped to 1). The regression target is
// (left, right) / s of argmin_j cost(i, j) (the first minimum; GT 0 when
// every cost is infinite) - the cheapest GT that contains the point, not the
// shortest. Dynamic-k weights: a point inside at least one GT starts at
// confuse_weight, any other valid point at 1; then for every GT j, the
// k_j = trunc(f32(#points inside j) * f32(keep_percent)) points of lowest
// cost(., j) get weight 1 (ties by point order). The loss (detection_loss.hpp)
// multiplies positive rows' focal and DIoU terms by the weight and
// normalises by the positive weights' sum. With TemporalMaxer's THUMOS
// settings (keep_percent 1, confuse_weight 0) every positive weight is 1.
//
// Without GTs every target is zero and every valid weight 1 (the reference
// fails on an empty cost matrix). Errors: a non-finite output at a valid
// point (a diverged training), mismatched sizes, labels out of range,
// non-finite segments.
//
// Output: PointTargets (cls (N, C), offsets (N, 2), weights (N)), rows in
// PointSet order.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/models/points.hpp"
#include "flowless/ops/losses.hpp"
#include "flowless/train/label_assignment.hpp"

namespace flowless {

/// The assigner's parameters (model.assigner); defaults are the reference
/// class's (TemporalMaxer's THUMOS config uses iou_weight 2, center_radius
/// 1.5, keep_percent 1, confuse_weight 0).
struct SimOTAConfig {
  double center_radius = 2.5, iou_weight = 3.0, cls_weight = 1.0, keep_percent = 0.65, confuse_weight = 0.1;
};

/// Errors naming ctx when a parameter is outside the range the algorithm is
/// defined for (an iou_weight of 0 would turn every +inf cost into NaN and
/// leave no positive point).
inline void check_simota_config(const SimOTAConfig& c, const std::string& ctx) {
  FLOWLESS_CHECK(std::isfinite(c.center_radius) && c.center_radius > 0, ctx,
                 ": assigner.center_radius must be > 0, got ", c.center_radius);
  FLOWLESS_CHECK(std::isfinite(c.iou_weight) && c.iou_weight > 0, ctx, ": assigner.iou_weight must be > 0, got ",
                 c.iou_weight);
  FLOWLESS_CHECK(std::isfinite(c.cls_weight) && c.cls_weight >= 0, ctx, ": assigner.cls_weight must be >= 0, got ",
                 c.cls_weight);
  FLOWLESS_CHECK(c.keep_percent > 0 && c.keep_percent <= 1, ctx, ": assigner.keep_percent must be in (0, 1], got ",
                 c.keep_percent);
  FLOWLESS_CHECK(std::isfinite(c.confuse_weight) && c.confuse_weight >= 0, ctx,
                 ": assigner.confuse_weight must be >= 0, got ", c.confuse_weight);
}

/// SimOTA targets of one video. valid_lengths[l]: valid points of level l (a
/// prefix); cls_logits (N, C) and offsets (N, 2): the network's outputs for
/// this video, rows in PointSet order (offsets after the head's ReLU, in
/// stride units). focal_alpha / focal_gamma: the cost's focal loss.
inline PointTargets simota_assign(const PointSet& pts, const std::vector<int>& valid_lengths, const float* cls_logits,
                                  const float* offsets, const std::vector<std::array<float, 2>>& segments,
                                  const std::vector<int>& labels, int num_classes, const SimOTAConfig& cfg,
                                  float focal_alpha = 0.25f, float focal_gamma = 2.0f) {
  check_simota_config(cfg, "simota_assign");
  FLOWLESS_CHECK(num_classes >= 1, "simota_assign: num_classes must be >= 1, got ", num_classes);
  FLOWLESS_CHECK(segments.size() == labels.size(), "simota_assign: ", segments.size(), " segments but ",
                 labels.size(), " labels");
  FLOWLESS_CHECK(static_cast<int>(valid_lengths.size()) == pts.num_levels(), "simota_assign: ",
                 valid_lengths.size(), " valid lengths for ", pts.num_levels(), " levels");
  const size_t G = segments.size();
  for (size_t j = 0; j < G; ++j) {
    FLOWLESS_CHECK(labels[j] >= 0 && labels[j] < num_classes, "simota_assign: label ", labels[j], " of GT ", j,
                   " is outside [0, ", num_classes, ")");
    FLOWLESS_CHECK(std::isfinite(segments[j][0]) && std::isfinite(segments[j][1]), "simota_assign: GT ", j,
                   " has a non-finite boundary");
  }
  const int64_t N = pts.size();
  const int C = num_classes;
  PointTargets out;
  out.num_points = N;
  out.num_classes = C;
  out.cls.assign(static_cast<size_t>(N * C), 0.0f);
  out.offsets.assign(static_cast<size_t>(N * 2), 0.0f);
  out.weights.assign(static_cast<size_t>(N), 0.0f);

  // The valid points, in PointSet order (the reference's boolean-mask order).
  std::vector<int64_t> rows;
  std::vector<int> row_level;
  for (int l = 0; l < pts.num_levels(); ++l) {
    const int v = valid_lengths[static_cast<size_t>(l)];
    FLOWLESS_CHECK(v >= 0 && v <= pts.levels[static_cast<size_t>(l)].length, "simota_assign: valid length ", v,
                   " of level ", l, " outside [0, ", pts.levels[static_cast<size_t>(l)].length, "]");
    for (int k = 0; k < v; ++k) {
      rows.push_back(pts.offset[static_cast<size_t>(l)] + k);
      row_level.push_back(l);
    }
  }
  const int64_t Nv = static_cast<int64_t>(rows.size());
  for (int64_t v = 0; v < Nv; ++v) {
    const int64_t i = rows[static_cast<size_t>(v)];
    for (int c = 0; c < C; ++c)
      FLOWLESS_CHECK(std::isfinite(cls_logits[i * C + c]), "simota_assign: classification output ", i, ", class ",
                     c, " is not finite (the training diverged)");
    FLOWLESS_CHECK(std::isfinite(offsets[2 * i]) && std::isfinite(offsets[2 * i + 1]),
                   "simota_assign: regression output ", i, " is not finite (the training diverged)");
  }
  if (G == 0) {
    for (int64_t i : rows) out.weights[static_cast<size_t>(i)] = 1.0f;
    return out;
  }

  const float inf = std::numeric_limits<float>::infinity();
  const float tol = 1e-3f;
  const float cls_w = static_cast<float>(cfg.cls_weight), iou_w = static_cast<float>(cfg.iou_weight);
  const float eps = 1e-8f;
  std::vector<float> cost(static_cast<size_t>(Nv) * G);     // (Nv, G)
  std::vector<uint8_t> matched(static_cast<size_t>(Nv) * G);  // pre and finite cost
  std::vector<int> min_ind(static_cast<size_t>(Nv), 0);
  parallel_for(Nv, 256, [&](int64_t v0, int64_t v1) {
    using A = detail::LossArr<float>;
    using M = detail::LossMap<float>;
    const A zeros = A::Zero(C), ones = A::Ones(C);
    std::vector<float> cand(G);
    for (int64_t v = v0; v < v1; ++v) {
      const int64_t i = rows[static_cast<size_t>(v)];
      const PointLevel& lv = pts.levels[static_cast<size_t>(row_level[static_cast<size_t>(v)])];
      const float s = static_cast<float>(lv.stride);
      const float t = static_cast<float>((i - pts.offset[static_cast<size_t>(row_level[static_cast<size_t>(v)])]) *
                                         lv.stride);
      const float rs = heads_detail::no_contract(s * static_cast<float>(cfg.center_radius));
      // Focal terms against target 0 and 1 for every class of this point.
      const A f0 = detail::focal_terms<float>(M(cls_logits + i * C, C), zeros, focal_alpha, focal_gamma);
      const A f1 = detail::focal_terms<float>(M(cls_logits + i * C, C), ones, focal_alpha, focal_gamma);
      const float pl = offsets[2 * i], pr = offsets[2 * i + 1];
      float min_len = inf;
      float* crow = cost.data() + v * G;
      for (size_t j = 0; j < G; ++j) {
        const float a = segments[j][0], b = segments[j][1];
        const float left = t - a, right = b - t;
        // within_center: the stride-scaled centre region and the regression range.
        const float c = 0.5f * (a + b);
        const float cbl = t - std::max(c - rs, a);
        const float cbr = std::min(c + rs, b) - t;
        const float mx = std::max(left, right);
        const bool pre = std::min(cbl, cbr) > 0.0f && mx >= lv.reg_lo && mx <= lv.reg_hi;
        cand[j] = pre ? b - a : inf;
        min_len = std::min(min_len, cand[j]);
        // bbox_overlaps: the DIoU loss of the prediction against this GT's offsets.
        const float gl = left / s, gr = right / s;
        float iou_cost = inf;
        if (!(gl < 0.0f || gr < 0.0f)) {
          const float intsct = std::min(pr, gr) + std::min(pl, gl);
          const float unio = (pl + pr) + (gl + gr) - intsct;
          const float iou = intsct / std::max(unio, eps);
          const float len_c = std::max(pl, gl) + std::max(pr, gr);
          const float rho = 0.5f * (pr - pl - gr + gl);
          const float ratio = rho / std::max(len_c, eps);
          iou_cost = (1.0f - iou) + ratio * ratio;
        }
        // The classification cost: the focal loss against this GT's one-hot, summed over classes.
        float cls_cost = 0.0f;
        for (int k = 0; k < C; ++k) cls_cost += k == labels[j] ? f1[k] : f0[k];
        crow[j] = heads_detail::no_contract(cls_cost * cls_w) + heads_detail::no_contract(iou_cost * iou_w);
      }
      int arg = 0;
      for (size_t j = 1; j < G; ++j)
        if (crow[j] < crow[arg]) arg = static_cast<int>(j);
      min_ind[static_cast<size_t>(v)] = arg;
      const float thr = min_len + tol;
      for (size_t j = 0; j < G; ++j)
        matched[static_cast<size_t>(v) * G + j] = cand[j] < inf && cand[j] <= thr && crow[j] < inf;
    }
  });

  // Dynamic-k weights.
  std::vector<float> weight(static_cast<size_t>(Nv), 1.0f);
  std::vector<int64_t> count(G, 0);
  for (int64_t v = 0; v < Nv; ++v) {
    bool any = false;
    for (size_t j = 0; j < G; ++j)
      if (cost[static_cast<size_t>(v) * G + j] < inf) {
        any = true;
        ++count[j];
      }
    if (any) weight[static_cast<size_t>(v)] = static_cast<float>(cfg.confuse_weight);
  }
  const float keep = static_cast<float>(cfg.keep_percent);
  std::vector<int64_t> order;
  for (size_t j = 0; j < G; ++j) {
    const int64_t k = static_cast<int64_t>(static_cast<float>(count[j]) * keep);
    if (k <= 0) continue;
    order.resize(static_cast<size_t>(Nv));
    std::iota(order.begin(), order.end(), int64_t(0));
    auto less = [&](int64_t x, int64_t y) {
      const float cx = cost[static_cast<size_t>(x) * G + j], cy = cost[static_cast<size_t>(y) * G + j];
      return cx < cy || (cx == cy && x < y);
    };
    std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), less);
    for (int64_t q = 0; q < k; ++q) weight[static_cast<size_t>(order[static_cast<size_t>(q)])] = 1.0f;
  }

  for (int64_t v = 0; v < Nv; ++v) {
    const int64_t i = rows[static_cast<size_t>(v)];
    out.weights[static_cast<size_t>(i)] = weight[static_cast<size_t>(v)];
    float* crow = out.cls.data() + i * C;
    for (size_t j = 0; j < G; ++j)
      if (matched[static_cast<size_t>(v) * G + j]) crow[labels[j]] = 1.0f;
  }
  // Regression targets of every point: the cheapest GT's (left, right) / s
  // (invalid points: GT 0, as the reference; the loss does not read them).
  std::vector<int> gt_of(static_cast<size_t>(N), 0);
  for (int64_t v = 0; v < Nv; ++v) gt_of[static_cast<size_t>(rows[static_cast<size_t>(v)])] = min_ind[static_cast<size_t>(v)];
  for (int l = 0; l < pts.num_levels(); ++l) {
    const PointLevel& lv = pts.levels[static_cast<size_t>(l)];
    const float s = static_cast<float>(lv.stride);
    for (int64_t k = 0; k < lv.length; ++k) {
      const int64_t i = pts.offset[static_cast<size_t>(l)] + k;
      const float t = static_cast<float>(k * lv.stride);
      const auto& g = segments[static_cast<size_t>(gt_of[static_cast<size_t>(i)])];
      out.offsets[static_cast<size_t>(2 * i)] = (t - g[0]) / s;
      out.offsets[static_cast<size_t>(2 * i + 1)] = (g[1] - t) / s;
    }
  }
  return out;
}

}  // namespace flowless
