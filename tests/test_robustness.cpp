// Robustness: bad input is a flowless::Error naming the file and the problem
// (never a crash, another exception type or a silent wrong answer); training
// can be interrupted and resumed bit for bit; runs are deterministic; a
// diverging run keeps its last good checkpoint; very long videos run in
// memory linear in T. Cases already covered elsewhere are listed in
// docs/robustness.md with the test that covers them; this file covers the
// rest. The fuzz targets in fuzz/ check the readers on arbitrary bytes.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <typeinfo>
#include <vector>

#include "test_util.hpp"
#include "flowless/data/synth.hpp"
#include "flowless/eval/detection_map.hpp"
#include "flowless/io/npy.hpp"
#include "flowless/io/pth.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/models/any_model.hpp"
#include "flowless/workflow/training.hpp"

using namespace flowless;

namespace {

// A scratch folder for this process, removed at exit.
std::string rb_tmp() {
  static const flowless::test::ScratchDir d("robustness");
  return d.path;
}

std::string rb_data(const std::string& rel) { return std::string(FLOWLESS_TEST_DATA) + "/" + rel; }

// what() of the flowless::Error f throws; anything else is reported as such.
std::string rb_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a flowless::Error: ") + typeid(e).name() + ": " + e.what() + ">";
  }
  return "<no error>";
}

// Restores the global thread count at scope exit (train_model sets it).
struct ThreadsGuard {
  int saved = num_threads();
  ~ThreadsGuard() { set_num_threads(saved); }
};

// The tiny synthetic dataset (12 training, 8 test videos, 32 channels), written once.
const std::string& tiny_data() {
  static const std::string dir = [] {
    std::string d = rb_tmp() + "/tiny";
    data::write_synthetic_dataset(d, data::synth_preset("tiny"), 11);
    return d;
  }();
  return dir;
}

// One epoch (after one warmup epoch) of an RGB detector on the tiny dataset, 1 thread, quiet.
workflow::TrainRequest tiny_rgb_request(uint64_t seed) {
  workflow::TrainRequest r;
  r.data = tiny_data();
  r.modality = "rgb";
  r.preset = "tiny";
  r.epochs = 1;
  r.warmup_epochs = 1;
  r.seed = seed;
  r.threads = 1;
  r.progress = false;
  return r;
}

// What workflow::train_model builds for preset "tiny" on every channel.
DetectorConfig tiny_config(const data::Dataset& ds) {
  DetectorConfig c = workflow::preset_config("tiny", "actionformer");
  c.input_dim = ds.info().input_dim;
  c.channels = {0, ds.info().input_dim};
  c.num_classes = ds.num_classes();
  c.feat_stride = ds.stride();
  c.num_frames = ds.num_frames();
  c.default_fps = ds.info().default_fps;
  c.max_seq_len = int((ds.info().max_seq_len + c.max_div_factor() - 1) / c.max_div_factor() * c.max_div_factor());
  c.validate("tiny_config");
  return c;
}

train::TrainerOptions tiny_trainer_options(const DetectorConfig& c, const std::string& checkpoint) {
  train::TrainerOptions o = workflow::preset_trainer("tiny");
  o.epochs = 1;
  o.warmup_epochs = 1;
  o.seed = 5;
  o.padded_T = c.max_seq_len;
  o.checkpoint = checkpoint;
  o.checkpoint_every = 1;
  o.progress = false;
  return o;
}

data::Dataset tiny_train_set() {
  data::DatasetOptions o;
  o.modality = "all";
  o.warn = [](const std::string&) {};
  return data::Dataset(tiny_data(), o);
}

bool same_bits(const std::map<std::string, Tensor<float>>& a, const std::map<std::string, Tensor<float>>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a) {
    auto it = b.find(k);
    if (it == b.end() || !(it->second.shape() == t.shape())) return false;
    if (t.numel() && std::memcmp(t.data(), it->second.data(), size_t(t.numel()) * sizeof(float)) != 0) return false;
  }
  return true;
}

bool same_detections(const std::vector<Detection>& a, const std::vector<Detection>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].start != b[i].start || a[i].end != b[i].end || a[i].label != b[i].label || a[i].score != b[i].score)
      return false;
  return true;
}

// A task that forwards to a DetectorTask but feeds one batch with a NaN feature.
class NanBatchTask : public train::TrainTask<float> {
 public:
  NanBatchTask(dcd::DetectorTask<float>& inner, int64_t nan_call) : inner_(inner), nan_call_(nan_call) {}
  nn::Module<float>& module() override { return inner_.module(); }
  Var<float> loss(const data::Batch& b, std::map<std::string, double>& parts) override {
    if (++calls_ != nan_call_) return inner_.loss(b, parts);
    data::Batch bad = b;
    bad.feats[3] = std::numeric_limits<float>::quiet_NaN();
    return inner_.loss(bad, parts);
  }
  std::map<std::string, std::string> extra_state() const override { return inner_.extra_state(); }
  void load_extra_state(const std::map<std::string, std::string>& s) override { inner_.load_extra_state(s); }

