// flowless/dcd/student.hpp - the DCD RGB student (docs/dcd.md).
//
// Training graph (per pyramid level l, all layers shared across levels):
//   x: (B, T, C_rgb) -> trunk (a detector's backbone + neck, any family)
//     -> P[l]: (B, T_l, fpn_dim)
//   F_m[l] = proj_motion(P[l]),  F_a[l] = proj_appearance(P[l])     (1x1, width D)
//   branch heads H (ONE cls + reg pair, shared by F_m and F_a and all levels):
//     H(F_m) -> distillation toward the teacher,  H(F_a) -> ground truth
//   fusion "laf":    Z[l] = concat(LAF_m(F_m <- F_a), LAF_a(F_a <- F_m))  (B, T_l, 2D)
//          "concat": Z[l] = concat(F_m, F_a)                              (the ablation)
//   joint heads H_J on Z -> ground truth; at inference the ONLY head used.
// Inference: trunk -> both projections -> fusion -> joint heads -> the
// detector's post-processing (detect(), same semantics as Detector::detect).
// For analysis, set_inference_head(StudentHead::motion | appearance) makes
// forward()/detect() read the shared branch heads on F_m or F_a instead (the
// paper's per-branch ablation); the default and the deployed path is joint.
//
// Parameter names (stable; the file format depends on them), in order:
//   backbone.*, neck.*                  the detector's names
//   proj_motion.conv.*, proj_appearance.conv.*
//   branch_cls_head.*, branch_reg_head.*  (ClsHead / RegHead names)
//   laf_motion.*, laf_appearance.*      (fusion "laf" only; dcd/laf.hpp names)
//   joint_cls_head.*, joint_reg_head.*
// Initialisation: one Rng(seed) draws backbone, neck, then the rest in the
// order above, so the trunk starts exactly as a Detector built from the same
// config and seed.
//
// Config (DcdStudentConfig): a DetectorConfig for the trunk and heads
// (input_dim = the RGB width, channels = the RGB range of the feature files)
// plus "dcd": {"branch_dim": D (0 = fpn_dim), "fusion": "laf"|"concat",
// "laf": LafOptions}. JSON = the detector's config JSON with that extra
// "dcd" section.
// Model file: safetensors, format "flowless-dcd-student", metadata "config"
// = the JSON above; tensors = the student's state dict only (no teacher, no
// distillation adapter).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "flowless/dcd/laf.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/models/detector.hpp"

namespace flowless::dcd {

using models::DetectorOutput;
using models::Pyramid;
using models::VideoTargets;

struct DcdStudentConfig {
  DetectorConfig detector;     // trunk + head settings, input_dim = RGB width
  int branch_dim = 0;          // D of F_m and F_a; 0 = detector.fpn_dim
  std::string fusion = "laf";  // "laf" | "concat"
  LafOptions laf;

