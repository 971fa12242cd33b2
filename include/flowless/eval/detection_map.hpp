// flowless/eval/detection_map.hpp - temporal action detection mAP, a port of
// the reference evaluator (ActionFormer libs/utils/metrics.py, ANETdetection,
// itself adapted from the ActivityNet / EPIC-Kitchens evaluation code).
//
// evaluate_detection(ann, split, preds, tious) computes, exactly as the reference:
// - Ground truth: the videos whose subset equals `split` (both lower-cased;
//   "" = every video), in file order; per video remove_duplicate_annotations:
//   a segment shorter than 1e-3 s is dropped, and so is one whose start and end
//   are both within 1e-3 of an already kept segment with the same label_id.
//   Segments sharing boundaries but not labels (CliffDiving / Diving) stay.
// - Classes: the sorted distinct GT label_ids. Predictions with another label
//   are ignored. (The reference remaps labels with pandas' replace, which
//   leaves an unknown id unchanged, so when GT ids are not exactly 0..K-1 such
//   a prediction can land in the class whose *index* equals its id. We ignore
//   it instead; results are identical whenever the GT ids are 0..K-1, as for
//   THUMOS, ActivityNet and EPIC.)
// - AP per class and tIoU (compute_average_precision_detection): predictions
//   of the class, in input order, are sorted by score with numpy's default
//   argsort (introsort) reversed, so ties are broken exactly as numpy 1.24
//   does (checked against it; newer numpy may use SIMD sorts on some CPUs that
//   order ties differently, so the reference itself is then hardware-dependent
//   on ties). A prediction in a video with no
//   GT of the class is a false positive. Otherwise the video's GTs are visited
//   in the order of argsort(tIoU) reversed: the first tIoU below the threshold
//   makes it a false positive, a GT already matched at this threshold is
//   skipped, the first free one is matched. Precision/recall from the
//   cumulative counts, VOC-2011 interpolated AP (precision made monotone from
//   the right, summed where recall changes). A class without predictions has
//   AP 0 at every threshold. tIoU = inter / (len_gt + len_pred - inter), so a
//   degenerate pair (union 0) gives NaN, which the reference treats as a match.
// - mAP per threshold = mean AP over classes; average_map = mean of mAP.
//   Means use numpy's pairwise summation, so values are bit-identical.
// - Recall@kx (compute_topkx_recall_detection, k = 1 and 5), per class and
//   threshold: for every video with GT of the class, its predictions of the
//   class are sorted by score (as above) and the top k * (#GT in the video) are
//   kept; a GT counts as recalled if any kept prediction has tIoU >= threshold
//   (one prediction may recall several GTs). Recall = recalled / #GT of the
//   class; reported as the mean over classes. A class without predictions has
//   recall 0.
// - per_class_ap: keyed by the class name from ann.label_names, or by the id
//   as a decimal string when the id has no name ("name (id)" if two ids share
//   a name).
// Errors: an empty tIoU list, a non-finite prediction, a split with no GT
// segment (the reference would return NaN).
//
// parse_tiou_range: "0.3:0.7:5" = np.linspace(0.3, 0.7, 5) with numpy's exact
// arithmetic (so 0.39999999999999997, not 0.4); "0.5,0.75,0.95" = that list;
// "0.5" = one threshold. Every threshold must lie in [0, 1].
//
// load_predictions(path, ann) reads either layout, keeping file order
// (parse_predictions(root, context, ann) on an already parsed document):
//   ActivityNet: {"results":  {vid: [{"segment": [s, e], "label": name | "label_id": id, "score": x}]}}
//   reference:   {"database": {vid: [{"segment": [s, e], "label_id": id | "label": name, "scores": x}]}}
// ("score" and "scores" are accepted in both; "label_id" wins over "label"; a
// label name is resolved with ann.label_names and an unknown name is an
// Error). Predictions for videos outside the annotations are kept: the
// reference scores them as false positives. Errors name the file and video.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/data/annotations.hpp"
#include "flowless/io/json.hpp"

