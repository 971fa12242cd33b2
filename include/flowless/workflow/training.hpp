// flowless/workflow/training.hpp - train a detector, a DCD student or a
// plain-distillation baseline on a dataset folder, with defaults that adapt to
// the dataset (input width of the chosen modality, number of classes, feature
// stride), optional validation mAP per epoch, and a JSON training log.
//
//   TrainRequest r; r.data = "DIR"; r.modality = "rgb"; r.out = "M.safetensors";
//   TrainResult res = workflow::train_model(r);
//
// Model presets (r.preset; r.config_path = a reference config JSON overrides):
//   "small"  embd/fpn/head 64, 4 heads, window 9, arch (2, 2, 5), lr 1e-3,
//            batch 4, 20 + 1 warmup epochs, EMA 0.99 — the built-in benchmark's budget
//            (at 6 + 1 epochs no distilled student beat RGB-only; docs/dcd.md)
//   "tiny"   embd 32, window 5, 3 + 1 epochs — seconds, for tests and CI
//   "thumos" the reference THUMOS14 configuration (embd 512, window 19,
//            lr 1e-4, batch 2, 30 + 5 epochs, EMA 0.999)
// With arch "tridet" each preset takes TriDet's THUMOS settings at its width
// (preset_config).
#pragma once

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "flowless/dcd/tasks.hpp"
#include "flowless/eval/detection_map.hpp"
#include "flowless/io/json.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/models/any_model.hpp"
#include "flowless/models/model_file.hpp"
#include "flowless/train/trainer.hpp"

