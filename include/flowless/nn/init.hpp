// flowless/nn/init.hpp - parameter initialisers (PyTorch's defaults) drawing
// from our deterministic Rng.
//
// The distributions are PyTorch's; the random streams are ours (Rng), so a
// given seed reproduces our runs, not PyTorch's numbers. Tensors are filled in
// row-major order.
//   fan_in(w)            : w.size(1) * prod(w.size(2..))  (Conv1d (out, in/groups, k): in/groups * k)
//   kaiming_uniform_(w, a): U(-b, b), b = sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in)
//   conv_default_(w, bias): nn.Conv1d/nn.Linear reset_parameters():
//                           kaiming_uniform_(a = sqrt(5)) => b = 1 / sqrt(fan_in),
//                           bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))
//   trunc_normal_(t, mean, std, a, b): N(mean, std) restricted to [a, b]
//                           (absolute bounds, like torch.nn.init.trunc_normal_), by rejection
// default_generator(): the process-wide Rng layers use when none is passed
// (torch's global generator); manual_seed() reseeds it.
#pragma once

#include <cmath>
#include <cstdint>

#include "flowless/core/error.hpp"
#include "flowless/core/random.hpp"
#include "flowless/core/tensor.hpp"

namespace flowless::nn {

/// The process-wide generator used when a layer is given no Rng.
inline Rng& default_generator() {
  static Rng rng(0x5eed5eedULL);
  return rng;
}
inline void manual_seed(uint64_t seed) { default_generator().reseed(seed); }

namespace init {

template <class T>
int64_t fan_in(const Tensor<T>& w) {
  FLOWLESS_CHECK(w.dim() >= 2, "init::fan_in: needs at least 2 dimensions, got ", w.shape().str());
  int64_t f = w.size(1);
  for (int i = 2; i < w.dim(); ++i) f *= w.size(i);
  return f;
}

template <class T>
void constant_(Tensor<T>& t, double v) {
  t.fill_(static_cast<T>(v));
}
template <class T>
void zeros_(Tensor<T>& t) {
  t.fill_(T(0));
}
template <class T>
void ones_(Tensor<T>& t) {
  t.fill_(T(1));
}

template <class T>
void uniform_(Tensor<T>& t, double lo, double hi, Rng& rng) {
  FLOWLESS_CHECK(lo <= hi, "init::uniform_: lo ", lo, " > hi ", hi);
  T* d = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<T>(rng.uniform(lo, hi));
}

template <class T>
void normal_(Tensor<T>& t, double mean, double std, Rng& rng) {
  FLOWLESS_CHECK(std >= 0, "init::normal_: negative std ", std);
  T* d = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = static_cast<T>(rng.normal(mean, std));
}

template <class T>
void trunc_normal_(Tensor<T>& t, double mean, double std, double a, double b, Rng& rng) {
  FLOWLESS_CHECK(std > 0 && a < b, "init::trunc_normal_: need std > 0 and a < b");
  // The acceptance probability must not be tiny, or rejection would spin.
  const double za = (a - mean) / std, zb = (b - mean) / std;
  const double mass = 0.5 * (std::erf(zb / std::sqrt(2.0)) - std::erf(za / std::sqrt(2.0)));
  FLOWLESS_CHECK(mass > 1e-4, "init::trunc_normal_: [", a, ", ", b, "] holds too little of N(", mean, ", ", std, ")");
  T* d = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) {
    double v;
    do v = rng.normal(mean, std);
    while (v < a || v > b);
    d[i] = static_cast<T>(v);
  }
}

template <class T>
void kaiming_uniform_(Tensor<T>& w, double a, Rng& rng) {
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = gain * std::sqrt(3.0 / static_cast<double>(fan_in(w)));
  uniform_(w, -bound, bound, rng);
}

/// nn.Conv1d / nn.Linear default initialisation; bias may be undefined.
template <class T>
void conv_default_(Tensor<T>& w, Tensor<T>* bias, Rng& rng) {
  kaiming_uniform_(w, std::sqrt(5.0), rng);
  if (bias && bias->defined()) {
    const double b = 1.0 / std::sqrt(static_cast<double>(fan_in(w)));
    uniform_(*bias, -b, b, rng);
  }
}

}  // namespace init
}  // namespace flowless::nn
