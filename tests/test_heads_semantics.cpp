// Anchor-free detection semantics: points, label assignment, the training
// loss and inference decoding / post-processing.
//
// Reference numbers marked "torch" were computed offline with PyTorch 1.13
// (CPU, float32 unless stated) by line-for-line copies of the reference's
// PointGenerator, label_points_single_video, losses (sigmoid_focal_loss,
// ctr_diou_loss_1d), inference_single_video and postprocessing.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "flowless/infer/postprocess.hpp"
#include "flowless/io/json.hpp"
#include "flowless/io/safetensors.hpp"
#include "flowless/models/points.hpp"
#include "flowless/train/detection_loss.hpp"
#include "flowless/train/label_assignment.hpp"
#include "gradcheck.hpp"

using namespace flowless;

namespace {

std::string heads_data(const std::string& rel) { return std::string(FLOWLESS_TEST_DATA) + "/" + rel; }

using Seg = std::array<float, 2>;

// Row-major class row of point i.
std::vector<float> cls_row(const PointTargets& t, int64_t i) {
  return std::vector<float>(t.cls.begin() + i * t.num_classes, t.cls.begin() + (i + 1) * t.num_classes);
}

std::vector<int64_t> positive_rows(const PointTargets& t) {
  std::vector<int64_t> r;
  for (int64_t i = 0; i < t.num_points; ++i)
    if (t.positive(i)) r.push_back(i);
  return r;
}

// The fixture's model config: 6 levels, strides 1..32, its regression ranges.
struct FixtureModel {
  std::vector<int> strides;
  std::vector<std::array<float, 2>> ranges;
  int num_classes = 0, max_seq_len = 0;
  json::Value cfg;
};

FixtureModel fixture_model() {
  FixtureModel m;
  m.cfg = json::parse_file(heads_data("actionformer_small/config.json"));
  const json::Value& model = m.cfg.at("model");
  const json::Value& rr = model.at("regression_range");
  for (size_t l = 0; l < rr.size(); ++l) {
    m.strides.push_back(1 << l);
    m.ranges.push_back({static_cast<float>(rr[l][0].as_number()), static_cast<float>(rr[l][1].as_number())});
  }
  m.num_classes = static_cast<int>(model.at("num_classes").as_int());
  m.max_seq_len = static_cast<int>(model.at("max_seq_len").as_int());
  return m;
}

}  // namespace

TEST_CASE("heads: points sit at t = k*s with the level's range and stride") {
  PointSet p = make_points({8, 4, 2}, {1, 2, 4}, {{{0, 2}}, {{2, 4}}, {{4, 100}}});
  CHECK(p.size() == 14);
  CHECK(p.offset == std::vector<int64_t>{0, 8, 12});
  const float t_expect[14] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6, 0, 4};
  const float s_expect[14] = {1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4};
  for (int64_t i = 0; i < 14; ++i) {
    CHECK(p.t(i) == t_expect[i]);
    CHECK(p.stride(i) == s_expect[i]);
  }
  CHECK(p.lo(9) == 2.f);
  CHECK(p.hi(9) == 4.f);
  CHECK(p.lo(13) == 4.f);
  CHECK(p.hi(13) == 100.f);
  CHECK(p.level_of(7) == 0);
  CHECK(p.level_of(8) == 1);
  CHECK(p.level_of(13) == 2);
  CHECK_THROWS_AS(p.t(14), Error);
  CHECK(level_lengths(768, {1, 2, 4, 8, 16, 32}) == std::vector<int>{768, 384, 192, 96, 48, 24});
  CHECK(level_valid_lengths(537, {1, 2, 4, 8, 16, 32}) == std::vector<int>{537, 269, 135, 68, 34, 17});
  CHECK_THROWS_AS(level_lengths(100, {1, 2, 8}), Error);
  CHECK_THROWS_AS(make_points({8, 4}, {1, 2}, {{{0, 2}}}), Error);
  CHECK_THROWS_AS(make_points({8}, {0}, {{{0, 2}}}), Error);
}

