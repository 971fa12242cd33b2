// flowless/bench/model_bench.hpp - whole-model CPU benchmark (`flowless bench`).
//
//   json::Value run_model_bench(const ModelBenchOptions& opt)
// builds a random-initialised detector of a named preset (weights do not
// change the speed), runs one deterministic random video of opt.T snippets
// (all valid, uniform [0, 1) features) and returns a JSON object:
//   preset, arch, T (the buffer the network runs on), threads, device, repeats
//   params               number of parameters
//   network_flops        analytical FLOPs of one forward on (1, T, input_dim)
//                        (model_forward_flops; 2 per multiply-add)
//   network_seconds      median time of the network forward (no grad, batch 1)
//   network_gflops       network_flops / network_seconds / 1e9
//   network_cpu_seconds  median CPU time (all threads) of that forward: on a
//                        shared machine, CPU time / threads estimates the
//                        uncontended wall time
//   inference_seconds    median time of Detector::detect (forward + decoding + Soft-NMS)
//   postprocess_seconds  inference_seconds - network_seconds
//   network_seconds_frozen, inference_seconds_frozen  the same two medians with
//                        one ConvWeightCacheScope open across the runs, as
//                        `flowless detect` and evaluation hold it over a whole
//                        dataset: every conv weight transformed and packed once
//                        (the two above pay that in every forward, as one
//                        Detector::detect call on its own does)
//   gemm_gflops          cpu::gemm fp32 of the conv-k3 shape M = T, K = 3*embd, N = embd,
//                        measured in the same run with the same threads
//   gemm_shape           [M, K, N]
//   peak_rss_mb          VmHWM of the process (/proc/self/status) at the end
//   peak_rss_mb_inference VmHWM after the inference runs (before the frozen runs and any training)
//   peak_rss_mb_frozen   VmHWM after the frozen runs (their cache holds every packed weight)
//   precision            the inference matmul precision asked for ("fp32" | "bf16"),
//                        bf16_available whether it takes effect in this build; with
//                        bf16: bf16_max_rel_diff, the worst |bf16 - fp32| / max(1, |fp32|)
//                        over the cls logits and offsets of all levels
//   with opt.student: the DCD RGB student (dcd::DcdStudent: same trunk and
//   heads, two branch projections, fusion, joint heads of width 2D) timed
//   in the same run, its detect() alternating with the detector's:
//   student_params, student_inference_seconds, detector_inference_seconds
//   (the alternating runs' median), student_time_ratio, student_params_ratio
//   with opt.scaling: the network forward timed at 1 thread and at opt.threads,
//   alternating run by run in this process (machine drift hits both alike):
//   scaling_t1_seconds, scaling_tn_seconds (medians), thread_scaling (their ratio)
//   with opt.train:
//   train_precision      the training step's matmul precision (opt.train_precision;
//                        "bf16" = mixed precision, as TrainerOptions::precision)
//   train_step_seconds   median of one training iteration on batch 2 at
//                        T = max_seq_len: forward + loss + backward + clip
//                        (L2 1.0) + AdamW step (the model in training mode)
//   train_step_cpu_seconds  its median CPU time (all threads)
//   train_step_sys_seconds  the part of it spent in the kernel (getrusage)
//   train_step_page_faults  median minor page faults per step (fresh pages
//                        the allocator did not have cached)
//   train_step_parts     median seconds of forward, loss, backward, clip, optimizer
//   train_flops          analytical FLOPs of that step (3 x forward, batch 2)
//   with opt.profile (ActionFormer presets, for performance work):
//   profile.forward_ms   the inference forward re-run op by op through the
//                        detector's own modules, milliseconds per op class
//                        (profile.replica_exact says the replica reproduced the
//                        detector's outputs bit for bit)
//   profile.backward_ms  (with train) backward milliseconds per autograd op name
// All times are wall-clock medians over opt.repeats runs after opt.warmup runs
// (training: opt.warmup + 1 warmup steps when opt.warmup > 0, see run_model_bench).
// Errors: unknown preset, device other than "cpu", T < 1, repeats < 1,
// warmup < 0, threads < 1.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <time.h>

#include "flowless/core/random.hpp"
#include "flowless/dcd/student.hpp"
#include "flowless/io/json.hpp"
#include "flowless/models/detector.hpp"
#include "flowless/train/optimizer.hpp"

