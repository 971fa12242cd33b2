// flowless/train/detection_loss.hpp - ActionFormer's training loss
// (PtTransformer.losses, actionformer.md A.6).
//
// Inputs (B videos, N = pts.size() points of the padded pyramid, C classes):
//   cls_logits: (B, N, C) the per-level classification outputs concatenated
//               over levels (level 0 first, each level's full padded length)
//   offsets:    (B, N, 2) the per-level regression outputs, same layout
//   valid_lengths[b][l]: valid points of level l in video b (a prefix)
//   targets[b]: label_points() of video b on the same PointSet
// Rows are visited b-major, then in point order (torch's boolean-mask order).
//   valid = point inside its level's valid prefix
//   pos   = valid and the class target row is non-zero
//   N_norm <- m * N_norm + (1 - m) * max(#pos, 1)      (double, BEFORE use)
//   y     = target * f32(1 - eps) + f32(eps / (C + 1))  (label smoothing)
//   cls   = sigmoid_focal_loss(logits[valid], y, alpha, gamma) / N_norm
//   reg   = diou_loss_1d(offsets[pos], target_offsets[pos], 1e-8) / N_norm,
//           or 0 * sum(offsets[pos]) = 0 when there is no positive point
//   final = cls + reg * w, with w = loss_weight when loss_weight > 0, else the
//           auto balance w = cls.detach() / max(reg, 0.01)
// The divisions are true divisions by T(N_norm) (forward and backward), as
// torch divides a float32 tensor by a Python float.
//
// TriDet's Trident head (trident / trident_evaluate; the reference's
// TriDet.losses): offsets are the centre head's bins (B, N, 2 (nb + 1)) plus
// the boundary heads' start / end logits (B, N, C); the distances are decoded
// at every positive (point, class) pair, b-major then point then class
// (ops/trident_decode.hpp), and
//   cls   = [ sum of the focal loss elements, each positive pair's element
//             times (1 - iou_loss)^iou_weight_power ] / N_norm
//           (iou_loss = 1 - IoU of the pair's decoded and target distances;
//           the weight is not detached, as in the reference)
//   reg   = diou_loss_1d(decoded pairs, their targets) / N_norm
// with N_norm updated by the number of positive POINTS as above.
//
// Per-point weights (PointTargets::weights, SimOTA; TemporalMaxer's losses):
// each valid row's focal terms are multiplied by its weight (1 for a negative
// row), each positive row's DIoU term by its weight, and the normaliser is
// updated with the positive weights' float32 sum instead of #pos. Without
// weights the loss is the one above, bit for bit. TriDet's loss refuses them.
//
// operator() updates the running normaliser (training step); evaluate() uses
// the current one unchanged (for reporting, or for distillation losses that
// share the normaliser). Output: the three scalar losses (Shape{}), #pos and
// the normaliser the losses were divided by.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "flowless/autograd/variable.hpp"
#include "flowless/core/error.hpp"
#include "flowless/models/points.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/losses.hpp"
#include "flowless/ops/trident_decode.hpp"
#include "flowless/train/label_assignment.hpp"

namespace flowless {

struct DetectionLossConfig {
  double init_loss_norm = 100, momentum = 0.9, loss_weight = 1.0, label_smoothing = 0.0, focal_alpha = 0.25,
         focal_gamma = 2.0;
  double iou_weight_power = 1.0;  // TriDet: exponent of the IoU weight on the positive focal elements
};

template <class T>
struct DetectionLossOutput {
  Var<T> cls_loss, reg_loss, final_loss;  // Shape{}
  int64_t num_pos = 0;
  double loss_norm_used = 0;
};

namespace detection_loss_detail {

/// x / T(d) for a scalar-like Var (any shape); backward grad / T(d).
template <class T>
Var<T> div_by(const Var<T>& x, double d) {
  const T dv = static_cast<T>(d);
  Tensor<T> y = x.value().clone();
  T* p = y.data();
  for (int64_t i = 0; i < y.numel(); ++i) p[i] = p[i] / dv;
  return make_op<T>(std::move(y), {x}, "div_by", [dv](Node<T>& out) {
    if (!out.needs_grad(0)) return;
    const T* g = out.grad.data();
    T* dx = out.input_grad(0).data();
    for (int64_t i = 0; i < out.grad.numel(); ++i) dx[i] += g[i] / dv;
  });
}

}  // namespace detection_loss_detail

template <class T>
class DetectionLoss {
 public:
  explicit DetectionLoss(DetectionLossConfig cfg) : cfg_(cfg), norm_(cfg.init_loss_norm) {
    FLOWLESS_CHECK(cfg.init_loss_norm > 0, "DetectionLoss: init_loss_norm must be > 0, got ", cfg.init_loss_norm);
    FLOWLESS_CHECK(cfg.momentum >= 0 && cfg.momentum <= 1, "DetectionLoss: momentum must be in [0, 1], got ",
                   cfg.momentum);
  }

