// flowless/models/heads.hpp - anchor-free classification and regression heads.
//
// Both heads are shared across pyramid levels (and, in DCD, across branches):
// the same weights are applied to every level's features.
// ClsHead::forward(feats[l]: (B, T_l, D), lengths[l]) -> logits[l]: (B, T_l, num_classes)
//   [masked conv k -> LN -> ReLU (-> mask: HeadOptions::remask, OpenTAD's
//   ConvModule)] x (num_layers - 1) -> masked conv k (bias
//   initialised to -log((1 - p) / p), p = prior_prob; empty classes ~ -13.8).
// RegHead::forward(...) -> offsets[l]: (B, T_l, 2) = ReLU(Scale_l(conv(...))),
//   non-negative distances to start and end in units of the level stride.
//   With out_channels 2 x (num_bins + 1) it is TriDet's centre-offset head of
//   the Trident head: per side, one logit per boundary bin (decoded with the
//   start / end ClsHeads' logits by infer/trident.hpp).
// Names: "head.i.conv.weight", "norm.i.weight", "cls_head.conv.*",
// "offset_head.conv.*", "scale.l.scale" (the reference's PtTransformer*Head).
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "flowless/nn/layers.hpp"
#include "flowless/ops/activations.hpp"
#include "flowless/ops/elementwise.hpp"

namespace flowless::models {

struct HeadOptions {
  int input_dim = 512, feat_dim = 512, num_layers = 3, kernel_size = 3;
  bool with_ln = true;
  double norm_eps = 1e-5;  // the trunk's LayerNorm eps (OpenTAD's ConvModule: 1e-6)
  bool remask = false;     // zero the padded steps after LN + ReLU (OpenTAD's ConvModule)
  bool mask_output = true; // ClsHead: false leaves the last conv's padded steps (OpenTAD's TriDet boundary heads)
};

template <class T>
class HeadTrunk {
 public:
  HeadTrunk(const HeadOptions& o, Rng& rng) : with_ln_(o.with_ln), remask_(o.remask) {
    for (int i = 0; i < o.num_layers - 1; ++i) {
      int cin = i == 0 ? o.input_dim : o.feat_dim;
      convs_.push_back(std::make_unique<nn::MaskedConv1d<T>>(cin, o.feat_dim, o.kernel_size, 1, o.kernel_size / 2, 1,
                                                              !o.with_ln, &rng));
      norms_.push_back(std::make_unique<nn::LayerNorm<T>>(o.feat_dim, o.norm_eps));
    }
  }
  /// The trunk's layers under the reference names, for the owning head to register.
  std::vector<std::pair<std::string, nn::Module<T>*>> children() {
    std::vector<std::pair<std::string, nn::Module<T>*>> out;
    for (size_t i = 0; i < convs_.size(); ++i) {
      out.push_back({"head." + std::to_string(i), convs_[i].get()});
      if (with_ln_) out.push_back({"norm." + std::to_string(i), norms_[i].get()});
    }
    return out;
  }
  Var<T> forward(Var<T> x, const std::vector<int>& lengths) {
    for (size_t i = 0; i < convs_.size(); ++i) {
      x = convs_[i]->forward(x, lengths);
      if (with_ln_) x = norms_[i]->forward(x);
      x = relu(x);
      if (remask_) x = mask_time(x, lengths);
    }
    return x;
  }

 private:
  bool with_ln_, remask_;
  std::vector<std::unique_ptr<nn::MaskedConv1d<T>>> convs_;
  std::vector<std::unique_ptr<nn::LayerNorm<T>>> norms_;
};

template <class T>
class ClsHead : public nn::Module<T> {
 public:
  ClsHead(const HeadOptions& o, int num_classes, double prior_prob, const std::vector<int>& empty_cls, Rng& rng)
      : trunk_(o, rng), mask_output_(o.mask_output),
        cls_head(o.feat_dim, num_classes, o.kernel_size, 1, o.kernel_size / 2, 1, true, &rng) {
    for (auto& [name, m] : trunk_.children()) this->register_module(name, *m);
    this->register_module("cls_head", cls_head);
    Tensor<T>& b = cls_head.conv.bias().value();
    if (prior_prob > 0) b.fill_(T(-std::log((1 - prior_prob) / prior_prob)));
    for (int c : empty_cls) {
      FLOWLESS_CHECK(c >= 0 && c < num_classes, "head_empty_cls: class ", c, " out of range");
      b[c] = T(-std::log((1 - 1e-6) / 1e-6));
    }
  }
  std::vector<Var<T>> forward(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>& lengths) {
    ConvWeightCacheScope weights_once;  // the trunk's Winograd weights, transformed once for all levels
    std::vector<Var<T>> out;
    for (size_t l = 0; l < feats.size(); ++l) {
      // Unmasked: every step of the buffer counts as valid for the last conv.
      const std::vector<int> all(lengths[l].size(), int(feats[l].size(1)));
      out.push_back(cls_head.forward(trunk_.forward(feats[l], lengths[l]), mask_output_ ? lengths[l] : all));
    }
    return out;
  }

 private:
  HeadTrunk<T> trunk_;
  bool mask_output_;

 public:
  nn::MaskedConv1d<T> cls_head;
};

template <class T>
class RegHead : public nn::Module<T> {
 public:
  RegHead(const HeadOptions& o, int num_levels, Rng& rng, int out_channels = 2)
      : trunk_(o, rng), offset_head(o.feat_dim, out_channels, o.kernel_size, 1, o.kernel_size / 2, 1, true, &rng) {
    for (auto& [name, m] : trunk_.children()) this->register_module(name, *m);
    this->register_module("offset_head", offset_head);
    offset_head.conv.bias().value().zero_();
    for (int l = 0; l < num_levels; ++l) {
      scales_.push_back(std::make_unique<nn::Scale<T>>(1.0));
      this->register_module("scale." + std::to_string(l), *scales_.back());
    }
  }
  std::vector<Var<T>> forward(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>& lengths) {
    FLOWLESS_CHECK(feats.size() <= scales_.size(), "RegHead: ", feats.size(), " levels for ", scales_.size(), " scales");
    ConvWeightCacheScope weights_once;  // the trunk's Winograd weights, transformed once for all levels
    std::vector<Var<T>> out;
    for (size_t l = 0; l < feats.size(); ++l)
      out.push_back(relu(scales_[l]->forward(offset_head.forward(trunk_.forward(feats[l], lengths[l]), lengths[l]))));
    return out;
  }

 private:
  HeadTrunk<T> trunk_;

 public:
  nn::MaskedConv1d<T> offset_head;

 private:
  std::vector<std::unique_ptr<nn::Scale<T>>> scales_;
};

}  // namespace flowless::models
