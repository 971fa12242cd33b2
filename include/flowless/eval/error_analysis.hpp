// flowless/eval/error_analysis.hpp - where a detector's false positives come
// from: the false-positive analysis of DETAD (Alwassel et al., "Diagnosing
// Error in Temporal Action Detectors", ECCV 2018; HumamAlwassel/DETAD,
// src/action_detector_diagnosis.py), on the evaluator's own matching.
//
//   auto fp = analyze_false_positives(ann, "test", preds, parse_tiou_range("0.3:0.7:5"));
//   std::printf("%s", format_table(fp).c_str());   // or to_json(fp)
//
// Ground truth and predictions are read exactly as evaluate_detection reads
// them (detection_map.hpp: the split, duplicate GT removed, predictions of
// classes without GT ignored), then, as DETAD does:
// - Limit: per class, only the top limit_factor x (#GT of the class)
//   predictions by score are analysed (DETAD's "top-10G" with the default 10;
//   ties at the cut keep the earlier prediction; 0 = keep all). The mAP below
//   is the mAP of these predictions, so with a limit it can differ slightly
//   from evaluate_detection's.
// - Each analysed prediction gets one type per tIoU threshold t. Matched by
//   the evaluator (same greedy matching, same tie order) it is a true
//   positive. Otherwise, with the GT segments of its video (all classes, in
//   file order) and g the first one of maximal tIoU u with it:
//     u >= t         double detection (g has the prediction's class) or wrong label
//     min_tiou <= u  localization error (same class) or confusion error
//     otherwise, or no GT in the video: background error
// - fraction[type] = the type's count / #analysed predictions, averaged over
//   the thresholds (the types of one threshold sum to 1).
// - average_map_gain[type]: per class and threshold, the predictions of that
//   type are removed from the ranked list (the others keep their true/false
//   flags, #GT unchanged) and the AP recomputed; the mean of those APs minus
//   the average mAP. How much fixing that kind of error alone would be worth.
// Errors: those of evaluate_detection, and a negative or non-finite
// limit_factor, min_tiou outside [0, 1].
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "flowless/eval/detection_map.hpp"

