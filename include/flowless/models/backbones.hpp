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
//   TemporalMaxer's own configs (mask_embedding false) leave the embedding's
//   padded steps unmasked, so level 0 and the first pooling see them.
// SGPBackbone (TriDet, reference "SGP"): the same embedding and position
//   encoding, SGPBlocks (models/sgp_block.hpp) in place of the transformer
//   blocks; nothing after the embedding is masked except each block's residual.
// Parameter names match the reference ("embd.0.conv.weight", "stem.1.ln1.weight", ...).
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "flowless/models/blocks.hpp"
#include "flowless/models/detector_config.hpp"
#include "flowless/models/sgp_block.hpp"
#include "flowless/ops/resample.hpp"

namespace flowless::models {

template <class T>
using Pyramid = std::pair<std::vector<Var<T>>, std::vector<std::vector<int>>>;  // feats[l], lengths[l][b]

template <class T>
class Backbone : public nn::Module<T> {
 public:
  virtual Pyramid<T> forward(const Var<T>& x, const std::vector<int>& lengths, Rng& rng) = 0;
};

/// Shared conv embedding: arch[0] x [masked conv -> LN -> ReLU], with
/// conv_remask (OpenTAD's ConvModule) the padded steps zeroed after each ReLU.
template <class T>
class ConvEmbedding {
 public:
  ConvEmbedding(const DetectorConfig& c, Rng& rng) : with_ln_(c.embd_with_ln), remask_(c.conv_remask) {
    for (int i = 0; i < c.backbone_arch[0]; ++i) {
      int cin = i == 0 ? c.input_dim : c.embd_dim;
      convs_.push_back(std::make_unique<nn::MaskedConv1d<T>>(cin, c.embd_dim, c.embd_kernel_size, 1,
                                                              c.embd_kernel_size / 2, 1, !c.embd_with_ln, &rng));
      norms_.push_back(std::make_unique<nn::LayerNorm<T>>(c.embd_dim, c.conv_norm_eps));
    }
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
  std::vector<std::unique_ptr<nn::MaskedConv1d<T>>> convs_;
  std::vector<std::unique_ptr<nn::LayerNorm<T>>> norms_;
  bool with_ln_, remask_;
};

/// Sinusoidal table (n_pos, C) scaled by 1/sqrt(C), as the reference's buffer
/// get_sinusoid_encoding(n_pos, C) / C**0.5: angles and sin/cos in double,
/// rounded to T, then divided in T.
template <class T>
Tensor<T> sinusoid_encoding(int64_t n_pos, int64_t C) {
  Tensor<T> pe(Shape{n_pos, C});
  const T root = static_cast<T>(std::sqrt(static_cast<double>(C)));
  for (int64_t p = 0; p < n_pos; ++p)
    for (int64_t i = 0; i < C; ++i) {
      double angle = double(p) / std::pow(10000.0, 2.0 * double(i / 2) / double(C));
      pe[p * C + i] = static_cast<T>(i % 2 == 0 ? std::sin(angle) : std::cos(angle)) / root;
    }
  return pe;
}

/// The absolute position encoding added to a sequence of Tn steps, (Tn, C),
/// from the (max_len, C) table (sinusoid_encoding): its first Tn rows, or at
/// inference when Tn >= max_len the whole table linearly re-interpolated to Tn
/// rows (F.interpolate(pos_embd, Tn, mode='linear', align_corners=False)).
template <class T>
Tensor<T> abs_position_encoding(const Tensor<T>& table, int64_t Tn, bool training) {
  const int64_t max_len = table.size(0), C = table.size(1);
  FLOWLESS_CHECK(!training || Tn <= max_len, "ConvTransformerBackbone: sequence of ", Tn, " exceeds max_seq_len ",
                 max_len, " in training");
  Tensor<T> out(Shape{Tn, C});
  if (!training && Tn >= max_len) {
    std::vector<T> r = resample_linear(table.data(), max_len, C, Tn);
    std::copy(r.begin(), r.end(), out.data());
  } else {
    std::copy(table.data(), table.data() + Tn * C, out.data());
  }
  return out;
}

/// The same with the table built here.
template <class T>
Tensor<T> abs_position_encoding(int64_t max_len, int64_t C, int64_t Tn, bool training) {
  return abs_position_encoding(sinusoid_encoding<T>(max_len, C), Tn, training);
}

/// pe[:T] * mask as a (B, Tn, C) constant: abs_position_encoding of the
/// (max_len, C) table, zero at each element's padded steps.
template <class T>
Var<T> masked_position_encoding(const Tensor<T>& table_max_len, int64_t B, int64_t Tn, const std::vector<int>& lengths,
                                bool training) {
  const int64_t C = table_max_len.size(1);
  Tensor<T> table = abs_position_encoding(table_max_len, Tn, training);
  Tensor<T> pe = Tensor<T>::zeros(Shape{B, Tn, C});
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = std::min<int64_t>(Tn, lengths[size_t(b)]);
    std::copy(table.data(), table.data() + n * C, pe.data() + b * Tn * C);
  }
  return Var<T>(pe);
}

/// The pyramid shared by ActionFormer and TriDet: the conv embedding, the
/// optional absolute position encoding, arch[1] stem blocks and arch[2] branch
/// blocks (names "stem.i", "branch.i"); levels = stem output + each branch
/// output. Block: forward(x, lengths, rng) -> (y, out lengths).
/// make_block(is_branch, i) builds stem block i or branch block i.
template <class T, class Block>
class StackedBackbone : public Backbone<T> {
 public:
  template <class MakeBlock>
  StackedBackbone(const DetectorConfig& c, Rng& rng, MakeBlock&& make_block) : cfg_(c), embedding_(c, rng) {
    // Built once, as the reference's pos_embd buffer (not a parameter, not saved).
    if (c.use_abs_pe) pos_table_ = sinusoid_encoding<T>(c.max_seq_len, c.embd_dim);
    for (size_t i = 0; i < embedding_.convs_.size(); ++i) {
      this->register_module("embd." + std::to_string(i), *embedding_.convs_[i]);
      if (c.embd_with_ln) this->register_module("embd_norm." + std::to_string(i), *embedding_.norms_[i]);
    }
    for (int i = 0; i < c.backbone_arch[1]; ++i) {
      stem_.push_back(make_block(false, i));
      this->register_module("stem." + std::to_string(i), *stem_.back());
    }
    for (int i = 0; i < c.backbone_arch[2]; ++i) {
      branch_.push_back(make_block(true, i));
      this->register_module("branch." + std::to_string(i), *branch_.back());
    }
  }