TEST_CASE("heads: label assignment - center sampling is strict, ranges inclusive") {
  // One level, stride 1, range [0, 100]; GT [2, 6]: center 4, radius 1.5 ->
  // window [2.5, 5.5]: points 3, 4, 5 are strictly inside, 2 and 6 are not.
  PointSet p = make_points({10}, {1}, {{{0, 100}}});
  PointTargets t = label_points(p, {Seg{2, 6}}, {1}, 3, "radius", 1.5f);
  CHECK(t.num_points == 10);
  CHECK(positive_rows(t) == std::vector<int64_t>{3, 4, 5});
  CHECK(cls_row(t, 4) == std::vector<float>{0, 1, 0});
  CHECK(cls_row(t, 2) == std::vector<float>{0, 0, 0});
  CHECK(t.offsets[2 * 3] == 1.f);
  CHECK(t.offsets[2 * 3 + 1] == 3.f);
  // Radius 1.0: window [3, 5], strict -> only point 4.
  CHECK(positive_rows(label_points(p, {Seg{2, 6}}, {1}, 3, "radius", 1.0f)) == std::vector<int64_t>{4});
  // "none": strictly inside the GT -> 3, 4, 5 (2 and 6 have a zero distance).
  CHECK(positive_rows(label_points(p, {Seg{2, 6}}, {1}, 3, "none", 1.5f)) == std::vector<int64_t>{3, 4, 5});
  // Big radius is cut by the GT boundaries: points 3..5 again.
  CHECK(positive_rows(label_points(p, {Seg{2, 6}}, {1}, 3, "radius", 10.f)) == std::vector<int64_t>{3, 4, 5});

  // Regression range inclusive on max(left, right): GT [0, 8], point 4 -> max 4.
  for (float lo : {3.f, 4.f, 4.5f}) {
    PointSet q = make_points({9}, {1}, {{{lo, lo + 10}}});
    PointTargets u = label_points(q, {Seg{0, 8}}, {0}, 1, "radius", 1.5f);
    // points 3, 4, 5 are in the center window; max(l, r) = 5, 4, 5
    std::vector<int64_t> expect = lo <= 4.f ? std::vector<int64_t>{3, 4, 5} : std::vector<int64_t>{3, 5};
    CHECK(positive_rows(u) == expect);
  }
  {
    PointSet q = make_points({9}, {1}, {{{0, 4}}});  // hi = 4 inclusive: only point 4
    CHECK(positive_rows(label_points(q, {Seg{0, 8}}, {0}, 1, "radius", 1.5f)) == std::vector<int64_t>{4});
  }
  // Stride 2: window c +- 3 in grid units; offsets divided by the stride.
  {
    PointSet q = make_points({8}, {2}, {{{0, 100}}});  // t = 0, 2, ..., 14
    PointTargets u = label_points(q, {Seg{3, 11}}, {2}, 3, "radius", 1.5f);  // c = 7, window (4, 10)
    CHECK(positive_rows(u) == std::vector<int64_t>{3, 4});                   // t = 6, 8
    CHECK(u.offsets[2 * 3] == 1.5f);                                         // (6 - 3) / 2
    CHECK(u.offsets[2 * 3 + 1] == 2.5f);                                     // (11 - 6) / 2
  }
  CHECK_THROWS_AS(label_points(p, {Seg{2, 6}}, {3}, 3, "radius", 1.5f), Error);
  CHECK_THROWS_AS(label_points(p, {Seg{2, 6}}, {0, 1}, 3, "radius", 1.5f), Error);
  CHECK_THROWS_AS(label_points(p, {Seg{2, 6}}, {0}, 3, "box", 1.5f), Error);
  // No GT: all zero.
  PointTargets z = label_points(p, {}, {}, 3, "radius", 1.5f);
  CHECK(z.num_positive() == 0);
  CHECK(z.offsets == std::vector<float>(20, 0.f));
}

TEST_CASE("heads: label assignment - shortest GT wins, equal lengths give multi-labels") {
  PointSet p = make_points({20}, {1}, {{{0, 100}}});
  // Point 5 lies in the windows of [3, 7] (len 4, class 0) and [1, 10] (len 9,
  // class 1): the shorter one wins, regression from it.
  PointTargets t = label_points(p, {Seg{1, 10}, Seg{3, 7}}, {1, 0}, 2, "none", 1.5f);
  CHECK(cls_row(t, 5) == std::vector<float>{1, 0});
  CHECK(t.offsets[10] == 2.f);
  CHECK(t.offsets[11] == 2.f);
  CHECK(cls_row(t, 8) == std::vector<float>{0, 1});  // only inside the long one
  CHECK(t.offsets[16] == 7.f);
  CHECK(t.offsets[17] == 2.f);
  // Same segment twice with two labels -> union; same label twice -> clipped to 1.
  PointTargets d = label_points(p, {Seg{3, 7}, Seg{3, 7}, Seg{3, 7}}, {0, 2, 2}, 3, "radius", 1.5f);
  CHECK(cls_row(d, 5) == std::vector<float>{1, 0, 1});
  // Lengths within 1e-3 of the minimum count as ties: [3, 7.0005] joins [3, 7].
  PointTargets e = label_points(p, {Seg{3, 7.0005f}, Seg{3, 7}}, {1, 0}, 2, "radius", 1.5f);
  CHECK(cls_row(e, 5) == std::vector<float>{1, 1});
  CHECK(e.offsets[11] == 2.f);  // regression from the argmin ([3, 7])
  PointTargets f = label_points(p, {Seg{3, 7.01f}, Seg{3, 7}}, {1, 0}, 2, "radius", 1.5f);
  CHECK(cls_row(f, 5) == std::vector<float>{1, 0});
  // Negative point: regression target of GT 0 (as the reference; unused).
  CHECK(cls_row(t, 15) == std::vector<float>{0, 0});
  CHECK(t.offsets[30] == 14.f);
  CHECK(t.offsets[31] == -5.f);
}