namespace flowless::eval {

enum class FpType : int { true_positive = 0, double_detection, wrong_label, localization, confusion, background };
inline constexpr int kNumFpTypes = 6;

/// "true_positive", "double_detection", ... (the JSON keys).
inline const char* fp_type_key(int type) {
  static const char* const keys[kNumFpTypes] = {"true_positive", "double_detection", "wrong_label",
                                                 "localization",  "confusion",        "background"};
  FLOWLESS_CHECK(type >= 0 && type < kNumFpTypes, "fp_type_key: no type ", type);
  return keys[type];
}
/// "true positive", "double detection", ... (table rows).
inline const char* fp_type_name(int type) {
  static const char* const names[kNumFpTypes] = {"true positive", "double detection", "wrong label",
                                                  "localization",  "confusion",        "background"};
  FLOWLESS_CHECK(type >= 0 && type < kNumFpTypes, "fp_type_name: no type ", type);
  return names[type];
}

struct FalsePositiveOptions {
  double limit_factor = 10;  // per class the top limit_factor x #GT predictions; 0 = all
  double min_tiou = 0.1;     // below it (with every GT of the video): background
};

struct FalsePositiveAnalysis {
  std::vector<double> tiou_thresholds;
  double limit_factor = 10, min_tiou = 0.1;
  int64_t num_predictions = 0;                             // analysed (after the limit)
  std::vector<std::array<int64_t, kNumFpTypes>> counts;    // [threshold][type]
  std::array<double, kNumFpTypes> fraction{};              // mean over thresholds of count / num_predictions
  std::vector<double> map;                                 // mAP of the analysed predictions per threshold
  double average_map = 0;
  std::array<double, kNumFpTypes> average_map_gain{};      // [0] (true positives) stays 0
};

inline FalsePositiveAnalysis analyze_false_positives(const data::Annotations& ann, const std::string& split,
                                                     const std::vector<Prediction>& preds,
                                                     const std::vector<double>& tious,
                                                     const FalsePositiveOptions& opt = {}) {
  FLOWLESS_CHECK(std::isfinite(opt.limit_factor) && opt.limit_factor >= 0, "analyze_false_positives: limit_factor ",
                 opt.limit_factor, " must be finite and >= 0");
  FLOWLESS_CHECK(std::isfinite(opt.min_tiou) && opt.min_tiou >= 0 && opt.min_tiou <= 1,
                 "analyze_false_positives: min_tiou ", opt.min_tiou, " outside [0, 1]");
  detail::GroupedDetections g = detail::group_detections(ann, split, preds, tious, "analyze_false_positives");
  const size_t T = tious.size(), C = g.gt_by_class.size();

  FalsePositiveAnalysis r;
  r.tiou_thresholds = tious;
  r.limit_factor = opt.limit_factor;
  r.min_tiou = opt.min_tiou;
  r.counts.assign(T, {});
  // ap[type][t][c]: type 0 = nothing removed
  std::vector<std::vector<std::vector<double>>> ap(kNumFpTypes,
                                                   std::vector<std::vector<double>>(T, std::vector<double>(C, 0.0)));
  size_t c = 0;
  for (auto& [label, gt] : g.gt_by_class) {
    std::vector<detail::Row>& pred = g.pred_by_class.at(label);
    if (opt.limit_factor > 0) {
      const size_t n = static_cast<size_t>(static_cast<double>(gt.size()) * opt.limit_factor);  // int() as DETAD
      if (pred.size() > n) {
        std::vector<size_t> idx(pred.size());
        for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
        std::stable_sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return pred[a].score > pred[b].score; });
        idx.resize(n);
        std::sort(idx.begin(), idx.end());  // the kept ones in input order
        std::vector<detail::Row> kept;
        kept.reserve(n);
        for (size_t i : idx) kept.push_back(pred[i]);
        pred = std::move(kept);
      }
    }
    r.num_predictions += static_cast<int64_t>(pred.size());
    if (pred.empty()) {
      ++c;
      continue;
    }
    const detail::ClassMatches m = detail::match_detection(gt, pred, tious);
    const double npos = static_cast<double>(gt.size());
    const size_t P = pred.size();
    // The best GT of every prediction's video over all classes (threshold-independent).
    std::vector<double> best_tiou(P, -1);
    std::vector<char> best_same(P, 0);
    for (size_t i = 0; i < P; ++i) {
      const detail::Row& p = pred[static_cast<size_t>(m.order[i])];
      auto it = g.gt_by_video.find(p.video);
      if (it == g.gt_by_video.end()) continue;
      for (const auto& [row, glabel] : it->second) {
        const double u = detail::segment_iou(p.start, p.end, row.start, row.end);
        if (u > best_tiou[i]) {  // np.argmax: the first maximum
          best_tiou[i] = u;
          best_same[i] = glabel == label;
        }
      }
    }
    std::vector<char> keep(P);
    for (size_t t = 0; t < T; ++t) {
      std::vector<int> type(P);
      for (size_t i = 0; i < P; ++i) {
        const double u = best_tiou[i];
        int ty;
        if (m.tp[t][i])
          ty = int(FpType::true_positive);
        else if (u >= tious[t])
          ty = best_same[i] ? int(FpType::double_detection) : int(FpType::wrong_label);
        else if (u >= opt.min_tiou)
          ty = best_same[i] ? int(FpType::localization) : int(FpType::confusion);
        else
          ty = int(FpType::background);  // includes u = -1: no GT in the video
        type[i] = ty;
        ++r.counts[t][static_cast<size_t>(ty)];
      }
      ap[0][t][c] = detail::ap_from_flags(m.tp[t], npos);
      for (int e = 1; e < kNumFpTypes; ++e) {
        for (size_t i = 0; i < P; ++i) keep[i] = type[i] != e;
        ap[static_cast<size_t>(e)][t][c] = detail::ap_from_flags(m.tp[t], npos, &keep);
      }
    }
    ++c;
  }
  for (size_t t = 0; t < T; ++t) r.map.push_back(detail::numpy_mean(ap[0][t]));
  r.average_map = detail::numpy_mean(r.map);
  for (int e = 0; e < kNumFpTypes; ++e) {
    double frac = 0;
    for (size_t t = 0; t < T; ++t)
      frac += r.num_predictions > 0 ? double(r.counts[t][size_t(e)]) / double(r.num_predictions) : 0.0;
    r.fraction[size_t(e)] = frac / double(T);
    if (e == 0) continue;
    std::vector<double> m(T);
    for (size_t t = 0; t < T; ++t) m[t] = detail::numpy_mean(ap[size_t(e)][t]);
    r.average_map_gain[size_t(e)] = detail::numpy_mean(m) - r.average_map;
  }
  return r;
}