  int dim() const { return branch_dim > 0 ? branch_dim : detector.fpn_dim; }
  void validate(const std::string& ctx) const {
    detector.validate(ctx);
    FLOWLESS_CHECK(detector.arch != "tridet", ctx, ": the TriDet family is not supported as a DCD student (the "
                   "student's heads are ActionFormer's, not the Trident head)");
    FLOWLESS_CHECK(branch_dim >= 0, ctx, ": dcd.branch_dim must be >= 0 (0 = fpn_dim), got ", branch_dim);
    FLOWLESS_CHECK(fusion == "laf" || fusion == "concat", ctx, ": dcd.fusion must be laf or concat, got '", fusion, "'");
    laf.validate(ctx);
  }
};

inline json::Value dcd_student_config_to_json(const DcdStudentConfig& c) {
  json::Value root = detector_config_to_json(c.detector);
  json::Value d = json::Value::object();
  d["branch_dim"] = json::Value(c.branch_dim);
  d["fusion"] = json::Value(c.fusion);
  d["laf"] = laf_options_to_json(c.laf);
  root["dcd"] = d;
  return root;
}

/// Reads a student config: a detector config JSON with an optional "dcd" section.
inline DcdStudentConfig parse_dcd_student_config(const json::Value& root, const std::string& ctx) {
  DcdStudentConfig c;
  c.detector = parse_detector_config(root, ctx);
  if (root.contains("dcd")) {
    const json::Value& d = root.at("dcd");
    FLOWLESS_CHECK(d.is_object(), ctx, ": 'dcd' must be an object");
    c.branch_dim = int(d.int_or("branch_dim", c.branch_dim));
    c.fusion = d.string_or("fusion", c.fusion);
    if (d.contains("laf")) c.laf = parse_laf_options(d.at("laf"), ctx + " (dcd.laf)");
  }
  c.validate(ctx);
  return c;
}

// ---------------------------------------------------------------------------
// Detector-head helpers shared by the student and the training tasks.

using models::pyramid_points;  // defined next to Detector (models/detector.hpp)
using models::detect_video;

/// Label assignment of a batch (Detector::assign per video): center
/// sampling. The distillation tasks assign once for several heads, so
/// SimOTA (which reads one head's outputs) is refused here.
inline std::vector<PointTargets> assign_targets(const DetectorConfig& c, const PointSet& pts,
                                                const std::vector<VideoTargets>& gt) {
  FLOWLESS_CHECK(c.label_assigner == "center", "distillation training assigns labels by center sampling; the SimOTA "
                 "assigner (model.assigner) is supported for detector training only");
  std::vector<PointTargets> out;
  for (const auto& g : gt)
    out.push_back(label_points(pts, g.segments, g.labels, c.num_classes, c.center_sample, float(c.center_sample_radius)));
  return out;
}

/// The detector loss on head outputs (Detector::loss with precomputed targets).
/// update = false evaluates with the criterion's current normaliser.
template <class T>
DetectionLossOutput<T> head_loss(const DetectorOutput<T>& out, const PointSet& pts, const std::vector<PointTargets>& targets,
                                 DetectionLoss<T>& criterion, bool update = true) {
  const int64_t B = out.cls_logits[0].size(0);
  FLOWLESS_CHECK(int64_t(targets.size()) == B, "detection loss: ", targets.size(), " targets for batch ", B);
  std::vector<std::vector<int>> valid(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b)
    for (auto& l : out.lengths) valid[size_t(b)].push_back(l[size_t(b)]);
  Var<T> cls = concat_time(out.cls_logits), off = concat_time(out.offsets);
  if (!out.start_logits.empty()) {  // TriDet's Trident head
    Var<T> st = concat_time(out.start_logits), en = concat_time(out.end_logits);
    return update ? criterion.trident(cls, off, st, en, pts, valid, targets)
                  : criterion.trident_evaluate(cls, off, st, en, pts, valid, targets);
  }
  return update ? criterion(cls, off, pts, valid, targets) : criterion.evaluate(cls, off, pts, valid, targets);
}

// ---------------------------------------------------------------------------

/// Which head forward()/detect() read: the joint head on the fused features
/// (the deployed path), or the shared branch heads on one branch (analysis).
enum class StudentHead { joint, motion, appearance };

inline StudentHead parse_student_head(const std::string& s) {
  if (s == "joint") return StudentHead::joint;
  if (s == "motion") return StudentHead::motion;
  if (s == "appearance") return StudentHead::appearance;
  FLOWLESS_FAIL("unknown student head '", s, "' (joint | motion | appearance)");
}

/// Everything the training losses read, per level l.
template <class T>
struct DcdStudentOutput {
  std::vector<std::vector<int>> lengths;  // [l][b]
  std::vector<Var<T>> trunk;              // [l]: (B, T_l, fpn_dim) neck features
  std::vector<Var<T>> motion;             // [l]: (B, T_l, D) F_m
  std::vector<Var<T>> appearance;         // [l]: (B, T_l, D) F_a
  std::vector<Var<T>> fused;              // [l]: (B, T_l, 2D) Z
  DetectorOutput<T> joint;                // H_J(Z), feats = Z
};

template <class T>
class DcdStudent : public nn::Module<T> {
 public:
  explicit DcdStudent(const DcdStudentConfig& c, uint64_t seed = 1234567891ULL)
      : cfg_((c.validate("DCD student config"), c)), rng_(seed),
        backbone_(models::make_backbone<T>(c.detector, rng_)), neck_(models::make_neck<T>(c.detector, rng_)),
        proj_motion_(c.detector.fpn_dim, c.dim(), 1, 1, 0, 1, true, &rng_),
        proj_appearance_(c.detector.fpn_dim, c.dim(), 1, 1, 0, 1, true, &rng_),
        branch_cls_(head_options(c, c.dim()), c.detector.num_classes, c.detector.cls_prior_prob, c.detector.head_empty_cls, rng_),
        branch_reg_(head_options(c, c.dim()), c.detector.num_levels(), rng_) {
    this->register_module("backbone", *backbone_);
    this->register_module("neck", *neck_);
    this->register_module("proj_motion", proj_motion_);
    this->register_module("proj_appearance", proj_appearance_);
    this->register_module("branch_cls_head", branch_cls_);
    this->register_module("branch_reg_head", branch_reg_);
    if (c.fusion == "laf") {
      laf_motion_ = std::make_unique<LAF<T>>(c.dim(), c.laf, &rng_);
      laf_appearance_ = std::make_unique<LAF<T>>(c.dim(), c.laf, &rng_);
      this->register_module("laf_motion", *laf_motion_);
      this->register_module("laf_appearance", *laf_appearance_);
    }
    joint_cls_ = std::make_unique<models::ClsHead<T>>(head_options(c, 2 * c.dim()), c.detector.num_classes,
                                                      c.detector.cls_prior_prob, c.detector.head_empty_cls, rng_);
    joint_reg_ = std::make_unique<models::RegHead<T>>(head_options(c, 2 * c.dim()), c.detector.num_levels(), rng_);
    this->register_module("joint_cls_head", *joint_cls_);
    this->register_module("joint_reg_head", *joint_reg_);
  }

