// flowless/core/shape.hpp - shapes of up to 4 dimensions.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "flowless/core/error.hpp"

namespace flowless {

/// A row-major shape with 0..4 dimensions. Shape{} is a scalar (numel 1).
struct Shape {
  static constexpr int kMaxDims = 4;
  int nd = 0;
  std::array<int64_t, kMaxDims> d{0, 0, 0, 0};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    FLOWLESS_CHECK(dims.size() <= kMaxDims, "Shape: at most 4 dimensions, got ", dims.size());
    for (int64_t v : dims) {
      FLOWLESS_CHECK(v >= 0, "Shape: negative dimension ", v);
      d[nd++] = v;
    }
  }
  int64_t operator[](int i) const {
    if (i < 0) i += nd;
    FLOWLESS_CHECK(i >= 0 && i < nd, "Shape: dimension ", i, " out of range for ", str());
    return d[i];
  }
  int64_t& operator[](int i) {
    if (i < 0) i += nd;
    FLOWLESS_CHECK(i >= 0 && i < nd, "Shape: dimension ", i, " out of range for ", str());
    return d[i];
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < nd; ++i) n *= d[i];
    return n;
  }
  bool operator==(const Shape& o) const {
    if (nd != o.nd) return false;
    for (int i = 0; i < nd; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Shape& o) const { return !(*this == o); }
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < nd; ++i) s += (i ? ", " : "") + std::to_string(d[i]);
    return s + ")";
  }
};

}  // namespace flowless
