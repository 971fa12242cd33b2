// Detect actions in one video's features with a trained model file:
//   example_detect_video MODEL.safetensors VIDEO.npy [FPS]
// The model file may be a detector or a DCD student; both carry their config.
#include <cstdio>
#include <cstdlib>

#include <flowless/io/npy.hpp>
#include <flowless/models/any_model.hpp>

int main(int argc, char** argv) try {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.safetensors VIDEO.npy [FPS]\n", argv[0]);
    return 2;
  }
  auto model = flowless::models::load_any_model(argv[1]);
  flowless::io::Array feats = flowless::io::load_npy(argv[2]);  // (T, C) snippet features
  std::vector<float> x = feats.to_float32(argv[2]);
  const auto& cfg = model->config();
  const double fps = argc > 3 ? std::atof(argv[3]) : 30.0;
  const int64_t T = feats.shape[0], C = feats.shape[1];
  flowless::VideoMeta meta{"video", fps, (T * cfg.feat_stride + cfg.num_frames) / fps, cfg.feat_stride, cfg.num_frames};

  auto detections = model->detect(x.data(), T, C, meta);

  std::printf("%zu detections; the top 5:\n", detections.size());
  for (size_t i = 0; i < detections.size() && i < 5; ++i)
    std::printf("  class %2d  %7.2f s - %7.2f s  score %.3f\n", detections[i].label, detections[i].start,
                detections[i].end, detections[i].score);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