  const DcdStudentConfig& config() const { return cfg_; }
  /// The inference path's detector settings (input, classes, points, post-processing).
  const DetectorConfig& detector_config() const { return cfg_.detector; }
  int dim() const { return cfg_.dim(); }
  Rng& rng() { return rng_; }
  nn::MaskedConv1d<T>& proj_motion() { return proj_motion_; }
  nn::MaskedConv1d<T>& proj_appearance() { return proj_appearance_; }
  models::ClsHead<T>& branch_cls_head() { return branch_cls_; }
  models::RegHead<T>& branch_reg_head() { return branch_reg_; }
  models::ClsHead<T>& joint_cls_head() { return *joint_cls_; }
  models::RegHead<T>& joint_reg_head() { return *joint_reg_; }
  LAF<T>* laf_motion() { return laf_motion_.get(); }
  LAF<T>* laf_appearance() { return laf_appearance_.get(); }

  static models::HeadOptions head_options(const DcdStudentConfig& c, int input_dim) {
    models::HeadOptions o = models::Detector<T>::head_options(c.detector);
    o.input_dim = input_dim;
    return o;
  }

  /// Backbone + neck on x: (B, T, C_rgb); T divisible by max_div_factor().
  Pyramid<T> trunk(const Var<T>& x, const std::vector<int>& lengths) {
    check_input(x, lengths);
    auto [feats, lens] = backbone_->forward(x, lengths, rng_);
    std::vector<std::vector<int>> fpn_lens(lens.begin() + cfg_.detector.fpn_start_level, lens.end());
    return {neck_->forward(feats, lens), fpn_lens};
  }

  std::vector<Var<T>> project_motion(const Pyramid<T>& p) const { return project(proj_motion_, p); }
  std::vector<Var<T>> project_appearance(const Pyramid<T>& p) const { return project(proj_appearance_, p); }

  /// The shared branch heads on F_m or F_a (feats[l]: (B, T_l, D)).
  DetectorOutput<T> branch_heads(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>& lengths) {
    return heads(branch_cls_, branch_reg_, feats, lengths);
  }

