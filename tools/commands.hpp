// The flowless subcommands (tools/flowless.cpp wires them into CLI11).
#pragma once

#include <CLI/CLI.hpp>

#include <dirent.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <iomanip>
#include <sstream>
#include <thread>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "flowless/data/dataset.hpp"
#include "flowless/data/synth.hpp"
#include "flowless/eval/detection_map.hpp"
#include "flowless/eval/error_analysis.hpp"
#include "flowless/eval/paired.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/models/model_file.hpp"
#include "flowless/workflow/predictions.hpp"
#include "flowless/workflow/score_fusion.hpp"
#include "flowless/workflow/video_input.hpp"
#include "flowless/workflow/training.hpp"
#include "flowless/viz/plots.hpp"
#include "flowless/bench/model_bench.hpp"

namespace flowless::cli {

/// Lists `dir/*.npy` (and .npz) sorted by name.
inline std::vector<std::string> list_feature_files(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  FLOWLESS_CHECK(d != nullptr, dir, ": cannot open folder");
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 4 && (n.compare(n.size() - 4, 4, ".npy") == 0 || n.compare(n.size() - 4, 4, ".npz") == 0))
      out.push_back(dir + "/" + n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  FLOWLESS_CHECK(!out.empty(), dir, ": no .npy or .npz feature files");
  return out;
}

inline std::string file_stem(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  auto dot = name.find_last_of('.');
  return dot == std::string::npos ? name : name.substr(0, dot);
}

/// Reads one feature file as (T, C) float32.
inline std::vector<float> read_features(const std::string& path, int64_t& T, int64_t& C) {
  io::Array a;
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".npz") == 0) {
    auto m = io::load_npz(path);
    FLOWLESS_CHECK(m.size() == 1, path, ": expected one array in the .npz, found ", m.size());
    a = std::move(m.begin()->second);
  } else {
    a = io::load_npy(path);
  }
  FLOWLESS_CHECK(a.shape.size() == 2, path, ": features must be 2-D (T, C), got ", a.shape.size(), " dimensions");
  T = a.shape[0];
  C = a.shape[1];
  FLOWLESS_CHECK(T > 0, path, ": empty video (T = 0)");
  auto v = a.to_float32(path);
  for (size_t i = 0; i < v.size(); ++i)
    FLOWLESS_CHECK(std::isfinite(v[i]), path, ": non-finite feature value at row ", i / size_t(C), ", channel ",
                   i % size_t(C));
  return v;
}

/// Picks the model's input channels from a feature matrix (T, C): the whole
/// row when C == input_dim, else the config's channel range.
inline std::vector<float> select_channels(const std::vector<float>& x, int64_t T, int64_t C, const DetectorConfig& cfg,
                                          const std::string& ctx) {
  if (C == cfg.input_dim) return x;
  FLOWLESS_CHECK(cfg.channels[1] > 0 && cfg.channels[1] <= C, ctx, ": features have ", C, " channels, the model expects ",
                 cfg.input_dim, (cfg.channels[1] > 0 ? " (channels [" + std::to_string(cfg.channels[0]) + ", " +
                                                           std::to_string(cfg.channels[1]) + ") of the file)"
                                                     : std::string()));
  std::vector<float> out(size_t(T * cfg.input_dim));
  for (int64_t t = 0; t < T; ++t)
    std::copy(x.begin() + t * C + cfg.channels[0], x.begin() + t * C + cfg.channels[1], out.begin() + t * cfg.input_dim);
  return out;
}

/// Class names stored in a model file's metadata ("label_names": {"0": "Name", ...}).
inline std::map<int, std::string> label_names_of(const models::AnyModel<float>& m) {
  std::map<int, std::string> names;
  auto it = m.metadata().find("label_names");
  if (it == m.metadata().end()) return names;
  json::Value v = json::parse(it->second, "label_names metadata");
  for (auto& [k, name] : v.items()) names[std::stoi(k)] = name.as_string();
  return names;
}

class Commands {
 public:
  const std::string& active() const { return active_; }
  int run() { return run_(); }

  void add_all(CLI::App& app) {
    add_synth(app);
    add_train(app);
    add_detect(app);
    add_eval(app);
    add_info(app);
    add_convert(app);
    add_check(app);
    add_plot(app);
    add_demo(app);
    add_experiment(app);
    add_bench(app);
  }

 private:
  template <class F>
  CLI::App* sub(CLI::App& app, const std::string& name, const std::string& help, F fn) {
    CLI::App* s = app.add_subcommand(name, help);
    s->callback([this, name, fn] {
      active_ = name;
      run_ = fn;
    });
    return s;
  }

  // ---- synth ----------------------------------------------------------------
  struct {
    std::string out, preset = "default", config;
    uint64_t seed = 0;
    bool force = false;
  } synth_;
  /// The synthetic config: the preset, overridden by the fields of a JSON file
  /// when one is given (docs/synth.md, "Knobs"; a "preset" key in the file wins).
  static data::SynthConfig synth_config_of(const std::string& preset, const std::string& config_path) {
    data::SynthConfig cfg = data::synth_preset(preset);
    if (!config_path.empty()) cfg = data::synth_config_from_json(json::parse_file(config_path), cfg, config_path);
    return cfg;
  }
  void add_synth(CLI::App& app) {
    auto* s = sub(app, "synth", "write the built-in synthetic two-stream benchmark (THUMOS layout)", [this] {
      auto cfg = synth_config_of(synth_.preset, synth_.config);
      data::write_synthetic_dataset(synth_.out, cfg, synth_.seed, synth_.force);
      std::printf("wrote the '%s' synthetic dataset (seed %llu) to %s\n", cfg.name.c_str(),
                  (unsigned long long)synth_.seed, synth_.out.c_str());
      return 0;
    });
    s->add_option("--out", synth_.out, "output folder")->required();
    s->add_option("--preset", synth_.preset, "tiny | default | long | thumos-like")->capture_default_str();
    s->add_option("--config", synth_.config, "JSON object of generator fields overriding the preset (docs/synth.md)");
    s->add_option("--seed", synth_.seed, "random seed")->capture_default_str();
    s->add_flag("--force", synth_.force, "overwrite a non-empty folder");
  }


