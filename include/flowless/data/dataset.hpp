// flowless/data/dataset.hpp - feature datasets in the reference layout.
//
// A dataset folder holds
//   dataset.json              feature geometry, sizes, modalities, splits (see DatasetInfo)
//   annotations.json          ActionFormer / ActivityNet-style annotations
//   features/<video_id>.npy   (T, C) time-major features (or .npz holding one array)
//
// Time <-> feature grid (ActionFormer FAQ, thumos14.py): a feature is centred
// in its clip window, so
//   grid = t_sec * fps / feat_stride - 0.5 * num_frames / feat_stride
//   t_sec = (grid * feat_stride + 0.5 * num_frames) / fps      (callers clamp to [0, duration])
// With downsample_rate r the rows are subsampled ([::r]) and the effective
// stride is feat_stride * r (also in the offset 0.5 * num_frames / (feat_stride * r)).
//
// Features are read lazily: Dataset keeps only annotations and file names;
// features(i) reads one file when asked. The training path mirrors the
// reference: segments to grid units in float32, truncate_feats (A.8),
// shuffled batches of size B with drop_last, zero padding to max_seq_len.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/core/random.hpp"
#include "flowless/data/annotations.hpp"
#include "flowless/io/array.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"
#include "flowless/io/npy.hpp"

namespace flowless::data {

// ---------------------------------------------------------------------------
// Time <-> grid
// ---------------------------------------------------------------------------

/// Feature-grid coordinate of time t (seconds). Pass feat_stride * downsample_rate
/// as feat_stride when rows were subsampled.
inline double seconds_to_grid(double t, double fps, double feat_stride, double num_frames) {
  return t * fps / feat_stride - 0.5 * num_frames / feat_stride;
}

/// Inverse of seconds_to_grid (no clamping; callers clamp to [0, duration]).
inline double grid_to_seconds(double g, double fps, double feat_stride, double num_frames) {
  return (g * feat_stride + 0.5 * num_frames) / fps;
}

/// Stride of the grid after taking every r-th feature row.
inline double effective_stride(double feat_stride, int downsample_rate) {
  return feat_stride * static_cast<double>(downsample_rate);
}

/// The feature grid of a video resampled to a fixed length L (ActionFormer's
/// ActivityNet path, anet.py with force_upsampling; ops/resample.hpp does the
/// resampling). With feat_stride > 0 the T input rows span
/// (T - 1) * feat_stride + num_frames frames, spread over L steps:
///   stride = ((T - 1) * feat_stride + num_frames) / L,  num_frames' = stride.
/// With feat_stride <= 0 (fixed-length features) the span is the video,
/// duration * fps frames (L steps when force_upsampling, else T):
///   stride = duration * fps / steps,  num_frames' = stride.
struct FeatureGrid {
  double feat_stride = 0, num_frames = 0;
};
inline FeatureGrid fixed_length_grid(int64_t T, double feat_stride, double num_frames, int64_t L, bool force_upsampling,
                                     double duration, double fps, const std::string& context) {
  FLOWLESS_CHECK(T >= 1 && L >= 1, context, ": cannot map ", T, " feature rows onto ", L, " steps");
  FeatureGrid g;
  if (feat_stride > 0) {
    FLOWLESS_CHECK(force_upsampling, context, ": fixed_length_grid needs force_upsampling when feat_stride > 0");
    g.feat_stride = (static_cast<double>(T - 1) * feat_stride + num_frames) / static_cast<double>(L);
  } else {
    FLOWLESS_CHECK(duration > 0 && fps > 0, context, ": fixed-length features (feat_stride <= 0) need the video's "
                   "duration and fps (from the annotations), got duration ", duration, " s and fps ", fps);
    FLOWLESS_CHECK(force_upsampling || T <= L, context, ": ", T, " fixed-length feature rows exceed max_seq_len ", L);
    g.feat_stride = duration * fps / static_cast<double>(force_upsampling ? L : T);
  }
  g.num_frames = g.feat_stride;
  return g;
}

/// Half a clip window in grid units: 0.5 * num_frames / feat_stride (2 for THUMOS).
inline double feat_offset(double feat_stride, double num_frames) {
  return 0.5 * num_frames / feat_stride;
}

// ---------------------------------------------------------------------------
// dataset.json
// ---------------------------------------------------------------------------

struct DatasetInfo {
  double feat_stride = 4;        // frames between consecutive features (required)
  double num_frames = 16;        // frames per clip window (required)
  double default_fps = 0;        // 0 = null: per-video fps from annotations.json
  int input_dim = 0;             // C of every feature file (required)
  int num_classes = 0;           // (required)
  /// name -> [begin, end) channel range, e.g. {"rgb": {0, 1024}, "flow": {1024, 2048}}.
  std::map<std::string, std::array<int, 2>> modalities;
  std::vector<std::string> train_split{"validation"};
  std::vector<std::string> test_split{"test"};
  int max_seq_len = 2304;
  double trunc_thresh = 0.5;
  std::optional<std::array<double, 2>> crop_ratio;  // null = no random crop of short videos
  int downsample_rate = 1;
};

namespace dataset_detail {

inline std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline double info_number(const json::Value& v, const std::string& ctx, const std::string& key) {
  FLOWLESS_CHECK(v.is_number(), ctx, ": field '", key, "' must be a number");
  double x = v.as_number();
  FLOWLESS_CHECK(std::isfinite(x), ctx, ": field '", key, "' must be finite");
  return x;
}

inline int info_int(const json::Value& v, const std::string& ctx, const std::string& key) {
  double x = info_number(v, ctx, key);
  FLOWLESS_CHECK(x == std::floor(x) && std::fabs(x) < 2147483647.0, ctx, ": field '", key,
                 "' must be an integer (got ", x, ")");
  return static_cast<int>(x);
}

inline std::vector<std::string> info_string_list(const json::Value& v, const std::string& ctx,
                                                 const std::string& key) {
  FLOWLESS_CHECK(v.is_array(), ctx, ": field '", key, "' must be a list of subset names");
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    FLOWLESS_CHECK(v[i].is_string() && !v[i].as_string().empty(), ctx, ": field '", key,
                   "' must hold non-empty strings");
    out.push_back(v[i].as_string());
  }
  FLOWLESS_CHECK(!out.empty(), ctx, ": field '", key, "' must not be empty");
  return out;
}

}  // namespace dataset_detail

