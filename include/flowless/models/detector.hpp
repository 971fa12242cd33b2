// flowless/models/detector.hpp - the single-stage anchor-free detector
// (ActionFormer's PtTransformer; TemporalMaxer with the convPooler backbone;
// TriDet with the SGP backbone and the Trident head).
//
// Data flow:
//   x: (B, T, Cin) zero-padded features, lengths[b] valid snippets
//   -> backbone: pyramid feats[l]: (B, T / 2^l, embd_dim)
//   -> neck:     fpn feats[l]:     (B, T / 2^l, fpn_dim)
//   -> heads (shared across levels): cls_logits[l] (B, T_l, C), offsets[l] (B, T_l, 2)
//      (tridet: offsets[l] (B, T_l, 2 x (num_bins + 1)) and the boundary heads'
//      start_logits[l], end_logits[l] (B, T_l, C); infer/trident.hpp decodes them)
//   -> training: label assignment + focal/DIoU loss (train/detection_loss.hpp)
//   -> inference: per-level top-k, decoding, Soft-NMS, seconds (infer/postprocess.hpp)
// Parameter names equal the reference's state_dict names ("backbone.*",
// "neck.*", "cls_head.*", "reg_head.*"), so reference checkpoints load as-is.
// T must be divisible by config().buffer_multiple(); detect() pads for you.
// detect() refuses empty videos, features of another width and non-finite
// values (check_video_features) with an Error naming the video.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "flowless/models/backbones.hpp"
#include "flowless/models/heads.hpp"
#include "flowless/models/necks.hpp"
#include "flowless/infer/trident.hpp"
#include "flowless/models/points.hpp"
#include "flowless/train/label_assignment.hpp"
#include "flowless/train/simota.hpp"

namespace flowless::models {

/// Checks a (Tn, C) host feature buffer before inference: Tn > 0, a size
/// that fits the int lengths of the pipeline, and finite values (a NaN or Inf
/// would silently yield no detections). Errors name the video, the step and
/// the channel.
inline void check_video_features(const float* feats, int64_t Tn, int64_t C, const std::string& id) {
  FLOWLESS_CHECK(Tn > 0, id, ": empty video (0 feature steps)");
  FLOWLESS_CHECK(C > 0, id, ": features have ", C, " channels");
  FLOWLESS_CHECK(Tn <= (int64_t(1) << 24) - (int64_t(1) << 16) && C <= int64_t(1) << 24, id, ": ", Tn, " x ", C,
                 " features are beyond the supported size (at most 16,711,680 steps)");
  FLOWLESS_CHECK(feats != nullptr, id, ": null feature pointer");
  const int64_t n = Tn * C;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) finite &= std::isfinite(feats[i]);
  if (finite) return;
  for (int64_t i = 0; i < n; ++i)
    FLOWLESS_CHECK(std::isfinite(feats[i]), id, ": non-finite feature value (", feats[i], ") at step ", i / C,
                   ", channel ", i % C);
}

template <class T>
struct DetectorOutput {
  std::vector<Var<T>> cls_logits;          // [l]: (B, T_l, num_classes)
  std::vector<Var<T>> offsets;             // [l]: (B, T_l, 2), or (B, T_l, 2 x (num_bins + 1)) for the Trident head
  std::vector<Var<T>> start_logits;        // [l]: (B, T_l, num_classes), Trident head only (else empty)
  std::vector<Var<T>> end_logits;          // [l]: (B, T_l, num_classes), Trident head only
  std::vector<Var<T>> feats;               // [l]: (B, T_l, fpn_dim) neck outputs
  std::vector<std::vector<int>> lengths;   // [l][b] valid lengths
};

/// Ground truth of one video in feature-grid units.
struct VideoTargets {
  std::vector<std::array<float, 2>> segments;
  std::vector<int> labels;
};

/// Anchor points of a pyramid for a buffer of Tbuf snippets (all levels, full
/// padded lengths): Detector::points, the DCD student and the training tasks.
inline PointSet pyramid_points(const DetectorConfig& c, int64_t Tbuf) {
  std::vector<int> lens;
  auto strides = c.fpn_strides();
  for (int s : strides) lens.push_back(int((Tbuf + s - 1) / s));
  std::vector<std::array<float, 2>> rr(c.regression_range.begin(), c.regression_range.begin() + strides.size());
  return make_points(lens, strides, rr);
}

