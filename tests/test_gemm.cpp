// cpu::gemm / gemm_rows: the packed fp32 product against a double reference
// (every transpose, beta, row pointers, edge tiles, several K-blocks), and the
// bfloat16 inference path (MatmulPrecision::bf16) against a reference computed
// from bfloat16-rounded inputs, and the bias epilogue.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "flowless/backend/cpu_gemm.hpp"
#include "flowless/core/random.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/models/detector.hpp"
#include "flowless/ops/conv1d.hpp"

using namespace flowless;

namespace {

float round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  float y;
  std::memcpy(&y, &u, 4);
  return y;
}

struct Case {
  int64_t M, N, K;
  bool ta, tb;
  float beta;
};

struct Product {
  std::vector<float> A, B, C0;
  int64_t lda, ldb;
};

Product make(const Case& c, uint64_t seed) {
  Rng rng(seed);
  Product p;
  p.A.resize(size_t(c.M * c.K));
  p.B.resize(size_t(c.K * c.N));
  p.C0.resize(size_t(c.M * c.N));
  for (auto& a : p.A) a = float(rng.normal());
  for (auto& b : p.B) b = float(rng.normal());
  for (auto& x : p.C0) x = float(rng.normal());
  p.lda = c.ta ? c.M : c.K;
  p.ldb = c.tb ? c.K : c.N;
  return p;
}

// alpha * op(A) op(B) + beta * C0 in double, inputs optionally rounded to bfloat16.
std::vector<double> reference(const Case& c, const Product& p, float alpha, bool bf16) {
  auto in = [&](float x) { return double(bf16 ? round_bf16(x) : x); };
  std::vector<double> r(size_t(c.M * c.N));
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const float a = c.ta ? p.A[size_t(k * p.lda + i)] : p.A[size_t(i * p.lda + k)];
        const float b = c.tb ? p.B[size_t(j * p.ldb + k)] : p.B[size_t(k * p.ldb + j)];
        s += in(a) * in(b);
      }
      r[size_t(i * c.N + j)] = double(alpha) * s + double(c.beta) * double(p.C0[size_t(i * c.N + j)]);
    }
  return r;
}

const std::vector<Case> kCases = {
    {96, 64, 384, false, false, 0.f},   // full tiles, one K-block
    {61, 45, 301, false, true, 0.f},    // edge tiles, odd K (a bfloat16 pair with zero)
    {100, 77, 99, true, false, 0.5f},   // trans A, beta
    {37, 70, 800, true, true, 1.f},     // three K-blocks, both transposed
    {300, 33, 17, false, false, -1.f},  // many row blocks, small K
    {150, 600, 800, true, false, 0.5f},  // trans A shared by column groups: packed once for all of them
    {40, 300, 500, true, true, 0.f},     // the same with B transposed, one partial row block
};

}  // namespace