  // ---- train ----------------------------------------------------------------
  workflow::TrainRequest tr_;
  bool tr_dcd_ = false, tr_kd_plain_ = false, tr_quiet_ = false;
  double tr_lambda_f_ = 0, tr_lambda_p_ = 0;  // reach tr_ only when given (else the task's defaults)
  CLI::Option* tr_lambda_f_opt_ = nullptr;
  CLI::Option* tr_lambda_p_opt_ = nullptr;
  void add_train(CLI::App& app) {
    auto* s = sub(app, "train", "train a detector, a DCD student (--dcd) or a plain-distillation baseline (--kd-plain)",
                  [this] {
                    FLOWLESS_CHECK(!(tr_dcd_ && tr_kd_plain_), "give at most one of --dcd and --kd-plain");
                    tr_.mode = tr_dcd_ ? "dcd" : tr_kd_plain_ ? "kd-plain" : "detector";
                    if (tr_lambda_f_opt_->count()) tr_.lambda_f = tr_lambda_f_;
                    if (tr_lambda_p_opt_->count()) tr_.lambda_p = tr_lambda_p_;
                    tr_.progress = !tr_quiet_;
                    auto res = workflow::train_model(tr_);
                    const auto& last = res.epochs.back().summary;
                    std::printf("trained %s (%lld parameters) in %.1f s, final loss %.4f -> %s\n", tr_.mode.c_str(),
                                (long long)res.parameters, res.seconds, last.mean_loss, tr_.out.c_str());
                    return 0;
                  });
    s->add_option("--data", tr_.data, "dataset folder")->required();
    s->add_option("--out", tr_.out, "model file to write (.safetensors)")->required();
    s->add_option("--modality", tr_.modality, "rgb | flow | two-stream (detectors)")->capture_default_str();
    s->add_option("--arch", tr_.arch, "actionformer | temporalmaxer | tridet")->capture_default_str();
    s->add_option("--preset", tr_.preset, "model/training preset: small | tiny | thumos")->capture_default_str();
    s->add_option("--config", tr_.config_path, "reference config (JSON, or OpenTAD's .py): its model, and its optimisation recipe "
                  "(opt / loader, or OpenTAD's optimizer / scheduler / solver) where it names one, replace the preset's");
    s->add_option("--epochs", tr_.epochs, "cosine epochs after warmup (default: preset)");
    s->add_option("--warmup-epochs", tr_.warmup_epochs, "warmup epochs (default: preset)");
    s->add_option("--batch-size", tr_.batch_size, "videos per batch (default: preset)");
    s->add_option("--lr", tr_.lr, "base learning rate (default: preset)");
    s->add_option("--seed", tr_.seed, "random seed")->capture_default_str();
    s->add_option("--threads", tr_.threads, "worker threads")->capture_default_str();
    s->add_option("--val-split", tr_.val_split, "evaluate mAP on this split after epochs");
    s->add_option("--val-every", tr_.val_every, "epochs between validations")->capture_default_str();
    s->add_option("--checkpoint", tr_.checkpoint, "write a training checkpoint here every epoch (atomic)");
    s->add_flag("--resume", tr_.resume, "continue from --checkpoint");
    s->add_flag("--dcd", tr_dcd_, "train a DCD student (RGB at inference) from --teacher");
    s->add_flag("--kd-plain", tr_kd_plain_, "train the conventional (entangled) distillation baseline from --teacher");
    s->add_option("--teacher", tr_.teacher, "frozen teacher model file (flow modality)");
    s->add_option("--fusion", tr_.fusion, "DCD fusion: laf | concat")->capture_default_str();
    s->add_option("--kd", tr_.kd, "DCD distillation terms: feature,prediction")->capture_default_str();
    tr_lambda_f_opt_ = s->add_option("--lambda-f", tr_lambda_f_,
                                     "feature distillation weight (default: 0.5 with --dcd, 0.25 with --kd-plain)");
    tr_lambda_p_opt_ = s->add_option("--lambda-p", tr_lambda_p_, "DCD: prediction distillation weight (default: 0.5)");
    s->add_option("--branch-weight", tr_.branch_weight, "DCD: weight of the appearance branch's detection loss")
        ->capture_default_str();
    s->add_option("--branch-dim", tr_.branch_dim, "DCD: width of F_m and F_a (0 = the neck width)")->capture_default_str();
    s->add_flag("!--no-joint-grad", tr_.joint_grad,
                "DCD: the joint head's loss stops at the fusion input (does not train the branches and trunk)");
    s->add_option("--laf-window", tr_.laf.window, "DCD: LAF query window (odd)")->capture_default_str();
    s->add_option("--laf-aggregation", tr_.laf.aggregation, "DCD: LAF window aggregation: mean | max")
        ->capture_default_str();
    s->add_flag("--laf-residual", tr_.laf.residual, "DCD: LAF output += target");
    s->add_flag("--laf-norm", tr_.laf.norm, "DCD: LayerNorm after the LAF (residual)");
    s->add_flag("--laf-out-proj", tr_.laf.out_proj, "DCD: a 1x1 conv on the LAF output");
    s->add_option("--precision", tr_.precision,
                  "matrix products: fp32, or bf16 (mixed precision: bf16 products, fp32 weights/gradients/optimizer)")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    s->add_flag("--quiet", tr_quiet_, "no progress output");
  }


  // ---- plot -----------------------------------------------------------------
  struct {
    std::string annotations, pred, out, split = "test";
    std::vector<std::string> logs;
    int max_videos = 20, top_k = 20;
  } plot_;
  void add_plot(CLI::App& app) {
    auto* s = sub(app, "plot", "SVG timelines (ground truth vs detections) and training curves", [this] {
      FLOWLESS_CHECK(!plot_.pred.empty() || !plot_.logs.empty(), "give --pred (timelines) and/or --log (curves)");
      io::make_dirs(plot_.out);
      if (!plot_.pred.empty()) {
        FLOWLESS_CHECK(!plot_.annotations.empty(), "--pred needs --annotations");
        auto ann = data::load_annotations(plot_.annotations);
        auto preds = eval::load_predictions(plot_.pred, ann);
        viz::TimelineOptions o;
        o.top_k = plot_.top_k;
        viz::write_timelines(plot_.out, ann, plot_.split, preds, plot_.max_videos, o);
        std::printf("timelines -> %s/index.html\n", plot_.out.c_str());
      }
      if (!plot_.logs.empty()) {
        write_curves(plot_.out + "/curves.svg", plot_.logs);
        std::printf("training curves -> %s/curves.svg\n", plot_.out.c_str());
      }
      return 0;
    });
    s->add_option("--annotations", plot_.annotations, "annotation JSON");
    s->add_option("--pred", plot_.pred, "predictions JSON");
    s->add_option("--split", plot_.split, "split whose videos get timelines")->capture_default_str();
    s->add_option("--log", plot_.logs, "training logs (MODEL.safetensors.log.json), one curve each");
    s->add_option("--max-videos", plot_.max_videos, "timelines to draw")->capture_default_str();
    s->add_option("--top-k", plot_.top_k, "detections drawn per video")->capture_default_str();
    s->add_option("--out", plot_.out, "output folder")->required();
  }
  /// Loss and validation mAP per epoch from training logs.
  static void write_curves(const std::string& path, const std::vector<std::string>& logs) {
    std::vector<viz::Series> loss, map;
    for (auto& f : logs) {
      json::Value v = json::parse_file(f);
      viz::Series l{file_stem(file_stem(file_stem(f))), {}, {}}, m = l;
      for (auto& e : v.at("epochs").as_array()) {
        l.x.push_back(e.at("epoch").as_number());
        l.y.push_back(e.at("loss").as_number());
        if (e.contains("val_average_mAP")) {
          m.x.push_back(e.at("epoch").as_number());
          m.y.push_back(100 * e.at("val_average_mAP").as_number());
        }
      }
      loss.push_back(l);
      if (!m.x.empty()) map.push_back(m);
    }
    std::vector<std::pair<std::string, std::vector<viz::Series>>> panels{{"training loss", loss}};
    if (!map.empty()) panels.push_back({"validation average mAP (%)", map});
    io::write_file_atomic(path, viz::curves_panel_svg(panels));
  }