/// Inference on one video through `forward` (x: (1, Tbuf, Cin) -> head
/// outputs): Detector::detect and dcd::DcdStudent::detect. Checks the input
/// (empty video, channel count, non-finite values: Errors naming meta.id),
/// zero-pads it to cfg.inference_length(Tn), runs the forward in eval mode
/// without a graph, and post-processes the valid positions.
template <class T, class M, class Forward>
std::vector<Detection> detect_video(const DetectorConfig& cfg, M& module, Forward&& forward, const float* feats, int64_t Tn,
                                    int64_t Cin, const VideoMeta& meta, DetectorOutput<T>* raw) {
  FLOWLESS_CHECK(Tn > 0, meta.id, ": empty video (0 feature steps)");
  FLOWLESS_CHECK(Cin == cfg.input_dim, meta.id, ": features have ", Cin, " channels, the model expects ", cfg.input_dim);
  check_video_features(feats, Tn, Cin, meta.id);
  NoGradGuard ng;
  struct EvalMode {  // eval mode for the forward; the caller's mode comes back even if it throws
    M& m;
    bool was;
    ~EvalMode() { m.train(was); }
  } eval_mode{module, module.is_training()};
  module.train(false);
  const int64_t Tbuf = cfg.inference_length(Tn);
  Tensor<T> x(Shape{1, Tbuf, Cin});
  std::copy(feats, feats + Tn * Cin, x.data());  // converts when T is not float
  std::fill(x.data() + Tn * Cin, x.data() + Tbuf * Cin, T(0));
  DetectorOutput<T> out = forward(Var<T>(x), std::vector<int>{int(Tn)});
  std::vector<std::vector<float>> cls, offs, starts, ends;
  std::vector<int64_t> lens;
  // The Trident head is decoded when the forward produced boundary logits
  // (shapes are read from the outputs, not from the config).
  const bool trident_head = !out.start_logits.empty();
  FLOWLESS_CHECK(trident_head == cfg.trident(), meta.id, ": the forward ", trident_head ? "produced" : "did not produce",
                 " boundary logits, the config says use_trident_head ", cfg.trident());
  for (size_t l = 0; l < out.cls_logits.size(); ++l) {
    const int64_t len = out.lengths[l][0];
    const Tensor<T>& c = out.cls_logits[l].value();
    const Tensor<T>& o = out.offsets[l].value();
    cls.emplace_back(c.data(), c.data() + len * cfg.num_classes);
    offs.emplace_back(o.data(), o.data() + len * o.size(2));
    lens.push_back(len);
    if (trident_head) {
      const Tensor<T>& sl = out.start_logits[l].value();
      const Tensor<T>& el = out.end_logits[l].value();
      // OpenTAD's TriDet decodes with the boundary logits of the padded steps too.
      const int64_t blen = cfg.unmasked_boundary_logits ? sl.size(1) : len;
      starts.emplace_back(sl.data(), sl.data() + blen * cfg.num_classes);
      ends.emplace_back(el.data(), el.data() + blen * cfg.num_classes);
    }
  }
  ClassOffsets trident;
  if (trident_head) {
    // The Trident head's per-class distances, decoded for the candidates only.
    std::vector<int64_t> blens;
    for (size_t l = 0; l < offs.size(); ++l) {
      blens.push_back(int64_t(starts[l].size()) / cfg.num_classes);
      trident_check(offs[l], starts[l], ends[l], lens[l], cfg.num_classes, cfg.num_bins, blens[l]);
    }
    trident = [&, blens](size_t l, int64_t pt, int c) {
      return trident_decode_at(offs[l], starts[l], ends[l], lens[l], cfg.num_classes, cfg.num_bins, pt, c, blens[l]);
    };
  }
  auto dets = postprocess_video(cls, offs, cfg.num_classes, pyramid_points(cfg, Tbuf), cfg.test, meta, trident);
  if (raw) *raw = std::move(out);
  return dets;
}