namespace flowless::workflow {

struct TrainRequest {
  std::string data;                   // dataset folder
  std::string modality = "rgb";       // rgb | flow | two-stream (detectors); DCD students read rgb
  std::string mode = "detector";      // detector | dcd | kd-plain
  std::string arch = "actionformer";  // actionformer | temporalmaxer | tridet (detectors only)
  std::string preset = "small";       // small | tiny | thumos
  std::string config_path;            // reference config JSON (overrides the preset's model settings)
  std::string out;                    // model file to write
  std::string teacher;                // teacher model file (dcd, kd-plain)
  std::string fusion = "laf";         // laf | concat (dcd)
  std::string kd = "feature,prediction";  // which distillation terms (dcd)
  // Distillation weights; unset = the task's default (dcd::DcdTaskOptions: 0.5 and 0.5;
  // dcd::PlainKdOptions: lambda_f 0.25; chosen on data seed 2 of `default`, docs/dcd.md).
  std::optional<double> lambda_f, lambda_p;
  dcd::LafOptions laf;                // LAF window, aggregation, residual, norm, out_proj (dcd, fusion laf)
  int branch_dim = 0;                 // width of F_m and F_a (dcd; 0 = the neck width)
  double branch_weight = 1.0;         // weight of the appearance branch's detection loss (dcd)
  bool joint_grad = true;             // the joint loss also trains the branches and trunk (dcd)
  int epochs = -1, warmup_epochs = -1, batch_size = -1;
  double lr = -1;
  uint64_t seed = 1;
  int threads = 1;
  std::string precision = "fp32";     // training matmuls: fp32 | bf16 (mixed precision, TrainerOptions::precision)
  std::string val_split;              // evaluate mAP on this split after epochs (empty = never)
  int val_every = 1;
  std::string checkpoint;             // periodic training checkpoint path (empty = none)
  bool resume = false;                // continue from `checkpoint`
  bool progress = true;
  std::string label;                  // progress-bar label
};

struct EpochLog {
  train::EpochSummary summary;
  double val_average_map = -1;  // -1 = not evaluated
};

struct TrainResult {
  std::vector<EpochLog> epochs;
  double seconds = 0;
  int64_t parameters = 0;
};

/// Default configuration of a preset for a dataset (before the request's overrides).
inline DetectorConfig preset_config(const std::string& preset, const std::string& arch) {
  DetectorConfig c;
  c.arch = arch;
  if (preset == "thumos") {
    c.embd_dim = c.fpn_dim = c.head_dim = 512;
    c.mha_win_size.assign(6, 19);
  } else if (preset == "small") {
    c.embd_dim = c.fpn_dim = c.head_dim = 64;
    c.mha_win_size.assign(6, 9);
  } else if (preset == "tiny") {
    c.embd_dim = c.fpn_dim = c.head_dim = 32;
    c.mha_win_size.assign(6, 5);
  } else {
    FLOWLESS_FAIL("unknown model preset '", preset, "' (small, tiny, thumos)");
  }
  c.n_head = 4;
  if (arch == "tridet") {
    // TriDet's THUMOS settings (configs/thumos_i3d.yaml) at the preset's width:
    // SGP window 1 with k 5 (a wide kernel of 11), MLP 1.5 x the width, 16
    // bins, IoU weight power 0.2, input noise 0.0005. Ours: the depthwise
    // weights start N(0, 0.2) (the reference's ActivityNet value): with its
    // THUMOS default 0 they start at zero and, with the gate's ReLU at 0, get
    // no gradient, so the SGP branches would never train.
    c.mha_win_size.assign(6, 1);
    c.sgp_k = 5;
    c.sgp_mlp_dim = c.embd_dim * 3 / 2;
    c.sgp_init_conv_vars = 0.2;
    c.num_bins = 16;
    c.iou_weight_power = 0.2;
    c.input_noise = 0.0005;
    c.inference_padding = "max_seq_len";  // trained on max_seq_len buffers, as the reference
  }
  return c;
}

/// The optimisation recipe a config names, when it names one:
///  - the original codes' layout (ActionFormer, TemporalMaxer, TriDet) with an
///    "opt" section: opt.learning_rate, epochs (cosine epochs after warmup),
///    warmup_epochs, weight_decay, eta_min, early_stop_epochs (training stops
///    there), loader.batch_size and train_cfg.clip_grad_l2norm, with their
///    DEFAULTS for the keys the config omits (1e-3, 30, 5, 0, 1e-8, -, 8, -1
///    = no clipping) and their model EMA (decay 0.999). opt.type other than
///    AdamW, opt.warmup false and schedule_type multistep are refused;
///  - OpenTAD's with an "optimizer" section: optimizer.lr, weight_decay
///    (torch's 0.01 when absent), scheduler LinearWarmupCosineAnnealingLR
///    (warmup_epoch, max_epoch = warmup + cosine epochs, eta_min),
///    solver.train.batch_size, solver.clip_grad_norm, solver.ema (decay
///    0.999) and workflow.end_epoch. Other optimizers or schedulers, and
///    paramwise false (OpenTAD then decays every parameter; flowless always
///    applies the detectors' weight-decay groups) are refused.
/// present = false for a config without these sections: the preset's recipe.
struct ConfigRecipe {
  bool present = false;
  std::string source;  // "opt" or "OpenTAD"
  int epochs = 30, warmup_epochs = 5, batch_size = 8, end_epoch = 0;
  double lr = 1e-3, weight_decay = 0.0, eta_min = 1e-8, clip_grad_l2norm = -1;
  bool use_ema = true;
  double ema_decay = 0.999;
};

inline ConfigRecipe config_recipe_unchecked(const json::Value& root, bool opentad, const std::string& ctx) {
  ConfigRecipe r;
  static const json::Value empty = json::Value::object();
  auto sec = [&](const json::Value& v, const char* key) -> const json::Value& {
    if (!v.is_object() || !v.contains(key) || v.at(key).is_null()) return empty;
    FLOWLESS_CHECK(v.at(key).is_object(), ctx, ": '", key, "' must be a dict, got ", v.at(key).type_name());
    return v.at(key);
  };
  auto count = [&](const char* what, int64_t v, int64_t lo) {
    FLOWLESS_CHECK(v >= lo && v <= 1000000, ctx, ": ", what, " must be an integer >= ", lo, ", got ", v);
    return int(v);
  };
  auto positive = [&](const char* what, double v, bool allow_zero) {
    FLOWLESS_CHECK(std::isfinite(v) && (allow_zero ? v >= 0 : v > 0), ctx, ": ", what, " must be ",
                   allow_zero ? ">= 0" : "> 0", ", got ", v);
    return v;
  };
  if (opentad) {
    const json::Value& op = sec(root, "optimizer");
    if (!root.contains("optimizer")) return r;
    r.present = true;
    r.source = "OpenTAD";
    const std::string type = op.string_or("type", "");
    FLOWLESS_CHECK(type == "AdamW", ctx, ": optimizer.type '", type, "' is not supported (AdamW)");
    FLOWLESS_CHECK(op.contains("lr"), ctx, ": optimizer.lr is missing");
    r.lr = positive("optimizer.lr", op.number_or("lr", 0), false);
    r.weight_decay = positive("optimizer.weight_decay", op.number_or("weight_decay", 0.01), true);
    FLOWLESS_CHECK(op.bool_or("paramwise", false), ctx,
                   ": optimizer.paramwise False (every parameter decayed) is not supported; flowless applies the "
                   "detectors' weight-decay groups (paramwise=True)");
    const json::Value& sc = sec(root, "scheduler");
    const std::string stype = sc.string_or("type", "");
    FLOWLESS_CHECK(stype == "LinearWarmupCosineAnnealingLR", ctx, ": scheduler.type '", stype,
                   "' is not supported (LinearWarmupCosineAnnealingLR)");
    FLOWLESS_CHECK(sc.contains("warmup_epoch") && sc.contains("max_epoch"), ctx,
                   ": scheduler needs warmup_epoch and max_epoch");
    r.warmup_epochs = count("scheduler.warmup_epoch", sc.int_or("warmup_epoch", 0), 0);
    const int max_epoch = count("scheduler.max_epoch", sc.int_or("max_epoch", 0), 1);
    FLOWLESS_CHECK(max_epoch > r.warmup_epochs, ctx, ": scheduler.max_epoch (", max_epoch,
                   ") must exceed warmup_epoch (", r.warmup_epochs, ")");
    r.epochs = max_epoch - r.warmup_epochs;
    r.eta_min = positive("scheduler.eta_min", sc.number_or("eta_min", 1e-8), true);
    FLOWLESS_CHECK(sc.number_or("warmup_start_lr", 0.0) == 0.0, ctx,
                   ": scheduler.warmup_start_lr other than 0 is not supported");
    const json::Value& solver = sec(root, "solver");
    const json::Value& st = sec(solver, "train");
    FLOWLESS_CHECK(st.contains("batch_size"), ctx, ": solver.train.batch_size is missing");
    r.batch_size = count("solver.train.batch_size", st.int_or("batch_size", 0), 1);
    r.clip_grad_l2norm = solver.number_or("clip_grad_norm", -1);
    r.use_ema = solver.bool_or("ema", false);
    const json::Value& wf = sec(root, "workflow");
    if (wf.contains("end_epoch")) r.end_epoch = count("workflow.end_epoch", wf.int_or("end_epoch", 0), 1);
    return r;
  }
  if (!root.contains("opt")) return r;
  const json::Value& opt = sec(root, "opt");
  r.present = true;
  r.source = "opt";
  const std::string type = opt.string_or("type", "AdamW");
  FLOWLESS_CHECK(type == "AdamW", ctx, ": opt.type '", type, "' is not supported (AdamW)");
  FLOWLESS_CHECK(opt.bool_or("warmup", true), ctx,
                 ": opt.warmup false (cosine without warmup) is not supported; use warmup_epochs 0");
  const std::string sched = opt.string_or("schedule_type", "cosine");
  FLOWLESS_CHECK(sched == "cosine", ctx, ": opt.schedule_type '", sched, "' is not supported (cosine)");
  r.lr = positive("opt.learning_rate", opt.number_or("learning_rate", r.lr), false);
  r.epochs = count("opt.epochs", opt.int_or("epochs", r.epochs), 0);
  r.warmup_epochs = count("opt.warmup_epochs", opt.int_or("warmup_epochs", r.warmup_epochs), 0);
  FLOWLESS_CHECK(r.epochs + r.warmup_epochs >= 1, ctx, ": opt.epochs + opt.warmup_epochs must be >= 1");
  r.weight_decay = positive("opt.weight_decay", opt.number_or("weight_decay", r.weight_decay), true);
  r.eta_min = positive("opt.eta_min", opt.number_or("eta_min", r.eta_min), true);
  if (opt.contains("early_stop_epochs"))
    r.end_epoch = count("opt.early_stop_epochs", opt.int_or("early_stop_epochs", 0), 1);
  r.batch_size = count("loader.batch_size", sec(root, "loader").int_or("batch_size", r.batch_size), 1);
  r.clip_grad_l2norm = sec(root, "train_cfg").number_or("clip_grad_l2norm", r.clip_grad_l2norm);
  return r;
}

/// config_recipe_unchecked, with every error (a value of the wrong type too)
/// naming the config file.
inline ConfigRecipe config_recipe(const json::Value& root, bool opentad, const std::string& ctx) {
  try {
    return config_recipe_unchecked(root, opentad, ctx);
  } catch (const Error& e) {
    const std::string what = e.what();
    if (what.rfind(ctx, 0) == 0) throw;
    FLOWLESS_FAIL(ctx, ": ", what);
  }
}

inline train::TrainerOptions preset_trainer(const std::string& preset) {
  train::TrainerOptions o;
  if (preset == "thumos") {
    o.epochs = 30, o.warmup_epochs = 5, o.batch_size = 2, o.lr = 1e-4, o.ema_decay = 0.999;
  } else if (preset == "small") {
    o.epochs = 20, o.warmup_epochs = 1, o.batch_size = 4, o.lr = 1e-3, o.ema_decay = 0.99;
  } else {
    o.epochs = 3, o.warmup_epochs = 1, o.batch_size = 2, o.lr = 1e-3, o.ema_decay = 0.9;
  }
  return o;
}

/// The channel range [lo, hi) of a modality in the dataset's feature files.
inline std::array<int, 2> modality_channels(const data::DatasetInfo& info, const std::string& modality,
                                            const std::string& ctx) {
  if (modality == "two-stream" || modality == "both" || modality == "all") return {0, info.input_dim};
  auto it = info.modalities.find(modality);
  FLOWLESS_CHECK(it != info.modalities.end(), ctx, ": dataset.json names no '", modality, "' modality",
                 (info.modalities.empty() ? " (it lists no modalities)" : ""));
  return it->second;
}

inline std::string label_names_json(const data::Annotations& ann) {
  json::Value v = json::Value::object();
  for (auto& [id, name] : ann.label_names) v[std::to_string(id)] = json::Value(name);
  return json::dump(v);
}

/// Detections of every video of a split, for any model.
template <class T = float>
std::vector<eval::Prediction> detect_split(models::AnyModel<T>& model, const std::string& data_dir,
                                           const std::string& split) {
  data::DatasetOptions o;
  o.split = {split};
  o.modality = "all";
  data::Dataset ds(data_dir, o);
  std::vector<eval::Prediction> preds;
  // The weights stay fixed for the whole split: transform and pack each conv weight once, not once per video.
  ConvWeightCacheScope weights_once;
  for (size_t i = 0; i < ds.size(); ++i) {
    int Tn = 0;
    auto x = ds.features(i, &Tn);
    VideoMeta meta{ds.id(i), ds.fps(i), ds.duration(i), ds.stride(), ds.num_frames()};
    for (auto& d : model.detect(x.data(), Tn, ds.channels(), meta))
      preds.push_back({ds.id(i), d.start, d.end, d.label, d.score});
  }
  return preds;
}

/// The distillation weights {lambda_f, lambda_p} a request trains with: its own,
/// else its task's defaults (dcd::DcdTaskOptions for dcd, dcd::PlainKdOptions for
/// kd-plain, which has no lambda_p: 0). A kd-plain file records lambda_f in its
/// metadata as "kd_training", a student both as "dcd_training".
inline std::pair<double, double> distillation_weights(const TrainRequest& r) {
  if (r.mode == "dcd")
    return {r.lambda_f.value_or(dcd::DcdTaskOptions{}.lambda_f), r.lambda_p.value_or(dcd::DcdTaskOptions{}.lambda_p)};
  return {r.lambda_f.value_or(dcd::PlainKdOptions{}.lambda_f), 0.0};
}

namespace detail {
/// record: {"lambda_f": F[, "lambda_p": P]} or null (no record; `why` says why).
inline void match_distillation_weights(const TrainRequest& r, const json::Value* record, const std::string& file,
                                       const std::string& why) {
  const auto want = distillation_weights(r);
  const bool dcd = r.mode == "dcd";
  auto values = [&](double f, double p) {  // "F" or "F, P"
    return json::dump(json::Value(f)) + (dcd ? ", " + json::dump(json::Value(p)) : std::string());
  };
  auto named = [&](double f, double p) {  // "lambda_f F" or "lambda_f F, lambda_p P"
    return "lambda_f " + json::dump(json::Value(f)) + (dcd ? ", lambda_p " + json::dump(json::Value(p)) : std::string());
  };
  FLOWLESS_CHECK(record != nullptr, file, ": has no record of its distillation weights (", why, "); this run asks for ",
                 named(want.first, want.second), ": remove the file or use another --out");
  const double f = record->at("lambda_f").as_number(), p = dcd ? record->at("lambda_p").as_number() : 0.0;
  FLOWLESS_CHECK(f == want.first && p == want.second, file, ": was trained with ", named(f, p), ", this run asks for ",
                 values(want.first, want.second), ": remove the file or use another --out");
}
}  // namespace detail

/// The record of `r`'s distillation weights kept in an experiment's result
/// file: {"lambda_f": F, "lambda_p": P} (DCD), {"lambda_f": F} (kd-plain),
/// null for detectors.
inline json::Value distillation_weights_json(const TrainRequest& r) {
  if (r.mode != "dcd" && r.mode != "kd-plain") return json::Value(nullptr);
  const auto w = distillation_weights(r);
  json::Value j = json::Value::object();
  j["lambda_f"] = json::Value(w.first);
  if (r.mode == "dcd") j["lambda_p"] = json::Value(w.second);
  return j;
}

/// For a model file that `r` would reuse instead of training (flowless experiment):
/// fails naming the file when it was trained with other distillation weights than
/// `r` asks for, e.g. with the defaults of before session 12 (1 and 1). Detectors
/// carry no weights and always pass.
inline void check_distillation_weights(const TrainRequest& r, const std::string& file) {
  if (r.mode != "dcd" && r.mode != "kd-plain") return;
  const auto meta = io::load_safetensors(file).metadata;
  const std::string key = r.mode == "dcd" ? "dcd_training" : "kd_training";
  auto it = meta.find(key);
  std::optional<json::Value> record;
  if (it != meta.end()) record = json::parse(it->second, file + " (" + key + ")");
  detail::match_distillation_weights(r, record ? &*record : nullptr, file,
                                     "no \"" + key + "\": trained before session 12, whose defaults were "
                                     "lambda_f = lambda_p = 1");
}

/// The same check for an experiment's result file reused without its model
/// file (deleted to save space): the result's own record must match.
inline void check_result_distillation_weights(const TrainRequest& r, const json::Value& result,
                                              const std::string& file) {
  if (r.mode != "dcd" && r.mode != "kd-plain") return;
  const json::Value* record = result.contains("distillation_weights") && !result.at("distillation_weights").is_null()
                                  ? &result.at("distillation_weights")
                                  : nullptr;
  detail::match_distillation_weights(r, record, file,
                                     "written before session 14, and its model file " + r.out + " is gone");
}

/// Sets the mode, modality and options of one `flowless experiment` variant.
/// spec = NAME[:KEY=VALUE[,KEY=VALUE...]], NAME one of rgb, flow, two-stream,
/// kd-plain, dcd-concat, dcd-laf. The options (DCD variants; kd-plain takes
/// lambda_f only) are the `flowless train --dcd` flags:
///   window, aggregation (mean|max), residual, norm, out_proj (0|1; LAF only),
///   branch_dim, branch_weight, joint_grad (0|1), lambda_f, lambda_p.
/// e.g. "dcd-laf:window=9,residual=1". Fails naming the spec and the problem.
inline void configure_variant(TrainRequest& r, const std::string& spec) {
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  if (name == "rgb" || name == "flow" || name == "two-stream") {
    r.mode = "detector";
    r.modality = name;
  } else if (name == "kd-plain") {
    r.mode = "kd-plain";
  } else if (name == "dcd-laf" || name == "dcd-concat") {
    r.mode = "dcd";
    r.fusion = name == "dcd-laf" ? "laf" : "concat";
  } else {
    FLOWLESS_FAIL("variant '", spec, "': unknown name '", name, "' (rgb, flow, two-stream, kd-plain, dcd-concat, dcd-laf)");
  }
  if (colon == std::string::npos) return;
  FLOWLESS_CHECK(r.mode != "detector", "variant '", spec, "': detector variants take no options");
  std::stringstream opts(spec.substr(colon + 1));
  std::string kv;
  while (std::getline(opts, kv, ',')) {
    const size_t eq = kv.find('=');
    FLOWLESS_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < kv.size(), "variant '", spec, "': option '", kv,
                   "' is not KEY=VALUE");
    const std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
    auto number = [&] {
      char* end = nullptr;
      const double x = std::strtod(val.c_str(), &end);
      FLOWLESS_CHECK(end && *end == '\0' && std::isfinite(x), "variant '", spec, "': ", key, "=", val, " is not a number");
      return x;
    };
    auto integer = [&] {
      const double x = number();
      FLOWLESS_CHECK(x == std::floor(x) && x >= 0 && x <= 1e6, "variant '", spec, "': ", key, "=", val,
                     " is not a non-negative integer");
      return int(x);
    };
    auto boolean = [&] {
      FLOWLESS_CHECK(val == "0" || val == "1", "variant '", spec, "': ", key, "=", val, " must be 0 or 1");
      return val == "1";
    };
    const bool dcd = r.mode == "dcd", laf = dcd && r.fusion == "laf";
    auto needs = [&](bool ok, const char* what) {
      FLOWLESS_CHECK(ok, "variant '", spec, "': ", key, " applies to ", what, " variants only");
    };
    if (key == "lambda_f") {
      r.lambda_f = number();
      FLOWLESS_CHECK(*r.lambda_f >= 0, "variant '", spec, "': lambda_f must be >= 0");
    } else if (key == "lambda_p") {
      needs(dcd, "dcd-*");
      r.lambda_p = number();
      FLOWLESS_CHECK(*r.lambda_p >= 0, "variant '", spec, "': lambda_p must be >= 0");
    } else if (key == "branch_weight") {
      needs(dcd, "dcd-*");
      r.branch_weight = number();
      FLOWLESS_CHECK(r.branch_weight >= 0, "variant '", spec, "': branch_weight must be >= 0");
    } else if (key == "branch_dim") {
      needs(dcd, "dcd-*");
      r.branch_dim = integer();
    } else if (key == "joint_grad") {
      needs(dcd, "dcd-*");
      r.joint_grad = boolean();
    } else if (key == "window") {
      needs(laf, "dcd-laf");
      r.laf.window = integer();
    } else if (key == "aggregation") {
      needs(laf, "dcd-laf");
      r.laf.aggregation = val;
    } else if (key == "residual") {
      needs(laf, "dcd-laf");
      r.laf.residual = boolean();
    } else if (key == "norm") {
      needs(laf, "dcd-laf");
      r.laf.norm = boolean();
    } else if (key == "out_proj") {
      needs(laf, "dcd-laf");
      r.laf.out_proj = boolean();
    } else {
      FLOWLESS_FAIL("variant '", spec, "': unknown option '", key,
                    "' (window, aggregation, residual, norm, out_proj, branch_dim, branch_weight, joint_grad, lambda_f, "
                    "lambda_p)");
    }
  }
  r.laf.validate("variant '" + spec + "'");
}