/// Checks the invariants of a DatasetInfo; `ctx` names the source (a dataset.json path).
inline void validate_dataset_info(const DatasetInfo& d, const std::string& ctx) {
  FLOWLESS_CHECK(d.feat_stride > 0, ctx, ": field 'feat_stride' must be > 0 (got ", d.feat_stride, ")");
  FLOWLESS_CHECK(d.num_frames >= 0, ctx, ": field 'num_frames' must be >= 0 (got ", d.num_frames, ")");
  FLOWLESS_CHECK(d.default_fps >= 0, ctx, ": field 'default_fps' must be > 0 or null (got ",
                 d.default_fps, ")");
  FLOWLESS_CHECK(d.input_dim > 0, ctx, ": field 'input_dim' must be > 0 (got ", d.input_dim, ")");
  FLOWLESS_CHECK(d.num_classes > 0, ctx, ": field 'num_classes' must be > 0 (got ", d.num_classes, ")");
  for (const auto& [name, r] : d.modalities) {
    FLOWLESS_CHECK(!name.empty(), ctx, ": field 'modalities' has an empty name");
    FLOWLESS_CHECK(r[0] >= 0 && r[0] < r[1] && r[1] <= d.input_dim, ctx, ": field 'modalities': '", name,
                   "' = [", r[0], ", ", r[1], "] is not a channel range inside [0, input_dim = ",
                   d.input_dim, "]");
  }
  FLOWLESS_CHECK(!d.train_split.empty(), ctx, ": field 'train_split' must not be empty");
  FLOWLESS_CHECK(!d.test_split.empty(), ctx, ": field 'test_split' must not be empty");
  FLOWLESS_CHECK(d.max_seq_len > 0, ctx, ": field 'max_seq_len' must be > 0 (got ", d.max_seq_len, ")");
  FLOWLESS_CHECK(d.trunc_thresh >= 0 && d.trunc_thresh <= 1, ctx,
                 ": field 'trunc_thresh' must be in [0, 1] (got ", d.trunc_thresh, ")");
  if (d.crop_ratio) {
    const auto& c = *d.crop_ratio;
    FLOWLESS_CHECK(c[0] > 0 && c[0] <= c[1] && c[1] <= 1, ctx,
                   ": field 'crop_ratio' must be [lo, hi] with 0 < lo <= hi <= 1 (got [", c[0], ", ", c[1],
                   "])");
  }
  FLOWLESS_CHECK(d.downsample_rate >= 1, ctx, ": field 'downsample_rate' must be >= 1 (got ",
                 d.downsample_rate, ")");
}

