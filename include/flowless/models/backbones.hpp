// flowless/models/backbones.hpp - feature pyramids.
//
// Backbone<T>::forward(x: (B, T, Cin), lengths) -> per level l = 0..L-1:
//   feats[l]: (B, T / 2^l, D), lengths[l]: valid length per batch element.
// ConvTransformerBackbone (ActionFormer, reference "convTransformer"):
//   arch[0] x [masked conv k -> LayerNorm -> ReLU] embedding, optional
//   sinusoidal absolute position encoding, arch[1] stem TransformerBlocks
//   (stride 1), arch[2] branch TransformerBlocks (stride 2); levels = stem
//   output + each branch output.
// ConvPoolerBackbone (TemporalMaxer-style, reference "convPooler"): the same
//   embedding, then arch[2] parameter-free masked max-poolings (k3, s2, p1).
// Parameter names match the reference ("embd.0.conv.weight", "stem.1.ln1.weight", ...).
#pragma once

#include <cmath>
#include <memory>
#include <vector>

#include "flowless/models/blocks.hpp"
#include "flowless/models/detector_config.hpp"

namespace flowless::models {

template <class T>
using Pyramid = std::pair<std::vector<Var<T>>, std::vector<std::vector<int>>>;  // feats[l], lengths[l][b]

template <class T>
class Backbone : public nn::Module<T> {
 public:
  virtual Pyramid<T> forward(const Var<T>& x, const std::vector<int>& lengths, Rng& rng) = 0;
};

/// Shared conv embedding: arch[0] x [masked conv -> LN -> ReLU].
template <class T>
class ConvEmbedding {
 public:
  ConvEmbedding(const DetectorConfig& c, Rng& rng) : with_ln_(c.embd_with_ln) {
    for (int i = 0; i < c.backbone_arch[0]; ++i) {
      int cin = i == 0 ? c.input_dim : c.embd_dim;
      convs_.push_back(std::make_unique<nn::MaskedConv1d<T>>(cin, c.embd_dim, c.embd_kernel_size, 1,
                                                              c.embd_kernel_size / 2, 1, !c.embd_with_ln, &rng));
      norms_.push_back(std::make_unique<nn::LayerNorm<T>>(c.embd_dim));
    }
  }
  Var<T> forward(Var<T> x, const std::vector<int>& lengths) {
    for (size_t i = 0; i < convs_.size(); ++i) {
      x = convs_[i]->forward(x, lengths);
      if (with_ln_) x = norms_[i]->forward(x);
      x = relu(x);
    }
    return x;
  }
  std::vector<std::unique_ptr<nn::MaskedConv1d<T>>> convs_;
  std::vector<std::unique_ptr<nn::LayerNorm<T>>> norms_;
  bool with_ln_;
};

/// Sinusoidal table (T, C) scaled by 1/sqrt(C), as get_sinusoid_encoding.
template <class T>
Tensor<T> sinusoid_encoding(int64_t n_pos, int64_t C) {
  Tensor<T> pe(Shape{n_pos, C});
  for (int64_t p = 0; p < n_pos; ++p)
    for (int64_t i = 0; i < C; ++i) {
      double angle = double(p) / std::pow(10000.0, 2.0 * double(i / 2) / double(C));
      pe[p * C + i] = T((i % 2 == 0 ? std::sin(angle) : std::cos(angle)) / std::sqrt(double(C)));
    }
  return pe;
}

template <class T>
class ConvTransformerBackbone : public Backbone<T> {
 public:
  ConvTransformerBackbone(const DetectorConfig& c, Rng& rng) : cfg_(c), embedding_(c, rng) {
    for (size_t i = 0; i < embedding_.convs_.size(); ++i) {
      this->register_module("embd." + std::to_string(i), *embedding_.convs_[i]);
      if (c.embd_with_ln) this->register_module("embd_norm." + std::to_string(i), *embedding_.norms_[i]);
    }
    for (int i = 0; i < c.backbone_arch[1]; ++i) {
      stem_.push_back(std::make_unique<TransformerBlock<T>>(c.embd_dim, c.n_head, 1, c.mha_win_size[0], c.droppath, rng));
      this->register_module("stem." + std::to_string(i), *stem_.back());
    }
    for (int i = 0; i < c.backbone_arch[2]; ++i) {
      branch_.push_back(std::make_unique<TransformerBlock<T>>(c.embd_dim, c.n_head, c.scale_factor,
                                                              c.mha_win_size[1 + i], c.droppath, rng));
      this->register_module("branch." + std::to_string(i), *branch_.back());
    }
  }