namespace flowless::eval {

struct Prediction {
  std::string video_id;
  double start = 0, end = 0;  // seconds
  int label_id = -1;
  double score = 0;
};

struct DetectionResult {
  std::vector<double> tiou_thresholds, map, recall_at_1x, recall_at_5x;
  double average_map = 0;
  std::map<std::string, std::vector<double>> per_class_ap;  // class name (or id) -> AP per tIoU
};

namespace detail {

/// numpy's default np.argsort (kind='quicksort': introsort with median of 3,
/// insertion sort for partitions of at most 16 elements, heapsort past the depth limit) for
/// float64, as in numpy/core/src/npysort/quicksort.cpp and heapsort.cpp;
/// NaNs sort last. Returns the ascending permutation.
inline bool np_less(double a, double b) { return a < b || (b != b && a == a); }

inline void np_aheapsort(const double* v, int64_t* tosort, int64_t n) {
  int64_t* a = tosort - 1;  // 1-based heap indexing
  int64_t i, j, l, tmp;
  for (l = n >> 1; l > 0; --l) {
    tmp = a[l];
    for (i = l, j = l << 1; j <= n;) {
      if (j < n && np_less(v[a[j]], v[a[j + 1]])) j += 1;
      if (np_less(v[tmp], v[a[j]])) {
        a[i] = a[j];
        i = j;
        j += j;
      } else {
        break;
      }
    }
    a[i] = tmp;
  }
  for (; n > 1;) {
    tmp = a[n];
    a[n] = a[1];
    n -= 1;
    for (i = 1, j = 2; j <= n;) {
      if (j < n && np_less(v[a[j]], v[a[j + 1]])) j++;
      if (np_less(v[tmp], v[a[j]])) {
        a[i] = a[j];
        i = j;
        j += j;
      } else {
        break;
      }
    }
    a[i] = tmp;
  }
}

inline std::vector<int64_t> numpy_argsort(const std::vector<double>& values) {
  const int64_t num = static_cast<int64_t>(values.size());
  std::vector<int64_t> idx(values.size());
  for (int64_t i = 0; i < num; ++i) idx[static_cast<size_t>(i)] = i;
  if (num < 2) return idx;
  const double* v = values.data();
  constexpr int kSmall = 15;  // SMALL_QUICKSORT
  constexpr int kStack = 128;
  int64_t* pl = idx.data();
  int64_t* pr = idx.data() + num - 1;
  int64_t* stack[kStack];
  int64_t** sptr = stack;
  int depth[kStack];
  int* psdepth = depth;
  int cdepth = 0;
  for (uint64_t u = static_cast<uint64_t>(num); u >>= 1;) ++cdepth;
  cdepth *= 2;
  for (;;) {
    if (cdepth < 0) {
      np_aheapsort(v, pl, pr - pl + 1);
    } else {
      while ((pr - pl) > kSmall) {
        int64_t* pm = pl + ((pr - pl) >> 1);
        if (np_less(v[*pm], v[*pl])) std::swap(*pm, *pl);
        if (np_less(v[*pr], v[*pm])) std::swap(*pr, *pm);
        if (np_less(v[*pm], v[*pl])) std::swap(*pm, *pl);
        double vp = v[*pm];
        int64_t* pi = pl;
        int64_t* pj = pr - 1;
        std::swap(*pm, *pj);
        for (;;) {
          do ++pi;
          while (np_less(v[*pi], vp));
          do --pj;
          while (np_less(vp, v[*pj]));
          if (pi >= pj) break;
          std::swap(*pi, *pj);
        }
        int64_t* pk = pr - 1;
        std::swap(*pi, *pk);
        // push the larger partition on the stack
        if (pi - pl < pr - pi) {
          *sptr++ = pi + 1;
          *sptr++ = pr;
          pr = pi - 1;
        } else {
          *sptr++ = pl;
          *sptr++ = pi - 1;
          pl = pi + 1;
        }
        *psdepth++ = --cdepth;
      }
      // insertion sort
      for (int64_t* pi = pl + 1; pi <= pr; ++pi) {
        int64_t vi = *pi;
        double vp = v[vi];
        int64_t* pj = pi;
        int64_t* pk = pi - 1;
        while (pj > pl && np_less(vp, v[*pk])) *pj-- = *pk--;
        *pj = vi;
      }
    }
    if (sptr == stack) break;
    pr = *(--sptr);
    pl = *(--sptr);
    cdepth = *(--psdepth);
  }
  return idx;
}

/// numpy's pairwise summation (np.add.reduce over a contiguous axis).
inline double numpy_pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + static_cast<size_t>(j)];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}
inline double numpy_sum(const std::vector<double>& a) {
  return 0.0 + numpy_pairwise_sum(a.data(), a.size());
}
inline double numpy_mean(const std::vector<double>& a) {
  return numpy_sum(a) / static_cast<double>(a.size());
}

