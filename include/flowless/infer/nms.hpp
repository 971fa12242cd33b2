// flowless/infer/nms.hpp - 1-D non-maximum suppression, a port of the
// reference's C++ extension (ActionFormer libs/utils/csrc/nms_cpu.cpp, adapted
// from mmcv) and of its Python driver (libs/utils/nms.py).
//
// All arithmetic is float32, in the reference's order:
//   area = (x2 - x1) + 1e-6f, inter = max(0, min(x2) - max(x1)),
//   iou = inter / (area_i + area_j - inter).
//
// nms_1d: indices sorted by descending score (ties ordered exactly as
//   torch.sort(descending=True) on CPU, which is std::sort with a
//   "NaN first, then greater" comparator); greedily, every later still-selected
//   segment with iou >= iou_threshold is dropped. Returns the kept original
//   indices in that score order. No score filtering here (NMSop does it).
//
// soft_nms_1d (softnms): works on copies. For i = 0, 1, ...: the first
//   position holding the maximum score among i..N-1 is swapped into i and
//   selected; every later position's score is multiplied by
//     method 0 (hard):     0        if iou >= iou_threshold, else 1
//     method 1 (linear):   1 - iou  if iou >= iou_threshold, else 1
//     method 2 (gaussian): exp(-iou^2 / sigma)   (not 2 sigma^2; threshold unused)
//   and a position whose new score is < min_score is overwritten by the last
//   active one, N shrinks, and the position is examined again (so removal
//   reorders the remaining candidates, which decides ties). Returns the
//   original indices of the N survivors in selection order, with their
//   boundaries and rescored scores.
//
// batched_nms (nms.py batched_nms), cfg.method:
//   "soft": Soft-NMS with method 2 (Gaussian, cfg.sigma) - the reference
//           always passes 2 here; "hard": drop scores <= min_score (when
//           min_score > 0), then nms_1d with cfg.iou_threshold;
//   "none": the input is returned unchanged (the reference skips
//           batched_nms when test_nms_method is 'none').
//   multiclass: per class in ascending label order, NMS then keep the first
//     max_seg_num; concatenate (classes run as parallel tasks, concatenated
//     in label order: the same result for any thread count). Class-agnostic: one NMS over everything, keep
//     the first max_seg_num, then, if voting_thresh > 0, segment voting: each
//     kept segment becomes the average of ALL input segments weighted by
//     [iou >= voting_thresh] * score * iou (input scores, normalised per kept
//     segment; without the * iou when voting_iou_weight is false, as OpenTAD);
//     scores are not changed. Voting is never applied in multiclass
//     mode. Finally everything is sorted by score (torch.sort order) and the
//     first max_seg_num are returned.
// Errors: mismatched array lengths, non-finite inputs, max_seg_num < 1, an
// unknown method, a soft-NMS method other than 0, 1, 2, sigma <= 0.
#pragma once

#include <algorithm>
#include <limits>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/core/thread_pool.hpp"

