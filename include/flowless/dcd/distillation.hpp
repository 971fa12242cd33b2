// flowless/dcd/distillation.hpp - the two distillation terms of DCD
// (docs/dcd.md), usable for any student/teacher pair of pyramids.
//
// Feature distillation (d_f), per pyramid level l with valid lengths[l][b]:
//   student[l]: (B, T_l, D_t)  the student's features (after the adapter if
//                              widths differ, see FeatureAdapter)
//   teacher[l]: (B, T_l, D_t)  the frozen teacher's neck features (constants)
//   d_f = sum_l sum_b sum_{t < len} sum_c (s - f)^2 / (N_valid * D_t)
//   N_valid = the number of valid positions over ALL levels and videos, so
//   every valid position weighs the same (as the detection loss treats points).
//   Padded positions contribute nothing and get no gradient.
//
// Prediction distillation (d_p) between the student's head outputs on F_m
// and the teacher's (same pyramid, same classes):
//   p_T = sigmoid(teacher logits)
//   cls = sum over valid positions and classes of
//         BCE(student logits, p_T) - H(p_T)        / N_valid
//         (summed over classes, averaged over positions: each position's
//          teacher prediction is one target, as the focal loss sums over
//          classes; the teacher entropy H is a constant: same gradient as BCE,
//          and the value is the Bernoulli KL divergence, 0 when the student
//          matches)
//   reg = sum over selected positions of |o_S - o_T|_1 / (2 * N_sel)
//         selected = valid and (max_c p_T > reg_threshold, or a ground-truth
//         positive point when reg_on_gt and targets are given); offsets in
//         units of the level stride, as the heads output them. No selected
//         position: reg = 0 (and no gradient).
//   d_p = cls_weight * cls + reg_weight * reg
// Targets, when given, are label_points() of each video on the padded
// pyramid (points of all levels concatenated, level 0 first).
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "flowless/models/detector.hpp"
#include "flowless/nn/layers.hpp"
#include "flowless/ops/losses.hpp"

namespace flowless::dcd {

struct DistillationOptions {
  double cls_weight = 1.0;     // weight of the classification (BCE) part of d_p
  double reg_weight = 1.0;     // weight of the regression (L1) part of d_p
  double reg_threshold = 0.5;  // teacher max class probability above which its offsets are targets
  bool reg_on_gt = true;       // also distil offsets at ground-truth positive points
};

/// 1x1 masked conv from the student's width to the teacher's (training only).
template <class T>
class FeatureAdapter : public nn::Module<T> {
 public:
  FeatureAdapter(int in_dim, int out_dim, Rng* rng = nullptr) : conv(in_dim, out_dim, 1, 1, 0, 1, true, rng) {
    this->register_module("proj", conv);
  }
  std::vector<Var<T>> forward(const std::vector<Var<T>>& feats, const std::vector<std::vector<int>>& lengths) const {
    std::vector<Var<T>> out;
    for (size_t l = 0; l < feats.size(); ++l) out.push_back(conv.forward(feats[l], lengths[l]));
    return out;
  }
  nn::MaskedConv1d<T> conv;
};

namespace distill_detail {

inline int64_t count_valid(const std::vector<std::vector<int>>& lengths) {
  int64_t n = 0;
  for (auto& l : lengths)
    for (int v : l) n += v;
  return n;
}

template <class T>
void check_level(const Var<T>& s, const Tensor<T>& t, const std::vector<int>& len, size_t l, const char* what) {
  FLOWLESS_CHECK(s.defined() && t.defined(), what, ": undefined input at level ", l);
  FLOWLESS_CHECK(s.value().dim() == 3 && s.shape() == t.shape(), what, ": student ", s.shape().str(), " vs teacher ",
                 t.shape().str(), " at level ", l);
  FLOWLESS_CHECK(int64_t(len.size()) == s.size(0), what, ": ", len.size(), " lengths for batch ", s.size(0), " at level ", l);
  for (int v : len) FLOWLESS_CHECK(v >= 0 && v <= s.size(1), what, ": valid length ", v, " outside [0, ", s.size(1), "]");
}

/// Row weights of a (B, T_l, .) level: w on valid rows, 0 on padded ones.
template <class T>
std::vector<T> valid_row_weights(int64_t B, int64_t Tl, const std::vector<int>& len, T w) {
  std::vector<T> out(size_t(B * Tl), T(0));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < std::min<int64_t>(len[size_t(b)], Tl); ++t) out[size_t(b * Tl + t)] = w;
  return out;
}

template <class T>
Var<T> sum_terms(const std::vector<Var<T>>& terms) {
  Var<T> acc = terms.at(0);
  for (size_t i = 1; i < terms.size(); ++i) acc = add(acc, terms[i]);
  return acc;
}

}  // namespace distill_detail

