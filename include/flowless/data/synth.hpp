// flowless/data/synth.hpp - the built-in synthetic benchmark.
//
// write_synthetic_dataset(out_dir, cfg, seed) writes a complete dataset
// folder in the reference layout (see dataset.hpp):
//   dataset.json, annotations.json ("Validation" = train, "Test" = test, like
//   THUMOS14), features/<id>.npy of shape (T, rgb_dim + flow_dim) with the RGB
//   channels first, and synth.json (the generator's config and seed).
// The generative model (equations and parameters in docs/synth.md) puts the
// motion information cleanly into the flow channels, and only weakly and
// non-linearly into the RGB channels, whose appearance cue starts before and
// ends after each action and is shared by pairs of classes. That is the
// structure decomposed cross-modal distillation is about: two-stream > RGB.
//
// Deterministic: the same config and seed give the same bytes (each video has
// its own random stream, so changing the number of test videos leaves the
// training videos unchanged). The folder is built under "<out_dir>.tmp.<pid>"
// and renamed into place; a non-empty out_dir is refused unless overwrite is
// set, and then only if it is a dataset folder (holds dataset.json).
#pragma once

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/core/random.hpp"
#include "flowless/data/annotations.hpp"
#include "flowless/data/dataset.hpp"
#include "flowless/io/array.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"
#include "flowless/io/npy.hpp"