/// a * b rounded to double before any later use: keeps the compiler from
/// fusing it with a following addition into an FMA (GCC's default
/// -ffp-contract=fast with -march=native would), which would change last bits
/// relative to numpy.
inline double rounded_product(double a, double b) {
  volatile double p = a * b;
  return p;
}

/// np.linspace(start, stop, num) (endpoint=True), same arithmetic.
inline std::vector<double> linspace(double start, double stop, int num) {
  std::vector<double> y(static_cast<size_t>(std::max(num, 0)));
  const int div = num - 1;
  const double delta = stop - start;
  for (int i = 0; i < num; ++i) {
    double yi = static_cast<double>(i);
    if (div > 0) {
      double step = delta / div;
      if (step == 0) yi = rounded_product(yi / div, delta);
      else yi = rounded_product(yi, step);
    } else {
      yi = rounded_product(yi, delta);
    }
    y[static_cast<size_t>(i)] = yi + start;
  }
  if (num > 1) y.back() = stop;
  return y;
}

/// VOC-2011 all-point interpolated AP (interpolated_prec_rec).
inline double interpolated_prec_rec(const std::vector<double>& prec,
                                    const std::vector<double>& rec) {
  std::vector<double> mprec, mrec;
  mprec.reserve(prec.size() + 2);
  mrec.reserve(rec.size() + 2);
  mprec.push_back(0);
  mrec.push_back(0);
  mprec.insert(mprec.end(), prec.begin(), prec.end());
  mrec.insert(mrec.end(), rec.begin(), rec.end());
  mprec.push_back(0);
  mrec.push_back(1);
  for (size_t i = mprec.size() - 1; i-- > 0;) mprec[i] = std::max(mprec[i], mprec[i + 1]);
  // Python's max(a, b) returns a unless b > a; std::max(a, b) returns a unless
  // a < b: identical for non-NaN values.
  std::vector<double> terms;
  for (size_t i = 1; i < mrec.size(); ++i)
    if (mrec[i] != mrec[i - 1])
      terms.push_back(rounded_product(mrec[i] - mrec[i - 1], mprec[i]));
  return numpy_sum(terms);
}

struct Row {  // one GT or prediction of a class
  int video;  // dense video key
  double start, end, score;
};

/// segment_iou(target, candidate): inter / (len_candidate + len_target - inter).
inline double segment_iou(double ts, double te, double cs, double ce) {
  double tt1 = std::max(ts, cs);  // np.maximum / np.minimum (no NaNs here)
  double tt2 = std::min(te, ce);
  double inter = tt2 - tt1;
  if (inter < 0) inter = 0;  // .clip(0)
  double uni = (ce - cs) + (te - ts) - inter;
  return inter / uni;
}

/// The matching of compute_average_precision_detection for one class:
/// order[i] is the input row of the i-th prediction by decreasing score (ties
/// as numpy), tp[t][i] whether it is a true positive at tious[t] (every other
/// prediction is a false positive there).
struct ClassMatches {
  std::vector<int64_t> order;
  std::vector<std::vector<char>> tp;
};

