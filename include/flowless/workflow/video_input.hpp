// flowless/workflow/video_input.hpp - one video's features and grid, prepared
// for a model the way the reference's dataset class prepares them at test time.
//
//   VideoMeta meta{id, fps, duration, cfg.feat_stride, cfg.num_frames};  // the features' own grid
//   prepare_video_input(cfg, x, T, C, meta, "video.npy");   // may resample x and change T, meta
//   auto dets = model.detect(x.data(), T, C, meta);
//
// Most configs (THUMOS, EPIC, Ego4D) leave the video as it is. ActionFormer's
// ActivityNet configs (dataset.force_upsampling, anet.py) resample every video
// to max_seq_len steps (ops/resample.hpp, torch's linear interpolation) and
// rescale its grid (data::fixed_length_grid): feat_stride and num_frames become
// ((T - 1) * feat_stride + num_frames) / max_seq_len, so detections map back
// to the video's own seconds. Fixed-length features (feat_stride <= 0) take
// their grid from the video's duration and fps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/data/dataset.hpp"
#include "flowless/infer/postprocess.hpp"
#include "flowless/models/detector_config.hpp"
#include "flowless/ops/resample.hpp"

namespace flowless::workflow {

/// x: (T, C) time-major features of one video; meta: its id, fps, duration and
/// its features' own grid (feat_stride, num_frames: from the config or the
/// dataset). cfg gives force_upsampling and max_seq_len. Returns true when it
/// changed x, T or meta.
inline bool prepare_video_input(const DetectorConfig& cfg, std::vector<float>& x, int64_t& T, int64_t C,
                                VideoMeta& meta, const std::string& context) {
  if (!cfg.force_upsampling && meta.feat_stride > 0) return false;
  FLOWLESS_CHECK(static_cast<int64_t>(x.size()) == T * C, context, ": features hold ", x.size(),
                 " values, not T x C = ", T, " x ", C);
  FLOWLESS_CHECK(T >= 1, context, ": the video has no feature rows");
  const int64_t L = cfg.max_seq_len;
  const data::FeatureGrid g = data::fixed_length_grid(T, meta.feat_stride, meta.num_frames, L, cfg.force_upsampling,
                                                      meta.duration, meta.fps, context);
  meta.feat_stride = g.feat_stride;
  meta.num_frames = g.num_frames;
  if (cfg.force_upsampling && T != L) {
    x = resample_linear(x.data(), T, C, L);
    T = L;
  }
  return true;
}

}  // namespace flowless::workflow
