// libFuzzer target: io::parse_safetensors on arbitrary bytes; parsed tensors
// convert to float32.
#include "flowless/io/safetensors.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    io::SafeTensors st = io::parse_safetensors(fuzz::as_string(data, size), "fuzz.safetensors");
    for (const auto& [name, a] : st.tensors) {
      std::vector<float> f = a.to_float32("fuzz.safetensors: " + name);
      fuzz::require(f.size() == static_cast<size_t>(a.numel()), "to_float32 size");
    }
  });
  return 0;
}