/// Label assignment of a batch of B videos on the padded pyramid pts (N
/// points): center sampling from the ground truth alone (label_points), or,
/// for label_assigner "simota" (TemporalMaxer), SimOTA on the values of the
/// head outputs cls (B, N, C) and off (B, N, 2) at the valid points
/// (valid[b][l], a prefix per level), with the loss's focal parameters.
template <class T>
std::vector<PointTargets> assign_batch(const DetectorConfig& c, const PointSet& pts, const std::vector<VideoTargets>& gt,
                                       const Var<T>& cls, const Var<T>& off,
                                       const std::vector<std::vector<int>>& valid, const DetectionLossConfig& lc) {
  std::vector<PointTargets> targets;
  if (c.label_assigner != "simota") {
    for (const auto& g : gt)
      targets.push_back(label_points(pts, g.segments, g.labels, c.num_classes, c.center_sample,
                                     float(c.center_sample_radius)));
    return targets;
  }
  const int64_t B = static_cast<int64_t>(gt.size()), N = pts.size(), C = c.num_classes;
  const Shape want_cls{B, N, C}, want_off{B, N, 2};
  FLOWLESS_CHECK(cls.shape() == want_cls && off.shape() == want_off && valid.size() == gt.size(),
                 "assign_batch: outputs ", cls.shape().str(), " / ", off.shape().str(), " for ", B, " videos, ", N,
                 " points and ", C, " classes");
  const Tensor<T>& cv = cls.value();
  const Tensor<T>& ov = off.value();
  std::vector<float> c32(static_cast<size_t>(N * C)), o32(static_cast<size_t>(N * 2));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < N * C; ++i) c32[static_cast<size_t>(i)] = static_cast<float>(cv[b * N * C + i]);
    for (int64_t i = 0; i < N * 2; ++i) o32[static_cast<size_t>(i)] = static_cast<float>(ov[b * N * 2 + i]);
    targets.push_back(simota_assign(pts, valid[static_cast<size_t>(b)], c32.data(), o32.data(),
                                    gt[static_cast<size_t>(b)].segments, gt[static_cast<size_t>(b)].labels,
                                    c.num_classes, c.simota, float(lc.focal_alpha), float(lc.focal_gamma)));
  }
  return targets;
}

template <class T>
class Detector : public nn::Module<T> {
 public:
  explicit Detector(const DetectorConfig& c, uint64_t seed = 1234567891ULL)
      : cfg_((c.validate("detector config"), c)), rng_(seed), backbone_(make_backbone<T>(c, rng_)), neck_(make_neck<T>(c, rng_)),
        cls_head_(head_options(c), c.num_classes, c.cls_prior_prob, c.head_empty_cls, rng_),
        reg_head_(head_options(c), c.num_levels(), rng_, c.offset_channels()) {
    this->register_module("backbone", *backbone_);
    this->register_module("neck", *neck_);
    this->register_module("cls_head", cls_head_);
    if (c.trident()) {
      // TriDet's boundary heads: ClsHeads of kernel boudary_kernel_size (the
      // reference builds them after cls_head, before reg_head).
      HeadOptions b = head_options(c);
      b.kernel_size = c.boundary_kernel_size;
      b.mask_output = !c.unmasked_boundary_logits;
      start_head_ = std::make_unique<ClsHead<T>>(b, c.num_classes, c.cls_prior_prob, c.head_empty_cls, rng_);
      end_head_ = std::make_unique<ClsHead<T>>(b, c.num_classes, c.cls_prior_prob, c.head_empty_cls, rng_);
      this->register_module("start_head", *start_head_);
      this->register_module("end_head", *end_head_);
    }
    this->register_module("reg_head", reg_head_);
  }

  const DetectorConfig& config() const { return cfg_; }
  Rng& rng() { return rng_; }
  Backbone<T>& backbone() { return *backbone_; }
  Neck<T>& neck() { return *neck_; }
  ClsHead<T>& cls_head() { return cls_head_; }
  RegHead<T>& reg_head() { return reg_head_; }

  static HeadOptions head_options(const DetectorConfig& c) {
    HeadOptions o;
    o.input_dim = c.fpn_dim;
    o.feat_dim = c.head_dim;
    o.num_layers = c.head_num_layers;
    o.kernel_size = c.head_kernel_size;
    o.with_ln = c.head_with_ln;
    o.norm_eps = c.conv_norm_eps;
    o.remask = c.conv_remask;
    return o;
  }

  /// Backbone + neck: the per-level features the heads (and distillation) read.
  Pyramid<T> features(const Var<T>& x_in, const std::vector<int>& lengths) {
    check_input(x_in, lengths);
    Var<T> x = x_in;
    if (this->is_training() && cfg_.arch == "tridet" && cfg_.input_noise > 0) {
      // TriDet's training trick: Gaussian noise of std input_noise on the whole padded batch.
      Tensor<T> noisy = x_in.value().clone();
      for (int64_t i = 0; i < noisy.numel(); ++i) noisy[i] += T(cfg_.input_noise * rng_.normal());
      x = Var<T>(std::move(noisy));
    }
    auto [feats, lens] = backbone_->forward(x, lengths, rng_);
    std::vector<std::vector<int>> fpn_lens(lens.begin() + cfg_.fpn_start_level, lens.end());
    return {neck_->forward(feats, lens), fpn_lens};
  }

