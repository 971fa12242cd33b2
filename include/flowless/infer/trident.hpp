// flowless/infer/trident.hpp - decoding TriDet's Trident head into per-class
// boundary distances (the reference's TriDet.decode_offset at inference,
// libs/modeling/meta_archs.py of github.com/dingfengshi/TriDet).
//
//   d = trident_decode(bins, start, end, len, C, nb)      every (t, c)
//   {l, r} = trident_decode_at(bins, start, end, len, C, nb, t, c)   one entry
//   bins:  (len, 2, nb + 1) the centre-offset head's output (after Scale and
//          ReLU): per step, nb + 1 logits for the start side, then nb + 1
//          for the end side
//   start, end: (len, C) the start / end boundary heads' logits
//   d:     (len, C, 2) distances to the start and the end, in units of the
//          level stride (what decode_candidates takes as class-specific
//          offsets)
// For step t and class c, with s(i) = start[i, c] and e(i) = end[i, c], zero
// outside [0, len) (the reference pads the boundary logits with zeros and
// its masked convolutions zero the padded steps) - or, given blen > len
// boundary steps (OpenTAD's TriDet, whose boundary heads leave the padded
// steps of the buffer unmasked), outside [0, blen):
//   p_j = softmax_j( s(t - nb + j) + bins[t, 0, j] ),  left  = sum_j p_j (nb - j)
//   q_j = softmax_j( e(t + j)      + bins[t, 1, j] ),  right = sum_j q_j j
// i.e. the expected distance under a distribution over the nb + 1 steps
// before (after) t, each step's weight the boundary head's evidence there
// plus the centre head's bin logit. float32, max-subtracted softmax.
// Cost: len x C x 2 x (nb + 1) exponentials per level. The training form,
// with gradients, on selected (video, point, class) triples of a whole
// pyramid is ops/trident_decode.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless {

namespace trident_detail {
/// In place: z[0:K] -> softmax(z) (max-subtracted); returns the expected
/// index sum_j p_j w_j, w_j = K - 1 - j when `reverse` (the start side), else j.
template <class T>
inline T softmax_expectation(T* z, int64_t K, bool reverse) {
  T mx = z[0];
  for (int64_t j = 1; j < K; ++j) mx = std::max(mx, z[j]);
  T sum = 0;
  for (int64_t j = 0; j < K; ++j) {
    z[j] = std::exp(z[j] - mx);
    sum += z[j];
  }
  T e = 0;
  for (int64_t j = 0; j < K; ++j) {
    z[j] = z[j] / sum;
    e += z[j] * T(reverse ? K - 1 - j : j);
  }
  return e;
}
}  // namespace trident_detail

/// The (left, right) distances of one step t and class c: one (t, c) entry of
/// trident_decode, for decoding only the candidates that survive the
/// score threshold and top-k (what the post-processing does).
inline std::array<float, 2> trident_decode_at(const std::vector<float>& bins, const std::vector<float>& start,
                                              const std::vector<float>& end, int64_t len, int64_t C, int nb, int64_t t,
                                              int64_t c, int64_t blen = -1) {
  const int64_t K = int64_t(nb) + 1;
  if (blen < 0) blen = len;
  FLOWLESS_CHECK(t >= 0 && t < len && c >= 0 && c < C, "trident_decode_at: step ", t, " class ", c, " outside (", len,
                 ", ", C, ")");
  float zbuf[64];
  std::vector<float> zheap;
  float* z = zbuf;
  if (K > 64) {
    zheap.resize(static_cast<size_t>(K));
    z = zheap.data();
  }
  const float* bl = bins.data() + t * 2 * K;
  const float* br = bl + K;
  for (int64_t j = 0; j < K; ++j) {
    const int64_t i = t - nb + j;
    z[j] = (i >= 0 ? start[size_t(i * C + c)] : 0.0f) + bl[j];
  }
  const float left = trident_detail::softmax_expectation(z, K, true);
  for (int64_t j = 0; j < K; ++j) {
    const int64_t i = t + j;
    z[j] = (i < blen ? end[size_t(i * C + c)] : 0.0f) + br[j];
  }
  return {left, trident_detail::softmax_expectation(z, K, false)};
}

inline void trident_check(const std::vector<float>& bins, const std::vector<float>& start, const std::vector<float>& end,
                          int64_t len, int64_t C, int nb, int64_t blen = -1) {
  if (blen < 0) blen = len;
  FLOWLESS_CHECK(blen >= len, "trident_decode: ", blen, " boundary steps for ", len, " steps");
  FLOWLESS_CHECK(len >= 0 && C >= 1 && nb >= 0, "trident_decode: len ", len, ", ", C, " classes, ", nb, " bins");
  const int64_t K = int64_t(nb) + 1;
  FLOWLESS_CHECK(int64_t(bins.size()) == len * 2 * K, "trident_decode: ", bins.size(), " bin logits for ", len,
                 " steps x 2 x ", K);
  FLOWLESS_CHECK(int64_t(start.size()) == blen * C && int64_t(end.size()) == blen * C, "trident_decode: boundary logits ",
                 start.size(), " / ", end.size(), " for ", blen, " steps x ", C, " classes");
}

/// Every (t, c): (len, C, 2).
inline std::vector<float> trident_decode(const std::vector<float>& bins, const std::vector<float>& start,
                                         const std::vector<float>& end, int64_t len, int64_t C, int nb) {
  trident_check(bins, start, end, len, C, nb);
  std::vector<float> out(static_cast<size_t>(len * C * 2));
  for (int64_t t = 0; t < len; ++t)
    for (int64_t c = 0; c < C; ++c) {
      const std::array<float, 2> d = trident_decode_at(bins, start, end, len, C, nb, t, c);
      out[size_t((t * C + c) * 2)] = d[0];
      out[size_t((t * C + c) * 2 + 1)] = d[1];
    }
  return out;
}

}  // namespace flowless