TEST_CASE("gemm: packed fp32 product matches a double reference (transposes, beta, edges, K-blocks)") {
  for (size_t ci = 0; ci < kCases.size(); ++ci) {
    const Case& c = kCases[ci];
    CAPTURE(ci);
    Product p = make(c, 100 + ci);
    const std::vector<double> ref = reference(c, p, 1.25f, false);
    std::vector<float> C = p.C0;
    cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, p.A.data(), p.lda, p.B.data(), p.ldb, c.beta, C.data(), c.N);
    double worst = 0;
    for (size_t i = 0; i < C.size(); ++i) worst = std::max(worst, std::abs(double(C[i]) - ref[i]) / std::sqrt(double(c.K)));
    CHECK(worst < 1e-5);
    // gemm_rows with row pointers gives the same bits.
    std::vector<const float*> rows;
    const int64_t nrows = c.ta ? c.K : c.M;
    for (int64_t q = 0; q < nrows; ++q) rows.push_back(p.A.data() + q * p.lda);
    std::vector<float> C2 = p.C0;
    cpu::gemm_rows<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, rows.data(), p.B.data(), p.ldb, c.beta, C2.data(), c.N);
    CHECK(std::memcmp(C.data(), C2.data(), C.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("gemm: the bias epilogue equals adding the bias afterwards (fp32, bf16, Eigen path, any thread count)") {
  // Every kCases shape (edge tiles, several K-blocks: the bias must be added
  // once, in the last block) plus a product small enough for the Eigen path.
  std::vector<Case> cases = kCases;
  cases.push_back({5, 7, 3, false, true, 0.5f});
  for (const bool bf16 : {false, true}) {
    cpu::MatmulPrecisionScope scope(bf16 ? cpu::MatmulPrecision::bf16 : cpu::MatmulPrecision::fp32);
    for (size_t ci = 0; ci < cases.size(); ++ci) {
      const Case& c = cases[ci];
      CAPTURE(bf16);
      CAPTURE(ci);
      Product p = make(c, 400 + ci);
      Rng rng(500 + ci);
      std::vector<float> bias(size_t(c.N));
      for (auto& b : bias) b = float(3 * rng.normal());
      std::vector<float> plain = p.C0, fused = p.C0;
      cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, p.A.data(), p.lda, p.B.data(), p.ldb, c.beta, plain.data(), c.N);
      for (int64_t i = 0; i < c.M; ++i)
        for (int64_t j = 0; j < c.N; ++j) plain[size_t(i * c.N + j)] += bias[size_t(j)];
      cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, p.A.data(), p.lda, p.B.data(), p.ldb, c.beta, fused.data(), c.N,
                       bias.data());
      double worst = 0;
      for (size_t i = 0; i < plain.size(); ++i) worst = std::max(worst, std::abs(double(plain[i]) - double(fused[i])));
      // one rounding of alpha * acc (|acc| ~ sqrt(K)) apart: the epilogue fuses it with the add
      CHECK(worst / std::sqrt(double(c.K) + 1) < 1e-6);
      // gemm_rows: same bits as gemm; 1 and 2 threads: same bits
      std::vector<const float*> rows;
      for (int64_t q = 0; q < (c.ta ? c.K : c.M); ++q) rows.push_back(p.A.data() + q * p.lda);
      const int prev = num_threads();
      for (const int nt : {1, 2}) {
        set_num_threads(nt);
        std::vector<float> r = p.C0;
        cpu::gemm_rows<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, rows.data(), p.B.data(), p.ldb, c.beta, r.data(), c.N,
                              bias.data());
        CHECK(std::memcmp(r.data(), fused.data(), r.size() * sizeof(float)) == 0);
      }
      set_num_threads(prev);
    }
  }
}

TEST_CASE("gemm: B panels beyond the per-thread buffer's cap (weight gradients over long sequences) are right") {
#if FLOWLESS_CPU_PACKED_GEMM
  // K * 32 * ceil(N / 32) > kKeepB floats: the panel is allocated for the call.
  const Case c{13, 1040, 4100, true, false, 0.5f};
  REQUIRE(c.K * 33 * 32 > cpu::gemm_detail::kKeepB);
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    cpu::MatmulPrecisionScope scope(bf16 ? cpu::MatmulPrecision::bf16 : cpu::MatmulPrecision::fp32);
    const bool rounded = bf16 && cpu::matmul_bf16_available();
    Product p = make(c, 900);
    const std::vector<double> ref = reference(c, p, 1.f, rounded);
    for (int round = 0; round < 2; ++round) {  // the second call after a small one that used the thread's buffer
      std::vector<float> C = p.C0;
      cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.f, p.A.data(), p.lda, p.B.data(), p.ldb, c.beta, C.data(), c.N);
      double worst = 0;
      for (size_t i = 0; i < C.size(); ++i) worst = std::max(worst, std::abs(double(C[i]) - ref[i]) / std::sqrt(double(c.K)));
      CHECK(worst < 1e-5);
      std::vector<float> small(64 * 64, 0.f), a(64 * 64, 1.f);
      cpu::gemm<float>(false, false, 64, 64, 64, 1.f, a.data(), 64, a.data(), 64, 0.f, small.data(), 64);
      CHECK(small[0] == 64.f);
    }
  }
#endif
}

