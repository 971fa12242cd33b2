// flowless/models/any_model.hpp - one inference interface over every model
// file the command line can run.
//
//   std::unique_ptr<AnyModel<T>> m = load_any_model<T>(path, config_path = "");
//   m->format()   "flowless-detector" | "flowless-dcd-student"
//   m->config()   the inference path's DetectorConfig: input_dim, channels
//                 (the range of the feature files it reads), num_classes,
//                 feature geometry, test (post-processing) settings
//   m->detect(feats, T, C, meta)   feats: (T, C) time-major host floats, either
//                 exactly input_dim channels, or a wider file from which the
//                 config's channel range [lo, hi) is taken (e.g. the RGB half
//                 of a two-stream THUMOS14 .npy). Same semantics as
//                 Detector::detect.
//   m->module()   the parameters (e.g. to count them)
//   m->metadata() the file's safetensors metadata (empty for reference weights)
// Accepted files: flowless model files (format in the safetensors metadata;
// a file without "format" but with "config" is read as a detector), and
// reference weights (.safetensors / .pth.tar) together with a reference config
// JSON (config_path), exactly as models::open_detector.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "flowless/dcd/student.hpp"
#include "flowless/models/model_file.hpp"

namespace flowless::models {

template <class T = float>
class AnyModel {
 public:
  virtual ~AnyModel() = default;
  virtual std::string format() const = 0;
  virtual const DetectorConfig& config() const = 0;
  virtual nn::Module<T>& module() = 0;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  /// Detections of one video (see the file comment for the accepted widths).
  std::vector<Detection> detect(const float* feats, int64_t Tn, int64_t C, const VideoMeta& meta) {
    const DetectorConfig& c = config();
    check_video_features(feats, Tn, C, meta.id);
    if (C == c.input_dim) return run(feats, Tn, C, meta);
    FLOWLESS_CHECK(c.channels[1] > 0 && c.channels[1] <= C, meta.id, ": features have ", C, " channels, the model reads ",
                   c.input_dim, (c.channels[1] > 0 ? " from channels [" + std::to_string(c.channels[0]) + ", " +
                                                         std::to_string(c.channels[1]) + ")"
                                                   : std::string(" and names no channel range")));
    const int64_t lo = c.channels[0], W = c.input_dim;
    std::vector<float> sel(size_t(Tn * W));
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t k = 0; k < W; ++k) sel[size_t(t * W + k)] = feats[t * C + lo + k];
    return run(sel.data(), Tn, W, meta);
  }

 protected:
  virtual std::vector<Detection> run(const float* feats, int64_t Tn, int64_t C, const VideoMeta& meta) = 0;
  std::map<std::string, std::string> metadata_;
};

template <class T = float>
class AnyDetector : public AnyModel<T> {
 public:
  AnyDetector(std::unique_ptr<Detector<T>> m, std::map<std::string, std::string> meta) : m_(std::move(m)) {
    this->metadata_ = std::move(meta);
  }
  std::string format() const override { return kDetectorFormat; }
  const DetectorConfig& config() const override { return m_->config(); }
  nn::Module<T>& module() override { return *m_; }
  Detector<T>& detector() { return *m_; }

 protected:
  std::vector<Detection> run(const float* feats, int64_t Tn, int64_t C, const VideoMeta& meta) override {
    return m_->detect(feats, Tn, C, meta);
  }

 private:
  std::unique_ptr<Detector<T>> m_;
};

template <class T = float>
class AnyDcdStudent : public AnyModel<T> {
 public:
  AnyDcdStudent(std::unique_ptr<dcd::DcdStudent<T>> m, std::map<std::string, std::string> meta) : m_(std::move(m)) {
    this->metadata_ = std::move(meta);
  }
  std::string format() const override { return dcd::kDcdStudentFormat; }
  const DetectorConfig& config() const override { return m_->detector_config(); }
  nn::Module<T>& module() override { return *m_; }
  dcd::DcdStudent<T>& student() { return *m_; }

 protected:
  std::vector<Detection> run(const float* feats, int64_t Tn, int64_t C, const VideoMeta& meta) override {
    return m_->detect(feats, Tn, C, meta);
  }

 private:
  std::unique_ptr<dcd::DcdStudent<T>> m_;
};

/// Opens any runnable model file (see the file comment).
template <class T = float>
std::unique_ptr<AnyModel<T>> load_any_model(const std::string& path, const std::string& config_path = "") {
  if (!config_path.empty() || io::is_pth_file(path))
    return std::make_unique<AnyDetector<T>>(open_detector<T>(path, config_path), std::map<std::string, std::string>{});
  io::SafeTensors st = io::load_safetensors(path);
  auto fmt = st.metadata.find("format");
  const std::string f = fmt == st.metadata.end() ? std::string() : fmt->second;
  if (f == dcd::kDcdStudentFormat) {
    auto m = dcd::dcd_student_from_safetensors<T>(st, path);
    return std::make_unique<AnyDcdStudent<T>>(std::move(m), st.metadata);
  }
  FLOWLESS_CHECK(f.empty() || f == kDetectorFormat, path, ": unknown model format '", f, "' (known: ", kDetectorFormat,
                 ", ", dcd::kDcdStudentFormat, ")");
  auto m = std::make_unique<Detector<T>>(read_detector_config(st, path));
  m->load_state_dict(st.tensors, path, true);
  m->train(false);
  return std::make_unique<AnyDetector<T>>(std::move(m), st.metadata);
}

}  // namespace flowless::models