  /// Z[l] (B, T_l, 2D) from F_m[l] and F_a[l].
  std::vector<Var<T>> fuse(const std::vector<Var<T>>& motion, const std::vector<Var<T>>& appearance,
                           const std::vector<std::vector<int>>& lengths) const {
    FLOWLESS_CHECK(motion.size() == appearance.size() && motion.size() == lengths.size(), "DcdStudent::fuse: ",
                   motion.size(), " motion, ", appearance.size(), " appearance levels and ", lengths.size(), " lengths");
    ConvWeightCacheScope weights_once;  // LAF's query/key weights packed once for all levels, as in the heads
    std::vector<Var<T>> out;
    for (size_t l = 0; l < motion.size(); ++l) {
      if (laf_motion_)
        out.push_back(concat_channels<T>({laf_motion_->forward(motion[l], appearance[l], lengths[l]),
                                          laf_appearance_->forward(appearance[l], motion[l], lengths[l])}));
      else
        out.push_back(concat_channels<T>({motion[l], appearance[l]}));
    }
    return out;
  }

  DetectorOutput<T> joint_heads(const std::vector<Var<T>>& fused, const std::vector<std::vector<int>>& lengths) {
    return heads(*joint_cls_, *joint_reg_, fused, lengths);
  }

  /// The full graph without the branch heads. detach_branches cuts the joint
  /// path from the projections and trunk (gradients of the joint loss then
  /// stop at the fusion layers).
  DcdStudentOutput<T> forward_all(const Var<T>& x, const std::vector<int>& lengths, bool detach_branches = false) {
    DcdStudentOutput<T> o;
    Pyramid<T> p = trunk(x, lengths);
    o.lengths = p.second;
    o.trunk = p.first;
    o.motion = project_motion(p);
    o.appearance = project_appearance(p);
    if (detach_branches) {
      std::vector<Var<T>> m, a;
      for (auto& v : o.motion) m.push_back(v.detach());
      for (auto& v : o.appearance) a.push_back(v.detach());
      o.fused = fuse(m, a, o.lengths);
    } else {
      o.fused = fuse(o.motion, o.appearance, o.lengths);
    }
    o.joint = joint_heads(o.fused, o.lengths);
    return o;
  }

  /// Inference path: joint head outputs (feats = Z); with
  /// set_inference_head(motion | appearance) the branch heads on F_m or F_a.
  DetectorOutput<T> forward(const Var<T>& x, const std::vector<int>& lengths) {
    Pyramid<T> p = trunk(x, lengths);
    if (head_ == StudentHead::motion) return branch_heads(project_motion(p), p.second);
    if (head_ == StudentHead::appearance) return branch_heads(project_appearance(p), p.second);
    return joint_heads(fuse(project_motion(p), project_appearance(p), p.second), p.second);
  }

  void set_inference_head(StudentHead h) { head_ = h; }
  StudentHead inference_head() const { return head_; }

  PointSet points(int64_t Tbuf) const { return pyramid_points(cfg_.detector, Tbuf); }

  /// Detects actions in one video with the inference head (joint unless
  /// set_inference_head chose a branch). feats: (Tn, C_rgb) host floats.
  std::vector<Detection> detect(const float* feats, int64_t Tn, int64_t Cin, const VideoMeta& meta,
                                DetectorOutput<T>* raw = nullptr) {
    return detect_video<T>(cfg_.detector, *this, [this](const Var<T>& x, const std::vector<int>& l) { return forward(x, l); },
                           feats, Tn, Cin, meta, raw);
  }

