// End-to-end parity with the reference ActionFormer (tests/data/actionformer_small):
// per-level outputs, final detections, training losses and every gradient.
#include <doctest/doctest.h>

#include <cmath>

#include "flowless/io/npy.hpp"
#include "flowless/models/model_file.hpp"
#include "reference_parity.hpp"

using namespace flowless;
using models::Detector;

namespace {
const std::string kDir = std::string(FLOWLESS_TEST_DATA) + "/actionformer_small/";

DetectorConfig fixture_config() { return parse_detector_config(json::parse_file(kDir + "config.json"), kDir + "config.json"); }

void check_video_outputs(Detector<float>& model, const std::string& vid) {
  test::check_fixture_video(model, kDir, vid);
}
}  // namespace

TEST_CASE("actionformer parity: per-level outputs and detections from weights.safetensors") {
  auto model = models::load_reference_detector<float>(fixture_config(), kDir + "weights.safetensors");
  CHECK(model->num_parameters() > 0);
  for (const char* vid : {"vid00", "vid01", "vid02"}) check_video_outputs(*model, vid);
}

TEST_CASE("actionformer parity: the reference training checkpoint (.pth.tar, state_dict_ema)") {
  auto model = models::load_reference_detector<float>(fixture_config(), kDir + "checkpoint.pth.tar");
  for (const char* vid : {"vid00", "vid02"}) check_video_outputs(*model, vid);
}

TEST_CASE("actionformer parity: reference padding to max_seq_len gives the same outputs") {
  DetectorConfig cfg = fixture_config();
  cfg.inference_padding = "max_seq_len";
  auto model = models::load_reference_detector<float>(cfg, kDir + "weights.safetensors");
  check_video_outputs(*model, "vid00");
}

TEST_CASE("actionformer parity: training losses, normaliser and every gradient") {
  DetectorConfig cfg = fixture_config();
  auto model = models::load_reference_detector<float>(cfg, kDir + "weights.safetensors");
  test::check_reference_training(*model, kDir);
}

#include "flowless/data/synth.hpp"
#include "flowless/dcd/tasks.hpp"
#include "flowless/train/trainer.hpp"

TEST_CASE("detector families train from scratch and reload bit for bit") {
  const std::string dir = std::string(FLOWLESS_BINARY_DIR) + "/test_families_data";
  data::write_synthetic_dataset(dir, data::synth_preset("tiny"), 21, true);
  data::Dataset ds(dir, {"validation"}, "flow");
  for (const char* arch : {"actionformer", "temporalmaxer"}) {
    CAPTURE(arch);
    DetectorConfig c;
    c.arch = arch;
    c.input_dim = ds.channels();
    c.num_classes = ds.num_classes();
    c.embd_dim = c.fpn_dim = c.head_dim = 32;
    c.mha_win_size.assign(6, 5);
    c.max_seq_len = 256;
    c.droppath = 0.0;
    Detector<float> model(c, 3);
    dcd::DetectorTask<float> task(model);
    // A fixed batch, scored with a frozen normaliser before and after training.
    Rng rng(5);
    data::EpochOptions eo;
    eo.batch_size = 4;
    eo.truncate = false;
    eo.padded_T = c.max_seq_len;
    data::EpochIterator it(ds, rng, eo);
    data::Batch probe;
    REQUIRE(it.next(probe));
    auto probe_loss = [&] {  // same normaliser before and after (training moves the running one)
      NoGradGuard ng;
      model.train(false);
      const double norm = task.criterion().loss_norm();
      task.criterion().set_loss_norm(100.0);
      const double l = double(task.terms(probe, false).final_loss.value()[0]);
      task.criterion().set_loss_norm(norm);
      return l;
    };
    const double before = probe_loss();
    train::TrainerOptions to;
    to.epochs = 6, to.warmup_epochs = 1, to.batch_size = 2, to.lr = 2e-3, to.progress = false, to.use_ema = false;
    to.padded_T = c.max_seq_len;
    train::Trainer<float> trainer(task, ds, to);
    trainer.run();
    const double after = probe_loss();
    CHECK(after < 0.7 * before);

    // Save, reload, detect: identical detections.
    const std::string path = dir + "/" + std::string(arch) + ".safetensors";
    models::save_detector(path, model);
    auto reloaded = models::load_detector<float>(path);
    data::Dataset te(dir, {"test"}, "flow");
    int T = 0;
    auto x = te.features(0, &T);
    VideoMeta meta{te.id(0), te.fps(0), te.duration(0), te.stride(), te.num_frames()};
    auto a = model.detect(x.data(), T, te.channels(), meta);
    auto b = reloaded->detect(x.data(), T, te.channels(), meta);
    REQUIRE(a.size() == b.size());
    REQUIRE(!a.empty());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].start == b[i].start);
      CHECK(a[i].end == b[i].end);
      CHECK(a[i].score == b[i].score);
      CHECK(a[i].label == b[i].label);
    }
  }
}