namespace flowless::data {

/// Every parameter of the generator. Times are in seconds, rates in events
/// per minute, amplitudes in units of the per-channel noise std (1 = as
/// strong as the noise). docs/synth.md gives the equations they enter.
struct SynthConfig {
  std::string name = "custom";
  // ---- sizes
  int num_train_videos = 160;  // subset "Validation" (the training split, as in THUMOS14)
  int num_test_videos = 80;    // subset "Test"
  int rgb_dim = 64;            // channels [0, rgb_dim)
  int flow_dim = 64;           // channels [rgb_dim, rgb_dim + flow_dim)
  int num_classes = 10;
  int num_shared_pairs = 3;    // classes (0,1), (2,3), ... share one appearance and differ only in motion
  int num_motion_pairs = 0;    // the next pairs (2P, 2P+1), ... share one motion and differ only in appearance
  // ---- time base: snippet t covers frames [feat_stride*t, feat_stride*t + num_frames)
  int feat_stride = 4;
  int num_frames = 16;
  double fps = 30;
  bool vary_fps = true;        // per-video fps: 30 / 29.97 / 25 / 24 with THUMOS14's frequencies
  // ---- video durations: log-normal, clamped
  double duration_log_mean = 3.689;  // ln 40 s
  double duration_log_std = 0.7;
  double duration_min = 9, duration_max = 200;
  // ---- action lengths: log-normal (per-class log offset), clamped
  double action_log_mean = 0.788;    // ln 2.2 s
  double action_log_std = 0.75;
  double action_min = 0.3, action_max = 40;
  double class_length_spread = 0.3;  // std of the per-class offset of ln(length)
  // ---- placement
  double coverage_min = 0.2, coverage_max = 0.45;  // per-video fraction of time inside actions (target)
  double overlap_prob = 0.05;        // next instance starts inside the previous one ...
  double overlap_max = 0.3;          // ... by up to this fraction of the previous length
  double second_class_prob = 0.3;    // a video holds a second class
  double partner_prob = 0.7;         // ... which is the appearance partner of the first when it has one
  double dup_prob = 0.05;            // class-0 instance also annotated as class 1 (cf. CliffDiving/Diving)
  // ---- flow channels
  double motion_amp = 1.0;           // class motion signature M_k, per channel
  double motion_phase = 0.5;         // start-to-end drift Phi_k relative to motion_amp
  double instance_amp_jitter = 0.2;  // per-instance motion gain 1 +- this
  double flow_noise = 1.0;
  double camera_amp = 0.5;           // slow camera sway (global flow direction)
  double camera_pan_rate = 1.0;      // camera pans per minute
  double camera_pan_amp = 1.5;
  double flow_clutter_rate = 2.0;    // non-class background motions per minute
  double flow_clutter_amp = 1.0;
  // ---- RGB channels
  double appearance_amp = 1.0;       // group appearance A_g, per channel
  double actor_std = 0.5;            // per-instance appearance variation
  double scene_amp = 1.0;            // per-video constant scene vector
  double light_amp = 0.5;            // lighting drift
  double rgb_noise = 1.0;
  double rgb_clutter_rate = 2.0;     // background appearance events per minute
  double rgb_clutter_amp = 1.0;
  double ctx_lead_min = 0.5, ctx_lead_max = 2.0;  // appearance starts this long before the action ...
  double ctx_lead_rel = 0.2;         // ... plus up to this fraction of the action length (same for the lag)
  double ctx_ramp_min = 0.3, ctx_ramp_max = 1.0;  // fade-in/out time of the appearance
  double distractor_rate = 0.5;      // appearance-only episodes (actor present, no action) per minute
  double leak_amp = 0.25;            // motion leak into RGB: leak_amp * tanh(leak_gain * P m)
  double leak_gain = 1.0;
  double noise_corr = 0.5;           // AR(1) coefficient of the noise along time (both modalities)
  // ---- written into dataset.json (training defaults)
  int max_seq_len = 768;
  double trunc_thresh = 0.5;
  bool use_crop_ratio = true;
  double crop_lo = 0.9, crop_hi = 1.0;
  std::string feature_dtype = "f32";  // "f32" or "f16"
};

#define FLOWLESS_SYNTH_INT_FIELDS(X) \
  X(num_train_videos) X(num_test_videos) X(rgb_dim) X(flow_dim) X(num_classes) X(num_shared_pairs) \
  X(num_motion_pairs) X(feat_stride) X(num_frames) X(max_seq_len)
#define FLOWLESS_SYNTH_BOOL_FIELDS(X) X(vary_fps) X(use_crop_ratio)
#define FLOWLESS_SYNTH_DOUBLE_FIELDS(X)                                                                  \
  X(fps) X(duration_log_mean) X(duration_log_std) X(duration_min) X(duration_max) X(action_log_mean)   \
  X(action_log_std) X(action_min) X(action_max) X(class_length_spread) X(coverage_min) X(coverage_max) \
  X(overlap_prob) X(overlap_max) X(second_class_prob) X(partner_prob) X(dup_prob) X(motion_amp)         \
  X(motion_phase) X(instance_amp_jitter) X(flow_noise) X(camera_amp) X(camera_pan_rate)                 \
  X(camera_pan_amp) X(flow_clutter_rate) X(flow_clutter_amp) X(appearance_amp) X(actor_std)             \
  X(scene_amp) X(light_amp) X(rgb_noise) X(rgb_clutter_rate) X(rgb_clutter_amp) X(ctx_lead_min)        \
  X(ctx_lead_max) X(ctx_lead_rel) X(ctx_ramp_min) X(ctx_ramp_max) X(distractor_rate) X(leak_amp)       \
  X(leak_gain) X(noise_corr) X(trunc_thresh) X(crop_lo) X(crop_hi)

/// Checks a config; errors name `ctx` and the field.
inline void validate_synth_config(const SynthConfig& c, const std::string& ctx = "SynthConfig") {
  auto pos = [&](double v, const char* f) { FLOWLESS_CHECK(std::isfinite(v) && v > 0, ctx, ": '", f, "' must be > 0 (got ", v, ")"); };
  auto nonneg = [&](double v, const char* f) { FLOWLESS_CHECK(std::isfinite(v) && v >= 0, ctx, ": '", f, "' must be >= 0 (got ", v, ")"); };
  auto prob = [&](double v, const char* f) { FLOWLESS_CHECK(v >= 0 && v <= 1, ctx, ": '", f, "' must be in [0, 1] (got ", v, ")"); };
  FLOWLESS_CHECK(c.num_train_videos >= 0 && c.num_test_videos >= 0 && c.num_train_videos + c.num_test_videos > 0, ctx,
                 ": needs at least one video");
  FLOWLESS_CHECK(c.rgb_dim > 0 && c.flow_dim > 0, ctx, ": 'rgb_dim' and 'flow_dim' must be > 0");
  FLOWLESS_CHECK(c.num_classes >= 2, ctx, ": 'num_classes' must be >= 2 (got ", c.num_classes, ")");
  FLOWLESS_CHECK(c.num_shared_pairs >= 0 && 2 * c.num_shared_pairs <= c.num_classes, ctx,
                 ": 'num_shared_pairs' must be in [0, num_classes / 2] (got ", c.num_shared_pairs, ")");
  FLOWLESS_CHECK(c.num_motion_pairs >= 0 && 2 * (c.num_shared_pairs + c.num_motion_pairs) <= c.num_classes, ctx,
                 ": 'num_motion_pairs' must be in [0, num_classes / 2 - num_shared_pairs] (got ", c.num_motion_pairs, ")");
  FLOWLESS_CHECK(c.feat_stride > 0 && c.num_frames >= 0, ctx, ": 'feat_stride' must be > 0 and 'num_frames' >= 0");
  pos(c.fps, "fps");
  FLOWLESS_CHECK(std::isfinite(c.duration_log_mean), ctx, ": 'duration_log_mean' must be finite");
  FLOWLESS_CHECK(std::isfinite(c.action_log_mean), ctx, ": 'action_log_mean' must be finite");
  nonneg(c.duration_log_std, "duration_log_std");
  nonneg(c.action_log_std, "action_log_std");
  pos(c.duration_min, "duration_min");
  FLOWLESS_CHECK(c.duration_max >= c.duration_min, ctx, ": 'duration_max' must be >= 'duration_min'");
  pos(c.action_min, "action_min");
  FLOWLESS_CHECK(c.action_max >= c.action_min, ctx, ": 'action_max' must be >= 'action_min'");
  FLOWLESS_CHECK(c.action_min < c.duration_min, ctx, ": 'action_min' must be < 'duration_min'");
  nonneg(c.class_length_spread, "class_length_spread");
  FLOWLESS_CHECK(c.coverage_min > 0 && c.coverage_min <= c.coverage_max && c.coverage_max < 1, ctx,
                 ": need 0 < coverage_min <= coverage_max < 1");
  prob(c.overlap_prob, "overlap_prob");
  FLOWLESS_CHECK(c.overlap_max >= 0 && c.overlap_max < 1, ctx, ": 'overlap_max' must be in [0, 1)");
  prob(c.second_class_prob, "second_class_prob");
  prob(c.partner_prob, "partner_prob");
  prob(c.dup_prob, "dup_prob");
  for (auto [v, f] : {std::pair<double, const char*>{c.motion_amp, "motion_amp"}, {c.motion_phase, "motion_phase"},
                      {c.flow_noise, "flow_noise"}, {c.camera_amp, "camera_amp"}, {c.camera_pan_rate, "camera_pan_rate"},
                      {c.camera_pan_amp, "camera_pan_amp"}, {c.flow_clutter_rate, "flow_clutter_rate"},
                      {c.flow_clutter_amp, "flow_clutter_amp"}, {c.appearance_amp, "appearance_amp"},
                      {c.actor_std, "actor_std"}, {c.scene_amp, "scene_amp"}, {c.light_amp, "light_amp"},
                      {c.rgb_noise, "rgb_noise"}, {c.rgb_clutter_rate, "rgb_clutter_rate"},
                      {c.rgb_clutter_amp, "rgb_clutter_amp"}, {c.ctx_lead_min, "ctx_lead_min"},
                      {c.ctx_lead_rel, "ctx_lead_rel"}, {c.distractor_rate, "distractor_rate"},
                      {c.leak_amp, "leak_amp"}, {c.leak_gain, "leak_gain"}})
    nonneg(v, f);
  FLOWLESS_CHECK(c.instance_amp_jitter >= 0 && c.instance_amp_jitter < 1, ctx, ": 'instance_amp_jitter' must be in [0, 1)");
  FLOWLESS_CHECK(c.ctx_lead_max >= c.ctx_lead_min, ctx, ": 'ctx_lead_max' must be >= 'ctx_lead_min'");
  pos(c.ctx_ramp_min, "ctx_ramp_min");
  FLOWLESS_CHECK(c.ctx_ramp_max >= c.ctx_ramp_min, ctx, ": 'ctx_ramp_max' must be >= 'ctx_ramp_min'");
  FLOWLESS_CHECK(c.noise_corr >= 0 && c.noise_corr < 1, ctx, ": 'noise_corr' must be in [0, 1)");
  FLOWLESS_CHECK(c.max_seq_len > 0, ctx, ": 'max_seq_len' must be > 0");
  FLOWLESS_CHECK(c.trunc_thresh >= 0 && c.trunc_thresh <= 1, ctx, ": 'trunc_thresh' must be in [0, 1]");
  FLOWLESS_CHECK(!c.use_crop_ratio || (c.crop_lo > 0 && c.crop_lo <= c.crop_hi && c.crop_hi <= 1), ctx,
                 ": need 0 < crop_lo <= crop_hi <= 1");
  FLOWLESS_CHECK(c.feature_dtype == "f32" || c.feature_dtype == "f16", ctx, ": 'feature_dtype' must be \"f32\" or \"f16\" (got \"",
                 c.feature_dtype, "\")");
}

/// Named presets (docs/synth.md has the table):
///   "tiny"        12 + 8 videos, T 64..255, 16 + 16 channels, 4 classes (1 shared pair); CI, < 0.1 s
///   "default"     160 + 80 videos, T 64..1497 (mean ~360), 64 + 64 channels, 10 classes (no shared-appearance
///                 pair, 2 shared-motion pairs), leak_amp 0.5; the demo
///   "long"        120 + 60 videos, longer videos and actions, 48 + 48 channels, 6 classes (1 shared-motion
///                 pair), leak_amp 0.5
///   "thumos-like" 200 + 212 videos, THUMOS14 length statistics, 1024 + 1024 channels (float16), 20 classes (4 pairs)
inline SynthConfig synth_preset(const std::string& name) {
  SynthConfig c;
  if (name == "default") {
    c.name = "default";
    // RGB tells every class apart by its look (no shared-appearance pair) but
    // finds the boundaries only through the motion leak, which at 0.5 carries
    // usable, noisy motion (docs/synth.md, "How much motion the RGB carries").
    c.num_shared_pairs = 0;
    c.num_motion_pairs = 2;  // classes 0/1 and 2/3 move alike: flow-only cannot separate them, RGB can
    c.leak_amp = 0.5;
    return c;
  }
  if (name == "tiny") {
    c.name = "tiny";
    c.num_train_videos = 12;
    c.num_test_videos = 8;
    c.rgb_dim = 16;
    c.flow_dim = 16;
    c.num_classes = 4;
    c.num_shared_pairs = 1;
    c.vary_fps = false;
    c.duration_log_mean = 2.890;  // ln 18 s
    c.duration_log_std = 0.4;
    c.duration_min = 9;
    c.duration_max = 34.5;        // T in [64, 255] at 30 fps
    c.action_log_mean = 0.405;    // ln 1.5 s
    c.action_log_std = 0.6;
    c.action_min = 0.3;
    c.action_max = 8;
    c.coverage_min = 0.25;
    c.coverage_max = 0.45;
    c.dup_prob = 0.1;
    c.max_seq_len = 256;
    return c;
  }
  if (name == "thumos-like") {
    c.name = "thumos-like";
    c.num_train_videos = 200;
    c.num_test_videos = 212;
    c.rgb_dim = 1024;
    c.flow_dim = 1024;
    c.num_classes = 20;
    c.num_shared_pairs = 4;
    c.duration_log_mean = 4.980;  // THUMOS14: 8.9 .. 1673 s, mean 213 s
    c.duration_log_std = 0.878;
    c.duration_min = 8.9;
    c.duration_max = 1673.4;
    c.action_log_mean = 1.109;    // THUMOS14: 0.2 .. 118 s, mean 4.3 s
    c.action_log_std = 0.835;
    c.action_min = 0.2;
    c.action_max = 118.1;
    c.coverage_min = 0.1;         // THUMOS14 mean coverage 0.31 -> ~15 instances per video
    c.coverage_max = 0.52;
    c.max_seq_len = 2304;
    c.feature_dtype = "f16";
    return c;
  }
  if (name == "long") {
    // A second benchmark with other statistics: fewer classes, longer videos
    // and actions, longer appearance lead/lag, a different feature width.
    c.name = "long";
    c.num_train_videos = 120;
    c.num_test_videos = 60;
    c.rgb_dim = 48;
    c.flow_dim = 48;
    c.num_classes = 6;
    c.num_shared_pairs = 0;
    c.num_motion_pairs = 1;
    c.duration_log_mean = 4.094;  // ln 60 s
    c.duration_log_std = 0.6;
    c.duration_min = 12;
    c.duration_max = 240;
    c.action_log_mean = 1.609;    // ln 5 s
    c.action_log_std = 0.6;
    c.action_min = 0.5;
    c.action_max = 60;
    c.coverage_min = 0.3;
    c.coverage_max = 0.55;
    c.ctx_lead_min = 1.0;
    c.ctx_lead_max = 3.0;
    c.leak_amp = 0.5;
    return c;
  }
  FLOWLESS_FAIL("synth_preset: unknown preset '", name, "' (known: tiny, default, long, thumos-like)");
}

inline json::Value synth_config_to_json(const SynthConfig& c) {
  json::Value v = json::Value::object();
  v["name"] = c.name;
#define FLOWLESS_SYNTH_PUT(f) v[#f] = c.f;
  FLOWLESS_SYNTH_INT_FIELDS(FLOWLESS_SYNTH_PUT)
  FLOWLESS_SYNTH_BOOL_FIELDS(FLOWLESS_SYNTH_PUT)
  FLOWLESS_SYNTH_DOUBLE_FIELDS(FLOWLESS_SYNTH_PUT)
#undef FLOWLESS_SYNTH_PUT
  v["feature_dtype"] = c.feature_dtype;
  return v;
}

/// Overrides fields of `base` with those present in `v` (an object); unknown
/// keys are errors naming `ctx`. A "preset" key first replaces base by that preset.
inline SynthConfig synth_config_from_json(const json::Value& v, SynthConfig base, const std::string& ctx) {
  FLOWLESS_CHECK(v.is_object(), ctx, ": synthetic dataset config must be a JSON object");
  if (v.contains("preset")) {
    FLOWLESS_CHECK(v.at("preset").is_string(), ctx, ": 'preset' must be a string");
    base = synth_preset(v.at("preset").as_string());
  }
  for (const auto& kv : v.items()) {
    const std::string& k = kv.first;
    const json::Value& x = kv.second;
    bool done = k == "preset";
    if (k == "name" || k == "feature_dtype") {
      FLOWLESS_CHECK(x.is_string(), ctx, ": '", k, "' must be a string");
      (k == "name" ? base.name : base.feature_dtype) = x.as_string();
      done = true;
    }
#define FLOWLESS_SYNTH_GET_INT(f)                                                                   \
  if (k == #f) {                                                                                    \
    FLOWLESS_CHECK(x.is_number() && x.as_number() == std::floor(x.as_number()), ctx, ": '", #f,     \
                   "' must be an integer");                                                         \
    base.f = static_cast<int>(x.as_number());                                                       \
    done = true;                                                                                    \
  }
#define FLOWLESS_SYNTH_GET_BOOL(f)                                      \
  if (k == #f) {                                                        \
    FLOWLESS_CHECK(x.is_bool(), ctx, ": '", #f, "' must be true/false"); \
    base.f = x.as_bool();                                               \
    done = true;                                                        \
  }
#define FLOWLESS_SYNTH_GET_DOUBLE(f)                                  \
  if (k == #f) {                                                      \
    FLOWLESS_CHECK(x.is_number(), ctx, ": '", #f, "' must be a number"); \
    base.f = x.as_number();                                           \
    done = true;                                                      \
  }
    FLOWLESS_SYNTH_INT_FIELDS(FLOWLESS_SYNTH_GET_INT)
    FLOWLESS_SYNTH_BOOL_FIELDS(FLOWLESS_SYNTH_GET_BOOL)
    FLOWLESS_SYNTH_DOUBLE_FIELDS(FLOWLESS_SYNTH_GET_DOUBLE)
#undef FLOWLESS_SYNTH_GET_INT
#undef FLOWLESS_SYNTH_GET_BOOL
#undef FLOWLESS_SYNTH_GET_DOUBLE
    FLOWLESS_CHECK(done, ctx, ": unknown synthetic dataset field '", k, "'");
  }
  validate_synth_config(base, ctx);
  return base;
}

namespace synth_detail {

inline uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t z = a ^ (b + 0x9e3779b97f4a7c15ULL + (a << 6) + (a >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

inline double round2(double x) { return std::round(x * 100.0) / 100.0; }

/// Round-to-nearest-even float -> IEEE half bits (saturates to +-inf).
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0u));
  if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (absx < 0x38800000u) {                                                 // half subnormal or zero
    const int shift = 113 - static_cast<int>(absx >> 23);
    if (shift > 24) return static_cast<uint16_t>(sign);
    uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
    uint32_t h = mant >> (shift + 13);
    const uint32_t rem = mant & ((1u << (shift + 13)) - 1u), half = 1u << (shift + 12);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = ((absx - 0x38000000u) >> 13);
  const uint32_t rem = absx & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
}

/// Dataset-level structure: appearance groups, motion signatures, leak projection.
struct Model {
  int num_groups = 0;
  std::vector<int> group_of_class;          // (K,)
  std::vector<std::vector<float>> A;        // (G, Cr) appearance of each group
  std::vector<std::vector<float>> M, Phi;   // (K, Cf) motion signature and its start-to-end drift
  std::vector<std::vector<float>> PM, PPhi; // (K, Cr) the same pushed through the leak projection P
  std::vector<double> len_offset;           // (K,) offset of ln(action length)
};

inline Model make_model(const SynthConfig& c, uint64_t seed) {
  Rng rng(mix_seed(seed, 1));
  Model m;
  const int K = c.num_classes, P = c.num_shared_pairs, Cr = c.rgb_dim, Cf = c.flow_dim;
  m.num_groups = P + (K - 2 * P);
  for (int k = 0; k < K; ++k) m.group_of_class.push_back(k < 2 * P ? k / 2 : P + (k - 2 * P));
  auto vec = [&](int n, double s) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = static_cast<float>(s * rng.normal());
    return v;
  };
  for (int g = 0; g < m.num_groups; ++g) m.A.push_back(vec(Cr, c.appearance_amp));
  for (int k = 0; k < K; ++k) {
    m.M.push_back(vec(Cf, c.motion_amp));
    m.Phi.push_back(vec(Cf, c.motion_amp * c.motion_phase));
  }
  // motion pairs: the second class of each moves exactly like the first
  // (drawn above anyway, so the random stream does not depend on the knob)
  for (int j = 0; j < c.num_motion_pairs; ++j) {
    const size_t k = static_cast<size_t>(2 * P + 2 * j);
    m.M[k + 1] = m.M[k];
    m.Phi[k + 1] = m.Phi[k];
  }
  // P: (Cr, Cf) with entries N(0, 1/Cf); only P*M_k and P*Phi_k are needed.
  m.PM.assign(static_cast<size_t>(K), std::vector<float>(static_cast<size_t>(Cr), 0.0f));
  m.PPhi = m.PM;
  const double ps = 1.0 / std::sqrt(static_cast<double>(Cf));
  for (int r = 0; r < Cr; ++r) {
    std::vector<float> row = vec(Cf, ps);
    for (int k = 0; k < K; ++k) {
      double a = 0, b = 0;
      for (int j = 0; j < Cf; ++j) {
        a += static_cast<double>(row[static_cast<size_t>(j)]) * m.M[static_cast<size_t>(k)][static_cast<size_t>(j)];
        b += static_cast<double>(row[static_cast<size_t>(j)]) * m.Phi[static_cast<size_t>(k)][static_cast<size_t>(j)];
      }
      m.PM[static_cast<size_t>(k)][static_cast<size_t>(r)] = static_cast<float>(a);
      m.PPhi[static_cast<size_t>(k)][static_cast<size_t>(r)] = static_cast<float>(b);
    }
  }
  double mean = 0;
  for (int k = 0; k < K; ++k) {
    m.len_offset.push_back(c.class_length_spread * rng.normal());
    mean += m.len_offset.back() / K;
  }
  for (auto& o : m.len_offset) o -= mean;
  return m;
}

struct Video {
  std::string id, subset;
  double fps = 0, duration = 0;
  int T = 0;
  std::vector<Segment> segments;  // annotations (seconds)
  std::vector<float> feats;       // (T, Cr + Cf)
};

/// Generates one video (docs/synth.md, section "Model").
inline Video generate_video(const SynthConfig& c, const Model& m, const std::string& id, const std::string& subset,
                            Rng& rng) {
  const int Cr = c.rgb_dim, Cf = c.flow_dim, K = c.num_classes;
  const double S = c.feat_stride, N = c.num_frames;
  Video v;
  v.id = id;
  v.subset = subset;
  v.fps = c.fps;
  if (c.vary_fps) {  // THUMOS14: 381 / 18 / 11 / 2 of 412 videos
    const double u = rng.uniform();
    v.fps = u < 0.9248 ? 30.0 : u < 0.9685 ? 29.97 : u < 0.9951 ? 25.0 : 24.0;
  }
  const double fps = v.fps;
  double D = std::clamp(std::exp(rng.normal(c.duration_log_mean, c.duration_log_std)), c.duration_min, c.duration_max);
  D = std::max(round2(D), std::ceil((N + S) / fps * 100.0) / 100.0);
  v.duration = D;
  const int64_t n_frames = static_cast<int64_t>(std::floor(D * fps + 1e-6));
  const int T = static_cast<int>((n_frames - c.num_frames) / c.feat_stride + 1);
  v.T = T;

  // classes present in this video
  std::vector<int> classes{static_cast<int>(rng.randint(0, K - 1))};
  if (rng.uniform() < c.second_class_prob) {
    const int k0 = classes[0];
    const bool paired = k0 < 2 * (c.num_shared_pairs + c.num_motion_pairs);  // appearance or motion partner
    if (paired && rng.uniform() < c.partner_prob) {
      classes.push_back(k0 ^ 1);
    } else {
      int k1 = static_cast<int>(rng.randint(0, K - 2));
      classes.push_back(k1 >= k0 ? k1 + 1 : k1);
    }
  }
  auto draw_len = [&](int k) {
    return std::clamp(std::exp(rng.normal(c.action_log_mean + m.len_offset[static_cast<size_t>(k)], c.action_log_std)),
                      c.action_min, c.action_max);
  };

  // action instances: alternating exponential gaps and log-normal actions
  struct Inst {
    int k = 0;
    double s = 0, e = 0, amp = 1, c0 = 0, c1 = 0, ramp = 1;
    std::vector<float> actor;
  };
  std::vector<Inst> inst;
  {
    const double cov = rng.uniform(c.coverage_min, c.coverage_max);
    double mean_len = 0;
    for (int k : classes)
      mean_len += std::exp(c.action_log_mean + m.len_offset[static_cast<size_t>(k)] +
                           0.5 * c.action_log_std * c.action_log_std) / classes.size();
    mean_len = std::clamp(mean_len, c.action_min, c.action_max);
    const double gap_mean = mean_len * (1.0 - cov) / cov;
    double t = -gap_mean * std::log(1.0 - rng.uniform());
    for (;;) {
      const int k = classes[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(classes.size()) - 1))];
      const double L = draw_len(k);
      if (t + L > D) break;
      Inst in;
      in.k = k;
      in.s = t;
      in.e = t + L;
      inst.push_back(in);
      double gap = -gap_mean * std::log(1.0 - rng.uniform());
      if (rng.uniform() < c.overlap_prob) gap = -rng.uniform() * c.overlap_max * L;
      t = t + L + gap;
    }
    if (inst.empty()) {
      const int k = classes[0];
      const double L = std::min(draw_len(k), 0.8 * D);
      Inst in;
      in.k = k;
      in.s = rng.uniform(0.0, D - L);
      in.e = in.s + L;
      inst.push_back(in);
    }
  }
  for (auto& in : inst) {  // annotation precision: 0.01 s; features use the rounded times
    in.s = round2(in.s);
    in.e = std::min(round2(in.e), D);
    if (in.e - in.s < 0.1) in.e = std::min(in.s + 0.1, D), in.s = in.e - 0.1;
    const double L = in.e - in.s;
    in.amp = 1.0 + c.instance_amp_jitter * rng.uniform(-1.0, 1.0);
    const double lead = rng.uniform(c.ctx_lead_min, c.ctx_lead_max) + c.ctx_lead_rel * L * rng.uniform();
    const double lag = rng.uniform(c.ctx_lead_min, c.ctx_lead_max) + c.ctx_lead_rel * L * rng.uniform();
    in.c0 = in.s - lead;
    in.c1 = in.e + lag;
    in.ramp = rng.uniform(c.ctx_ramp_min, c.ctx_ramp_max);
    in.actor.resize(static_cast<size_t>(Cr));
    for (auto& x : in.actor) x = static_cast<float>(c.actor_std * rng.normal());
  }
  for (const auto& in : inst) {
    Segment sg;
    sg.start = in.s;
    sg.end = in.e;
    sg.label_id = in.k;
    v.segments.push_back(sg);
    if (in.k == 0 && K >= 2 && c.dup_prob > 0 && rng.uniform() < c.dup_prob) {
      sg.label_id = 1;
      v.segments.push_back(sg);
    }
  }

  // ---- features
  std::vector<float> rgb(static_cast<size_t>(T) * Cr, 0.0f), flow(static_cast<size_t>(T) * Cf, 0.0f),
      pre(static_cast<size_t>(T) * Cr, 0.0f);
  const double win = N / fps;  // clip window length (s)
  auto centre = [&](int t) { return (S * t + 0.5 * N) / fps; };
  auto overlap = [&](double a, double b, int t) {  // fraction of snippet t's window inside [a, b]
    const double ws = S * t / fps;
    if (win <= 0) return (centre(t) >= a && centre(t) <= b) ? 1.0 : 0.0;
    return std::max(0.0, std::min(b, ws + win) - std::max(a, ws)) / win;
  };
  auto soft = [&](double a, double b, double ramp, int t) {  // trapezoid: fades over `ramp` around a and b
    const double tau = centre(t);
    return std::clamp((tau - a) / ramp + 0.5, 0.0, 1.0) * std::clamp((b - tau) / ramp + 0.5, 0.0, 1.0);
  };
  auto t_range = [&](double a, double b, int& t0, int& t1) {  // snippets whose window can touch [a, b]
    t0 = std::max(0, static_cast<int>(std::floor((a * fps - N) / S)) - 1);
    t1 = std::min(T - 1, static_cast<int>(std::ceil(b * fps / S)) + 1);
  };
  auto gauss = [&](int n, double s) {
    std::vector<float> x(static_cast<size_t>(n));
    for (auto& e : x) e = static_cast<float>(s * rng.normal());
    return x;
  };
  auto add_row = [](std::vector<float>& buf, int C, int t, const std::vector<float>& x, double w) {
    float* r = buf.data() + static_cast<size_t>(t) * C;
    const float wf = static_cast<float>(w);
    for (int j = 0; j < C; ++j) r[j] += wf * x[static_cast<size_t>(j)];
  };
  auto poisson_times = [&](double rate_per_min) {
    std::vector<double> ts;
    if (rate_per_min <= 0) return ts;
    double t = 0;
    for (;;) {
      t += -std::log(1.0 - rng.uniform()) * 60.0 / rate_per_min;
      if (t >= D) break;
      ts.push_back(t);
    }
    return ts;
  };

  // scene + lighting drift (RGB), camera sway (flow)
  const std::vector<float> scene = gauss(Cr, c.scene_amp);
  std::vector<float> light(static_cast<size_t>(Cr));
  for (auto& x : light) x = static_cast<float>(1.0 + 0.5 * rng.normal());
  const std::vector<float> cam = gauss(Cf, 1.0);
  std::array<double, 3> lb, lp, lph, cb, cp, cph;
  for (int j = 0; j < 3; ++j) {
    lb[j] = rng.normal();
    lp[j] = rng.uniform(20.0, 120.0);
    lph[j] = rng.uniform(0.0, 6.283185307179586);
    cb[j] = rng.normal();
    cp[j] = rng.uniform(5.0, 40.0);
    cph[j] = rng.uniform(0.0, 6.283185307179586);
  }
  const double norm3 = 1.0 / std::sqrt(1.5);
  for (int t = 0; t < T; ++t) {
    const double tau = centre(t);
    double lam = 0, cm = 0;
    for (int j = 0; j < 3; ++j) {
      lam += lb[j] * std::sin(6.283185307179586 * tau / lp[j] + lph[j]);
      cm += cb[j] * std::sin(6.283185307179586 * tau / cp[j] + cph[j]);
    }
    lam *= c.light_amp * norm3;
    cm *= c.camera_amp * norm3;
    float* r = rgb.data() + static_cast<size_t>(t) * Cr;
    for (int j = 0; j < Cr; ++j) r[j] += scene[static_cast<size_t>(j)] + static_cast<float>(lam) * light[static_cast<size_t>(j)];
    add_row(flow, Cf, t, cam, cm);
  }

  // appearance episodes (actions' contexts and distractors), combined below
  std::vector<float> env(static_cast<size_t>(m.num_groups) * T, 0.0f), actor_acc(static_cast<size_t>(T) * Cr, 0.0f);
  std::vector<double> wsum(static_cast<size_t>(T), 0.0);
  auto add_context = [&](int g, double c0, double c1, double ramp, const std::vector<float>& actor) {
    int t0, t1;
    t_range(c0 - ramp, c1 + ramp, t0, t1);
    for (int t = t0; t <= t1; ++t) {
      const double e = soft(c0, c1, ramp, t);
      if (e <= 0) continue;
      float& eg = env[static_cast<size_t>(g) * T + t];
      eg = std::max(eg, static_cast<float>(e));
      wsum[static_cast<size_t>(t)] += e;
      add_row(actor_acc, Cr, t, actor, e);
    }
  };

  // actions: motion in flow (sharp), its leak (pre-tanh), appearance context in RGB (soft, wider)
  for (const auto& in : inst) {
    const size_t k = static_cast<size_t>(in.k);
    int t0, t1;
    t_range(in.s, in.e, t0, t1);
    for (int t = t0; t <= t1; ++t) {
      const double w = overlap(in.s, in.e, t);
      if (w <= 0) continue;
      const double p = std::clamp((centre(t) - in.s) / (in.e - in.s), 0.0, 1.0);
      const double ph = 2.0 * p - 1.0;
      float* f = flow.data() + static_cast<size_t>(t) * Cf;
      float* q = pre.data() + static_cast<size_t>(t) * Cr;
      const float a = static_cast<float>(w * in.amp), b = static_cast<float>(w * in.amp * ph);
      for (int j = 0; j < Cf; ++j) f[j] += a * m.M[k][static_cast<size_t>(j)] + b * m.Phi[k][static_cast<size_t>(j)];
      for (int j = 0; j < Cr; ++j) q[j] += a * m.PM[k][static_cast<size_t>(j)] + b * m.PPhi[k][static_cast<size_t>(j)];
    }
    add_context(m.group_of_class[k], in.c0, in.c1, in.ramp, in.actor);
  }
  // distractors: the actor/context appears, no action happens
  for (double t_ev : poisson_times(c.distractor_rate)) {
    const int k = classes[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(classes.size()) - 1))];
    const double L = draw_len(k);
    const double c0 = t_ev - rng.uniform(c.ctx_lead_min, c.ctx_lead_max);
    const double c1 = t_ev + L + rng.uniform(c.ctx_lead_min, c.ctx_lead_max);
    const double ramp = rng.uniform(c.ctx_ramp_min, c.ctx_ramp_max);
    add_context(m.group_of_class[static_cast<size_t>(k)], c0, c1, ramp, gauss(Cr, c.actor_std));
  }
  // appearance: per group the envelope is the max over its episodes (an actor is
  // present or not; overlapping contexts do not add up), actor looks are averaged
  for (int t = 0; t < T; ++t) {
    float* r = rgb.data() + static_cast<size_t>(t) * Cr;
    for (int g = 0; g < m.num_groups; ++g) {
      const float e = env[static_cast<size_t>(g) * T + t];
      if (e <= 0) continue;
      const std::vector<float>& A = m.A[static_cast<size_t>(g)];
      for (int j = 0; j < Cr; ++j) r[j] += e * A[static_cast<size_t>(j)];
    }
    const double w = wsum[static_cast<size_t>(t)];
    if (w > 0) {
      const float inv = static_cast<float>(1.0 / std::max(1.0, w));
      const float* a = actor_acc.data() + static_cast<size_t>(t) * Cr;
      for (int j = 0; j < Cr; ++j) r[j] += inv * a[j];
    }
  }
  // camera pans (flow)
  for (double t_ev : poisson_times(c.camera_pan_rate)) {
    const double d = rng.uniform(1.0, 4.0);
    const std::vector<float> dir = gauss(Cf, c.camera_pan_amp);
    int t0, t1;
    t_range(t_ev - 0.3, t_ev + d + 0.3, t0, t1);
    for (int t = t0; t <= t1; ++t) add_row(flow, Cf, t, dir, soft(t_ev, t_ev + d, 0.3, t));
  }
  // background motion clutter (flow, sharp) and appearance clutter (RGB, soft)
  for (double t_ev : poisson_times(c.flow_clutter_rate)) {
    const double d = std::exp(rng.normal(std::log(1.5), 0.6));
    const std::vector<float> dir = gauss(Cf, c.flow_clutter_amp);
    int t0, t1;
    t_range(t_ev, t_ev + d, t0, t1);
    for (int t = t0; t <= t1; ++t) add_row(flow, Cf, t, dir, overlap(t_ev, t_ev + d, t));
  }
  for (double t_ev : poisson_times(c.rgb_clutter_rate)) {
    const double d = std::exp(rng.normal(std::log(3.0), 0.7));
    const std::vector<float> look = gauss(Cr, c.rgb_clutter_amp);
    int t0, t1;
    t_range(t_ev - 0.5, t_ev + d + 0.5, t0, t1);
    for (int t = t0; t <= t1; ++t) add_row(rgb, Cr, t, look, soft(t_ev, t_ev + d, 0.5, t));
  }
  // weak non-linear motion leak into RGB
  for (size_t i = 0; i < rgb.size(); ++i)
    rgb[i] += static_cast<float>(c.leak_amp * std::tanh(c.leak_gain * static_cast<double>(pre[i])));
  // temporally correlated noise: e_t = rho e_{t-1} + sqrt(1 - rho^2) n_t
  auto add_noise = [&](std::vector<float>& buf, int C, double sd) {
    const double rho = c.noise_corr, s2 = std::sqrt(1.0 - rho * rho);
    std::vector<double> e(static_cast<size_t>(C));
    for (int t = 0; t < T; ++t) {
      float* r = buf.data() + static_cast<size_t>(t) * C;
      for (int j = 0; j < C; ++j) {
        double& ej = e[static_cast<size_t>(j)];
        ej = t == 0 ? rng.normal() : rho * ej + s2 * rng.normal();
        r[j] += static_cast<float>(sd * ej);
      }
    }
  };
  add_noise(rgb, Cr, c.rgb_noise);
  add_noise(flow, Cf, c.flow_noise);

  v.feats.resize(static_cast<size_t>(T) * (Cr + Cf));
  for (int t = 0; t < T; ++t) {
    float* dst = v.feats.data() + static_cast<size_t>(t) * (Cr + Cf);
    std::copy(rgb.begin() + static_cast<ptrdiff_t>(t) * Cr, rgb.begin() + static_cast<ptrdiff_t>(t + 1) * Cr, dst);
    std::copy(flow.begin() + static_cast<ptrdiff_t>(t) * Cf, flow.begin() + static_cast<ptrdiff_t>(t + 1) * Cf, dst + Cr);
  }
  return v;
}