TEST_CASE("gemm: MatmulPrecisionScope nests and restores, unknown names are errors") {
  CHECK(cpu::matmul_precision() == cpu::MatmulPrecision::fp32);
  {
    cpu::MatmulPrecisionScope a(cpu::MatmulPrecision::bf16);
    CHECK(cpu::matmul_precision() == cpu::MatmulPrecision::bf16);
    {
      cpu::MatmulPrecisionScope b(cpu::MatmulPrecision::fp32);
      CHECK(cpu::matmul_precision() == cpu::MatmulPrecision::fp32);
    }
    CHECK(cpu::matmul_precision() == cpu::MatmulPrecision::bf16);
  }
  CHECK(cpu::matmul_precision() == cpu::MatmulPrecision::fp32);
  CHECK(cpu::parse_matmul_precision("bf16") == cpu::MatmulPrecision::bf16);
  CHECK_THROWS_WITH_AS(cpu::parse_matmul_precision("fp16"), doctest::Contains("unknown precision 'fp16'"), Error);
}

TEST_CASE("gemm: bf16 products equal the product of bfloat16-rounded inputs (fp32 accumulation)") {
  if (!cpu::matmul_bf16_available()) {
    MESSAGE("this build has no AVX-512 BF16: MatmulPrecision::bf16 runs in fp32 (checked below)");
  }
  for (size_t ci = 0; ci < kCases.size(); ++ci) {
    const Case& c = kCases[ci];
    CAPTURE(ci);
    Product p = make(c, 200 + ci);
    std::vector<float> C32 = p.C0, C16 = p.C0;
    cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, p.A.data(), p.lda, p.B.data(), p.ldb, c.beta, C32.data(), c.N);
    {
      cpu::MatmulPrecisionScope s(cpu::MatmulPrecision::bf16);
      cpu::gemm<float>(c.ta, c.tb, c.M, c.N, c.K, 1.25f, p.A.data(), p.lda, p.B.data(), p.ldb, c.beta, C16.data(),
                       c.N);
    }
    if (!cpu::matmul_bf16_available()) {
      CHECK(std::memcmp(C32.data(), C16.data(), C32.size() * sizeof(float)) == 0);
      continue;
    }
    const std::vector<double> ref16 = reference(c, p, 1.25f, true), ref32 = reference(c, p, 1.25f, false);
    double err16 = 0, dev32 = 0;
    for (size_t i = 0; i < C16.size(); ++i) {
      err16 = std::max(err16, std::abs(double(C16[i]) - ref16[i]));
      dev32 = std::max(dev32, std::abs(double(C16[i]) - ref32[i]));
    }
    const double scale = std::sqrt(double(c.K));
    // fp32 accumulation of exactly rounded inputs ...
    CHECK(err16 / scale < 1e-5);
    // ... which differ from the fp32 product by bfloat16's rounding (2^-8 relative).
    CHECK(dev32 / scale > 1e-4);
    CHECK(dev32 / scale < 2e-2);
  }
}

TEST_CASE("gemm: bf16 results do not depend on the thread count") {
  const Case c{250, 130, 700, false, false, 0.f};
  Product p = make(c, 300);
  std::vector<float> C1(p.C0.size()), C2(p.C0.size());
  cpu::MatmulPrecisionScope s(cpu::MatmulPrecision::bf16);
  const int prev = num_threads();
  set_num_threads(1);
  cpu::gemm<float>(false, false, c.M, c.N, c.K, 1.f, p.A.data(), p.lda, p.B.data(), p.ldb, 0.f, C1.data(), c.N);
  set_num_threads(2);
  cpu::gemm<float>(false, false, c.M, c.N, c.K, 1.f, p.A.data(), p.lda, p.B.data(), p.ldb, 0.f, C2.data(), c.N);
  set_num_threads(prev);
  CHECK(std::memcmp(C1.data(), C2.data(), C1.size() * sizeof(float)) == 0);
}