namespace flowless::bench {

struct ModelBenchOptions {
  std::string preset = "actionformer-thumos";  // "actionformer-thumos" | "actionformer-small" | "temporalmaxer-thumos" | "tridet-thumos"
  int64_t T = 2304;       // snippets of the benchmark video
  int threads = 1;
  bool train = false;     // also time a training step (batch 2, T = max_seq_len)
  int repeats = 5;
  int warmup = 1;
  std::string device = "cpu";
  bool profile = false;   // per-op-class timings (see the file comment)
  std::string precision = "fp32";  // inference matmuls: "fp32" | "bf16" (cpu::MatmulPrecision; training stays fp32)
  std::string train_precision = "fp32";  // the training step's matmuls: "fp32" | "bf16" (mixed precision)
  bool student = false;   // also time the DCD student built on the same detector config
  bool scaling = false;   // also time the forward at 1 thread against `threads`, alternating
  int branch_dim = 0;     // the student's branch width (0 = fpn_dim)
  std::string fusion = "laf";
  uint64_t seed = 20240601ULL;
};

/// The detector configuration of a named preset.
///   actionformer-thumos  : THUMOS14 I3D (actionformer.md A.3): 2048 -> 512, 4 heads, window 19,
///                          arch (2, 2, 5), 20 classes, max_seq_len 2304 (29,251,612 parameters)
///   actionformer-small   : the parity fixture's size: 32 -> 64, 4 heads, window 9, 5 classes, max_seq_len 768
///   temporalmaxer-thumos : the THUMOS embedding and heads with the parameter-free max-pool pyramid
///   tridet-thumos        : TriDet's configs/thumos_i3d.yaml: 2048 -> 512, SGP window 1, k 5, MLP 768,
///                          Trident head with 16 bins, 20 classes, max_seq_len 2304
inline DetectorConfig model_bench_preset(const std::string& name) {
  DetectorConfig c;
  if (name == "actionformer-thumos" || name == "temporalmaxer-thumos") {
    c.mha_win_size.assign(size_t(c.backbone_arch[2] + 1), 19);
    if (name == "temporalmaxer-thumos") c.arch = "temporalmaxer";
  } else if (name == "tridet-thumos") {
    c.arch = "tridet";
    c.mha_win_size.assign(size_t(c.backbone_arch[2] + 1), 1);
    c.sgp_k = 5;
    c.sgp_mlp_dim = 768;
    c.sgp_init_conv_vars = 0.2;  // non-zero weights (the speed does not depend on them)
    c.num_bins = 16;
    c.iou_weight_power = 0.2;
    c.inference_padding = "max_seq_len";
  } else if (name == "actionformer-small") {
    c.input_dim = 32;
    c.num_classes = 5;
    c.embd_dim = c.fpn_dim = c.head_dim = 64;
    c.max_seq_len = 768;
    c.mha_win_size.assign(size_t(c.backbone_arch[2] + 1), 9);
  } else {
    FLOWLESS_FAIL("model bench: unknown preset '", name,
                  "' (known: actionformer-thumos, actionformer-small, temporalmaxer-thumos, tridet-thumos)");
  }
  c.validate("model bench preset " + name);
  return c;
}

/// Analytical FLOPs (2 per multiply-add) of one forward on (B, T, input_dim),
/// T divisible by max_div_factor. Counts every conv (dense, depthwise, 1x1),
/// the attention products (q.k and p.v over the window, or T^2 for global
/// attention) and the heads; element-wise work (norms, activations, softmax,
/// pooling) is not counted.
inline std::map<std::string, double> model_forward_flops(const DetectorConfig& c, int64_t T, int64_t B = 1) {
  std::map<std::string, double> f;
  const double D = c.embd_dim;
  // embedding: arch[0] k-convs
  for (int i = 0; i < c.backbone_arch[0]; ++i)
    f["embedding"] += 2.0 * double(T) * D * double(i == 0 ? c.input_dim : c.embd_dim) * c.embd_kernel_size;
  std::vector<int64_t> level_len;
  if (c.arch == "actionformer") {
    int64_t t = T;
    if (c.backbone_arch[1] == 0) level_len.push_back(t);  // no stem: level 0 is the embedding output
    const int nblocks = c.backbone_arch[1] + c.backbone_arch[2];
    for (int b = 0; b < nblocks; ++b) {
      const bool down = b >= c.backbone_arch[1];
      const int64_t tout = down ? (t + c.scale_factor - 1) / c.scale_factor : t;
      const int level = down ? b - c.backbone_arch[1] + 1 : 0;
      const int w = c.mha_win_size[size_t(level)];
      f["attn_dwconv"] += 3.0 * 2.0 * double(tout) * D * 3;
      f["attn_qkv_proj"] += 3.0 * 2.0 * double(tout) * D * D;
      f["attn_scores_values"] += w > 1 ? 4.0 * double(tout) * double(w) * D : 4.0 * double(tout) * double(tout) * D;
      f["attn_out_proj"] += 2.0 * double(tout) * D * D;
      f["mlp"] += 2.0 * 2.0 * double(tout) * D * 4.0 * D;
      t = tout;
      if (down || b + 1 == c.backbone_arch[1]) level_len.push_back(t);  // stem output, then every branch output
    }
  } else if (c.arch == "tridet") {
    // SGP blocks: depthwise psi, convw (window w), convkw (wide), fc (1x1),
    // global_fc (one step per video); the MLP D -> H -> D.
    int64_t t = T;
    const int nblocks = c.backbone_arch[1] + c.backbone_arch[2];
    for (int b = 0; b < nblocks; ++b) {
      const bool down = b >= c.backbone_arch[1];
      const int64_t tout = down ? (t + c.scale_factor - 1) / c.scale_factor : t;
      const int w = down ? c.mha_win_size[size_t(b - c.backbone_arch[1] + 1)] : 1;
      f["sgp_depthwise"] += 2.0 * double(tout) * D * double(2 * w + models::sgp_wide_kernel(w, c.sgp_k) + 1) + 2.0 * D;
      f["mlp"] += 2.0 * 2.0 * double(tout) * D * double(c.sgp_mlp_dim);
      t = tout;
      if (down || b + 1 == c.backbone_arch[1]) level_len.push_back(t);
    }
    if (c.backbone_arch[1] == 0) level_len.insert(level_len.begin(), T);
  } else {
    int64_t t = T;
    level_len.push_back(t);
    for (int i = 0; i < c.backbone_arch[2]; ++i) level_len.push_back(t = (t + c.scale_factor - 1) / c.scale_factor);
  }
  double pts = 0;
  for (size_t l = size_t(c.fpn_start_level); l < level_len.size(); ++l) pts += double(level_len[l]);
  const double K = c.head_kernel_size;
  for (int i = 0; i < c.head_num_layers - 1; ++i) {
    const double cin = i == 0 ? c.fpn_dim : c.head_dim;
    f["heads"] += 2.0 * 2.0 * pts * cin * c.head_dim * K;  // cls + reg trunks
  }
  f["heads"] += 2.0 * pts * double(c.head_dim) * K * double(c.num_classes + c.offset_channels());
  if (c.trident()) {  // the start and end boundary heads: two more trunks and classifiers
    const double Kb = c.boundary_kernel_size;
    for (int i = 0; i < c.head_num_layers - 1; ++i)
      f["boundary_heads"] += 2.0 * 2.0 * pts * (i == 0 ? c.fpn_dim : c.head_dim) * c.head_dim * Kb;
    f["boundary_heads"] += 2.0 * 2.0 * pts * double(c.head_dim) * Kb * double(c.num_classes);
  }
  double total = 0;
  for (auto& [k, v] : f) total += (v *= double(B));
  f["total"] = total;
  return f;
}

namespace bench_detail {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

/// CPU seconds used by the whole process so far (all threads).
inline double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// What the kernel did for this process so far: minor page faults and CPU seconds in the kernel.
struct KernelCounters {
  double minor_faults = 0, sys_seconds = 0;
  static KernelCounters now() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return {double(ru.ru_minflt), double(ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_stime.tv_usec)};
  }
};

inline double median(std::vector<double> v) {
  FLOWLESS_CHECK(!v.empty(), "median of nothing");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// VmHWM (peak resident set) of this process in MiB; -1 where /proc is absent.
inline double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return double(std::stoll(line.substr(6))) / 1024.0;  // kB
  return -1;
}

template <class F>
std::vector<double> time_runs(int warmup, int repeats, F&& fn) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    auto t0 = Clock::now();
    fn();
    t.push_back(seconds_since(t0));
  }
  return t;
}

