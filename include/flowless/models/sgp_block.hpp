// flowless/models/sgp_block.hpp - TriDet's Scalable-Granularity Perception
// block (the reference's SGPBlock, libs/modeling/blocks.py of
// github.com/dingfengshi/TriDet), the layer its backbone stacks instead of
// ActionFormer's transformer blocks.
//
// SGPBlock<T>(C, kernel w, stride, k, hidden H, path_pdrop)
//   forward(x: (B, T, C), lengths) -> (B, T / stride, C), out lengths
//   x    = MaxPool1d(stride + 1, stride, (stride + 1) / 2)(x) when stride > 1
//   u    = LN(x)                                   (over C, every step)
//   phi  = ReLU(global_fc(mean_t(u)))              (B, 1, C): one gate per
//                                                  video and channel, the mean
//                                                  over the whole buffer
//   out  = fc(u) * phi + (convw(u) + convkw(u)) * psi(u) + u
//   out  = x * mask + DropPath_out(out)
//   out  = out + DropPath_mlp(MLP(GN(out)))        MLP = 1x1 C -> H, GELU, 1x1 H -> C
//   psi, convw: depthwise conv of size w; convkw: depthwise of size
//   round((w + 1) * k), made odd (Python's round: half to even); fc,
//   global_fc: depthwise 1x1 (per-channel affine); GN = GroupNorm(16, C).
// Nothing inside the block is masked except the residual x: the padded steps
// carry values and take part in the mean, the group norm and the
// convolutions, exactly as in the reference, whose inference pads to
// max_seq_len (DetectorConfig.inference_padding "max_seq_len") - the outputs
// at valid steps depend on that padding.
// Parameter names: ln.*, gn.*, psi.*, fc.*, convw.*, convkw.*, global_fc.*,
// mlp.0.*, mlp.2.*, drop_path_out.scale, drop_path_mlp.scale (the last two
// only when path_pdrop > 0, as the reference builds them).
#pragma once

#include <cmath>
#include <utility>
#include <vector>

#include "flowless/nn/layers.hpp"
#include "flowless/ops/activations.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/pooling.hpp"
#include "flowless/ops/time_broadcast.hpp"

namespace flowless::models {

/// Size of the SGP block's wide depthwise kernel: round((w + 1) * k) with
/// Python's round (half to even), plus 1 when even.
inline int sgp_wide_kernel(int w, double k) {
  const double v = std::nearbyint(double(w + 1) * k);  // default rounding mode: to nearest, ties to even
  FLOWLESS_CHECK(std::isfinite(v) && v >= 0 && v <= 4095, "SGPBlock: wide kernel round((", w, " + 1) * ", k,
                 ") is outside [0, 4095]");
  const int up = int(v);
  return up % 2 == 0 ? up + 1 : up;
}

template <class T>
class SGPBlock : public nn::Module<T> {
 public:
  SGPBlock(int n_embd, int kernel_size, int stride, double k, int n_hidden, double path_pdrop, Rng& rng)
      : stride_(stride), ln(n_embd), gn(check_groups(n_embd), n_embd),
        psi(n_embd, n_embd, check_kernel(kernel_size), 1, kernel_size / 2, n_embd, true, &rng),
        fc(n_embd, n_embd, 1, 1, 0, n_embd, true, &rng),
        convw(n_embd, n_embd, kernel_size, 1, kernel_size / 2, n_embd, true, &rng),
        convkw(n_embd, n_embd, sgp_wide_kernel(kernel_size, k), 1, sgp_wide_kernel(kernel_size, k) / 2, n_embd, true, &rng),
        global_fc(n_embd, n_embd, 1, 1, 0, n_embd, true, &rng),
        mlp0(n_embd, n_hidden, 1, 1, 0, 1, true, &rng), mlp2(n_hidden, n_embd, 1, 1, 0, 1, true, &rng),
        drop_path_out(n_embd, path_pdrop), drop_path_mlp(n_embd, path_pdrop), has_drop_path_(path_pdrop > 0) {
    FLOWLESS_CHECK(stride >= 1, "SGPBlock: stride ", stride);
    this->register_module("ln", ln);
    this->register_module("gn", gn);
    this->register_module("psi", psi);
    this->register_module("fc", fc);
    this->register_module("convw", convw);
    this->register_module("convkw", convkw);
    this->register_module("global_fc", global_fc);
    this->register_module("mlp.0", mlp0);
    this->register_module("mlp.2", mlp2);
    if (has_drop_path_) {
      this->register_module("drop_path_out", drop_path_out);
      this->register_module("drop_path_mlp", drop_path_mlp);
    }
    // The reference zeroes every conv bias (SGPBlock.reset_params and the
    // backbone's init); its depthwise weights start N(0, init_conv_vars).
    for (auto* c : {&psi, &fc, &convw, &convkw, &global_fc, &mlp0, &mlp2}) c->bias().value().zero_();
  }

  /// Re-draws the five depthwise weights from N(0, std) (the reference's
  /// init_conv_vars; 0 makes them zero).
  void reset_depthwise(double std, Rng& rng) {
    for (auto* c : {&psi, &fc, &convw, &convkw, &global_fc}) {
      Tensor<T>& w = c->weight().value();
      for (int64_t i = 0; i < w.numel(); ++i) w[i] = T(std * rng.normal());
    }
  }

  std::pair<Var<T>, std::vector<int>> forward(const Var<T>& x_in, const std::vector<int>& lengths, Rng& rng) {
    Var<T> x = stride_ > 1 ? max_pool1d(x_in, stride_ + 1, stride_, (stride_ + 1) / 2) : x_in;
    const std::vector<int> out_len = stride_ > 1 ? conv_out_lengths(lengths, stride_) : lengths;
    Var<T> u = ln.forward(x);
    Var<T> phi = relu(global_fc.forward(mean_time(u)));
    Var<T> out = add(add(mul_time_broadcast(fc.forward(u), phi), mul(add(convw.forward(u), convkw.forward(u)), psi.forward(u))), u);
    out = add(mask_time(x, out_len), has_drop_path_ ? drop_path_out.forward(out, rng) : out);
    Var<T> m = mlp2.forward(gelu(mlp0.forward(gn.forward(out))));
    return {add(out, has_drop_path_ ? drop_path_mlp.forward(m, rng) : m), out_len};
  }

  int stride() const { return stride_; }

 private:
  static int check_groups(int n_embd) {
    FLOWLESS_CHECK(n_embd % 16 == 0, "SGPBlock: GroupNorm(16, C) needs C divisible by 16, got ", n_embd);
    return 16;
  }
  static int check_kernel(int w) {
    FLOWLESS_CHECK(w >= 1 && w % 2 == 1, "SGPBlock: window ", w, " must be odd and >= 1");
    return w;
  }
  int stride_;

 public:
  nn::LayerNorm<T> ln;
  nn::GroupNorm<T> gn;
  nn::Conv1d<T> psi, fc, convw, convkw, global_fc, mlp0, mlp2;
  nn::AffineDropPath<T> drop_path_out, drop_path_mlp;

 private:
  bool has_drop_path_;
};

}  // namespace flowless::models
