// flowless/ops/trident_decode.hpp - TriDet's Trident head decoded at chosen
// (video, point, class) triples, with gradients (the reference's
// TriDet.decode_offset in training, where the loss reads the distances of
// the positive points at their ground-truth classes).
//
//   d = trident_decode_pairs(bins, start, end, pts, nb, pairs)
//   bins:  (B, N, 2 (nb + 1)) the centre-offset head's outputs over the whole
//          padded pyramid (levels concatenated, level 0 first; pts describes
//          the layout: level l holds rows [pts.offset[l], + pts.levels[l].length))
//   start, end: (B, N, C) the boundary heads' logits, same layout
//   pairs: the triples (b, n, c) to decode, in the caller's order
//   d:     (P, 2) per triple the expected distances (start, end) in stride
//          units, as infer/trident.hpp: with t = n - offset[l],
//            p = softmax_j(start[t - nb + j] + bins[n, 0, j]), left  = sum p_j (nb - j)
//            q = softmax_j(end[t + j]       + bins[n, 1, j]), right = sum q_j j
//          where neighbours outside [0, length of level l) count as 0 (the
//          reference pads each level's boundary logits with zeros).
// Backward: d left / d z_j = p_j (w_j - left) into bins[b, n, j] and
// start[b, offset + t - nb + j, c] (right side alike), accumulated in the
// triples' order on one thread (deterministic).
#pragma once

#include <cstdint>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/infer/trident.hpp"
#include "flowless/models/points.hpp"

namespace flowless {

struct TridentPair {
  int64_t b = 0, n = 0;  // video in the batch, row of the concatenated pyramid
  int c = 0;             // class
};

template <class T>
Var<T> trident_decode_pairs(const Var<T>& bins, const Var<T>& start, const Var<T>& end, const PointSet& pts, int nb,
                            const std::vector<TridentPair>& pairs) {
  FLOWLESS_CHECK(bins.defined() && start.defined() && end.defined(), "trident_decode_pairs: undefined input");
  const int64_t K = int64_t(nb) + 1;
  const Shape& bs = bins.shape();
  const Shape& ss = start.shape();
  FLOWLESS_CHECK(nb >= 0 && bs.nd == 3 && bs[2] == 2 * K, "trident_decode_pairs: bins ", bs.str(), " are not (B, N, ",
                 2 * K, ") for ", nb, " bins");
  FLOWLESS_CHECK(ss.nd == 3 && ss[0] == bs[0] && ss[1] == bs[1] && end.shape() == ss, "trident_decode_pairs: start ",
                 ss.str(), " / end ", end.shape().str(), " do not match bins ", bs.str());
  const int64_t B = bs[0], N = bs[1], C = ss[2];
  FLOWLESS_CHECK(N == pts.size(), "trident_decode_pairs: ", N, " rows but ", pts.size(), " points");
  const int64_t P = int64_t(pairs.size());
  // Per triple: its level's first row and length, and its step in the level.
  std::vector<int64_t> base(static_cast<size_t>(P)), len(static_cast<size_t>(P)), step(static_cast<size_t>(P));
  for (int64_t p = 0; p < P; ++p) {
    const TridentPair& q = pairs[size_t(p)];
    FLOWLESS_CHECK(q.b >= 0 && q.b < B && q.n >= 0 && q.n < N && q.c >= 0 && q.c < C, "trident_decode_pairs: triple (",
                   q.b, ", ", q.n, ", ", q.c, ") outside (", B, ", ", N, ", ", C, ")");
    const int l = pts.level_of(q.n);
    base[size_t(p)] = pts.offset[size_t(l)];
    len[size_t(p)] = pts.levels[size_t(l)].length;
    step[size_t(p)] = q.n - base[size_t(p)];
  }
  Tensor<T> Y(Shape{P, 2});
  std::vector<T> probs(size_t(P * 2 * K));  // kept for the backward
  const T* pb = bins.value().data();
  const T* psd = start.value().data();
  const T* ped = end.value().data();
  for (int64_t p = 0; p < P; ++p) {
    const TridentPair& q = pairs[size_t(p)];
    const T* bl = pb + (q.b * N + q.n) * 2 * K;
    T* zl = probs.data() + p * 2 * K;
    T* zr = zl + K;
    for (int64_t j = 0; j < K; ++j) {
      const int64_t i = step[size_t(p)] - nb + j, k = step[size_t(p)] + j;
      zl[j] = (i >= 0 ? psd[(q.b * N + base[size_t(p)] + i) * C + q.c] : T(0)) + bl[j];
      zr[j] = (k < len[size_t(p)] ? ped[(q.b * N + base[size_t(p)] + k) * C + q.c] : T(0)) + bl[K + j];
    }
    Y[2 * p] = trident_detail::softmax_expectation(zl, K, true);
    Y[2 * p + 1] = trident_detail::softmax_expectation(zr, K, false);
  }
  Tensor<T> Yd = Y.clone();  // the distances, kept for the backward
  return make_op<T>(std::move(Y), {bins, start, end}, "trident_decode_pairs",
                    [=, probs = std::move(probs), Yd = std::move(Yd)](Node<T>& out) {
    const T* g = out.grad.data();
    T* db = out.needs_grad(0) ? out.input_grad(0).data() : nullptr;
    T* ds = out.needs_grad(1) ? out.input_grad(1).data() : nullptr;
    T* de = out.needs_grad(2) ? out.input_grad(2).data() : nullptr;
    for (int64_t p = 0; p < P; ++p) {
      const TridentPair& q = pairs[size_t(p)];
      const T* pl = probs.data() + p * 2 * K;
      const T* pr = pl + K;
      const T left = Yd[2 * p], right = Yd[2 * p + 1];
      for (int64_t j = 0; j < K; ++j) {
        const T dzl = g[2 * p] * pl[j] * (T(K - 1 - j) - left);
        const T dzr = g[2 * p + 1] * pr[j] * (T(j) - right);
        if (db) {
          db[(q.b * N + q.n) * 2 * K + j] += dzl;
          db[(q.b * N + q.n) * 2 * K + K + j] += dzr;
        }
        const int64_t i = step[size_t(p)] - nb + j, k = step[size_t(p)] + j;
        if (ds && i >= 0) ds[(q.b * N + base[size_t(p)] + i) * C + q.c] += dzl;
        if (de && k < len[size_t(p)]) de[(q.b * N + base[size_t(p)] + k) * C + q.c] += dzr;
      }
    }
  });
}

}  // namespace flowless