inline double gemm_gflops(int64_t M, int64_t K, int64_t N, int warmup, int repeats) {
  Rng rng(7);
  std::vector<float> A(size_t(M * K)), B(size_t(K * N)), C(size_t(M * N));
  for (auto& a : A) a = float(rng.uniform());
  for (auto& b : B) b = float(rng.uniform() - 0.5);
  auto t = time_runs(warmup, std::max(repeats, 3), [&] {
    cpu::gemm<float>(false, false, M, N, K, 1.f, A.data(), K, B.data(), N, 0.f, C.data(), N);
  });
  return 2.0 * double(M) * double(N) * double(K) / median(t) / 1e9;
}

inline json::Value to_json(const std::map<std::string, double>& m, double scale = 1.0) {
  json::Value o = json::Value::object();
  for (auto& [k, v] : m) o[k] = json::Value(v * scale);
  return o;
}

template <class T>
nn::Module<T>& child(nn::Module<T>& m, const std::string& name) {
  for (auto& [n, c] : m.named_children())
    if (n == name) return *c;
  FLOWLESS_FAIL("model bench profile: no module '", name, "'");
}
template <class M, class T>
M& child_as(nn::Module<T>& m, const std::string& name) {
  M* p = dynamic_cast<M*>(&child(m, name));
  FLOWLESS_CHECK(p != nullptr, "model bench profile: module '", name, "' has an unexpected type");
  return *p;
}

