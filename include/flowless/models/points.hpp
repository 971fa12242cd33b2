// flowless/models/points.hpp - the anchor points of a 1-D feature pyramid
// (ActionFormer's PointGenerator, libs/modeling/loc_generators.py).
//
// Level l has stride s_l and length T_l; its points sit at
//   t = 0, s_l, 2 s_l, ..., (T_l - 1) s_l      (level-0 grid units, float32,
//                                               no half-stride offset)
// and each carries the level's regression range [reg_lo, reg_hi] (float32,
// both bounds inclusive, see label_assignment.hpp) and its stride. All levels
// are concatenated, level 0 first: row i of every per-point array (targets,
// concatenated head outputs) is point i of the PointSet. With a padded input
// of length T_0 and strides 1, 2, 4, ... the level lengths are T_0 / s_l.
//
// level_valid_lengths: the valid length of every level for a prefix mask of
// v_0 valid level-0 steps. A strided masked conv keeps mask[i * s]
// (nearest-neighbour resize), so level l has ceil(v_0 / s_l) valid points.
//
// no_contract(x): returns x rounded to T through memory. The reference does
// every elementwise op as its own float32 kernel, so a*b+c rounds twice; GNU
// C++ (-ffp-contract=fast with FMA units) would otherwise fuse it into one
// rounding. Used where the exact reference rounding matters (point decoding,
// center sampling, seconds conversion).
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless {

namespace heads_detail {
template <class T>
inline T no_contract(T x) {
  volatile T v = x;
  return v;
}
}  // namespace heads_detail

struct PointLevel {
  int stride = 1;
  float reg_lo = 0, reg_hi = 0;
  int length = 0;  // number of points on this level
};

struct PointSet {
  std::vector<PointLevel> levels;
  std::vector<int64_t> offset;  // offset[l] = first row of level l (levels.size() entries)

  int num_levels() const { return static_cast<int>(levels.size()); }
  /// Total number of points (sum of the level lengths).
  int64_t size() const {
    return levels.empty() ? 0 : offset.back() + levels.back().length;
  }
  /// The level holding row i.
  int level_of(int64_t i) const {
    FLOWLESS_CHECK(i >= 0 && i < size(), "PointSet: point ", i, " out of range [0, ", size(), ")");
    int l = num_levels() - 1;
    while (offset[static_cast<size_t>(l)] > i) --l;
    return l;
  }
  /// Position in level-0 grid units (float32, as the reference's buffer).
  float t(int64_t i) const {
    const int l = level_of(i);
    return static_cast<float>((i - offset[static_cast<size_t>(l)]) * levels[static_cast<size_t>(l)].stride);
  }
  float lo(int64_t i) const { return levels[static_cast<size_t>(level_of(i))].reg_lo; }
  float hi(int64_t i) const { return levels[static_cast<size_t>(level_of(i))].reg_hi; }
  float stride(int64_t i) const { return static_cast<float>(levels[static_cast<size_t>(level_of(i))].stride); }
};

/// Points for levels of the given lengths, strides and regression ranges.
/// Errors: mismatched list sizes, stride < 1, negative length, lo > hi.
inline PointSet make_points(const std::vector<int>& level_lengths, const std::vector<int>& strides,
                            const std::vector<std::array<float, 2>>& regression_range) {
  FLOWLESS_CHECK(level_lengths.size() == strides.size() && strides.size() == regression_range.size(),
                 "make_points: ", level_lengths.size(), " level lengths, ", strides.size(), " strides and ",
                 regression_range.size(), " regression ranges");
  PointSet p;
  int64_t off = 0;
  for (size_t l = 0; l < strides.size(); ++l) {
    FLOWLESS_CHECK(strides[l] >= 1, "make_points: stride of level ", l, " is ", strides[l]);
    FLOWLESS_CHECK(level_lengths[l] >= 0, "make_points: negative length ", level_lengths[l], " at level ", l);
    FLOWLESS_CHECK(regression_range[l][0] <= regression_range[l][1], "make_points: regression range of level ",
                   l, " is [", regression_range[l][0], ", ", regression_range[l][1], "]");
    // t = k * s must be exact in float32 (the reference's float32 arange).
    FLOWLESS_CHECK(static_cast<int64_t>(level_lengths[l]) * strides[l] <= (int64_t(1) << 24),
                   "make_points: level ", l, " extends beyond 2^24 grid steps");
    p.levels.push_back(PointLevel{strides[l], regression_range[l][0], regression_range[l][1], level_lengths[l]});
    p.offset.push_back(off);
    off += level_lengths[l];
  }
  return p;
}

/// Level lengths of a pyramid over a padded level-0 length: T_0 / s_l (each
/// stride must divide T_0).
inline std::vector<int> level_lengths(int padded_len, const std::vector<int>& strides) {
  std::vector<int> out;
  for (int s : strides) {
    FLOWLESS_CHECK(s >= 1 && padded_len % s == 0, "level_lengths: padded length ", padded_len,
                   " is not divisible by stride ", s);
    out.push_back(padded_len / s);
  }
  return out;
}

/// Valid lengths per level for v0 valid level-0 steps: ceil(v0 / s_l).
inline std::vector<int> level_valid_lengths(int v0, const std::vector<int>& strides) {
  FLOWLESS_CHECK(v0 >= 0, "level_valid_lengths: negative valid length ", v0);
  std::vector<int> out;
  for (int s : strides) {
    FLOWLESS_CHECK(s >= 1, "level_valid_lengths: stride ", s);
    out.push_back((v0 + s - 1) / s);
  }
  return out;
}

}  // namespace flowless
