// Masked local / global multi-head attention and the training losses.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "flowless/ops/local_attention.hpp"
#include "flowless/ops/losses.hpp"
#include "gradcheck.hpp"

using namespace flowless;
using flowless::test::random_tensor;

namespace {

// Naive O(T^2) reference in double: an explicit band mask (-inf outside |i-j| <= w or outside [0, T)),
// -1e4 added for padded keys in local mode, -inf for them in global mode, padded query rows 0.
template <class T>
std::vector<double> attention_ref(const Tensor<T>& q, const Tensor<T>& k, const Tensor<T>& v, int H, int window,
                                  const std::vector<int>& lengths) {
  const int64_t B = q.size(0), Tn = q.size(1), C = q.size(2), d = C / H;
  const bool local = window > 1;
  const int64_t w = window / 2;
  const double scale = double(T(1.0 / std::sqrt(double(d))));
  const double ninf = -std::numeric_limits<double>::infinity();
  std::vector<double> y(static_cast<size_t>(B * Tn * C), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t L = lengths.empty() ? Tn : lengths[b];
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < L; ++i) {
        std::vector<double> s(static_cast<size_t>(Tn));
        double m = ninf;
        for (int64_t j = 0; j < Tn; ++j) {
          bool in_band = !local || std::abs(i - j) <= w;
          if (!in_band || (!local && j >= L)) {
            s[j] = ninf;
            continue;
          }
          double acc = 0;
          for (int64_t c = 0; c < d; ++c)
            acc += double(T(q[(b * Tn + i) * C + h * d + c] * T(scale))) * double(k[(b * Tn + j) * C + h * d + c]);
          if (j >= L) acc += -1e4;
          s[j] = acc;
          m = std::max(m, acc);
        }
        double sum = 0;
        for (int64_t j = 0; j < Tn; ++j) sum += (s[j] = std::exp(s[j] - m));
        for (int64_t j = 0; j < Tn; ++j)
          for (int64_t c = 0; c < d; ++c)
            y[(b * Tn + i) * C + h * d + c] += s[j] / sum * double(v[(b * Tn + j) * C + h * d + c]);
      }
  }
  return y;
}

// Deterministic inputs shared with the offline PyTorch script: 2 sin(a * flat + b0), flat index of (B, T, C).
Tensor<float> sin_tensor(int64_t B, int64_t Tn, int64_t C, double a, double b0) {
  Tensor<float> t(Shape{B, Tn, C});
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = float(2.0 * std::sin(a * double(i) + b0));
  return t;
}