namespace flowless::infer {

struct Segments {
  std::vector<float> start, end, score;  // float32 like the reference
  std::vector<int> label;
  size_t size() const { return score.size(); }
};

struct SoftNmsResult {
  std::vector<int> index;  // original indices, selection order
  std::vector<float> start, end, score;
};

struct NmsConfig {
  std::string method = "soft";  // "soft" | "hard" | "none"
  float iou_threshold = 0.1f, min_score = 0.001f, sigma = 0.5f, voting_thresh = 0.75f;
  int max_seg_num = 200;
  bool multiclass = true;
  // Segment voting's weights [iou >= t] * score * iou (the current original
  // code) or, false, [iou >= t] * score (OpenTAD, ActionFormer's first release).
  bool voting_iou_weight = true;
};

namespace nms_detail {

/// Permutation sorting scores descending exactly as torch.sort(descending=True)
/// does on CPU (std::sort on (key, index) pairs; NaN first).
inline std::vector<int> sort_desc(const float* scores, int n) {
  std::vector<std::pair<float, int64_t>> kv(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) kv[static_cast<size_t>(i)] = {scores[i], i};
  std::sort(kv.begin(), kv.end(), [](const std::pair<float, int64_t>& a,
                                     const std::pair<float, int64_t>& b) {
    return (std::isnan(a.first) && !std::isnan(b.first)) || (a.first > b.first);
  });
  std::vector<int> out(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<int>(kv[static_cast<size_t>(i)].second);
  return out;
}

inline float area(float x1, float x2) { return (x2 - x1) + 1e-6f; }

inline void check_finite(const float* x, int n, const char* what) {
  for (int i = 0; i < n; ++i)
    FLOWLESS_CHECK(std::isfinite(x[i]), "nms: ", what, "[", i, "] = ", x[i], " is not finite");
}

}  // namespace nms_detail

/// Hard 1-D NMS (nms_cpu.cpp nms): kept original indices, descending score.
inline std::vector<int> nms_1d(const float* x1, const float* x2, const float* scores, int n,
                               float iou_threshold) {
  FLOWLESS_CHECK(n >= 0, "nms_1d: negative count ", n);
  std::vector<int> kept;
  if (n == 0) return kept;
  std::vector<int> order = nms_detail::sort_desc(scores, n);
  std::vector<float> areas(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) areas[static_cast<size_t>(i)] = nms_detail::area(x1[i], x2[i]);
  std::vector<char> select(static_cast<size_t>(n), 1);
  for (int _i = 0; _i < n; ++_i) {
    if (!select[static_cast<size_t>(_i)]) continue;
    const int i = order[static_cast<size_t>(_i)];
    const float ix1 = x1[i], ix2 = x2[i], iarea = areas[static_cast<size_t>(i)];
    for (int _j = _i + 1; _j < n; ++_j) {
      if (!select[static_cast<size_t>(_j)]) continue;
      const int j = order[static_cast<size_t>(_j)];
      const float xx1 = std::max(ix1, x1[j]);
      const float xx2 = std::min(ix2, x2[j]);
      const float inter = std::max(0.f, xx2 - xx1);
      const float ovr = inter / (iarea + areas[static_cast<size_t>(j)] - inter);
      if (ovr >= iou_threshold) select[static_cast<size_t>(_j)] = 0;
    }
  }
  for (int _i = 0; _i < n; ++_i)
    if (select[static_cast<size_t>(_i)]) kept.push_back(order[static_cast<size_t>(_i)]);
  return kept;
}

/// Soft-NMS (nms_cpu.cpp softnms); method 0 hard, 1 linear, 2 gaussian.
/// max_keep: stop after that many selections. Each selection depends only on
/// the ones before it, so the result is exactly the first max_keep entries of
/// the full run; callers that keep only the first max_seg_num (run_op) skip
/// the O(N) rescoring passes of every later selection.
inline SoftNmsResult soft_nms_1d(const float* x1_in, const float* x2_in, const float* scores_in,
                                 int n, float iou_threshold, float sigma, float min_score,
                                 int method, int max_keep = std::numeric_limits<int>::max()) {
  FLOWLESS_CHECK(n >= 0, "soft_nms_1d: negative count ", n);
  FLOWLESS_CHECK(method >= 0 && method <= 2, "soft_nms_1d: method must be 0 (hard), 1 (linear) "
                 "or 2 (gaussian), got ", method);
  FLOWLESS_CHECK(method != 2 || sigma > 0, "soft_nms_1d: sigma must be > 0, got ", sigma);
  FLOWLESS_CHECK(max_keep >= 0, "soft_nms_1d: negative max_keep ", max_keep);
  const size_t N0 = static_cast<size_t>(n);
  std::vector<float> x1(x1_in, x1_in + N0), x2(x2_in, x2_in + N0), sc(scores_in, scores_in + N0);
  std::vector<float> areas(N0);
  std::vector<int> inds(N0);
  for (size_t i = 0; i < N0; ++i) {
    areas[i] = nms_detail::area(x1[i], x2[i]);
    inds[i] = static_cast<int>(i);
  }
  std::vector<float> d1(N0), d2(N0), ds(N0);  // dets
  int64_t nboxes = n;
  for (int64_t i = 0; i < nboxes && i < max_keep; ++i) {
    const size_t ui = static_cast<size_t>(i);
    float max_score = sc[ui];
    int64_t max_pos = i;
    for (int64_t pos = i + 1; pos < nboxes; ++pos) {
      if (max_score < sc[static_cast<size_t>(pos)]) {
        max_score = sc[static_cast<size_t>(pos)];
        max_pos = pos;
      }
    }
    const size_t um = static_cast<size_t>(max_pos);
    const float ix1 = d1[ui] = x1[um];
    const float ix2 = d2[ui] = x2[um];
    const float iscore = ds[ui] = sc[um];
    const float iarea = areas[um];
    const int iind = inds[um];
    x1[um] = x1[ui];
    x2[um] = x2[ui];
    sc[um] = sc[ui];
    areas[um] = areas[ui];
    inds[um] = inds[ui];
    x1[ui] = ix1;
    x2[ui] = ix2;
    sc[ui] = iscore;
    areas[ui] = iarea;
    inds[ui] = iind;

    for (int64_t pos = i + 1; pos < nboxes; ++pos) {
      const size_t up = static_cast<size_t>(pos);
      const float xx1 = std::max(ix1, x1[up]);
      const float xx2 = std::min(ix2, x2[up]);
      const float inter = std::max(0.f, xx2 - xx1);
      const float ovr = inter / (iarea + areas[up] - inter);
      float weight = 1.f;
      if (method == 0) {
        if (ovr >= iou_threshold) weight = 0.f;
      } else if (method == 1) {
        if (ovr >= iou_threshold) weight = 1.f - ovr;
      } else if (ovr != 0.f) {  // disjoint segments: exp(-0) = 1 exactly, no call needed
        weight = std::exp(-(ovr * ovr) / sigma);
      }
      sc[up] *= weight;
      if (sc[up] < min_score) {
        const size_t last = static_cast<size_t>(nboxes - 1);
        x1[up] = x1[last];
        x2[up] = x2[last];
        sc[up] = sc[last];
        areas[up] = areas[last];
        inds[up] = inds[last];
        nboxes -= 1;
        pos -= 1;  // examine the moved-in box next
      }
    }
  }
  const size_t m = static_cast<size_t>(std::min<int64_t>(nboxes, max_keep));
  SoftNmsResult r;
  r.index.assign(inds.begin(), inds.begin() + static_cast<std::ptrdiff_t>(m));
  r.start.assign(d1.begin(), d1.begin() + static_cast<std::ptrdiff_t>(m));
  r.end.assign(d2.begin(), d2.begin() + static_cast<std::ptrdiff_t>(m));
  r.score.assign(ds.begin(), ds.begin() + static_cast<std::ptrdiff_t>(m));
  return r;
}

namespace nms_detail {

/// NMSop / SoftNMSop on the subset `idx` of `in`, capped at max_num.
inline Segments run_op(const Segments& in, const std::vector<int>& idx, const NmsConfig& cfg) {
  Segments out;
  if (cfg.method == "soft") {
    std::vector<float> x1, x2, sc;
    for (int i : idx) {
      x1.push_back(in.start[static_cast<size_t>(i)]);
      x2.push_back(in.end[static_cast<size_t>(i)]);
      sc.push_back(in.score[static_cast<size_t>(i)]);
    }
    auto r = soft_nms_1d(x1.data(), x2.data(), sc.data(), static_cast<int>(idx.size()),
                         cfg.iou_threshold, cfg.sigma, cfg.min_score, 2, cfg.max_seg_num);
    size_t n = std::min(r.index.size(), static_cast<size_t>(cfg.max_seg_num));
    for (size_t k = 0; k < n; ++k) {
      out.start.push_back(r.start[k]);
      out.end.push_back(r.end[k]);
      out.score.push_back(r.score[k]);
      out.label.push_back(in.label[static_cast<size_t>(idx[static_cast<size_t>(r.index[k])])]);
    }
  } else {  // hard
    std::vector<int> valid;
    for (int i : idx)
      if (!(cfg.min_score > 0) || in.score[static_cast<size_t>(i)] > cfg.min_score)
        valid.push_back(i);
    std::vector<float> x1, x2, sc;
    for (int i : valid) {
      x1.push_back(in.start[static_cast<size_t>(i)]);
      x2.push_back(in.end[static_cast<size_t>(i)]);
      sc.push_back(in.score[static_cast<size_t>(i)]);
    }
    auto keep = nms_1d(x1.data(), x2.data(), sc.data(), static_cast<int>(valid.size()),
                       cfg.iou_threshold);
    size_t n = std::min(keep.size(), static_cast<size_t>(cfg.max_seg_num));
    for (size_t k = 0; k < n; ++k) {
      size_t src = static_cast<size_t>(valid[static_cast<size_t>(keep[k])]);
      out.start.push_back(in.start[src]);
      out.end.push_back(in.end[src]);
      out.score.push_back(in.score[src]);
      out.label.push_back(in.label[src]);
    }
  }
  return out;
}

/// seg_voting: float32 IoUs and weights; sums accumulated in double.
inline void seg_voting(Segments& kept, const Segments& all, float iou_threshold, bool iou_weight = true) {
  const size_t na = all.size();
  std::vector<float> w(na);
  for (size_t i = 0; i < kept.size(); ++i) {
    const float s0 = kept.start[i], e0 = kept.end[i];
    const float len0 = e0 - s0;
    double total = 0;
    for (size_t j = 0; j < na; ++j) {
      const float left = std::max(s0, all.start[j]);
      const float right = std::min(e0, all.end[j]);
      const float inter = std::max(right - left, 0.f);
      const float iou = inter / (len0 + (all.end[j] - all.start[j]) - inter);
      const float mask = iou >= iou_threshold ? 1.f : 0.f;
      w[j] = iou_weight ? mask * all.score[j] * iou : mask * all.score[j];
      total += static_cast<double>(w[j]);
    }
    const float ftotal = static_cast<float>(total);
    double ns = 0, ne = 0;
    for (size_t j = 0; j < na; ++j) {
      const float wj = w[j] / ftotal;
      ns += static_cast<double>(wj) * static_cast<double>(all.start[j]);
      ne += static_cast<double>(wj) * static_cast<double>(all.end[j]);
    }
    kept.start[i] = static_cast<float>(ns);
    kept.end[i] = static_cast<float>(ne);
  }
}

}  // namespace nms_detail

/// nms.py batched_nms: per-class (multiclass) or class-agnostic NMS + voting,
/// then a global sort by score and the max_seg_num cap.
inline Segments batched_nms(const Segments& in, const NmsConfig& cfg) {
  const size_t n = in.score.size();
  FLOWLESS_CHECK(in.start.size() == n && in.end.size() == n && in.label.size() == n,
                 "batched_nms: start/end/score/label lengths differ (", in.start.size(), ", ",
                 in.end.size(), ", ", n, ", ", in.label.size(), ")");
  FLOWLESS_CHECK(cfg.method == "soft" || cfg.method == "hard" || cfg.method == "none",
                 "batched_nms: unknown NMS method '", cfg.method, "' (soft, hard or none)");
  FLOWLESS_CHECK(cfg.max_seg_num >= 1, "batched_nms: max_seg_num must be >= 1, got ",
                 cfg.max_seg_num);
  FLOWLESS_CHECK(cfg.method != "soft" || cfg.sigma > 0, "batched_nms: sigma must be > 0, got ",
                 cfg.sigma);
  FLOWLESS_CHECK(n <= static_cast<size_t>(INT32_MAX), "batched_nms: too many segments");
  const int ni = static_cast<int>(n);
  nms_detail::check_finite(in.start.data(), ni, "start");
  nms_detail::check_finite(in.end.data(), ni, "end");
  nms_detail::check_finite(in.score.data(), ni, "score");
  if (cfg.method == "none" || n == 0) return in;

  Segments merged;
  if (cfg.multiclass) {
    std::vector<int> classes(in.label.begin(), in.label.end());
    std::sort(classes.begin(), classes.end());
    classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
    // Classes are independent: one task each, merged in class order (the same
    // result for any thread count).
    std::vector<std::vector<int>> idx(classes.size());
    for (int i = 0; i < ni; ++i) {
      const auto c = std::lower_bound(classes.begin(), classes.end(), in.label[static_cast<size_t>(i)]);
      idx[static_cast<size_t>(c - classes.begin())].push_back(i);
    }
    std::vector<Segments> parts(classes.size());
    parallel_for(static_cast<int64_t>(classes.size()), 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) parts[static_cast<size_t>(c)] = nms_detail::run_op(in, idx[static_cast<size_t>(c)], cfg);
    });
    for (const Segments& part : parts) {
      merged.start.insert(merged.start.end(), part.start.begin(), part.start.end());
      merged.end.insert(merged.end.end(), part.end.begin(), part.end.end());
      merged.score.insert(merged.score.end(), part.score.begin(), part.score.end());
      merged.label.insert(merged.label.end(), part.label.begin(), part.label.end());
    }
  } else {
    std::vector<int> idx(n);
    for (int i = 0; i < ni; ++i) idx[static_cast<size_t>(i)] = i;
    merged = nms_detail::run_op(in, idx, cfg);
    if (cfg.voting_thresh > 0) nms_detail::seg_voting(merged, in, cfg.voting_thresh, cfg.voting_iou_weight);
  }

  std::vector<int> order =
      nms_detail::sort_desc(merged.score.data(), static_cast<int>(merged.size()));
  const size_t m = std::min(static_cast<size_t>(cfg.max_seg_num), order.size());
  Segments out;
  for (size_t k = 0; k < m; ++k) {
    size_t s = static_cast<size_t>(order[k]);
    out.start.push_back(merged.start[s]);
    out.end.push_back(merged.end[s]);
    out.score.push_back(merged.score[s]);
    out.label.push_back(merged.label[s]);
  }
  return out;
}

}  // namespace flowless::infer