inline json::Value to_json(const FalsePositiveAnalysis& r) {
  json::Value o = json::Value::object();
  json::Value th = json::Value::array();
  for (double t : r.tiou_thresholds) th.push_back(t);
  o["tiou_thresholds"] = std::move(th);
  o["limit_factor"] = r.limit_factor;
  o["min_tiou"] = r.min_tiou;
  o["num_predictions"] = json::Value(double(r.num_predictions));
  json::Value m = json::Value::array();
  for (double x : r.map) m.push_back(x);
  o["mAP"] = std::move(m);
  o["average_mAP"] = r.average_map;
  json::Value counts = json::Value::object(), frac = json::Value::object(), gain = json::Value::object();
  for (int e = 0; e < kNumFpTypes; ++e) {
    json::Value per = json::Value::array();
    for (const auto& row : r.counts) per.push_back(double(row[size_t(e)]));
    counts[fp_type_key(e)] = std::move(per);
    frac[fp_type_key(e)] = r.fraction[size_t(e)];
    if (e > 0) gain[fp_type_key(e)] = r.average_map_gain[size_t(e)];
  }
  o["counts"] = std::move(counts);
  o["fraction"] = std::move(frac);
  o["average_mAP_gain"] = std::move(gain);
  return o;
}

/// One row per type: its share of the analysed predictions (%) at every
/// threshold and on average, and the average-mAP gain (points) if removed.
inline std::string format_table(const FalsePositiveAnalysis& r) {
  std::string out;
  char buf[256];
  if (r.limit_factor > 0)
    std::snprintf(buf, sizeof buf, "false-positive analysis (DETAD): top %gG predictions per class, %lld analysed\n",
                  r.limit_factor, (long long)r.num_predictions);
  else
    std::snprintf(buf, sizeof buf, "false-positive analysis (DETAD): all %lld predictions\n",
                  (long long)r.num_predictions);
  out += buf;
  std::snprintf(buf, sizeof buf, "%-17s", "type (% of preds)");
  out += buf;
  for (double t : r.tiou_thresholds) {
    std::snprintf(buf, sizeof buf, " %7.2f", t);
    out += buf;
  }
  out += "     avg  avg-mAP gain if removed\n";
  for (int e = 0; e < kNumFpTypes; ++e) {
    std::snprintf(buf, sizeof buf, "%-17s", fp_type_name(e));
    out += buf;
    for (const auto& row : r.counts) {
      const double f = r.num_predictions > 0 ? double(row[size_t(e)]) / double(r.num_predictions) : 0.0;
      std::snprintf(buf, sizeof buf, " %7.2f", 100 * f);
      out += buf;
    }
    std::snprintf(buf, sizeof buf, " %7.2f", 100 * r.fraction[size_t(e)]);
    out += buf;
    if (e > 0) {
      std::snprintf(buf, sizeof buf, "  %+.2f", 100 * r.average_map_gain[size_t(e)]);
      out += buf;
    }
    out += '\n';
  }
  std::snprintf(buf, sizeof buf, "average mAP of the analysed predictions: %.2f\n", 100 * r.average_map);
  out += buf;
  return out;
}

}  // namespace flowless::eval