const std::vector<double> kRefLocal = {
    1.91948974, 1.81135643, 0.827837467, -0.555755556, -0.770783424, -1.78716004,
    -1.93984485, -1.15504849, 0.264396042, 1.47402823, 1.97129774, 1.51588559,
    0.447051913, -0.712159872, -1.52720177, -1.60418344, 0.364507109, 0.988349438,
    1.13454604, 0.732443452, 0.588600636, -0.261912167, -0.985849142, -1.23334861,
    -0.828193188, -0.0120583177, 0.809904099, 1.24045897, 1.20040643, 0.0778505504,
    -1.08232868, -1.71944416, -1.63971424, -0.720872998, 0.546349049, 1.54953361,
    1.97511053, 1.29486072, -0.0111648152, -1.3117944, -1.31332946, -1.0060252,
    -0.212532863, 0.683671534, 1.1704123, 1.31395364, 0.822492421, -0.0664598569,
    -1.05618179, -1.11850834, -0.640286505, 0.147370622, 1.06632185, 1.24136174,
    0.816481054, -0.00298543461, 0.12391454, -0.706650972, -1.19570887, -1.10690904,
    -0.687351525, 0.160746098, 0.931159139, 1.25156498, 0.571686208, -0.57679534,
    -1.44652545, -1.61718416, -0.871353269, -0.0270159841, 0.8303774, 1.28646922,
    1.66762078, 0.546970725, -0.838017225, -1.8180114, -1.8996073, -1.08147573,
    0.259307355, 1.47477341, 1.33078611, 1.07098079, 0.293595791, -0.62567699,
    -1.38847446, -1.29136407, -0.570168078, 0.426576614, 1.25773764, 1.03770506,
    0.316174239, -0.558156073, -0.913771987, -1.1841855, -0.882310212, -0.154035375,
    -0.285455406, 0.595620036, 1.18884635, 1.20753157, 0.206099451, -0.651805401,
    -1.19470811, -1.16023684, -0.287422448, 0.618844867, 1.22603917, 1.24071789,
    1.00378597, -0.275105238, -1.42104471, -1.88022697, -1.51599252, -0.299923122,
    1.06109202, 1.90930665, 1.29517794, 0.563940167, -0.439836413, -1.23105061,
    -1.87546861, -1.19804931, 0.0583589673, 1.28656363, 1.07182848, -0.283314526,
    -1.50153828, -1.99410439, -0.906874061, -1.84927523, -1.89796567, -1.0294143,
    -0.821597457, 0.561213613, 1.6728034, 1.97596717, 0.208228052, -0.768919408,
    -1.37446654, -1.31576657, 0.203960001, 0.991267979, 1.29951966, 0.979744434,
    0.416903138, -0.447990775, -1.09638143, -1.21491694, -0.840039968, 0.544816792,
    1.66637659, 1.98261619, 1.25517976, 0.0557900518, -1.17056179, -1.83120871,
    -1.63972139, -0.650558054, 0.653004587, 1.64098573, 1.50201881, 0.858924568,
    -0.199267656, -1.16115856, -1.22297931, -0.798441589, 0.0119639216, 0.816587508,
    1.17509389, 1.01051426, 0.357577056, -0.468168616, -0.761696398, -1.00230885,
    -0.758529305, -0.148170531, 0.437637508, 1.09073496, 1.21670628, 0.75467217,
    -0.0890114307, -0.873427629, -1.23573697, -1.00084412, -0.0181100368, 1.209149,
    1.85205531, 1.59990692, 0.531853914, -0.772105098, -1.70292425, -1.81076038,
    -1.06071317, 0.176195607, 1.3279531, 1.83794236, 1.57813728, 0.400815904,
    -0.970210314, -1.87235677, -1.02899384, -0.329690278, 0.528944731, 1.13195336,
    1.27140713, 0.859847188, 0.0327436328, -0.810184121, -1.39987683, -0.207011357,
    1.0858978, 1.85401845, 1.60584593, 0.464785159, -0.900895417, -1.8311944,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 0,
};
const std::vector<double> kRefGlobal = {
    0.237994462, 0.438287586, 0.426766902, 0.208999857, 0.0521492735, -0.211289823,
    -0.372617722, -0.353868157, -0.144731328, 0.162097827, 0.39058885, 0.430317611,
    0.60903126, 0.281686246, -0.181791157, -0.557413161, 0.192449272, 0.442391574,
    0.478536427, 0.283416092, 0.0752435774, -0.208591342, -0.391619176, -0.385386646,
    -0.195837483, 0.127724037, 0.389559567, 0.463130176, 0.56808722, 0.267941386,
    -0.161694139, -0.513186753, 0.0834157467, 0.355195969, 0.455318391, 0.33539626,
    0.0886713713, -0.230036005, -0.437572449, -0.43364051, -0.161417633, 0.0927810669,
    0.302140921, 0.365483195, 0.46909678, 0.20255518, -0.161876515, -0.448077083,
    0.0123413196, 0.371732116, 0.551473677, 0.464701027, 0.0934899375, -0.260470986,
    -0.488552511, -0.480528086, -0.0462447703, 0.139858171, 0.258370906, 0.252019197,
    0.336035728, 0.109448045, -0.170033291, -0.367341518, -0.0813203156, 0.388186544,
    0.670091867, 0.628157973, 0.113416955, -0.270829469, -0.524190485, -0.524222612,
    0.0362129956, 0.195559368, 0.26039654, 0.199390233, 0.19181481, -0.0102440417,
    -0.207352087, -0.30425185, -0.17979151, 0.331921488, 0.683224618, 0.70434165,
    0.19974333, -0.178833127, -0.470983893, -0.535519183, 0.0994086117, 0.255899549,
    0.288720369, 0.182009429, 0.0429147482, -0.193342403, -0.336161792, -0.316522181,
    -0.20790574, 0.285435051, 0.640831769, 0.686529815, 0.275877178, -0.0272140466,
    -0.317153454, -0.45382008, 0.155996621, 0.321552932, 0.331710339, 0.18156004,
    0.000106535852, -0.313235402, -0.475198269, -0.407508969, -0.181973726, 0.253777862,
    0.566884696, 0.60602963, 0.40601939, 0.0753539577, -0.291728199, -0.517825127,
    0.206195578, 0.383630514, 0.375665843, 0.186150864, 0.0265023895, -0.250828654,
    -0.406940222, -0.366387218, -0.0828270316, -0.22645542, -0.260643154, -0.168868348,
    -0.129010126, -0.370190561, -0.432466626, -0.285741806, -0.317112386, -0.0489566699,
    0.242858678, 0.417306185, 0.323490441, 0.61089766, 0.603072464, 0.303796917,
    -0.0779574066, -0.261234403, -0.318263054, -0.221482754, -0.198030457, -0.388023496,
    -0.390494019, -0.204247892, -0.244770378, -0.101422258, 0.0909408927, 0.239354417,
    0.481860369, 0.754236221, 0.662107587, 0.249998108, 0.00345206261, -0.0459847748,
    -0.0731981397, -0.0650366917, -0.274293065, -0.392451227, -0.320947081, -0.094336845,
    -0.279763401, -0.288143098, -0.157270163, 0.0496077873, 0.625018895, 0.785951078,
    0.567051768, 0.0741097778, 0.279477537, 0.271459162, 0.13225095, -0.0708710328,
    -0.346657336, -0.386055142, -0.238881811, 0.0237376038, -0.381306916, -0.32602793,
    -0.113187321, 0.154353976, 0.654049993, 0.687755585, 0.389085233, -0.0976206809,
    0.377209723, 0.172180593, -0.116059393, -0.348210633, -0.404007465, -0.36896199,
    -0.155605942, 0.132950723, -0.323147774, -0.247029662, -0.051528126, 0.168875784,
    0.525107205, 0.504249752, 0.239700258, -0.140690655, 0.349254489, 0.031046167,
    -0.302166075, -0.489348531, -0.409921855, -0.326348841, -0.0850591213, 0.197337627,
    -0, -0, -0, 0, 0, 0,
    0, -0, 0, -0, -0, -0,
    -0, -0, -0, -0, -0, -0,
    -0, 0, 0, 0, 0, 0,
    -0, -0, -0, -0, 0, 0,
    0, -0, -0, -0, -0, -0,
    -0, -0, -0, -0,
};

}  // namespace

