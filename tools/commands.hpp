// The flowless subcommands (tools/flowless.cpp wires them into CLI11).
#pragma once

#include <CLI/CLI.hpp>

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "flowless/data/dataset.hpp"
#include "flowless/data/synth.hpp"
#include "flowless/eval/detection_map.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/models/model_file.hpp"
#include "flowless/workflow/predictions.hpp"

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

class Commands {
 public:
  const std::string& active() const { return active_; }
  int run() { return run_(); }

  void add_all(CLI::App& app) {
    add_synth(app);
    add_detect(app);
    add_eval(app);
    add_info(app);
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
    std::string out, preset = "default";
    uint64_t seed = 0;
    bool force = false;
  } synth_;
  void add_synth(CLI::App& app) {
    auto* s = sub(app, "synth", "write the built-in synthetic two-stream benchmark (THUMOS layout)", [this] {
      auto cfg = data::synth_preset(synth_.preset);
      data::write_synthetic_dataset(synth_.out, cfg, synth_.seed, synth_.force);
      std::printf("wrote the '%s' synthetic dataset (seed %llu) to %s\n", synth_.preset.c_str(),
                  (unsigned long long)synth_.seed, synth_.out.c_str());
      return 0;
    });
    s->add_option("--out", synth_.out, "output folder")->required();
    s->add_option("--preset", synth_.preset, "tiny | default | thumos-like")->capture_default_str();
    s->add_option("--seed", synth_.seed, "random seed")->capture_default_str();
    s->add_flag("--force", synth_.force, "overwrite a non-empty folder");
  }

  // ---- detect ---------------------------------------------------------------
  struct {
    std::string config, weights, model, features, data, split = "test", out, dump_heads;
    double fps = 0;
    int threads = 1;
  } det_;
  void add_detect(CLI::App& app) {
    auto* s = sub(app, "detect", "detect actions in feature files or a dataset split", [this] { return detect(); });
    s->add_option("--config", det_.config, "reference config JSON (with reference --weights)");
    s->add_option("--weights", det_.weights, "weights: reference .safetensors / .pth.tar, or a flowless model file");
    s->add_option("--model", det_.model, "a flowless model file (config inside)");
    s->add_option("--features", det_.features, "a (T, C) .npy/.npz file or a folder of them (id = file stem)");
    s->add_option("--data", det_.data, "a dataset folder (instead of --features)");
    s->add_option("--split", det_.split, "dataset split with --data")->capture_default_str();
    s->add_option("--fps", det_.fps, "frames per second of the videos (with --features; default: config or 30)");
    s->add_option("--out", det_.out, "predictions JSON (ActivityNet result layout)")->required();
    s->add_option("--dump-heads", det_.dump_heads, "write per-level cls_logits/offsets/fpn_feats to a safetensors file");
    s->add_option("--threads", det_.threads, "worker threads")->capture_default_str();
  }
  int detect() {
    set_num_threads(det_.threads);
    FLOWLESS_CHECK(det_.model.empty() != det_.weights.empty(), "give exactly one of --model or --weights");
    FLOWLESS_CHECK(det_.features.empty() != det_.data.empty(), "give exactly one of --features or --data");
    auto model = det_.model.empty() ? models::open_detector<float>(det_.weights, det_.config)
                                    : models::load_detector<float>(det_.model);
    const DetectorConfig& cfg = model->config();
    workflow::VideoDetections results;
    std::map<int, std::string> names;
    io::SafeTensors dump;
    auto run_one = [&](const std::string& id, const std::vector<float>& x, int64_t T, int64_t C, VideoMeta meta,
                       const std::string& ctx, bool multi) {
      auto sel = select_channels(x, T, C, cfg, ctx);
      models::DetectorOutput<float> raw;
      auto dets = model->detect(sel.data(), T, cfg.input_dim, meta, det_.dump_heads.empty() ? nullptr : &raw);
      if (!det_.dump_heads.empty()) {
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
      const double fps = det_.fps > 0 ? det_.fps : (cfg.default_fps > 0 ? cfg.default_fps : 30.0);
      for (auto& f : files) {
        int64_t T, C;
        auto x = read_features(f, T, C);
        VideoMeta meta{file_stem(f), fps, (double(T) * cfg.feat_stride + cfg.num_frames) / fps, cfg.feat_stride,
                       cfg.num_frames};
        run_one(meta.id, x, T, C, meta, f, files.size() > 1);
      }
    } else {
      data::DatasetOptions o;
      o.split = {det_.split};
      o.modality = "all";
      data::Dataset ds(det_.data, o);
      FLOWLESS_CHECK(ds.size() > 0, det_.data, ": split '", det_.split, "' has no videos");
      names = ds.annotations().label_names;
      for (size_t i = 0; i < ds.size(); ++i) {
        int T = 0;
        auto x = ds.features(i, &T);
        VideoMeta meta{ds.id(i), ds.fps(i), ds.duration(i), ds.stride(), ds.num_frames()};
        run_one(meta.id, x, T, ds.channels(), meta, ds.feature_file(i), true);
      }
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
    bool json = false;
  } ev_;
  void add_eval(CLI::App& app) {
    auto* s = sub(app, "eval", "mAP at tIoU thresholds, exactly as the reference evaluator", [this] {
      auto ann = data::load_annotations(ev_.annotations);
      auto preds = eval::load_predictions(ev_.pred, ann);
      auto res = eval::evaluate_detection(ann, ev_.split, preds, eval::parse_tiou_range(ev_.tiou));
      if (ev_.json)
        std::printf("%s\n", json::dump(eval::to_json(res), 1).c_str());
      else
        std::printf("%s", eval::format_table(res).c_str());
      return 0;
    });
    s->add_option("--annotations", ev_.annotations, "annotation JSON (ActionFormer layout)")->required();
    s->add_option("--split", ev_.split, "subset to evaluate")->capture_default_str();
    s->add_option("--pred", ev_.pred, "predictions JSON")->required();
    s->add_option("--tiou", ev_.tiou, "thresholds: start:stop:count or a comma list")->capture_default_str();
    s->add_flag("--json", ev_.json, "print JSON");
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
      std::printf("%s\n", json::dump(detector_config_to_json(cfg), 1).c_str());
      return 0;
    });
    s->add_option("model", info_.model, "model file (.safetensors)")->required();
  }

  std::string active_;
  std::function<int()> run_ = [] { return 0; };
};

}  // namespace flowless::cli
