// flowless/train/trainer.hpp - the training loop of the reference
// (libs/utils/train_utils.py train_one_epoch), reusable for any model.
//
// A TrainTask says what to train (a module) and how to compute its loss on a
// padded batch; the Trainer owns everything else: AdamW with the reference's
// decay groups, linear warmup + cosine schedule stepped per iteration,
// global-norm gradient clipping, model EMA, the data order, progress output,
// crash-safe checkpoints (temporary file + rename) and resuming. After
// run() the EMA weights are copied into the module when use_ema is on (the
// reference evaluates the EMA copy).
//
// Divergence: a non-finite loss or gradient norm stops training with an Error
// before the optimizer step, so the weights, the EMA and every checkpoint
// written so far stay finite (the last good checkpoint is kept).
//
// Determinism: the data order, the truncation crops and stochastic depth are
// drawn from seeded generators whose state is checkpointed at epoch ends, so
// an interrupted run resumed from its last checkpoint ends with the same
// weights as an uninterrupted run with the same thread count.
#pragma once

#include <charconv>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <unistd.h>

#include "flowless/backend/cpu_gemm.hpp"

#include "flowless/data/dataset.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/nn/module.hpp"
#include "flowless/train/ema.hpp"
#include "flowless/train/lr_schedule.hpp"
#include "flowless/train/optimizer.hpp"

namespace flowless::train {

template <class T>
class TrainTask {
 public:
  virtual ~TrainTask() = default;
  virtual nn::Module<T>& module() = 0;
  /// Loss to minimise on a batch; fill `parts` with named values to log.
  virtual Var<T> loss(const data::Batch& batch, std::map<std::string, double>& parts) = 0;
  /// Extra state to checkpoint (e.g. a loss normaliser, a generator state).
  virtual std::map<std::string, std::string> extra_state() const { return {}; }
  virtual void load_extra_state(const std::map<std::string, std::string>&) {}
};

struct TrainerOptions {
  int epochs = 30;              // cosine epochs (after warmup)
  int warmup_epochs = 5;
  // Training stops after this many epochs although the schedule spans
  // warmup_epochs + epochs (ActionFormer's opt.early_stop_epochs, OpenTAD's
  // workflow.end_epoch); <= 0: after warmup_epochs + epochs.
  int end_epoch = 0;
  double eta_min = 1e-8;        // the cosine's final learning rate
  int batch_size = 2;
  double lr = 1e-4;
  double weight_decay = 0.05;
  double clip_grad_l2norm = 1.0;  // <= 0: no clipping
  bool use_ema = true;
  double ema_decay = 0.999;
  uint64_t seed = 1234567891ULL;
  int padded_T = -1;            // see data::EpochOptions
  bool truncate = true;
  std::string checkpoint;       // path; empty = no checkpoints
  int checkpoint_every = 5;     // epochs
  bool progress = true;         // progress bar on stderr
  std::string label = "train";  // shown in the progress bar
  // Matrix products of the forward and backward passes: "fp32", or "bf16"
  // (mixed precision: cpu::MatmulPrecision::bf16 operands with fp32
  // accumulation; weights, gradients, optimizer state and EMA stay fp32).
  std::string precision = "fp32";
};

struct EpochSummary {
  int epoch = 0, total_epochs = 0;
  int64_t iterations = 0;
  double mean_loss = 0, lr = 0, seconds = 0;
  std::map<std::string, double> mean_parts;
};

template <class T>
class Trainer {
 public:
  Trainer(TrainTask<T>& task, const data::Dataset& ds, TrainerOptions opt)
      : task_(task), ds_(ds), opt_(std::move(opt)), data_rng_(opt_.seed),
        optim_(task.module(), opt_.lr, opt_.weight_decay), ema_(task.module(), opt_.ema_decay) {
    FLOWLESS_CHECK(ds.size() >= size_t(opt_.batch_size), "training set has ", ds.size(), " videos, fewer than the batch size ",
                   opt_.batch_size);
    iters_per_epoch_ = int64_t(ds.size() / size_t(opt_.batch_size));
    const int64_t total = iters_per_epoch_ * (opt_.epochs + opt_.warmup_epochs);
    schedule_ = std::make_unique<LinearWarmupCosine>(opt_.lr, iters_per_epoch_ * opt_.warmup_epochs,
                                                     std::max<int64_t>(total, 1 + iters_per_epoch_ * opt_.warmup_epochs),
                                                     0.0, opt_.eta_min);
  }