TEST_CASE("local_attention: forward matches the naive banded definition (local windows, heads, padding)") {
  Rng rng(5);
  struct Case { int64_t T; int window, H; std::vector<int> len; };
  std::vector<Case> cases = {
      {12, 3, 1, {12, 7}}, {16, 5, 2, {16, 11}}, {23, 9, 4, {20, 23}}, {40, 19, 2, {33, 1}},
      {7, 19, 4, {7, 3}},   // window wider than the sequence
      {36, 9, 1, {0, 36}},  // an element with no valid step
      {18, 5, 4, {}},       // no mask
  };
  for (auto& c : cases) {
    CAPTURE(c.T); CAPTURE(c.window); CAPTURE(c.H);
    const int64_t C = 8 * c.H;
    Tensor<float> qf(Shape{2, c.T, C}), kf(Shape{2, c.T, C}), vf(Shape{2, c.T, C});
    for (auto* t : {&qf, &kf, &vf})
      for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = float(1.5 * rng.normal());
    auto ref = attention_ref(qf, kf, vf, c.H, c.window, c.len);
    auto y = local_attention(Var<float>(qf), Var<float>(kf), Var<float>(vf), c.H, c.window, c.len);
    REQUIRE(y.shape() == qf.shape());
    for (size_t i = 0; i < ref.size(); ++i) REQUIRE(y.value()[i] == doctest::Approx(ref[i]).epsilon(2e-5).scale(1.0));
    // double: same definition to rounding
    auto yd = local_attention(Var<double>(cast<double>(qf)), Var<double>(cast<double>(kf)),
                              Var<double>(cast<double>(vf)), c.H, c.window, c.len);
    auto refd = attention_ref(cast<double>(qf), cast<double>(kf), cast<double>(vf), c.H, c.window, c.len);
    for (size_t i = 0; i < refd.size(); ++i) REQUIRE(yd.value()[i] == doctest::Approx(refd[i]).epsilon(1e-12));
  }
}