/// Accumulates wall milliseconds per key.
struct OpTimer {
  std::map<std::string, double> ms;
  template <class F>
  auto operator()(const std::string& key, F&& fn) {
    auto t0 = Clock::now();
    auto r = fn();
    ms[key] += 1e3 * seconds_since(t0);
    return r;
  }
};

/// The ActionFormer inference forward re-run op by op through the detector's
/// own modules (identity neck, no position encoding), timed per op class.
/// Returns whether the replica's outputs equal the detector's bit for bit.
template <class T>
bool profile_forward(models::Detector<T>& model, const Var<T>& x, const std::vector<int>& lengths, OpTimer& tm) {
  using namespace models;
  const DetectorConfig& c = model.config();
  NoGradGuard ng;
  Rng rng(1);
  nn::Module<T>& bb = model.backbone();
  Var<T> h = x;
  for (int i = 0; i < c.backbone_arch[0]; ++i) {
    auto& conv = child_as<nn::MaskedConv1d<T>>(bb, "embd." + std::to_string(i));
    h = tm(i == 0 ? "embd_conv_in" : "conv_k3", [&] { return conv.forward(h, lengths); });
    if (c.embd_with_ln) h = tm("layer_norm", [&] { return child_as<nn::LayerNorm<T>>(bb, "embd_norm." + std::to_string(i)).forward(h); });
    h = tm("elementwise", [&] { return relu(h); });
  }
  std::vector<Var<T>> feats;
  std::vector<std::vector<int>> lens;
  std::vector<int> len = lengths;
  const int nblocks = c.backbone_arch[1] + c.backbone_arch[2];
  for (int b = 0; b < nblocks; ++b) {
    const bool down = b >= c.backbone_arch[1];
    auto& blk = child_as<TransformerBlock<T>>(bb, down ? "branch." + std::to_string(b - c.backbone_arch[1])
                                                        : "stem." + std::to_string(b));
    const int level = down ? b - c.backbone_arch[1] + 1 : 0;
    auto& a = blk.attn;
    Var<T> n1 = tm("layer_norm", [&] { return blk.ln1.forward(h); });
    Var<T> q = tm("attn_dwconv", [&] { return a.query_conv.forward(n1, len); });
    Var<T> k = tm("attn_dwconv", [&] { return a.key_conv.forward(n1, len); });
    Var<T> v = tm("attn_dwconv", [&] { return a.value_conv.forward(n1, len); });
    q = tm("layer_norm", [&] { return a.query_norm.forward(q); });
    k = tm("layer_norm", [&] { return a.key_norm.forward(k); });
    v = tm("layer_norm", [&] { return a.value_norm.forward(v); });
    const std::vector<int> out_len = a.query_conv.out_lengths(len);
    q = tm("proj_1x1", [&] { return a.query.forward(q); });
    k = tm("proj_1x1", [&] { return a.key.forward(k); });
    v = tm("proj_1x1", [&] { return a.value.forward(v); });
    Var<T> att = tm("attention", [&] { return local_attention(q, k, v, c.n_head, c.mha_win_size[size_t(level)], out_len); });
    Var<T> y = tm("proj_1x1", [&] { return a.proj.forward(att); });
    y = tm("elementwise", [&] { return mask_time(y, out_len); });
    Var<T> skip = down ? tm("max_pool", [&] { return max_pool1d(h, c.scale_factor + 1, c.scale_factor, (c.scale_factor + 1) / 2); }) : h;
    const bool dp = c.droppath > 0;
    Var<T> out = tm("elementwise", [&] { return add(mask_time(skip, out_len), dp ? blk.drop_path_attn.forward(y, rng) : y); });
    Var<T> n2 = tm("layer_norm", [&] { return blk.ln2.forward(out); });
    Var<T> m = tm("mlp_1x1", [&] { return blk.mlp0.forward(n2); });
    m = tm("gelu", [&] { return gelu(m); });
    m = tm("mlp_1x1", [&] { return blk.mlp3.forward(m); });
    h = tm("elementwise", [&] {
      Var<T> mm = mask_time(m, out_len);
      return add(out, dp ? blk.drop_path_mlp.forward(mm, rng) : mm);
    });
    len = out_len;
    if (b + 1 >= c.backbone_arch[1]) {
      feats.push_back(h);
      lens.push_back(len);
    }
  }
  nn::Module<T>& neck = model.neck();
  for (size_t l = 0; l < feats.size(); ++l)
    if (c.fpn_with_ln) feats[l] = tm("layer_norm", [&] { return child_as<nn::LayerNorm<T>>(neck, "fpn_norms." + std::to_string(l)).forward(feats[l]); });
  auto trunk = [&](nn::Module<T>& head, Var<T> z, const std::vector<int>& ln) {
    for (int i = 0; i < c.head_num_layers - 1; ++i) {
      z = tm("conv_k3", [&] { return child_as<nn::MaskedConv1d<T>>(head, "head." + std::to_string(i)).forward(z, ln); });
      if (c.head_with_ln) z = tm("layer_norm", [&] { return child_as<nn::LayerNorm<T>>(head, "norm." + std::to_string(i)).forward(z); });
      z = tm("elementwise", [&] { return relu(z); });
    }
    return z;
  };
  std::vector<Var<T>> cls, off;
  ConvWeightCacheScope weights_once;  // as in ClsHead/RegHead::forward: each trunk weight transformed once for all levels
  for (size_t l = 0; l < feats.size(); ++l) {
    Var<T> z = trunk(model.cls_head(), feats[l], lens[l]);
    cls.push_back(tm("head_out_conv", [&] { return model.cls_head().cls_head.forward(z, lens[l]); }));
    z = trunk(model.reg_head(), feats[l], lens[l]);
    Var<T> o = tm("head_out_conv", [&] { return model.reg_head().offset_head.forward(z, lens[l]); });
    o = tm("elementwise", [&] { return relu(child_as<nn::Scale<T>>(model.reg_head(), "scale." + std::to_string(l)).forward(o)); });
    off.push_back(o);
  }
  // The replica must be the real thing: compare with the detector's own forward.
  DetectorOutput<T> ref = model.forward(x, lengths);
  bool same = ref.cls_logits.size() == cls.size();
  for (size_t l = 0; same && l < cls.size(); ++l) {
    const Tensor<T>&a0 = cls[l].value(), &a1 = ref.cls_logits[l].value(), &b0 = off[l].value(), &b1 = ref.offsets[l].value();
    same = a0.numel() == a1.numel() && b0.numel() == b1.numel() &&
           std::equal(a0.data(), a0.data() + a0.numel(), a1.data()) && std::equal(b0.data(), b0.data() + b0.numel(), b1.data());
  }
  return same;
}

