// libFuzzer target: eval::parse_predictions on parsed JSON against a fixed
// small annotation set, then evaluate_detection on whatever loaded (hostile
// segments, scores and labels must not crash the evaluator).
#include "flowless/eval/detection_map.hpp"
#include "fuzz_common.hpp"

namespace {
const flowless::data::Annotations& fixed_annotations() {
  static const flowless::data::Annotations ann = flowless::data::parse_annotations(
      flowless::json::parse(R"({"version": "fuzz", "database": {
        "v1": {"subset": "test", "duration": 30.0, "fps": 30, "annotations": [
          {"label": "Jump", "segment": [1.0, 4.5]}, {"label": "Run", "segment": [3.0, 9.0]},
          {"label": "Jump", "segment": [12.0, 12.0005]}, {"label": "Run", "segment": [25.0, 40.0]}]},
        "v2": {"subset": "test", "duration": 10.0, "annotations": [
          {"label": "Run", "segment": [0.0, 10.0]}, {"label": "Run", "segment": [0.0, 10.0]}]},
        "v3": {"subset": "validation", "duration": 5.0, "annotations": []}}})",
                            "fuzz-annotations"),
      "fuzz-annotations");
  return ann;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  const data::Annotations& ann = fixed_annotations();
  fuzz::guarded([&] {
    json::Value root = json::parse(fuzz::as_string(data, size), "fuzz-predictions.json");
    std::vector<eval::Prediction> preds = eval::parse_predictions(root, "fuzz-predictions.json", ann);
    eval::DetectionResult r = eval::evaluate_detection(ann, "test", preds, {0.1, 0.5, 0.9});
    fuzz::require(r.map.size() == 3, "one mAP per threshold");
    for (double m : r.map) fuzz::require(m >= 0 && m <= 1, "mAP in [0, 1]");
    eval::format_table(r);
    json::dump(eval::to_json(r));
  });
  return 0;
}