TEST_CASE("gemm: a detector run in bf16 stays close to fp32") {
  DetectorConfig cfg;
  cfg.input_dim = 64;
  cfg.num_classes = 5;
  cfg.embd_dim = cfg.fpn_dim = cfg.head_dim = 128;
  cfg.n_head = 4;
  cfg.max_seq_len = 256;
  cfg.mha_win_size.assign(size_t(cfg.backbone_arch[2] + 1), 9);
  cfg.validate("test");
  models::Detector<float> model(cfg, 5);
  const int64_t T = 200;
  Rng rng(6);
  std::vector<float> x(size_t(T * cfg.input_dim));
  for (auto& v : x) v = float(rng.uniform());
  const VideoMeta meta{"v", 30.0, double(T) * 4 / 30.0, cfg.feat_stride, cfg.num_frames};
  models::DetectorOutput<float> o32, o16;
  auto d32 = model.detect(x.data(), T, cfg.input_dim, meta, &o32);
  std::vector<Detection> d16;
  {
    cpu::MatmulPrecisionScope s(cpu::MatmulPrecision::bf16);
    d16 = model.detect(x.data(), T, cfg.input_dim, meta, &o16);
  }
  double worst = 0, any = 0;
  for (size_t l = 0; l < o32.cls_logits.size(); ++l) {
    const Tensor<float>&a = o32.cls_logits[l].value(), &b = o16.cls_logits[l].value();
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double d = std::abs(double(a[i]) - double(b[i]));
      worst = std::max(worst, d / std::max(1.0, std::abs(double(a[i]))));
      any = std::max(any, d);
    }
  }
  CHECK(worst < 3e-2);
  if (cpu::matmul_bf16_available()) CHECK(any > 0);
  CHECK(d16.size() == d32.size());
}

TEST_CASE("gemm_prepacked: a batch of products over packed B equals gemm bit for bit (fp32, bf16, tiny, bias, threads)") {
  // Shapes of the Winograd slabs and others: edge tiles, several K-blocks, transposed B,
  // a product small enough for gemm's Eigen path (which the batch must follow).
  struct P { int64_t M, N, K; bool tb; float beta; bool bias; };
  const std::vector<P> shapes = {{36, 64, 64, false, 0.f, false}, {61, 45, 301, true, 0.5f, true},
                                 {130, 96, 800, false, 1.f, true}, {4, 8, 8, false, 0.f, true},
                                 {300, 33, 17, true, -1.f, false}};
  const int prev_threads = num_threads();
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    cpu::MatmulPrecisionScope scope(bf16 ? cpu::MatmulPrecision::bf16 : cpu::MatmulPrecision::fp32);
    std::vector<Product> prods;
    std::vector<std::vector<float>> bias;
    std::vector<cpu::PackedB> packed;
    packed.reserve(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      const P& s = shapes[i];
      prods.push_back(make(Case{s.M, s.N, s.K, false, s.tb, s.beta}, 700 + i));
      Rng rng(800 + i);
      bias.emplace_back(size_t(s.N));
      for (auto& b : bias.back()) b = float(rng.normal());
      packed.emplace_back(s.tb, s.K, s.N, prods.back().B.data(), prods.back().ldb);
      CHECK(packed.back().precision() == cpu::effective_matmul_precision());
    }
    std::vector<std::vector<float>> want(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      const P& s = shapes[i];
      want[i] = prods[i].C0;
      cpu::gemm<float>(false, s.tb, s.M, s.N, s.K, 0.75f, prods[i].A.data(), prods[i].lda, prods[i].B.data(),
                       prods[i].ldb, s.beta, want[i].data(), s.N, s.bias ? bias[i].data() : nullptr);
    }
    for (const int threads : {1, 2}) {
      CAPTURE(threads);
      set_num_threads(threads);
      std::vector<std::vector<float>> got(shapes.size());
      std::vector<cpu::PrepackedProduct> batch;
      for (size_t i = 0; i < shapes.size(); ++i) {
        got[i] = prods[i].C0;
        batch.push_back({&packed[i], shapes[i].M, prods[i].A.data(), prods[i].lda, got[i].data(), shapes[i].N,
                         shapes[i].bias ? bias[i].data() : nullptr});
      }
      // gemm_prepacked takes one alpha and beta for the batch: run products of equal beta together.
      for (float beta : {0.f, 0.5f, 1.f, -1.f}) {
        std::vector<cpu::PrepackedProduct> part;
        for (size_t i = 0; i < shapes.size(); ++i)
          if (shapes[i].beta == beta) part.push_back(batch[i]);
        cpu::gemm_prepacked(0.75f, beta, part);
      }
      for (size_t i = 0; i < shapes.size(); ++i) {
        CAPTURE(i);
        CHECK(std::memcmp(got[i].data(), want[i].data(), want[i].size() * sizeof(float)) == 0);
      }
    }
  }
  set_num_threads(prev_threads);
  // A panel packed in one precision and used under the other: the product reads B itself.
  const Case c{40, 64, 96, false, false, 0.f};
  const Product p = make(c, 900);
  const cpu::PackedB fp32_panel(false, c.K, c.N, p.B.data(), p.ldb);
  cpu::MatmulPrecisionScope scope(cpu::MatmulPrecision::bf16);
  std::vector<float> want(size_t(c.M * c.N)), got(size_t(c.M * c.N));
  cpu::gemm<float>(false, false, c.M, c.N, c.K, 1.f, p.A.data(), p.lda, p.B.data(), p.ldb, 0.f, want.data(), c.N);
  cpu::gemm_prepacked(1.f, 0.f, {{&fp32_panel, c.M, p.A.data(), p.lda, got.data(), c.N}});
  CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
}