  // ---- demo -----------------------------------------------------------------
  struct {
    std::string out = "out/demo", preset = "default", model_preset = "small";
    int threads = 0, epochs = -1;
    uint64_t seed = 1;
  } demo_;
  void add_demo(CLI::App& app) {
    auto* s = sub(app, "demo", "synthesise the built-in benchmark, train flow/RGB/two-stream/DCD, evaluate, compare",
                  [this] { return demo(); });
    s->add_option("--out", demo_.out, "output folder")->capture_default_str();
    s->add_option("--preset", demo_.preset, "synthetic data preset")->capture_default_str();
    s->add_option("--model-preset", demo_.model_preset, "model/training preset")->capture_default_str();
    s->add_option("--epochs", demo_.epochs, "cosine epochs per model (default: preset)");
    s->add_option("--threads", demo_.threads, "worker threads (default: all cores)");
    s->add_option("--seed", demo_.seed, "seed for data and training")->capture_default_str();
  }
  int demo() {
    const int threads = demo_.threads > 0 ? demo_.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    const std::string data = demo_.out + "/data";
    io::make_dirs(demo_.out);
    if (!io::file_exists(data + "/dataset.json")) {
      std::printf("[demo] writing the '%s' synthetic benchmark to %s\n", demo_.preset.c_str(), data.c_str());
      data::write_synthetic_dataset(data, data::synth_preset(demo_.preset), demo_.seed, true);
    } else {
      std::printf("[demo] reusing the dataset in %s\n", data.c_str());
    }
    struct Run { std::string name, mode, modality, fusion; };
    const std::vector<Run> runs = {{"flow-only (teacher)", "detector", "flow", ""},
                                   {"RGB-only", "detector", "rgb", ""},
                                   {"two-stream (RGB+flow)", "detector", "two-stream", ""},
                                   {"DCD student (RGB only)", "dcd", "rgb", "laf"}};
    const std::string teacher = demo_.out + "/flow_teacher.safetensors";
    data::Annotations ann = data::load_annotations(data + "/annotations.json");
    std::vector<std::pair<std::string, eval::DetectionResult>> table;
    for (auto& run : runs) {
      workflow::TrainRequest r;
      r.data = data;
      r.mode = run.mode;
      r.modality = run.modality;
      r.fusion = run.fusion.empty() ? "laf" : run.fusion;
      r.preset = demo_.model_preset;
      r.epochs = demo_.epochs;
      r.seed = demo_.seed;
      r.threads = threads;
      r.teacher = teacher;
      r.label = run.name;
      r.out = run.mode == "detector" && run.modality == "flow" ? teacher
                                                                : demo_.out + "/" + run.mode + "_" + run.modality + ".safetensors";
      auto res = workflow::train_model(r);
      auto model = models::load_any_model<float>(r.out);
      auto t0 = std::chrono::steady_clock::now();
      auto preds = workflow::detect_split(*model, data, "test");
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto result = eval::evaluate_detection(ann, "test", preds, eval::parse_tiou_range("0.3:0.7:5"));
      std::printf("[demo] %-24s trained in %.0f s, detection %.1f s, average mAP %.2f\n", run.name.c_str(), res.seconds,
                  secs, 100 * result.average_map);
      write_predictions_json(demo_.out + "/pred_" + run.mode + "_" + run.modality + ".json", preds, ann);
      table.push_back({run.name, result});
      std::fflush(stdout);
    }
    std::string text = comparison_table(table);
    std::printf("\n%s", text.c_str());
    io::write_file_atomic(demo_.out + "/results.md", text);
    std::vector<std::string> logs;
    for (auto& run : runs) {
      std::string m = run.mode == "detector" && run.modality == "flow" ? teacher
                                                                      : demo_.out + "/" + run.mode + "_" + run.modality + ".safetensors";
      logs.push_back(m + ".log.json");
    }
    write_curves(demo_.out + "/curves.svg", logs);
    viz::write_timelines(demo_.out + "/timelines", ann, "test",
                         eval::load_predictions(demo_.out + "/pred_dcd_rgb.json", ann), 12);
    std::printf("\nplots: %s/curves.svg, %s/timelines/index.html (DCD student)\n", demo_.out.c_str(), demo_.out.c_str());
    return 0;
  }


