// libFuzzer target: io::ZipReader::from_bytes on arbitrary bytes, then every
// entry read (CRC checked) and, like load_npz, parsed as .npy.
#include "flowless/io/npy.hpp"
#include "flowless/io/zip.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    io::ZipReader zip = io::ZipReader::from_bytes(fuzz::as_string(data, size), "fuzz.npz");
    for (const io::ZipEntry& e : zip.entries()) {
      fuzz::guarded([&] {
        std::string bytes = zip.read(e);
        fuzz::require(bytes.size() == e.size, "entry size");
        io::parse_npy(bytes, "fuzz.npz: entry '" + e.name + "'");
      });
    }
  });
  return 0;
}