 private:
  dcd::DetectorTask<float>& inner_;
  int64_t nan_call_, calls_ = 0;
};

// A task whose loss is finite but whose gradient is NaN on one call.
class NanGradientTask : public train::TrainTask<float> {
 public:
  NanGradientTask(dcd::DetectorTask<float>& inner, int64_t nan_call) : inner_(inner), nan_call_(nan_call) {}
  nn::Module<float>& module() override { return inner_.module(); }
  Var<float> loss(const data::Batch& b, std::map<std::string, double>& parts) override {
    Var<float> l = inner_.loss(b, parts);
    if (++calls_ != nan_call_) return l;
    return make_op<float>(l.value().clone(), {l}, "nan_gradient", [](Node<float>& out) {
      if (out.needs_grad(0)) out.input_grad(0).data()[0] += std::numeric_limits<float>::quiet_NaN();
    });
  }
  std::map<std::string, std::string> extra_state() const override { return inner_.extra_state(); }
  void load_extra_state(const std::map<std::string, std::string>& s) override { inner_.load_extra_state(s); }

 private:
  dcd::DetectorTask<float>& inner_;
  int64_t nan_call_, calls_ = 0;
};

// A valid training checkpoint of the tiny model (one epoch), written once.
const std::string& tiny_checkpoint() {
  static const std::string path = [] {
    ThreadsGuard tg;
    set_num_threads(1);
    data::Dataset ds = tiny_train_set();
    const DetectorConfig c = tiny_config(ds);
    models::Detector<float> det(c, 3);
    dcd::DetectorTask<float> task(det);
    const std::string p = rb_tmp() + "/epoch1.ckpt";
    train::Trainer<float> tr(task, ds, tiny_trainer_options(c, p));
    tr.run({}, 1);
    return p;
  }();
  return path;
}

// Loads `path` into a fresh tiny trainer.
void load_into_fresh_trainer(const std::string& path) {
  data::Dataset ds = tiny_train_set();
  const DetectorConfig c = tiny_config(ds);
  models::Detector<float> det(c, 3);
  dcd::DetectorTask<float> task(det);
  train::Trainer<float> tr(task, ds, tiny_trainer_options(c, ""));
  tr.load_checkpoint(path);
}

// A copy of the tiny checkpoint (or model file) with `edit` applied.
std::string edited_safetensors(const std::string& src, const std::string& name,
                               const std::function<void(io::SafeTensors&)>& edit) {
  io::SafeTensors st = io::load_safetensors(src);
  edit(st);
  const std::string p = rb_tmp() + "/" + name;
  io::save_safetensors(p, st);
  return p;
}

std::string write_bytes(const std::string& name, const std::string& bytes) {
  const std::string p = rb_tmp() + "/" + name;
  io::write_file_atomic(p, bytes);
  return p;
}

// A small tiny-config detector saved as a model file, written once.
const std::string& tiny_model_file() {
  static const std::string path = [] {
    data::Dataset ds = tiny_train_set();
    models::Detector<float> det(tiny_config(ds), 9);
    const std::string p = rb_tmp() + "/tiny_model.safetensors";
    models::save_detector(p, det);
    return p;
  }();
  return path;
}

}  // namespace

// ------------------------------------------------------------ bad input ----