/// Parses dataset.json text; `ctx` (the path) prefixes every error.
inline DatasetInfo parse_dataset_info(const std::string& text, const std::string& ctx) {
  json::Value root = json::parse(text, ctx);
  FLOWLESS_CHECK(root.is_object(), ctx, ": top level must be a JSON object");
  static const std::set<std::string> known = {
      "feat_stride", "num_frames",  "default_fps",  "input_dim",  "num_classes",
      "modalities",  "train_split", "test_split",   "max_seq_len", "trunc_thresh",
      "crop_ratio",  "downsample_rate", "name",     "description", "comment"};
  for (const auto& kv : root.items()) {
    const std::string& k = kv.first;
    FLOWLESS_CHECK(known.count(k) || (!k.empty() && k[0] == '_'), ctx, ": unknown field '", k,
                   "' (known: feat_stride, num_frames, default_fps, input_dim, num_classes, modalities, "
                   "train_split, test_split, max_seq_len, trunc_thresh, crop_ratio, downsample_rate; "
                   "prefix a private field with '_')");
  }
  for (const char* req : {"feat_stride", "num_frames", "input_dim", "num_classes"})
    FLOWLESS_CHECK(root.contains(req), ctx, ": missing required field '", req, "'");

  DatasetInfo d;
  d.feat_stride = dataset_detail::info_number(root.at("feat_stride"), ctx, "feat_stride");
  d.num_frames = dataset_detail::info_number(root.at("num_frames"), ctx, "num_frames");
  if (root.contains("default_fps") && !root.at("default_fps").is_null()) {
    d.default_fps = dataset_detail::info_number(root.at("default_fps"), ctx, "default_fps");
    FLOWLESS_CHECK(d.default_fps > 0, ctx, ": field 'default_fps' must be > 0 or null (got ", d.default_fps,
                   ")");
  }
  d.input_dim = dataset_detail::info_int(root.at("input_dim"), ctx, "input_dim");
  d.num_classes = dataset_detail::info_int(root.at("num_classes"), ctx, "num_classes");
  if (root.contains("modalities") && !root.at("modalities").is_null()) {
    const auto& m = root.at("modalities");
    FLOWLESS_CHECK(m.is_object(), ctx, ": field 'modalities' must be an object {name: [begin, end]}");
    for (const auto& kv : m.items()) {
      const auto& r = kv.second;
      FLOWLESS_CHECK(r.is_array() && r.size() == 2, ctx, ": field 'modalities': '", kv.first,
                     "' must be [begin, end]");
      d.modalities[kv.first] = {dataset_detail::info_int(r[0], ctx, "modalities." + kv.first),
                                dataset_detail::info_int(r[1], ctx, "modalities." + kv.first)};
    }
  }
  if (root.contains("train_split")) d.train_split = dataset_detail::info_string_list(root.at("train_split"), ctx, "train_split");
  if (root.contains("test_split")) d.test_split = dataset_detail::info_string_list(root.at("test_split"), ctx, "test_split");
  if (root.contains("max_seq_len")) d.max_seq_len = dataset_detail::info_int(root.at("max_seq_len"), ctx, "max_seq_len");
  if (root.contains("trunc_thresh"))
    d.trunc_thresh = dataset_detail::info_number(root.at("trunc_thresh"), ctx, "trunc_thresh");
  if (root.contains("crop_ratio") && !root.at("crop_ratio").is_null()) {
    const auto& c = root.at("crop_ratio");
    FLOWLESS_CHECK(c.is_array() && c.size() == 2, ctx, ": field 'crop_ratio' must be [lo, hi] or null");
    d.crop_ratio = std::array<double, 2>{dataset_detail::info_number(c[0], ctx, "crop_ratio"),
                                         dataset_detail::info_number(c[1], ctx, "crop_ratio")};
  }
  if (root.contains("downsample_rate"))
    d.downsample_rate = dataset_detail::info_int(root.at("downsample_rate"), ctx, "downsample_rate");
  validate_dataset_info(d, ctx);
  return d;
}

/// Reads dataset.json; `path` is the file or the dataset folder holding it.
inline DatasetInfo load_dataset_info(const std::string& path) {
  std::string p = io::dir_exists(path) ? path + "/dataset.json" : path;
  FLOWLESS_CHECK(io::file_exists(p), p, ": dataset.json not found");
  return parse_dataset_info(io::read_file(p), p);
}

inline json::Value dataset_info_to_json(const DatasetInfo& d) {
  json::Value root = json::Value::object();
  root["feat_stride"] = json::Value(d.feat_stride);
  root["num_frames"] = json::Value(d.num_frames);
  root["default_fps"] = d.default_fps > 0 ? json::Value(d.default_fps) : json::Value();
  root["input_dim"] = json::Value(d.input_dim);
  root["num_classes"] = json::Value(d.num_classes);
  json::Value mods = json::Value::object();
  for (const auto& [name, r] : d.modalities) {
    json::Value a = json::Value::array();
    a.push_back(json::Value(r[0]));
    a.push_back(json::Value(r[1]));
    mods[name] = a;
  }
  root["modalities"] = mods;
  auto list = [](const std::vector<std::string>& v) {
    json::Value a = json::Value::array();
    for (const auto& s : v) a.push_back(json::Value(s));
    return a;
  };
  root["train_split"] = list(d.train_split);
  root["test_split"] = list(d.test_split);
  root["max_seq_len"] = json::Value(d.max_seq_len);
  root["trunc_thresh"] = json::Value(d.trunc_thresh);
  if (d.crop_ratio) {
    json::Value a = json::Value::array();
    a.push_back(json::Value((*d.crop_ratio)[0]));
    a.push_back(json::Value((*d.crop_ratio)[1]));
    root["crop_ratio"] = a;
  } else {
    root["crop_ratio"] = json::Value();
  }
  root["downsample_rate"] = json::Value(d.downsample_rate);
  return root;
}

/// Validates and writes dataset.json atomically (`path` is the file).
inline void save_dataset_info(const DatasetInfo& d, const std::string& path) {
  validate_dataset_info(d, path);
  io::write_file_atomic(path, json::dump(dataset_info_to_json(d), 2) + "\n");
}

