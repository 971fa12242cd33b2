// Run a checkpoint trained with the public PyTorch ActionFormer code, no Python:
//   example_reference_checkpoint CONFIG.json CHECKPOINT.pth.tar VIDEO.npy
// The checkpoint's EMA weights (state_dict_ema) are loaded; the pickle inside
// the file is parsed, never executed. ActivityNet-style configs
// (force_upsampling) get their input resampled as the reference's dataset does;
// their classifier-score fusion is workflow::fuse_external_scores (see
// `flowless detect --ext-scores`).
#include <cstdio>

#include <flowless/io/npy.hpp>
#include <flowless/models/model_file.hpp>
#include <flowless/workflow/video_input.hpp>

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s CONFIG.json CHECKPOINT.pth.tar VIDEO.npy\n", argv[0]);
    return 2;
  }
  auto model = flowless::models::open_detector<float>(argv[2], /*config=*/argv[1]);
  std::printf("loaded %lld parameters (%s, %d levels)\n", (long long)model->num_parameters(),
              model->config().arch.c_str(), model->config().num_levels());

  flowless::io::Array f = flowless::io::load_npy(argv[3]);
  auto x = f.to_float32(argv[3]);
  const auto& c = model->config();
  const double fps = c.default_fps > 0 ? c.default_fps : 30.0;
  int64_t T = f.shape[0], C = f.shape[1];
  flowless::VideoMeta meta{"video", fps, (T * c.feat_stride + c.num_frames) / fps, c.feat_stride, c.num_frames};
  flowless::workflow::prepare_video_input(c, x, T, C, meta, argv[3]);  // a no-op for THUMOS-style configs
  auto dets = model->detect(x.data(), T, C, meta);

  std::printf("%zu detections, best: class %d at %.2f-%.2f s (score %.4f)\n", dets.size(), dets.at(0).label,
              dets[0].start, dets[0].end, dets[0].score);
  // Also keep a flowless model file (config inside) for `flowless detect --model`.
  flowless::models::save_detector("reference_model.safetensors", *model);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
