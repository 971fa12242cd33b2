// flowless/models/detector_config.hpp - the architecture and train/test
// settings of a detector, read from and written to the reference's config
// layout.
//
// JSON layout (the reference's config sections, all fields optional with the
// reference's defaults):
//   {"model": {...}, "dataset": {...}, "train_cfg": {...}, "test_cfg": {...},
//    "flowless": {"arch": "actionformer"|"temporalmaxer"|"tridet", "modality": "...",
//                 "channels": [lo, hi], "inference_padding": "divisible"|"max_seq_len"|"none",
//                 "mask_embedding": bool, "label_assigner": "center"|"simota",
//                 "conv_remask": bool, "conv_norm_eps": number,
//                 "pre_nms_scope": "level"|"video", "voting_iou_weight": bool,
//                 "unmasked_boundary_logits": bool}}
// (the last five are set by OpenTAD's configs, models/opentad.hpp).
// "model.backbone_type" "convTransformer" selects the ActionFormer pyramid,
// "convPooler" the TemporalMaxer pyramid; "flowless.arch" overrides it.
// TemporalMaxer's own configs ("model_name": "TemporalMaxerArchitecture", or
// convPooler with a two-entry backbone_arch [#convs, #poolings]) also get its
// GroupNorm neck, its unmasked embedding, padding to max_seq_len at inference
// and, with "model.assigner", label_assigner "simota" with the assigner's
// parameters (its training recipe, train/simota.hpp).
// TriDet's configs ("model_name": "TriDet", or "model.backbone_type" "SGP")
// select arch "tridet": SGP blocks (n_sgp_win_size, sgp_mlp_dim, k,
// init_conv_vars, downsample_type "max"), the Trident head (use_trident_head,
// num_bins, boudary_kernel_size - the reference's spelling) and padding to
// max_seq_len at inference.
#pragma once

#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "flowless/infer/postprocess.hpp"
#include "flowless/io/json.hpp"
#include "flowless/train/detection_loss.hpp"
#include "flowless/train/simota.hpp"

namespace flowless {

struct DetectorConfig {
  // ---- architecture (model section) ----
  std::string arch = "actionformer";  // "actionformer" | "temporalmaxer" | "tridet"
  int input_dim = 2048;
  int num_classes = 20;
  int embd_dim = 512, fpn_dim = 512, head_dim = 512;
  int n_head = 4;
  std::vector<int> backbone_arch{2, 2, 5};   // (#embedding convs, #stem blocks, #branch blocks)
  std::vector<int> mha_win_size;             // one per level; filled from n_mha_win_size (tridet: n_sgp_win_size)
  int scale_factor = 2;
  int embd_kernel_size = 3, head_kernel_size = 3, head_num_layers = 3;
  bool embd_with_ln = true, fpn_with_ln = true, head_with_ln = true;
  bool use_abs_pe = false, use_rel_pe = false;
  std::string fpn_type = "identity";         // "identity" | "fpn"
  // The identity neck's per-level norm: "layernorm" (ActionFormer's FPNIdentity,
  // parameters fpn_norms.l) or "groupnorm" (TemporalMaxer's FPNIdentity:
  // GroupNorm(fpn_num_groups, C, affine=False) over the whole buffer, padded
  // steps included; ops/group_norm.hpp).
  std::string fpn_norm = "layernorm";
  int fpn_num_groups = 4;
  // temporalmaxer: false leaves the embedding's padded steps as they are
  // (ReLU of the LayerNorm of zeros), as TemporalMaxer's convPooler does, so
  // level 0 and the first pooling windows see them; flowless's own family
  // (true) zeroes them.
  bool mask_embedding = true;
  // OpenTAD's ConvModule (flowless.conv_remask, flowless.conv_norm_eps): the
  // embedding's and the heads' [conv -> LN -> ReLU] zero the padded steps
  // after the ReLU (the original code leaves ReLU(LN bias) there), and the
  // LayerNorms of the embedding, the heads and the FPN norms use eps
  // conv_norm_eps (current OpenTAD 1e-6; 1e-5 in its first release, v0.1.0,
  // and in the original code). The transformer and SGP blocks' norms keep 1e-5.
  bool conv_remask = false;
  double conv_norm_eps = 1e-5;
  // tridet (flowless.unmasked_boundary_logits, OpenTAD's TriDet): the start /
  // end heads' last conv leaves the padded steps of the buffer unmasked, and
  // the Trident decode reads them (inference; training refuses it).
  bool unmasked_boundary_logits = false;
  // Label assignment for training: "center" (ActionFormer's center sampling:
  // center_sample, center_sample_radius) or "simota" (TemporalMaxer's
  // model.assigner, train/simota.hpp, with the parameters below; written back
  // as model.assigner).
  std::string label_assigner = "center";
  SimOTAConfig simota;
  // ---- tridet (TriDet's SGP backbone and Trident head) ----
  int sgp_mlp_dim = 512;             // model.sgp_mlp_dim: the SGP block's MLP width
  double sgp_k = 1.5;                // model.k: wide kernel round((w + 1) * k), made odd
  double sgp_init_conv_vars = 0;     // model.init_conv_vars: std of the depthwise weights at init
  std::string downsample_type = "max";  // model.downsample_type (only "max" is supported)
  bool use_trident_head = true;      // model.use_trident_head
  int num_bins = 16;                 // model.num_bins: boundary bins (excluding 0)
  int boundary_kernel_size = 3;      // model.boudary_kernel_size
  double iou_weight_power = 1.0;     // model.iou_weight_power: exponent of the IoU weight in the focal loss
  double input_noise = 0.0;          // model.input_noise: std of the Gaussian noise added to training inputs
  int fpn_start_level = 0;
  std::vector<std::array<float, 2>> regression_range{{0, 4}, {4, 8}, {8, 16}, {16, 32}, {32, 64}, {64, 10000}};
  int max_seq_len = 2304;
  double max_buffer_len_factor = 6.0;
  // ---- dataset section (what the model needs to map grid <-> seconds) ----
  double feat_stride = 4, num_frames = 16;
  double default_fps = 0;  // 0 = per video
  // ActionFormer's ActivityNet configs: every video's features are linearly
  // resampled to max_seq_len steps and its grid rescaled (data::fixed_length_grid,
  // ops/resample.hpp); feature files are named file_prefix + id + file_ext ("v_"):
  // `flowless detect --features DIR` drops the prefix from the ids (file_ext is
  // kept for the round trip; a folder's .npy / .npz files are read whatever it says).
  bool force_upsampling = false;
  std::string file_prefix, file_ext;
  // ---- training ----
  double init_loss_norm = 100, clip_grad_l2norm = 1.0, cls_prior_prob = 0.01;
  std::string center_sample = "radius";
  double center_sample_radius = 1.5, loss_weight = 1.0;
  std::vector<int> head_empty_cls;
  double dropout = 0.0, droppath = 0.1, label_smoothing = 0.0;
  // ---- inference ----
  PostprocessConfig test;
  // test_cfg.ext_score_file: video-level classifier scores fused into the
  // detections (workflow/score_fusion.hpp); "" = none. A path as written in
  // the config (the reference resolves it from the working directory).
  std::string ext_score_file;
  // "divisible" (the smallest multiple of max_div_factor), "max_seq_len" (the
  // reference's exact buffer: max_seq_len, longer videos a multiple of
  // max_div_factor) or "none" (temporalmaxer only: the video's own length,
  // levels of ceil(T / stride) steps, as OpenTAD runs TemporalMaxer).
  std::string inference_padding = "divisible";
  // ---- flowless: which input channels the model reads ----
  std::string modality = "";        // informational: "rgb", "flow", "two-stream", ...
  std::array<int, 2> channels{0, 0};  // [lo, hi) of the feature file's channels; {0,0} = all (input_dim)