// ---------------------------------------------------------------------------
// Items, truncation, batches
// ---------------------------------------------------------------------------

/// One video ready for training or inference.
struct VideoItem {
  std::string id;
  int T = 0;                                  // feature steps (after downsampling / truncation)
  int C = 0;                                  // selected channels
  std::vector<float> feats;                   // (T, C) time-major; may be empty (metadata only)
  std::vector<std::array<float, 2>> segments; // (N, 2) [start, end] in grid units
  std::vector<int> labels;                    // (N,)
  double fps = 0, duration = 0;
  double feat_stride = 0;                     // effective stride (feat_stride * downsample_rate)
  double num_frames = 0;
};

/// A padded batch: feats (B, T, C) time-major, zero beyond lengths[b].
struct Batch {
  int B = 0, T = 0, C = 0;
  std::vector<float> feats;     // (B, T, C)
  std::vector<int> lengths;     // (B,)
  std::vector<VideoItem> items; // metadata + targets; their feats are moved into `feats` (empty)
};

/// Stacks items into a zero-padded (B, padded_T, C) buffer. padded_T <= 0 pads
/// to the longest item. Every item must have features of the same width C.
inline Batch collate(std::vector<VideoItem> items, int padded_T) {
  FLOWLESS_CHECK(!items.empty(), "collate: empty batch");
  Batch b;
  b.B = static_cast<int>(items.size());
  b.C = items[0].C;
  int max_T = 0;
  for (const auto& it : items) {
    FLOWLESS_CHECK(it.C == b.C, "collate: video '", it.id, "' has ", it.C, " channels but video '",
                   items[0].id, "' has ", b.C);
    FLOWLESS_CHECK(it.T > 0 && it.feats.size() == static_cast<size_t>(it.T) * static_cast<size_t>(it.C),
                   "collate: video '", it.id, "' has no features or a feature buffer of the wrong size (",
                   it.feats.size(), " values for T=", it.T, ", C=", it.C, ")");
    max_T = std::max(max_T, it.T);
  }
  b.T = padded_T > 0 ? padded_T : max_T;
  for (const auto& it : items)
    FLOWLESS_CHECK(it.T <= b.T, "collate: video '", it.id, "' has T=", it.T, " feature steps, more than the padded length ",
                   b.T);
  b.feats.assign(static_cast<size_t>(b.B) * b.T * b.C, 0.0f);
  for (int i = 0; i < b.B; ++i) {
    auto& it = items[static_cast<size_t>(i)];
    std::copy(it.feats.begin(), it.feats.end(), b.feats.begin() + static_cast<ptrdiff_t>(i) * b.T * b.C);
    b.lengths.push_back(it.T);
    it.feats.clear();
    it.feats.shrink_to_fit();
  }
  b.items = std::move(items);
  return b;
}

/// The reference's training augmentation (ActionFormer data_utils.truncate_feats):
/// - T <= max_seq_len: without crop_ratio, unchanged; with it, the target length
///   L is drawn uniformly from [max(round(lo*T), 1), min(round(hi*T), T)]
///   (round half to even, as Python) and nothing happens when L == T.
/// - otherwise L = max_seq_len.
/// - up to max_num_trials times draw st uniformly in [0, T - L]; intersect every GT
///   with [st - feat_offset, st + L + feat_offset]; a GT is kept when the
///   intersection covers >= trunc_thresh of its length; stop once a GT is kept
///   (has_action), or once a GT is kept and none is partly cut (no_trunc).
/// - kept GTs become their intersection (so they may reach feat_offset beyond
///   the window), shifted by -st; features become rows [st, st + L).
/// Arithmetic is float32 like the reference's tensors. Videos without GT draw
/// all trials and keep the last window.
inline VideoItem truncate_feats(VideoItem item, int max_seq_len, double trunc_thresh, double feat_offset,
                                const std::optional<std::array<double, 2>>& crop_ratio, Rng& rng,
                                int max_num_trials = 200, bool has_action = true, bool no_trunc = false) {
  FLOWLESS_CHECK(max_seq_len > 0, "truncate_feats: max_seq_len must be > 0");
  FLOWLESS_CHECK(item.labels.size() == item.segments.size(), "truncate_feats: video '", item.id, "' has ",
                 item.segments.size(), " segments but ", item.labels.size(), " labels");
  const int feat_len = item.T;
  FLOWLESS_CHECK(feat_len > 0, "truncate_feats: video '", item.id, "' has no features");
  FLOWLESS_CHECK(item.feats.empty() ||
                     item.feats.size() == static_cast<size_t>(item.T) * static_cast<size_t>(item.C),
                 "truncate_feats: video '", item.id, "' has a feature buffer of the wrong size");
  int L = max_seq_len;
  if (feat_len <= max_seq_len) {
    if (!crop_ratio) return item;
    const auto& c = *crop_ratio;
    int64_t lo = std::max<int64_t>(static_cast<int64_t>(std::nearbyint(c[0] * feat_len)), 1);
    int64_t hi = std::min<int64_t>(static_cast<int64_t>(std::nearbyint(c[1] * feat_len)), feat_len);
    FLOWLESS_CHECK(lo <= hi, "truncate_feats: empty crop range for video '", item.id, "'");
    L = static_cast<int>(rng.randint(lo, hi));
    if (L == feat_len) return item;
  }
  const size_t n = item.segments.size();
  const float off = static_cast<float>(feat_offset);
  const float thr = static_cast<float>(trunc_thresh);
  std::vector<float> left(n), right(n);
  std::vector<char> keep(n, 0);
  int st = 0;
  for (int trial = 0; trial < max_num_trials; ++trial) {
    st = static_cast<int>(rng.randint(0, feat_len - L));
    const float ws = static_cast<float>(st), we = static_cast<float>(st + L);
    int n_keep = 0, n_cut = 0;
    for (size_t k = 0; k < n; ++k) {
      const float s0 = item.segments[k][0], s1 = item.segments[k][1];
      left[k] = std::max(ws - off, s0);
      right[k] = std::min(we + off, s1);
      const float inter = std::max(right[k] - left[k], 0.0f);
      const float ratio = inter / std::fabs(s1 - s0);
      keep[k] = ratio >= thr;
      n_keep += keep[k];
      n_cut += (ratio > 0.0f && ratio < 1.0f);
    }
    if (no_trunc) {
      if (n_keep > 0 && n_cut == 0) break;
    } else if (has_action) {
      if (n_keep > 0) break;
    } else {
      break;
    }
  }
  VideoItem out;
  out.id = item.id;
  out.T = L;
  out.C = item.C;
  if (!item.feats.empty())
    out.feats.assign(item.feats.begin() + static_cast<ptrdiff_t>(st) * item.C,
                     item.feats.begin() + static_cast<ptrdiff_t>(st + L) * item.C);
  const float fst = static_cast<float>(st);
  for (size_t k = 0; k < n; ++k) {
    if (!keep[k]) continue;
    out.segments.push_back({left[k] - fst, right[k] - fst});
    out.labels.push_back(item.labels[k]);
  }
  out.fps = item.fps;
  out.duration = item.duration;
  out.feat_stride = item.feat_stride;
  out.num_frames = item.num_frames;
  return out;
}

