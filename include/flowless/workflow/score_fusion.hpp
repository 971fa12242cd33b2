// flowless/workflow/score_fusion.hpp - external video-level classifier scores
// fused into a class-agnostic detector's output (ActionFormer's ActivityNet
// protocol: test_cfg.ext_score_file, libs/utils/postprocessing.py
// postprocess_results).
//
//   ExternalScores ext = load_external_scores("cuhk_val_simp_share.json");
//   fuse_external_scores(videos, ext);          // top 200 segments x top 2 classes
//
// The file is JSON: {"results": {video_id: [score per class, ...], ...}, ...}
// (the released CUHK file's layout) or the bare {video_id: [...]} object.
// Every list must hold the same number (>= 1) of finite scores >= 0 (the
// fused score is sqrt(class score x segment score)). Per video (infer::
// fuse_scores): keep the video's num_pred best segments, take the classifier's
// topk classes, and emit every segment once per class, class by class, with
// label = the class index and score = sqrt(class score x segment score).
//
// Errors name the file and the problem; a video of the predictions that the
// file lacks is an error (the reference fails with a KeyError), and so is a
// detection with a negative score.
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/infer/postprocess.hpp"
#include "flowless/io/json.hpp"
#include "flowless/workflow/predictions.hpp"

namespace flowless::workflow {

struct ExternalScores {
  std::string path;                                     // where they came from (error messages)
  std::map<std::string, std::vector<double>> by_video;  // video id -> one score per class
  int num_classes = 0;
};

/// Validates a parsed scores document; `context` (usually the path) starts every error.
inline ExternalScores parse_external_scores(const json::Value& root, const std::string& context) {
  ExternalScores ext;
  ext.path = context;
  FLOWLESS_CHECK(root.is_object(), context, ": external scores must be a JSON object, found ", root.type_name());
  const json::Value& res = root.contains("results") ? root.at("results") : root;
  FLOWLESS_CHECK(res.is_object(), context, ": \"results\" must map video ids to score lists, found ",
                 res.type_name());
  for (const auto& [vid, v] : res.items()) {
    FLOWLESS_CHECK(v.is_array() && v.size() > 0, context, ": video '", vid,
                   "': expected a non-empty list of class scores, found ",
                   v.is_array() ? std::string("an empty list") : std::string(v.type_name()));
    std::vector<double> s;
    s.reserve(v.size());
    for (size_t c = 0; c < v.size(); ++c) {
      FLOWLESS_CHECK(v[c].is_number(), context, ": video '", vid, "': class score ", c, " is ", v[c].type_name(),
                     ", not a number");
      const double x = v[c].as_number();
      FLOWLESS_CHECK(std::isfinite(x) && x >= 0, context, ": video '", vid, "': class score ", c, " is ",
                     x, " (scores must be finite and >= 0)");
      s.push_back(x);
    }
    if (ext.num_classes == 0) ext.num_classes = static_cast<int>(s.size());
    FLOWLESS_CHECK(static_cast<int>(s.size()) == ext.num_classes, context, ": video '", vid, "' has ", s.size(),
                   " class scores, the videos before it ", ext.num_classes);
    ext.by_video[vid] = std::move(s);
  }
  FLOWLESS_CHECK(!ext.by_video.empty(), context, ": no videos in the external scores");
  return ext;
}

inline ExternalScores load_external_scores(const std::string& path) {
  return parse_external_scores(json::parse_file(path), path);
}

/// Replaces each video's detections by the fused ones (see the file comment).
inline void fuse_external_scores(VideoDetections& videos, const ExternalScores& ext, int num_pred = 200,
                                 int topk = 2) {
  for (auto& [vid, dets] : videos) {
    auto it = ext.by_video.find(vid);
    FLOWLESS_CHECK(it != ext.by_video.end(), ext.path, ": no classifier scores for video '", vid,
                   "' (the ids must be the predictions' video ids, without a feature-file prefix such as 'v_')");
    for (const auto& d : dets)
      FLOWLESS_CHECK(std::isfinite(d.score) && d.score >= 0, "score fusion with ", ext.path, ": video '", vid,
                     "' has a detection with score ", d.score, " (needs finite scores >= 0)");
    dets = fuse_scores(dets, it->second, num_pred, topk);
  }
}

}  // namespace flowless::workflow