TEST_CASE("local_attention: global mode (window <= 1) masks padded keys with -inf") {
  Rng rng(6);
  for (int window : {-1, 0, 1}) {
    for (int H : {1, 2, 4}) {
      const int64_t Tn = 17, C = 4 * H;
      Tensor<double> q = random_tensor(Shape{2, Tn, C}, rng), k = random_tensor(Shape{2, Tn, C}, rng),
                     v = random_tensor(Shape{2, Tn, C}, rng);
      std::vector<int> len{17, 9};
      auto y = local_attention(Var<double>(q), Var<double>(k), Var<double>(v), H, window, len);
      auto ref = attention_ref(q, k, v, H, window, len);
      for (size_t i = 0; i < ref.size(); ++i) REQUIRE(y.value()[i] == doctest::Approx(ref[i]).epsilon(1e-12));
      // Changing a padded key or value has no effect at all in global mode.
      Tensor<double> k2 = k.clone(), v2 = v.clone();
      for (int64_t c = 0; c < C; ++c) {
        k2[(Tn + 12) * C + c] = 1e3;
        v2[(Tn + 12) * C + c] = -1e3;
      }
      auto y2 = local_attention(Var<double>(q), Var<double>(k2), Var<double>(v2), H, window, len);
      CHECK(y2.value().to_vector() == y.value().to_vector());
    }
  }
}

TEST_CASE("local_attention: padded keys get -1e4 added in local mode, -inf in global mode (hand-computed)") {
  // One head of width 1 (scale 1), T = 4, length 3: q_0 = 1, valid keys 0, padded key 1e4, so the padded
  // logit is 1e4 - 1e4 = 0, the same as the valid ones: local attention averages all 4 values, global only 3.
  auto q = Var<double>(Tensor<double>::from_vector({1, 1, 1, 1}, Shape{1, 4, 1}));
  auto k = Var<double>(Tensor<double>::from_vector({0, 0, 0, 1e4}, Shape{1, 4, 1}));
  auto v = Var<double>(Tensor<double>::from_vector({1, 2, 3, 4}, Shape{1, 4, 1}));
  auto yl = local_attention(q, k, v, 1, 9, {3});
  auto yg = local_attention(q, k, v, 1, 0, {3});
  for (int i = 0; i < 3; ++i) {
    CHECK(yl.value()[i] == doctest::Approx(2.5).epsilon(1e-12));
    CHECK(yg.value()[i] == doctest::Approx(2.0).epsilon(1e-12));
  }
  CHECK(yl.value()[3] == 0.0);
  CHECK(yg.value()[3] == 0.0);
  // Window 3 (w = 1): query 2 sees keys 1, 2 and the padded 3 -> (2 + 3 + 4) / 3; query 0 sees keys 0, 1
  // (key -1 is outside the sequence: -inf) -> 1.5.
  auto y3 = local_attention(q, k, v, 1, 3, {3});
  CHECK(y3.value()[0] == doctest::Approx(1.5).epsilon(1e-12));
  CHECK(y3.value()[1] == doctest::Approx(2.0).epsilon(1e-12));
  CHECK(y3.value()[2] == doctest::Approx(3.0).epsilon(1e-12));
  // The naive reference agrees.
  auto ref = attention_ref(q.value(), k.value(), v.value(), 1, 3, {3});
  for (int i = 0; i < 4; ++i) CHECK(y3.value()[i] == doctest::Approx(ref[i]).epsilon(1e-12));
}

TEST_CASE("local_attention: padded query rows are exactly 0, with and without grad recording") {
  Rng rng(7);
  const int64_t Tn = 30, C = 16;
  Tensor<float> q(Shape{2, Tn, C}), k(Shape{2, Tn, C}), v(Shape{2, Tn, C});
  for (auto* t : {&q, &k, &v})
    for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = float(rng.normal());
  std::vector<int> len{21, 30};
  for (int window : {9, 0}) {
    for (bool record : {false, true}) {
      auto qv = record ? Var<float>::parameter(q) : Var<float>(q);
      auto y = local_attention(qv, Var<float>(k), Var<float>(v), 2, window, len);
      CHECK(y.requires_grad() == record);
      for (int64_t i = 21; i < Tn; ++i)
        for (int64_t c = 0; c < C; ++c) REQUIRE(y.value()[i * C + c] == 0.0f);
      double norm = 0;
      for (int64_t i = 0; i < 21 * C; ++i) norm += std::abs(y.value()[i]);
      CHECK(norm > 0);
    }
  }
}

