// libFuzzer target: data::parse_dataset_info on arbitrary text; what parses
// must also survive dataset_info_to_json -> dump -> parse_dataset_info.
#include "flowless/data/dataset.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace flowless;
  fuzz::guarded([&] {
    data::DatasetInfo d = data::parse_dataset_info(fuzz::as_string(data, size), "fuzz/dataset.json");
    data::DatasetInfo e =
        data::parse_dataset_info(json::dump(data::dataset_info_to_json(d), 2), "fuzz/dataset.json(saved)");
    fuzz::require(e.input_dim == d.input_dim && e.num_classes == d.num_classes && e.feat_stride == d.feat_stride &&
                      e.modalities == d.modalities && e.train_split == d.train_split &&
                      e.max_seq_len == d.max_seq_len && e.crop_ratio == d.crop_ratio,
                  "dataset.json save/load round trip");
  });
  return 0;
}