  // ---- experiment -------------------------------------------------------------
  struct {
    std::string out = "out/experiment", preset = "default", model_preset = "small", arch = "actionformer", synth_config;
    std::vector<std::string> variants{"rgb", "flow", "two-stream", "kd-plain", "dcd-concat", "dcd-laf"};
    int seeds = 3, threads = 0, epochs = -1;
    uint64_t data_seed = 1;
  } exp_;
  void add_experiment(CLI::App& app) {
    auto* s = sub(app, "experiment",
                  "the DCD comparison: every variant x seeds on one synthetic preset, mean +- std (resumable)",
                  [this] { return experiment(); });
    s->add_option("--out", exp_.out, "output folder (finished runs are reused)")->capture_default_str();
    s->add_option("--preset", exp_.preset, "synthetic data preset")->capture_default_str();
    s->add_option("--synth-config", exp_.synth_config, "JSON object of generator fields overriding the preset");
    s->add_option("--model-preset", exp_.model_preset, "model/training preset")->capture_default_str();
    s->add_option("--arch", exp_.arch, "detector family of every model")->capture_default_str();
    s->add_option("--variants", exp_.variants,
                  "rgb flow two-stream kd-plain dcd-concat dcd-laf; a DCD variant may carry options, "
                  "e.g. dcd-laf:window=9,residual=1 (docs/dcd.md)")
        ->capture_default_str();
    s->add_option("--seeds", exp_.seeds, "training seeds 1..N")->capture_default_str();
    s->add_option("--epochs", exp_.epochs, "cosine epochs per model (default: preset)");
    s->add_option("--threads", exp_.threads, "worker threads (default: all cores)");
    s->add_option("--data-seed", exp_.data_seed, "seed of the synthetic data")->capture_default_str();
  }
  int experiment() {
    const int threads = exp_.threads > 0 ? exp_.threads : int(std::max(1u, std::thread::hardware_concurrency()));
    const std::string data = exp_.out + "/data";
    for (auto& v : exp_.variants) {  // a bad variant fails before anything is trained
      workflow::TrainRequest probe;
      workflow::configure_variant(probe, v);
      workflow::variant_file_stem(v);
      FLOWLESS_CHECK(exp_.arch != "tridet" || probe.mode == "detector", "experiment: variant '", v,
                     "' distills, which the TriDet family does not support; with --arch tridet use rgb flow two-stream");
    }
    io::make_dirs(exp_.out);
    const data::SynthConfig synth_cfg = synth_config_of(exp_.preset, exp_.synth_config);
    if (!io::file_exists(data + "/dataset.json")) {
      data::write_synthetic_dataset(data, synth_cfg, exp_.data_seed, true);
    } else if (io::file_exists(data + "/synth.json")) {
      // Finished runs are reused: only when they were made from the same data.
      json::Value had = json::parse_file(data + "/synth.json");
      FLOWLESS_CHECK(json::dump(had.at("config")) == json::dump(data::synth_config_to_json(synth_cfg)) &&
                         had.at("seed").as_number() == double(exp_.data_seed),
                     data, ": holds a synthetic dataset made with another config or seed (see its synth.json); "
                           "use another --out");
    }
    data::Annotations ann = data::load_annotations(data + "/annotations.json");
    auto tious = eval::parse_tiou_range("0.3:0.7:5");
    std::map<std::string, std::vector<eval::DetectionResult>> results;
    std::map<std::string, std::vector<double>> infer_secs, params, train_secs;
    std::map<std::string, std::vector<FpSummary>> fps;
    for (int seed = 1; seed <= exp_.seeds; ++seed) {
      const std::string sd = exp_.out + "/seed" + std::to_string(seed);
      io::make_dirs(sd);
      const std::string teacher = sd + "/flow.safetensors";
      std::vector<std::string> order = exp_.variants;
      // The flow detector is every distillation variant's teacher: train it first.
      auto needs_teacher =
          std::any_of(order.begin(), order.end(), [](auto& v) { return v.rfind("kd-plain", 0) == 0 || v.rfind("dcd", 0) == 0; });
      if (needs_teacher && std::find(order.begin(), order.end(), "flow") == order.end()) order.insert(order.begin(), "flow");
      std::stable_partition(order.begin(), order.end(), [](auto& v) { return v == "flow"; });
      for (auto& v : order) {
        workflow::TrainRequest r;
        r.data = data;
        r.arch = exp_.arch;
        r.preset = exp_.model_preset;
        r.epochs = exp_.epochs;
        r.seed = uint64_t(seed);
        r.threads = threads;
        r.teacher = teacher;
        r.label = v + " seed " + std::to_string(seed);
        workflow::configure_variant(r, v);
        const std::string stem = workflow::variant_file_stem(v);
        r.out = v == "flow" ? teacher : sd + "/" + stem + ".safetensors";
        const std::string result_file = sd + "/" + stem + ".result.json";
        // A file from an earlier run is reused only if it has this run's distillation weights:
        // the model file's record, or the result's own when the model file was deleted.
        if (io::file_exists(r.out))
          workflow::check_distillation_weights(r, r.out);
        else if (io::file_exists(result_file))
          workflow::check_result_distillation_weights(r, json::parse_file(result_file), result_file);
        if (!io::file_exists(result_file)) {
          if (!io::file_exists(r.out)) workflow::train_model(r);
          double train_secs = -1;
          if (io::file_exists(r.out + ".log.json"))
            train_secs = json::parse_file(r.out + ".log.json").at("seconds").as_number();
          auto model = models::load_any_model<float>(r.out);
          auto t0 = std::chrono::steady_clock::now();
          auto preds = workflow::detect_split(*model, data, "test");
          double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
          auto res = eval::evaluate_detection(ann, "test", preds, tious);
          json::Value j = eval::to_json(res);
          j["false_positives"] = eval::to_json(eval::analyze_false_positives(ann, "test", preds, tious));
          j["inference_seconds"] = json::Value(secs);
          j["parameters"] = json::Value(model->module().num_parameters());
          j["train_seconds"] = json::Value(train_secs);
          j["distillation_weights"] = workflow::distillation_weights_json(r);
          io::write_file_atomic(result_file, json::dump(j, 1));
        }
        json::Value j = json::parse_file(result_file);
        if (io::file_exists(r.out) && (!j.contains("false_positives") || !j.contains("distillation_weights"))) {
          // A result written before the error analysis (session 13) or the weights record (session 14):
          // add what it lacks from its model file, checked above (detection is quick).
          if (!j.contains("false_positives")) {
            auto model = models::load_any_model<float>(r.out);
            j["false_positives"] = eval::to_json(
                eval::analyze_false_positives(ann, "test", workflow::detect_split(*model, data, "test"), tious));
          }
          j["distillation_weights"] = workflow::distillation_weights_json(r);
          io::write_file_atomic(result_file, json::dump(j, 1));
        }
        eval::DetectionResult res;
        res.tiou_thresholds = tious;
        for (auto& m : j.at("mAP").as_array()) res.map.push_back(m.as_number());
        res.average_map = j.at("average_mAP").as_number();
        if (std::find(exp_.variants.begin(), exp_.variants.end(), v) != exp_.variants.end()) {
          results[v].push_back(res);
          infer_secs[v].push_back(j.at("inference_seconds").as_number());
          params[v].push_back(j.at("parameters").as_number());
          if (j.contains("train_seconds") && j.at("train_seconds").as_number() >= 0)
            train_secs[v].push_back(j.at("train_seconds").as_number());
          if (j.contains("false_positives")) {
            const json::Value& f = j.at("false_positives");
            FpSummary sm;
            for (int e = 0; e < eval::kNumFpTypes; ++e) {
              sm.fraction[size_t(e)] = f.at("fraction").at(eval::fp_type_key(e)).as_number();
              if (e > 0) sm.gain[size_t(e)] = f.at("average_mAP_gain").at(eval::fp_type_key(e)).as_number();
            }
            fps[v].push_back(sm);
          }
        }
        std::printf("[experiment] %s seed %d: average mAP %.2f (mAP@0.3 %.2f, mAP@0.7 %.2f)\n", v.c_str(), seed,
                    100 * res.average_map, 100 * res.map.front(), 100 * res.map.back());
        std::fflush(stdout);
      }
    }
    std::string text = mean_std_table(exp_.variants, results, tious, infer_secs, params, train_secs);
    text += paired_table(exp_.variants, results);
    text += false_positive_table(exp_.variants, fps);
    std::printf("\n%s", text.c_str());
    io::write_file_atomic(exp_.out + "/results.md", text);
    return 0;
  }

  static std::string mean_std_table(const std::vector<std::string>& variants,
                                    std::map<std::string, std::vector<eval::DetectionResult>>& results,
                                    const std::vector<double>& tious,
                                    std::map<std::string, std::vector<double>>& secs,
                                    std::map<std::string, std::vector<double>>& params,
                                    std::map<std::string, std::vector<double>>& train_secs) {
    auto stats = [](const std::vector<double>& x) { return eval::mean_and_std(x); };
    std::ostringstream os;
    os << std::fixed << std::setprecision(2);
    os << "| variant | runs |";
    for (double t : tious) os << " mAP@" << std::setprecision(1) << t << std::setprecision(2) << " |";
    os << " average | params | test-split inference (s) | training (s) |\n|---|---|";
    for (size_t i = 0; i < tious.size() + 4; ++i) os << "---|";
    os << "\n";
    for (auto& v : variants) {
      auto& rs = results[v];
      if (rs.empty()) continue;
      os << "| " << v << " | " << rs.size() << " |";
      for (size_t k = 0; k < tious.size(); ++k) {
        std::vector<double> x;
        for (auto& r : rs) x.push_back(100 * r.map[k]);
        auto [m, sd] = stats(x);
        os << " " << m << " ± " << sd << " |";
      }
      std::vector<double> avg;
      for (auto& r : rs) avg.push_back(100 * r.average_map);
      auto [m, sd] = stats(avg);
      os << " **" << m << " ± " << sd << "** | " << std::setprecision(0) << params[v][0] << std::setprecision(2) << " | "
         << stats(secs[v]).first << " | ";
      if (train_secs[v].empty()) {
        os << "- |\n";
      } else {
        os << std::setprecision(0) << stats(train_secs[v]).first << std::setprecision(2) << " |\n";
      }
    }
    return os.str();
  }