TEST_CASE("robustness: bad input is an Error naming the file and the problem (table)") {
  const std::string dir = rb_tmp() + "/bad";
  io::make_dirs(dir);
  const std::string linear = io::read_file(rb_data("io/linear.pth"));

  // A dataset whose feature files we replace one by one.
  const std::string ds_dir = rb_tmp() + "/bad_features";
  data::write_synthetic_dataset(ds_dir, data::synth_preset("tiny"), 3);
  auto feature_error = [ds_dir](const std::string& fixture) {
    return [ds_dir, fixture] {
      data::DatasetOptions o;
      o.modality = "all";
      o.warn = [](const std::string&) {};
      data::Dataset ds(ds_dir, o);
      io::write_file_atomic(ds.feature_file(0), io::read_file(rb_data("io/" + fixture)));
      ds.features(0);
    };
  };
  data::Dataset probe(ds_dir, std::vector<std::string>{}, "all");
  const std::string feat0 = probe.feature_file(0);

  const std::string model = tiny_model_file();
  auto model_with_config = [&](const std::string& name, const std::string& key, int value) {
    return edited_safetensors(model, name, [&](io::SafeTensors& st) {
      json::Value cfg = json::parse(st.metadata.at("config"));
      cfg["model"][key] = json::Value(value);
      st.metadata["config"] = json::dump(cfg);
    });
  };
  const std::string model_bytes = io::read_file(model);
  const std::string ckpt = tiny_checkpoint();
  const std::string ckpt_bytes = io::read_file(ckpt);
  auto ckpt_meta = [&](const std::string& name, const std::string& key, const char* value) {
    return edited_safetensors(ckpt, name, [&](io::SafeTensors& st) {
      if (value) st.metadata[key] = value;
      else st.metadata.erase(key);
    });
  };

  std::unique_ptr<models::AnyModel<float>> any = models::load_any_model<float>(model);
  const DetectorConfig& mc = any->config();
  std::vector<float> feats(size_t(40 * mc.input_dim), 0.25f);
  auto with_value = [&](int64_t at, float v) {
    std::vector<float> f = feats;
    f[size_t(at)] = v;
    return f;
  };
  const std::vector<float> nan_feats = with_value(7 * mc.input_dim + 3, std::numeric_limits<float>::quiet_NaN());
  const std::vector<float> inf_feats = with_value(12 * mc.input_dim, -std::numeric_limits<float>::infinity());
  auto detect = [&](const std::vector<float>& f, int64_t T, int64_t C) {
    return [&any, &f, T, C] { any->detect(f.data(), T, C, VideoMeta{"video_x", 30, 10, 4, 16}); };
  };
  // A DCD student called directly (not through AnyModel) checks its input the same way.
  dcd::DcdStudentConfig scfg;
  scfg.detector = mc;
  scfg.validate("robustness student");
  dcd::DcdStudent<float> student(scfg, 1);
  auto student_detect = [&](const std::vector<float>& f, int64_t T) {
    return [&student, &f, T, &mc] { student.detect(f.data(), T, mc.input_dim, VideoMeta{"video_x", 30, 10, 4, 16}); };
  };
  data::Annotations ann =
      data::parse_annotations(json::parse(R"({"database": {"a": {"subset": "test", "duration": 10,
      "annotations": [{"label": "Jump", "segment": [1, 2]}]}}})"),
                              "ann.json");

  struct Case {
    const char* what;
    std::function<void()> run;
    std::vector<std::string> expect;  // substrings of the message: the file (or video) and the problem
  };
  const std::vector<Case> cases = {
      // files that are not files
      {"a directory given as an .npy file", [&] { io::load_npy(dir); }, {dir, "is a directory"}},
      {"a directory given as a JSON file", [&] { json::parse_file(dir); }, {dir, "is a directory"}},
      {"a directory given as an .npz archive", [&] { io::load_npz(dir); }, {dir, "is a directory"}},
      // PyTorch checkpoints held in memory
      {"truncated .pth bytes", [&] { io::parse_pth_state_dict(linear.substr(0, linear.size() / 2), "mem.pth"); },
       {"mem.pth", "end-of-central-directory"}},
      {"bytes that are not a zip checkpoint", [&] { io::parse_pth_state_dict("\x80\x02}q\x00.", "mem.pth"); },
       {"mem.pth", "not a PyTorch zip checkpoint"}},
      {"a damaged pickle inside a valid archive",
       [&] {
         std::string b = linear;
         const size_t pkl = b.find(std::string("\x80\x02", 2), b.find("linear/data.pkl"));  // PROTO 2
         REQUIRE(pkl != std::string::npos);
         b[pkl + 3] ^= 0x55;  // a byte of the pickle: CRC mismatch
         io::parse_pth_state_dict(b, "mem.pth", "state_dict");
       },
       {"mem.pth", "linear/data.pkl", "CRC-32"}},
      // feature files of unsupported dtypes (float16/float64 are converted: tests/test_data.cpp)
      {"features holding strings", feature_error("unicode.npy"), {feat0, "strings"}},
      {"features holding complex numbers", feature_error("complex.npy"), {feat0, "complex"}},
      {"features holding Python objects", feature_error("object.npy"), {feat0, "Python objects"}},
      {"features with a structured dtype", feature_error("structured.npy"), {feat0, "structured"}},
      // model files
      {"a truncated model file", [&] { models::load_detector<float>(write_bytes("cut.safetensors", model_bytes.substr(0, 3000))); },
       {"cut.safetensors", "exceeds file size"}},
      {"a model file whose config has n_head 0 (would divide by zero)",
       [&] { models::load_detector<float>(model_with_config("nhead0.safetensors", "n_head", 0)); },
       {"nhead0.safetensors", "n_head 0"}},
      {"a model file whose config asks for embd_dim 1e9 (would allocate without bound)",
       [&] { models::load_detector<float>(model_with_config("huge.safetensors", "embd_dim", 1000000000)); },
       {"huge.safetensors", "embd_dim 1000000000"}},
      {"a model file whose config has scale_factor 0",
       [&] { models::load_detector<float>(model_with_config("scale0.safetensors", "scale_factor", 0)); },
       {"scale0.safetensors", "scale_factor 0"}},
      {"a model file whose config has an even kernel",
       [&] { models::load_detector<float>(model_with_config("k4.safetensors", "embd_kernel_size", 4)); },
       {"k4.safetensors", "embd_kernel_size 4"}},
      {"a model file whose config names an unknown NMS method",
       [&] {
         models::load_detector<float>(edited_safetensors(model, "nms.safetensors", [](io::SafeTensors& st) {
           json::Value cfg = json::parse(st.metadata.at("config"));
           cfg["test_cfg"]["nms_method"] = json::Value("hara");
           st.metadata["config"] = json::dump(cfg);
         }));
       },
       {"nms.safetensors", "unknown test_cfg.nms_method 'hara'"}},
      // training checkpoints
      {"a truncated training checkpoint",
       [&] { load_into_fresh_trainer(write_bytes("cut.ckpt", ckpt_bytes.substr(0, ckpt_bytes.size() - 100))); },
       {"cut.ckpt", "exceed the data buffer"}},
      {"a model file given as a training checkpoint", [&] { load_into_fresh_trainer(model); },
       {model, "not a flowless training checkpoint"}},
      {"a checkpoint without its epoch", [&] { load_into_fresh_trainer(ckpt_meta("noepoch.ckpt", "epoch", nullptr)); },
       {"noepoch.ckpt", "lacks 'epoch'"}},
      {"a checkpoint with a malformed iteration count",
       [&] { load_into_fresh_trainer(ckpt_meta("iter.ckpt", "iteration", "12abc")); },
       {"iter.ckpt", "'iteration' = '12abc' is not a non-negative integer"}},
      {"a checkpoint with a malformed data generator state",
       [&] { load_into_fresh_trainer(ckpt_meta("rng.ckpt", "data_rng", "1 2 x")); }, {"rng.ckpt", "'data_rng'"}},
      {"a checkpoint with a malformed loss normaliser",
       [&] { load_into_fresh_trainer(ckpt_meta("norm.ckpt", "task.loss_norm", "lots")); },
       {"norm.ckpt", "task state"}},
      {"a checkpoint with a 5-D tensor",
       [&] {
         load_into_fresh_trainer(edited_safetensors(ckpt, "5d.ckpt", [](io::SafeTensors& st) {
           float v = 1;
           st.tensors["model.neck.weird"] = io::Array::from_float32(&v, {1, 1, 1, 1, 1});
         }));
       },
       {"5d.ckpt", "5 dimensions"}},
      {"a checkpoint of another architecture",
       [&] {
         load_into_fresh_trainer(edited_safetensors(ckpt, "arch.ckpt", [](io::SafeTensors& st) {
           st.tensors.erase(st.tensors.begin()->first);
         }));
       },
       {"arch.ckpt"}},
      // detection inputs
      {"NaN in the features given to detect", detect(nan_feats, 40, mc.input_dim),
       {"video_x", "non-finite feature value", "step 7, channel 3"}},
      {"Inf in the features given to detect", detect(inf_feats, 40, mc.input_dim),
       {"video_x", "non-finite feature value (-inf) at step 12, channel 0"}},
      {"NaN in the features given to a DCD student's detect", student_detect(nan_feats, 40),
       {"video_x", "non-finite feature value", "step 7, channel 3"}},
      {"an empty video given to a DCD student", student_detect(feats, 0), {"video_x", "empty video"}},
      {"features narrower than the model reads", detect(feats, 40 * mc.input_dim / 8, 8),
       {"video_x", "features have 8 channels"}},
      {"an empty video (T = 0)", detect(feats, 0, mc.input_dim), {"video_x", "empty video"}},
      // predictions
      {"predictions that are not an object", [&] { eval::parse_predictions(json::parse("[1, 2]"), "preds.json", ann); },
       {"preds.json", "expected a JSON object"}},
      {"predictions with a segment of strings",
       [&] {
         eval::parse_predictions(
             json::parse(R"({"results": {"a": [{"segment": ["1", "2"], "label": "Jump", "score": 1}]}})"),
             "preds.json", ann);
       },
       {"preds.json", "video 'a'", "prediction 0", "'segment' must be an array [start, end] of two numbers"}},
  };
  for (const Case& c : cases) {
    const std::string what = c.what;
    CAPTURE(what);
    const std::string e = rb_error(c.run);
    CAPTURE(e);
    CHECK(e.rfind("<", 0) != 0);  // a flowless::Error, not another exception or none
    for (const std::string& needle : c.expect) CHECK(e.find(needle) != std::string::npos);
  }
}

