// flowless/dcd/laf.hpp - Local Attentive Fusion (LAF), DCD's fusion layer
// (Lee et al., CVPR 2023, docs/dcd.md), usable on its own.
//
//   LAF<T> laf(channels, LafOptions{window, aggregation, residual, norm, out_proj});
//   out = laf.forward(target, ref, lengths)
//   target, ref : (B, T, D)   D = channels; lengths[b] valid steps (prefix masks)
//   out         : (B, T, D)   zero at t >= lengths[b]
// For each valid step t (one weight per channel and step, no softmax over time):
//   q_t = W_q · agg_window(target)_t           (1x1 conv; agg = masked centred
//                                               sliding mean or max over `window`
//                                               steps, ops/window_pool.hpp)
//   k_t = W_k · ref_t                           (1x1 conv)
//   w_t = sigmoid(q_t ⊙ k_t)                   channel-wise similarity -> channel attention
//   out_t = w_t ⊙ target_t                     values = the target itself, never averaged over time
// Options for ablation (the paper is silent; default off):
//   residual  out_t += target_t
//   norm      LayerNorm over channels after the residual
//   out_proj  a final 1x1 conv
// The output is masked to the valid prefix in every configuration.
// Parameter names: "query.conv.{weight,bias}", "key.conv.{weight,bias}",
// then "norm.{weight,bias}" and "out_proj.conv.{weight,bias}" when enabled.
//
// laf_gate(q, k, x, lengths) is the fused op y = sigmoid(q ⊙ k) ⊙ x (rows
// t >= lengths[b] zero and without gradient); q, k, x: (B, T, D).
#pragma once

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "flowless/io/json.hpp"
#include "flowless/nn/layers.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/window_pool.hpp"

namespace flowless {

/// y = sigmoid(q * k) * x elementwise on the valid rows, 0 elsewhere.
template <class T>
Var<T> laf_gate(const Var<T>& q, const Var<T>& k, const Var<T>& x, const std::vector<int>& lengths) {
  detail::ew_check_same(q, k, "laf_gate");
  detail::ew_check_same(q, x, "laf_gate");
  FLOWLESS_CHECK(x.value().dim() == 3, "laf_gate: inputs must be (B, T, D), got ", x.shape().str());
  const int64_t B = x.size(0), Tn = x.size(1), D = x.size(2);
  std::vector<int64_t> L = detail::window_lengths(lengths, B, Tn, "laf_gate");
  Tensor<T> Y(x.shape());
  const T* pq = q.value().data();
  const T* pk = k.value().data();
  const T* px = x.value().data();
  T* py = Y.data();
  const int64_t grain = detail::ew_row_grain(D);
  parallel_for(B * Tn, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* yr = py + r * D;
      if (r % Tn >= L[r / Tn]) {
        std::fill(yr, yr + D, T(0));
        continue;
      }
      // one row at a time (Eigen's vectorised exp) of the 64-byte aligned output: which
      // elements take the vector exp depends only on the row, never on the thread count
      detail::EwCArr<T> qa(pq + r * D, D), ka(pk + r * D, D), xa(px + r * D, D);
      detail::EwArr<T>(yr, D) = xa / (T(1) + (-(qa * ka)).exp());
    }
  });
  return make_op<T>(std::move(Y), {q, k, x}, "laf_gate", [Tn, D, grain, L = std::move(L)](Node<T>& out) {
    const bool gq = out.needs_grad(0), gk = out.needs_grad(1), gx = out.needs_grad(2);
    if (!gq && !gk && !gx) return;
    const T* g = out.grad.data();
    const T* pq = out.inputs[0]->value.data();
    const T* pk = out.inputs[1]->value.data();
    const T* px = out.inputs[2]->value.data();
    T* dq = gq ? out.input_grad(0).data() : nullptr;
    T* dk = gk ? out.input_grad(1).data() : nullptr;
    T* dx = gx ? out.input_grad(2).data() : nullptr;
    const int64_t rows = out.grad.numel() / std::max<int64_t>(D, 1);
    parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
      // Eigen's own (64-byte aligned) arrays: which elements take the vector exp
      // depends on the destination's alignment, so it must not vary from call to call.
      Eigen::Array<T, Eigen::Dynamic, 1> s(D), ds(D);
      for (int64_t r = r0; r < r1; ++r) {
        if (r % Tn >= L[r / Tn]) continue;
        const int64_t o = r * D;
        detail::EwCArr<T> qa(pq + o, D), ka(pk + o, D), xa(px + o, D), ga(g + o, D);
        s = T(1) / (T(1) + (-(qa * ka)).exp());
        if (gx) detail::EwArr<T>(dx + o, D) += ga * s;
        ds = ga * xa * s * (T(1) - s);  // d out / d(q k)
        if (gq) detail::EwArr<T>(dq + o, D) += ds * ka;
        if (gk) detail::EwArr<T>(dk + o, D) += ds * qa;
      }
    });
  });
}

