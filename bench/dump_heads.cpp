// bench/dump_heads.cpp - developer helper for dev/compare_pytorch.py.
//
//   flowless_dump_heads --init PRESET MODEL.safetensors [--seed S]
//       writes a random-initialised model file of a model-bench preset
//       (flowless::bench::model_bench_preset) with save_detector.
//   flowless_dump_heads MODEL FEATS.npy OUT.safetensors [--config CFG.json] [--threads N]
//       runs Detector::detect on the (T, C) features and writes the network's
//       per-level outputs on the valid positions, as the parity fixture names
//       them: cls_logits.<l> (T_l, classes), offsets.<l> (T_l, 2; TriDet
//       2 x (bins + 1)), fpn_feats.<l> (T_l, fpn_dim), for TriDet also
//       start_logits.<l> and end_logits.<l> (T_l, classes); metadata "buffer_T" = the padded length
//       the network ran on, "num_detections".
#include <cstdio>
#include <string>

#include "flowless/bench/model_bench.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/models/model_file.hpp"

using namespace flowless;

int main(int argc, char** argv) {
  try {
    std::vector<std::string> pos;
    std::string config;
    int threads = 1;
    uint64_t seed = 1234567891ULL;
    std::string init_preset;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        FLOWLESS_CHECK(i + 1 < argc, a, " needs a value");
        return argv[++i];
      };
      if (a == "--config") config = value();
      else if (a == "--threads") threads = std::stoi(value());
      else if (a == "--seed") seed = std::stoull(value());
      else if (a == "--init") init_preset = value();
      else pos.push_back(a);
    }
    set_num_threads(threads);
    if (!init_preset.empty()) {
      FLOWLESS_CHECK(pos.size() == 1, "usage: flowless_dump_heads --init PRESET MODEL.safetensors");
      models::Detector<float> model(bench::model_bench_preset(init_preset), seed);
      models::save_detector(pos[0], model, {{"preset", init_preset}});
      std::printf("%s: %lld parameters\n", pos[0].c_str(), (long long)model.num_parameters());
      return 0;
    }
    FLOWLESS_CHECK(pos.size() == 3, "usage: flowless_dump_heads MODEL FEATS.npy OUT.safetensors [--config CFG]");
    auto model = models::open_detector<float>(pos[0], config);
    io::Array a = io::load_npy(pos[1]);
    FLOWLESS_CHECK(a.shape.size() == 2, pos[1], ": features must be (T, C)");
    auto x = a.to_float32(pos[1]);
    models::DetectorOutput<float> raw;
    VideoMeta meta{"dump", 30.0, double(a.shape[0]) * 4.0 / 30.0, model->config().feat_stride, model->config().num_frames};
    auto dets = model->detect(x.data(), a.shape[0], a.shape[1], meta, &raw);
    io::SafeTensors st;
    st.metadata["buffer_T"] = std::to_string(raw.cls_logits[0].size(1));
    st.metadata["num_detections"] = std::to_string(dets.size());
    for (size_t l = 0; l < raw.cls_logits.size(); ++l) {
      const int64_t len = raw.lengths[l][0];
      auto put = [&](const std::string& name, const Var<float>& v) {
        const int64_t C = v.size(2);
        st.tensors[name + "." + std::to_string(l)] = io::Array::from_float32(v.value().data(), {len, C});
      };
      put("cls_logits", raw.cls_logits[l]);
      put("offsets", raw.offsets[l]);
      put("fpn_feats", raw.feats[l]);
      if (!raw.start_logits.empty()) {  // TriDet's boundary heads
        put("start_logits", raw.start_logits[l]);
        put("end_logits", raw.end_logits[l]);
      }
    }
    io::save_safetensors(pos[2], st);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flowless_dump_heads: %s\n", e.what());
    return 1;
  }
}