  const DetectionLossConfig& config() const { return cfg_; }
  double loss_norm() const { return norm_; }
  void set_loss_norm(double v) {
    FLOWLESS_CHECK(v > 0, "DetectionLoss: loss normaliser must be > 0, got ", v);
    norm_ = v;
  }

  /// Training form: updates the normaliser with this batch's #pos, then divides.
  DetectionLossOutput<T> operator()(const Var<T>& cls_logits, const Var<T>& offsets, const PointSet& pts,
                                    const std::vector<std::vector<int>>& valid_lengths,
                                    const std::vector<PointTargets>& targets) {
    return compute(cls_logits, offsets, pts, valid_lengths, targets, true);
  }

  /// Same losses divided by the current normaliser, which is left unchanged.
  DetectionLossOutput<T> evaluate(const Var<T>& cls_logits, const Var<T>& offsets, const PointSet& pts,
                                  const std::vector<std::vector<int>>& valid_lengths,
                                  const std::vector<PointTargets>& targets) {
    return compute(cls_logits, offsets, pts, valid_lengths, targets, false);
  }

  /// TriDet's loss (file comment); bins (B, N, 2 (nb + 1)), start / end (B, N, C).
  DetectionLossOutput<T> trident(const Var<T>& cls_logits, const Var<T>& bins, const Var<T>& start, const Var<T>& end,
                                 const PointSet& pts, const std::vector<std::vector<int>>& valid_lengths,
                                 const std::vector<PointTargets>& targets) {
    return compute_trident(cls_logits, bins, start, end, pts, valid_lengths, targets, true);
  }
  DetectionLossOutput<T> trident_evaluate(const Var<T>& cls_logits, const Var<T>& bins, const Var<T>& start,
                                          const Var<T>& end, const PointSet& pts,
                                          const std::vector<std::vector<int>>& valid_lengths,
                                          const std::vector<PointTargets>& targets) {
    return compute_trident(cls_logits, bins, start, end, pts, valid_lengths, targets, false);
  }

 private:
  // The rows the loss reads, b-major then point order: valid rows with their
  // (smoothed) class targets y, positive rows with their target distances,
  // and the positive (point, class) pairs with the flat index of their
  // element in the (valid rows x C) focal loss.
  struct Selection {
    std::vector<int64_t> valid_rows, pos_rows, pair_elem;
    std::vector<T> y, gt_off, pair_gt;
    std::vector<TridentPair> pairs;
    // With per-point weights (SimOTA): the focal rows' weights (1 for a
    // negative row), the positive rows' weights and their float32 sum.
    bool weighted = false;
    std::vector<T> valid_w, pos_w;
    double pos_weight_sum = 0;
  };

