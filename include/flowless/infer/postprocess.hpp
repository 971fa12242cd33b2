// flowless/infer/postprocess.hpp - ActionFormer's inference decoding and
// post-processing (PtTransformer.inference_single_video + postprocessing,
// libs/utils/postprocessing.py postprocess_results), float32 op by op.
//
// Inputs of one video, per pyramid level l (level 0 first), on the VALID
// positions only (the reference multiplies the probabilities of padded
// positions by a zero mask, so they never pass the threshold):
//   cls_logits[l]: (T_l, C) raw logits, row-major host floats
//   offsets[l]:    (T_l, 2) regression outputs (after Scale and ReLU, in units
//                  of the level stride), or (T_l, C, 2) class-specific ones
//                  (TriDet's Trident head, infer/trident.hpp: the candidate's
//                  class picks its pair, decoded_offsets[cls_idxs, pt_idxs]);
//                  or, with a ClassOffsets callback, computed on demand for
//                  the candidates only (offsets[l] then unused, may be empty)
// and the PointSet of the padded input (T_l <= its level length).
//
// decode_candidates (inference_single_video), per level:
//   p = 1 / (1 + exp(-x)) in float32, flattened over (T_l * C), row-major;
//   keep p > pre_nms_thresh (float32 comparison), in index order;
//   sort the kept probabilities descending exactly as torch.sort(descending=
//   True) on CPU (std::sort on (value, index) pairs - the reference sorts, it
//   does not call topk; ties therefore come out in libstdc++ introsort order
//   of the kept array) and keep the first min(pre_nms_topk, #kept);
//   point = idx / C, class = idx % C (idx into the flattened level);
//   start = t - (left * s), end = t + (right * s)   (each product rounded to
//   float32 first, as torch's separate kernels);
//   keep end - start > duration_thresh (float32 comparison).
//   Levels are concatenated in order (grid units, float32).
//   With cfg.pre_nms_scope "video" (OpenTAD): the levels' valid positions are
//   concatenated first and the threshold / sort / top-k run once over all of
//   them (flat index = global point * C + class); no duration filter; with
//   one class every position is kept, in order, unthresholded.
// postprocess_video_grid: decode_candidates, then infer::batched_nms with
//   cfg.nms (its method "none" returns the candidates unchanged, as the
//   reference skipping NMS); grid units.
// to_seconds (postprocessing step 3): float32
//   seg = ((seg * f32(feat_stride)) + f32(0.5 * num_frames)) / f32(fps)
//   then seg <= 0 -> seg * 0 (so -0.0 for negatives), seg >= f32(duration) ->
//   f32(duration). Scores stay the float32 NMS scores. Detection holds these
//   float32 values widened to double.
// postprocess_video = postprocess_video_grid + to_seconds.
//
// fuse_scores (postprocess_results with an external video-level classifier,
//   A.9 item 4): the detections sorted by numpy argsort(score)[::-1] (reversed
//   introsort order for ties), first num_pred kept; the top `topk` classes of
//   class_scores by argsort(class_scores)[::-1]; output, class by class, every
//   kept detection with label = that class and score = sqrt(cls * score)
//   (float64).
//
// Errors: mismatched level counts or array sizes, more valid positions than
// the PointSet's level, num_classes < 1, pre_nms_topk < 0, fps <= 0.
#pragma once

#include <algorithm>
#include <cmath>
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/eval/detection_map.hpp"
#include "flowless/infer/nms.hpp"
#include "flowless/models/points.hpp"

