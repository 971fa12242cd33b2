// flowless/workflow/predictions.hpp - detections of many videos, written in
// ActivityNet's result layout:
//   {"version": ..., "results": {video_id: [{"segment": [start_s, end_s],
//     "label_id": int, "label": name, "score": float}, ...]}, "external_data": {}}
// (eval::load_predictions reads it back, as does the reference evaluator).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "flowless/infer/postprocess.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"

namespace flowless::workflow {

using VideoDetections = std::vector<std::pair<std::string, std::vector<Detection>>>;  // file order

inline std::string label_name(const std::map<int, std::string>& names, int id) {
  auto it = names.find(id);
  return it != names.end() ? it->second : "class_" + std::to_string(id);
}

inline json::Value predictions_to_json(const VideoDetections& videos, const std::map<int, std::string>& label_names,
                                       const std::string& version = "flowless") {
  json::Value root = json::Value::object();
  root["version"] = json::Value(version);
  json::Value& results = root["results"];
  results = json::Value::object();
  for (auto& [vid, dets] : videos) {
    json::Value arr = json::Value::array();
    for (auto& d : dets) {
      json::Value e = json::Value::object();
      json::Value seg = json::Value::array();
      seg.push_back(json::Value(d.start));
      seg.push_back(json::Value(d.end));
      e["segment"] = seg;
      e["label_id"] = json::Value(d.label);
      e["label"] = json::Value(label_name(label_names, d.label));
      e["score"] = json::Value(d.score);
      arr.push_back(e);
    }
    results[vid] = arr;
  }
  root["external_data"] = json::Value::object();
  return root;
}

inline void write_predictions(const std::string& path, const VideoDetections& videos,
                              const std::map<int, std::string>& label_names) {
  io::write_file_atomic(path, json::dump(predictions_to_json(videos, label_names), 1) + "\n");
}

}  // namespace flowless::workflow