TEST_CASE("winograd_f23_fused: equals the unfused Winograd conv bit for bit and the direct sum (fp32, bf16, threads)") {
  // (Tx, Cin, Cout, Ly): one and several 48-pair tasks, an odd Ly below Tx,
  // column groups beyond one (Cout > 256) with a partial last group and edge
  // tiles, an input width with a bfloat16 pair tail, and a product too small
  // for the fused path (it must decline and leave y alone).
  struct S { int64_t Tx, Cin, Cout, Ly; };
  const std::vector<S> shapes = {{200, 64, 64, 200}, {97, 70, 100, 97}, {300, 131, 300, 251}, {50, 64, 96, 50},
                                 {7, 64, 64, 7}};
  const int prev_threads = num_threads();
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    cpu::MatmulPrecisionScope scope(bf16 ? cpu::MatmulPrecision::bf16 : cpu::MatmulPrecision::fp32);
    for (size_t si = 0; si < shapes.size(); ++si) {
      const S s = shapes[si];
      CAPTURE(si);
      Rng rng(1000 + si);
      std::vector<float> x(size_t(s.Tx * s.Cin)), w(size_t(s.Cout * s.Cin * 3)), bias(size_t(s.Cout));
      for (auto& v : x) v = float(rng.normal());
      for (auto& v : w) v = float(rng.normal() * 0.1);
      for (auto& v : bias) v = float(rng.normal());
      std::vector<float> V(size_t(4 * s.Cin * s.Cout));
      detail::winograd_weights_forward(w.data(), s.Cout, s.Cin, V.data());
      const std::vector<cpu::PackedB> slabs = detail::pack_winograd(V.data(), s.Cin, s.Cout);
      const bool tiny = 2.0 * double(std::min<int64_t>((s.Ly + 1) / 2, 48)) * double(s.Cin) * double(s.Cout) < 1e5;
      for (const bool accumulate : {false, true}) {
        CAPTURE(accumulate);
        const float* b = accumulate ? nullptr : bias.data();
        std::vector<float> y0(size_t(s.Ly * s.Cout));
        for (auto& v : y0) v = float(rng.normal());
        std::vector<float> want = y0;
        detail::conv3_winograd_unfused(x.data(), s.Tx, s.Cin, V.data(), s.Cout, want.data(), s.Ly, accumulate, b,
                                       slabs.data());
        // the direct sum in double (inputs rounded to bfloat16 in bf16): the unfused path is right
        double worst = 0;
        for (int64_t t = 0; t < s.Ly; ++t)
          for (int64_t o = 0; o < s.Cout; ++o) {
            double acc = accumulate ? double(y0[size_t(t * s.Cout + o)]) : double(bias[size_t(o)]);
            for (int64_t k = 0; k < 3; ++k) {
              const int64_t r = t - 1 + k;
              if (r < 0 || r >= s.Tx) continue;
              for (int64_t i = 0; i < s.Cin; ++i)
                acc += double(x[size_t(r * s.Cin + i)]) * double(w[size_t((o * s.Cin + i) * 3 + k)]);
            }
            worst = std::max(worst, std::abs(acc - double(want[size_t(t * s.Cout + o)])));
          }
        CHECK(worst < (bf16 ? 0.15 : 1e-3));
        for (const int threads : {1, 2, 3}) {
          CAPTURE(threads);
          set_num_threads(threads);
          std::vector<float> got = y0;
          const bool fused =
              cpu::winograd_f23_fused(x.data(), s.Tx, s.Cin, slabs.data(), s.Cout, got.data(), s.Ly, accumulate, b);
#if FLOWLESS_CPU_PACKED_GEMM
          CHECK(fused == !tiny);
#else
          CHECK(!fused);
          (void)tiny;
#endif
          if (!fused) CHECK(std::memcmp(got.data(), y0.data(), y0.size() * sizeof(float)) == 0);
          got = y0;
          detail::conv3_winograd(x.data(), s.Tx, s.Cin, V.data(), s.Cout, got.data(), s.Ly, accumulate, b, slabs.data());
          CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
        }
        set_num_threads(prev_threads);
      }
    }
  }
  // Slabs packed in one precision and used under the other: the fused path declines.
  std::vector<float> V(size_t(4 * 64 * 64), 0.01f), x(size_t(200 * 64), 1.f), y(size_t(200 * 64), 0.f);
  const std::vector<cpu::PackedB> fp32_slabs = detail::pack_winograd(V.data(), 64, 64);
  cpu::MatmulPrecisionScope scope(cpu::MatmulPrecision::bf16);
