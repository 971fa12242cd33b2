// The model benchmark behind `flowless bench` (bench/model_bench.hpp): the
// JSON fields issue #6 asks for, the training step's kernel-side counters,
// and its errors. The small preset keeps this to a few seconds; the speed
// itself is measured by dev/perf_report.sh, never asserted here.
#include <doctest/doctest.h>

#include <string>

#include "flowless/bench/model_bench.hpp"

using namespace flowless;

namespace {

std::string bench_error(const bench::ModelBenchOptions& o) {
  try {
    bench::run_model_bench(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST_CASE("model bench: a small training run reports every field, with its page faults and kernel time") {
  bench::ModelBenchOptions o;
  o.preset = "actionformer-small";
  o.T = 100;  // padded to the preset's stride multiple
  o.threads = 2;
  o.repeats = 1;
  o.warmup = 1;
  o.train = true;
  const json::Value r = bench::run_model_bench(o);
  for (const char* key : {"network_seconds", "network_gflops", "inference_seconds", "gemm_gflops", "peak_rss_mb",
                          "train_step_seconds", "train_step_cpu_seconds", "network_flops"}) {
    CAPTURE(std::string(key));
    REQUIRE(r.contains(key));
    CHECK(r.at(key).as_number() > 0);
  }
  CHECK(r.at("video_T").as_number() == 100);
  CHECK(r.at("T").as_number() >= 100);
  CHECK(r.at("train_T").as_number() == 768);
  // the kernel-side counters of one step: counts, so >= 0, and kernel time within the step's CPU time
  REQUIRE(r.contains("train_step_page_faults"));
  REQUIRE(r.contains("train_step_sys_seconds"));
  const double faults = r.at("train_step_page_faults").as_number();
  const double sys = r.at("train_step_sys_seconds").as_number();
  CHECK(faults >= 0);
  CHECK(faults == double(int64_t(faults)));
  CHECK(sys >= 0);
  CHECK(sys <= r.at("train_step_cpu_seconds").as_number() + 0.01);
  const json::Value& parts = r.at("train_step_parts");
  for (const char* key : {"forward", "loss", "backward", "clip", "optimizer"}) {
    CAPTURE(std::string(key));
    CHECK(parts.at(key).as_number() >= 0);
  }
  CHECK(parts.at("backward").as_number() > 0);
}

TEST_CASE("model bench: bad options fail with a message that names them") {
  bench::ModelBenchOptions o;
  o.preset = "actionformer-huge";
  CHECK(bench_error(o).find("unknown preset 'actionformer-huge'") != std::string::npos);
  o.preset = "actionformer-small";
  o.repeats = 0;
  CHECK(bench_error(o).find("repeats") != std::string::npos);
  o.repeats = 1;
  o.warmup = -1;
  CHECK(bench_error(o).find("warmup") != std::string::npos);
  o.warmup = 1;
  o.threads = 0;
  CHECK(bench_error(o).find("threads") != std::string::npos);
  o.threads = 1;
  o.T = 0;
  CHECK(bench_error(o) != "<no error>");
  o.T = 100;
  o.device = "tpu";
  CHECK(bench_error(o) != "<no error>");
}