TEST_CASE("local_attention: matches the reference's chunked Longformer implementation (PyTorch float32)") {
  // kRefLocal / kRefGlobal: LocalMaskedMHCA's _sliding_chunks_* path and MaskedMHCA's masked softmax run by
  // PyTorch 1.13 (float32) offline on these inputs; B=2, T=16, C=8, 2 heads, window 5, lengths {16, 11}.
  const int64_t B = 2, Tn = 16, C = 8;
  auto q = sin_tensor(B, Tn, C, 0.37, 0.1), k = sin_tensor(B, Tn, C, 0.53, 0.7), v = sin_tensor(B, Tn, C, 0.71, 1.3);
  std::vector<int> len{16, 11};
  auto yl = local_attention(Var<float>(q), Var<float>(k), Var<float>(v), 2, 5, len);
  auto yg = local_attention(Var<float>(q), Var<float>(k), Var<float>(v), 2, 1, len);
  REQUIRE(kRefLocal.size() == size_t(B * Tn * C));
  for (size_t i = 0; i < kRefLocal.size(); ++i) {
    CAPTURE(i);
    CHECK(yl.value()[i] == doctest::Approx(kRefLocal[i]).epsilon(1e-5).scale(1.0));
    CHECK(yg.value()[i] == doctest::Approx(kRefGlobal[i]).epsilon(1e-5).scale(1.0));
  }
}

TEST_CASE("local_attention: gradients match finite differences (double, local and global, padded)") {
  Rng rng(8);
  struct Case { int64_t T; int window, H; std::vector<int> len; };
  std::vector<Case> cases = {{9, 5, 2, {9, 6}}, {8, 3, 1, {5, 8}}, {6, 19, 2, {4, 6}}, {7, 0, 2, {7, 4}}, {5, 1, 1, {0, 5}}};
  for (auto& c : cases) {
    CAPTURE(c.T); CAPTURE(c.window); CAPTURE(c.H);
    const int64_t C = 3 * c.H;
    auto q = Var<double>::parameter(random_tensor(Shape{2, c.T, C}, rng));
    auto k = Var<double>::parameter(random_tensor(Shape{2, c.T, C}, rng));
    auto v = Var<double>::parameter(random_tensor(Shape{2, c.T, C}, rng));
    auto f = [&](std::vector<Var<double>>& in) { return local_attention(in[0], in[1], in[2], c.H, c.window, c.len); };
    flowless::test::check_gradients(f, {q, k, v});
    // Only some inputs requiring grad.
    auto qc = Var<double>(q.value()), vc = Var<double>(v.value());
    flowless::test::check_gradients(f, {qc, k, vc});
    auto kc = Var<double>(k.value());
    flowless::test::check_gradients(f, {q, kc, vc});
  }
}

TEST_CASE("local_attention: 1 and 2 threads give bitwise identical forward and gradients") {
  Rng rng(9);
  const int64_t Tn = 300, C = 64;
  Tensor<float> qv(Shape{2, Tn, C}), kv(Shape{2, Tn, C}), vv(Shape{2, Tn, C}), gy(Shape{2, Tn, C});
  for (auto* t : {&qv, &kv, &vv, &gy})
    for (int64_t i = 0; i < t->numel(); ++i) (*t)[i] = float(rng.normal());
  for (int window : {9, 0}) {
    std::vector<std::vector<float>> res;
    for (int threads : {1, 2}) {
      set_num_threads(threads);
      auto q = Var<float>::parameter(qv.clone()), k = Var<float>::parameter(kv.clone()),
           v = Var<float>::parameter(vv.clone());
      auto y = local_attention(q, k, v, 4, window, {300, 217});
      std::vector<float> all = y.value().to_vector();
      backward(y, gy.clone());
      for (auto* g : {&q, &k, &v}) {
        auto gv = g->grad().to_vector();
        all.insert(all.end(), gv.begin(), gv.end());
      }
      res.push_back(all);
    }
    set_num_threads(1);
    CAPTURE(window);
    CHECK(res[0] == res[1]);
  }
}

TEST_CASE("local_attention: bad shapes are clear errors") {
  auto a = Var<float>(Tensor<float>::zeros(Shape{1, 8, 6}));
  auto b = Var<float>(Tensor<float>::zeros(Shape{1, 7, 6}));
  CHECK_THROWS_WITH_AS(local_attention(a, a, a, 4, 9, {8}), doctest::Contains("heads"), Error);
  CHECK_THROWS_WITH_AS(local_attention(a, b, a, 2, 9, {8}), doctest::Contains("same shape"), Error);
  CHECK_THROWS_WITH_AS(local_attention(a, a, a, 2, 9, {8, 8}), doctest::Contains("lengths"), Error);
}

// ---------------------------------------------------------------------------------------------------------------
// Losses. The k* values below come from PyTorch 1.13 (float32) running the reference's sigmoid_focal_loss
// (fvcore) and ctr_diou_loss_1d with reduction='sum', and .backward() for the gradients.