TEST_CASE("robustness: parse_pth_state_dict reads checkpoints held in memory like load_pth_state_dict") {
  const std::string path = rb_data("io/views.pth");
  const auto from_file = io::load_pth_state_dict(path, "");
  const auto from_bytes = io::parse_pth_state_dict(io::read_file(path), "mem", "");
  REQUIRE(from_file.size() == from_bytes.size());
  for (const auto& [k, a] : from_file) {
    CAPTURE(k);
    REQUIRE(from_bytes.count(k) == 1);
    CHECK(from_bytes.at(k).shape == a.shape);
    CHECK(from_bytes.at(k).data == a.data);
  }
}

TEST_CASE("robustness: evaluation keeps ground truth beyond the video end, < 1 ms segments are dropped") {
  // GT [8, 12] s in a 10 s video stays as it is (the reference evaluator does
  // not clip), so a prediction of exactly [8, 12] is a perfect match, and one
  // clipped to the video end ([8, 10], tIoU 0.5) is not at tIoU 0.7.
  data::Annotations ann = data::parse_annotations(json::parse(R"({"database": {
      "v": {"subset": "test", "duration": 10, "annotations": [
        {"label": "Jump", "segment": [8, 12]}, {"label": "Jump", "segment": [3, 3.0005]}]}}})"),
                                                  "ann.json");
  REQUIRE(ann.videos[0].segments.size() == 2);  // loading keeps both
  auto map_of = [&](double s, double e) {
    std::vector<eval::Prediction> p{{"v", s, e, 0, 0.9}};
    return eval::evaluate_detection(ann, "test", p, {0.5, 0.7}).map;
  };
  CHECK(map_of(8, 12) == std::vector<double>{1.0, 1.0});  // the 0.5 ms segment is not a GT to miss
  CHECK(map_of(8, 10) == std::vector<double>{1.0, 0.0});
}