TEST_CASE("heads: label assignment on the fixture's training batch (44 positives)") {
  FixtureModel m = fixture_model();
  CHECK(m.strides == std::vector<int>{1, 2, 4, 8, 16, 32});
  PointSet pts = make_points(level_lengths(m.max_seq_len, m.strides), m.strides, m.ranges);
  CHECK(pts.size() == 1512);
  const json::Value gt = json::parse_file(heads_data("actionformer_small/train_gt.json"));
  REQUIRE(gt.size() == 2);
  const json::Value& tc = m.cfg.at("train_cfg");
  // torch: positive rows (valid points only), per-level counts, multi-label rows.
  const std::vector<std::vector<int64_t>> expect_pos = {
      {569, 570, 571, 833, 834, 835, 1052, 1054, 1184, 1186, 1377, 1378, 1379, 1392, 1400, 1401, 1402, 1463, 1465,
       1484, 1485, 1509, 1511},
      {115, 116, 117, 141, 142, 143, 396, 397, 398, 888, 1211, 1213, 1381, 1382, 1383, 1455, 1456, 1458, 1460, 1495,
       1497}};
  const std::vector<std::vector<int64_t>> expect_multi = {{833, 834, 835, 1184, 1186}, {141, 142, 143}};
  const std::vector<std::vector<float>> expect_multi_row = {{1, 0, 0, 0, 1}, {0, 0, 0, 1, 1}};
  const std::vector<std::vector<double>> expect_cls_sum = {{11, 0, 5, 7, 5}, {6, 9, 3, 3, 3}};
  const std::vector<std::array<double, 2>> expect_off_sum = {{50.50201606750488, 53.41673278808594},
                                                             {48.095364570617676, 43.91314888000488}};
  int64_t total = 0;
  for (size_t b = 0; b < 2; ++b) {
    std::vector<Seg> segs;
    std::vector<int> labels;
    for (size_t j = 0; j < gt[b].at("segments").size(); ++j)
      segs.push_back({static_cast<float>(gt[b].at("segments")[j][0].as_number()),
                      static_cast<float>(gt[b].at("segments")[j][1].as_number())});
    for (size_t j = 0; j < gt[b].at("labels").size(); ++j)
      labels.push_back(static_cast<int>(gt[b].at("labels")[j].as_int()));
    const int nf = static_cast<int>(gt[b].at("num_feats").as_int());
    PointTargets t = label_points(pts, segs, labels, m.num_classes, tc.at("center_sample").as_string(),
                                  static_cast<float>(tc.at("center_sample_radius").as_number()));
    {  // bitwise identical for any thread count
      set_num_threads(3);
      PointTargets t3 = label_points(pts, segs, labels, m.num_classes, tc.at("center_sample").as_string(),
                                     static_cast<float>(tc.at("center_sample_radius").as_number()));
      set_num_threads(1);
      CHECK(t3.cls == t.cls);
      CHECK(t3.offsets == t.offsets);
    }
    std::vector<int> valid = level_valid_lengths(nf, m.strides);
    std::vector<int64_t> pos, multi;
    std::vector<double> cls_sum(5, 0.0);
    double off_sum[2] = {0, 0};
    for (int l = 0; l < pts.num_levels(); ++l)
      for (int k = 0; k < valid[static_cast<size_t>(l)]; ++k) {
        const int64_t i = pts.offset[static_cast<size_t>(l)] + k;
        if (!t.positive(i)) continue;
        pos.push_back(i);
        auto row = cls_row(t, i);
        double n = 0;
        for (int c = 0; c < 5; ++c) {
          cls_sum[static_cast<size_t>(c)] += row[static_cast<size_t>(c)];
          n += row[static_cast<size_t>(c)];
        }
        if (n > 1) {
          multi.push_back(i);
          CHECK(row == expect_multi_row[b]);
        }
        off_sum[0] += t.offsets[static_cast<size_t>(2 * i)];
        off_sum[1] += t.offsets[static_cast<size_t>(2 * i + 1)];
      }
    CHECK(pos == expect_pos[b]);
    CHECK(multi == expect_multi[b]);
    CHECK(cls_sum == expect_cls_sum[b]);
    CHECK(off_sum[0] == doctest::Approx(expect_off_sum[b][0]).epsilon(1e-12));
    CHECK(off_sum[1] == doctest::Approx(expect_off_sum[b][1]).epsilon(1e-12));
    total += static_cast<int64_t>(pos.size());
  }
  // train_losses.json: loss_norm 100 -> 94.4 = 0.9 * 100 + 0.1 * #pos.
  const json::Value losses = json::parse_file(heads_data("actionformer_small/train_losses.json"));
  CHECK(total == 44);
  CHECK(0.9 * losses.at("init_loss_norm").as_number() + 0.1 * static_cast<double>(total) ==
        doctest::Approx(losses.at("loss_norm_after").as_number()).epsilon(1e-12));
}