  int64_t iterations_per_epoch() const { return iters_per_epoch_; }
  /// The epochs run() trains: warmup + cosine, or end_epoch when it is earlier.
  int total_epochs() const {
    const int all = opt_.epochs + opt_.warmup_epochs;
    return opt_.end_epoch > 0 ? std::min(opt_.end_epoch, all) : all;
  }
  int epoch() const { return epoch_; }
  ModelEma<T>& ema() { return ema_; }

  /// Trains until the last epoch (or until stop_after_epochs more epochs, for tests of resuming).
  void run(const std::function<void(const EpochSummary&)>& on_epoch = {}, int stop_after_epochs = -1) {
    int done_now = 0;
    while (epoch_ < total_epochs()) {
      if (stop_after_epochs >= 0 && done_now >= stop_after_epochs) return;
      EpochSummary s = train_epoch();
      ++done_now;
      if (on_epoch) on_epoch(s);
      if (!opt_.checkpoint.empty() && (epoch_ % std::max(1, opt_.checkpoint_every) == 0 || epoch_ == total_epochs()))
        save_checkpoint(opt_.checkpoint);
    }
    if (opt_.use_ema) ema_.copy_to(task_.module());
  }

  EpochSummary train_epoch() {
    nn::Module<T>& m = task_.module();
    m.train(true);
    data::EpochOptions eo;
    eo.batch_size = opt_.batch_size;
    eo.padded_T = opt_.padded_T;
    eo.truncate = opt_.truncate;
    data::EpochIterator it(ds_, data_rng_, eo);
    data::Batch batch;
    EpochSummary s;
    s.epoch = epoch_ + 1;
    s.total_epochs = total_epochs();
    auto t0 = std::chrono::steady_clock::now();
    int64_t n = 0;
    const auto params = m.parameters();
    const cpu::MatmulPrecision precision = cpu::parse_matmul_precision(opt_.precision);
    while (it.next(batch)) {
      const double lr = schedule_->lr_at(iter_);
      optim_.set_lr(lr);
      std::map<std::string, double> parts;
      double lv = 0;
      {
        cpu::MatmulPrecisionScope prec(precision);
        Var<T> loss = task_.loss(batch, parts);
        lv = double(loss.value()[0]);
        if (!std::isfinite(lv))
          FLOWLESS_FAIL("training diverged: loss is ", lv, " at epoch ", epoch_ + 1, ", iteration ", iter_,
                        (opt_.checkpoint.empty() ? std::string() : "; the last good checkpoint is kept at " + opt_.checkpoint));
        m.zero_grad();
        backward(loss);
      }
      // The global gradient norm (clip_grad_norm with an infinite bound only
      // measures it). A non-finite norm stops training before the step, so
      // NaN never reaches the weights, the EMA or a checkpoint.
      const double gnorm = clip_grad_norm(
          params, opt_.clip_grad_l2norm > 0 ? opt_.clip_grad_l2norm : std::numeric_limits<double>::infinity());
      if (!std::isfinite(gnorm))
        FLOWLESS_FAIL("training diverged: gradient norm is ", gnorm, " (loss ", lv, ") at epoch ", epoch_ + 1,
                      ", iteration ", iter_,
                      (opt_.checkpoint.empty() ? std::string() : "; the last good checkpoint is kept at " + opt_.checkpoint));
      optim_.step();
      if (opt_.use_ema) ema_.update(m);
      ++iter_;
      ++n;
      s.mean_loss += lv;
      for (auto& [k, v] : parts) s.mean_parts[k] += v;
      s.lr = lr;
      if (opt_.progress) progress(n, it.num_batches(), s.mean_loss / n, lr, t0);
    }
    if (n > 0) {
      s.mean_loss /= double(n);
      for (auto& [k, v] : s.mean_parts) v /= double(n);
    }
    s.iterations = n;
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++epoch_;
    if (opt_.progress) {
      std::fprintf(stderr, "\r[%s] epoch %d/%d  loss %.4f  lr %.2e  %.1f it/s%s\n", opt_.label.c_str(), s.epoch,
                   s.total_epochs, s.mean_loss, s.lr, n / std::max(1e-9, s.seconds), "                    ");
      std::fflush(stderr);
    }
    return s;
  }

  /// Writes model, EMA, optimizer and generator state atomically.
  void save_checkpoint(const std::string& path) const {
    io::SafeTensors st;
    auto put = [&](const std::string& prefix, const std::map<std::string, Tensor<T>>& sd) {
      for (auto& [k, t] : sd) {
        std::vector<float> v(size_t(t.numel()));
        for (int64_t i = 0; i < t.numel(); ++i) v[i] = float(t[i]);
        std::vector<int64_t> shape(t.shape().d.begin(), t.shape().d.begin() + t.shape().nd);
        st.tensors[prefix + k] = io::Array::from_float32(v.data(), shape);
      }
    };
    put("model.", task_.module().state_dict());
    put("ema.", ema_.state_dict());
    put("optim.", optim_.state_dict());
    st.metadata["format"] = "flowless-checkpoint";
    st.metadata["epoch"] = std::to_string(epoch_);
    st.metadata["iteration"] = std::to_string(iter_);
    st.metadata["data_rng"] = data_rng_.state();
    for (auto& [k, v] : task_.extra_state()) st.metadata["task." + k] = v;
    io::save_safetensors(path, st);
  }