// ------------------------------------------------- resume, determinism ----

TEST_CASE("robustness: training interrupted after epoch 1 and resumed ends with identical weights") {
  ThreadsGuard tg;
  set_num_threads(1);
  data::Dataset ds = tiny_train_set();
  const DetectorConfig c = tiny_config(ds);

  // Uninterrupted: 2 epochs (1 warmup + 1 cosine).
  const std::string ck_a = rb_tmp() + "/resume_a.ckpt";
  models::Detector<float> det_a(c, 3);
  dcd::DetectorTask<float> task_a(det_a);
  train::Trainer<float> tr_a(task_a, ds, tiny_trainer_options(c, ck_a));
  tr_a.run();
  REQUIRE(tr_a.epoch() == 2);

  // Interrupted after epoch 1 ...
  const std::string ck = rb_tmp() + "/resume.ckpt";
  {
    models::Detector<float> det(c, 3);
    dcd::DetectorTask<float> task(det);
    train::Trainer<float> tr(task, ds, tiny_trainer_options(c, ck));
    int epochs_seen = 0;
    tr.run([&](const train::EpochSummary&) { ++epochs_seen; }, 1);
    CHECK(epochs_seen == 1);
    CHECK(tr.epoch() == 1);
  }
  // ... and resumed by a fresh process-like setup: other initial weights, fresh task and trainer.
  models::Detector<float> det_b(c, 12345);
  dcd::DetectorTask<float> task_b(det_b);
  train::Trainer<float> tr_b(task_b, ds, tiny_trainer_options(c, ck));
  tr_b.load_checkpoint(ck);
  CHECK(tr_b.epoch() == 1);
  tr_b.run();
  CHECK(tr_b.epoch() == 2);

  CHECK(same_bits(det_a.state_dict(), det_b.state_dict()));
  CHECK(same_bits(tr_a.ema().state_dict(), tr_b.ema().state_dict()));
  CHECK(task_a.criterion().loss_norm() == task_b.criterion().loss_norm());
  CHECK(det_a.rng().state() == det_b.rng().state());
  // The final checkpoint (weights, EMA, optimizer moments and step counts,
  // generators, loss normaliser) equals the one the uninterrupted run wrote.
  CHECK(io::read_file(ck_a) == io::read_file(ck));
}

TEST_CASE("robustness: train_model resumes a run that failed after epoch 1 to the same model file, bit for bit") {
  ThreadsGuard tg;
  workflow::TrainRequest r = tiny_rgb_request(21);

  // Uninterrupted, twice: same seed and threads -> identical model files.
  r.out = rb_tmp() + "/wf_a.safetensors";
  r.checkpoint = rb_tmp() + "/wf_a.ckpt";
  workflow::train_model(r);
  workflow::TrainRequest r2 = r;
  r2.out = rb_tmp() + "/wf_a2.safetensors";
  r2.checkpoint = "";
  workflow::train_model(r2);
  const std::string bytes_a = io::read_file(r.out);
  CHECK(io::read_file(r2.out) == bytes_a);
  // Every parallel loop splits work independently of the thread count, so 2 threads give the same file.
  workflow::TrainRequest r3 = r2;
  r3.out = rb_tmp() + "/wf_a3.safetensors";
  r3.threads = 2;
  workflow::train_model(r3);
  CHECK(io::read_file(r3.out) == bytes_a);

  // A run that fails after epoch 1 (here: validation on a split without
  // ground truth at the last epoch, before that epoch's checkpoint), ...
  workflow::TrainRequest rf = r;
  rf.out = rb_tmp() + "/wf_b.safetensors";
  rf.checkpoint = rb_tmp() + "/wf_b.ckpt";
  rf.val_split = "no-such-split";
  rf.val_every = 100;
  const std::string e = rb_error([&] { workflow::train_model(rf); });
  CHECK(e.find("no ground-truth segment") != std::string::npos);
  CHECK(io::load_safetensors(rf.checkpoint).metadata.at("epoch") == "1");
  // ... resumed from its checkpoint.
  workflow::TrainRequest rr = rf;
  rr.val_split = "";
  rr.resume = true;
  workflow::train_model(rr);
  CHECK(io::read_file(rr.out) == bytes_a);
  CHECK(io::read_file(rr.checkpoint) == io::read_file(r.checkpoint));
}