#if FLOWLESS_CPU_PACKED_GEMM
  const bool expect = !cpu::matmul_bf16_available();  // without BF16 the setting is ignored: fp32 is what runs
#else
  const bool expect = false;
#endif
  CHECK(cpu::winograd_f23_fused(x.data(), 200, 64, fp32_slabs.data(), 64, y.data(), 200, false, nullptr) == expect);
}

TEST_CASE("gemm_rows_prepacked: equals gemm_rows bit for bit (row pointers, transposed B, bias, tiny, threads)") {
  struct P { int64_t M, N, K; bool tb; float beta; bool bias; };
  const std::vector<P> shapes = {{100, 72, 240, true, 0.f, true}, {37, 45, 301, false, 0.5f, false},
                                 {5, 8, 8, true, 0.f, true}, {300, 33, 800, false, 1.f, true}};
  const int prev_threads = num_threads();
  for (const bool bf16 : {false, true}) {
    CAPTURE(bf16);
    cpu::MatmulPrecisionScope scope(bf16 ? cpu::MatmulPrecision::bf16 : cpu::MatmulPrecision::fp32);
    for (size_t si = 0; si < shapes.size(); ++si) {
      const P s = shapes[si];
      CAPTURE(si);
      const Product p = make(Case{s.M + 2, s.N, s.K, false, s.tb, s.beta}, 1100 + si);
      // rows of A in a scrambled order, one of them repeated (as conv patches may alias)
      std::vector<const float*> rows(size_t(s.M));
      for (int64_t q = 0; q < s.M; ++q) rows[size_t(q)] = p.A.data() + ((q * 7) % (s.M + 2)) * p.lda;
      rows[0] = rows[size_t(s.M - 1)];
      Rng rng(1200 + si);
      std::vector<float> bias(size_t(s.N));
      for (auto& b : bias) b = float(rng.normal());
      const float* bp = s.bias ? bias.data() : nullptr;
      std::vector<float> want(p.C0.begin(), p.C0.begin() + s.M * s.N);
      cpu::gemm_rows<float>(false, s.tb, s.M, s.N, s.K, 0.75f, rows.data(), p.B.data(), p.ldb, s.beta, want.data(), s.N,
                            bp);
      const cpu::PackedB packed(s.tb, s.K, s.N, p.B.data(), p.ldb);
      for (const int threads : {1, 2, 3}) {
        CAPTURE(threads);
        set_num_threads(threads);
        std::vector<float> got(p.C0.begin(), p.C0.begin() + s.M * s.N);
        cpu::gemm_rows_prepacked(s.M, 0.75f, rows.data(), packed, s.beta, got.data(), s.N, bp);
        CHECK(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)) == 0);
      }
      set_num_threads(prev_threads);
    }
  }
}