/// Video visiting order for one epoch: 0..n-1, Fisher-Yates shuffled by rng when asked.
inline std::vector<size_t> epoch_order(size_t n, bool shuffle, Rng& rng) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  if (shuffle)
    for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(rng.randint(0, static_cast<int64_t>(i) - 1))]);
  return order;
}

// ---------------------------------------------------------------------------
// Dataset
// ---------------------------------------------------------------------------

/// Receives warnings (segments clipped or skipped, videos skipped). Default: stderr.
using WarningHandler = std::function<void(const std::string&)>;

struct DatasetOptions {
  /// Subsets to use (compared lower-cased with each video's "subset"); empty = dataset.json's train_split.
  std::vector<std::string> split;
  /// "rgb", "flow" (or any name in dataset.json's modalities), "both" / "two-stream"
  /// (rgb then flow), "all" (every channel), or an explicit range "begin:end".
  std::string modality = "both";
  int downsample_rate = 0;            // 0 = dataset.json's downsample_rate
  bool skip_missing_features = false; // warn and drop videos without a feature file instead of failing
  WarningHandler warn;                // empty = print "flowless: warning: ..." to stderr
};

class Dataset {
 public:
  explicit Dataset(const std::string& folder, DatasetOptions opt = {}) : state_(std::make_shared<State>()) {
    folder_ = folder;
    while (folder_.size() > 1 && folder_.back() == '/') folder_.pop_back();
    warn_ = opt.warn;
    FLOWLESS_CHECK(io::dir_exists(folder_), folder_, ": dataset folder not found");
    info_ = load_dataset_info(folder_ + "/dataset.json");
    ds_rate_ = opt.downsample_rate > 0 ? opt.downsample_rate : info_.downsample_rate;
    split_ = opt.split.empty() ? info_.train_split : opt.split;
    for (auto& s : split_) s = dataset_detail::lower(s);
    ranges_ = resolve_modality(opt.modality);
    C_sel_ = 0;
    for (const auto& r : ranges_) C_sel_ += r[1] - r[0];

    const std::string ann_path = folder_ + "/annotations.json";
    FLOWLESS_CHECK(io::file_exists(ann_path), ann_path, ": annotations.json not found");
    ann_ = std::make_shared<Annotations>(load_annotations(ann_path));
    for (const auto& v : ann_->videos) {
      const std::string sub = dataset_detail::lower(v.subset);
      if (std::find(split_.begin(), split_.end(), sub) == split_.end()) continue;
      Video vid;
      vid.ann = &v;
      vid.fps = info_.default_fps > 0 ? info_.default_fps : v.fps;
      FLOWLESS_CHECK(vid.fps > 0, ann_path, ": video '", v.id,
                     "' has no fps and dataset.json sets no default_fps");
      FLOWLESS_CHECK(v.duration > 0 && std::isfinite(v.duration), ann_path, ": video '", v.id,
                     "' has a non-positive duration (", v.duration, ")");
      std::string npy = folder_ + "/features/" + v.id + ".npy", npz = folder_ + "/features/" + v.id + ".npz";
      if (io::file_exists(npy)) {
        vid.feature_file = npy;
      } else if (io::file_exists(npz)) {
        vid.feature_file = npz;
      } else if (opt.skip_missing_features) {
        warning(ann_path + ": video '" + v.id + "' has no feature file " + npy + " (or .npz); skipped");
        continue;
      } else {
        FLOWLESS_FAIL(ann_path, ": video '", v.id, "' (subset '", v.subset, "') has no feature file ", npy,
                      " (or .npz)");
      }
      // remove_duplicate_annotations (tol 1e-3 s), then seconds -> grid in float32.
      const double tol = 1e-3;
      std::vector<const Segment*> kept;
      int n_short = 0, n_dup = 0;
      for (const auto& s : v.segments) {
        FLOWLESS_CHECK(std::isfinite(s.start) && std::isfinite(s.end), ann_path, ": video '", v.id,
                       "' has a non-finite segment");
        if (s.end - s.start < tol) {
          ++n_short;
          continue;
        }
        bool dup = false;
        for (const Segment* p : kept)
          if (std::fabs(s.start - p->start) <= tol && std::fabs(s.end - p->end) <= tol && s.label_id == p->label_id)
            dup = true;
        if (dup) {
          ++n_dup;
          continue;
        }
        FLOWLESS_CHECK(info_.num_classes == 1 || (s.label_id >= 0 && s.label_id < info_.num_classes), ann_path,
                       ": video '", v.id, "' has label_id ", s.label_id, " ('", s.label,
                       "') outside [0, num_classes = ", info_.num_classes, ") of dataset.json");
        kept.push_back(&s);
      }
      if (n_short > 0)
        warning(ann_path + ": video '" + v.id + "': skipped " + std::to_string(n_short) +
                " segment(s) of zero or negative length");
      (void)n_dup;  // exact duplicates are dropped silently, as the reference does
      const float fps32 = static_cast<float>(vid.fps);
      const float stride32 = static_cast<float>(stride());
      const float off32 = static_cast<float>(offset());
      for (const Segment* s : kept) {
        std::array<float, 2> g;
        g[0] = static_cast<float>(s->start) * fps32 / stride32 - off32;
        g[1] = static_cast<float>(s->end) * fps32 / stride32 - off32;
        vid.segments.push_back(g);
        vid.labels.push_back(info_.num_classes == 1 ? 0 : s->label_id);
      }
      videos_.push_back(std::move(vid));
    }
  }