  int num_levels() const { return backbone_arch[2] + 1 - fpn_start_level; }
  std::vector<int> fpn_strides() const {
    std::vector<int> s;
    for (int i = fpn_start_level; i <= backbone_arch[2]; ++i) s.push_back(int(std::lround(std::pow(scale_factor, i))));
    return s;
  }
  /// Largest s * (w//2) * 2 over levels (tridet: s * w): inference buffers
  /// longer than max_seq_len are padded to a multiple of it.
  int max_div_factor() const {
    auto strides = fpn_strides();
    int f = 1;
    for (size_t l = 0; l < strides.size(); ++l) {
      int w = mha_win_size.empty() ? 1 : mha_win_size[std::min(l, mha_win_size.size() - 1)];
      int s = strides[l];
      if (arch == "actionformer" && w > 1) s = strides[l] * (w / 2) * 2;
      if (arch == "tridet" && w > 1) s = strides[l] * w;
      f = std::max(f, s);
    }
    return f;
  }
  /// What a network buffer's length must be a multiple of: max_div_factor(),
  /// or for tridet (whose SGP blocks need no whole windows, and whose
  /// reference pads short videos to max_seq_len, a multiple of the largest
  /// stride only) the largest stride.
  int buffer_multiple() const {
    if (inference_padding == "none") return 1;
    if (arch != "tridet") return max_div_factor();
    auto strides = fpn_strides();
    return strides.empty() ? 1 : strides.back();
  }
  /// The Trident head's offsets: 2 x (num_bins + 1) channels per step, else 2.
  int offset_channels() const { return arch == "tridet" && use_trident_head ? 2 * (num_bins + 1) : 2; }
  bool trident() const { return arch == "tridet" && use_trident_head; }
  /// Buffer length the network runs on for a video of T snippets at inference.
  int64_t inference_length(int64_t T) const {
    const int64_t div = max_div_factor();
    if (inference_padding == "none") return T;
    if (inference_padding == "max_seq_len" && T <= max_seq_len) return max_seq_len;
    return std::max<int64_t>((T + div - 1) / div * div, div);
  }
  DetectionLossConfig loss_config() const {
    DetectionLossConfig c;
    c.init_loss_norm = init_loss_norm;
    c.loss_weight = loss_weight;
    c.label_smoothing = label_smoothing;
    c.iou_weight_power = iou_weight_power;
    return c;
  }
  /// Every field a model is built from is range-checked here, before any
  /// arithmetic or allocation depends on it: a model file's config is input
  /// like any other (n_head 0 would divide by zero, embd_dim 1e9 allocate
  /// without bound).
  void validate(const std::string& ctx) const {
    FLOWLESS_CHECK(arch == "actionformer" || arch == "temporalmaxer" || arch == "tridet", ctx, ": unknown arch '", arch, "'");
    FLOWLESS_CHECK(input_dim > 0 && num_classes > 0, ctx, ": input_dim and num_classes must be positive");
    FLOWLESS_CHECK(input_dim <= (1 << 16) && num_classes <= (1 << 16), ctx, ": input_dim ", input_dim,
                   " / num_classes ", num_classes, " exceed 65536");
    for (auto [name, v] : {std::pair<const char*, int>{"embd_dim", embd_dim}, {"fpn_dim", fpn_dim}, {"head_dim", head_dim}})
      FLOWLESS_CHECK(v > 0 && v <= (1 << 14), ctx, ": ", name, " ", v, " is not in [1, 16384]");
    FLOWLESS_CHECK(n_head > 0 && n_head <= embd_dim, ctx, ": n_head ", n_head, " is not in [1, embd_dim]");
    FLOWLESS_CHECK(backbone_arch.size() == 3, ctx, ": backbone_arch must have 3 entries");
    FLOWLESS_CHECK(backbone_arch[0] >= 0 && backbone_arch[0] <= 64 && backbone_arch[1] >= 0 && backbone_arch[1] <= 64 &&
                       backbone_arch[2] >= 0 && backbone_arch[2] <= 16,
                   ctx, ": backbone_arch (", backbone_arch[0], ", ", backbone_arch[1], ", ", backbone_arch[2],
                   ") is outside [0, 64] x [0, 64] x [0, 16]");
    FLOWLESS_CHECK(scale_factor >= 1 && std::pow(double(scale_factor), backbone_arch[2]) <= double(1 << 24), ctx,
                   ": scale_factor ", scale_factor, " must be >= 1 with scale_factor^", backbone_arch[2], " <= 2^24");
    FLOWLESS_CHECK(fpn_start_level >= 0 && fpn_start_level <= backbone_arch[2], ctx, ": fpn_start_level ",
                   fpn_start_level, " is not in [0, ", backbone_arch[2], "]");
    for (auto [name, k] : {std::pair<const char*, int>{"embd_kernel_size", embd_kernel_size},
                           {"head_kernel_size", head_kernel_size}})
      FLOWLESS_CHECK(k >= 1 && k % 2 == 1 && k <= 1023, ctx, ": ", name, " ", k, " must be odd and in [1, 1023]");
    FLOWLESS_CHECK(head_num_layers >= 1 && head_num_layers <= 64, ctx, ": head_num_layers ", head_num_layers,
                   " is not in [1, 64]");
    for (int w : mha_win_size)
      FLOWLESS_CHECK(w >= -1 && w <= (1 << 16), ctx, ": window size ", w, " is not in [-1, 65536]");
    if (int(mha_win_size.size()) == backbone_arch[2] + 1) {
      // max_div_factor() (the inference buffer granularity) in 64 bits first: <= 2^16.
      for (int l = fpn_start_level; l <= backbone_arch[2]; ++l) {
        const int64_t stride = std::llround(std::pow(double(scale_factor), l));
        const int64_t w = mha_win_size[size_t(std::min<int>(l - fpn_start_level, int(mha_win_size.size()) - 1))];
        FLOWLESS_CHECK(stride * std::max<int64_t>(w, 1) <= (1 << 16), ctx, ": level ", l, " has stride ", stride,
                       " and window ", w, "; stride * window must be <= 65536");
      }
    }
    FLOWLESS_CHECK(max_seq_len > 0 && max_seq_len <= (1 << 28), ctx, ": max_seq_len ", max_seq_len,
                   " is not in [1, 2^28]");
    FLOWLESS_CHECK(std::isfinite(max_buffer_len_factor) && max_buffer_len_factor > 0, ctx,
                   ": max_buffer_len_factor must be finite and > 0");
    // feat_stride <= 0: fixed-length features, whose grid comes from each video's duration
    // (workflow::prepare_video_input, inference only).
    FLOWLESS_CHECK(std::isfinite(feat_stride) && std::isfinite(num_frames) && num_frames >= 0 &&
                       std::isfinite(default_fps) && default_fps >= 0,
                   ctx, ": feat_stride / num_frames / default_fps must be finite, num_frames and default_fps >= 0");
    for (int k : head_empty_cls)
      FLOWLESS_CHECK(k >= 0 && k < num_classes, ctx, ": head_empty_cls holds ", k, ", not a class in [0, ",
                     num_classes, ")");
    FLOWLESS_CHECK(channels[0] >= 0 && channels[1] >= 0, ctx, ": negative channel range");
    FLOWLESS_CHECK(backbone_arch[0] > 0 || input_dim == embd_dim, ctx,
                   ": without embedding convolutions (backbone_arch[0] = 0) input_dim must equal embd_dim (", input_dim,
                   " vs ", embd_dim, ")");
    FLOWLESS_CHECK(head_num_layers > 1 || head_dim == fpn_dim, ctx, ": with head_num_layers 1 head_dim must equal fpn_dim (",
                   head_dim, " vs ", fpn_dim, ")");
    FLOWLESS_CHECK(fpn_norm == "layernorm" || fpn_norm == "groupnorm", ctx, ": unknown model.fpn_norm '", fpn_norm,
                   "' (layernorm, groupnorm)");
    if (fpn_norm == "groupnorm")
      FLOWLESS_CHECK(fpn_type == "identity" && fpn_num_groups >= 1 && fpn_dim % fpn_num_groups == 0, ctx,
                     ": fpn_norm groupnorm needs fpn_type identity and fpn_dim (", fpn_dim,
                     ") divisible by num_group (", fpn_num_groups, ")");
    FLOWLESS_CHECK(std::isfinite(conv_norm_eps) && conv_norm_eps > 0 && conv_norm_eps < 1, ctx,
                   ": flowless.conv_norm_eps ", conv_norm_eps, " is not in (0, 1)");
    FLOWLESS_CHECK(!unmasked_boundary_logits || trident(), ctx,
                   ": flowless.unmasked_boundary_logits applies to the Trident head (tridet) only");
    FLOWLESS_CHECK(test.pre_nms_scope == "level" || test.pre_nms_scope == "video", ctx,
                   ": unknown flowless.pre_nms_scope '", test.pre_nms_scope, "' (level, video)");
    FLOWLESS_CHECK(mask_embedding || arch == "temporalmaxer", ctx,
                   ": flowless.mask_embedding false applies to the temporalmaxer family only");
    FLOWLESS_CHECK(label_assigner == "center" || label_assigner == "simota", ctx, ": unknown label_assigner '",
                   label_assigner, "' (center, simota)");
    if (label_assigner == "simota") {
      check_simota_config(simota, ctx);
      FLOWLESS_CHECK(!trident(), ctx, ": the SimOTA label assigner (model.assigner) does not apply to TriDet's Trident head");
    }
    FLOWLESS_CHECK(fpn_type != "identity" || fpn_dim == embd_dim, ctx, ": fpn_type identity needs fpn_dim == embd_dim (",
                   fpn_dim, " vs ", embd_dim, ")");
    for (int l = 0; l < num_levels() && l < int(regression_range.size()); ++l)
      FLOWLESS_CHECK(std::isfinite(regression_range[size_t(l)][0]) && std::isfinite(regression_range[size_t(l)][1]) &&
                         regression_range[size_t(l)][0] <= regression_range[size_t(l)][1],
                     ctx, ": regression_range of level ", l, " must be finite [lo, hi] with lo <= hi");
    FLOWLESS_CHECK(dropout >= 0 && dropout < 1 && droppath >= 0 && droppath < 1, ctx,
                   ": dropout and droppath must be in [0, 1)");
    FLOWLESS_CHECK(inference_padding == "divisible" || inference_padding == "max_seq_len" ||
                       (inference_padding == "none" && arch == "temporalmaxer"),
                   ctx, ": unknown flowless.inference_padding '", inference_padding, "' (divisible, max_seq_len",
                   arch == "temporalmaxer" ? ", none)" : "; none for the temporalmaxer family only)");
    if (inference_padding == "max_seq_len" && int(mha_win_size.size()) == backbone_arch[2] + 1)
      FLOWLESS_CHECK(max_seq_len % buffer_multiple() == 0, ctx, ": max_seq_len ", max_seq_len,
                     " must be divisible by ", buffer_multiple(), arch == "tridet" ? " (the largest stride)" : " (stride x window)",
                     " for inference_padding max_seq_len");
    if (arch == "tridet") {
      FLOWLESS_CHECK(downsample_type == "max", ctx, ": model.downsample_type '", downsample_type,
                     "' is not supported (max)");
      FLOWLESS_CHECK(embd_dim % 16 == 0, ctx, ": tridet needs embd_dim divisible by 16 (the SGP block's GroupNorm(16, C)), got ",
                     embd_dim);
      FLOWLESS_CHECK(sgp_mlp_dim >= 1 && sgp_mlp_dim <= (1 << 16), ctx, ": sgp_mlp_dim ", sgp_mlp_dim, " is not in [1, 65536]");
      FLOWLESS_CHECK(std::isfinite(sgp_k) && sgp_k >= 0 && sgp_k <= 64, ctx, ": model.k ", sgp_k, " is not in [0, 64]");
      FLOWLESS_CHECK(std::isfinite(sgp_init_conv_vars) && sgp_init_conv_vars >= 0, ctx, ": init_conv_vars must be >= 0");
      FLOWLESS_CHECK(num_bins >= 0 && num_bins <= 1024, ctx, ": num_bins ", num_bins, " is not in [0, 1024]");
      FLOWLESS_CHECK(boundary_kernel_size >= 1 && boundary_kernel_size % 2 == 1 && boundary_kernel_size <= 1023, ctx,
                     ": boudary_kernel_size ", boundary_kernel_size, " must be odd and in [1, 1023]");
      FLOWLESS_CHECK(std::isfinite(iou_weight_power) && iou_weight_power >= 0 && std::isfinite(input_noise) &&
                         input_noise >= 0, ctx, ": iou_weight_power and input_noise must be finite and >= 0");
      for (size_t l = 1; l < mha_win_size.size(); ++l)
        FLOWLESS_CHECK(mha_win_size[l] >= 1 && mha_win_size[l] % 2 == 1 && mha_win_size[l] <= 1023, ctx,
                       ": n_sgp_win_size of level ", l, " is ", mha_win_size[l], "; SGP windows must be odd and in [1, 1023]");
    }
    // Post-processing settings are checked here too, so a bad model file fails
    // when it is loaded rather than at its first detection.
    const infer::NmsConfig& nms = test.nms;
    FLOWLESS_CHECK(nms.method == "soft" || nms.method == "hard" || nms.method == "none", ctx,
                   ": unknown test_cfg.nms_method '", nms.method, "' (soft, hard or none)");
    FLOWLESS_CHECK(nms.max_seg_num >= 1 && test.pre_nms_topk >= 0, ctx,
                   ": test_cfg.max_seg_num must be >= 1 and pre_nms_topk >= 0");
    FLOWLESS_CHECK(std::isfinite(nms.sigma) && (nms.method != "soft" || nms.sigma > 0), ctx,
                   ": test_cfg.nms_sigma must be > 0 for soft NMS");
    for (float v : {test.pre_nms_thresh, test.duration_thresh, nms.iou_threshold, nms.min_score, nms.voting_thresh})
      FLOWLESS_CHECK(std::isfinite(v), ctx, ": test_cfg thresholds must be finite");
    FLOWLESS_CHECK(int(regression_range.size()) >= num_levels(), ctx, ": regression_range has ",
                   regression_range.size(), " entries for ", num_levels(), " levels");
    FLOWLESS_CHECK(arch != "actionformer" || embd_dim % n_head == 0, ctx, ": embd_dim ", embd_dim,
                   " is not divisible by n_head ", n_head);
    FLOWLESS_CHECK(int(mha_win_size.size()) == backbone_arch[2] + 1, ctx, ": mha_win_size needs ",
                   backbone_arch[2] + 1, " entries");
    FLOWLESS_CHECK(fpn_type == "identity" || fpn_type == "fpn", ctx, ": unknown fpn_type '", fpn_type, "'");
    FLOWLESS_CHECK(channels[1] == 0 || channels[1] - channels[0] == input_dim, ctx, ": channel range [", channels[0],
                   ", ", channels[1], ") does not match input_dim ", input_dim);
  }
};

namespace detail {
/// A JSON integer narrowed to int; an Error naming the field when it does not fit
/// (a silent wrap-around would turn 2^32 + 8 into 8).
inline int checked_int(const std::string& ctx, const char* name, int64_t v) {
  FLOWLESS_CHECK(v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max(), ctx, ": ", name,
                 " = ", v, " is out of range");
  return int(v);
}

inline std::vector<int> json_int_list(const json::Value& v, const std::string& ctx) {
  std::vector<int> out;
  FLOWLESS_CHECK(!v.is_array() || v.as_array().size() <= 4096, ctx, ": integer list of ", v.as_array().size(),
                 " entries is too long");
  if (v.is_array())
    for (auto& e : v.as_array()) out.push_back(checked_int(ctx, "list entry", e.as_int()));
  else
    out.push_back(checked_int(ctx, "list entry", v.as_int()));
  return out;
}
}  // namespace detail

/// Reads a config in the reference's layout (see file comment).
inline DetectorConfig parse_detector_config(const json::Value& root, const std::string& ctx) {
  DetectorConfig c;
  try {
    static const json::Value empty = json::Value::object();
    const json::Value& m = root.contains("model") ? root.at("model") : empty;
    const json::Value& d = root.contains("dataset") ? root.at("dataset") : empty;
    const json::Value& tr = root.contains("train_cfg") ? root.at("train_cfg") : empty;
    const json::Value& te = root.contains("test_cfg") ? root.at("test_cfg") : empty;
    const json::Value& fl = root.contains("flowless") ? root.at("flowless") : empty;
    const bool tridet_model = root.string_or("model_name", "") == "TriDet";
    std::string bt = m.string_or("backbone_type", tridet_model ? "SGP" : "convTransformer");
    FLOWLESS_CHECK(bt == "convTransformer" || bt == "convPooler" || bt == "SGP", "model.backbone_type '", bt,
                   "' is not supported (convTransformer, convPooler, SGP)");
    c.arch = bt == "convPooler" ? "temporalmaxer" : bt == "SGP" ? "tridet" : "actionformer";
    c.arch = fl.string_or("arch", c.arch);
    // TemporalMaxer's own configs (model_name TemporalMaxerArchitecture, a
    // two-entry backbone_arch [#embedding convs, #poolings]): its neck, its
    // unmasked embedding, its SimOTA assigner, and the reference's padding to
    // max_seq_len at inference (the group norm sees the padded steps).
    const bool tm_reference =
        bt == "convPooler" && (root.string_or("model_name", "") == "TemporalMaxerArchitecture" ||
                               (m.contains("backbone_arch") && m.at("backbone_arch").is_array() &&
                                m.at("backbone_arch").as_array().size() == 2));
    if (tm_reference) {
      c.fpn_norm = "groupnorm";
      c.mask_embedding = false;
      c.inference_padding = "max_seq_len";
    }
    if (m.contains("assigner")) {
      const json::Value& as = m.at("assigner");
      FLOWLESS_CHECK(as.is_object(), ctx, ": model.assigner must be an object, got ", as.type_name());
      for (const auto& kv : as.items())
        FLOWLESS_CHECK(kv.first == "center_radius" || kv.first == "iou_weight" || kv.first == "cls_weight" ||
                           kv.first == "keep_percent" || kv.first == "confuse_weight",
                       ctx, ": unknown model.assigner key '", kv.first,
                       "' (center_radius, iou_weight, cls_weight, keep_percent, confuse_weight)");
      c.label_assigner = "simota";
      c.simota.center_radius = as.number_or("center_radius", c.simota.center_radius);
      c.simota.iou_weight = as.number_or("iou_weight", c.simota.iou_weight);
      c.simota.cls_weight = as.number_or("cls_weight", c.simota.cls_weight);
      c.simota.keep_percent = as.number_or("keep_percent", c.simota.keep_percent);
      c.simota.confuse_weight = as.number_or("confuse_weight", c.simota.confuse_weight);
    }
    if (c.arch == "tridet") c.inference_padding = "max_seq_len";  // the reference pads short videos to max_seq_len
    c.input_dim = detail::checked_int(ctx, "input_dim", m.int_or("input_dim", d.int_or("input_dim", c.input_dim)));
    c.num_classes = detail::checked_int(ctx, "num_classes", m.int_or("num_classes", d.int_or("num_classes", c.num_classes)));
    c.embd_dim = detail::checked_int(ctx, "embd_dim", m.int_or("embd_dim", c.embd_dim));
    c.fpn_dim = detail::checked_int(ctx, "fpn_dim", m.int_or("fpn_dim", c.fpn_dim));
    c.head_dim = detail::checked_int(ctx, "head_dim", m.int_or("head_dim", c.head_dim));
    c.n_head = detail::checked_int(ctx, "n_head", m.int_or("n_head", c.n_head));
    if (m.contains("backbone_arch")) c.backbone_arch = detail::json_int_list(m.at("backbone_arch"), ctx);
    if (tm_reference && c.backbone_arch.size() == 2) c.backbone_arch = {c.backbone_arch[0], 0, c.backbone_arch[1]};
    FLOWLESS_CHECK(c.backbone_arch.size() == 3, "model.backbone_arch must have 3 entries");
    c.scale_factor = detail::checked_int(ctx, "scale_factor", m.int_or("scale_factor", c.scale_factor));
    c.embd_kernel_size = detail::checked_int(ctx, "embd_kernel_size", m.int_or("embd_kernel_size", c.embd_kernel_size));
    c.head_kernel_size = detail::checked_int(ctx, "head_kernel_size", m.int_or("head_kernel_size", c.head_kernel_size));
    c.head_num_layers = detail::checked_int(ctx, "head_num_layers", m.int_or("head_num_layers", c.head_num_layers));
    c.embd_with_ln = m.bool_or("embd_with_ln", c.embd_with_ln);
    c.fpn_with_ln = m.bool_or("fpn_with_ln", c.fpn_with_ln);
    c.head_with_ln = m.bool_or("head_with_ln", c.head_with_ln);
    c.use_abs_pe = m.bool_or("use_abs_pe", c.use_abs_pe);
    c.use_rel_pe = m.bool_or("use_rel_pe", c.use_rel_pe);
    FLOWLESS_CHECK(!c.use_rel_pe, "model.use_rel_pe is not supported");
    c.fpn_type = m.string_or("fpn_type", c.fpn_type);
    c.fpn_norm = m.string_or("fpn_norm", c.fpn_norm);
    c.fpn_num_groups = detail::checked_int(ctx, "num_group", m.int_or("num_group", c.fpn_num_groups));
    c.mask_embedding = fl.bool_or("mask_embedding", c.mask_embedding);
    c.conv_remask = fl.bool_or("conv_remask", c.conv_remask);
    c.conv_norm_eps = fl.number_or("conv_norm_eps", c.conv_norm_eps);
    c.unmasked_boundary_logits = fl.bool_or("unmasked_boundary_logits", c.unmasked_boundary_logits);
    c.test.pre_nms_scope = fl.string_or("pre_nms_scope", c.test.pre_nms_scope);
    c.test.nms.voting_iou_weight = fl.bool_or("voting_iou_weight", c.test.nms.voting_iou_weight);
    c.label_assigner = fl.string_or("label_assigner", c.label_assigner);
    c.fpn_start_level = detail::checked_int(ctx, "fpn_start_level", m.int_or("fpn_start_level", c.fpn_start_level));
    c.max_seq_len = detail::checked_int(ctx, "max_seq_len", m.int_or("max_seq_len", d.int_or("max_seq_len", c.max_seq_len)));
    c.max_buffer_len_factor = m.number_or("max_buffer_len_factor", c.max_buffer_len_factor);
    if (m.contains("regression_range")) {
      c.regression_range.clear();
      for (auto& r : m.at("regression_range").as_array())
        c.regression_range.push_back({float(r[0].as_number()), float(r[1].as_number())});
    }
    {
      const char* win_key = c.arch == "tridet" ? "n_sgp_win_size" : "n_mha_win_size";
      std::vector<int> w = m.contains(win_key) ? detail::json_int_list(m.at(win_key), ctx)
                                               : std::vector<int>{c.arch == "tridet" ? -1 : 19};
      FLOWLESS_CHECK(c.backbone_arch.size() == 3 && c.backbone_arch[2] >= 0 && c.backbone_arch[2] <= 16, ctx,
                     ": backbone_arch must have 3 entries with at most 16 pyramid levels");
      if (w.size() == 1) w.assign(size_t(c.backbone_arch[2]) + 1, w[0]);
      c.mha_win_size = w;
    }
    if (c.arch == "tridet") {
      c.sgp_mlp_dim = detail::checked_int(ctx, "sgp_mlp_dim", m.int_or("sgp_mlp_dim", c.sgp_mlp_dim));
      c.sgp_k = m.number_or("k", c.sgp_k);
      c.sgp_init_conv_vars = m.number_or("init_conv_vars", c.sgp_init_conv_vars);
      c.downsample_type = m.string_or("downsample_type", c.downsample_type);
      c.use_trident_head = m.bool_or("use_trident_head", c.use_trident_head);
      c.num_bins = detail::checked_int(ctx, "num_bins", m.int_or("num_bins", c.num_bins));
      c.boundary_kernel_size = detail::checked_int(ctx, "boudary_kernel_size", m.int_or("boudary_kernel_size", c.boundary_kernel_size));
      c.iou_weight_power = m.number_or("iou_weight_power", c.iou_weight_power);
      c.input_noise = m.number_or("input_noise", c.input_noise);
    }
    c.feat_stride = d.number_or("feat_stride", c.feat_stride);
    c.num_frames = d.number_or("num_frames", c.num_frames);
    c.default_fps = d.number_or("default_fps", 0.0);
    c.force_upsampling = d.bool_or("force_upsampling", c.force_upsampling);
    c.file_prefix = d.string_or("file_prefix", c.file_prefix);
    c.file_ext = d.string_or("file_ext", c.file_ext);
    c.ext_score_file = te.string_or("ext_score_file", c.ext_score_file);
    c.init_loss_norm = tr.number_or("init_loss_norm", c.init_loss_norm);
    c.clip_grad_l2norm = tr.number_or("clip_grad_l2norm", c.clip_grad_l2norm);
    c.cls_prior_prob = tr.number_or("cls_prior_prob", c.cls_prior_prob);
    c.center_sample = tr.string_or("center_sample", c.center_sample);
    c.center_sample_radius = tr.number_or("center_sample_radius", c.center_sample_radius);
    c.loss_weight = tr.number_or("loss_weight", c.loss_weight);
    if (tr.contains("head_empty_cls")) c.head_empty_cls = detail::json_int_list(tr.at("head_empty_cls"), ctx);
    c.dropout = tr.number_or("dropout", c.dropout);
    c.droppath = tr.number_or("droppath", c.droppath);
    c.label_smoothing = tr.number_or("label_smoothing", c.label_smoothing);
    c.test.pre_nms_thresh = float(te.number_or("pre_nms_thresh", c.test.pre_nms_thresh));
    c.test.pre_nms_topk = detail::checked_int(ctx, "pre_nms_topk", te.int_or("pre_nms_topk", c.test.pre_nms_topk));
    c.test.duration_thresh = float(te.number_or("duration_thresh", c.test.duration_thresh));
    c.test.nms.method = te.string_or("nms_method", c.test.nms.method);
    c.test.nms.iou_threshold = float(te.number_or("iou_threshold", c.test.nms.iou_threshold));
    c.test.nms.min_score = float(te.number_or("min_score", c.test.nms.min_score));
    c.test.nms.sigma = float(te.number_or("nms_sigma", c.test.nms.sigma));
    c.test.nms.voting_thresh = float(te.number_or("voting_thresh", c.test.nms.voting_thresh));
    c.test.nms.max_seg_num = detail::checked_int(ctx, "max_seg_num", te.int_or("max_seg_num", c.test.nms.max_seg_num));
    c.test.nms.multiclass = te.bool_or("multiclass_nms", c.test.nms.multiclass);
    c.inference_padding = fl.string_or("inference_padding", c.inference_padding);
    c.modality = fl.string_or("modality", c.modality);
    if (fl.contains("channels")) {
      auto ch = detail::json_int_list(fl.at("channels"), ctx);
      FLOWLESS_CHECK(ch.size() == 2 && ch[0] >= 0 && ch[1] > ch[0], "flowless.channels must be [lo, hi) with lo < hi");
      c.channels = {ch[0], ch[1]};
    }
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(ctx, 0) == 0) throw;
    FLOWLESS_FAIL(ctx, ": ", what);
  }
  c.validate(ctx);
  return c;
}

