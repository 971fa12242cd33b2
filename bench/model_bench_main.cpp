// bench/model_bench_main.cpp - runs flowless::bench::run_model_bench (the code
// behind `flowless bench`) without the CLI and prints its JSON.
//
//   flowless_model_bench [--preset actionformer-thumos] [--T 2304] [--threads 1]
//                        [--repeats 5] [--warmup 1] [--train] [--profile]
//                        [--precision fp32|bf16] [--train-precision fp32|bf16] [--student]
#include <cstdio>
#include <cstring>
#include <string>

#include "flowless/bench/model_bench.hpp"

int main(int argc, char** argv) {
  flowless::bench::ModelBenchOptions o;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        FLOWLESS_CHECK(i + 1 < argc, a, " needs a value");
        return argv[++i];
      };
      if (a == "--preset") o.preset = value();
      else if (a == "--T") o.T = std::stoll(value());
      else if (a == "--threads") o.threads = std::stoi(value());
      else if (a == "--repeats") o.repeats = std::stoi(value());
      else if (a == "--warmup") o.warmup = std::stoi(value());
      else if (a == "--train") o.train = true;
      else if (a == "--profile") o.profile = true;
      else if (a == "--precision") o.precision = value();
      else if (a == "--train-precision") o.train_precision = value();
      else if (a == "--student") o.student = true;
      else if (a == "--device") o.device = value();
      else FLOWLESS_FAIL("unknown argument '", a, "'");
    }
    std::printf("%s\n", flowless::json::dump(flowless::bench::run_model_bench(o), 2).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flowless_model_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