TEST_CASE("robustness: detections do not depend on the thread count") {
  ThreadsGuard tg;
  auto model = models::load_any_model<float>(tiny_model_file());
  data::Dataset test(tiny_data(), std::vector<std::string>{"test"}, "all");
  REQUIRE(test.size() > 0);
  for (size_t i = 0; i < 3 && i < test.size(); ++i) {
    int T = 0;
    std::vector<float> x = test.features(i, &T);
    VideoMeta meta{test.id(i), test.fps(i), test.duration(i), test.stride(), test.num_frames()};
    set_num_threads(1);
    auto d1 = model->detect(x.data(), T, test.channels(), meta);
    set_num_threads(2);
    auto d2 = model->detect(x.data(), T, test.channels(), meta);
    CAPTURE(test.id(i));
    CHECK(!d1.empty());
    CHECK(same_detections(d1, d2));
  }
}

// --------------------------------------------------------- divergence ----

TEST_CASE("robustness: a NaN loss stops training with a clear message and keeps the last good checkpoint") {
  ThreadsGuard tg;
  set_num_threads(1);
  data::Dataset ds = tiny_train_set();
  const DetectorConfig c = tiny_config(ds);
  const std::string ck = rb_tmp() + "/diverge.ckpt";
  models::Detector<float> det(c, 3);
  dcd::DetectorTask<float> inner(det);
  train::Trainer<float> probe(inner, ds, tiny_trainer_options(c, ""));
  const int64_t ipe = probe.iterations_per_epoch();
  REQUIRE(ipe >= 2);
  NanBatchTask task(inner, ipe + 2);  // the second batch of epoch 2
  train::Trainer<float> tr(task, ds, tiny_trainer_options(c, ck));
  const std::string e = rb_error([&] { tr.run(); });
  CAPTURE(e);
  CHECK(e.find("training diverged: loss is ") != std::string::npos);  // "nan" or "-nan"
  CHECK(e.find("nan at epoch 2, iteration " + std::to_string(ipe + 1)) != std::string::npos);
  CHECK(e.find("the last good checkpoint is kept at " + ck) != std::string::npos);
  // The checkpoint is the one written after epoch 1, byte for byte, and loads.
  CHECK(io::read_file(ck) == io::read_file(tiny_checkpoint()));
  load_into_fresh_trainer(ck);
  // No temporary file is left next to it.
  for (const auto& f : std::filesystem::directory_iterator(rb_tmp()))
    CHECK(f.path().filename().string().find(".tmp.") == std::string::npos);
}

TEST_CASE("robustness: a NaN gradient with a finite loss stops training before it reaches the weights") {
  // The last iteration of the last epoch: without the gradient check the run
  // would finish "successfully" with NaN weights and write them to the checkpoint.
  ThreadsGuard tg;
  set_num_threads(1);
  data::Dataset ds = tiny_train_set();
  const DetectorConfig c = tiny_config(ds);
  const std::string ck = rb_tmp() + "/nan_grad.ckpt";
  models::Detector<float> det(c, 3);
  dcd::DetectorTask<float> inner(det);
  const int64_t ipe = train::Trainer<float>(inner, ds, tiny_trainer_options(c, "")).iterations_per_epoch();
  NanGradientTask task(inner, 2 * ipe);
  train::Trainer<float> tr(task, ds, tiny_trainer_options(c, ck));
  const std::string e = rb_error([&] { tr.run(); });
  CAPTURE(e);
  CHECK(e.find("training diverged: gradient norm is ") != std::string::npos);
  CHECK(e.find("at epoch 2, iteration " + std::to_string(2 * ipe - 1)) != std::string::npos);
  CHECK(e.find("the last good checkpoint is kept at " + ck) != std::string::npos);
  CHECK(io::read_file(ck) == io::read_file(tiny_checkpoint()));
  bool finite = true;
  for (const auto& [name, t] : det.state_dict())
    for (int64_t i = 0; i < t.numel(); ++i) finite = finite && std::isfinite(t[i]);
  CHECK(finite);
}

// -------------------------------------------------------- long inputs ----