namespace {

// The small loss case (see the torch numbers below): 3 levels of lengths
// 8, 4, 2 (strides 1, 2, 4), 3 classes, 2 videos.
struct LossCase {
  PointSet pts = make_points({8, 4, 2}, {1, 2, 4}, {{{0, 2}}, {{2, 4}}, {{4, 100}}});
  std::vector<PointTargets> targets;
  std::vector<std::vector<int>> valid = {{8, 4, 2}, {6, 3, 2}};
  LossCase() {
    targets.push_back(label_points(pts, {Seg{1.2f, 3.5f}, Seg{2.0f, 6.4f}, Seg{2.0f, 6.4f}, Seg{0.0f, 13.0f}},
                                   {0, 1, 2, 1}, 3, "radius", 1.5f));
    targets.push_back(
        label_points(pts, {Seg{0.5f, 7.0f}, Seg{5.6f, 7.9f}, Seg{2.5f, 2.9f}}, {2, 1, 0}, 3, "radius", 1.5f));
  }
  template <class T>
  Var<T> logits() const {
    std::vector<T> v(2 * 14 * 3);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(static_cast<int>((i * 37) % 23) - 11) / T(4);
    return Var<T>::parameter(Tensor<T>::from_vector(v, Shape{2, 14, 3}));
  }
  template <class T>
  Var<T> offsets() const {
    std::vector<T> v(2 * 14 * 2);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>((i * 17) % 13 + 1) / T(8);
    return Var<T>::parameter(Tensor<T>::from_vector(v, Shape{2, 14, 2}));
  }
};

// torch float32 gradients of final_loss (case A).
const std::vector<double> kGradLogitsA = {
    5.277382115309592e-06,   0.005379009060561657,   0.00014098596875555813,  0.00891319289803505,
    0.0017223211470991373,   1.0559478141658474e-05, -0.00014509139873553067, 0.00025222558178938925,
    0.00916513241827488,     -0.0008230871753767133, 2.0821194993914105e-05,  0.007233632728457451,
    0.00043527421075850725,  0.009299694560468197,   0.0033629420213401318,   4.032235301565379e-05,
    0.007958813570439816,    0.0007211064221337438,  0.009345103055238724,    0.0043555619195103645,
    7.639614341314882e-05,   0.008517367765307426,   0.0011418627109378576,   5.277382115309592e-06,
    0.005379009060561657,    0.00014098596875555813, 0.00891319289803505,     0.0017223211470991373,
    1.0559478141658474e-05,  0.006359558552503586,   0.00025222558178938925,  -6.940400453459006e-06,
    -0.0008230871753767133,  2.0821194993914105e-05, -8.407518907915801e-05,  -0.002119853161275387,
    0.009299694560468197,    0.0033629420213401318,  4.032235301565379e-05,   0.007958813570439816,
    -0.0017930029425770044,  0.009345103055238724,   0.0043555619195103645,   7.639614341314882e-05,
    0.008517367765307426,    0.0011418627109378576,  5.277382115309592e-06,   0.005379009060561657,
    0.00014098596875555813,  0.00891319289803505,    0.0017223211470991373,   1.0559478141658474e-05,
    0.006359558552503586,    0.00025222558178938925, 0.00916513241827488,     0.0024692616425454617,
    2.0821194993914105e-05,  0.007233632728457451,   0.00043527421075850725,  0.009299694560468197,
    0.0,                     0.0,                    0.0,                     0.0,
    0.0,                     0.0,                    7.639614341314882e-05,   0.008517367765307426,
    0.0011418627109378576,   5.277382115309592e-06,  0.005379009060561657,    0.00014098596875555813,
    0.00891319289803505,     0.0017223211470991373,  -0.003099897876381874,   0.0,
    0.0,                     0.0,                    0.0024692616425454617,   2.0821194993914105e-05,
    0.007233632728457451,    0.00043527421075850725, 0.009299694560468197,    0.0033629420213401318};
const std::vector<double> kGradOffsA = {
    0.0, 0.0, 0.0, 0.0, -0.004590276163071394, -0.005007574334740639, -0.004981491714715958, -0.0046163564547896385,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.005359129514545202, -0.004674985539168119,
    -0.005641403142362833, 0.003948982339352369, 0.0, 0.0, -0.003004297614097595, -0.00378802721388638, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    -0.0029389867559075356, -0.00385333807207644, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};

}  // namespace