  /// Restores a save_checkpoint() file. Every problem (truncated or foreign
  /// file, missing or malformed metadata, tensors that do not fit the model)
  /// is a flowless::Error naming the path; the counters and generator are
  /// validated before any weight is touched.
  void load_checkpoint(const std::string& path) {
    io::SafeTensors st = io::load_safetensors(path);
    auto f = st.metadata.find("format");
    FLOWLESS_CHECK(f != st.metadata.end() && f->second == "flowless-checkpoint", path, ": not a flowless training checkpoint");
    auto meta = [&](const char* key) -> const std::string& {
      auto it = st.metadata.find(key);
      FLOWLESS_CHECK(it != st.metadata.end(), path, ": checkpoint metadata lacks '", key, "'");
      return it->second;
    };
    auto count = [&](const char* key) -> int64_t {
      const std::string& v = meta(key);
      int64_t x = -1;
      const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
      FLOWLESS_CHECK(r.ec == std::errc() && r.ptr == v.data() + v.size() && x >= 0, path, ": checkpoint metadata '",
                     key, "' = '", v.substr(0, 40), "' is not a non-negative integer");
      return x;
    };
    const int64_t epoch = count("epoch"), iteration = count("iteration");
    FLOWLESS_CHECK(epoch <= 1000000 && iteration <= (int64_t(1) << 53), path, ": checkpoint epoch ", epoch,
                   " / iteration ", iteration, " out of range");
    Rng data_rng;
    try {
      data_rng.set_state(meta("data_rng"));
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      FLOWLESS_FAIL(path, ": checkpoint metadata 'data_rng' is malformed (", e.what(), ")");
    }
    std::map<std::string, Tensor<T>> model, ema, optim;
    for (auto& [k, a] : st.tensors) {
      Tensor<T> shaped = nn::array_to_tensor<T>(a, path + ": tensor '" + k + "'");
      if (k.rfind("model.", 0) == 0) model[k.substr(6)] = shaped;
      else if (k.rfind("ema.", 0) == 0) ema[k.substr(4)] = shaped;
      else if (k.rfind("optim.", 0) == 0) optim[k.substr(6)] = shaped;
    }
    task_.module().load_state_dict(model, path, true);
    ema_.load_state_dict(ema, path);
    optim_.load_state_dict(optim, path);
    epoch_ = int(epoch);
    iter_ = iteration;
    data_rng_ = data_rng;
    std::map<std::string, std::string> extra;
    for (auto& [k, v] : st.metadata)
      if (k.rfind("task.", 0) == 0) extra[k.substr(5)] = v;
    try {
      task_.load_extra_state(extra);
    } catch (const Error& e) {
      const std::string what = e.what();
      if (what.rfind(path, 0) == 0) throw;
      FLOWLESS_FAIL(path, ": task state: ", what);
    } catch (const std::exception& e) {
      FLOWLESS_FAIL(path, ": malformed task state in the checkpoint metadata (", e.what(), ")");
    }
  }

 private:
  void progress(int64_t n, size_t total, double loss, double lr, std::chrono::steady_clock::time_point t0) const {
    static const bool tty = ::isatty(2);
    if (!tty) return;
    double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double ips = n / std::max(el, 1e-9);
    double eta = (double(total) - double(n)) / std::max(ips, 1e-9);
    int width = 24, fill = int(width * double(n) / double(std::max<size_t>(total, 1)));
    std::fprintf(stderr, "\r[%s] epoch %d/%d [%.*s%*s] %lld/%zu loss %.4f lr %.2e %.1f it/s ETA %.0fs ", opt_.label.c_str(),
                 epoch_ + 1, total_epochs(), fill, "########################", width - fill, "", (long long)n, total, loss,
                 lr, ips, eta);
    std::fflush(stderr);
  }

  TrainTask<T>& task_;
  const data::Dataset& ds_;
  TrainerOptions opt_;
  Rng data_rng_;
  AdamW<T> optim_;
  ModelEma<T> ema_;
  std::unique_ptr<LinearWarmupCosine> schedule_;
  int64_t iters_per_epoch_ = 0, iter_ = 0;
  int epoch_ = 0;
};

}  // namespace flowless::train