inline ClassMatches match_detection(const std::vector<Row>& gt, const std::vector<Row>& pred,
                                    const std::vector<double>& tious) {
  const size_t T = tious.size(), P = pred.size();
  ClassMatches m;
  m.tp.assign(T, std::vector<char>(P, 0));
  if (pred.empty()) return m;
  std::vector<std::vector<int64_t>> lock(T, std::vector<int64_t>(gt.size(), -1));
  std::vector<double> scores(P);
  for (size_t i = 0; i < P; ++i) scores[i] = pred[i].score;
  m.order = numpy_argsort(scores);
  std::reverse(m.order.begin(), m.order.end());

  std::unordered_map<int, std::vector<size_t>> gt_by_video;  // rows in GT order
  for (size_t g = 0; g < gt.size(); ++g) gt_by_video[gt[g].video].push_back(g);

  std::vector<double> tiou;
  for (size_t idx = 0; idx < P; ++idx) {
    const Row& p = pred[static_cast<size_t>(m.order[idx])];
    auto it = gt_by_video.find(p.video);
    if (it == gt_by_video.end()) continue;  // no GT of the class in the video: false positive
    const auto& rows = it->second;
    tiou.resize(rows.size());
    for (size_t j = 0; j < rows.size(); ++j)
      tiou[j] = segment_iou(p.start, p.end, gt[rows[j]].start, gt[rows[j]].end);
    auto tsorted = numpy_argsort(tiou);
    std::reverse(tsorted.begin(), tsorted.end());
    for (size_t t = 0; t < T; ++t) {
      for (int64_t jdx : tsorted) {
        double v = tiou[static_cast<size_t>(jdx)];
        if (v < tious[t]) break;  // false positive
        size_t g = rows[static_cast<size_t>(jdx)];
        if (lock[t][g] >= 0) continue;
        m.tp[t][idx] = 1;
        lock[t][g] = static_cast<int64_t>(idx);
        break;
      }
    }
  }
  return m;
}

/// The interpolated AP of a ranked list of true (1) / false (0) positives
/// against npos ground-truth segments. `keep`, when given, drops the entries
/// where it is 0 (DETAD's "remove one error type"); the others keep their flags.
inline double ap_from_flags(const std::vector<char>& tp, double npos, const std::vector<char>* keep = nullptr) {
  std::vector<double> prec, rec;
  prec.reserve(tp.size());
  rec.reserve(tp.size());
  double ctp = 0, cfp = 0;
  for (size_t i = 0; i < tp.size(); ++i) {
    if (keep && !(*keep)[i]) continue;
    ctp += tp[i] ? 1 : 0;
    cfp += tp[i] ? 0 : 1;
    rec.push_back(ctp / npos);
    prec.push_back(ctp / (ctp + cfp));
  }
  return interpolated_prec_rec(prec, rec);
}

/// compute_average_precision_detection for one class.
inline std::vector<double> ap_detection(const std::vector<Row>& gt, const std::vector<Row>& pred,
                                        const std::vector<double>& tious) {
  std::vector<double> ap(tious.size(), 0.0);
  if (pred.empty()) return ap;
  const ClassMatches m = match_detection(gt, pred, tious);
  const double npos = static_cast<double>(gt.size());
  for (size_t t = 0; t < tious.size(); ++t) ap[t] = ap_from_flags(m.tp[t], npos);
  return ap;
}

