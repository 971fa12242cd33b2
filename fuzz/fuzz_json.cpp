// libFuzzer target: json::parse on arbitrary text; what parses must survive
// dump() (compact and indented) and parse back to an equal value.
#include "flowless/io/json.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    json::Value v = json::parse(fuzz::as_string(data, size), "fuzz.json");
    json::Value a = json::parse(json::dump(v), "fuzz.json(dumped)");
    fuzz::require(a == v, "dump/parse round trip (compact)");
    json::Value b = json::parse(json::dump(v, 2), "fuzz.json(dumped, indented)");
    fuzz::require(b == v, "dump/parse round trip (indented)");
  });
  return 0;
}
