// dev/long_input_rss.cpp - peak memory of Detector::detect on one long video
// with a small model (preset "tiny", 8 input channels), for checking that
// memory grows linearly in T. Run through dev/long_input_rss.sh.
//   long_input_rss T [arch]   prints: T, peak RSS before and after detect (MiB), seconds
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "flowless/models/detector.hpp"
#include "flowless/workflow/training.hpp"

static double peak_rss_mib() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // Linux: KiB
}

int main(int argc, char** argv) try {
  using namespace flowless;
  const int64_t T = argc > 1 ? std::atoll(argv[1]) : 50000;
  const std::string arch = argc > 2 ? argv[2] : "actionformer";
  DetectorConfig c = workflow::preset_config("tiny", arch);
  c.input_dim = 8;
  c.num_classes = 3;
  c.max_seq_len = 256;
  models::Detector<float> det(c, 4);
  std::vector<float> x(size_t(T * c.input_dim));
  Rng rng(8);
  for (auto& v : x) v = float(rng.normal());
  const double before = peak_rss_mib();
  auto t0 = std::chrono::steady_clock::now();
  auto dets = det.detect(x.data(), T, c.input_dim, VideoMeta{"long", 30, double(T) * 4 / 30, 4, 16});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%-14s T=%-8lld peak RSS before %.1f MiB, after %.1f MiB (growth %.1f MiB, %.2f KiB/snippet), %.2f s, %zu detections\n",
              arch.c_str(), (long long)T, before, peak_rss_mib(), peak_rss_mib() - before,
              (peak_rss_mib() - before) * 1024.0 / double(T), secs, dets.size());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "long_input_rss: %s\n", e.what());
  return 1;
}
