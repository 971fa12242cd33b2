// A custom detector composed from library components and trained without
// writing any backward code:
//   two masked conv embeddings of different temporal reach, fused in both
//   directions by local attentive fusion (LAF), a parameter-free max-pool
//   pyramid, and the library's anchor-free heads shared across levels.
// It trains for a few iterations on the tiny built-in synthetic data.
#include <cstdio>
#include <cstdlib>

#include <flowless/data/synth.hpp>
#include <flowless/dcd/laf.hpp>
#include <flowless/dcd/tasks.hpp>
#include <flowless/train/trainer.hpp>

using namespace flowless;

class MyDetector : public nn::Module<float> {
 public:
  MyDetector(const DetectorConfig& c, Rng& rng)
      : cfg_(c),
        local_(c.input_dim, 32, 3, 1, 1, 1, true, &rng),    // (B, T, Cin) -> (B, T, 32), kernel 3
        wide_(c.input_dim, 32, 7, 1, 3, 1, true, &rng),     // kernel 7
        fuse_local_(32, {}, &rng), fuse_wide_(32, {}, &rng),  // LAF(target <- reference)
        cls_(heads(), c.num_classes, 0.01, {}, rng), reg_(heads(), c.num_levels(), rng) {
    register_module("local", local_);
    register_module("wide", wide_);
    register_module("fuse_local", fuse_local_);
    register_module("fuse_wide", fuse_wide_);
    register_module("cls_head", cls_);
    register_module("reg_head", reg_);
  }

  models::DetectorOutput<float> forward(const Var<float>& x, const std::vector<int>& lengths) {
    Var<float> a = relu(local_.forward(x, lengths)), b = relu(wide_.forward(x, lengths));
    Var<float> h = concat_channels<float>({fuse_local_.forward(a, b, lengths), fuse_wide_.forward(b, a, lengths)});
    models::DetectorOutput<float> out;
    out.feats = {h};  // level 0: (B, T, 64); level l: max-pooled by 2^l
    out.lengths = {lengths};
    for (int l = 1; l < cfg_.num_levels(); ++l) {
      out.lengths.push_back(conv_out_lengths(out.lengths.back(), 2));
      out.feats.push_back(mask_time(max_pool1d(out.feats.back(), 3, 2, 1), out.lengths.back()));
    }
    out.cls_logits = cls_.forward(out.feats, out.lengths);  // the same head on every level
    out.offsets = reg_.forward(out.feats, out.lengths);
    return out;
  }

 private:
  static models::HeadOptions heads() {
    models::HeadOptions o;
    o.input_dim = 64;
    o.feat_dim = 32;
    return o;
  }
  DetectorConfig cfg_;
  nn::MaskedConv1d<float> local_, wide_;
  dcd::LAF<float> fuse_local_, fuse_wide_;
  models::ClsHead<float> cls_;
  models::RegHead<float> reg_;
};

// What the trainer needs: the module and a loss on a padded batch.
class MyTask : public train::TrainTask<float> {
 public:
  MyTask(MyDetector& m, const DetectorConfig& c) : m_(m), cfg_(c), criterion_(c.loss_config()) {}
  nn::Module<float>& module() override { return m_; }
  Var<float> loss(const data::Batch& b, std::map<std::string, double>&) override {
    auto out = m_.forward(Var<float>(dcd::batch_input<float>(b, {0, b.C})), b.lengths);
    PointSet pts = dcd::pyramid_points(cfg_, b.T);  // anchor points of every level
    auto targets = dcd::assign_targets(cfg_, pts, dcd::batch_targets(b));
    return dcd::head_loss(out, pts, targets, criterion_).final_loss;  // focal + DIoU
  }

 private:
  MyDetector& m_;
  DetectorConfig cfg_;
  DetectionLoss<float> criterion_;
};

int main(int argc, char** argv) try {
  const std::string dir = argc > 1 ? argv[1] : "custom_detector_data";
  data::write_synthetic_dataset(dir, data::synth_preset("tiny"), /*seed=*/7, /*overwrite=*/true);
  data::Dataset ds(dir, {"validation"}, "both");

  DetectorConfig cfg;  // describes the pyramid for label assignment, loss and decoding
  cfg.arch = "temporalmaxer";
  cfg.input_dim = ds.channels();
  cfg.num_classes = ds.num_classes();
  cfg.mha_win_size.assign(6, 1);
  cfg.max_seq_len = ds.info().max_seq_len;

  Rng rng(1);
  MyDetector model(cfg, rng);
  MyTask task(model, cfg);
  train::TrainerOptions opt;
  opt.epochs = 2, opt.warmup_epochs = 1, opt.lr = 1e-3, opt.batch_size = 2, opt.progress = false;
  opt.padded_T = cfg.max_seq_len;
  train::Trainer<float> trainer(task, ds, opt);
  int epochs = 0;
  trainer.run([&](const train::EpochSummary& s) {
    std::printf("epoch %d/%d  loss %.4f  (%lld iterations)\n", s.epoch, s.total_epochs, s.mean_loss,
                (long long)s.iterations);
    if (!std::isfinite(s.mean_loss)) std::exit(1);
    ++epochs;
  });
  std::printf("trained a %lld-parameter custom detector for %d epochs\n", (long long)model.num_parameters(), epochs);
  return epochs == trainer.total_epochs() ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
