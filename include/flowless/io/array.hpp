// flowless/io/array.hpp - a typed, shaped block of bytes as read from or
// written to tensor files (.npy/.npz, .safetensors, PyTorch checkpoints).
//
// Contract:
//   * shape is row-major (C order); an empty shape is a scalar (numel 1);
//     a zero in the shape means an empty array (numel 0).
//   * data holds exactly numel() * dtype_size(dtype) bytes, elements in
//     little-endian byte order (the readers convert big-endian files).
//   * to_float32 converts any dtype to float (f16/bf16 exactly, f64 and
//     64-bit ints by rounding, bool to 0/1); the context string (usually a
//     file and tensor name) names the array in errors.
//   * shape_numel / shape_nbytes check every dimension is >= 0 and that the
//     products do not overflow (readers call them before trusting a shape).
// The library assumes a little-endian host.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"

#if defined(__BYTE_ORDER__) && (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__)
#error "flowless io assumes a little-endian host"
#endif

namespace flowless::io {

enum class DType { f16, bf16, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, boolean };

inline size_t dtype_size(DType t) {
  switch (t) {
    case DType::f16: case DType::bf16: case DType::i16: case DType::u16: return 2;
    case DType::f32: case DType::i32: case DType::u32: return 4;
    case DType::f64: case DType::i64: case DType::u64: return 8;
    case DType::i8: case DType::u8: case DType::boolean: return 1;
  }
  FLOWLESS_FAIL("dtype_size: invalid DType value ", static_cast<int>(t));
}

/// numpy-style name: "float16", "bfloat16", "float32", ..., "uint64", "bool".
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i8: return "int8";
    case DType::i16: return "int16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::u16: return "uint16";
    case DType::u32: return "uint32";
    case DType::u64: return "uint64";
    case DType::boolean: return "bool";
  }
  return "invalid-dtype";
}

/// "(300, 32)" - for messages.
inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

/// Product of the dimensions; Error (naming context) on a negative dimension
/// or when the product exceeds 2^62.
inline int64_t shape_numel(const std::vector<int64_t>& shape, const std::string& context) {
  constexpr int64_t kMax = int64_t(1) << 62;
  int64_t n = 1;
  for (int64_t d : shape) FLOWLESS_CHECK(d >= 0, context, ": negative dimension in shape ", shape_str(shape));
  for (int64_t d : shape) {
    if (d == 0) return 0;
  }
  for (int64_t d : shape) {
    FLOWLESS_CHECK(n <= kMax / d, context, ": shape ", shape_str(shape), " has too many elements");
    n *= d;
  }
  return n;
}

/// numel * dtype_size with the same checks.
inline uint64_t shape_nbytes(const std::vector<int64_t>& shape, DType t, const std::string& context) {
  uint64_t n = static_cast<uint64_t>(shape_numel(shape, context));
  // n <= 2^62 and size <= 8 fits in 65 bits: check before multiplying.
  FLOWLESS_CHECK(n <= (std::numeric_limits<uint64_t>::max() / dtype_size(t)), context, ": shape ",
                 shape_str(shape), " of ", dtype_name(t), " is too large");
  return n * dtype_size(t);
}

namespace detail {
inline float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400u) == 0);
      bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

template <class T>
void convert_to_float(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    dst[i] = static_cast<float>(v);
  }
}
}  // namespace detail

struct Array {
  DType dtype = DType::f32;
  std::vector<int64_t> shape;  // row-major (C order)
  std::vector<uint8_t> data;   // numel()*dtype_size bytes, little-endian

  /// Product of shape (1 for a scalar); Error on a negative dimension or overflow.
  int64_t numel() const { return shape_numel(shape, "Array"); }

  /// The elements as float32. Error (naming context) if data does not hold
  /// numel() elements of dtype.
  std::vector<float> to_float32(const std::string& context) const {
    const int64_t n = shape_numel(shape, context);
    const uint64_t need = shape_nbytes(shape, dtype, context);
    FLOWLESS_CHECK(data.size() == need, context, ": array ", shape_str(shape), " of ", dtype_name(dtype),
                   " needs ", need, " bytes but holds ", data.size());
    std::vector<float> out(static_cast<size_t>(n));
    const uint8_t* s = data.data();
    float* d = out.data();
    switch (dtype) {
      case DType::f32: if (n) std::memcpy(d, s, static_cast<size_t>(n) * 4); break;
      case DType::f16:
        for (int64_t i = 0; i < n; ++i) d[i] = detail::half_to_float(uint16_t(s[2 * i] | (s[2 * i + 1] << 8)));
        break;
      case DType::bf16:
        for (int64_t i = 0; i < n; ++i) d[i] = detail::bf16_to_float(uint16_t(s[2 * i] | (s[2 * i + 1] << 8)));
        break;
      case DType::f64: detail::convert_to_float<double>(s, n, d); break;
      case DType::i8: detail::convert_to_float<int8_t>(s, n, d); break;
      case DType::i16: detail::convert_to_float<int16_t>(s, n, d); break;
      case DType::i32: detail::convert_to_float<int32_t>(s, n, d); break;
      case DType::i64: detail::convert_to_float<int64_t>(s, n, d); break;
      case DType::u8: detail::convert_to_float<uint8_t>(s, n, d); break;
      case DType::u16: detail::convert_to_float<uint16_t>(s, n, d); break;
      case DType::u32: detail::convert_to_float<uint32_t>(s, n, d); break;
      case DType::u64: detail::convert_to_float<uint64_t>(s, n, d); break;
      case DType::boolean:
        for (int64_t i = 0; i < n; ++i) d[i] = s[i] ? 1.0f : 0.0f;
        break;
    }
    return out;
  }

  /// A float32 array copying numel(shape) floats from p.
  static Array from_float32(const float* p, std::vector<int64_t> shape) {
    Array a;
    a.dtype = DType::f32;
    const int64_t n = shape_numel(shape, "Array::from_float32");
    a.shape = std::move(shape);
    a.data.resize(static_cast<size_t>(n) * 4);
    if (n) {
      FLOWLESS_CHECK(p != nullptr, "Array::from_float32: null data pointer for ", n, " elements");
      std::memcpy(a.data.data(), p, static_cast<size_t>(n) * 4);
    }
    return a;
  }
};

}  // namespace flowless::io