TEST_CASE("heads: detection loss matches torch (focal + DIoU, normaliser, masks)") {
  LossCase lc;
  // torch: targets of the two videos (positives incl. two beyond video 1's valid prefix).
  CHECK(positive_rows(lc.targets[0]) == std::vector<int64_t>{2, 3, 10, 11, 13});
  CHECK(positive_rows(lc.targets[1]) == std::vector<int64_t>{6, 7, 10});
  CHECK(cls_row(lc.targets[0], 10) == std::vector<float>{0, 1, 1});
  CHECK(lc.targets[0].offsets[2 * 2] == 0.7999999523162842f);
  CHECK(lc.targets[0].offsets[2 * 11 + 1] == 0.20000004768371582f);
  CHECK(lc.targets[1].offsets[2 * 6] == 0.40000009536743164f);

  SUBCASE("A: defaults, float32 and float64") {
    DetectionLoss<float> lf(DetectionLossConfig{});
    auto lo = lc.logits<float>();
    auto of = lc.offsets<float>();
    auto r = lf(lo, of, lc.pts, lc.valid, lc.targets);
    CHECK(r.num_pos == 6);
    CHECK(r.loss_norm_used == 90.6);
    CHECK(lf.loss_norm() == 90.6);
    // torch float32: cls 0.33836570382118225 reg 0.028648775070905685 final 0.36701446771621704
    CHECK(r.cls_loss.shape() == Shape{});
    CHECK(r.cls_loss.value()[0] == doctest::Approx(0.33836570382118225).epsilon(2e-7));
    CHECK(r.reg_loss.value()[0] == doctest::Approx(0.028648775070905685).epsilon(2e-7));
    CHECK(r.final_loss.value()[0] == doctest::Approx(0.36701446771621704).epsilon(2e-7));
    backward(r.final_loss);
    REQUIRE(lo.grad().defined());
    REQUIRE(of.grad().defined());
    for (size_t i = 0; i < kGradLogitsA.size(); ++i)
      CHECK(lo.grad()[static_cast<int64_t>(i)] == doctest::Approx(kGradLogitsA[i]).epsilon(1e-5).scale(1e-3));
    for (size_t i = 0; i < kGradOffsA.size(); ++i)
      CHECK(of.grad()[static_cast<int64_t>(i)] == doctest::Approx(kGradOffsA[i]).epsilon(1e-5).scale(1e-3));

    DetectionLoss<double> ld(DetectionLossConfig{});
    auto r2 = ld(lc.logits<double>(), lc.offsets<double>(), lc.pts, lc.valid, lc.targets);
    // torch float64: cls 0.33836571517792324 reg 0.02864877416968856 final 0.3670144893476118
    CHECK(r2.cls_loss.value()[0] == doctest::Approx(0.33836571517792324).epsilon(1e-13));
    CHECK(r2.reg_loss.value()[0] == doctest::Approx(0.02864877416968856).epsilon(1e-13));
    CHECK(r2.final_loss.value()[0] == doctest::Approx(0.3670144893476118).epsilon(1e-13));
  }
  SUBCASE("B: label smoothing 0.1, auto loss weight, normaliser 200 over two steps") {
    DetectionLossConfig cfg;
    cfg.init_loss_norm = 200;
    cfg.label_smoothing = 0.1;
    cfg.loss_weight = -1;
    // torch float64: step 0: norm 180.6 cls 0.15748442688132439 reg 0.01437197641070755 final 0.31496885376264877
    //                step 1: norm 163.14 cls 0.1743391411963172 reg 0.01591013203244933 final 0.3486782823926344
    DetectionLoss<double> ld(cfg);
    auto r0 = ld(lc.logits<double>(), lc.offsets<double>(), lc.pts, lc.valid, lc.targets);
    CHECK(r0.loss_norm_used == doctest::Approx(180.6).epsilon(1e-15));
    CHECK(r0.cls_loss.value()[0] == doctest::Approx(0.15748442688132439).epsilon(1e-13));
    CHECK(r0.reg_loss.value()[0] == doctest::Approx(0.01437197641070755).epsilon(1e-13));
    CHECK(r0.final_loss.value()[0] == doctest::Approx(0.31496885376264877).epsilon(1e-13));
    auto lo = lc.logits<double>();
    auto of = lc.offsets<double>();
    auto r1 = ld(lo, of, lc.pts, lc.valid, lc.targets);
    CHECK(r1.loss_norm_used == doctest::Approx(163.14).epsilon(1e-15));
    CHECK(ld.loss_norm() == doctest::Approx(163.14).epsilon(1e-15));
    CHECK(r1.cls_loss.value()[0] == doctest::Approx(0.1743391411963172).epsilon(1e-13));
    CHECK(r1.reg_loss.value()[0] == doctest::Approx(0.01591013203244933).epsilon(1e-13));
    CHECK(r1.final_loss.value()[0] == doctest::Approx(0.3486782823926344).epsilon(1e-13));
    backward(r1.final_loss);
    double gs = 0, ga = 0, os = 0, oa = 0;
    for (int64_t i = 0; i < lo.grad().numel(); ++i) gs += lo.grad()[i], ga += std::abs(lo.grad()[i]);
    for (int64_t i = 0; i < of.grad().numel(); ++i) os += of.grad()[i], oa += std::abs(of.grad()[i]);
    // torch float64: the auto weight is detached, so d final / d cls = 1 and d final / d reg = w.
    CHECK(gs == doctest::Approx(0.11985827411433722).epsilon(1e-11));
    CHECK(ga == doctest::Approx(0.12904623707024662).epsilon(1e-11));
    CHECK(os == doctest::Approx(-0.27084203723706085).epsilon(1e-11));
    CHECK(oa == doctest::Approx(0.31890427944035277).epsilon(1e-11));
    // evaluate(): same losses, normaliser untouched.
    auto re = ld.evaluate(lc.logits<double>(), lc.offsets<double>(), lc.pts, lc.valid, lc.targets);
    CHECK(ld.loss_norm() == doctest::Approx(163.14).epsilon(1e-15));
    CHECK(re.loss_norm_used == ld.loss_norm());
    CHECK(re.cls_loss.value()[0] == doctest::Approx(r1.cls_loss.value()[0]).epsilon(1e-15));
    ld.set_loss_norm(50);
    CHECK(ld.loss_norm() == 50);
    CHECK_THROWS_AS(ld.set_loss_norm(0), Error);
  }
  SUBCASE("C: no positive point") {
    PointTargets none = label_points(lc.pts, {}, {}, 3, "radius", 1.5f);
    PointTargets far = label_points(lc.pts, {Seg{30.f, 40.f}}, {1}, 3, "radius", 1.5f);
    DetectionLoss<float> lf(DetectionLossConfig{});
    auto of = lc.offsets<float>();
    of.value()[5] = std::numeric_limits<float>::infinity();  // not a positive row: must not reach reg_loss
    auto r = lf(lc.logits<float>(), of, lc.pts, {{8, 4, 2}, {5, 3, 1}}, {none, far});
    // torch float32: norm 90.1 cls 0.31571245193481445 reg 0 final 0.31571245193481445
    CHECK(r.num_pos == 0);
    CHECK(r.loss_norm_used == doctest::Approx(90.1).epsilon(1e-15));
    CHECK(r.cls_loss.value()[0] == doctest::Approx(0.31571245193481445).epsilon(2e-7));
    CHECK(r.reg_loss.value()[0] == 0.f);
    CHECK(r.final_loss.value()[0] == doctest::Approx(0.31571245193481445).epsilon(2e-7));
    backward(r.final_loss);
    REQUIRE(of.grad().defined());
    for (int64_t i = 0; i < of.grad().numel(); ++i) CHECK(of.grad()[i] == 0.f);
  }
  SUBCASE("errors") {
    DetectionLoss<float> lf(DetectionLossConfig{});
    CHECK_THROWS_AS(lf(lc.logits<float>(), lc.offsets<float>(), lc.pts, {{8, 4, 2}}, lc.targets), Error);
    CHECK_THROWS_AS(lf(lc.logits<float>(), lc.offsets<float>(), lc.pts, {{8, 4, 2}, {9, 3, 2}}, lc.targets), Error);
    PointSet other = make_points({8, 4}, {1, 2}, {{{0, 2}}, {{2, 4}}});
    CHECK_THROWS_AS(lf(lc.logits<float>(), lc.offsets<float>(), other, lc.valid, lc.targets), Error);
  }
}