  // Every variant against rgb, and every dcd-laf variant against dcd-concat, paired by
  // seed (eval/paired.hpp): the mean difference ± its standard error, and on how many
  // seeds it was positive. Empty when no pair of variants ran.
  static std::string paired_table(const std::vector<std::string>& variants,
                                  std::map<std::string, std::vector<eval::DetectionResult>>& results) {
    std::vector<std::pair<std::string, std::string>> pairs;
    auto ran = [&](const std::string& v) { return results.count(v) && !results[v].empty(); };
    for (auto& v : variants) {
      if (v != "rgb" && ran(v) && ran("rgb")) pairs.push_back({v, "rgb"});
      if (v.rfind("dcd-laf", 0) == 0 && ran(v) && ran("dcd-concat")) pairs.push_back({v, "dcd-concat"});
    }
    if (pairs.empty()) return "";
    const eval::DetectionResult& first = results[pairs.front().first].front();
    const size_t K = first.map.size();
    std::ostringstream os;
    os << std::fixed << std::setprecision(2);
    os << "\nPaired by seed (mean difference ± standard error, seeds where it is positive):\n\n"
       << "| difference | average mAP | mAP@" << std::setprecision(1) << first.tiou_thresholds.front() << " | mAP@"
       << first.tiou_thresholds.back() << std::setprecision(2) << " |\n|---|---|---|---|\n";
    for (auto& [a, b] : pairs) {
      auto column = [&](const std::string& v, int k) {  // k = -1: the average
        std::vector<double> x;
        for (auto& r : results[v]) x.push_back(100 * (k < 0 ? r.average_map : r.map[size_t(k)]));
        return x;
      };
      os << "| " << a << " − " << b << " |";
      for (int k : {-1, 0, int(K) - 1}) {
        auto d = eval::paired_difference(column(a, k), column(b, k));
        const double m = d.mean == 0 ? 0.0 : d.mean;  // no "-0.00"
        os << " " << (m >= 0 ? "+" : "") << m << " ± " << d.std_error << " (" << d.positive << " of " << d.n
           << ") |";
      }
      os << "\n";
    }
    return os.str();
  }

  // One run's false-positive profile (eval/error_analysis.hpp): each type's share of the
  // analysed predictions and the average-mAP gain of removing it, as fractions.
  struct FpSummary {
    std::array<double, eval::kNumFpTypes> fraction{}, gain{};
  };
  // Mean over seeds per variant: "share % (+gain)" per error type. Empty when no run has one.
  static std::string false_positive_table(const std::vector<std::string>& variants,
                                          std::map<std::string, std::vector<FpSummary>>& fps) {
    bool any = false;
    for (auto& v : variants) any = any || (fps.count(v) && !fps[v].empty());
    if (!any) return "";
    std::ostringstream os;
    os << std::fixed << std::setprecision(1);
    os << "\nFalse positives (DETAD, top 10G predictions per class; mean over seeds): each type's share of the "
          "analysed predictions in %, averaged over the tIoU thresholds, and in brackets the average-mAP gain in "
          "points if that type were removed:\n\n| variant | runs |";
    for (int e = 0; e < eval::kNumFpTypes; ++e) os << " " << eval::fp_type_name(e) << " |";
    os << "\n|---|---|";
    for (int e = 0; e < eval::kNumFpTypes; ++e) os << "---|";
    os << "\n";
    for (auto& v : variants) {
      if (!fps.count(v) || fps[v].empty()) continue;
      const auto& rs = fps[v];
      os << "| " << v << " | " << rs.size() << " |";
      for (int e = 0; e < eval::kNumFpTypes; ++e) {
        double f = 0, g = 0;
        for (auto& r : rs) {
          f += r.fraction[size_t(e)];
          g += r.gain[size_t(e)];
        }
        f *= 100.0 / double(rs.size());
        g *= 100.0 / double(rs.size());
        os << " " << f;
        if (e > 0) os << " (+" << std::setprecision(2) << (g == 0 ? 0.0 : g) << std::setprecision(1) << ")";
        os << " |";
      }
      os << "\n";
    }
    return os.str();
  }

  // ---- bench ------------------------------------------------------------------
  bench::ModelBenchOptions bench_;
  bool bench_json_ = false;
  void add_bench(CLI::App& app) {
    auto* s = sub(app, "bench", "time a whole detector (inference, optionally a training step) on this machine", [this] {
      json::Value r = bench::run_model_bench(bench_);
      if (bench_json_) {
        std::printf("%s\n", json::dump(r).c_str());
      } else {
        std::printf("%s\n", json::dump(r, 1).c_str());
      }
      return 0;
    });
    s->add_option("--preset", bench_.preset, "actionformer-thumos | actionformer-small | temporalmaxer-thumos | tridet-thumos")
        ->capture_default_str();
    s->add_option("--T", bench_.T, "snippets of the benchmark video")->capture_default_str();
    s->add_option("--threads", bench_.threads, "worker threads")->capture_default_str();
    s->add_flag("--train", bench_.train, "also time a training step (batch 2, T = max_seq_len)");
    s->add_option("--repeats", bench_.repeats, "timed repetitions (the median is reported)")->capture_default_str();
    s->add_option("--device", bench_.device, "cpu (cuda: see docs/cuda.md)")->capture_default_str();
    s->add_flag("--profile", bench_.profile, "per-op-class timings");
    s->add_option("--precision", bench_.precision, "inference matrix products: fp32 | bf16")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    s->add_option("--warmup", bench_.warmup, "untimed runs before the timed ones (training steps: one more when > 0)")
        ->capture_default_str();
    s->add_option("--train-precision", bench_.train_precision, "training-step matrix products: fp32 | bf16")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    s->add_flag("--scaling", bench_.scaling,
                "also time the forward at 1 thread against --threads, alternating in this run (thread_scaling)");
    s->add_flag("--student", bench_.student, "also time the DCD student (same trunk; see docs/performance.md)");
    s->add_option("--branch-dim", bench_.branch_dim, "the student's branch width (0 = fpn_dim)")->capture_default_str();
    s->add_option("--fusion", bench_.fusion, "the student's fusion: laf | concat")->capture_default_str();
    s->add_flag("--json", bench_json_, "one-line JSON");
  }