/// A file-name stem for a variant spec ("dcd-laf:window=9" -> "dcd-laf_window9").
inline std::string variant_file_stem(const std::string& spec) {
  std::string out;
  for (char c : spec) {
    if (c == ':' || c == ',') out += '_';
    else if (c == '=') continue;
    else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') out += c;
    else FLOWLESS_FAIL("variant '", spec, "': character '", std::string(1, c), "' is not allowed");
  }
  return out;
}

namespace training_detail {
inline std::string log_json(const TrainRequest& r, const TrainResult& res) {
  json::Value root = json::Value::object();
  root["mode"] = json::Value(r.mode);
  root["modality"] = json::Value(r.modality);
  root["arch"] = json::Value(r.arch);
  root["seconds"] = json::Value(res.seconds);
  json::Value ep = json::Value::array();
  for (auto& e : res.epochs) {
    json::Value v = json::Value::object();
    v["epoch"] = json::Value(e.summary.epoch);
    v["loss"] = json::Value(e.summary.mean_loss);
    v["lr"] = json::Value(e.summary.lr);
    v["seconds"] = json::Value(e.summary.seconds);
    for (auto& [k, x] : e.summary.mean_parts) v["loss_" + k] = json::Value(x);
    if (e.val_average_map >= 0) v["val_average_mAP"] = json::Value(e.val_average_map);
    ep.push_back(v);
  }
  root["epochs"] = ep;
  return json::dump(root, 1);
}
}  // namespace training_detail

