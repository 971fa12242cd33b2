// flowless/nn/layers.hpp - the parameter layers of the reference
// (libs/modeling/blocks.py), as Modules over the time-major layout.
//
// Shapes: x (B, T, C); masks are valid lengths per batch element (prefix
// masks). Parameter shapes and names are the reference's, so checkpoints load
// as they are:
//   Conv1d(in, out, k, stride, padding, groups, bias, rng)
//       "weight" (out, in/groups, k) [decay], "bias" (out) [no decay]
//       forward(x): (B, T, in) -> (B, T_out, out), T_out = (T + 2p - k)/s + 1, unmasked (nn.Conv1d)
//       init: nn.Conv1d's default (init::conv_default_)
//   MaskedConv1d(same args)          (the reference's MaskedConv1D)
//       child "conv" (a Conv1d), so names are "conv.weight", "conv.bias"
//       needs odd k and padding == k/2 (as the reference asserts)
//       forward(x, lengths): conv output zeroed at t >= ceil(len / stride);
//       out_lengths(lengths) gives those lengths. Biases start at 0.
//   LayerNorm(C, eps = 1e-5, affine)  (the reference's channel LayerNorm)
//       "weight" (1, C, 1) = 1, "bias" (1, C, 1) = 0 [no decay]
//       forward(x): normalised over C (biased variance), then per-channel affine
//   GroupNorm(G, C, eps = 1e-5, affine)  (nn.GroupNorm on (B, C, T))
//       "weight" (C) = 1, "bias" (C) = 0 [no decay]
//       forward(x): per batch element and group of C/G channels, normalised
//       over all T x C/G values of the buffer (padded steps included), then
//       per-channel affine (ops/group_norm.hpp)
//   Scale(init = 1)                   "scale" (1) [no decay]; forward(x) = x * scale
//   AffineDropPath(C, drop_prob, init = 1e-4)
//       "scale" (1, C, 1) [no decay]; forward(x, rng) = drop_path(x * scale)
//       (stochastic depth per batch element, only in training mode)
// A layer given no Rng draws its initial values from nn::default_generator().
#pragma once

#include <cmath>
#include <vector>

#include "flowless/nn/init.hpp"
#include "flowless/nn/module.hpp"
#include "flowless/ops/conv1d.hpp"
#include "flowless/ops/drop_path.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/group_norm.hpp"
#include "flowless/ops/layer_norm.hpp"

namespace flowless::nn {

template <class T>
class Conv1d : public Module<T> {
 public:
  Conv1d(int64_t in_channels, int64_t out_channels, int kernel_size, int stride = 1, int padding = 0, int groups = 1,
         bool bias = true, Rng* rng = nullptr)
      : in_(in_channels), out_(out_channels), k_(kernel_size), stride_(stride), padding_(padding), groups_(groups) {
    FLOWLESS_CHECK(in_channels > 0 && out_channels > 0 && kernel_size > 0 && stride > 0 && padding >= 0 && groups > 0,
                   "Conv1d: bad configuration in=", in_channels, " out=", out_channels, " k=", kernel_size,
                   " stride=", stride, " padding=", padding, " groups=", groups);
    FLOWLESS_CHECK(in_channels % groups == 0 && out_channels % groups == 0, "Conv1d: channels ", in_channels, " -> ",
                   out_channels, " not divisible by groups ", groups);
    Rng& r = rng ? *rng : default_generator();
    Tensor<T> w(Shape{out_channels, in_channels / groups, kernel_size});
    Tensor<T> b;
    if (bias) b = Tensor<T>(Shape{out_channels});
    init::conv_default_(w, bias ? &b : nullptr, r);
    weight_ = &this->register_parameter("weight", std::move(w), true);
    if (bias) bias_ = &this->register_parameter("bias", std::move(b), false);
  }