namespace dcd {

struct LafOptions {
  int window = 5;                    // odd; 1 = no temporal context in the query
  std::string aggregation = "mean";  // "mean" | "max"
  bool residual = false;             // out += target
  bool norm = false;                 // LayerNorm after the residual
  bool out_proj = false;             // final 1x1 conv

  void validate(const std::string& ctx) const {
    FLOWLESS_CHECK(window >= 1 && window % 2 == 1, ctx, ": LAF window must be odd and >= 1, got ", window);
    FLOWLESS_CHECK(aggregation == "mean" || aggregation == "max", ctx, ": LAF aggregation must be mean or max, got '",
                   aggregation, "'");
  }
};

inline json::Value laf_options_to_json(const LafOptions& o) {
  json::Value v = json::Value::object();
  v["window"] = json::Value(o.window);
  v["aggregation"] = json::Value(o.aggregation);
  v["residual"] = json::Value(o.residual);
  v["norm"] = json::Value(o.norm);
  v["out_proj"] = json::Value(o.out_proj);
  return v;
}

inline LafOptions parse_laf_options(const json::Value& v, const std::string& ctx) {
  LafOptions o;
  FLOWLESS_CHECK(v.is_object(), ctx, ": LAF options must be an object");
  o.window = int(v.int_or("window", o.window));
  o.aggregation = v.string_or("aggregation", o.aggregation);
  o.residual = v.bool_or("residual", o.residual);
  o.norm = v.bool_or("norm", o.norm);
  o.out_proj = v.bool_or("out_proj", o.out_proj);
  o.validate(ctx);
  return o;
}

template <class T>
class LAF : public nn::Module<T> {
 public:
  LAF(int channels, LafOptions opt = {}, Rng* rng = nullptr)
      : opt_((opt.validate("LAF"), opt)), agg_(parse_window_agg(opt.aggregation)), channels_(channels),
        query(channels, channels, 1, 1, 0, 1, true, rng), key(channels, channels, 1, 1, 0, 1, true, rng) {
    FLOWLESS_CHECK(channels > 0, "LAF: channels must be > 0, got ", channels);
    this->register_module("query", query);
    this->register_module("key", key);
    if (opt_.norm) {
      norm_ = std::make_unique<nn::LayerNorm<T>>(channels);
      this->register_module("norm", *norm_);
    }
    if (opt_.out_proj) {
      out_proj_ = std::make_unique<nn::MaskedConv1d<T>>(channels, channels, 1, 1, 0, 1, true, rng);
      this->register_module("out_proj", *out_proj_);
    }
  }

  const LafOptions& options() const { return opt_; }
  int channels() const { return channels_; }

  /// The channel attention w = sigmoid(q ⊙ k): (B, T, D), for inspection (0.5 on padded rows).
  Var<T> attention(const Var<T>& target, const Var<T>& ref, const std::vector<int>& lengths) const {
    auto [q, k] = query_key(target, ref, lengths);
    return sigmoid(mul(q, k));
  }

  /// target, ref: (B, T, D) -> (B, T, D).
  Var<T> forward(const Var<T>& target, const Var<T>& ref, const std::vector<int>& lengths) const {
    auto [q, k] = query_key(target, ref, lengths);
    Var<T> out = laf_gate(q, k, target, lengths);
    if (!opt_.residual && !opt_.norm && !opt_.out_proj) return out;
    if (opt_.residual) out = add(out, target);
    if (opt_.norm) out = norm_->forward(out);
    if (opt_.out_proj) out = out_proj_->forward(out, lengths);
    return mask_time(out, lengths);
  }

 private:
  std::pair<Var<T>, Var<T>> query_key(const Var<T>& target, const Var<T>& ref, const std::vector<int>& lengths) const {
    FLOWLESS_CHECK(target.defined() && ref.defined(), "LAF: undefined input");
    FLOWLESS_CHECK(target.value().dim() == 3 && target.size(2) == channels_, "LAF: target ", target.shape().str(),
                   " is not (B, T, ", channels_, ")");
    FLOWLESS_CHECK(ref.shape() == target.shape(), "LAF: ref ", ref.shape().str(), " differs from target ",
                   target.shape().str());
    FLOWLESS_CHECK(int64_t(lengths.size()) == target.size(0), "LAF: ", lengths.size(), " lengths for batch ",
                   target.size(0));
    Var<T> agg = opt_.window == 1 ? mask_time(target, lengths) : window_pool1d(target, lengths, opt_.window, agg_);
    return {query.forward(agg, lengths), key.forward(ref, lengths)};
  }

  LafOptions opt_;
  WindowAgg agg_;
  int channels_;

 public:
  nn::MaskedConv1d<T> query, key;  // W_q, W_k

 private:
  std::unique_ptr<nn::LayerNorm<T>> norm_;
  std::unique_ptr<nn::MaskedConv1d<T>> out_proj_;
};

}  // namespace dcd
}  // namespace flowless