namespace flowless {

/// Class-specific distances decoded on demand: at(level, point, class) ->
/// {left, right} in stride units (TriDet: trident_decode_at).
using ClassOffsets = std::function<std::array<float, 2>(size_t, int64_t, int)>;

struct PostprocessConfig {
  float pre_nms_thresh = 0.001f;
  int pre_nms_topk = 2000;
  float duration_thresh = 0.05f;
  // "level": threshold, top-k and the duration filter per pyramid level (the
  // original code). "video": OpenTAD's SingleStageDetector.post_processing -
  // threshold and top-k once over every level's candidates together, no
  // duration filter, and with one class every valid position kept unfiltered.
  std::string pre_nms_scope = "level";
  infer::NmsConfig nms;
};

struct VideoMeta {
  std::string id;
  double fps = 0, duration = 0, feat_stride = 0, num_frames = 0;
};

struct Detection {
  double start = 0, end = 0;  // seconds
  int label = 0;
  double score = 0;
};

namespace postprocess_detail {
inline float sigmoid_f32(float x) {
  const float e = std::exp(-x);
  const float d = heads_detail::no_contract(1.0f + e);
  return 1.0f / d;
}
}  // namespace postprocess_detail

/// Candidate segments before NMS (grid units): inference_single_video.
inline infer::Segments decode_candidates(const std::vector<std::vector<float>>& cls_logits,
                                         const std::vector<std::vector<float>>& offsets, int num_classes,
                                         const PointSet& pts, const PostprocessConfig& cfg,
                                         const ClassOffsets& class_offsets = {}) {
  FLOWLESS_CHECK(num_classes >= 1, "decode_candidates: num_classes must be >= 1, got ", num_classes);
  FLOWLESS_CHECK(cfg.pre_nms_topk >= 0, "decode_candidates: pre_nms_topk must be >= 0, got ", cfg.pre_nms_topk);
  FLOWLESS_CHECK(cls_logits.size() == offsets.size(), "decode_candidates: ", cls_logits.size(),
                 " levels of logits but ", offsets.size(), " of offsets");
  FLOWLESS_CHECK(static_cast<int>(cls_logits.size()) == pts.num_levels(), "decode_candidates: ",
                 cls_logits.size(), " levels of outputs but ", pts.num_levels(), " point levels");
  const int64_t C = num_classes;
  // Per level: its number of valid positions and whether its offsets are class-specific.
  std::vector<int64_t> lengths(cls_logits.size());
  std::vector<char> per_class(cls_logits.size());
  for (size_t l = 0; l < cls_logits.size(); ++l) {
    const auto& logits = cls_logits[l];
    FLOWLESS_CHECK(logits.size() % static_cast<size_t>(C) == 0, "decode_candidates: level ", l, " has ",
                   logits.size(), " logits, not a multiple of ", C, " classes");
    const int64_t T = static_cast<int64_t>(logits.size()) / C;
    per_class[l] = C > 1 && static_cast<int64_t>(offsets[l].size()) == 2 * T * C;
    FLOWLESS_CHECK(class_offsets || per_class[l] || static_cast<int64_t>(offsets[l].size()) == 2 * T,
                   "decode_candidates: level ", l, " has ", T, " positions of logits but ", offsets[l].size(),
                   " offset values (expected ", 2 * T, ", or ", 2 * T * C, " class-specific)");
    FLOWLESS_CHECK(T <= pts.levels[l].length, "decode_candidates: level ", l, " has ", T, " positions but only ",
                   pts.levels[l].length, " points");
    lengths[l] = T;
  }
  // start = t - left * s, end = t + right * s of (level, point, class), grid units.
  auto segment = [&](size_t l, int64_t pt, int cls) {
    const PointLevel& lv = pts.levels[l];
    const float s = static_cast<float>(lv.stride);
    const float t = static_cast<float>(pt * lv.stride);
    float ol, orr;
    if (class_offsets) {
      const std::array<float, 2> d = class_offsets(l, pt, cls);
      ol = d[0];
      orr = d[1];
    } else {
      const size_t o2 = static_cast<size_t>(2 * (per_class[l] ? pt * C + cls : pt));
      ol = offsets[l][o2];
      orr = offsets[l][o2 + 1];
    }
    const float dl = heads_detail::no_contract(ol * s);
    const float dr = heads_detail::no_contract(orr * s);
    return std::array<float, 2>{t - dl, t + dr};
  };
  infer::Segments out;
  auto emit = [&](const std::array<float, 2>& seg, float p, int cls) {
    out.start.push_back(seg[0]);
    out.end.push_back(seg[1]);
    out.score.push_back(p);
    out.label.push_back(cls);
  };
  std::vector<float> kept_p;
  std::vector<int64_t> kept_idx;
  if (cfg.pre_nms_scope == "video") {
    // OpenTAD: every level's valid positions concatenated (level-major), one
    // threshold / sort / top-k over the flattened (point, class) scores.
    std::vector<size_t> level_of;    // global point -> level
    std::vector<int64_t> first_pt;   // first global point of each level
    int64_t total = 0;
    for (size_t l = 0; l < lengths.size(); ++l) {
      first_pt.push_back(total);
      total += lengths[l];
    }
    auto locate = [&](int64_t gpt) {
      size_t l = static_cast<size_t>(std::upper_bound(first_pt.begin(), first_pt.end(), gpt) - first_pt.begin()) - 1;
      return std::pair<size_t, int64_t>{l, gpt - first_pt[l]};
    };
    if (C == 1) {  // one class: no threshold, no top-k, every position in order
      for (size_t l = 0; l < lengths.size(); ++l)
        for (int64_t t = 0; t < lengths[l]; ++t)
          emit(segment(l, t, 0), postprocess_detail::sigmoid_f32(cls_logits[l][static_cast<size_t>(t)]), 0);
      return out;
    }
    for (size_t l = 0; l < lengths.size(); ++l)
      for (int64_t i = 0; i < lengths[l] * C; ++i) {
        const float p = postprocess_detail::sigmoid_f32(cls_logits[l][static_cast<size_t>(i)]);
        if (p > cfg.pre_nms_thresh) {
          kept_p.push_back(p);
          kept_idx.push_back(first_pt[l] * C + i);
        }
      }
    FLOWLESS_CHECK(kept_p.size() <= static_cast<size_t>(INT32_MAX), "decode_candidates: too many candidates");
    const std::vector<int> order = infer::nms_detail::sort_desc(kept_p.data(), static_cast<int>(kept_p.size()));
    const size_t k = std::min(order.size(), static_cast<size_t>(cfg.pre_nms_topk));
    for (size_t r = 0; r < k; ++r) {
      const size_t o = static_cast<size_t>(order[r]);
      const auto [l, pt] = locate(kept_idx[o] / C);
      const int cls = static_cast<int>(kept_idx[o] % C);
      emit(segment(l, pt, cls), kept_p[o], cls);
    }
    return out;
  }
  for (size_t l = 0; l < cls_logits.size(); ++l) {
    const auto& logits = cls_logits[l];
    const int64_t T = lengths[l];
    // 1. threshold, in flat index order
    kept_p.clear();
    kept_idx.clear();
    for (int64_t i = 0; i < T * C; ++i) {
      const float p = postprocess_detail::sigmoid_f32(logits[static_cast<size_t>(i)]);
      if (p > cfg.pre_nms_thresh) {
        kept_p.push_back(p);
        kept_idx.push_back(i);
      }
    }
    // 2. torch.sort(descending=True) of the kept probabilities, first top-k
    FLOWLESS_CHECK(kept_p.size() <= static_cast<size_t>(INT32_MAX), "decode_candidates: too many candidates");
    const std::vector<int> order = infer::nms_detail::sort_desc(kept_p.data(), static_cast<int>(kept_p.size()));
    const size_t k = std::min(order.size(), static_cast<size_t>(cfg.pre_nms_topk));
    for (size_t r = 0; r < k; ++r) {
      const size_t o = static_cast<size_t>(order[r]);
      const int64_t idx = kept_idx[o];
      const int cls = static_cast<int>(idx % C);
      const std::array<float, 2> seg = segment(l, idx / C, cls);
      if (!(seg[1] - seg[0] > cfg.duration_thresh)) continue;
      emit(seg, kept_p[o], cls);
    }
  }
  return out;
}

/// Candidates after batched NMS, grid units, in the NMS output order.
inline infer::Segments postprocess_video_grid(const std::vector<std::vector<float>>& cls_logits,
                                              const std::vector<std::vector<float>>& offsets, int num_classes,
                                              const PointSet& pts, const PostprocessConfig& cfg,
                                              const ClassOffsets& class_offsets = {}) {
  infer::Segments cand = decode_candidates(cls_logits, offsets, num_classes, pts, cfg, class_offsets);
  return infer::batched_nms(cand, cfg.nms);
}

/// Grid units -> seconds, clamped to [0, duration] (postprocessing step 3).
inline std::vector<Detection> to_seconds(const infer::Segments& segs, const VideoMeta& meta) {
  FLOWLESS_CHECK(meta.fps > 0, "to_seconds: video '", meta.id, "' has fps ", meta.fps);
  FLOWLESS_CHECK(segs.start.size() == segs.size() && segs.end.size() == segs.size() &&
                     segs.label.size() == segs.size(),
                 "to_seconds: start/end/score/label lengths differ");
  const float stride = static_cast<float>(meta.feat_stride);
  const float half = static_cast<float>(0.5 * meta.num_frames);
  const float fps = static_cast<float>(meta.fps);
  const float vlen = static_cast<float>(meta.duration);
  auto conv = [&](float x) {
    float y = heads_detail::no_contract(x * stride);
    y = (y + half) / fps;
    if (y <= 0.0f) y *= 0.0f;
    if (y >= vlen) y = y * 0.0f + vlen;
    return y;
  };
  std::vector<Detection> out(segs.size());
  for (size_t i = 0; i < segs.size(); ++i) {
    out[i].start = static_cast<double>(conv(segs.start[i]));
    out[i].end = static_cast<double>(conv(segs.end[i]));
    out[i].label = segs.label[i];
    out[i].score = static_cast<double>(segs.score[i]);
  }
  return out;
}

/// The full post-processing of one video: decode, NMS, seconds.
inline std::vector<Detection> postprocess_video(const std::vector<std::vector<float>>& cls_logits,
                                                const std::vector<std::vector<float>>& offsets, int num_classes,
                                                const PointSet& pts, const PostprocessConfig& cfg,
                                                const VideoMeta& meta, const ClassOffsets& class_offsets = {}) {
  return to_seconds(postprocess_video_grid(cls_logits, offsets, num_classes, pts, cfg, class_offsets), meta);
}

/// Score fusion with external video-level classifier scores (one video).
inline std::vector<Detection> fuse_scores(const std::vector<Detection>& dets, const std::vector<double>& class_scores,
                                          int num_pred = 200, int topk = 2) {
  FLOWLESS_CHECK(num_pred >= 0 && topk >= 0, "fuse_scores: num_pred ", num_pred, " and topk ", topk,
                 " must be >= 0");
  std::vector<double> sc(dets.size());
  for (size_t i = 0; i < dets.size(); ++i) sc[i] = dets[i].score;
  std::vector<int64_t> order = eval::detail::numpy_argsort(sc);
  std::reverse(order.begin(), order.end());
  order.resize(std::min(order.size(), static_cast<size_t>(num_pred)));
  std::vector<int64_t> corder = eval::detail::numpy_argsort(class_scores);
  std::reverse(corder.begin(), corder.end());
  corder.resize(std::min(corder.size(), static_cast<size_t>(topk)));
  std::vector<Detection> out;
  out.reserve(order.size() * corder.size());
  for (int64_t c : corder) {
    const double cs = class_scores[static_cast<size_t>(c)];
    for (int64_t i : order) {
      Detection d = dets[static_cast<size_t>(i)];
      d.label = static_cast<int>(c);
      d.score = std::sqrt(cs * d.score);
      out.push_back(d);
    }
  }
  return out;
}

}  // namespace flowless