  static void write_predictions_json(const std::string& path, const std::vector<eval::Prediction>& preds,
                                     const data::Annotations& ann) {
    workflow::VideoDetections v;
    std::map<std::string, size_t> index;
    for (auto& p : preds) {
      auto it = index.find(p.video_id);
      if (it == index.end()) {
        it = index.emplace(p.video_id, v.size()).first;
        v.push_back({p.video_id, {}});
      }
      v[it->second].second.push_back({p.start, p.end, p.label_id, p.score});
    }
    workflow::write_predictions(path, v, ann.label_names);
  }

  static std::string comparison_table(const std::vector<std::pair<std::string, eval::DetectionResult>>& rows) {
    std::ostringstream os;
    os << "| detector (input at inference) |";
    for (double t : rows.front().second.tiou_thresholds) os << " mAP@" << std::fixed << std::setprecision(1) << t << " |";
    os << " average |\n|---|";
    for (size_t i = 0; i <= rows.front().second.tiou_thresholds.size(); ++i) os << "---|";
    os << "\n";
    for (auto& [name, r] : rows) {
      os << "| " << name << " |";
      for (double m : r.map) os << " " << std::fixed << std::setprecision(2) << 100 * m << " |";
      os << " **" << std::fixed << std::setprecision(2) << 100 * r.average_map << "** |\n";
    }
    return os.str();
  }

  // ---- detect ---------------------------------------------------------------
  struct {
    std::string config, weights, model, features, data, split = "test", out, dump_heads, precision = "fp32",
        head = "joint", ext_scores, annotations;
    bool no_ext_scores = false;
    double fps = 0;
    int threads = 1;
  } det_;
  void add_detect(CLI::App& app) {
    auto* s = sub(app, "detect", "detect actions in feature files or a dataset split", [this] { return detect(); });
    s->add_option("--config", det_.config,
                  "reference config (with reference --weights): JSON, or OpenTAD's Python config (.py)");
    s->add_option("--weights", det_.weights, "weights: reference .safetensors / .pth.tar, or a flowless model file");
    s->add_option("--model", det_.model, "a flowless model file (config inside)");
    s->add_option("--features", det_.features, "a (T, C) .npy/.npz file or a folder of them (id = file stem)");
    s->add_option("--data", det_.data, "a dataset folder (instead of --features)");
    s->add_option("--split", det_.split, "dataset split with --data")->capture_default_str();
    s->add_option("--fps", det_.fps,
                  "frames per second of the videos (with --features; default: config, --annotations, or 30)");
    s->add_option("--annotations", det_.annotations,
                  "with --features: annotation JSON giving each video's duration (and fps when the config has "
                  "none), as the reference's dataset does");
    s->add_option("--ext-scores", det_.ext_scores,
                  "fuse video-level classifier scores (JSON {\"results\": {id: [score per class]}}) into the "
                  "detections: top 200 segments x top 2 classes, score sqrt(class x segment); default: the "
                  "config's test_cfg.ext_score_file");
    s->add_flag("--no-ext-scores", det_.no_ext_scores, "ignore the config's test_cfg.ext_score_file");
    s->add_option("--out", det_.out, "predictions JSON (ActivityNet result layout)")->required();
    s->add_option("--dump-heads", det_.dump_heads, "write per-level cls_logits/offsets/fpn_feats to a safetensors file");
    s->add_option("--threads", det_.threads, "worker threads")->capture_default_str();
    s->add_option("--precision", det_.precision,
                  "matrix products: fp32, or bf16 (AVX-512 BF16, fp32 accumulation; see docs/performance.md)")
        ->check(CLI::IsMember({"fp32", "bf16"}))
        ->capture_default_str();
    s->add_option("--head", det_.head,
                  "DCD students only: joint (the deployed path), or the shared branch heads on the motion or "
                  "appearance branch (analysis)")
        ->check(CLI::IsMember({"joint", "motion", "appearance"}))
        ->capture_default_str();
  }
  int detect() {
    set_num_threads(det_.threads);
    const cpu::MatmulPrecision precision = cpu::parse_matmul_precision(det_.precision);
    if (precision == cpu::MatmulPrecision::bf16 && !cpu::matmul_bf16_available())
      std::fprintf(stderr, "warning: --precision bf16: this build has no AVX-512 BF16, running in fp32\n");
    cpu::MatmulPrecisionScope precision_scope(precision);
    FLOWLESS_CHECK(det_.model.empty() != det_.weights.empty(), "give exactly one of --model or --weights");
    FLOWLESS_CHECK(det_.features.empty() != det_.data.empty(), "give exactly one of --features or --data");
    FLOWLESS_CHECK(det_.annotations.empty() || !det_.features.empty(),
                   "--annotations goes with --features (a --data folder has its own annotations.json)");
    FLOWLESS_CHECK(det_.ext_scores.empty() || !det_.no_ext_scores, "give --ext-scores or --no-ext-scores, not both");
    const std::string path = det_.model.empty() ? det_.weights : det_.model;
    // --dump-heads needs the plain detector's raw outputs; everything else runs any model file.
    std::unique_ptr<models::Detector<float>> detector;
    std::unique_ptr<models::AnyModel<float>> any;
    if (!det_.dump_heads.empty()) {
      detector = models::open_detector<float>(path, det_.config);
    } else {
      any = models::load_any_model<float>(path, det_.config);
    }
    if (det_.head != "joint") {
      auto* st = dynamic_cast<models::AnyDcdStudent<float>*>(any.get());
      FLOWLESS_CHECK(st != nullptr, path, ": --head ", det_.head, " needs a DCD student file (this is a ",
                     any ? any->format() : std::string(models::kDetectorFormat), ")");
      st->student().set_inference_head(dcd::parse_student_head(det_.head));
    }
    const DetectorConfig cfg = detector ? detector->config() : any->config();
    // The weights stay fixed for the whole command: each conv weight is transformed and packed once, not per video.
    ConvWeightCacheScope weights_once;
    workflow::VideoDetections results;
    std::map<int, std::string> names = any ? label_names_of(*any) : std::map<int, std::string>{};
    bool names_from_annotations = false;
    io::SafeTensors dump;
    auto run_one = [&](const std::string& id, const std::vector<float>& x, int64_t T, int64_t C, VideoMeta meta,
                       const std::string& ctx, bool multi) {
      if (any) {
        results.push_back({id, any->detect(x.data(), T, C, meta)});
        return;
      }
      auto sel = select_channels(x, T, C, cfg, ctx);
      models::DetectorOutput<float> raw;
      auto dets = detector->detect(sel.data(), T, cfg.input_dim, meta, &raw);
      {
        for (size_t l = 0; l < raw.cls_logits.size(); ++l) {
          const int64_t len = raw.lengths[l][0];
          std::string pre = multi ? id + "/" : "";
          auto put = [&](const std::string& name, const Var<float>& v) {
            int64_t Cc = v.size(2);
            dump.tensors[pre + name + "." + std::to_string(l)] = io::Array::from_float32(v.value().data(), {len, Cc});
          };
          put("cls_logits", raw.cls_logits[l]);
          put("offsets", raw.offsets[l]);
          put("fpn_feats", raw.feats[l]);
        }
      }
      results.push_back({id, std::move(dets)});
    };
    if (!det_.features.empty()) {
      std::vector<std::string> files =
          io::dir_exists(det_.features) ? list_feature_files(det_.features) : std::vector<std::string>{det_.features};
      std::optional<data::Annotations> ann;
      if (!det_.annotations.empty()) {
        ann = data::load_annotations(det_.annotations);
        names = ann->label_names;
        names_from_annotations = true;
      }
      for (auto& f : files) {
        int64_t T, C;
        auto x = read_features(f, T, C);
        std::string id = file_stem(f);
        // The reference names feature files file_prefix + id ("v_" for ActivityNet).
        if (!cfg.file_prefix.empty() && id.size() > cfg.file_prefix.size() && id.rfind(cfg.file_prefix, 0) == 0)
          id = id.substr(cfg.file_prefix.size());
        const data::VideoAnnotation* va = nullptr;
        if (ann) {
          va = ann->find(id);
          FLOWLESS_CHECK(va != nullptr, det_.annotations, ": has no video '", id, "' (features ", f, ")");
        }
        const double fps = det_.fps > 0 ? det_.fps
                           : cfg.default_fps > 0 ? cfg.default_fps
                           : va && va->fps > 0 ? va->fps
                                               : 30.0;
        // Fixed-length features (feat_stride <= 0) span the whole video: only the annotations know its length.
        const double duration = va                    ? va->duration
                                : cfg.feat_stride > 0 ? (double(T) * cfg.feat_stride + cfg.num_frames) / fps
                                                      : 0.0;
        VideoMeta meta{id, fps, duration, cfg.feat_stride, cfg.num_frames};
        workflow::prepare_video_input(cfg, x, T, C, meta, f);
        run_one(meta.id, x, T, C, meta, f, files.size() > 1);
      }
    } else {
      data::DatasetOptions o;
      o.split = {det_.split};
      o.modality = "all";
      data::Dataset ds(det_.data, o);
      FLOWLESS_CHECK(ds.size() > 0, det_.data, ": split '", det_.split, "' has no videos");
      names = ds.annotations().label_names;
      names_from_annotations = true;
      for (size_t i = 0; i < ds.size(); ++i) {
        int T = 0;
        auto x = ds.features(i, &T);
        VideoMeta meta{ds.id(i), ds.fps(i), ds.duration(i), ds.stride(), ds.num_frames()};
        int64_t Tn = T;
        workflow::prepare_video_input(cfg, x, Tn, ds.channels(), meta, ds.feature_file(i));
        run_one(meta.id, x, Tn, ds.channels(), meta, ds.feature_file(i), true);
      }
    }
    const std::string ext_path = det_.no_ext_scores ? std::string() : !det_.ext_scores.empty() ? det_.ext_scores
                                                                                                   : cfg.ext_score_file;
    if (!ext_path.empty()) {
      // As the reference's postprocess_results: the labels become the classifier's classes.
      workflow::fuse_external_scores(results, workflow::load_external_scores(ext_path));
      if (!names_from_annotations) names.clear();  // the model's class names do not name the classifier's
      std::printf("fused the classifier scores of %s (top 200 segments x top 2 classes)\n", ext_path.c_str());
    }
    workflow::write_predictions(det_.out, results, names);
    if (!det_.dump_heads.empty()) io::save_safetensors(det_.dump_heads, dump);
    size_t n = 0;
    for (auto& r : results) n += r.second.size();
    std::printf("%zu detections in %zu video(s) -> %s\n", n, results.size(), det_.out.c_str());
    return 0;
  }