  /// Convenience: folder + split + modality.
  Dataset(const std::string& folder, std::vector<std::string> split, const std::string& modality = "both")
      : Dataset(folder, make_opts(std::move(split), modality)) {}

  const std::string& folder() const { return folder_; }
  const DatasetInfo& info() const { return info_; }
  const Annotations& annotations() const { return *ann_; }
  const std::vector<std::string>& split() const { return split_; }
  size_t size() const { return videos_.size(); }
  int num_classes() const { return info_.num_classes; }
  int downsample_rate() const { return ds_rate_; }
  /// Effective feature stride (feat_stride * downsample_rate).
  double stride() const { return effective_stride(info_.feat_stride, ds_rate_); }
  double num_frames() const { return info_.num_frames; }
  /// 0.5 * num_frames / stride().
  double offset() const { return feat_offset(stride(), info_.num_frames); }
  /// Width of features(i) rows.
  int channels() const { return C_sel_; }
  /// Selected channel ranges [begin, end) of the file's channels, in output order.
  const std::vector<std::array<int, 2>>& channel_ranges() const { return ranges_; }

  const std::string& id(size_t i) const { return video(i).ann->id; }
  const VideoAnnotation& annotation(size_t i) const { return *video(i).ann; }
  double fps(size_t i) const { return video(i).fps; }
  double duration(size_t i) const { return video(i).ann->duration; }
  const std::string& feature_file(size_t i) const { return video(i).feature_file; }
  /// GT segments in grid units, as the reference computes them (no clipping).
  const std::vector<std::array<float, 2>>& segments(size_t i) const { return video(i).segments; }
  const std::vector<int>& labels(size_t i) const { return video(i).labels; }
  /// Index of a video id in this split, or -1.
  int64_t index_of(const std::string& video_id) const {
    for (size_t i = 0; i < videos_.size(); ++i)
      if (videos_[i].ann->id == video_id) return static_cast<int64_t>(i);
    return -1;
  }

  double to_grid(size_t i, double t_sec) const { return seconds_to_grid(t_sec, fps(i), stride(), num_frames()); }
  /// Grid -> seconds, clamped to [0, duration].
  double to_seconds(size_t i, double g) const {
    return std::clamp(grid_to_seconds(g, fps(i), stride(), num_frames()), 0.0, duration(i));
  }