  Selection select(int64_t B, int64_t N, int64_t C, const PointSet& pts,
                   const std::vector<std::vector<int>>& valid_lengths, const std::vector<PointTargets>& targets) const {
    FLOWLESS_CHECK(N == pts.size(), "DetectionLoss: ", N, " rows of outputs but ", pts.size(), " points");
    FLOWLESS_CHECK(static_cast<int64_t>(valid_lengths.size()) == B && static_cast<int64_t>(targets.size()) == B,
                   "DetectionLoss: batch of ", B, " but ", valid_lengths.size(), " valid-length lists and ",
                   targets.size(), " targets");
    const int L = pts.num_levels();
    Selection sel;
    const T keep = static_cast<T>(1.0 - cfg_.label_smoothing);
    const T addend = static_cast<T>(cfg_.label_smoothing / static_cast<double>(C + 1));
    const bool smooth = cfg_.label_smoothing != 0.0;
    for (const PointTargets& tg : targets) sel.weighted = sel.weighted || !tg.weights.empty();
    float pos_w_sum = 0;  // float32, as the reference's pos_weights.sum()
    for (int64_t b = 0; b < B; ++b) {
      const auto& vl = valid_lengths[static_cast<size_t>(b)];
      const PointTargets& tg = targets[static_cast<size_t>(b)];
      FLOWLESS_CHECK(static_cast<int>(vl.size()) == L, "DetectionLoss: video ", b, " has ", vl.size(),
                     " valid lengths for ", L, " levels");
      FLOWLESS_CHECK(tg.num_points == N && tg.num_classes == C &&
                         tg.cls.size() == static_cast<size_t>(N * C) && tg.offsets.size() == static_cast<size_t>(N * 2),
                     "DetectionLoss: targets of video ", b, " are for ", tg.num_points, " points and ",
                     tg.num_classes, " classes, outputs have ", N, " and ", C);
      FLOWLESS_CHECK(tg.weights.empty() || tg.weights.size() == static_cast<size_t>(N), "DetectionLoss: video ", b,
                     " has ", tg.weights.size(), " point weights for ", N, " points");
      for (int l = 0; l < L; ++l) {
        const int v = vl[static_cast<size_t>(l)];
        FLOWLESS_CHECK(v >= 0 && v <= pts.levels[static_cast<size_t>(l)].length, "DetectionLoss: valid length ", v,
                       " of level ", l, " (video ", b, ") outside [0, ", pts.levels[static_cast<size_t>(l)].length,
                       "]");
        const int64_t base = pts.offset[static_cast<size_t>(l)];
        for (int64_t k = 0; k < v; ++k) {
          const int64_t i = base + k;
          const int64_t v_index = static_cast<int64_t>(sel.valid_rows.size());
          sel.valid_rows.push_back(b * N + i);
          const float* row = tg.cls.data() + i * C;
          bool pos = false;
          for (int64_t c = 0; c < C; ++c) {
            T t = static_cast<T>(row[c]);
            pos = pos || row[c] != 0.0f;
            if (smooth) t = heads_detail::no_contract(t * keep) + addend;
            sel.y.push_back(t);
          }
          const float w = tg.weights.empty() ? 1.0f : tg.weights[static_cast<size_t>(i)];
          if (sel.weighted) sel.valid_w.push_back(pos ? static_cast<T>(w) : T(1));
          if (pos) {
            if (sel.weighted) {
              sel.pos_w.push_back(static_cast<T>(w));
              pos_w_sum += w;
            }
            const T gl = static_cast<T>(tg.offsets[static_cast<size_t>(2 * i)]);
            const T gr = static_cast<T>(tg.offsets[static_cast<size_t>(2 * i + 1)]);
            sel.pos_rows.push_back(b * N + i);
            sel.gt_off.push_back(gl);
            sel.gt_off.push_back(gr);
            for (int64_t c = 0; c < C; ++c)
              if (row[c] != 0.0f) {
                sel.pairs.push_back({b, i, static_cast<int>(c)});
                sel.pair_elem.push_back(v_index * C + c);
                sel.pair_gt.push_back(gl);
                sel.pair_gt.push_back(gr);
              }
          }
        }
      }
    }
    sel.pos_weight_sum = sel.weighted ? static_cast<double>(pos_w_sum) : static_cast<double>(sel.pos_rows.size());
    return sel;
  }

  // num_pos: the positive rows' count, or their weights' sum with SimOTA.
  double next_norm(double num_pos, bool update) {
    if (!update) return norm_;
    norm_ = cfg_.momentum * norm_ + (1.0 - cfg_.momentum) * std::max(num_pos, 1.0);
    return norm_;
  }

  void add_final(DetectionLossOutput<T>& out) const {
    T w;
    if (cfg_.loss_weight > 0) {
      w = static_cast<T>(cfg_.loss_weight);
    } else {
      const double r = static_cast<double>(out.reg_loss.value()[0]);
      w = out.cls_loss.value()[0] / static_cast<T>(std::max(r, 0.01));
    }
    out.final_loss = add(out.cls_loss, scale(out.reg_loss, w));
  }

  DetectionLossOutput<T> compute(const Var<T>& cls_logits, const Var<T>& offsets, const PointSet& pts,
                                 const std::vector<std::vector<int>>& valid_lengths,
                                 const std::vector<PointTargets>& targets, bool update) {
    FLOWLESS_CHECK(cls_logits.defined() && offsets.defined(), "DetectionLoss: undefined input");
    const Shape& cs = cls_logits.shape();
    const Shape& os = offsets.shape();
    FLOWLESS_CHECK(cs.nd == 3 && os.nd == 3, "DetectionLoss: cls_logits ", cs.str(), " and offsets ", os.str(),
                   " must be (B, N, C) and (B, N, 2)");
    const int64_t B = cs[0], N = cs[1], C = cs[2];
    FLOWLESS_CHECK(os[0] == B && os[1] == N && os[2] == 2, "DetectionLoss: offsets ", os.str(), " vs cls_logits ",
                   cs.str());
    Selection sel = select(B, N, C, pts, valid_lengths, targets);
    const std::vector<int64_t>& valid_rows = sel.valid_rows;
    const std::vector<int64_t>& pos_rows = sel.pos_rows;
    const int64_t num_pos = static_cast<int64_t>(pos_rows.size());
    const double norm = next_norm(sel.pos_weight_sum, update);

    DetectionLossOutput<T> out;
    out.num_pos = num_pos;
    out.loss_norm_used = norm;
    const int64_t V = static_cast<int64_t>(valid_rows.size());
    Var<T> logits_v = gather_rows(cls_logits, valid_rows);  // (V, C)
    Tensor<T> yt = Tensor<T>::from_vector(sel.y, Shape{V, C});
    out.cls_loss = detection_loss_detail::div_by(
        sigmoid_focal_loss(logits_v, yt, static_cast<T>(cfg_.focal_alpha), static_cast<T>(cfg_.focal_gamma), sel.valid_w),
        norm);
    Var<T> off_p = gather_rows(offsets, pos_rows);  // (P, 2)
    if (num_pos == 0) {
      out.reg_loss = scale(sum(off_p), T(0));  // 0 * (empty sum): zero, still attached to offsets
    } else {
      Tensor<T> gt = Tensor<T>::from_vector(sel.gt_off, Shape{num_pos, 2});
      out.reg_loss = detection_loss_detail::div_by(diou_loss_1d(off_p, gt, static_cast<T>(1e-8), sel.pos_w), norm);
    }
    add_final(out);
    return out;
  }