TEST_CASE("robustness: detection on a 50,000-snippet video with a small model completes") {
  // Peak memory is linear in T: dev/long_input_rss.sh measures it at
  // T = 12,500 / 25,000 / 50,000 (docs/robustness.md).
  DetectorConfig c = workflow::preset_config("tiny", "actionformer");
  c.input_dim = 8;
  c.num_classes = 3;
  c.max_seq_len = 256;
  models::Detector<float> det(c, 4);
  const int64_t T = 50000;
  std::vector<float> x(size_t(T * c.input_dim));
  Rng rng(8);
  for (auto& v : x) v = float(rng.normal());
  VideoMeta meta{"long", 30, double(T) * 4 / 30, 4, 16};
  auto dets = det.detect(x.data(), T, c.input_dim, meta);
  CHECK(!dets.empty());
  CHECK(dets.size() <= size_t(c.test.nms.max_seg_num));
  for (const Detection& d : dets) {
    CHECK(d.start >= 0);
    CHECK(d.end <= meta.duration);
    CHECK(d.start <= d.end);
    CHECK(std::isfinite(d.score));
  }
}

TEST_CASE("robustness: bf16 mixed-precision training is deterministic across thread counts and records its precision") {
  ThreadsGuard tg;
  workflow::TrainRequest r = tiny_rgb_request(23);
  r.out = rb_tmp() + "/bf16_fp32.safetensors";
  workflow::train_model(r);
  workflow::TrainRequest b = r;
  b.precision = "bf16";
  b.out = rb_tmp() + "/bf16_t1.safetensors";
  auto res = workflow::train_model(b);
  CHECK(std::isfinite(res.epochs.back().summary.mean_loss));
  workflow::TrainRequest b2 = b;
  b2.threads = 2;
  b2.out = rb_tmp() + "/bf16_t2.safetensors";
  workflow::train_model(b2);
  CHECK(io::read_file(b2.out) == io::read_file(b.out));
  CHECK(io::load_safetensors(b.out).metadata.at("train_precision") == "bf16");
  CHECK(io::load_safetensors(r.out).metadata.at("train_precision") == "fp32");
  // bf16 products change the weights (where the build has AVX-512 BF16).
  if (cpu::matmul_bf16_available()) CHECK(io::read_file(b.out) != io::read_file(r.out));
  workflow::TrainRequest bad = r;
  bad.precision = "fp16";
  CHECK(rb_error([&] { workflow::train_model(bad); }).find("unknown precision 'fp16'") != std::string::npos);
}

TEST_CASE("train recipe: a config's optimisation settings, the originals' defaults, and refusals") {
  using workflow::config_recipe;
  // A model-only config names no recipe: the preset's applies.
  json::Value model_only = json::parse(R"({"model": {"backbone_type": "convTransformer"}})", "m");
  CHECK_FALSE(config_recipe(model_only, false, "m.json").present);
  // ActionFormer's thumos_i3d.yaml: opt, loader and train_cfg; the rest from its DEFAULTS.
  json::Value af = json::parse(R"({"opt": {"learning_rate": 0.0001, "epochs": 30, "weight_decay": 0.05},
                                   "loader": {"batch_size": 2}, "train_cfg": {"clip_grad_l2norm": 1.0}})", "af");
  auto r = config_recipe(af, false, "af.json");
  CHECK(r.present);
  CHECK(r.lr == 1e-4);
  CHECK(r.epochs == 30);
  CHECK(r.warmup_epochs == 5);
  CHECK(r.weight_decay == 0.05);
  CHECK(r.batch_size == 2);
  CHECK(r.clip_grad_l2norm == 1.0);
  CHECK(r.eta_min == 1e-8);
  CHECK(r.end_epoch == 0);
  CHECK(r.use_ema);
  CHECK(r.ema_decay == 0.999);
  // An empty opt section: every value is the DEFAULTS' (lr 1e-3, batch 8, no clipping, no decay).
  auto d = config_recipe(json::parse(R"({"opt": {}})", "d"), false, "d.json");
  CHECK(d.lr == 1e-3);
  CHECK(d.batch_size == 8);
  CHECK(d.clip_grad_l2norm == -1);
  CHECK(d.weight_decay == 0.0);
  // TriDet's eta_min and ActionFormer's early_stop_epochs.
  auto t = config_recipe(json::parse(R"({"opt": {"eta_min": 0.0005, "early_stop_epochs": 12}})", "t"), false, "t.json");
  CHECK(t.eta_min == 0.0005);
  CHECK(t.end_epoch == 12);
  // OpenTAD: optimizer / scheduler / solver / workflow.
  json::Value ot = json::parse(R"({"optimizer": {"type": "AdamW", "lr": 0.0001, "weight_decay": 0.05, "paramwise": true},
      "scheduler": {"type": "LinearWarmupCosineAnnealingLR", "warmup_epoch": 5, "max_epoch": 35},
      "solver": {"train": {"batch_size": 2}, "clip_grad_norm": 1, "ema": true}, "workflow": {"end_epoch": 30}})", "ot");
  auto o = config_recipe(ot, true, "ot.py");
  CHECK(o.present);
  CHECK(o.source == "OpenTAD");
  CHECK(o.warmup_epochs == 5);
  CHECK(o.epochs == 30);
  CHECK(o.end_epoch == 30);
  CHECK(o.batch_size == 2);
  CHECK(o.lr == 1e-4);
  CHECK(o.clip_grad_l2norm == 1.0);
  CHECK(o.use_ema);
  ot["solver"]["ema"] = json::Value(false);
  CHECK_FALSE(config_recipe(ot, true, "ot.py").use_ema);
  // What flowless cannot train as the config says is refused, naming the file and the key.
  auto refuses = [](const char* text, bool opentad, const char* what) {
    CAPTURE(text);
    CHECK_THROWS_WITH(config_recipe(json::parse(text, "x"), opentad, "cfg.json"), doctest::Contains(what));
  };
  refuses(R"({"opt": {"type": "SGD"}})", false, "cfg.json: opt.type 'SGD' is not supported (AdamW)");
  refuses(R"({"opt": {"warmup": false}})", false, "opt.warmup false");
  refuses(R"({"opt": {"schedule_type": "multistep"}})", false, "opt.schedule_type 'multistep' is not supported");
  refuses(R"({"opt": {"learning_rate": -1}})", false, "opt.learning_rate must be > 0, got -1");
  refuses(R"({"opt": {"epochs": 0, "warmup_epochs": 0}})", false, "must be >= 1");
  refuses(R"({"opt": {}, "loader": {"batch_size": 0}})", false, "loader.batch_size must be an integer >= 1, got 0");
  refuses(R"({"opt": 3})", false, "'opt' must be a dict");
  refuses(R"({"opt": {"epochs": "thirty"}})", false, "cfg.json: ");  // a wrong type names the file too
  refuses(R"({"optimizer": {"type": "SGD", "lr": 0.1}})", true, "optimizer.type 'SGD' is not supported");
  refuses(R"({"optimizer": {"type": "AdamW", "lr": 0.1}})", true, "optimizer.paramwise False");
  refuses(R"({"optimizer": {"type": "AdamW", "lr": 0.1, "paramwise": true},
              "scheduler": {"type": "MultiStepLR", "milestones": [5]}})", true, "scheduler.type 'MultiStepLR'");
  refuses(R"({"optimizer": {"type": "AdamW", "lr": 0.1, "paramwise": true},
              "scheduler": {"type": "LinearWarmupCosineAnnealingLR", "warmup_epoch": 5, "max_epoch": 5},
              "solver": {"train": {"batch_size": 2}}})", true, "max_epoch (5) must exceed warmup_epoch (5)");
}