  /// Reads video i's features: (T, channels()) time-major float32, rows
  /// subsampled by downsample_rate. Errors name the feature file.
  std::vector<float> features(size_t i, int* T_out = nullptr) const {
    const std::string& path = feature_file(i);
    io::Array a;
    if (path.size() >= 4 && path.compare(path.size() - 4, 4, ".npz") == 0) {
      auto m = io::load_npz(path);
      FLOWLESS_CHECK(m.size() == 1, path, ": expected exactly one array in the .npz, found ", m.size());
      a = std::move(m.begin()->second);
    } else {
      a = io::load_npy(path);
    }
    FLOWLESS_CHECK(a.shape.size() == 2, path, ": features must be a 2-D (T, C) array, got ", a.shape.size(),
                   " dimensions");
    const int64_t T_file = a.shape[0], C_file = a.shape[1];
    if (C_file != info_.input_dim) {
      if (T_file == info_.input_dim)
        FLOWLESS_FAIL(path, ": feature width ", C_file, " does not match dataset.json input_dim ", info_.input_dim,
                      " (the array looks channel-major (C, T) = (", T_file, ", ", C_file,
                      "); features must be time-major (T, C))");
      FLOWLESS_FAIL(path, ": feature width ", C_file, " does not match dataset.json input_dim ", info_.input_dim,
                    " (shape (", T_file, ", ", C_file, "))");
    }
    FLOWLESS_CHECK(T_file > 0, path, ": video has no feature steps (T = 0)");
    std::vector<float> raw = a.to_float32(path);
    FLOWLESS_CHECK(raw.size() == static_cast<size_t>(T_file * C_file), path, ": data size does not match shape");
    const int64_t T = (T_file + ds_rate_ - 1) / ds_rate_;
    std::vector<float> out(static_cast<size_t>(T) * C_sel_);
    for (int64_t t = 0; t < T; ++t) {
      const float* src = raw.data() + t * ds_rate_ * C_file;
      float* dst = out.data() + t * C_sel_;
      for (const auto& r : ranges_) dst = std::copy(src + r[0], src + r[1], dst);
    }
    for (size_t k = 0; k < raw.size(); ++k)
      if (!std::isfinite(raw[k]))
        FLOWLESS_FAIL(path, ": non-finite feature value (", raw[k], ") at step ", k / static_cast<size_t>(C_file),
                      ", channel ", k % static_cast<size_t>(C_file));
    if (T_out) *T_out = static_cast<int>(T);
    return out;
  }