inline std::string class_name(int k) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "Action%02d", k);
  return buf;
}

inline std::string video_id(const char* split, int i) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "video_%s_%07d", split, i + 1);
  return buf;
}

inline bool dir_is_empty(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  FLOWLESS_CHECK(d != nullptr, path, ": cannot list folder (", std::strerror(errno), ")");
  bool empty = true;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      empty = false;
      break;
    }
  }
  ::closedir(d);
  return empty;
}

/// rm -r without following symbolic links.
inline void remove_tree(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = ::opendir(path.c_str());
    FLOWLESS_CHECK(d != nullptr, path, ": cannot list folder (", std::strerror(errno), ")");
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
    ::closedir(d);
    for (const auto& n : names) remove_tree(path + "/" + n);
    FLOWLESS_CHECK(::rmdir(path.c_str()) == 0, path, ": cannot remove folder (", std::strerror(errno), ")");
  } else {
    FLOWLESS_CHECK(::unlink(path.c_str()) == 0, path, ": cannot remove file (", std::strerror(errno), ")");
  }
}

}  // namespace synth_detail

/// Writes the synthetic dataset folder described in docs/synth.md.
inline void write_synthetic_dataset(const std::string& out_dir_in, const SynthConfig& cfg, uint64_t seed,
                                    bool overwrite = false) {
  validate_synth_config(cfg, "write_synthetic_dataset(" + out_dir_in + ")");
  std::string out_dir = out_dir_in;
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
  FLOWLESS_CHECK(!out_dir.empty(), "write_synthetic_dataset: empty output folder name");
  struct stat st;
  const bool exists = ::lstat(out_dir.c_str(), &st) == 0;
  if (exists) {
    FLOWLESS_CHECK(S_ISDIR(st.st_mode), out_dir, ": exists and is not a folder");
    if (!synth_detail::dir_is_empty(out_dir)) {
      FLOWLESS_CHECK(overwrite, out_dir, ": folder is not empty; refusing to overwrite it (ask for overwrite)");
      FLOWLESS_CHECK(io::file_exists(out_dir + "/dataset.json"), out_dir,
                     ": folder is not empty and holds no dataset.json; refusing to replace it");
    }
  } else {
    const auto slash = out_dir.find_last_of('/');
    if (slash != std::string::npos && slash > 0) io::make_dirs(out_dir.substr(0, slash));
  }
  const std::string tmp = out_dir + ".tmp." + std::to_string(::getpid());
  synth_detail::remove_tree(tmp);
  io::make_dirs(tmp + "/features");
  try {
    const synth_detail::Model model = synth_detail::make_model(cfg, seed);
    Annotations ann;
    ann.version = "flowless-synth-" + cfg.name;
    for (int k = 0; k < cfg.num_classes; ++k) ann.label_names[k] = synth_detail::class_name(k);
    const int n_total = cfg.num_train_videos + cfg.num_test_videos;
    for (int i = 0; i < n_total; ++i) {
      const bool train = i < cfg.num_train_videos;
      const int local = train ? i : i - cfg.num_train_videos;
      Rng rng(synth_detail::mix_seed(seed, 1000 + static_cast<uint64_t>(i)));
      synth_detail::Video v = synth_detail::generate_video(cfg, model, synth_detail::video_id(train ? "validation" : "test", local),
                                                           train ? "Validation" : "Test", rng);
      const int64_t Ctot = cfg.rgb_dim + cfg.flow_dim;
      io::Array a;
      if (cfg.feature_dtype == "f16") {
        a.dtype = io::DType::f16;
        a.shape = {v.T, Ctot};
        a.data.resize(v.feats.size() * 2);
        for (size_t j = 0; j < v.feats.size(); ++j) {
          const uint16_t h = synth_detail::float_to_half(v.feats[j]);
          a.data[2 * j] = static_cast<uint8_t>(h & 0xff);
          a.data[2 * j + 1] = static_cast<uint8_t>(h >> 8);
        }
      } else {
        a = io::Array::from_float32(v.feats.data(), {v.T, Ctot});
      }
      io::save_npy(tmp + "/features/" + v.id + ".npy", a);
      VideoAnnotation va;
      va.id = v.id;
      va.subset = v.subset;
      va.duration = v.duration;
      va.fps = v.fps;
      for (auto s : v.segments) {
        s.label = synth_detail::class_name(s.label_id);
        va.segments.push_back(s);
      }
      ann.videos.push_back(std::move(va));
    }
    save_annotations(ann, tmp + "/annotations.json");

    DatasetInfo info;
    info.feat_stride = cfg.feat_stride;
    info.num_frames = cfg.num_frames;
    info.default_fps = 0;
    info.input_dim = cfg.rgb_dim + cfg.flow_dim;
    info.num_classes = cfg.num_classes;
    info.modalities["rgb"] = {0, cfg.rgb_dim};
    info.modalities["flow"] = {cfg.rgb_dim, cfg.rgb_dim + cfg.flow_dim};
    info.train_split = {"validation"};
    info.test_split = {"test"};
    info.max_seq_len = cfg.max_seq_len;
    info.trunc_thresh = cfg.trunc_thresh;
    if (cfg.use_crop_ratio) info.crop_ratio = std::array<double, 2>{cfg.crop_lo, cfg.crop_hi};
    info.downsample_rate = 1;
    save_dataset_info(info, tmp + "/dataset.json");

    json::Value meta = json::Value::object();
    meta["generator"] = "flowless synthetic benchmark (docs/synth.md)";
    meta["seed"] = static_cast<double>(seed);
    meta["seed_hex"] = [&] {
      char buf[32];
      std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(seed));
      return std::string(buf);
    }();
    meta["config"] = synth_config_to_json(cfg);
    json::Value groups = json::Value::array();
    for (int k = 0; k < cfg.num_classes; ++k) groups.push_back(model.group_of_class[static_cast<size_t>(k)]);
    meta["appearance_group_of_class"] = groups;
    io::write_file_atomic(tmp + "/synth.json", json::dump(meta, 1) + "\n");
  } catch (...) {
    try {
      synth_detail::remove_tree(tmp);
    } catch (...) {
    }
    throw;
  }
  // swap into place
  if (exists && !synth_detail::dir_is_empty(out_dir)) {
    const std::string old = out_dir + ".old." + std::to_string(::getpid());
    synth_detail::remove_tree(old);
    FLOWLESS_CHECK(std::rename(out_dir.c_str(), old.c_str()) == 0, out_dir, ": cannot move the old folder aside (",
                   std::strerror(errno), ")");
    if (std::rename(tmp.c_str(), out_dir.c_str()) != 0) {
      const int e = errno;
      std::rename(old.c_str(), out_dir.c_str());
      FLOWLESS_FAIL(out_dir, ": cannot move the new dataset into place (", std::strerror(e), ")");
    }
    synth_detail::remove_tree(old);
  } else {
    if (exists) ::rmdir(out_dir.c_str());
    FLOWLESS_CHECK(std::rename(tmp.c_str(), out_dir.c_str()) == 0, out_dir, ": cannot move the new dataset into place (",
                   std::strerror(errno), ")");
  }
}

#undef FLOWLESS_SYNTH_INT_FIELDS
#undef FLOWLESS_SYNTH_BOOL_FIELDS
#undef FLOWLESS_SYNTH_DOUBLE_FIELDS

}  // namespace flowless::data