/// compute_topkx_recall_detection for one class: [tiou][k] recall.
inline std::vector<std::vector<double>> topkx_recall(const std::vector<Row>& gt,
                                                     const std::vector<Row>& pred,
                                                     const std::vector<double>& tious,
                                                     const std::vector<int>& top_k) {
  const size_t T = tious.size(), K = top_k.size();
  std::vector<std::vector<double>> tp(T, std::vector<double>(K, 0.0));
  if (pred.empty()) return tp;
  const int max_k = *std::max_element(top_k.begin(), top_k.end());
  std::map<int, std::vector<size_t>> gt_by_video, pred_by_video;
  for (size_t g = 0; g < gt.size(); ++g) gt_by_video[gt[g].video].push_back(g);
  for (size_t p = 0; p < pred.size(); ++p) pred_by_video[pred[p].video].push_back(p);
  double n_gts = 0;
  for (const auto& [video, grows] : gt_by_video) {
    n_gts += static_cast<double>(grows.size());
    auto pit = pred_by_video.find(video);
    if (pit == pred_by_video.end()) continue;
    const auto& prows = pit->second;
    std::vector<double> scores(prows.size());
    for (size_t i = 0; i < prows.size(); ++i) scores[i] = pred[prows[i]].score;
    auto order = numpy_argsort(scores);
    std::reverse(order.begin(), order.end());
    const size_t G = grows.size();
    const size_t n_top = std::min(order.size(), static_cast<size_t>(max_k) * G);
    // tiou[p][g] for the top predictions
    std::vector<double> tiou(n_top * G);
    for (size_t p = 0; p < n_top; ++p) {
      const Row& pr = pred[prows[static_cast<size_t>(order[p])]];
      for (size_t g = 0; g < G; ++g)
        tiou[p * G + g] = segment_iou(pr.start, pr.end, gt[grows[g]].start, gt[grows[g]].end);
    }
    for (size_t t = 0; t < T; ++t) {
      for (size_t k = 0; k < K; ++k) {
        size_t n_k = std::min(n_top, static_cast<size_t>(top_k[k]) * G);
        double hit = 0;
        for (size_t g = 0; g < G; ++g) {
          for (size_t p = 0; p < n_k; ++p) {
            if (tiou[p * G + g] >= tious[t]) {
              hit += 1;
              break;
            }
          }
        }
        tp[t][k] += hit;
      }
    }
  }
  for (auto& row : tp)
    for (auto& x : row) x /= n_gts;
  return tp;
}

/// GT rows after remove_duplicate_annotations, with their label ids.
inline std::vector<std::pair<Row, int>> dedup_gt(const data::VideoAnnotation& v, int video) {
  const double tol = 1e-3;
  std::vector<std::pair<Row, int>> kept;
  for (const auto& s : v.segments) {
    bool valid = (s.end - s.start) >= tol;
    for (const auto& [p, plabel] : kept) {
      if (std::fabs(s.start - p.start) <= tol && std::fabs(s.end - p.end) <= tol &&
          s.label_id == plabel) {
        valid = false;
        break;
      }
    }
    if (valid) kept.push_back({Row{video, s.start, s.end, 0.0}, s.label_id});
  }
  return kept;
}

inline bool parse_double_token(const std::string& tok, double& out) {
  size_t b = tok.find_first_not_of(" \t");
  size_t e = tok.find_last_not_of(" \t");
  if (b == std::string::npos) return false;
  const char* first = tok.data() + b;
  const char* last = tok.data() + e + 1;
  if (*first == '+') ++first;
  auto r = std::from_chars(first, last, out);
  return r.ec == std::errc() && r.ptr == last;
}

inline std::string pct(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", x * 100.0);
  return buf;
}

}  // namespace detail