  /// Video i as a training/inference item: features (unless with_features is
  /// false) and GT segments in grid units. With features, segments reaching
  /// more than one grid step beyond the time the features cover,
  /// [-offset, T - 1 + offset], are clipped to it (and dropped when nothing is
  /// left); this is reported once per video. Other segments are exactly the
  /// reference's (segments(i)).
  VideoItem item(size_t i, bool with_features = true) const {
    const Video& v = video(i);
    VideoItem it;
    it.id = v.ann->id;
    it.C = C_sel_;
    it.fps = v.fps;
    it.duration = v.ann->duration;
    it.feat_stride = stride();
    it.num_frames = info_.num_frames;
    if (!with_features) {
      it.segments = v.segments;
      it.labels = v.labels;
      return it;
    }
    it.feats = features(i, &it.T);
    const float lo = -static_cast<float>(offset());
    const float hi = static_cast<float>(it.T - 1) + static_cast<float>(offset());
    int n_clipped = 0, n_dropped = 0;
    for (size_t k = 0; k < v.segments.size(); ++k) {
      auto s = v.segments[k];
      // Within one grid step of the covered range a segment is left exactly as
      // the reference has it (the last, partial clip window has no feature);
      // beyond that it is clipped to the range.
      const bool clipped = s[0] < lo - 1.0f || s[1] > hi + 1.0f;
      if (clipped) {
        s[0] = std::clamp(s[0], lo, hi);
        s[1] = std::clamp(s[1], lo, hi);
      }
      if (s[1] - s[0] <= 0.0f) {
        ++n_dropped;
        continue;
      }
      n_clipped += clipped;
      it.segments.push_back(s);
      it.labels.push_back(v.labels[k]);
    }
    if (n_clipped + n_dropped > 0) {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->warned.insert(it.id).second)
        warning(v.feature_file + ": " + std::to_string(n_clipped + n_dropped) + " of " +
                std::to_string(v.segments.size()) + " segment(s) of video '" + it.id +
                "' reach beyond its features (T = " + std::to_string(it.T) + " steps, grid [" + fmt(lo) + ", " +
                fmt(hi) + "]): " + std::to_string(n_clipped) + " clipped, " + std::to_string(n_dropped) +
                " dropped");
    }
    return it;
  }

  /// item(i) followed by truncate_feats with dataset.json's max_seq_len,
  /// trunc_thresh and crop_ratio (the reference's training __getitem__).
  VideoItem training_item(size_t i, Rng& rng) const {
    return truncate_feats(item(i), info_.max_seq_len, info_.trunc_thresh, offset(), info_.crop_ratio, rng);
  }

 private:
  struct Video {
    const VideoAnnotation* ann = nullptr;
    double fps = 0;
    std::string feature_file;
    std::vector<std::array<float, 2>> segments;
    std::vector<int> labels;
  };
  struct State {
    std::mutex mu;
    std::set<std::string> warned;
  };

  static DatasetOptions make_opts(std::vector<std::string> split, const std::string& modality) {
    DatasetOptions o;
    o.split = std::move(split);
    o.modality = modality;
    return o;
  }
  static std::string fmt(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", x);
    return buf;
  }

  const Video& video(size_t i) const {
    FLOWLESS_CHECK(i < videos_.size(), folder_, ": video index ", i, " out of range (", videos_.size(),
                   " videos in split)");
    return videos_[i];
  }

  void warning(const std::string& msg) const {
    if (warn_) warn_(msg);
    else std::fprintf(stderr, "flowless: warning: %s\n", msg.c_str());
  }

  std::vector<std::array<int, 2>> resolve_modality(const std::string& m) const {
    const std::string ctx = folder_ + "/dataset.json";
    const std::string lm = dataset_detail::lower(m);
    auto named = [&](const std::string& name) -> std::array<int, 2> {
      auto it = info_.modalities.find(name);
      FLOWLESS_CHECK(it != info_.modalities.end(), ctx, ": modality '", name,
                     "' requested but field 'modalities' does not define it");
      return it->second;
    };
    if (lm == "all") return {{0, info_.input_dim}};
    if (lm == "both" || lm == "two-stream" || lm == "rgb+flow") {
      auto r = named("rgb"), f = named("flow");
      if (r[1] == f[0]) return {{r[0], f[1]}};
      return {r, f};
    }
    auto colon = m.find(':');
    if (colon != std::string::npos) {
      int b = 0, e = 0;
      try {
        size_t p1 = 0, p2 = 0;
        b = std::stoi(m.substr(0, colon), &p1);
        e = std::stoi(m.substr(colon + 1), &p2);
        FLOWLESS_CHECK(p1 == colon && p2 == m.size() - colon - 1, "");
      } catch (...) {
        FLOWLESS_FAIL(ctx, ": modality '", m, "' is not a channel range 'begin:end'");
      }
      FLOWLESS_CHECK(b >= 0 && b < e && e <= info_.input_dim, ctx, ": channel range '", m,
                     "' is not inside [0, input_dim = ", info_.input_dim, "]");
      return {{b, e}};
    }
    return {named(m)};
  }

  std::string folder_;
  DatasetInfo info_;
  int ds_rate_ = 1;
  std::vector<std::string> split_;
  std::vector<std::array<int, 2>> ranges_;
  int C_sel_ = 0;
  std::shared_ptr<Annotations> ann_;
  std::vector<Video> videos_;
  WarningHandler warn_;
  std::shared_ptr<State> state_;
};

// ---------------------------------------------------------------------------
// Epochs
// ---------------------------------------------------------------------------

struct EpochOptions {
  int batch_size = 2;
  bool shuffle = true;
  bool drop_last = true;   // the reference drops the incomplete last batch in training
  bool truncate = true;    // apply truncate_feats (training augmentation)
  /// Padded length: -1 = max_seq_len when truncating, else the longest in the
  /// batch; 0 = the longest in the batch; > 0 = exactly this.
  int padded_T = -1;
};

/// One pass over a Dataset in batches. The order is drawn from rng at
/// construction; truncation draws from rng as batches are produced, so the
/// same seed gives the same batches. `ds` and `rng` must outlive the iterator.
class EpochIterator {
 public:
  EpochIterator(const Dataset& ds, Rng& rng, EpochOptions opt = {}) : ds_(&ds), rng_(&rng), opt_(opt) {
    FLOWLESS_CHECK(opt_.batch_size > 0, "EpochIterator: batch_size must be > 0");
    order_ = epoch_order(ds.size(), opt_.shuffle, rng);
    const size_t B = static_cast<size_t>(opt_.batch_size);
    num_batches_ = opt_.drop_last ? order_.size() / B : (order_.size() + B - 1) / B;
  }
  size_t num_batches() const { return num_batches_; }
  const std::vector<size_t>& order() const { return order_; }

  /// Fills `out` with the next batch; false when the epoch is over.
  bool next(Batch& out) {
    if (batch_ >= num_batches_) return false;
    const size_t B = static_cast<size_t>(opt_.batch_size);
    const size_t begin = batch_ * B, end = std::min(begin + B, order_.size());
    std::vector<VideoItem> items;
    for (size_t k = begin; k < end; ++k)
      items.push_back(opt_.truncate ? ds_->training_item(order_[k], *rng_) : ds_->item(order_[k]));
    int padT = opt_.padded_T;
    if (padT < 0) padT = opt_.truncate ? ds_->info().max_seq_len : 0;
    out = collate(std::move(items), padT);
    ++batch_;
    return true;
  }

 private:
  const Dataset* ds_;
  Rng* rng_;
  EpochOptions opt_;
  std::vector<size_t> order_;
  size_t num_batches_ = 0;
  size_t batch_ = 0;
};

}  // namespace flowless::data
