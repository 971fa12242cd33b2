// flowless/models/model_file.hpp - model files.
//
// flowless model file: safetensors whose tensors are the detector's state
// dict (reference names, float32) and whose __metadata__ holds
//   "format": "flowless-detector", "config": <DetectorConfig JSON>,
//   plus any extra string entries the caller adds (e.g. training info).
// Reference artefacts load directly, no Python involved:
//   weights.safetensors (reference parameter names) or the reference's
//   training checkpoint .pth.tar (state_dict_ema by default, "module." prefix
//   stripped) with the architecture from the reference config JSON; and
//   OpenTAD's checkpoints with its Python config (models/opentad.hpp).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "flowless/io/pth.hpp"
#include "flowless/io/pyconfig.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/models/detector.hpp"
#include "flowless/models/opentad.hpp"

namespace flowless::models {

inline constexpr const char* kDetectorFormat = "flowless-detector";

template <class T>
void save_detector(const std::string& path, const Detector<T>& model,
                   const std::map<std::string, std::string>& extra_metadata = {}) {
  io::SafeTensors st;
  st.metadata = extra_metadata;
  st.metadata["format"] = kDetectorFormat;
  st.metadata["config"] = json::dump(detector_config_to_json(model.config()));
  for (auto& [name, t] : model.state_dict()) {
    std::vector<float> v(size_t(t.numel()));
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = float(t[i]);
    std::vector<int64_t> shape(t.shape().d.begin(), t.shape().d.begin() + t.shape().nd);
    st.tensors[name] = io::Array::from_float32(v.data(), shape);
  }
  io::save_safetensors(path, st);
}

/// Reads the config stored in a flowless model file.
inline DetectorConfig read_detector_config(const io::SafeTensors& st, const std::string& path) {
  auto it = st.metadata.find("config");
  FLOWLESS_CHECK(it != st.metadata.end(), path, ": no 'config' in the safetensors metadata; is this a flowless model? ",
                 "(reference weights need --config)");
  return parse_detector_config(json::parse(it->second, path + " (metadata config)"), path);
}

/// Loads a flowless model file (config inside).
template <class T>
std::unique_ptr<Detector<T>> load_detector(const std::string& path) {
  io::SafeTensors st = io::load_safetensors(path);
  auto fmt = st.metadata.find("format");
  FLOWLESS_CHECK(fmt == st.metadata.end() || fmt->second == kDetectorFormat, path, ": format '", fmt->second,
                 "' is not a flowless detector");
  auto model = std::make_unique<Detector<T>>(read_detector_config(st, path));
  model->load_state_dict(st.tensors, path, true);
  model->train(false);
  return model;
}

/// A config file's tree as written: a .py file is OpenTAD's (io::read_pyconfig),
/// a JSON file either layout; `opentad` tells which.
inline json::Value read_config_tree(const std::string& path, bool& opentad) {
  const bool python = path.size() >= 3 && path.compare(path.size() - 3, 3, ".py") == 0;
  json::Value root = python ? io::read_pyconfig(path) : json::parse_file(path);
  opentad = python || is_opentad_config(root);
  return root;
}

/// A detector config file: the original code's layout as JSON (its YAML
/// configs converted, or a flowless config), or OpenTAD's config tree - a
/// Python config (.py, io::read_pyconfig) or the same tree as JSON.
inline DetectorConfig read_config_file(const std::string& path) {
  bool opentad = false;
  const json::Value root = read_config_tree(path, opentad);
  if (opentad) return parse_detector_config(opentad_to_reference_config(root, path), path);
  return parse_detector_config(root, path);
}

/// Loads reference weights (.safetensors or .pth/.pth.tar) into a detector
/// built from `cfg`. For checkpoints, `key` picks the entry (state_dict_ema).
/// OpenTAD's parameter names are mapped to the original code's.
template <class T>
std::unique_ptr<Detector<T>> load_reference_detector(const DetectorConfig& cfg, const std::string& weights_path,
                                                     const std::string& key = "state_dict_ema") {
  auto model = std::make_unique<Detector<T>>(cfg);
  std::map<std::string, io::Array> arrays;
  if (io::is_pth_file(weights_path)) {
    arrays = io::load_pth_state_dict(weights_path, key);
  } else {
    arrays = io::load_safetensors(weights_path).tensors;
  }
  if (is_opentad_state_dict(arrays)) arrays = opentad_to_reference_names(arrays, weights_path);
  model->load_state_dict(arrays, weights_path, true);
  model->train(false);
  return model;
}

/// One entry point for the command line: a flowless model file, or reference
/// weights plus a reference config file.
template <class T>
std::unique_ptr<Detector<T>> open_detector(const std::string& weights_path, const std::string& config_path = "") {
  if (!config_path.empty()) {
    return load_reference_detector<T>(read_config_file(config_path), weights_path);
  }
  FLOWLESS_CHECK(!io::is_pth_file(weights_path), weights_path, ": a reference checkpoint needs --config");
  return load_detector<T>(weights_path);
}

}  // namespace flowless::models
