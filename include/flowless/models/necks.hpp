// flowless/models/necks.hpp - per-level feature necks.
//
// Neck<T>::forward(feats[l]: (B, T_l, D_in), lengths[l]) -> feats[l]: (B, T_l, D_fpn)
// IdentityNeck (reference FPNIdentity): LayerNorm per level ("fpn_norms.l"), no mask;
//   with fpn_norm "groupnorm" TemporalMaxer's FPNIdentity instead: a parameter-free
//   GroupNorm per level over the whole buffer, padded steps included.
// FpnNeck (reference FPN1D): lateral 1x1 masked conv, top-down nearest x2
//   upsampling and sum, depthwise k3 masked conv, LayerNorm per level.
#pragma once

#include <memory>
#include <vector>

#include "flowless/models/backbones.hpp"
#include "flowless/ops/group_norm.hpp"
#include "flowless/ops/upsample.hpp"

namespace flowless::models {

template <class T>
class Neck : public nn::Module<T> {
 public:
  virtual std::vector<Var<T>> forward(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>& lengths) = 0;
};

template <class T>
class IdentityNeck : public Neck<T> {
 public:
  IdentityNeck(const DetectorConfig& c) : cfg_(c) {
    FLOWLESS_CHECK(c.fpn_dim == c.embd_dim, "identity neck needs fpn_dim == embd_dim (", c.fpn_dim, " vs ", c.embd_dim, ")");
    if (c.fpn_norm == "groupnorm") return;
    for (int l = 0; l < c.num_levels(); ++l) {
      norms_.push_back(std::make_unique<nn::LayerNorm<T>>(c.fpn_dim, c.conv_norm_eps));
      if (c.fpn_with_ln) this->register_module("fpn_norms." + std::to_string(l), *norms_.back());
    }
  }
  std::vector<Var<T>> forward(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>&) override {
    std::vector<Var<T>> out;
    for (int l = 0; l < cfg_.num_levels(); ++l) {
      const Var<T>& x = feats[l + cfg_.fpn_start_level];
      if (cfg_.fpn_norm == "groupnorm")
        out.push_back(group_norm_time(x, cfg_.fpn_num_groups));
      else
        out.push_back(cfg_.fpn_with_ln ? norms_[l]->forward(x) : x);
    }
    return out;
  }

 private:
  DetectorConfig cfg_;
  std::vector<std::unique_ptr<nn::LayerNorm<T>>> norms_;
};

template <class T>
class FpnNeck : public Neck<T> {
 public:
  FpnNeck(const DetectorConfig& c, Rng& rng) : cfg_(c) {
    for (int l = 0; l < c.num_levels(); ++l) {
      lateral_.push_back(std::make_unique<nn::MaskedConv1d<T>>(c.embd_dim, c.fpn_dim, 1, 1, 0, 1, !c.fpn_with_ln, &rng));
      fpn_.push_back(std::make_unique<nn::MaskedConv1d<T>>(c.fpn_dim, c.fpn_dim, 3, 1, 1, c.fpn_dim, !c.fpn_with_ln, &rng));
      norms_.push_back(std::make_unique<nn::LayerNorm<T>>(c.fpn_dim, c.conv_norm_eps));
      this->register_module("lateral_convs." + std::to_string(l), *lateral_.back());
      this->register_module("fpn_convs." + std::to_string(l), *fpn_.back());
      if (c.fpn_with_ln) this->register_module("fpn_norms." + std::to_string(l), *norms_.back());
    }
  }
  std::vector<Var<T>> forward(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>& lengths) override {
    const int L = cfg_.num_levels(), s0 = cfg_.fpn_start_level;
    std::vector<Var<T>> lat(L);
    for (int l = 0; l < L; ++l) lat[l] = lateral_[l]->forward(feats[l + s0], lengths[l + s0]);
    for (int l = L - 1; l > 0; --l) lat[l - 1] = add(lat[l - 1], upsample_nearest_time(lat[l], cfg_.scale_factor));
    std::vector<Var<T>> out;
    for (int l = 0; l < L; ++l) {
      Var<T> x = fpn_[l]->forward(lat[l], lengths[l + s0]);
      out.push_back(cfg_.fpn_with_ln ? norms_[l]->forward(x) : x);
    }
    return out;
  }

 private:
  DetectorConfig cfg_;
  std::vector<std::unique_ptr<nn::MaskedConv1d<T>>> lateral_, fpn_;
  std::vector<std::unique_ptr<nn::LayerNorm<T>>> norms_;
};

template <class T>
std::unique_ptr<Neck<T>> make_neck(const DetectorConfig& c, Rng& rng) {
  if (c.fpn_type == "fpn") return std::make_unique<FpnNeck<T>>(c, rng);
  return std::make_unique<IdentityNeck<T>>(c);
}

}  // namespace flowless::models
