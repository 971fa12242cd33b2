// flowless/data/annotations.hpp - ActionFormer / ActivityNet-style annotation files.
//
// Layout (as in the reference's thumos14.json):
//   {"version": "...",
//    "database": {"<video_id>": {"subset": "Validation"|"Test"|...,
//                                "duration": <seconds>, "fps": <frames per second>,
//                                "annotations": [{"label": "<name>", "segment": [t0, t1],
//                                                 "segment(frames)": [f0, f1],
//                                                 "label_id": <int>}, ...]}}}
//
// Contract of load_annotations(path)
// - Videos keep file order. "subset" (string) and "duration" (finite number
//   >= 0) are required; "fps" is optional (absent or null -> 0, otherwise a
//   finite number > 0); "annotations" is optional (absent -> no segments).
//   "version" is optional (absent -> "").
// - Every annotation needs "segment" = [t0, t1] in seconds: two finite numbers
//   with t1 >= t0. Zero-length segments and segments beyond the video's
//   duration are kept: the evaluator and the trainer decide what to do with
//   them. "segment(frames)" is ignored (and not written back by save).
// - Labels: "label" (string) and/or "label_id" (integer >= 0).
//   * A label name must always map to the same id and an id to the same name,
//     across the whole file; a conflict is an Error naming both videos.
//   * If no annotation in the file carries "label_id", ids are assigned by
//     sorting the distinct label names (byte order) and numbering them from 0,
//     which is how the reference's THUMOS file numbers its classes.
//   * If some annotations carry ids, an annotation without one takes the id
//     its label has elsewhere in the file; a label that never has an id is an
//     Error.
//   * An annotation with an id but no name takes the name the id has
//     elsewhere, or "" if none.
//   label_names maps every id to its name (ids without any name are absent).
// - Every Error message starts with the path and names the video (and the
//   annotation index) at fault, e.g.
//   "a.json: video 'v3': annotation 1: segment [5, 2] has negative length".
//
// split(subsets): the videos whose subset equals one of `subsets`, compared
// case-insensitively (the reference lower-cases the file's subset and
// compares with 'validation' / 'test'), in file order; an empty list selects
// every video. find(id): the video with that id or nullptr (linear scan).
//
// save_annotations writes the same layout (atomically, 2-space indent):
// "fps" only when > 0, "label" when non-empty, "label_id" when >= 0.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"

namespace flowless::data {

struct Segment {
  double start = 0, end = 0;  // seconds
  int label_id = -1;
  std::string label;
};

struct VideoAnnotation {
  std::string id, subset;
  double duration = 0;  // seconds
  double fps = 0;       // 0 = absent
  std::vector<Segment> segments;
};

namespace annotations_detail {
inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
}  // namespace annotations_detail

struct Annotations {
  std::string version;
  std::vector<VideoAnnotation> videos;     // file order
  std::map<int, std::string> label_names;  // label_id -> label

  std::vector<const VideoAnnotation*> split(const std::vector<std::string>& subsets) const {
    std::vector<std::string> want;
    for (const auto& s : subsets) want.push_back(annotations_detail::lower(s));
    std::vector<const VideoAnnotation*> out;
    for (const auto& v : videos) {
      if (want.empty() ||
          std::find(want.begin(), want.end(), annotations_detail::lower(v.subset)) != want.end())
        out.push_back(&v);
    }
    return out;
  }