TEST_CASE("heads: detection loss gradients (double, finite differences)") {
  LossCase lc;
  Rng rng(11);
  Tensor<double> lg = test::random_tensor(Shape{2, 14, 3}, rng, 2.0);
  Tensor<double> og(Shape{2, 14, 2});
  for (int64_t i = 0; i < og.numel(); ++i) og[i] = 0.2 + std::abs(rng.normal());
  for (double w : {1.0, 2.0}) {  // (the auto weight is detached: not a function of the inputs for autograd)
    DetectionLossConfig cfg;
    cfg.label_smoothing = 0.1;
    cfg.loss_weight = w;
    DetectionLoss<double> ld(cfg);
    auto f = [&](std::vector<Var<double>>& in) {
      auto r = ld.evaluate(in[0], in[1], lc.pts, lc.valid, lc.targets);
      return r.final_loss;
    };
    auto res = test::check_gradients(f, {Var<double>::parameter(lg.clone()), Var<double>::parameter(og.clone())});
    CHECK(res.max_rel_err < 1e-5);
  }
  // Per-point weights (SimOTA): all ones give the unweighted loss bit for bit
  // (normaliser included); other weights scale the rows, gradients included.
  std::vector<PointTargets> ones = lc.targets, weighted = lc.targets;
  for (auto& t : ones) t.weights.assign(size_t(t.num_points), 1.0f);
  for (auto& t : weighted) {
    t.weights.assign(size_t(t.num_points), 1.0f);
    for (int64_t i = 0; i < t.num_points; ++i)
      if (t.positive(i)) t.weights[size_t(i)] = i % 2 ? 0.1f : 0.5f;
  }
  DetectionLoss<double> plain(DetectionLossConfig{}), with_ones(DetectionLossConfig{}), with_w(DetectionLossConfig{});
  auto a = plain(Var<double>(lg), Var<double>(og), lc.pts, lc.valid, lc.targets);
  auto b = with_ones(Var<double>(lg), Var<double>(og), lc.pts, lc.valid, ones);
  CHECK(a.cls_loss.value()[0] == b.cls_loss.value()[0]);
  CHECK(a.reg_loss.value()[0] == b.reg_loss.value()[0]);
  CHECK(plain.loss_norm() == with_ones.loss_norm());
  auto c = with_w(Var<double>(lg), Var<double>(og), lc.pts, lc.valid, weighted);
  CHECK(c.cls_loss.value()[0] < a.cls_loss.value()[0]);
  CHECK(with_w.loss_norm() < plain.loss_norm());  // 0.9 * 100 + 0.1 * (sum of positive weights)
  auto fw = [&](std::vector<Var<double>>& in) {
    return with_w.evaluate(in[0], in[1], lc.pts, lc.valid, weighted).final_loss;
  };
  auto res = test::check_gradients(fw, {Var<double>::parameter(lg.clone()), Var<double>::parameter(og.clone())});
  CHECK(res.max_rel_err < 1e-5);
  // The Trident loss has no weighted form: refused, not ignored.
  DetectionLoss<double> tri(DetectionLossConfig{});
  Tensor<double> bins(Shape{2, 14, 4});
  for (int64_t i = 0; i < bins.numel(); ++i) bins[i] = 0.1 * double(i % 7);
  CHECK_THROWS_WITH(tri.trident(Var<double>(lg), Var<double>(bins), Var<double>(lg), Var<double>(lg), lc.pts, lc.valid,
                                weighted),
                    doctest::Contains("per-point weights (SimOTA) are not supported"));
}

