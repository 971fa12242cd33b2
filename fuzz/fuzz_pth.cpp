// libFuzzer target: PyTorch checkpoints (io::parse_pth_state_dict).
// The first byte picks the mode:
//   even: the rest is the archive itself (zip layer + everything behind it);
//   odd:  the rest is "<pickle> 0xFF 0xFE <storage bytes>" and a valid archive
//         is built around it (archive/data.pkl, archive/data/0 = the storage
//         bytes, archive/data/1 = their first half, archive/byteorder when the
//         first byte has bit 1 set), so mutations reach the pickle VM and the
//         tensor views past the zip CRC check.
// Each archive is read with key "" (top level), "state_dict" and the default.
#include "flowless/io/pth.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::string rest = fuzz::as_string(data + 1, size - 1);
  std::string archive;
  if ((mode & 1) == 0) {
    archive = std::move(rest);
  } else {
    const size_t sep = rest.find("\xff\xfe");
    std::string pkl = rest.substr(0, sep);
    std::string storage = sep == std::string::npos ? std::string() : rest.substr(sep + 2);
    io::ZipWriter zw("fuzz.pth(builder)");
    zw.add("archive/data.pkl", pkl);
    zw.add("archive/data/0", storage);
    zw.add("archive/data/1", storage.substr(0, storage.size() / 2));
    if (mode & 2) zw.add("archive/byteorder", (mode & 4) ? "big" : "little");
    zw.add("archive/version", "3\n");
    archive = zw.finish();
  }
  for (const char* key : {"", "state_dict", "state_dict_ema"}) {
    fuzz::guarded([&] {
      auto sd = io::parse_pth_state_dict(archive, "fuzz.pth", key);
      for (const auto& [name, a] : sd) {
        std::vector<float> f = a.to_float32("fuzz.pth: " + name);
        fuzz::require(f.size() == static_cast<size_t>(a.numel()), "to_float32 size");
      }
    });
  }
  return 0;
}