  DetectionLossOutput<T> compute_trident(const Var<T>& cls_logits, const Var<T>& bins, const Var<T>& start,
                                         const Var<T>& end, const PointSet& pts,
                                         const std::vector<std::vector<int>>& valid_lengths,
                                         const std::vector<PointTargets>& targets, bool update) {
    FLOWLESS_CHECK(cls_logits.defined() && bins.defined() && start.defined() && end.defined(),
                   "DetectionLoss (trident): undefined input");
    const Shape& cs = cls_logits.shape();
    FLOWLESS_CHECK(cs.nd == 3 && bins.shape().nd == 3 && bins.size(2) >= 2 && bins.size(2) % 2 == 0, "DetectionLoss (trident): cls_logits ",
                   cs.str(), " and bins ", bins.shape().str(), " must be (B, N, C) and (B, N, 2 (nb + 1))");
    const int64_t B = cs[0], N = cs[1], C = cs[2];
    FLOWLESS_CHECK(start.shape() == cs && end.shape() == cs, "DetectionLoss (trident): boundary logits ",
                   start.shape().str(), " / ", end.shape().str(), " vs cls_logits ", cs.str());
    const int nb = static_cast<int>(bins.size(2) / 2 - 1);
    Selection sel = select(B, N, C, pts, valid_lengths, targets);
    FLOWLESS_CHECK(!sel.weighted, "DetectionLoss (trident): per-point weights (SimOTA) are not supported by TriDet's loss");
    const int64_t num_pos = static_cast<int64_t>(sel.pos_rows.size());
    const int64_t P = static_cast<int64_t>(sel.pairs.size());
    const double norm = next_norm(double(num_pos), update);

    DetectionLossOutput<T> out;
    out.num_pos = num_pos;
    out.loss_norm_used = norm;
    const int64_t V = static_cast<int64_t>(sel.valid_rows.size());
    Var<T> logits_v = gather_rows(cls_logits, sel.valid_rows);  // (V, C)
    Tensor<T> yt = Tensor<T>::from_vector(sel.y, Shape{V, C});
    Var<T> focal = sigmoid_focal_loss_elementwise(logits_v, yt, static_cast<T>(cfg_.focal_alpha),
                                                  static_cast<T>(cfg_.focal_gamma));  // (V, C)
    Var<T> decoded = trident_decode_pairs(bins, start, end, pts, nb, sel.pairs);   // (P, 2)
    Var<T> cls_sum = sum(focal);
    if (P > 0) {
      Tensor<T> gt = Tensor<T>::from_vector(sel.pair_gt, Shape{P, 2});
      // cls_loss[rated] *= (1 - iou_rate)^power: the positive elements count
      // w times instead of once.
      Var<T> weight = power(rsub_scalar(T(1), iou_loss_1d_rows(decoded, gt)), static_cast<T>(cfg_.iou_weight_power));
      Var<T> rated = reshape(gather_rows(reshape(focal, Shape{V * C, 1}), sel.pair_elem), Shape{P});
      cls_sum = add(sub(cls_sum, sum(rated)), sum(mul(rated, weight)));
      out.reg_loss = detection_loss_detail::div_by(diou_loss_1d(decoded, gt, static_cast<T>(1e-8)), norm);
    } else {
      out.reg_loss = scale(sum(decoded), T(0));  // 0 * (empty sum), still attached
    }
    out.cls_loss = detection_loss_detail::div_by(cls_sum, norm);
    add_final(out);
    return out;
  }

  DetectionLossConfig cfg_;
  double norm_;
};

}  // namespace flowless