namespace {
const std::vector<float> kFocalX = {-3.0f, 0.5f, 2.25f, 0.0f, -0.75f, 4.0f, -20.0f, 20.0f, 1.5f, 0.125f, -1.25f, -5.5f};
const std::vector<float> kFocalY = {0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.3f, 0.9f, 0.0f};
// alpha 0.25 gamma 2
const std::vector<double> kFocalA = {22.7143726};
const std::vector<double> kFocalGradA = {0.000236153777, -0.0344842449, 0.830361009, -0.0745716989, 0.0653322414, -4.33765399e-06, -0.25000003, 0.75, 0.721068501, 0.0805469826, -0.188458025, 1.51502661e-07};
// alpha -1 (no alpha weighting) gamma 2
const std::vector<double> kFocalNoAlpha = {44.2480392};
const std::vector<double> kFocalGradNoAlpha = {0.000314871693, -0.13793698, 1.10714793, -0.298286796, 0.0871096551, -1.7350616e-05, -1.00000012, 1, 0.961424649, 0.134244978, -0.628193378, 2.02003548e-07};
// alpha 0.5 gamma 1.5
const std::vector<double> kFocalG15 = {22.4072533};
const std::vector<double> kFocalGradG15 = {0.000603424909, -0.0951317176, 0.533812225, -0.18028754, 0.0649594516, -5.39382563e-05, -0.50000006, 0.5, 0.474282563, 0.0809248611, -0.329192907, 1.31947559e-06};

const std::vector<float> kDiouP = {1.0f, 2.0f, 3.0f, 0.5f, 2.0f, 2.0f, 0.0f, 0.0f, 0.0f, 4.0f, 5.0f, 1.0f, 0.25f, 7.5f,
                                    2e-9f, 0.0f};  // last row: union and c below eps
const std::vector<float> kDiouT = {1.5f, 1.0f, 3.0f, 2.0f, 2.0f, 2.0f, 0.0f, 0.0f, 1.0f, 3.0f, 0.5f, 0.0f, 2.0f, 7.5f,
                                    0.0f, 1e-9f};
const std::vector<double> kDiou = {4.45391989};
const std::vector<double> kDiouGrad = {-0.346938789, 0.198250741, -0.00450000167, -0.230000004, 0, 0, -50000000, -50000000, -0.23999998, 0.144000009, 0.0341435187, -0.0630787015, -0.11495845, -0.000892989337, 14999999, -115000000};
const std::vector<double> kDiouRows = {0.474489778, 0.32250002, 0, 1, 0.439999968, 1.00173616, 0.192693919, 1.02250004};

Tensor<float> tens(const std::vector<float>& v, const Shape& s) { return Tensor<float>::from_vector(v, s); }
}  // namespace

TEST_CASE("losses: sigmoid_focal_loss matches the reference (PyTorch float32) value and gradient") {
  struct Case { float alpha, gamma; const std::vector<double>* val; const std::vector<double>* grad; };
  for (auto c : {Case{0.25f, 2.0f, &kFocalA, &kFocalGradA}, Case{-1.0f, 2.0f, &kFocalNoAlpha, &kFocalGradNoAlpha},
                 Case{0.5f, 1.5f, &kFocalG15, &kFocalGradG15}}) {
    CAPTURE(c.alpha); CAPTURE(c.gamma);
    auto x = Var<float>::parameter(tens(kFocalX, Shape{4, 3}));
    auto loss = sigmoid_focal_loss(x, tens(kFocalY, Shape{4, 3}), c.alpha, c.gamma);
    REQUIRE(loss.shape() == Shape{});
    CHECK(loss.value()[0] == doctest::Approx((*c.val)[0]).epsilon(1e-6));
    backward(loss);
    for (size_t i = 0; i < kFocalX.size(); ++i) {
      CAPTURE(i);
      CHECK(x.grad()[i] == doctest::Approx((*c.grad)[i]).epsilon(1e-5).scale(1e-2));
    }
  }
  // The default arguments are the reference's (alpha 0.25, gamma 2).
  auto x = Var<float>(tens(kFocalX, Shape{4, 3}));
  CHECK(sigmoid_focal_loss(x, tens(kFocalY, Shape{4, 3})).value()[0] == doctest::Approx(kFocalA[0]).epsilon(1e-6));
}

