// libFuzzer target: an mmengine-style Python config text (io::parse_pyconfig,
// _base_ refused), then - when it is an OpenTAD config tree - its translation
// to the original layout and parse_detector_config. Whatever parses must dump
// to JSON that parses back equal.
#include "flowless/io/pyconfig.hpp"
#include "flowless/models/opentad.hpp"
#include "flowless/models/detector_config.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    const json::Value v = io::parse_pyconfig(fuzz::as_string(data, size), "fuzz-config.py");
    fuzz::require(v.is_object(), "a config is an object");
    fuzz::require(json::parse(json::dump(v), "fuzz-dump") == v, "dump parses back equal");
    if (models::is_opentad_config(v))
      (void)parse_detector_config(models::opentad_to_reference_config(v, "fuzz-config.py"), "fuzz-config.py");
  });
  return 0;
}