  const VideoAnnotation* find(const std::string& id) const {
    for (const auto& v : videos)
      if (v.id == id) return &v;
    return nullptr;
  }
};

/// Validates and converts a parsed annotation document; `context` (usually the
/// path) starts every error message.
inline Annotations parse_annotations(const json::Value& root, const std::string& context) {
  using json::Value;
  const std::string& ctx = context;
  FLOWLESS_CHECK(root.is_object(), ctx, ": expected a JSON object at the top level, found ",
                 root.type_name());
  Annotations out;
  if (root.contains("version") && !root.at("version").is_null()) {
    const Value& ver = root.at("version");
    FLOWLESS_CHECK(ver.is_string() || ver.is_number(), ctx,
                   ": 'version' must be a string, found ", ver.type_name());
    out.version = ver.is_string() ? ver.as_string() : Value::repr_number(ver.as_number());
  }
  FLOWLESS_CHECK(root.contains("database"), ctx, ": missing key 'database'");
  const Value& db = root.at("database");
  FLOWLESS_CHECK(db.is_object(), ctx, ": 'database' must be an object (video id -> video), found ",
                 db.type_name());

  struct Pending {  // annotation whose id / name is resolved after the pass
    size_t video, seg;
    bool has_id, has_name;
  };
  std::vector<Pending> pending;
  std::map<std::string, std::pair<int, std::string>> id_of_name;  // name -> (id, first video)
  std::map<int, std::pair<std::string, std::string>> name_of_id;  // id -> (name, first video)
  bool any_id = false;

  out.videos.reserve(db.size());
  for (const auto& [vid, v] : db.items()) {
    std::string vctx = ctx + ": video '" + vid + "'";
    FLOWLESS_CHECK(v.is_object(), vctx, ": expected an object, found ", v.type_name());
    VideoAnnotation va;
    va.id = vid;
    FLOWLESS_CHECK(v.contains("subset"), vctx, ": missing key 'subset'");
    FLOWLESS_CHECK(v.at("subset").is_string(), vctx, ": 'subset' must be a string, found ",
                   v.at("subset").type_name());
    va.subset = v.at("subset").as_string();
    FLOWLESS_CHECK(v.contains("duration"), vctx, ": missing key 'duration'");
    FLOWLESS_CHECK(v.at("duration").is_number(), vctx, ": 'duration' must be a number, found ",
                   v.at("duration").type_name());
    va.duration = v.at("duration").as_number();
    FLOWLESS_CHECK(std::isfinite(va.duration) && va.duration >= 0, vctx, ": duration ",
                   Value::repr_number(va.duration), " is not a finite number >= 0");
    if (v.contains("fps") && !v.at("fps").is_null()) {
      FLOWLESS_CHECK(v.at("fps").is_number(), vctx, ": 'fps' must be a number, found ",
                     v.at("fps").type_name());
      va.fps = v.at("fps").as_number();
      FLOWLESS_CHECK(std::isfinite(va.fps) && va.fps > 0, vctx, ": fps ",
                     Value::repr_number(va.fps), " is not a finite number > 0");
    }
    if (v.contains("annotations") && !v.at("annotations").is_null()) {
      const Value& anns = v.at("annotations");
      FLOWLESS_CHECK(anns.is_array(), vctx, ": 'annotations' must be an array, found ",
                     anns.type_name());
      for (size_t k = 0; k < anns.size(); ++k) {
        std::string actx = vctx + ": annotation " + std::to_string(k);
        const Value& a = anns[k];
        FLOWLESS_CHECK(a.is_object(), actx, ": expected an object, found ", a.type_name());
        FLOWLESS_CHECK(a.contains("segment"), actx, ": missing key 'segment'");
        const Value& sg = a.at("segment");
        FLOWLESS_CHECK(sg.is_array() && sg.size() == 2, actx,
                       ": 'segment' must be an array [start, end] of two numbers");
        FLOWLESS_CHECK(sg[0].is_number() && sg[1].is_number(), actx,
                       ": 'segment' must hold two numbers, found ", sg[0].type_name(), " and ",
                       sg[1].type_name());
        Segment s;
        s.start = sg[0].as_number();
        s.end = sg[1].as_number();
        FLOWLESS_CHECK(std::isfinite(s.start) && std::isfinite(s.end), actx, ": segment [",
                       Value::repr_number(s.start), ", ", Value::repr_number(s.end),
                       "] is not finite");
        FLOWLESS_CHECK(s.end >= s.start, actx, ": segment [", Value::repr_number(s.start), ", ",
                       Value::repr_number(s.end), "] has negative length");
        bool has_name = a.contains("label") && !a.at("label").is_null();
        bool has_id = a.contains("label_id") && !a.at("label_id").is_null();
        FLOWLESS_CHECK(has_name || has_id, actx, ": needs 'label' or 'label_id'");
        if (has_name) {
          FLOWLESS_CHECK(a.at("label").is_string(), actx, ": 'label' must be a string, found ",
                         a.at("label").type_name());
          s.label = a.at("label").as_string();
        }
        if (has_id) {
          const Value& li = a.at("label_id");
          FLOWLESS_CHECK(li.is_number(), actx, ": 'label_id' must be an integer, found ",
                         li.type_name());
          double d = li.as_number();
          FLOWLESS_CHECK(std::isfinite(d) && std::floor(d) == d && d >= 0 && d <= 2147483647.0,
                         actx, ": 'label_id' must be an integer >= 0, found ",
                         Value::repr_number(d));
          s.label_id = static_cast<int>(d);
          any_id = true;
        }
        if (has_name && has_id) {
          auto [it, fresh] = id_of_name.emplace(s.label, std::make_pair(s.label_id, vid));
          FLOWLESS_CHECK(fresh || it->second.first == s.label_id, actx, ": label '", s.label,
                         "' has label_id ", s.label_id, " here but ", it->second.first,
                         " in video '", it->second.second, "'");
          auto [jt, fresh2] = name_of_id.emplace(s.label_id, std::make_pair(s.label, vid));
          FLOWLESS_CHECK(fresh2 || jt->second.first == s.label, actx, ": label_id ", s.label_id,
                         " is label '", s.label, "' here but '", jt->second.first,
                         "' in video '", jt->second.second, "'");
        } else {
          pending.push_back({out.videos.size(), va.segments.size(), has_id, has_name});
        }
        va.segments.push_back(std::move(s));
      }
    }
    out.videos.push_back(std::move(va));
  }

  if (!any_id) {
    // No ids anywhere: number the sorted distinct names from 0.
    std::set<std::string> names;
    for (const auto& p : pending) names.insert(out.videos[p.video].segments[p.seg].label);
    int next = 0;
    for (const auto& n : names) {
      id_of_name.emplace(n, std::make_pair(next, std::string()));
      name_of_id.emplace(next, std::make_pair(n, std::string()));
      ++next;
    }
  }
  for (const auto& p : pending) {
    Segment& s = out.videos[p.video].segments[p.seg];
    const std::string& vid = out.videos[p.video].id;
    if (p.has_name) {
      auto it = id_of_name.find(s.label);
      FLOWLESS_CHECK(it != id_of_name.end(), ctx, ": video '", vid, "': annotation ", p.seg,
                     ": label '", s.label,
                     "' has no label_id anywhere in the file, while other annotations carry "
                     "ids (ids are assigned automatically only when no annotation has one)");
      s.label_id = it->second.first;
    } else {
      auto it = name_of_id.find(s.label_id);
      if (it != name_of_id.end()) s.label = it->second.first;
    }
  }
  for (const auto& [id, nv] : name_of_id) out.label_names[id] = nv.first;
  return out;
}

inline Annotations load_annotations(const std::string& path) {
  return parse_annotations(json::parse_file(path), path);
}

/// The annotation document for `a` (the layout above).
inline json::Value annotations_to_json(const Annotations& a) {
  json::Value root = json::Value::object();
  root["version"] = a.version;
  json::Value& db = root["database"] = json::Value::object();
  for (const auto& v : a.videos) {
    json::Value jv = json::Value::object();
    jv["subset"] = v.subset;
    jv["duration"] = v.duration;
    if (v.fps > 0) jv["fps"] = v.fps;
    json::Value anns = json::Value::array();
    for (const auto& s : v.segments) {
      json::Value js = json::Value::object();
      if (!s.label.empty()) js["label"] = s.label;
      json::Value seg = json::Value::array();
      seg.push_back(s.start);
      seg.push_back(s.end);
      js["segment"] = std::move(seg);
      if (s.label_id >= 0) js["label_id"] = s.label_id;
      anns.push_back(std::move(js));
    }
    jv["annotations"] = std::move(anns);
    FLOWLESS_CHECK(!db.contains(v.id), "annotations: duplicate video id '", v.id, "'");
    db[v.id] = std::move(jv);
  }
  return root;
}

inline void save_annotations(const Annotations& a, const std::string& path) {
  json::Value root = json::with_context(path, [&] { return annotations_to_json(a); });
  io::write_file_atomic(path, json::dump(root, 2) + "\n");
}

}  // namespace flowless::data