/// "0.3:0.7:5" -> np.linspace(0.3, 0.7, 5); "0.5,0.75,0.95" -> list; "0.5" -> {0.5}.
inline std::vector<double> parse_tiou_range(const std::string& spec) {
  std::vector<double> out;
  auto bad = [&](const std::string& why) -> void {
    FLOWLESS_FAIL("tIoU thresholds '", spec, "': ", why,
                  " (expected 'start:stop:count' like 0.3:0.7:5, or a list like 0.5,0.75,0.95)");
  };
  if (spec.find(':') != std::string::npos) {
    std::vector<std::string> parts;
    size_t pos = 0;
    for (;;) {
      size_t c = spec.find(':', pos);
      parts.push_back(spec.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
      if (c == std::string::npos) break;
      pos = c + 1;
    }
    if (parts.size() != 3) bad("a range needs exactly three fields");
    double a = 0, b = 0, n = 0;
    if (!detail::parse_double_token(parts[0], a)) bad("start '" + parts[0] + "' is not a number");
    if (!detail::parse_double_token(parts[1], b)) bad("stop '" + parts[1] + "' is not a number");
    if (!detail::parse_double_token(parts[2], n) || n < 1 || n > 1000 || std::floor(n) != n)
      bad("count '" + parts[2] + "' is not an integer in [1, 1000]");
    out = detail::linspace(a, b, static_cast<int>(n));
  } else {
    size_t pos = 0;
    for (;;) {
      size_t c = spec.find(',', pos);
      std::string tok = spec.substr(pos, c == std::string::npos ? std::string::npos : c - pos);
      double x = 0;
      if (!detail::parse_double_token(tok, x)) bad("'" + tok + "' is not a number");
      out.push_back(x);
      if (c == std::string::npos) break;
      pos = c + 1;
    }
  }
  for (double x : out)
    if (!(x >= 0 && x <= 1)) bad("threshold " + json::Value::repr_number(x) + " is outside [0, 1]");
  return out;
}

/// Predictions from a parsed prediction document (either layout); `path`
/// (usually the file name) starts every error message.
inline std::vector<Prediction> parse_predictions(const json::Value& root, const std::string& path,
                                                 const data::Annotations& ann) {
  using json::Value;
  FLOWLESS_CHECK(root.is_object(), path, ": expected a JSON object at the top level, found ",
                 root.type_name());
  const Value* db = nullptr;
  if (root.contains("results")) db = &root.at("results");
  else if (root.contains("database")) db = &root.at("database");
  FLOWLESS_CHECK(db != nullptr, path,
                 ": expected key 'results' (ActivityNet layout) or 'database' (ActionFormer "
                 "layout) at the top level");
  FLOWLESS_CHECK(db->is_object(), path, ": predictions must be an object (video id -> list), found ",
                 db->type_name());
  std::map<std::string, int> id_of_name;
  for (const auto& [id, name] : ann.label_names) id_of_name.emplace(name, id);

  std::vector<Prediction> out;
  for (const auto& [vid, list] : db->items()) {
    std::string vctx = path + ": video '" + vid + "'";
    FLOWLESS_CHECK(list.is_array(), vctx, ": expected a list of predictions, found ",
                   list.type_name());
    for (size_t k = 0; k < list.size(); ++k) {
      std::string pctx = vctx + ": prediction " + std::to_string(k);
      const Value& e = list[k];
      FLOWLESS_CHECK(e.is_object(), pctx, ": expected an object, found ", e.type_name());
      Prediction p;
      p.video_id = vid;
      FLOWLESS_CHECK(e.contains("segment"), pctx, ": missing key 'segment'");
      const Value& sg = e.at("segment");
      FLOWLESS_CHECK(sg.is_array() && sg.size() == 2 && sg[0].is_number() && sg[1].is_number(),
                     pctx, ": 'segment' must be an array [start, end] of two numbers");
      p.start = sg[0].as_number();
      p.end = sg[1].as_number();
      FLOWLESS_CHECK(std::isfinite(p.start) && std::isfinite(p.end), pctx, ": segment [",
                     Value::repr_number(p.start), ", ", Value::repr_number(p.end),
                     "] is not finite");
      const Value* sc = nullptr;
      if (e.contains("score")) sc = &e.at("score");
      else if (e.contains("scores")) sc = &e.at("scores");
      FLOWLESS_CHECK(sc != nullptr, pctx, ": missing key 'score' (or 'scores')");
      FLOWLESS_CHECK(sc->is_number(), pctx, ": score must be a number, found ", sc->type_name());
      p.score = sc->as_number();
      FLOWLESS_CHECK(std::isfinite(p.score), pctx, ": score ", Value::repr_number(p.score),
                     " is not finite");
      const Value* lab = nullptr;
      if (e.contains("label_id") && !e.at("label_id").is_null()) lab = &e.at("label_id");
      else if (e.contains("label") && !e.at("label").is_null()) lab = &e.at("label");
      FLOWLESS_CHECK(lab != nullptr, pctx, ": needs 'label_id' or 'label'");
      if (lab->is_string()) {
        auto it = id_of_name.find(lab->as_string());
        FLOWLESS_CHECK(it != id_of_name.end(), pctx, ": label '", lab->as_string(),
                       "' is not a class of the annotations");
        p.label_id = it->second;
      } else {
        FLOWLESS_CHECK(lab->is_number(), pctx, ": label must be an integer id or a name, found ",
                       lab->type_name());
        double d = lab->as_number();
        FLOWLESS_CHECK(std::isfinite(d) && std::floor(d) == d && d >= -2147483648.0 &&
                           d <= 2147483647.0,
                       pctx, ": label id ", Value::repr_number(d), " is not an integer");
        p.label_id = static_cast<int>(d);
      }
      out.push_back(std::move(p));
    }
  }
  return out;
}

/// Reads predictions in the ActivityNet ("results") or reference ("database") layout.
inline std::vector<Prediction> load_predictions(const std::string& path,
                                                const data::Annotations& ann) {
  return parse_predictions(json::parse_file(path), path, ann);
}

namespace detail {

/// The evaluator's view of the data: deduplicated GT per class (file order)
/// and per video (with labels), the predictions of GT classes per class (input
/// order; other labels are ignored). Checks the thresholds and predictions.
struct GroupedDetections {
  std::map<int, std::vector<Row>> gt_by_class, pred_by_class;
  std::unordered_map<int, std::vector<std::pair<Row, int>>> gt_by_video;
};

inline GroupedDetections group_detections(const data::Annotations& ann, const std::string& split,
                                          const std::vector<Prediction>& preds, const std::vector<double>& tious,
                                          const char* who) {
  FLOWLESS_CHECK(!tious.empty(), who, ": no tIoU thresholds");
  for (double t : tious)
    FLOWLESS_CHECK(std::isfinite(t), who, ": tIoU threshold ", json::Value::repr_number(t), " is not finite");
  std::string want = data::annotations_detail::lower(split);

  GroupedDetections g;
  std::unordered_map<std::string, int> video_key;
  size_t n_videos = 0;
  std::set<std::string> subsets;
  for (const auto& v : ann.videos) {
    subsets.insert(v.subset);
    if (!want.empty() && data::annotations_detail::lower(v.subset) != want) continue;
    ++n_videos;
    int key = static_cast<int>(video_key.size());
    video_key.emplace(v.id, key);
    key = video_key.at(v.id);
    for (const auto& [row, label] : dedup_gt(v, key)) {
      g.gt_by_class[label].push_back(row);
      g.gt_by_video[key].push_back({row, label});
    }
  }
  if (g.gt_by_class.empty()) {
    std::string list;
    for (const auto& s : subsets) list += (list.empty() ? "'" : ", '") + s + "'";
    FLOWLESS_FAIL(who, ": split '", split, "' has no ground-truth segment (", n_videos,
                  " videos matched; subsets in the annotations: ", list.empty() ? "none" : list, ")");
  }
  for (const auto& [label, rows] : g.gt_by_class) g.pred_by_class[label];
  for (size_t i = 0; i < preds.size(); ++i) {
    const auto& p = preds[i];
    FLOWLESS_CHECK(std::isfinite(p.start) && std::isfinite(p.end) && std::isfinite(p.score), who, ": prediction ", i,
                   " (video '", p.video_id, "') has a non-finite segment or score");
    auto it = g.pred_by_class.find(p.label_id);
    if (it == g.pred_by_class.end()) continue;
    auto [vk, fresh] = video_key.emplace(p.video_id, static_cast<int>(video_key.size()));
    (void)fresh;
    it->second.push_back(Row{vk->second, p.start, p.end, p.score});
  }
  return g;
}

}  // namespace detail

inline DetectionResult evaluate_detection(const data::Annotations& ann, const std::string& split,
                                          const std::vector<Prediction>& preds,
                                          const std::vector<double>& tious) {
  const detail::GroupedDetections grouped = detail::group_detections(ann, split, preds, tious, "evaluate_detection");
  const auto& gt_by_class = grouped.gt_by_class;
  const auto& pred_by_class = grouped.pred_by_class;

  const size_t T = tious.size(), C = gt_by_class.size();
  const std::vector<int> top_k = {1, 5};
  std::vector<std::vector<double>> ap(T, std::vector<double>(C));
  std::vector<std::vector<double>> r1(T, std::vector<double>(C)), r5 = r1;
  DetectionResult res;
  res.tiou_thresholds = tious;
  size_t c = 0;
  for (const auto& [label, gt] : gt_by_class) {
    const auto& pr = pred_by_class.at(label);
    auto a = detail::ap_detection(gt, pr, tious);
    auto r = detail::topkx_recall(gt, pr, tious, top_k);
    for (size_t t = 0; t < T; ++t) {
      ap[t][c] = a[t];
      r1[t][c] = r[t][0];
      r5[t][c] = r[t][1];
    }
    auto nit = ann.label_names.find(label);
    std::string name = nit != ann.label_names.end() && !nit->second.empty()
                           ? nit->second
                           : std::to_string(label);
    if (res.per_class_ap.count(name)) name += " (" + std::to_string(label) + ")";  // same name twice
    res.per_class_ap[name] = a;
    ++c;
  }
  for (size_t t = 0; t < T; ++t) {
    res.map.push_back(detail::numpy_mean(ap[t]));
    res.recall_at_1x.push_back(detail::numpy_mean(r1[t]));
    res.recall_at_5x.push_back(detail::numpy_mean(r5[t]));
  }
  res.average_map = detail::numpy_mean(res.map);
  return res;
}

inline json::Value to_json(const DetectionResult& r) {
  auto arr = [](const std::vector<double>& xs) {
    json::Value a = json::Value::array();
    for (double x : xs) a.push_back(x);
    return a;
  };
  json::Value o = json::Value::object();
  o["tiou_thresholds"] = arr(r.tiou_thresholds);
  o["mAP"] = arr(r.map);
  o["average_mAP"] = r.average_map;
  o["recall_at_1x"] = arr(r.recall_at_1x);
  o["recall_at_5x"] = arr(r.recall_at_5x);
  json::Value pc = json::Value::object();
  for (const auto& [name, ap] : r.per_class_ap) pc[name] = arr(ap);
  o["per_class_ap"] = std::move(pc);
  return o;
}

/// Human-readable summary: one row per tIoU (mAP, Recall@1x, Recall@5x in %),
/// the average mAP, then per-class AP (%) with one column per tIoU.
inline std::string format_table(const DetectionResult& r) {
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-8s %8s %10s %10s\n", "tIoU", "mAP(%)", "R@1x(%)", "R@5x(%)");
  out += buf;
  for (size_t t = 0; t < r.tiou_thresholds.size(); ++t) {
    std::snprintf(buf, sizeof buf, "%-8.2f %8s %10s %10s\n", r.tiou_thresholds[t],
                  detail::pct(r.map[t]).c_str(),
                  t < r.recall_at_1x.size() ? detail::pct(r.recall_at_1x[t]).c_str() : "-",
                  t < r.recall_at_5x.size() ? detail::pct(r.recall_at_5x[t]).c_str() : "-");
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "%-8s %8s\n", "average", detail::pct(r.average_map).c_str());
  out += buf;
  if (!r.per_class_ap.empty()) {
    size_t w = 5;
    for (const auto& kv : r.per_class_ap) w = std::max(w, kv.first.size());
    out += "\nper-class AP(%)\n";
    out += std::string("class") + std::string(w - 5, ' ');
    for (double t : r.tiou_thresholds) {
      std::snprintf(buf, sizeof buf, " %7.2f", t);
      out += buf;
    }
    out += '\n';
    for (const auto& [name, ap] : r.per_class_ap) {
      out += name + std::string(w - name.size(), ' ');
      for (double a : ap) {
        std::snprintf(buf, sizeof buf, " %7s", detail::pct(a).c_str());
        out += buf;
      }
      out += '\n';
    }
  }
  return out;
}

}  // namespace flowless::eval
