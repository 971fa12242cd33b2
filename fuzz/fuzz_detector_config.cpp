// libFuzzer target: a detector config as found in a model file's metadata or
// a reference config JSON (parse_detector_config + validate). Whatever
// validates must give sane derived quantities (strides, the inference buffer
// length); configs small enough to build in microseconds are built and run
// on a short random video, so odd-but-valid architectures (kernel wider than
// the video, one head per channel, global attention, ...) are exercised too.
#include "flowless/models/detector.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    json::Value root = json::parse(fuzz::as_string(data, size), "fuzz-config.json");
    DetectorConfig c = parse_detector_config(root, "fuzz-config.json");
    const int div = c.max_div_factor();
    fuzz::require(div >= 1 && div <= (1 << 16), "max_div_factor in [1, 2^16]");
    for (int64_t T : {int64_t(1), int64_t(7), int64_t(c.max_seq_len), int64_t(1) << 30}) {
      const int64_t L = c.inference_length(T);
      fuzz::require(L >= T && L % c.buffer_multiple() == 0, "inference_length is a multiple of buffer_multiple covering T");
    }
    for (int s : c.fpn_strides()) fuzz::require(s >= 1, "positive strides");
    const bool small = c.input_dim <= 16 && c.embd_dim <= 16 && c.fpn_dim <= 16 && c.head_dim <= 16 &&
                       c.num_classes <= 8 && c.backbone_arch[0] + c.backbone_arch[1] + c.backbone_arch[2] <= 8 &&
                       c.head_num_layers <= 4 && c.embd_kernel_size <= 9 && c.head_kernel_size <= 9 && div <= 256 &&
                       c.max_seq_len <= 4096 && c.test.pre_nms_topk <= 5000 && c.test.nms.max_seg_num <= 1000;
    if (!small) return;
    models::Detector<float> det(c, 1);
    const int64_t T = 1 + int64_t(size % 97);
    std::vector<float> x(size_t(T * c.input_dim));
    for (size_t i = 0; i < x.size(); ++i) x[i] = float((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    auto dets = det.detect(x.data(), T, c.input_dim, VideoMeta{"fuzz-video", 30, double(T) * 4 / 30, 4, 16});
    for (const Detection& d : dets) fuzz::require(std::isfinite(d.start) && std::isfinite(d.end), "finite detections");
  });
  return 0;
}