  /// x: (B, T, in) -> (B, T_out, out), no mask.
  Var<T> forward(const Var<T>& x) const { return conv1d(x, *weight_, bias_var(), options({})); }
  /// Masked variant: output zeroed at t >= ceil(len / stride).
  Var<T> forward(const Var<T>& x, const std::vector<int>& lengths) const {
    return conv1d(x, *weight_, bias_var(), options(lengths));
  }

  Var<T>& weight() { return *weight_; }
  const Var<T>& weight() const { return *weight_; }
  bool has_bias() const { return bias_ != nullptr; }
  Var<T>& bias() {
    FLOWLESS_CHECK(bias_, "Conv1d: this convolution has no bias");
    return *bias_;
  }
  const Var<T>& bias() const {
    FLOWLESS_CHECK(bias_, "Conv1d: this convolution has no bias");
    return *bias_;
  }
  int64_t in_channels() const { return in_; }
  int64_t out_channels() const { return out_; }
  int kernel_size() const { return k_; }
  int stride() const { return stride_; }
  int padding() const { return padding_; }
  int groups() const { return groups_; }

 private:
  Var<T> bias_var() const { return bias_ ? *bias_ : Var<T>(); }
  Conv1dOptions options(const std::vector<int>& lengths) const {
    Conv1dOptions o;
    o.stride = stride_;
    o.padding = padding_;
    o.groups = groups_;
    o.lengths = lengths;
    return o;
  }
  int64_t in_, out_;
  int k_, stride_, padding_, groups_;
  Var<T>* weight_ = nullptr;
  Var<T>* bias_ = nullptr;
};

template <class T>
class MaskedConv1d : public Module<T> {
 public:
  MaskedConv1d(int64_t in_channels, int64_t out_channels, int kernel_size, int stride = 1, int padding = 0,
               int groups = 1, bool bias = true, Rng* rng = nullptr)
      : conv(check_args(in_channels, kernel_size, padding), out_channels, kernel_size, stride, padding,
             groups, bias, rng) {
    this->register_module("conv", conv);
    if (bias) conv.bias().value().zero_();  // the reference sets MaskedConv1D biases to 0
  }

  /// x: (B, T, in), lengths: valid lengths per batch element ->
  /// (B, T_out, out), zero at t >= out_lengths(lengths)[b].
  Var<T> forward(const Var<T>& x, const std::vector<int>& lengths) const {
    FLOWLESS_CHECK(int64_t(lengths.size()) == x.size(0), "MaskedConv1d: ", lengths.size(), " lengths for batch ",
                   x.size(0));
    return conv.forward(x, lengths);
  }
  std::vector<int> out_lengths(const std::vector<int>& lengths) const {
    return conv_out_lengths(lengths, conv.stride());
  }

  Conv1d<T> conv;

 private:
  static int64_t check_args(int64_t in_channels, int kernel_size, int padding) {
    FLOWLESS_CHECK(kernel_size % 2 == 1 && kernel_size / 2 == padding, "MaskedConv1d: needs an odd kernel and padding ",
                   "kernel/2, got kernel ", kernel_size, " padding ", padding);
    return in_channels;
  }
};

template <class T>
class LayerNorm : public Module<T> {
 public:
  explicit LayerNorm(int64_t channels, double eps = 1e-5, bool affine = true) : channels_(channels), eps_(eps) {
    FLOWLESS_CHECK(channels > 0 && eps > 0, "LayerNorm: bad channels ", channels, " or eps ", eps);
    if (affine) {
      weight_ = &this->register_parameter("weight", Tensor<T>::full(Shape{1, channels, 1}, T(1)), false);
      bias_ = &this->register_parameter("bias", Tensor<T>::zeros(Shape{1, channels, 1}), false);
    }
  }