TEST_CASE("heads: decoding - threshold, per-level top-k, duration filter, float32 boundaries") {
  // 2 levels (strides 1, 2), 2 classes. torch (inference_single_video with
  // pre_nms_thresh 0.001, pre_nms_topk 4, duration_thresh 0.05):
  //   segs [[1.5, 2.25], [-1.0, 2.0], [4.0, 4.050000190734863], [0.0, 402.0], [-1.0, 1.0], [-1.0, 1.0]]
  //   scores [0.9525741338729858, 0.8807970285415649, 0.8175744414329529, 0.9241418242454529,
  //           0.7310585975646973, 0.7310585975646973]
  //   cls [1, 0, 0, 1, 0, 1]
  PointSet pts = make_points({8, 4}, {1, 2}, {{{0, 4}}, {{4, 100}}});
  std::vector<std::vector<float>> logits = {
      {2.0f, -8.0f, 0.5f, 0.5f, -1.0f, 3.0f, 0.5f, -7.0f, 1.5f, -9.0f, -6.0f, 0.0f},
      {1.0f, 1.0f, -8.0f, 2.5f, 0.2f, -10.0f}};
  std::vector<std::vector<float>> offs = {
      {1.0f, 2.0f, 0.01f, 0.02f, 0.5f, 0.25f, 6.0f, 0.5f, 0.0f, 0.05f, 1.0f, 1.0f},
      {0.5f, 0.5f, 1.0f, 200.0f, 0.01f, 0.01f}};
  PostprocessConfig cfg;
  cfg.pre_nms_topk = 4;
  infer::Segments s = decode_candidates(logits, offs, 2, pts, cfg);
  REQUIRE(s.size() == 6);
  const std::vector<float> st = {1.5f, -1.0f, 4.0f, 0.0f, -1.0f, -1.0f};
  const std::vector<float> en = {2.25f, 2.0f, 4.050000190734863f, 402.0f, 1.0f, 1.0f};
  const std::vector<double> sc = {0.9525741338729858, 0.8807970285415649, 0.8175744414329529,
                                  0.9241418242454529, 0.7310585975646973, 0.7310585975646973};
  CHECK(s.start == st);
  CHECK(s.end == en);
  CHECK(s.label == std::vector<int>{1, 0, 0, 1, 0, 1});
  for (size_t i = 0; i < 6; ++i) CHECK(s.score[i] == doctest::Approx(sc[i]).epsilon(3e-7));
  // A larger top-k lets the 0.5 ties and the low scores through (row 1's
  // class-0 candidate is then dropped by the duration filter: 0.03 <= 0.05).
  cfg.pre_nms_topk = 2000;
  infer::Segments all = decode_candidates(logits, offs, 2, pts, cfg);
  CHECK(all.size() == 10);  // level 0: 9 above threshold - 2 (row 1) ; level 1: 4 - 1 (row 2)
  cfg.pre_nms_thresh = 0.95f;
  CHECK(decode_candidates(logits, offs, 2, pts, cfg).size() == 1);
  cfg.pre_nms_thresh = 0.001f;
  cfg.pre_nms_topk = 0;
  CHECK(decode_candidates(logits, offs, 2, pts, cfg).size() == 0);
  // OpenTAD's scope: one threshold / sort / top-4 over both levels together
  // (level 1's 0.924 and level 0's 0.953, 0.881, 0.818 - level 0's 0.731s
  // lose to it), no duration filter.
  cfg.pre_nms_scope = "video";
  cfg.pre_nms_topk = 4;
  infer::Segments v = decode_candidates(logits, offs, 2, pts, cfg);
  REQUIRE(v.size() == 4);
  CHECK(v.start == std::vector<float>{1.5f, 0.0f, -1.0f, 4.0f});
  CHECK(v.end == std::vector<float>{2.25f, 402.0f, 2.0f, 4.050000190734863f});
  CHECK(v.label == std::vector<int>{1, 1, 0, 0});
  cfg.pre_nms_topk = 2000;
  CHECK(decode_candidates(logits, offs, 2, pts, cfg).size() == 13);  // 9 + 4 above threshold, row 1 kept too
  // One class: every valid position, in order, unthresholded.
  const std::vector<std::vector<float>> one = {{-20.0f, 1.0f, 0.0f, 2.0f, -3.0f, 0.0f, 0.0f, 0.0f}, {-30.0f, 0.5f}};
  const std::vector<std::vector<float>> one_offs = {std::vector<float>(16, 1.0f), std::vector<float>(4, 0.5f)};
  infer::Segments o = decode_candidates(one, one_offs, 1, pts, cfg);
  REQUIRE(o.size() == 10);
  CHECK(o.start[0] == -1.0f);
  CHECK(o.start[8] == -1.0f);  // level 1, point 0: 0 - 0.5 x 2
  CHECK(o.score[0] < 1e-8f);
  cfg.pre_nms_scope = "level";
  // errors
  cfg.pre_nms_topk = 4;
  CHECK_THROWS_AS(decode_candidates(logits, offs, 3, pts, cfg), Error);
  CHECK_THROWS_AS(decode_candidates({logits[0]}, {offs[0]}, 2, pts, cfg), Error);
  PointSet small = make_points({5, 4}, {1, 2}, {{{0, 4}}, {{4, 100}}});
  CHECK_THROWS_AS(decode_candidates(logits, offs, 2, small, cfg), Error);

  // Seconds, no NMS (concatenation order kept). torch postprocessing with
  // stride 4, num_frames 16, fps 30, duration 2.0:
  //   [[0.46666666865348816, 0.5666666626930237], [0.13333334028720856, 0.5333333611488342],
  //    [0.800000011920929, 0.8066666722297668], [0.2666666805744171, 2.0],
  //    [0.13333334028720856, 0.4000000059604645], [0.13333334028720856, 0.4000000059604645]]
  cfg.nms.method = "none";
  VideoMeta meta{"v", 30.0, 2.0, 4, 16};
  std::vector<Detection> d = postprocess_video(logits, offs, 2, pts, cfg, meta);
  REQUIRE(d.size() == 6);
  const double sec[6][2] = {{0.46666666865348816, 0.5666666626930237}, {0.13333334028720856, 0.5333333611488342},
                            {0.800000011920929, 0.8066666722297668},   {0.2666666805744171, 2.0},
                            {0.13333334028720856, 0.4000000059604645}, {0.13333334028720856, 0.4000000059604645}};
  for (size_t i = 0; i < 6; ++i) {
    CHECK(d[i].start == sec[i][0]);
    CHECK(d[i].end == sec[i][1]);
    CHECK(d[i].label == s.label[i]);
    CHECK(d[i].score == static_cast<double>(s.score[i]));
  }
}

TEST_CASE("heads: seconds conversion clamps like the reference (float32)") {
  // torch: (segs * 4 + 0.5 * 16) / 29.97, <= 0 -> *0, >= 2.0 -> 2.0:
  //   [[-0.0, 0.40040040016174316], [0.0, 0.2802802622318268], [0.7607607245445251, 2.0],
  //    [0.43170639872550964, 1.9352686405181885]]
  infer::Segments s;
  s.start = {-3.0f, -2.0f, 3.7f, 1.23456f};
  s.end = {1.0f, 0.1f, 13.0f, 12.5f};
  s.score = {0.9f, 0.8f, 0.7f, 0.6f};
  s.label = {0, 1, 2, 3};
  std::vector<Detection> d = to_seconds(s, VideoMeta{"v", 29.97, 2.0, 4, 16});
  const double e[4][2] = {{-0.0, 0.40040040016174316},
                          {0.0, 0.2802802622318268},
                          {0.7607607245445251, 2.0},
                          {0.43170639872550964, 1.9352686405181885}};
  for (size_t i = 0; i < 4; ++i) {
    CHECK(d[i].start == e[i][0]);
    CHECK(d[i].end == e[i][1]);
    CHECK(d[i].score == static_cast<double>(s.score[i]));
    CHECK(d[i].label == s.label[i]);
  }
  CHECK(std::signbit(d[0].start));  // -x * 0.0 = -0.0, as torch
  CHECK_THROWS_AS(to_seconds(s, VideoMeta{"v", 0.0, 2.0, 4, 16}), Error);
}