  Pyramid<T> forward(const Var<T>& x_in, const std::vector<int>& lengths, Rng& rng) override {
    Var<T> x = embedding_.forward(x_in, lengths);
    if (cfg_.use_abs_pe) x = add(x, masked_position_encoding(pos_table_, x.size(0), x.size(1), lengths, this->is_training()));
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
  DetectorConfig cfg_;
  ConvEmbedding<T> embedding_;
  std::vector<std::unique_ptr<Block>> stem_, branch_;
  Tensor<T> pos_table_;  // (max_seq_len, embd_dim) sinusoid table when use_abs_pe
};

/// ActionFormer's pyramid: TransformerBlocks, stem windows mha_win_size[0],
/// branch block i window mha_win_size[1 + i] and stride scale_factor.
template <class T>
class ConvTransformerBackbone : public StackedBackbone<T, TransformerBlock<T>> {
 public:
  ConvTransformerBackbone(const DetectorConfig& c, Rng& rng)
      : StackedBackbone<T, TransformerBlock<T>>(c, rng, [&](bool branch, int i) {
          return std::make_unique<TransformerBlock<T>>(c.embd_dim, c.n_head, branch ? c.scale_factor : 1,
                                                       c.mha_win_size[size_t(branch ? 1 + i : 0)], c.droppath, rng);
        }) {}
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
    // TemporalMaxer keeps the embedding's padded steps (mask_embedding false).
    Var<T> x = embedding_.forward(x_in, lengths);
    if (cfg_.mask_embedding) x = mask_time(x, lengths);
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

/// TriDet's SGP pyramid (reference "SGP"): SGPBlocks; stem blocks have
/// window 1, stride 1 and no drop path whatever the config's windows say, as
/// the reference builds them; branch block i has window sgp_win_size[1 + i]
/// (mha_win_size here), stride scale_factor and drop path droppath. The
/// depthwise weights start N(0, init_conv_vars).
template <class T>
class SGPBackbone : public StackedBackbone<T, SGPBlock<T>> {
 public:
  SGPBackbone(const DetectorConfig& c, Rng& rng)
      : StackedBackbone<T, SGPBlock<T>>(c, rng, [&](bool branch, int i) {
          auto b = branch ? std::make_unique<SGPBlock<T>>(c.embd_dim, c.mha_win_size[size_t(1 + i)], c.scale_factor,
                                                          c.sgp_k, c.sgp_mlp_dim, c.droppath, rng)
                          : std::make_unique<SGPBlock<T>>(c.embd_dim, 1, 1, c.sgp_k, c.sgp_mlp_dim, 0.0, rng);
          b->reset_depthwise(c.sgp_init_conv_vars, rng);
          return b;
        }) {}
};

template <class T>
std::unique_ptr<Backbone<T>> make_backbone(const DetectorConfig& c, Rng& rng) {
  if (c.arch == "temporalmaxer") return std::make_unique<ConvPoolerBackbone<T>>(c, rng);
  if (c.arch == "tridet") return std::make_unique<SGPBackbone<T>>(c, rng);
  return std::make_unique<ConvTransformerBackbone<T>>(c, rng);
}

}  // namespace flowless::models
