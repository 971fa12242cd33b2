// flowless/ops/conv1d.hpp - masked 1-D convolution (forward + backward).
//
//   y = conv1d(x, weight, bias, opt)
//   x      : (B, T, Cin)                 time-major input
//   weight : (Cout, Cin / groups, K)     PyTorch's Conv1d layout (checkpoints load as-is)
//   bias   : (Cout) or undefined Var     optional
//   y      : (B, T_out, Cout), T_out = (T + 2 * padding - K) / stride + 1
// Masking (opt.lengths non-empty, one valid length per batch element): the
// output is zeroed at t >= ceil(len / stride), i.e. the reference's
// MaskedConv1D, whose mask is downsampled by nearest neighbour (index s*i is
// kept). Use conv_out_lengths() to get those lengths. The input is not
// masked by this op (the reference relies on upstream masking).
//
// Implementation: groups == 1 is one GEMM per batch element and row tile,
// reading input patches in place (K*Cin consecutive values per output step);
// depthwise (groups == Cin == Cout) is a vectorised loop over channels; other
// group counts use one GEMM per group and tap.
#pragma once

#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/backend/cpu_gemm.hpp"

namespace flowless {

struct Conv1dOptions {
  int stride = 1;
  int padding = 0;
  int groups = 1;
  std::vector<int> lengths;  // valid input lengths per batch element; empty = no mask
};

/// Valid lengths after a stride-s masked conv / pooling (nearest downsampling).
inline std::vector<int> conv_out_lengths(const std::vector<int>& lengths, int stride) {
  std::vector<int> out(lengths.size());
  for (size_t i = 0; i < lengths.size(); ++i) out[i] = (lengths[i] + stride - 1) / stride;
  return out;
}

namespace detail {

// Zero-padded copy of x_b (T, C) with `pad` rows before and enough after.
template <class T>
std::vector<T> pad_rows(const T* x, int64_t Tn, int64_t C, int64_t pad_before, int64_t total_rows) {
  std::vector<T> xp(static_cast<size_t>(total_rows * C), T(0));
  int64_t n = std::min<int64_t>(Tn, total_rows - pad_before);
  std::copy(x, x + n * C, xp.data() + pad_before * C);
  return xp;
}

template <class T>
void apply_length_mask(T* y, int64_t B, int64_t Tout, int64_t C, const std::vector<int>& out_len) {
  if (out_len.empty()) return;
  for (int64_t b = 0; b < B; ++b) {
    int64_t L = std::min<int64_t>(out_len[b], Tout);
    std::fill(y + (b * Tout + L) * C, y + (b + 1) * Tout * C, T(0));
  }
}

}  // namespace detail

template <class T>
Var<T> conv1d(const Var<T>& x, const Var<T>& weight, const Var<T>& bias, const Conv1dOptions& opt) {
  const Tensor<T>& X = x.value();
  const Tensor<T>& W = weight.value();
  FLOWLESS_CHECK(X.dim() == 3, "conv1d: x must be (B, T, C), got ", X.shape().str());
  FLOWLESS_CHECK(W.dim() == 3, "conv1d: weight must be (Cout, Cin/groups, K), got ", W.shape().str());
  const int64_t B = X.size(0), Tn = X.size(1), Cin = X.size(2);
  const int64_t Cout = W.size(0), K = W.size(2), G = opt.groups, s = opt.stride, p = opt.padding;
  FLOWLESS_CHECK(G >= 1 && Cin % G == 0 && Cout % G == 0 && W.size(1) == Cin / G, "conv1d: weight ",
                 W.shape().str(), " does not fit input channels ", Cin, " with groups ", G);
  FLOWLESS_CHECK(s >= 1 && p >= 0 && K >= 1, "conv1d: bad stride/padding/kernel");
  const int64_t Tout = (Tn + 2 * p - K) / s + 1;
  FLOWLESS_CHECK(Tout >= 1, "conv1d: input length ", Tn, " too short for kernel ", K);
  FLOWLESS_CHECK(opt.lengths.empty() || int64_t(opt.lengths.size()) == B, "conv1d: ", opt.lengths.size(),
                 " lengths for batch ", B);
  const bool has_bias = bias.defined();
  if (has_bias) FLOWLESS_CHECK(bias.value().numel() == Cout, "conv1d: bias has ", bias.value().numel(), " values, expected ", Cout);
  const std::vector<int> out_len = opt.lengths.empty() ? std::vector<int>{} : conv_out_lengths(opt.lengths, int(s));
  const bool depthwise = (G == Cin && G == Cout);
  const int64_t rows = (Tout - 1) * s + K;  // padded input rows actually read

  Tensor<T> Y(Shape{B, Tout, Cout});
  // Weight rearranged for the GEMM path: Wr[k*Cg + i, o] = W[o, i, k] (per group).
  const int64_t Cg = Cin / G, Og = Cout / G;
  std::vector<T> Wr;
  if (!depthwise) {
    Wr.resize(static_cast<size_t>(G * K * Cg * Og));
    const T* w = W.data();
    for (int64_t g = 0; g < G; ++g)
      for (int64_t o = 0; o < Og; ++o)
        for (int64_t i = 0; i < Cg; ++i)
          for (int64_t k = 0; k < K; ++k)
            Wr[((g * K + k) * Cg + i) * Og + o] = w[((g * Og + o) * Cg + i) * K + k];
  }
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = X.data() + b * Tn * Cin;
    T* yb = Y.data() + b * Tout * Cout;
    std::vector<T> xpv;
    const T* xp = xb;
    if (p != 0 || rows > Tn) {
      xpv = detail::pad_rows(xb, Tn, Cin, p, std::max<int64_t>(rows, Tn + p));
      xp = xpv.data();
    }
    if (depthwise) {
      const T* w = W.data();
      parallel_for(Tout, 64, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          T* yr = yb + t * Cout;
          for (int64_t c = 0; c < Cout; ++c) yr[c] = has_bias ? bias.value().data()[c] : T(0);
          for (int64_t k = 0; k < K; ++k) {
            const T* xr = xp + (t * s + k) * Cin;
            for (int64_t c = 0; c < Cout; ++c) yr[c] += w[c * K + k] * xr[c];
          }
        }
      });
    } else if (G == 1) {
      cpu::gemm<T>(false, false, Tout, Cout, K * Cin, T(1), xp, s * Cin, Wr.data(), Cout, T(0), yb, Cout);
    } else {
      for (int64_t g = 0; g < G; ++g)
        for (int64_t k = 0; k < K; ++k)
          cpu::gemm<T>(false, false, Tout, Og, Cg, T(1), xp + k * Cin + g * Cg, s * Cin, Wr.data() + (g * K + k) * Cg * Og,
                       Og, k == 0 ? T(0) : T(1), yb + g * Og, Cout);
    }
    if (has_bias && !depthwise) {
      const T* bv = bias.value().data();
      for (int64_t t = 0; t < Tout; ++t)
        for (int64_t c = 0; c < Cout; ++c) yb[t * Cout + c] += bv[c];
    }
  }
  detail::apply_length_mask(Y.data(), B, Tout, Cout, out_len);

  return make_op<T>(std::move(Y), {x, weight, bias}, "conv1d",
                    [=, Wr = std::move(Wr)](Node<T>& out) {
    // dy with the output mask applied.
    Tensor<T> dY = out.grad.clone();
    detail::apply_length_mask(dY.data(), B, Tout, Cout, out_len);
    const Tensor<T>& Xv = out.inputs[0]->value;
    const Tensor<T>& Wv = out.inputs[1]->value;
    if (out.needs_grad(2)) {
      T* db = out.input_grad(2).data();
      parallel_for(Cout, 256, [&](int64_t c0, int64_t c1) {
        for (int64_t b = 0; b < B; ++b)
          for (int64_t t = 0; t < Tout; ++t)
            for (int64_t c = c0; c < c1; ++c) db[c] += dY.data()[(b * Tout + t) * Cout + c];
      });
    }
    const bool need_x = out.needs_grad(0), need_w = out.needs_grad(1);
    if (!need_x && !need_w) return;
    std::vector<T> dWr(need_w && !depthwise ? Wr.size() : 0, T(0));
    for (int64_t b = 0; b < B; ++b) {
      const T* xb = Xv.data() + b * Tn * Cin;
      const T* dyb = dY.data() + b * Tout * Cout;
      std::vector<T> xpv;
      const T* xp = xb;
      if (need_w && (p != 0 || rows > Tn)) {
        xpv = detail::pad_rows(xb, Tn, Cin, p, std::max<int64_t>(rows, Tn + p));
        xp = xpv.data();
      }
      if (depthwise) {
        const T* w = Wv.data();
        if (need_w) {
          T* dw = out.input_grad(1).data();
          parallel_for(Cout, 64, [&](int64_t c0, int64_t c1) {
            for (int64_t k = 0; k < K; ++k)
              for (int64_t t = 0; t < Tout; ++t) {
                const T* xr = xp + (t * s + k) * Cin;
                const T* dr = dyb + t * Cout;
                for (int64_t c = c0; c < c1; ++c) dw[c * K + k] += dr[c] * xr[c];
              }
          });
        }
        if (need_x) {
          T* dx = out.input_grad(0).data() + b * Tn * Cin;
          parallel_for(Tn, 64, [&](int64_t j0, int64_t j1) {
            for (int64_t j = j0; j < j1; ++j)
              for (int64_t k = 0; k < K; ++k) {
                int64_t num = j + p - k;
                if (num < 0 || num % s) continue;
                int64_t t = num / s;
                if (t >= Tout) continue;
                const T* dr = dyb + t * Cout;
                for (int64_t c = 0; c < Cout; ++c) dx[j * Cin + c] += w[c * K + k] * dr[c];
              }
          });
        }
        continue;
      }
      if (need_w) {
        if (G == 1) {
          cpu::gemm<T>(true, false, K * Cin, Cout, Tout, T(1), xp, s * Cin, dyb, Cout, T(1), dWr.data(), Cout);
        } else {
          for (int64_t g = 0; g < G; ++g)
            for (int64_t k = 0; k < K; ++k)
              cpu::gemm<T>(true, false, Cg, Og, Tout, T(1), xp + k * Cin + g * Cg, s * Cin, dyb + g * Og, Cout, T(1),
                           dWr.data() + (g * K + k) * Cg * Og, Og);
        }
      }
      if (need_x) {
        // dP(Tout, G*K*Cg) = dY @ Wr^T per group, then overlap-add into dx.
        std::vector<T> dP(static_cast<size_t>(Tout * K * Cin));
        for (int64_t g = 0; g < G; ++g)
          for (int64_t k = 0; k < K; ++k)
            cpu::gemm<T>(false, true, Tout, Cg, Og, T(1), dyb + g * Og, Cout, Wr.data() + (g * K + k) * Cg * Og, Og,
                         T(0), dP.data() + k * Cin + g * Cg, K * Cin);
        T* dx = out.input_grad(0).data() + b * Tn * Cin;
        parallel_for(Tn, 64, [&](int64_t j0, int64_t j1) {
          for (int64_t j = j0; j < j1; ++j)
            for (int64_t k = 0; k < K; ++k) {
              int64_t num = j + p - k;
              if (num < 0 || num % s) continue;
              int64_t t = num / s;
              if (t >= Tout) continue;
              const T* src = dP.data() + t * K * Cin + k * Cin;
              for (int64_t c = 0; c < Cin; ++c) dx[j * Cin + c] += src[c];
            }
        });
      }
    }
    if (need_w && !depthwise) {
      T* dw = out.input_grad(1).data();
      for (int64_t g = 0; g < G; ++g)
        for (int64_t o = 0; o < Og; ++o)
          for (int64_t i = 0; i < Cg; ++i)
            for (int64_t k = 0; k < K; ++k)
              dw[((g * Og + o) * Cg + i) * K + k] += dWr[((g * K + k) * Cg + i) * Og + o];
    }
  });
}

}  // namespace flowless