TEST_CASE("heads: post-processing of the fixture's head outputs reproduces expected_detections.json") {
  FixtureModel m = fixture_model();
  const json::Value& tc = m.cfg.at("test_cfg");
  const json::Value& dc = m.cfg.at("dataset");
  PostprocessConfig cfg;
  cfg.pre_nms_thresh = static_cast<float>(tc.at("pre_nms_thresh").as_number());
  cfg.pre_nms_topk = static_cast<int>(tc.at("pre_nms_topk").as_int());
  cfg.duration_thresh = static_cast<float>(tc.at("duration_thresh").as_number());
  cfg.nms.method = tc.at("nms_method").as_string();
  cfg.nms.iou_threshold = static_cast<float>(tc.at("iou_threshold").as_number());
  cfg.nms.min_score = static_cast<float>(tc.at("min_score").as_number());
  cfg.nms.sigma = static_cast<float>(tc.at("nms_sigma").as_number());
  cfg.nms.voting_thresh = static_cast<float>(tc.at("voting_thresh").as_number());
  cfg.nms.max_seg_num = static_cast<int>(tc.at("max_seg_num").as_int());
  cfg.nms.multiclass = tc.at("multiclass_nms").as_bool();
  const json::Value expected = json::parse_file(heads_data("actionformer_small/expected_detections.json"));
  for (const std::string vid : {"vid00", "vid01", "vid02"}) {
    CAPTURE(vid);
    const json::Value& ev = expected.at(vid);
    io::SafeTensors st = io::load_safetensors(heads_data(std::string("actionformer_small/") + vid + ".expected.safetensors"));
    const int padded = static_cast<int>(ev.at("padded_len").as_int());
    PointSet pts = make_points(level_lengths(padded, m.strides), m.strides, m.ranges);
    std::vector<int> valid = level_valid_lengths(static_cast<int>(ev.at("num_feats").as_int()), m.strides);
    std::vector<std::vector<float>> logits, offs;
    for (int l = 0; l < 6; ++l) {
      const io::Array& a = st.tensors.at("cls_logits." + std::to_string(l));
      const io::Array& o = st.tensors.at("offsets." + std::to_string(l));
      REQUIRE(a.shape == std::vector<int64_t>{valid[static_cast<size_t>(l)], m.num_classes});
      logits.push_back(a.to_float32("cls_logits"));
      offs.push_back(o.to_float32("offsets"));
    }
    VideoMeta meta{vid, ev.at("fps").as_number(), ev.at("duration").as_number(), dc.at("feat_stride").as_number(),
                   dc.at("num_frames").as_number()};
    std::vector<Detection> d = postprocess_video(logits, offs, m.num_classes, pts, cfg, meta);
    const json::Value& ed = ev.at("detections");
    REQUIRE(d.size() == ed.size());
    int order_mismatch = 0;
    double max_b = 0, max_s = 0;
    for (size_t i = 0; i < d.size(); ++i) {
      const json::Value& e = ed[i];
      const double es = e.at("segment")[0].as_number(), ee = e.at("segment")[1].as_number();
      const double sc = e.at("score").as_number();
      const int lab = static_cast<int>(e.at("label_id").as_int());
      if (lab != d[i].label || std::abs(es - d[i].start) > 1e-3 || std::abs(ee - d[i].end) > 1e-3) {
        // allowed only where scores tie with a neighbour
        const bool tie = (i > 0 && std::abs(ed[i - 1].at("score").as_number() - sc) < 1e-6) ||
                         (i + 1 < d.size() && std::abs(ed[i + 1].at("score").as_number() - sc) < 1e-6);
        if (!tie) ++order_mismatch;
        continue;
      }
      max_b = std::max({max_b, std::abs(es - d[i].start), std::abs(ee - d[i].end)});
      max_s = std::max(max_s, std::abs(sc - d[i].score));
    }
    MESSAGE(vid, ": max boundary diff ", max_b, " s, max score diff ", max_s);
    CHECK(order_mismatch == 0);
    // The parity bar is 1e-3 s / 1e-4; decoding the reference's own logits is
    // float32-exact up to the last bit of the sigmoid (glibc expf vs Sleef).
    CHECK(max_b < 1e-6);
    CHECK(max_s < 1e-7);
  }
}

TEST_CASE("heads: score fusion with video-level classifier scores") {
  std::vector<Detection> dets = {{1.0, 2.0, 0, 0.25}, {3.0, 4.0, 1, 0.81}, {5.0, 6.0, 0, 0.49}};
  std::vector<double> cls = {0.1, 0.64, 0.36, 0.01};
  std::vector<Detection> f = fuse_scores(dets, cls, 2, 2);
  // detections by score: 0.81, 0.49 (top 2); classes by score: 1 (0.64), 2 (0.36)
  REQUIRE(f.size() == 4);
  CHECK(f[0].label == 1);
  CHECK(f[0].start == 3.0);
  CHECK(f[0].score == doctest::Approx(std::sqrt(0.64 * 0.81)));
  CHECK(f[1].label == 1);
  CHECK(f[1].start == 5.0);
  CHECK(f[1].score == doctest::Approx(std::sqrt(0.64 * 0.49)));
  CHECK(f[2].label == 2);
  CHECK(f[2].start == 3.0);
  CHECK(f[2].score == doctest::Approx(std::sqrt(0.36 * 0.81)));
  CHECK(f[3].label == 2);
  CHECK(f[3].end == 6.0);
  CHECK(fuse_scores(dets, cls, 200, 1).size() == 3);
  CHECK(fuse_scores({}, cls, 200, 2).empty());
}