inline json::Value detector_config_to_json(const DetectorConfig& c) {
  using json::Value;
  auto int_list = [](const std::vector<int>& v) {
    Value a = Value::array();
    for (int x : v) a.push_back(Value(x));
    return a;
  };
  Value root = Value::object();
  if (c.arch == "tridet") root["model_name"] = Value("TriDet");
  Value& m = root["model"];
  m["backbone_type"] = Value(c.arch == "temporalmaxer" ? "convPooler" : c.arch == "tridet" ? "SGP" : "convTransformer");
  m["input_dim"] = Value(c.input_dim);
  m["num_classes"] = Value(c.num_classes);
  m["embd_dim"] = Value(c.embd_dim);
  m["fpn_dim"] = Value(c.fpn_dim);
  m["head_dim"] = Value(c.head_dim);
  m["n_head"] = Value(c.n_head);
  m["backbone_arch"] = int_list(c.backbone_arch);
  m[c.arch == "tridet" ? "n_sgp_win_size" : "n_mha_win_size"] = int_list(c.mha_win_size);
  if (c.arch == "tridet") {
    m["sgp_mlp_dim"] = Value(c.sgp_mlp_dim);
    m["k"] = Value(c.sgp_k);
    m["init_conv_vars"] = Value(c.sgp_init_conv_vars);
    m["downsample_type"] = Value(c.downsample_type);
    m["use_trident_head"] = Value(c.use_trident_head);
    m["num_bins"] = Value(c.num_bins);
    m["boudary_kernel_size"] = Value(c.boundary_kernel_size);
    m["iou_weight_power"] = Value(c.iou_weight_power);
    m["input_noise"] = Value(c.input_noise);
  }
  m["scale_factor"] = Value(c.scale_factor);
  m["embd_kernel_size"] = Value(c.embd_kernel_size);
  m["head_kernel_size"] = Value(c.head_kernel_size);
  m["head_num_layers"] = Value(c.head_num_layers);
  m["embd_with_ln"] = Value(c.embd_with_ln);
  m["fpn_with_ln"] = Value(c.fpn_with_ln);
  m["head_with_ln"] = Value(c.head_with_ln);
  m["use_abs_pe"] = Value(c.use_abs_pe);
  m["use_rel_pe"] = Value(c.use_rel_pe);
  m["fpn_type"] = Value(c.fpn_type);
  m["fpn_start_level"] = Value(c.fpn_start_level);
  if (c.fpn_norm != "layernorm") {
    m["fpn_norm"] = Value(c.fpn_norm);
    m["num_group"] = Value(c.fpn_num_groups);
  }
  Value rr = Value::array();
  for (auto& r : c.regression_range) {
    Value p = Value::array();
    p.push_back(Value(double(r[0])));
    p.push_back(Value(double(r[1])));
    rr.push_back(p);
  }
  m["regression_range"] = rr;
  m["max_seq_len"] = Value(c.max_seq_len);
  m["max_buffer_len_factor"] = Value(c.max_buffer_len_factor);
  if (c.label_assigner == "simota") {
    Value as = Value::object();
    as["center_radius"] = Value(c.simota.center_radius);
    as["iou_weight"] = Value(c.simota.iou_weight);
    as["cls_weight"] = Value(c.simota.cls_weight);
    as["keep_percent"] = Value(c.simota.keep_percent);
    as["confuse_weight"] = Value(c.simota.confuse_weight);
    m["assigner"] = as;
  }
  Value& d = root["dataset"];
  d["feat_stride"] = Value(c.feat_stride);
  d["num_frames"] = Value(c.num_frames);
  d["default_fps"] = c.default_fps > 0 ? Value(c.default_fps) : Value(nullptr);
  d["input_dim"] = Value(c.input_dim);
  d["num_classes"] = Value(c.num_classes);
  d["max_seq_len"] = Value(c.max_seq_len);
  if (c.force_upsampling) d["force_upsampling"] = Value(true);
  if (!c.file_prefix.empty()) d["file_prefix"] = Value(c.file_prefix);
  if (!c.file_ext.empty()) d["file_ext"] = Value(c.file_ext);
  Value& tr = root["train_cfg"];
  tr["init_loss_norm"] = Value(c.init_loss_norm);
  tr["clip_grad_l2norm"] = Value(c.clip_grad_l2norm);
  tr["cls_prior_prob"] = Value(c.cls_prior_prob);
  tr["center_sample"] = Value(c.center_sample);
  tr["center_sample_radius"] = Value(c.center_sample_radius);
  tr["loss_weight"] = Value(c.loss_weight);
  tr["head_empty_cls"] = int_list(c.head_empty_cls);
  tr["dropout"] = Value(c.dropout);
  tr["droppath"] = Value(c.droppath);
  tr["label_smoothing"] = Value(c.label_smoothing);
  Value& te = root["test_cfg"];
  te["pre_nms_thresh"] = Value(double(c.test.pre_nms_thresh));
  te["pre_nms_topk"] = Value(c.test.pre_nms_topk);
  te["duration_thresh"] = Value(double(c.test.duration_thresh));
  te["nms_method"] = Value(c.test.nms.method);
  te["iou_threshold"] = Value(double(c.test.nms.iou_threshold));
  te["min_score"] = Value(double(c.test.nms.min_score));
  te["nms_sigma"] = Value(double(c.test.nms.sigma));
  te["voting_thresh"] = Value(double(c.test.nms.voting_thresh));
  te["max_seg_num"] = Value(c.test.nms.max_seg_num);
  te["multiclass_nms"] = Value(c.test.nms.multiclass);
  te["ext_score_file"] = c.ext_score_file.empty() ? Value(nullptr) : Value(c.ext_score_file);
  Value& fl = root["flowless"];
  fl["arch"] = Value(c.arch);
  fl["inference_padding"] = Value(c.inference_padding);
  if (!c.mask_embedding) fl["mask_embedding"] = Value(false);
  if (c.conv_remask) fl["conv_remask"] = Value(true);
  if (c.conv_norm_eps != 1e-5) fl["conv_norm_eps"] = Value(c.conv_norm_eps);
  if (c.unmasked_boundary_logits) fl["unmasked_boundary_logits"] = Value(true);
  if (c.test.pre_nms_scope != "level") fl["pre_nms_scope"] = Value(c.test.pre_nms_scope);
  if (!c.test.nms.voting_iou_weight) fl["voting_iou_weight"] = Value(false);
  if (c.label_assigner != "center") fl["label_assigner"] = Value(c.label_assigner);
  fl["modality"] = Value(c.modality);
  if (c.channels[1] > 0) {
    Value ch = Value::array();
    ch.push_back(Value(c.channels[0]));
    ch.push_back(Value(c.channels[1]));
    fl["channels"] = ch;
  }
  return root;
}

}  // namespace flowless
