// libFuzzer target: io::parse_npy on arbitrary bytes; parsed arrays are also
// converted to float32 and written back (npy_bytes) and re-read identically.
#include "flowless/io/npy.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    io::Array a = io::parse_npy(fuzz::as_string(data, size), "fuzz.npy");
    std::vector<float> f = a.to_float32("fuzz.npy");
    fuzz::require(f.size() == static_cast<size_t>(a.numel()), "to_float32 size");
    io::Array b = io::parse_npy(io::detail::npy_bytes(a, "fuzz.npy(rewritten)"), "fuzz.npy(rewritten)");
    fuzz::require(b.dtype == a.dtype && b.shape == a.shape && b.data == a.data, "npy write/read round trip");
  });
  return 0;
}