/// Trains what the request describes and writes r.out (+ r.out + ".log.json").
inline TrainResult train_model(const TrainRequest& r) {
  FLOWLESS_CHECK(!r.data.empty(), "train: --data is required");
  FLOWLESS_CHECK(!r.out.empty(), "train: --out is required");
  cpu::parse_matmul_precision(r.precision);  // an unknown precision fails before any work
  set_num_threads(r.threads);
  const data::DatasetInfo info = data::load_dataset_info(r.data);
  const bool distill = r.mode == "dcd" || r.mode == "kd-plain";
  FLOWLESS_CHECK(r.mode == "detector" || distill, "train: unknown mode '", r.mode, "'");
  FLOWLESS_CHECK(!distill || !r.teacher.empty(), "train: --", r.mode, " needs --teacher");
  const std::string student_modality = distill ? "rgb" : r.modality;
  const auto channels = modality_channels(info, student_modality, r.data + "/dataset.json");

  // The batch carries every channel; tasks slice what their models read.
  data::DatasetOptions dopt;
  dopt.split = info.train_split;
  dopt.modality = "all";
  data::Dataset ds(r.data, dopt);
  FLOWLESS_CHECK(ds.size() > 0, r.data, ": the training split (", info.train_split.empty() ? "?" : info.train_split[0],
                 ") has no videos");

  DetectorConfig cfg = r.config_path.empty()
                           ? preset_config(r.preset, r.arch)
                           : models::read_config_file(r.config_path);
  if (r.config_path.empty()) cfg.arch = r.arch;
  FLOWLESS_CHECK(!cfg.force_upsampling && cfg.feat_stride > 0, r.config_path,
                 ": dataset.force_upsampling and fixed-length features (feat_stride <= 0; ActivityNet's "
                 "resampling to max_seq_len) are supported at inference only (flowless detect), not in training");
  FLOWLESS_CHECK(!cfg.unmasked_boundary_logits, r.config_path,
                 ": flowless.unmasked_boundary_logits (OpenTAD's TriDet) is supported at inference only; training "
                 "decodes the Trident head with masked boundary logits");
  FLOWLESS_CHECK(cfg.label_assigner == "center" || !distill, r.config_path, ": --", r.mode,
                 " assigns labels by center sampling, and model.assigner asks for TemporalMaxer's SimOTA assignment "
                 "(supported when training a detector); remove model.assigner to distill");
  FLOWLESS_CHECK(cfg.arch != "tridet" || !distill, r.config_path.empty() ? std::string("train") : r.config_path,
                 ": --", r.mode, " with the TriDet family is not supported (the DCD student and kd-plain use "
                 "ActionFormer-style heads, not the Trident head); train TriDet as a detector");
  cfg.input_dim = channels[1] - channels[0];
  cfg.channels = channels;
  cfg.modality = distill ? (r.mode == "dcd" ? "rgb (dcd student)" : "rgb (kd-plain)") : r.modality;
  cfg.num_classes = info.num_classes;
  cfg.feat_stride = ds.stride();
  cfg.num_frames = info.num_frames;
  cfg.default_fps = info.default_fps;
  cfg.max_seq_len = info.max_seq_len;
  if (cfg.mha_win_size.empty()) cfg.mha_win_size.assign(cfg.backbone_arch[2] + 1, 9);
  // max_seq_len must be divisible by every level's stride * window.
  cfg.max_seq_len = int((cfg.max_seq_len + cfg.max_div_factor() - 1) / cfg.max_div_factor() * cfg.max_div_factor());
  cfg.validate("train");

  train::TrainerOptions to = preset_trainer(r.preset);
  std::string recipe_source = "preset " + r.preset;
  if (!r.config_path.empty()) {
    bool opentad = false;  // set by read_config_tree, so read the tree first (argument order is unspecified)
    const json::Value tree = models::read_config_tree(r.config_path, opentad);
    const ConfigRecipe rc = config_recipe(tree, opentad, r.config_path);
    if (rc.present) {
      to.epochs = rc.epochs, to.warmup_epochs = rc.warmup_epochs, to.end_epoch = rc.end_epoch;
      to.batch_size = rc.batch_size, to.lr = rc.lr, to.weight_decay = rc.weight_decay, to.eta_min = rc.eta_min;
      to.clip_grad_l2norm = rc.clip_grad_l2norm, to.use_ema = rc.use_ema, to.ema_decay = rc.ema_decay;
      recipe_source = r.config_path + " (" + rc.source + ")";
    }
  }
  if (r.epochs >= 0) to.epochs = r.epochs;
  if (r.warmup_epochs >= 0) to.warmup_epochs = r.warmup_epochs;
  if (r.batch_size > 0) to.batch_size = r.batch_size;
  if (r.lr > 0) to.lr = r.lr;
  to.seed = r.seed;
  to.padded_T = cfg.max_seq_len;
  to.checkpoint = r.checkpoint;
  to.checkpoint_every = 1;
  to.progress = r.progress;
  to.label = r.label.empty() ? r.mode + ":" + (distill ? r.fusion : r.modality) : r.label;
  to.precision = r.precision;

  std::map<std::string, std::string> meta{{"label_names", label_names_json(ds.annotations())},
                                         {"trained_on", r.data},
                                         {"train_mode", r.mode},
                                         {"seed", std::to_string(r.seed)},
                                         {"train_precision", r.precision}};
  {
    // The optimisation recipe the model was trained with, and where it came from.
    json::Value rec = json::Value::object();
    rec["source"] = json::Value(recipe_source);
    rec["epochs"] = json::Value(to.epochs);
    rec["warmup_epochs"] = json::Value(to.warmup_epochs);
    if (to.end_epoch > 0) rec["end_epoch"] = json::Value(to.end_epoch);
    rec["batch_size"] = json::Value(to.batch_size);
    rec["learning_rate"] = json::Value(to.lr);
    rec["weight_decay"] = json::Value(to.weight_decay);
    rec["eta_min"] = json::Value(to.eta_min);
    rec["clip_grad_l2norm"] = json::Value(to.clip_grad_l2norm);
    rec["ema_decay"] = to.use_ema ? json::Value(to.ema_decay) : json::Value(nullptr);
    meta["train_recipe"] = json::dump(rec);
  }
  std::unique_ptr<nn::Module<float>> model_owner;
  std::unique_ptr<train::TrainTask<float>> task;
  std::unique_ptr<models::Detector<float>> teacher;
  std::function<std::unique_ptr<models::AnyModel<float>>()> as_any;
  std::function<void()> save;
  {
    const TrainRequest d;
    FLOWLESS_CHECK(r.mode == "dcd" || (r.branch_dim == d.branch_dim && r.branch_weight == d.branch_weight &&
                                       r.joint_grad == d.joint_grad &&
                                       dcd::laf_options_to_json(r.laf) == dcd::laf_options_to_json(d.laf)),
                   "train: --laf-*, --branch-dim, --branch-weight and --no-joint-grad apply to --dcd only");
    FLOWLESS_CHECK(r.branch_weight >= 0 && std::isfinite(r.branch_weight), "train: --branch-weight must be >= 0, got ",
                   r.branch_weight);
    FLOWLESS_CHECK(r.mode != "detector" || (!r.lambda_f && !r.lambda_p),
                   "train: --lambda-f and --lambda-p apply to --dcd and --kd-plain only");
    FLOWLESS_CHECK(r.mode == "dcd" || !r.lambda_p, "train: --lambda-p applies to --dcd only");
    for (auto [flag, v] : {std::pair{"--lambda-f", r.lambda_f}, std::pair{"--lambda-p", r.lambda_p}})
      FLOWLESS_CHECK(!v || (std::isfinite(*v) && *v >= 0), "train: ", flag, " must be a finite number >= 0, got ", *v);
  }
  const auto [lambda_f, lambda_p] = distillation_weights(r);
  if (r.mode == "kd-plain") {
    json::Value t = json::Value::object();
    t["lambda_f"] = json::Value(lambda_f);
    meta["kd_training"] = json::dump(t);
  }
  if (r.mode == "dcd") {
    json::Value t = json::Value::object();
    t["kd"] = json::Value(r.kd);
    t["lambda_f"] = json::Value(lambda_f);
    t["lambda_p"] = json::Value(lambda_p);
    t["branch_weight"] = json::Value(r.branch_weight);
    t["joint_grad"] = json::Value(r.joint_grad);
    meta["dcd_training"] = json::dump(t);
  }
  if (distill) {
    teacher = models::load_detector<float>(r.teacher);
    teacher->train(false);
    FLOWLESS_CHECK(teacher->config().arch != "tridet", r.teacher,
                   ": a TriDet teacher is not supported (its Trident head predicts boundary bins, not the "
                   "two distances the distillation targets); use an actionformer or temporalmaxer teacher");
    FLOWLESS_CHECK(teacher->config().num_classes == cfg.num_classes, r.teacher, ": the teacher has ",
                   teacher->config().num_classes, " classes, the dataset ", cfg.num_classes);
    auto flow = teacher->config().channels;
    if (flow[1] == 0) flow = modality_channels(info, "flow", r.data + "/dataset.json");
    if (r.mode == "dcd") {
      dcd::DcdStudentConfig sc;
      sc.detector = cfg;
      sc.fusion = r.fusion;
      sc.laf = r.laf;
      sc.branch_dim = r.branch_dim;
      sc.validate("train --dcd");
      auto student = std::make_unique<dcd::DcdStudent<float>>(sc, r.seed);
      dcd::DcdTaskOptions o;
      o.rgb_channels = channels;
      o.flow_channels = flow;
      o.seed = r.seed;
      o.lambda_f = r.kd.find("feature") != std::string::npos ? lambda_f : 0.0;
      o.lambda_p = r.kd.find("prediction") != std::string::npos ? lambda_p : 0.0;
      o.branch_weight = r.branch_weight;
      o.joint_grad_to_branches = r.joint_grad;
      task = std::make_unique<dcd::DcdTask<float>>(*student, *teacher, o);
      auto* s = student.get();
      save = [s, &r, meta] { dcd::save_dcd_student(r.out, *s, meta); };
      model_owner = std::move(student);
    } else {
      auto det = std::make_unique<models::Detector<float>>(cfg, r.seed);
      dcd::PlainKdOptions o;
      o.rgb_channels = channels;
      o.flow_channels = flow;
      o.seed = r.seed;
      o.lambda_f = lambda_f;
      task = std::make_unique<dcd::PlainKdTask<float>>(*det, *teacher, o);
      auto* d = det.get();
      save = [d, &r, meta] { models::save_detector(r.out, *d, meta); };
      model_owner = std::move(det);
    }
  } else {
    auto det = std::make_unique<models::Detector<float>>(cfg, r.seed);
    dcd::DetectorTaskOptions o;
    o.channels = channels;
    task = std::make_unique<dcd::DetectorTask<float>>(*det, o);
    auto* d = det.get();
    save = [d, &r, meta] { models::save_detector(r.out, *d, meta); };
    model_owner = std::move(det);
  }

  train::Trainer<float> trainer(*task, ds, to);
  if (r.resume) {
    FLOWLESS_CHECK(!r.checkpoint.empty(), "train: --resume needs --checkpoint");
    FLOWLESS_CHECK(io::file_exists(r.checkpoint), r.checkpoint, ": no checkpoint to resume from");
    trainer.load_checkpoint(r.checkpoint);
  }
  TrainResult res;
  res.parameters = model_owner->num_parameters();
  auto t0 = std::chrono::steady_clock::now();
  trainer.run([&](const train::EpochSummary& s) {
    EpochLog e{s, -1};
    if (!r.val_split.empty() && (s.epoch % std::max(1, r.val_every) == 0 || s.epoch == s.total_epochs)) {
      // Evaluate the EMA weights, as the final model will be.
      std::map<std::string, Tensor<float>> current = model_owner->state_dict();
      trainer.ema().copy_to(*model_owner);
      save();
      auto any = models::load_any_model<float>(r.out);
      auto preds = detect_split(*any, r.data, r.val_split);
      data::Annotations ann = data::load_annotations(r.data + "/annotations.json");
      e.val_average_map =
          eval::evaluate_detection(ann, r.val_split, preds, eval::parse_tiou_range("0.3:0.7:5")).average_map;
      model_owner->load_state_dict(current, "train (restore after validation)", true);
      if (r.progress) std::fprintf(stderr, "[%s] epoch %d validation average mAP %.2f\n", to.label.c_str(), s.epoch,
                                   100 * e.val_average_map);
    }
    res.epochs.push_back(e);
  });
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  save();
  io::write_file_atomic(r.out + ".log.json", training_detail::log_json(r, res) + "\n");
  return res;
}

}  // namespace flowless::workflow