  // ---- eval -----------------------------------------------------------------
  struct {
    std::string annotations, split = "test", pred, tiou = "0.3:0.7:5";
    bool json = false, errors = false;
    double errors_limit = 10;
  } ev_;
  void add_eval(CLI::App& app) {
    auto* s = sub(app, "eval", "mAP at tIoU thresholds, exactly as the reference evaluator", [this] {
      auto ann = data::load_annotations(ev_.annotations);
      auto preds = eval::load_predictions(ev_.pred, ann);
      const auto tious = eval::parse_tiou_range(ev_.tiou);
      auto res = eval::evaluate_detection(ann, ev_.split, preds, tious);
      eval::FalsePositiveAnalysis fp;
      if (ev_.errors) {
        eval::FalsePositiveOptions o;
        o.limit_factor = ev_.errors_limit;
        fp = eval::analyze_false_positives(ann, ev_.split, preds, tious, o);
      }
      if (ev_.json) {
        json::Value j = eval::to_json(res);
        if (ev_.errors) j["false_positives"] = eval::to_json(fp);
        std::printf("%s\n", json::dump(j, 1).c_str());
      } else {
        std::printf("%s", eval::format_table(res).c_str());
        if (ev_.errors) std::printf("\n%s", eval::format_table(fp).c_str());
      }
      return 0;
    });
    s->add_option("--annotations", ev_.annotations, "annotation JSON (ActionFormer layout)")->required();
    s->add_option("--split", ev_.split, "subset to evaluate")->capture_default_str();
    s->add_option("--pred", ev_.pred, "predictions JSON")->required();
    s->add_option("--tiou", ev_.tiou, "thresholds: start:stop:count or a comma list")->capture_default_str();
    s->add_flag("--json", ev_.json, "print JSON");
    s->add_flag("--errors", ev_.errors,
                "also the false-positive analysis of DETAD: each prediction's error type and the average-mAP gain "
                "of removing each type (eval/error_analysis.hpp)");
    s->add_option("--errors-limit", ev_.errors_limit,
                  "analyse the top LIMIT x #GT predictions per class (DETAD's 10G); 0 = all")
        ->capture_default_str();
  }