  Pyramid<T> forward(const Var<T>& x_in, const std::vector<int>& lengths, Rng& rng) override {
    Var<T> x = embedding_.forward(x_in, lengths);
    if (cfg_.use_abs_pe) x = add(x, position_encoding(x.size(0), x.size(1), lengths));
    std::vector<int> len = lengths;
    for (auto& b : stem_) std::tie(x, len) = b->forward(x, len, rng);
    Pyramid<T> out;
    out.first.push_back(x);
    out.second.push_back(len);
    for (auto& b : branch_) {
      std::tie(x, len) = b->forward(x, len, rng);
      out.first.push_back(x);
      out.second.push_back(len);
    }
    return out;
  }

 private:
  // pe[:T] * mask, linearly re-interpolated (align_corners=False) at inference when T >= max_len.
  Var<T> position_encoding(int64_t B, int64_t Tn, const std::vector<int>& lengths) const {
    const int64_t C = cfg_.embd_dim, L = cfg_.max_seq_len;
    Tensor<T> table = sinusoid_encoding<T>(L, C);
    Tensor<T> pe = Tensor<T>::zeros(Shape{B, Tn, C});
    const bool interp = !this->is_training() && Tn >= L;
    FLOWLESS_CHECK(interp || Tn <= L, "ConvTransformerBackbone: sequence of ", Tn, " exceeds max_seq_len ", L,
                   " in training");
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < std::min<int64_t>(Tn, lengths[b]); ++t) {
        T* dst = pe.data() + (b * Tn + t) * C;
        if (!interp) {
          std::copy(table.data() + t * C, table.data() + (t + 1) * C, dst);
        } else {
          double src = (double(t) + 0.5) * double(L) / double(Tn) - 0.5;
          if (src < 0) src = 0;
          int64_t i0 = std::min<int64_t>(int64_t(src), L - 1), i1 = std::min<int64_t>(i0 + 1, L - 1);
          double w1 = src - double(i0), w0 = 1 - w1;
          for (int64_t c = 0; c < C; ++c) dst[c] = T(w0 * table[i0 * C + c] + w1 * table[i1 * C + c]);
        }
      }
    return Var<T>(pe);
  }

  DetectorConfig cfg_;
  ConvEmbedding<T> embedding_;
  std::vector<std::unique_ptr<TransformerBlock<T>>> stem_, branch_;
};

template <class T>
class ConvPoolerBackbone : public Backbone<T> {
 public:
  ConvPoolerBackbone(const DetectorConfig& c, Rng& rng) : cfg_(c), embedding_(c, rng) {
    for (size_t i = 0; i < embedding_.convs_.size(); ++i) {
      this->register_module("embd." + std::to_string(i), *embedding_.convs_[i]);
      if (c.embd_with_ln) this->register_module("embd_norm." + std::to_string(i), *embedding_.norms_[i]);
    }
  }
  Pyramid<T> forward(const Var<T>& x_in, const std::vector<int>& lengths, Rng&) override {
    Var<T> x = mask_time(embedding_.forward(x_in, lengths), lengths);
    std::vector<int> len = lengths;
    Pyramid<T> out;
    out.first.push_back(x);
    out.second.push_back(len);
    for (int i = 0; i < cfg_.backbone_arch[2]; ++i) {
      len = conv_out_lengths(len, cfg_.scale_factor);
      x = mask_time(max_pool1d(x, cfg_.scale_factor + 1, cfg_.scale_factor, (cfg_.scale_factor + 1) / 2), len);
      out.first.push_back(x);
      out.second.push_back(len);
    }
    return out;
  }

 private:
  DetectorConfig cfg_;
  ConvEmbedding<T> embedding_;
};

template <class T>
std::unique_ptr<Backbone<T>> make_backbone(const DetectorConfig& c, Rng& rng) {
  if (c.arch == "temporalmaxer") return std::make_unique<ConvPoolerBackbone<T>>(c, rng);
  return std::make_unique<ConvTransformerBackbone<T>>(c, rng);
}

}  // namespace flowless::models