/// backward(root) with the wall time of each node's closure added to ms[op name].
/// Same walk as flowless::backward (autograd/variable.hpp), graph freed afterwards.
template <class T>
void timed_backward(const Var<T>& root, std::map<std::string, double>& ms) {
  if (!root.requires_grad()) return;
  std::vector<std::shared_ptr<Node<T>>> order;
  std::unordered_set<Node<T>*> visited{root.node().get()};
  std::vector<std::pair<std::shared_ptr<Node<T>>, size_t>> stack{{root.node(), 0}};
  while (!stack.empty()) {
    auto& top = stack.back();
    Node<T>* n = top.first.get();
    if (top.second < n->inputs.size()) {
      const std::shared_ptr<Node<T>>& ch = n->inputs[top.second++];
      if (ch && ch->requires_grad && !visited.count(ch.get())) {
        visited.insert(ch.get());
        stack.push_back({ch, 0});
      }
    } else {
      order.push_back(std::move(top.first));
      stack.pop_back();
    }
  }
  Tensor<T>& g = root.node()->ensure_grad();
  for (int64_t k = 0; k < g.numel(); ++k) g.data()[k] += T(1);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node<T>* n = it->get();
    if (n->is_leaf()) continue;
    if (n->grad.defined()) {
      auto t0 = Clock::now();
      n->backward_fn(*n);
      ms[n->op] += 1e3 * seconds_since(t0);
    }
    n->backward_fn = nullptr;
    n->inputs.clear();
    n->grad = Tensor<T>();
  }
}