  // ---- check ----------------------------------------------------------------
  struct {
    std::string data;
    std::vector<std::string> splits;
    int max_warnings = 20;
  } chk_;
  void add_check(CLI::App& app) {
    auto* s = sub(app, "check",
                  "validate a dataset folder: read every annotation and feature file of its splits and report what "
                  "training and detection will see",
                  [this] { return check(); });
    s->add_option("--data", chk_.data, "the dataset folder (dataset.json, annotations.json, features/)")->required();
    s->add_option("--split", chk_.splits, "subsets to read (default: dataset.json's train_split and test_split)");
    s->add_option("--max-warnings", chk_.max_warnings, "warnings printed in full (the rest are counted)")
        ->capture_default_str();
  }
  int check() {
    const data::DatasetInfo info = data::load_dataset_info(chk_.data + "/dataset.json");
    std::vector<std::string> splits = chk_.splits;
    if (splits.empty()) {
      splits = info.train_split;
      for (auto& t : info.test_split)
        if (std::find(splits.begin(), splits.end(), t) == splits.end()) splits.push_back(t);
    }
    std::printf("%s: input_dim %d", chk_.data.c_str(), info.input_dim);
    for (const auto& [name, r] : info.modalities) std::printf(", %s [%d, %d)", name.c_str(), r[0], r[1]);
    std::printf("; %d classes; feat_stride %g, num_frames %g, fps %s; max_seq_len %d\n", info.num_classes,
                info.feat_stride, info.num_frames,
                info.default_fps > 0 ? json::dump(json::Value(info.default_fps)).c_str() : "per video",
                info.max_seq_len);
    std::vector<std::string> warnings;
    std::vector<int64_t> train_per_class(static_cast<size_t>(info.num_classes), 0);
    size_t n_videos = 0;
    for (const auto& split : splits) {
      data::DatasetOptions o;
      o.split = {split};
      o.modality = "all";
      o.warn = [&](const std::string& m) { warnings.push_back(m); };
      data::Dataset ds(chk_.data, o);
      std::vector<int> lengths;
      std::vector<int64_t> per_class(static_cast<size_t>(info.num_classes), 0);
      size_t instances = 0, annotated = 0, longer = 0, clipped_videos = 0;
      for (size_t i = 0; i < ds.size(); ++i) {
        const size_t before = warnings.size();
        const data::VideoItem it = ds.item(i);  // reads and checks the features; clips stray segments
        clipped_videos += warnings.size() > before;
        lengths.push_back(it.T);
        instances += it.segments.size();
        annotated += !it.segments.empty();
        longer += it.T > info.max_seq_len;
        for (int l : it.labels) ++per_class[static_cast<size_t>(l)];
      }
      n_videos += ds.size();
      const bool is_train = std::any_of(info.train_split.begin(), info.train_split.end(), [&](const std::string& t) {
        return data::annotations_detail::lower(t) == data::annotations_detail::lower(split);
      });
      if (is_train)
        for (size_t c = 0; c < per_class.size(); ++c) train_per_class[c] += per_class[c];
      if (ds.size() == 0) {
        std::printf("split %-12s: no videos\n", split.c_str());
        warnings.push_back(chk_.data + ": split '" + split + "' has no videos");
        continue;
      }
      std::vector<int> sorted = lengths;
      std::sort(sorted.begin(), sorted.end());
      size_t classes_seen = 0;
      for (int64_t n : per_class) classes_seen += n > 0;
      std::printf("split %-12s: %zu videos (%zu annotated), T %d / %d / %d steps (min / median / max), %zu instances "
                  "of %zu classes%s\n",
                  split.c_str(), ds.size(), annotated, sorted.front(), sorted[sorted.size() / 2], sorted.back(),
                  instances, classes_seen, is_train ? " (training)" : "");
      if (longer > 0)
        std::printf("  %zu video(s) longer than max_seq_len %d: training crops them, detection runs them whole\n",
                    longer, info.max_seq_len);
      if (clipped_videos > 0)
        std::printf("  %zu video(s) with segments beyond their features (see the warnings)\n", clipped_videos);
    }
    for (size_t c = 0; c < train_per_class.size(); ++c)
      if (train_per_class[c] == 0)
        warnings.push_back(chk_.data + ": class " + std::to_string(c) +
                           " has no training instance (its head output stays untrained)");
    for (size_t k = 0; k < warnings.size() && static_cast<int>(k) < chk_.max_warnings; ++k)
      std::printf("warning: %s\n", warnings[k].c_str());
    if (static_cast<int>(warnings.size()) > chk_.max_warnings)
      std::printf("... and %zu more warning(s)\n", warnings.size() - static_cast<size_t>(chk_.max_warnings));
    std::printf("%zu video(s) read, %zu warning(s)\n", n_videos, warnings.size());
    return 0;
  }

  // ---- convert --------------------------------------------------------------
  struct {
    std::string config, weights, key = "state_dict_ema", class_names, out;
  } conv_;
  void add_convert(CLI::App& app) {
    auto* s = sub(app, "convert",
                  "turn reference weights and their config (ActionFormer / TemporalMaxer / TriDet JSON, OpenTAD "
                  ".py) into one flowless model file",
                  [this] { return convert(); });
    s->add_option("--config", conv_.config, "the config the weights were trained with (.json, or OpenTAD's .py)")
        ->required();
    s->add_option("--weights", conv_.weights, "reference .safetensors, or a training checkpoint .pth / .pth.tar")
        ->required();
    s->add_option("--key", conv_.key, "which state dict of a checkpoint (state_dict_ema, state_dict)")
        ->capture_default_str();
    s->add_option("--class-names", conv_.class_names,
                  "a text file of class names, one per line in class-index order (OpenTAD's category_idx.txt); "
                  "stored in the model file and used by detect");
    s->add_option("--out", conv_.out, "the flowless model file to write (.safetensors)")->required();
  }
  int convert() {
    const DetectorConfig cfg = models::read_config_file(conv_.config);
    auto model = models::load_reference_detector<float>(cfg, conv_.weights, conv_.key);
    std::map<std::string, std::string> meta{{"converted_from", conv_.weights}};
    if (!conv_.class_names.empty()) {
      std::istringstream lines(io::read_file(conv_.class_names));
      json::Value names = json::Value::object();
      std::string line;
      int n = 0;
      while (std::getline(lines, line)) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (line.empty()) continue;
        names[std::to_string(n++)] = json::Value(line);
      }
      FLOWLESS_CHECK(n == cfg.num_classes, conv_.class_names, ": ", n, " class names for a model of ", cfg.num_classes,
                     " classes");
      meta["label_names"] = json::dump(names);
    }
    models::save_detector(conv_.out, *model, meta);
    std::printf("%s: %s detector, %lld parameters, from %s\n", conv_.out.c_str(), cfg.arch.c_str(),
                static_cast<long long>(model->num_parameters()), conv_.weights.c_str());
    return 0;
  }

  // ---- info -----------------------------------------------------------------
  struct {
    std::string model;
  } info_;
  void add_info(CLI::App& app) {
    auto* s = sub(app, "info", "print a model file's config and parameter count", [this] {
      auto st = io::load_safetensors(info_.model);
      auto cfg = models::read_detector_config(st, info_.model);
      int64_t n = 0;
      for (auto& [k, a] : st.tensors) n += a.numel();
      auto fmt = st.metadata.count("format") ? st.metadata.at("format") : "?";
      std::printf("%s: %s, arch %s, %lld parameters in %zu tensors\n", info_.model.c_str(), fmt.c_str(),
                  cfg.arch.c_str(), (long long)n, st.tensors.size());
      // The stored config as written (a student's includes its "dcd" section), then the other metadata.
      auto stored = st.metadata.find("config");
      const json::Value shown = stored != st.metadata.end() ? json::parse(stored->second, info_.model + " (metadata config)")
                                                             : detector_config_to_json(cfg);
      std::printf("%s\n", json::dump(shown, 1).c_str());
      for (auto& [k, v] : st.metadata)
        if (k != "config" && k != "format") std::printf("%s: %s\n", k.c_str(), v.c_str());
      return 0;
    });
    s->add_option("model", info_.model, "model file (.safetensors)")->required();
  }

  std::string active_;
  std::function<int()> run_ = [] { return 0; };
};

}  // namespace flowless::cli