 private:
  std::vector<Var<T>> project(const nn::MaskedConv1d<T>& proj, const Pyramid<T>& p) const {
    ConvWeightCacheScope weights_once;  // the projection's weight packed once for all levels
    std::vector<Var<T>> out;
    for (size_t l = 0; l < p.first.size(); ++l) out.push_back(proj.forward(p.first[l], p.second[l]));
    return out;
  }
  static DetectorOutput<T> heads(models::ClsHead<T>& cls, models::RegHead<T>& reg, const std::vector<Var<T>>& feats,
                                 const std::vector<std::vector<int>>& lengths) {
    DetectorOutput<T> out;
    out.feats = feats;
    out.lengths = lengths;
    out.cls_logits = cls.forward(feats, lengths);
    out.offsets = reg.forward(feats, lengths);
    return out;
  }
  void check_input(const Var<T>& x, const std::vector<int>& lengths) const {
    const DetectorConfig& c = cfg_.detector;
    FLOWLESS_CHECK(x.value().dim() == 3, "DcdStudent: input must be (B, T, C), got ", x.shape().str());
    FLOWLESS_CHECK(x.size(2) == c.input_dim, "DcdStudent: input has ", x.size(2), " channels, the model expects ",
                   c.input_dim);
    FLOWLESS_CHECK(int64_t(lengths.size()) == x.size(0), "DcdStudent: ", lengths.size(), " lengths for batch ", x.size(0));
    FLOWLESS_CHECK(x.size(1) % c.max_div_factor() == 0, "DcdStudent: buffer length ", x.size(1), " is not divisible by ",
                   c.max_div_factor(), " (pad with detector_config().inference_length)");
    for (int L : lengths)
      FLOWLESS_CHECK(L > 0 && L <= x.size(1), "DcdStudent: valid length ", L, " outside [1, ", x.size(1), "]");
  }

  DcdStudentConfig cfg_;
  StudentHead head_ = StudentHead::joint;
  Rng rng_;
  std::unique_ptr<models::Backbone<T>> backbone_;
  std::unique_ptr<models::Neck<T>> neck_;
  nn::MaskedConv1d<T> proj_motion_, proj_appearance_;
  models::ClsHead<T> branch_cls_;
  models::RegHead<T> branch_reg_;
  std::unique_ptr<LAF<T>> laf_motion_, laf_appearance_;
  std::unique_ptr<models::ClsHead<T>> joint_cls_;
  std::unique_ptr<models::RegHead<T>> joint_reg_;
};

// ---------------------------------------------------------------------------
// Model files.

inline constexpr const char* kDcdStudentFormat = "flowless-dcd-student";

template <class T>
void save_dcd_student(const std::string& path, const DcdStudent<T>& model,
                      const std::map<std::string, std::string>& extra_metadata = {}) {
  io::SafeTensors st;
  st.metadata = extra_metadata;
  st.metadata["format"] = kDcdStudentFormat;
  st.metadata["config"] = json::dump(dcd_student_config_to_json(model.config()));
  st.tensors = nn::to_float32_arrays(model.state_dict());
  io::save_safetensors(path, st);
}

inline DcdStudentConfig read_dcd_student_config(const io::SafeTensors& st, const std::string& path) {
  auto it = st.metadata.find("config");
  FLOWLESS_CHECK(it != st.metadata.end(), path, ": no 'config' in the safetensors metadata; is this a flowless model?");
  return parse_dcd_student_config(json::parse(it->second, path + " (metadata config)"), path);
}

/// Builds a student from an already loaded file (format checked).
template <class T>
std::unique_ptr<DcdStudent<T>> dcd_student_from_safetensors(const io::SafeTensors& st, const std::string& path) {
  auto fmt = st.metadata.find("format");
  FLOWLESS_CHECK(fmt != st.metadata.end() && fmt->second == kDcdStudentFormat, path, ": format '",
                 fmt == st.metadata.end() ? std::string("(none)") : fmt->second, "' is not a DCD student (",
                 kDcdStudentFormat, ")");
  auto model = std::make_unique<DcdStudent<T>>(read_dcd_student_config(st, path));
  model->load_state_dict(st.tensors, path, true);
  model->train(false);
  return model;
}

template <class T>
std::unique_ptr<DcdStudent<T>> load_dcd_student(const std::string& path) {
  return dcd_student_from_safetensors<T>(io::load_safetensors(path), path);
}

}  // namespace flowless::dcd