  DetectorOutput<T> heads(const Pyramid<T>& p) {
    DetectorOutput<T> out;
    out.feats = p.first;
    out.lengths = p.second;
    out.cls_logits = cls_head_.forward(p.first, p.second);
    if (start_head_) {
      // The reference detaches the boundary heads' input (no gradient into the trunk).
      std::vector<Var<T>> detached;
      for (auto& f : p.first) detached.push_back(f.detach());
      out.start_logits = start_head_->forward(detached, p.second);
      out.end_logits = end_head_->forward(detached, p.second);
    }
    out.offsets = reg_head_.forward(p.first, p.second);
    return out;
  }

  DetectorOutput<T> forward(const Var<T>& x, const std::vector<int>& lengths) { return heads(features(x, lengths)); }

  /// Points for a buffer of T snippets (all levels, full padded lengths).
  PointSet points(int64_t Tbuf) const { return pyramid_points(cfg_, Tbuf); }

  /// Label assignment for one video on a buffer of Tbuf snippets.
  PointTargets assign(const VideoTargets& gt, int64_t Tbuf) const {
    return label_points(points(Tbuf), gt.segments, gt.labels, cfg_.num_classes, cfg_.center_sample,
                        float(cfg_.center_sample_radius));
  }

  /// The reference's training loss on a forward output (B videos, same
  /// buffer), with the label assignment of assign_batch. update = false
  /// evaluates with the criterion's current normaliser.
  DetectionLossOutput<T> loss(const DetectorOutput<T>& out, const std::vector<VideoTargets>& gt, DetectionLoss<T>& criterion,
                              bool update = true) const {
    // The input buffer: the first pyramid level's length times its stride
    // (fpn_start_level > 0 starts beyond stride 1).
    const int64_t B = out.cls_logits[0].size(0), Tbuf = out.cls_logits[0].size(1) * cfg_.fpn_strides()[0];
    FLOWLESS_CHECK(int64_t(gt.size()) == B, "Detector::loss: ", gt.size(), " targets for batch ", B);
    const PointSet pts = points(Tbuf);
    const Var<T> cls = concat_time(out.cls_logits), off = concat_time(out.offsets);
    std::vector<std::vector<int>> valid(B);
    for (int64_t b = 0; b < B; ++b)
      for (auto& l : out.lengths) valid[b].push_back(l[b]);
    const std::vector<PointTargets> targets = assign_batch(cfg_, pts, gt, cls, off, valid, criterion.config());
    if (!out.start_logits.empty()) {  // TriDet's Trident head
      const Var<T> st = concat_time(out.start_logits), en = concat_time(out.end_logits);
      return update ? criterion.trident(cls, off, st, en, pts, valid, targets)
                    : criterion.trident_evaluate(cls, off, st, en, pts, valid, targets);
    }
    return update ? criterion(cls, off, pts, valid, targets) : criterion.evaluate(cls, off, pts, valid, targets);
  }

  /// Detects actions in one video. feats: (Tn, Cin) time-major host floats.
  /// If `raw` is given it receives the network outputs (valid positions are
  /// [0, lengths[l][0]) of each level).
  std::vector<Detection> detect(const float* feats, int64_t Tn, int64_t Cin, const VideoMeta& meta,
                                DetectorOutput<T>* raw = nullptr) {
    return detect_video<T>(cfg_, *this, [this](const Var<T>& x, const std::vector<int>& l) { return forward(x, l); }, feats,
                           Tn, Cin, meta, raw);
  }

 private:
  void check_input(const Var<T>& x, const std::vector<int>& lengths) const {
    FLOWLESS_CHECK(x.value().dim() == 3, "Detector: input must be (B, T, C), got ", x.shape().str());
    FLOWLESS_CHECK(x.size(2) == cfg_.input_dim, "Detector: input has ", x.size(2), " channels, the model expects ",
                   cfg_.input_dim);
    FLOWLESS_CHECK(int64_t(lengths.size()) == x.size(0), "Detector: ", lengths.size(), " lengths for batch ", x.size(0));
    FLOWLESS_CHECK(x.size(1) % cfg_.buffer_multiple() == 0, "Detector: buffer length ", x.size(1),
                   " is not divisible by ", cfg_.buffer_multiple(), " (pad with config().inference_length)");
    for (int L : lengths) FLOWLESS_CHECK(L > 0 && L <= x.size(1), "Detector: valid length ", L, " outside [1, ", x.size(1), "]");
  }

  DetectorConfig cfg_;
  Rng rng_;
  std::unique_ptr<Backbone<T>> backbone_;
  std::unique_ptr<Neck<T>> neck_;
  ClsHead<T> cls_head_;
  RegHead<T> reg_head_;
  std::unique_ptr<ClsHead<T>> start_head_, end_head_;  // TriDet's Trident head
};

}  // namespace flowless::models