/// Deterministic ground truth for the training step: 8 segments per video.
inline std::vector<models::VideoTargets> random_targets(int64_t B, int64_t Tlen, int num_classes, Rng& rng) {
  std::vector<models::VideoTargets> gt(static_cast<size_t>(B));
  for (auto& g : gt)
    for (int i = 0; i < 8; ++i) {
      const double len = rng.uniform(4.0, 80.0);
      const double s = rng.uniform(0.0, double(Tlen) - len - 1);
      g.segments.push_back({float(s), float(s + len)});
      g.labels.push_back(int(rng.randint(0, num_classes - 1)));
    }
  return gt;
}

}  // namespace bench_detail

/// See the file comment.
inline json::Value run_model_bench(const ModelBenchOptions& opt) {
  using namespace bench_detail;
  FLOWLESS_CHECK(opt.device == "cpu", "model bench: device '", opt.device, "' is not available (only cpu)");
  FLOWLESS_CHECK(opt.T >= 1, "model bench: T must be >= 1, got ", opt.T);
  FLOWLESS_CHECK(opt.repeats >= 1 && opt.warmup >= 0, "model bench: repeats must be >= 1 and warmup >= 0");
  FLOWLESS_CHECK(opt.threads >= 1, "model bench: threads must be >= 1, got ", opt.threads);
  const int prev_threads = num_threads();
  set_num_threads(opt.threads);
  struct Restore {
    int n;
    ~Restore() { set_num_threads(n); }
  } restore{prev_threads};

  const DetectorConfig cfg = model_bench_preset(opt.preset);
  models::Detector<float> model(cfg, opt.seed);
  model.train(false);
  const int64_t Cin = cfg.input_dim, Tbuf = cfg.inference_length(opt.T);

  json::Value r = json::Value::object();
  r["preset"] = json::Value(opt.preset);
  r["arch"] = json::Value(cfg.arch);
  r["T"] = json::Value(Tbuf);
  r["video_T"] = json::Value(opt.T);
  r["threads"] = json::Value(opt.threads);
  r["device"] = json::Value(opt.device);
  r["repeats"] = json::Value(opt.repeats);
  r["params"] = json::Value(model.num_parameters());

  // The benchmark video: uniform [0, 1) features.
  Rng rng(opt.seed ^ 0x9E3779B97F4A7C15ULL);
  std::vector<float> feats(size_t(opt.T * Cin));
  for (auto& f : feats) f = float(rng.uniform());
  Tensor<float> xin = Tensor<float>::zeros(Shape{1, Tbuf, Cin});
  std::copy(feats.begin(), feats.end(), xin.data());
  const Var<float> x(xin);
  const std::vector<int> lengths{int(opt.T)};
  const VideoMeta meta{"bench", 30.0, double(opt.T) * 4.0 / 30.0, cfg.feat_stride, cfg.num_frames};

  // Inference matmul precision (the training step below runs in fp32).
  const cpu::MatmulPrecision prec = cpu::parse_matmul_precision(opt.precision);
  r["precision"] = json::Value(opt.precision);
  r["bf16_available"] = json::Value(cpu::matmul_bf16_available());
  if (prec != cpu::MatmulPrecision::fp32) {
    NoGradGuard ng;
    auto ref = model.forward(x, lengths);
    cpu::MatmulPrecisionScope scope(prec);
    auto low = model.forward(x, lengths);
    double worst = 0;
    auto cmp = [&](const Tensor<float>& a, const Tensor<float>& b) {
      for (int64_t i = 0; i < a.numel(); ++i)
        worst = std::max(worst, double(std::abs(a[i] - b[i])) / std::max(1.0, double(std::abs(b[i]))));
    };
    for (size_t l = 0; l < ref.cls_logits.size(); ++l) {
      cmp(low.cls_logits[l].value(), ref.cls_logits[l].value());
      cmp(low.offsets[l].value(), ref.offsets[l].value());
    }
    r["bf16_max_rel_diff"] = json::Value(worst);
  }
  std::optional<cpu::MatmulPrecisionScope> inference_precision;
  inference_precision.emplace(prec);

  // Network forward (no grad, batch 1).
  const auto flops = model_forward_flops(cfg, Tbuf, 1);
  std::vector<double> net_cpu;
  auto net = time_runs(opt.warmup, opt.repeats, [&] {
    NoGradGuard ng;
    const double c0 = process_cpu_seconds();
    auto out = model.forward(x, lengths);
    net_cpu.push_back(process_cpu_seconds() - c0);
  });
  const double net_s = median(net);
  net_cpu.erase(net_cpu.begin(), net_cpu.begin() + opt.warmup);
  // Detect: forward + decoding + Soft-NMS.
  size_t num_dets = 0;
  auto inf = time_runs(opt.warmup, opt.repeats, [&] { num_dets = model.detect(feats.data(), opt.T, Cin, meta).size(); });
  const double inf_s = median(inf);
  r["network_flops"] = json::Value(flops.at("total"));
  r["network_flops_by_part"] = to_json(flops);
  r["network_seconds"] = json::Value(net_s);
  r["network_gflops"] = json::Value(flops.at("total") / net_s / 1e9);
  r["network_cpu_seconds"] = json::Value(median(net_cpu));
  r["inference_seconds"] = json::Value(inf_s);
  r["postprocess_seconds"] = json::Value(std::max(0.0, inf_s - net_s));
  r["peak_rss_mb_inference"] = json::Value(peak_rss_mb());
  {
    ConvWeightCacheScope frozen;  // weights fixed across videos (flowless detect, evaluation)
    auto netf = time_runs(opt.warmup, opt.repeats, [&] {
      NoGradGuard ng;
      auto out = model.forward(x, lengths);
    });
    auto inff = time_runs(opt.warmup, opt.repeats, [&] { model.detect(feats.data(), opt.T, Cin, meta); });
    r["network_seconds_frozen"] = json::Value(median(netf));
    r["inference_seconds_frozen"] = json::Value(median(inff));
    r["peak_rss_mb_frozen"] = json::Value(peak_rss_mb());  // the packed weights stay while the scope lives
  }
  r["detections"] = json::Value(num_dets);

  if (opt.student) {
    dcd::DcdStudentConfig sc;
    sc.detector = cfg;
    sc.branch_dim = opt.branch_dim;
    sc.fusion = opt.fusion;
    sc.validate("model bench student");
    dcd::DcdStudent<float> student(sc, opt.seed);
    student.train(false);
    std::vector<double> ts, td;
    for (int i = 0; i < opt.warmup + opt.repeats; ++i) {
      auto t0 = Clock::now();
      student.detect(feats.data(), opt.T, Cin, meta);
      const double a = seconds_since(t0);
      t0 = Clock::now();
      model.detect(feats.data(), opt.T, Cin, meta);
      const double b = seconds_since(t0);
      if (i >= opt.warmup) {
        ts.push_back(a);
        td.push_back(b);
      }
    }
    r["student_fusion"] = json::Value(opt.fusion);
    r["student_branch_dim"] = json::Value(sc.dim());
    r["student_params"] = json::Value(student.num_parameters());
    r["student_inference_seconds"] = json::Value(median(ts));
    r["detector_inference_seconds"] = json::Value(median(td));
    r["student_time_ratio"] = json::Value(median(ts) / median(td));
    r["student_params_ratio"] = json::Value(double(student.num_parameters()) / double(model.num_parameters()));
  }

  if (opt.scaling) {
    std::vector<double> t1, tn;
    for (int i = 0; i < opt.warmup + opt.repeats; ++i)
      for (const int nt : {1, opt.threads}) {
        set_num_threads(nt);
        NoGradGuard ng;
        const auto t0 = Clock::now();
        auto out = model.forward(x, lengths);
        const double s = seconds_since(t0);
        if (i >= opt.warmup) (nt == 1 ? t1 : tn).push_back(s);
      }
    set_num_threads(opt.threads);
    r["scaling_t1_seconds"] = json::Value(median(t1));
    r["scaling_tn_seconds"] = json::Value(median(tn));
    r["thread_scaling"] = json::Value(median(t1) / median(tn));
  }

  json::Value prof = json::Value::object();
  if (opt.profile && cfg.arch == "actionformer" && cfg.fpn_type == "identity" && !cfg.use_abs_pe) {
    std::vector<std::map<std::string, double>> runs;
    bool exact = true;
    for (int i = 0; i < opt.warmup + opt.repeats; ++i) {
      OpTimer tm;
      exact = profile_forward(model, x, lengths, tm) && exact;
      if (i >= opt.warmup) runs.push_back(tm.ms);
    }
    std::map<std::string, double> med;
    for (auto& [k, v] : runs[0]) {
      std::vector<double> s;
      for (auto& rm : runs) s.push_back(rm.at(k));
      med[k] = median(s);
    }
    prof["forward_ms"] = to_json(med);
    prof["replica_exact"] = json::Value(exact);
  }

  inference_precision.reset();
  if (opt.train) {
    const int64_t B = 2, Tt = cfg.max_seq_len;
    Tensor<float> xt(Shape{B, Tt, Cin});
    for (int64_t i = 0; i < xt.numel(); ++i) xt[i] = float(rng.uniform());
    const std::vector<int> tl{int(Tt), int(Tt - Tt / 5)};  // one full, one shorter video (padded tail)
    for (int64_t t = tl[1]; t < Tt; ++t) std::fill(xt.data() + (Tt + t) * Cin, xt.data() + (Tt + t + 1) * Cin, 0.f);
    const Var<float> xv(xt);
    auto gt = random_targets(B, tl[1], cfg.num_classes, rng);
    DetectionLoss<float> criterion(cfg.loss_config());
    train::AdamW<float> optim(model, 1e-4, 0.05);
    const auto params = model.parameters();
    model.train(true);
    std::map<std::string, std::vector<double>> parts;
    std::vector<double> steps;
    std::map<std::string, double> bwd_ms;
    std::vector<double> step_cpu, step_faults, step_sys;
    const cpu::MatmulPrecision train_prec = cpu::parse_matmul_precision(opt.train_precision);
    r["train_precision"] = json::Value(opt.train_precision);
    // One warmup step more than asked: the first optimizer step allocates
    // AdamW's state (two copies of the parameters) after the step's peak, so
    // the second step still misses the block cache (about 60,000 page faults
    // at the THUMOS size) and would be one of the timed steps.
    const int train_warmup = opt.warmup > 0 ? opt.warmup + 1 : 0;
    for (int i = 0; i < train_warmup + opt.repeats; ++i) {
      const bool keep = i >= train_warmup;
      std::optional<cpu::MatmulPrecisionScope> step_precision;
      step_precision.emplace(train_prec);
      const double c0 = process_cpu_seconds();
      const KernelCounters k0 = KernelCounters::now();
      auto t0 = Clock::now();
      auto out = model.forward(xv, tl);
      const double t_fwd = seconds_since(t0);
      auto t1 = Clock::now();
      auto losses = model.loss(out, gt, criterion);
      const double t_loss = seconds_since(t1);
      FLOWLESS_CHECK(std::isfinite(double(losses.final_loss.value()[0])), "model bench: the training loss is not finite");
      out = models::DetectorOutput<float>();
      auto t2 = Clock::now();
      model.zero_grad();
      if (opt.profile && keep)
        timed_backward(losses.final_loss, bwd_ms);
      else
        backward(losses.final_loss);
      losses = DetectionLossOutput<float>();
      step_precision.reset();  // clipping and the optimizer are fp32 either way
      const double t_bwd = seconds_since(t2);
      auto t3 = Clock::now();
      train::clip_grad_norm(params, cfg.clip_grad_l2norm);
      const double t_clip = seconds_since(t3);
      auto t4 = Clock::now();
      optim.step();
      const double t_opt = seconds_since(t4);
      if (!keep) continue;
      steps.push_back(seconds_since(t0));
      step_cpu.push_back(process_cpu_seconds() - c0);
      const KernelCounters k1 = KernelCounters::now();
      step_faults.push_back(k1.minor_faults - k0.minor_faults);
      step_sys.push_back(k1.sys_seconds - k0.sys_seconds);
      parts["forward"].push_back(t_fwd);
      parts["loss"].push_back(t_loss);
      parts["backward"].push_back(t_bwd);
      parts["clip"].push_back(t_clip);
      parts["optimizer"].push_back(t_opt);
    }
    model.train(false);
    r["train_step_seconds"] = json::Value(median(steps));
    r["train_step_cpu_seconds"] = json::Value(median(step_cpu));
    r["train_step_sys_seconds"] = json::Value(median(step_sys));
    r["train_step_page_faults"] = json::Value(median(step_faults));
    json::Value tp = json::Value::object();
    for (auto& [k, v] : parts) tp[k] = json::Value(median(v));
    r["train_step_parts"] = tp;
    r["train_batch"] = json::Value(B);
    r["train_T"] = json::Value(Tt);
    r["train_flops"] = json::Value(3.0 * model_forward_flops(cfg, Tt, B).at("total"));
    if (opt.profile) prof["backward_ms"] = to_json(bwd_ms, 1.0 / double(opt.repeats));
  }
  if (opt.profile) r["profile"] = prof;

  const int64_t gd = cfg.embd_dim;
  r["gemm_shape"] = json::Value::array();
  for (int64_t v : {Tbuf, 3 * gd, gd}) r["gemm_shape"].push_back(json::Value(v));
  r["gemm_gflops"] = json::Value(gemm_gflops(Tbuf, 3 * gd, gd, opt.warmup, opt.repeats));
  r["peak_rss_mb"] = json::Value(peak_rss_mb());
  return r;
}

}  // namespace flowless::bench