  /// x: (B, T, C) -> (B, T, C), normalised over C.
  Var<T> forward(const Var<T>& x) const {
    FLOWLESS_CHECK(x.shape().nd >= 1 && x.shape()[-1] == channels_, "LayerNorm: input ", x.shape().str(),
                   " does not end in ", channels_, " channels");
    if (weight_) return layer_norm(x, *weight_, *bias_, static_cast<T>(eps_));
    return layer_norm(x, Var<T>(), Var<T>(), static_cast<T>(eps_));  // affine=False: no parameters
  }

  bool affine() const { return weight_ != nullptr; }
  Var<T>& weight() {
    FLOWLESS_CHECK(weight_, "LayerNorm: not affine");
    return *weight_;
  }
  Var<T>& bias() {
    FLOWLESS_CHECK(bias_, "LayerNorm: not affine");
    return *bias_;
  }
  int64_t channels() const { return channels_; }
  double eps() const { return eps_; }

 private:
  int64_t channels_;
  double eps_;
  Var<T>* weight_ = nullptr;
  Var<T>* bias_ = nullptr;
};

template <class T>
class GroupNorm : public Module<T> {
 public:
  GroupNorm(int groups, int64_t channels, double eps = 1e-5, bool affine = true)
      : groups_(groups), channels_(channels), eps_(eps) {
    FLOWLESS_CHECK(groups >= 1 && channels > 0 && channels % groups == 0 && eps > 0, "GroupNorm: ", channels,
                   " channels in ", groups, " groups (eps ", eps, ")");
    if (affine) {
      weight_ = &this->register_parameter("weight", Tensor<T>::full(Shape{channels}, T(1)), false);
      bias_ = &this->register_parameter("bias", Tensor<T>::zeros(Shape{channels}), false);
    }
  }

  /// x: (B, T, C) -> (B, T, C).
  Var<T> forward(const Var<T>& x) const {
    FLOWLESS_CHECK(x.shape().nd == 3 && x.size(2) == channels_, "GroupNorm: input ", x.shape().str(),
                   " is not (B, T, ", channels_, ")");
    Var<T> y = group_norm_time(x, groups_, static_cast<T>(eps_));
    if (weight_) y = add_channels(mul_channels(y, *weight_), *bias_);
    return y;
  }

  int groups() const { return groups_; }

 private:
  int groups_;
  int64_t channels_;
  double eps_;
  Var<T>* weight_ = nullptr;
  Var<T>* bias_ = nullptr;
};

template <class T>
class Scale : public Module<T> {
 public:
  explicit Scale(double init = 1.0)
      : scale_(&this->register_parameter("scale", Tensor<T>::full(Shape{1}, static_cast<T>(init)), false)) {}

  /// x (any shape) * scale.
  Var<T> forward(const Var<T>& x) const { return mul_scalar(x, *scale_); }

  Var<T>& scale() { return *scale_; }
  const Var<T>& scale() const { return *scale_; }

 private:
  Var<T>* scale_;
};

template <class T>
class AffineDropPath : public Module<T> {
 public:
  AffineDropPath(int64_t channels, double drop_prob = 0.0, double init = 1e-4)
      : channels_(channels), drop_prob_(drop_prob) {
    FLOWLESS_CHECK(channels > 0 && drop_prob >= 0 && drop_prob < 1, "AffineDropPath: bad channels ", channels,
                   " or drop_prob ", drop_prob);
    scale_ = &this->register_parameter("scale", Tensor<T>::full(Shape{1, channels, 1}, static_cast<T>(init)), false);
  }

  /// x: (B, T, C) -> drop_path(x * scale[c]); rng draws the per-sample keep
  /// decisions (only in training mode with drop_prob > 0).
  Var<T> forward(const Var<T>& x, Rng& rng) const {
    return drop_path(mul_channels(x, *scale_), drop_prob_, this->is_training(), rng);
  }

  Var<T>& scale() { return *scale_; }
  const Var<T>& scale() const { return *scale_; }
  double drop_prob() const { return drop_prob_; }

 private:
  int64_t channels_;
  double drop_prob_;
  Var<T>* scale_ = nullptr;
};

}  // namespace flowless::nn
