// flowless/core/random.hpp - a small deterministic random generator.
//
// The same seed gives the same stream on every platform and standard library
// (std::normal_distribution and friends do not promise that), which the
// determinism guarantees (same seed and threads -> identical model files)
// rely on.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>

namespace flowless {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0x853c49e6748fea9bULL) { reseed(seed); }
  void reseed(uint64_t seed) {
    state_ = seed;
    for (int i = 0; i < 4; ++i) s_[i] = splitmix();
    has_spare_ = false;
  }
  /// xoshiro256** step.
  uint64_t next_u64() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  /// Uniform in [0, 1).
  double uniform() { return (next_u64() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [lo, hi] (inclusive).
  int64_t randint(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return lo + static_cast<int64_t>(next_u64() % span);
  }
  /// Standard normal (Box-Muller, cached pair).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = r * std::sin(6.283185307179586 * u2);
    has_spare_ = true;
    return r * std::cos(6.283185307179586 * u2);
  }
  double normal(double mean, double std) { return mean + std * normal(); }

  /// The full generator state as text (for checkpoints), and back.
  std::string state() const {
    uint64_t spare_bits;
    std::memcpy(&spare_bits, &spare_, sizeof spare_bits);
    std::string out;
    for (uint64_t v : {s_[0], s_[1], s_[2], s_[3], uint64_t(has_spare_), spare_bits}) out += std::to_string(v) + " ";
    return out;
  }
  void set_state(const std::string& text) {
    std::istringstream in(text);
    uint64_t v[6];
    for (auto& x : v)
      if (!(in >> x)) throw std::runtime_error("Rng::set_state: malformed state '" + text + "'");
    for (int i = 0; i < 4; ++i) s_[i] = v[i];
    has_spare_ = v[4] != 0;
    std::memcpy(&spare_, &v[5], sizeof spare_);
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t splitmix() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t state_ = 0;
  uint64_t s_[4] = {0, 0, 0, 0};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace flowless
