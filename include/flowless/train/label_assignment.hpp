// flowless/train/label_assignment.hpp - ActionFormer's label assignment
// (PtTransformer.label_points_single_video), float32 op by op as the reference.
//
// For every point (t, lo, hi, s) of a PointSet and every GT segment [a, b]
// (level-0 grid units):
//   left = t - a, right = b - t
//   inside: center_sample == "radius" (r = center_sample_radius):
//             c = 0.5 (a + b), rs = s * r,
//             min(t - max(c - rs, a), min(c + rs, b) - t) > 0   (strict)
//           center_sample == "none": min(left, right) > 0        (strict)
//   in range: lo <= max(left, right) <= hi                        (inclusive)
// A GT passing both has length b - a, the others +inf. The point takes the
// shortest (first index on ties, as torch.min(dim)); every GT whose length
// is <= min_len + 1e-3f (and finite) adds its one-hot to the class target,
// which is clipped to 1 (multi-label points for duplicated segments). The
// regression target is (left, right) of the argmin GT divided by s. A point
// passing for no GT is negative: an all-zero class row, and (as the reference)
// the regression target of GT 0 (unused: the loss reads offsets of positive
// points only). Without GTs everything is zero.
//
// Output (N = pts.size() points, C classes), row-major:
//   cls:     (N, C)  0/1 targets
//   offsets: (N, 2)  (left, right) / stride
//   weights: empty (every point weighs 1; SimOTA fills it, train/simota.hpp)
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/models/points.hpp"

namespace flowless {

struct PointTargets {
  int64_t num_points = 0;
  int num_classes = 0;
  std::vector<float> cls;      // (N, C) one/multi-hot
  std::vector<float> offsets;  // (N, 2) (left, right) / stride
  // (N) per-point loss weights (SimOTA's dynamic-k, train/simota.hpp); empty:
  // every weight is 1, as center sampling has it.
  std::vector<float> weights;

  /// True when point i has a non-zero class target.
  bool positive(int64_t i) const {
    const float* row = cls.data() + i * num_classes;
    for (int c = 0; c < num_classes; ++c)
      if (row[c] != 0.0f) return true;
    return false;
  }
  int64_t num_positive() const {
    int64_t n = 0;
    for (int64_t i = 0; i < num_points; ++i) n += positive(i) ? 1 : 0;
    return n;
  }
};

/// Targets for one video. segments: GT [start, end] in level-0 grid units;
/// labels: class ids in [0, num_classes). Errors: mismatched sizes, a label
/// out of range, non-finite segments, an unknown center_sample mode.
inline PointTargets label_points(const PointSet& pts, const std::vector<std::array<float, 2>>& segments,
                                 const std::vector<int>& labels, int num_classes,
                                 const std::string& center_sample, float center_sample_radius) {
  FLOWLESS_CHECK(num_classes >= 1, "label_points: num_classes must be >= 1, got ", num_classes);
  FLOWLESS_CHECK(segments.size() == labels.size(), "label_points: ", segments.size(), " segments but ",
                 labels.size(), " labels");
  FLOWLESS_CHECK(center_sample == "radius" || center_sample == "none",
                 "label_points: center_sample must be 'radius' or 'none', got '", center_sample, "'");
  const bool radius = center_sample == "radius";
  const size_t G = segments.size();
  for (size_t j = 0; j < G; ++j) {
    FLOWLESS_CHECK(labels[j] >= 0 && labels[j] < num_classes, "label_points: label ", labels[j], " of GT ", j,
                   " is outside [0, ", num_classes, ")");
    FLOWLESS_CHECK(std::isfinite(segments[j][0]) && std::isfinite(segments[j][1]), "label_points: GT ", j,
                   " has a non-finite boundary");
  }

  PointTargets out;
  const int64_t N = pts.size();
  const int C = num_classes;
  out.num_points = N;
  out.num_classes = C;
  out.cls.assign(static_cast<size_t>(N * C), 0.0f);
  out.offsets.assign(static_cast<size_t>(N * 2), 0.0f);
  if (G == 0 || N == 0) return out;

  std::vector<float> lens(G);  // (G)
  for (size_t j = 0; j < G; ++j) lens[j] = segments[j][1] - segments[j][0];
  const float inf = std::numeric_limits<float>::infinity();
  const float tol = 1e-3f;

  for (int l = 0; l < pts.num_levels(); ++l) {
    const PointLevel& lv = pts.levels[static_cast<size_t>(l)];
    const int64_t base = pts.offset[static_cast<size_t>(l)];
    const float s = static_cast<float>(lv.stride);
    const float rs = heads_detail::no_contract(s * center_sample_radius);
    parallel_for(lv.length, 512, [&](int64_t begin, int64_t end) {
      std::vector<float> cand(G);  // per-GT masked length
      for (int64_t k = begin; k < end; ++k) {
        const float t = static_cast<float>(k * lv.stride);
        float min_len = inf;
        size_t arg = 0;
        for (size_t j = 0; j < G; ++j) {
          const float a = segments[j][0], b = segments[j][1];
          const float left = t - a, right = b - t;
          bool inside;
          if (radius) {
            const float c = 0.5f * (a + b);
            const float tmin = c - rs, tmax = c + rs;
            const float cbl = t - std::max(tmin, a);
            const float cbr = std::min(tmax, b) - t;
            inside = std::min(cbl, cbr) > 0.0f;
          } else {
            inside = std::min(left, right) > 0.0f;
          }
          const float mx = std::max(left, right);
          const bool in_range = mx >= lv.reg_lo && mx <= lv.reg_hi;
          const float len = (inside && in_range) ? lens[j] : inf;
          cand[j] = len;
          if (len < min_len) {  // strict: the first minimum wins
            min_len = len;
            arg = j;
          }
        }
        const int64_t row = base + k;
        if (min_len < inf) {
          const float thr = min_len + tol;
          float* crow = out.cls.data() + row * C;
          for (size_t j = 0; j < G; ++j)
            if (cand[j] <= thr && cand[j] < inf) crow[labels[j]] = 1.0f;
        }
        const float a = segments[arg][0], b = segments[arg][1];
        out.offsets[static_cast<size_t>(row * 2)] = (t - a) / s;
        out.offsets[static_cast<size_t>(row * 2 + 1)] = (b - t) / s;
      }
    });
  }
  return out;
}

}  // namespace flowless
