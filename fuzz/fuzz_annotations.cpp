// libFuzzer target: data::parse_annotations on parsed JSON; what loads must
// also survive annotations_to_json -> dump -> parse -> parse_annotations
// (a host that saves annotations must be able to load them again).
#include "flowless/data/annotations.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    json::Value root = json::parse(fuzz::as_string(data, size), "fuzz.json");
    data::Annotations a = data::parse_annotations(root, "fuzz.json");
    data::Annotations b =
        data::parse_annotations(json::parse(json::dump(data::annotations_to_json(a), 2), "fuzz.json(saved)"),
                                "fuzz.json(saved)");
    fuzz::require(a.videos.size() == b.videos.size(), "saved annotations keep every video");
    for (size_t i = 0; i < a.videos.size(); ++i) {
      fuzz::require(a.videos[i].id == b.videos[i].id && a.videos[i].segments.size() == b.videos[i].segments.size(),
                    "saved annotations keep ids and segments");
      for (size_t k = 0; k < a.videos[i].segments.size(); ++k)
        fuzz::require(a.videos[i].segments[k].label_id == b.videos[i].segments[k].label_id &&
                          a.videos[i].segments[k].start == b.videos[i].segments[k].start &&
                          a.videos[i].segments[k].end == b.videos[i].segments[k].end,
                      "saved annotations keep segments and label ids");
    }
    a.split({"validation"});
    a.split({});
  });
  return 0;
}