/// d_f over all levels (see the file comment). teacher[l] values are read as constants.
template <class T>
Var<T> feature_distillation(const std::vector<Var<T>>& student, const std::vector<Var<T>>& teacher,
                            const std::vector<std::vector<int>>& lengths) {
  FLOWLESS_CHECK(!student.empty() && student.size() == teacher.size() && student.size() == lengths.size(),
                 "feature_distillation: ", student.size(), " student levels, ", teacher.size(), " teacher levels, ",
                 lengths.size(), " length lists");
  const int64_t N = distill_detail::count_valid(lengths);
  const int64_t D = student[0].size(2);
  const T w = N > 0 ? T(1.0 / (double(N) * double(D))) : T(0);
  std::vector<Var<T>> terms;
  for (size_t l = 0; l < student.size(); ++l) {
    distill_detail::check_level(student[l], teacher[l].value(), lengths[l], l, "feature_distillation");
    const int64_t B = student[l].size(0), Tl = student[l].size(1);
    terms.push_back(mse_loss(student[l], teacher[l].value(), distill_detail::valid_row_weights(B, Tl, lengths[l], w)));
  }
  return distill_detail::sum_terms(terms);
}

template <class T>
struct PredictionDistillation {
  Var<T> cls, reg, total;  // scalars (Shape{})
  int64_t num_valid = 0;   // positions in the classification term
  int64_t num_reg = 0;     // positions in the regression term
};

/// d_p between a student head output and the teacher's (see the file comment).
/// targets: nullptr, or one PointTargets per video on the padded pyramid.
template <class T>
PredictionDistillation<T> prediction_distillation(const models::DetectorOutput<T>& student,
                                                  const models::DetectorOutput<T>& teacher,
                                                  const std::vector<PointTargets>* targets,
                                                  const DistillationOptions& opt = {}) {
  const size_t L = student.cls_logits.size();
  FLOWLESS_CHECK(L > 0 && teacher.cls_logits.size() == L && student.offsets.size() == L && teacher.offsets.size() == L &&
                     student.lengths.size() == L,
                 "prediction_distillation: student has ", L, " levels, teacher ", teacher.cls_logits.size());
  const int64_t B = student.cls_logits[0].size(0), C = student.cls_logits[0].size(2);
  int64_t total_points = 0;
  for (size_t l = 0; l < L; ++l) {
    distill_detail::check_level(student.cls_logits[l], teacher.cls_logits[l].value(), student.lengths[l], l,
                                "prediction_distillation (cls)");
    distill_detail::check_level(student.offsets[l], teacher.offsets[l].value(), student.lengths[l], l,
                                "prediction_distillation (offsets)");
    total_points += student.cls_logits[l].size(1);
  }
  if (targets) {
    FLOWLESS_CHECK(int64_t(targets->size()) == B, "prediction_distillation: ", targets->size(), " targets for batch ", B);
    for (const auto& tg : *targets)
      FLOWLESS_CHECK(tg.num_points == total_points && tg.num_classes == C, "prediction_distillation: targets for ",
                     tg.num_points, " points and ", tg.num_classes, " classes, outputs have ", total_points, " and ", C);
  }
  PredictionDistillation<T> out;
  out.num_valid = distill_detail::count_valid(student.lengths);
  const T wc = out.num_valid > 0 ? T(1.0 / double(out.num_valid)) : T(0);

  // Teacher probabilities, the selection for the regression term, the entropy constant.
  std::vector<Tensor<T>> probs(L);
  std::vector<std::vector<char>> selected(L);
  double entropy = 0;
  int64_t level_offset = 0;
  for (size_t l = 0; l < L; ++l) {
    const Tensor<T>& z = teacher.cls_logits[l].value();
    const int64_t Tl = z.size(1);
    probs[l] = Tensor<T>(z.shape());
    selected[l].assign(size_t(B * Tl), 0);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t len = student.lengths[l][size_t(b)];
      for (int64_t t = 0; t < Tl; ++t) {
        const int64_t r = b * Tl + t;
        T pmax = T(0);
        for (int64_t c = 0; c < C; ++c) {
          const T p = T(1) / (T(1) + std::exp(-z[r * C + c]));
          probs[l][r * C + c] = p;
          pmax = std::max(pmax, p);
          if (t < len) {
            const double pd = double(p);
            if (pd > 0 && pd < 1) entropy -= pd * std::log(pd) + (1 - pd) * std::log1p(-pd);
          }
        }
        if (t >= len) continue;
        bool sel = double(pmax) > opt.reg_threshold;
        if (!sel && opt.reg_on_gt && targets) sel = (*targets)[size_t(b)].positive(level_offset + t);
        selected[l][size_t(r)] = sel;
        out.num_reg += sel;
      }
    }
    level_offset += Tl;
  }
  const T wr = out.num_reg > 0 ? T(0.5 / double(out.num_reg)) : T(0);
  std::vector<Var<T>> cls_terms, reg_terms;
  for (size_t l = 0; l < L; ++l) {
    const int64_t Tl = student.cls_logits[l].size(1);
    cls_terms.push_back(bce_with_logits(student.cls_logits[l], probs[l],
                                        distill_detail::valid_row_weights(B, Tl, student.lengths[l], wc)));
    std::vector<T> rw(size_t(B * Tl), T(0));
    for (size_t r = 0; r < rw.size(); ++r) rw[r] = selected[l][r] ? wr : T(0);
    reg_terms.push_back(l1_loss(student.offsets[l], teacher.offsets[l].value(), rw));
  }
  Var<T> bce = distill_detail::sum_terms(cls_terms);
  out.cls = add(bce, Var<T>(Tensor<T>::full(bce.shape(), T(-entropy * double(wc)))));
  out.reg = distill_detail::sum_terms(reg_terms);
  out.total = add(scale(out.cls, T(opt.cls_weight)), scale(out.reg, T(opt.reg_weight)));
  return out;
}

}  // namespace flowless::dcd