TEST_CASE("losses: sigmoid_focal_loss term by term on hand-computed elements") {
  // x = 0, y = 1: p = 0.5, ce = log 2, 1 - p_t = 0.5, alpha_t = 0.25 -> 0.25 * log2 * 0.25.
  // x = 2, y = 0: p = s(2), ce = 2 + log(1 + e^-2), 1 - p_t = p, alpha_t = 0.75.
  const double s2 = 1.0 / (1.0 + std::exp(-2.0));
  const double expect = 0.25 * std::log(2.0) * 0.25 + 0.75 * (2.0 + std::log1p(std::exp(-2.0))) * s2 * s2;
  auto x = Var<double>(Tensor<double>::from_vector({0.0, 2.0}, Shape{1, 2}));
  auto l = sigmoid_focal_loss(x, Tensor<double>::from_vector({1.0, 0.0}, Shape{1, 2}));
  CHECK(l.value()[0] == doctest::Approx(expect).epsilon(1e-14));
}

TEST_CASE("losses: diou_loss_1d matches the reference ctr_diou_loss_1d (value, per row, gradient, ties, eps)") {
  auto p = Var<float>::parameter(tens(kDiouP, Shape{8, 2}));
  auto loss = diou_loss_1d(p, tens(kDiouT, Shape{8, 2}));
  CHECK(loss.value()[0] == doctest::Approx(kDiou[0]).epsilon(1e-6));
  backward(loss);
  for (size_t i = 0; i < kDiouP.size(); ++i) {
    CAPTURE(i);
    CHECK(p.grad()[i] == doctest::Approx(kDiouGrad[i]).epsilon(1e-5).scale(1e-2));
  }
  for (int r = 0; r < 8; ++r) {
    CAPTURE(r);
    auto pr = Var<float>(tens({kDiouP[2 * r], kDiouP[2 * r + 1]}, Shape{1, 2}));
    auto lr = diou_loss_1d(pr, tens({kDiouT[2 * r], kDiouT[2 * r + 1]}, Shape{1, 2}));
    CHECK(lr.value()[0] == doctest::Approx(kDiouRows[r]).epsilon(1e-6).scale(1e-6));
  }
  // Hand check, row 0: pred (1, 2), target (1.5, 1): inter 2, union 3.5, c = 3.5, rho = 0.5*(2-1-1+1.5) = 0.75.
  auto one = diou_loss_1d(Var<double>(Tensor<double>::from_vector({1, 2}, Shape{1, 2})),
                          Tensor<double>::from_vector({1.5, 1}, Shape{1, 2}));
  CHECK(one.value()[0] == doctest::Approx(1.0 - 2.0 / 3.5 + (0.75 / 3.5) * (0.75 / 3.5)).epsilon(1e-14));
  // No rows: 0.
  auto none = diou_loss_1d(Var<float>(Tensor<float>(Shape{0, 2})), Tensor<float>(Shape{0, 2}));
  CHECK(none.value()[0] == 0.0f);
}

TEST_CASE("losses: mse, bce_with_logits and l1 with row weights against hand-computed values") {
  const std::vector<double> xv = {0.5, -1.0, 2.0, 0.0, 3.0, -0.25};
  const std::vector<double> tv = {0.0, 0.2, 1.0, 1.0, 0.5, 0.0};
  const std::vector<double> w = {2.0, 0.5};
  auto x = Var<double>(Tensor<double>::from_vector(xv, Shape{2, 3}));
  auto t = Tensor<double>::from_vector(tv, Shape{2, 3});
  double mse = 0, l1 = 0, bce = 0, mse_w = 0, l1_w = 0, bce_w = 0;
  for (int r = 0; r < 2; ++r) {
    double m = 0, a = 0, b = 0;
    for (int c = 0; c < 3; ++c) {
      const double e = xv[r * 3 + c] - tv[r * 3 + c], p = 1 / (1 + std::exp(-xv[r * 3 + c]));
      m += e * e;
      a += std::abs(e);
      b += -(tv[r * 3 + c] * std::log(p) + (1 - tv[r * 3 + c]) * std::log(1 - p));
    }
    mse += m; l1 += a; bce += b;
    mse_w += w[r] * m; l1_w += w[r] * a; bce_w += w[r] * b;
  }
  CHECK(mse_loss(x, t).value()[0] == doctest::Approx(mse).epsilon(1e-14));
  CHECK(mse_loss(x, t, w).value()[0] == doctest::Approx(mse_w).epsilon(1e-14));
  CHECK(l1_loss(x, t).value()[0] == doctest::Approx(l1).epsilon(1e-14));
  CHECK(l1_loss(x, t, w).value()[0] == doctest::Approx(l1_w).epsilon(1e-14));
  CHECK(bce_with_logits(x, t).value()[0] == doctest::Approx(bce).epsilon(1e-13));
  CHECK(bce_with_logits(x, t, w).value()[0] == doctest::Approx(bce_w).epsilon(1e-13));
  // Stable for large logits (no inf/NaN): x = 100, y = 0 -> 100; x = -100, y = 1 -> 100.
  auto big = bce_with_logits(Var<double>(Tensor<double>::from_vector({100.0, -100.0}, Shape{2})),
                             Tensor<double>::from_vector({0.0, 1.0}, Shape{2}));
  CHECK(big.value()[0] == doctest::Approx(200.0).epsilon(1e-14));
  // A 1-D input is one row: one weight.
  CHECK(mse_loss(Var<double>(Tensor<double>::from_vector({1.0, 2.0}, Shape{2})),
                 Tensor<double>::from_vector({0.0, 0.0}, Shape{2}), {3.0}).value()[0] == doctest::Approx(15.0));
  CHECK_THROWS_WITH_AS(mse_loss(x, t, {1.0}), doctest::Contains("row weights"), Error);
  CHECK_THROWS_WITH_AS(l1_loss(x, Tensor<double>::zeros(Shape{3, 2})), doctest::Contains("target"), Error);
}