TEST_CASE("train recipe: train_model takes the config's schedule, stops at early_stop_epochs, and records it") {
  test::ScratchDir dir("recipe");
  data::write_synthetic_dataset(dir.path + "/data", data::synth_preset("tiny"), 3);
  // A model-only ActionFormer config at a tiny width, with a recipe: 2 warmup
  // + 6 cosine epochs of which training runs 3 (early_stop_epochs), batch 4.
  const std::string cfg_path = dir.path + "/cfg.json";
  io::write_file_atomic(cfg_path, std::string(R"({"model": {"embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
      "backbone_arch": [2, 1, 3], "n_mha_win_size": 5},
      "opt": {"learning_rate": 0.002, "epochs": 6, "warmup_epochs": 2, "early_stop_epochs": 3, "eta_min": 0.0001},
      "loader": {"batch_size": 4}, "train_cfg": {"clip_grad_l2norm": 0.5}})"));
  workflow::TrainRequest req;
  req.data = dir.path + "/data";
  req.config_path = cfg_path;
  req.out = dir.path + "/m.safetensors";
  req.progress = false;
  const auto res = workflow::train_model(req);
  REQUIRE(res.epochs.size() == 3);
  CHECK(res.epochs.back().summary.total_epochs == 3);
  CHECK(res.epochs[0].summary.lr < 0.002);   // warming up
  CHECK(res.epochs[2].summary.lr < 0.002);   // cosine, far from its end
  CHECK(res.epochs[2].summary.lr > 0.0001);
  io::SafeTensors st = io::load_safetensors(req.out);
  const json::Value rec = json::parse(st.metadata.at("train_recipe"), "train_recipe");
  CHECK(rec.at("source").as_string() == cfg_path + " (opt)");
  CHECK(rec.at("batch_size").as_int() == 4);
  CHECK(rec.at("end_epoch").as_int() == 3);
  CHECK(rec.at("clip_grad_l2norm").as_number() == 0.5);
  CHECK(rec.at("eta_min").as_number() == 0.0001);
  CHECK(rec.at("ema_decay").as_number() == 0.999);
  // Command-line values still win over the config's.
  req.epochs = 1;
  req.warmup_epochs = 0;
  req.out = dir.path + "/m2.safetensors";
  CHECK(workflow::train_model(req).epochs.size() == 1);
}