TEST_CASE("losses: gradients match finite differences (double)") {
  Rng rng(12);
  auto X = random_tensor(Shape{5, 4}, rng, 2.0);
  Tensor<double> Y(Shape{5, 4}), P(Shape{5, 4});
  for (int64_t i = 0; i < Y.numel(); ++i) {
    Y[i] = rng.uniform() < 0.3 ? 1.0 : 0.0;
    P[i] = rng.uniform();
  }
  Y[3] = 0.7;  // a smoothed label
  const std::vector<double> w = {1.0, 0.5, 2.0, 0.0, 3.0};
  auto x = Var<double>::parameter(X);
  using F = std::function<Var<double>(std::vector<Var<double>>&)>;
  std::vector<F> fs = {
      [&](std::vector<Var<double>>& in) { return sigmoid_focal_loss(in[0], Y); },
      [&](std::vector<Var<double>>& in) { return sigmoid_focal_loss(in[0], P, -1.0, 1.5); },
      [&](std::vector<Var<double>>& in) { return sigmoid_focal_loss(in[0], Y, 0.5, 0.0); },
      [&](std::vector<Var<double>>& in) { return mse_loss(in[0], P, w); },
      [&](std::vector<Var<double>>& in) { return bce_with_logits(in[0], P); },
      [&](std::vector<Var<double>>& in) { return bce_with_logits(in[0], P, w); },
      [&](std::vector<Var<double>>& in) { return l1_loss(in[0], P, w); },
  };
  for (size_t n = 0; n < fs.size(); ++n) {
    CAPTURE(n);
    flowless::test::check_gradients(fs[n], {x});
  }
  // DIoU on non-negative offsets away from ties (finite differences across a kink are meaningless).
  Tensor<double> pd(Shape{6, 2}), td(Shape{6, 2});
  for (int64_t i = 0; i < pd.numel(); ++i) {
    pd[i] = 0.2 + 3 * rng.uniform();
    td[i] = 0.1 + 3 * rng.uniform();
  }
  auto p = Var<double>::parameter(pd);
  flowless::test::check_gradients([&](std::vector<Var<double>>& in) { return diou_loss_1d(in[0], td); }, {p});
}

TEST_CASE("losses: sums do not depend on the thread count, no-grad records nothing") {
  Rng rng(13);
  Tensor<float> x(Shape{4536, 20}), y(Shape{4536, 20});
  for (int64_t i = 0; i < x.numel(); ++i) {
    x[i] = float(3 * rng.normal());
    y[i] = rng.uniform() < 0.05 ? 1.0f : 0.0f;
  }
  std::vector<std::vector<float>> res;
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    auto xv = Var<float>::parameter(x.clone());
    auto l = sigmoid_focal_loss(xv, y);
    backward(l);
    auto r = xv.grad().to_vector();
    r.push_back(l.value()[0]);
    res.push_back(r);
  }
  set_num_threads(1);
  CHECK(res[0] == res[1]);
  NoGradGuard ng;
  auto l = sigmoid_focal_loss(Var<float>::parameter(x), y);
  CHECK_FALSE(l.requires_grad());
}
