// flowless/io/npy.hpp - numpy .npy arrays and .npz archives.
//
// Reading (parse_npy / load_npy / load_npz):
//   * format versions 1.0, 2.0 and 3.0;
//   * dtypes bool, int8..int64, uint8..uint64, float16/32/64 in either byte
//     order ('>f4' is converted to little-endian);
//   * fortran_order True is transposed to C order, so Array::shape is always
//     row-major;
//   * object ('O'), string ('U', 'S'), complex, datetime, void and structured
//     dtypes are refused with an Error naming the file;
//   * the data must be exactly numel * itemsize bytes (shape products are
//     overflow-checked before anything is allocated).
// load_npz reads archives written by np.savez (stored entries) and returns
// them keyed by entry name without ".npy"; np.savez_compressed archives are
// refused with an Error saying so.
// Writing (npy_bytes / save_npy / save_npz): version 1.0 (2.0 when the header
// needs it), little-endian, C order, header padded to 64 bytes; files are
// written atomically. bfloat16 has no numpy dtype and is refused.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/array.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/zip.hpp"

namespace flowless::io {

namespace detail {

struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
};

// Parses the Python dict literal of an .npy header, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (300, 32), }
class NpyHeaderParser {
 public:
  NpyHeaderParser(const std::string& s, const std::string& ctx) : s_(s), ctx_(ctx) {}

  NpyHeader parse() {
    NpyHeader h;
    bool have_descr = false, have_fortran = false, have_shape = false;
    ws();
    expect('{');
    while (true) {
      ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      std::string key = str();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes (a list descr) are not supported");
        if (peek() == '{') fail("dtypes given as a dict (structured) are not supported");
        h.descr = str();
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        have_fortran = true;
      } else if (key == "shape") {
        h.shape = tuple();
        have_shape = true;
      } else {
        fail("unexpected header key '" + key + "'");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      expect('}');
      break;
    }
    ws();
    if (i_ != s_.size()) fail("unexpected text after the header dict");
    if (!have_descr || !have_fortran || !have_shape) fail("header lacks 'descr', 'fortran_order' or 'shape'");
    return h;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    FLOWLESS_FAIL(ctx_, ": malformed .npy header (", what, ") in: ", s_.substr(0, 200));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string str() {
    char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string");
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') fail("escapes in header strings are not supported");
      out += s_[i_++];
    }
    expect(q);
    return out;
  }
  bool boolean() {
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> out;
    expect('(');
    while (true) {
      ws();
      if (peek() == ')') {
        ++i_;
        break;
      }
      if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in the shape");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (INT64_MAX - 9) / 10) fail("shape dimension too large");
        v = v * 10 + (s_[i_++] - '0');
      }
      if (peek() == 'L') ++i_;  // Python 2 long
      out.push_back(v);
      if (out.size() > 64) fail("more than 64 dimensions");
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      ws();
      expect(')');
      break;
    }
    return out;
  }

  const std::string& s_;
  const std::string& ctx_;
  size_t i_ = 0;
};

// Maps a numpy descr ("<f4", ">i8", "|b1", ...) to a DType; sets swap when the
// data is big-endian and wider than one byte.
inline DType npy_descr_dtype(const std::string& descr, bool& swap, const std::string& ctx) {
  FLOWLESS_CHECK(descr.size() >= 2, ctx, ": unsupported .npy dtype '", descr, "'");
  char order = descr[0];
  std::string rest = descr.substr(1);
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    order = '=';
    rest = descr;
  }
  const char kind = rest[0];
  const std::string width = rest.substr(1);
  switch (kind) {
    case 'O': FLOWLESS_FAIL(ctx, ": .npy holds Python objects (dtype '", descr, "'); flowless reads only numeric arrays");
    case 'U': case 'S': case 'a':
      FLOWLESS_FAIL(ctx, ": .npy holds strings (dtype '", descr, "'); flowless reads only numeric arrays");
    case 'c': FLOWLESS_FAIL(ctx, ": .npy holds complex numbers (dtype '", descr, "'), which flowless does not support");
    case 'V': FLOWLESS_FAIL(ctx, ": .npy holds a void/structured dtype '", descr, "', which flowless does not support");
    case 'M': case 'm':
      FLOWLESS_FAIL(ctx, ": .npy holds datetimes (dtype '", descr, "'), which flowless does not support");
    default: break;
  }
  DType t;
  bool ok = true;
  if (kind == 'f') {
    if (width == "2") t = DType::f16;
    else if (width == "4") t = DType::f32;
    else if (width == "8") t = DType::f64;
    else ok = false;
  } else if (kind == 'i') {
    if (width == "1") t = DType::i8;
    else if (width == "2") t = DType::i16;
    else if (width == "4") t = DType::i32;
    else if (width == "8") t = DType::i64;
    else ok = false;
  } else if (kind == 'u') {
    if (width == "1") t = DType::u8;
    else if (width == "2") t = DType::u16;
    else if (width == "4") t = DType::u32;
    else if (width == "8") t = DType::u64;
    else ok = false;
  } else if (kind == 'b' && width == "1") {
    t = DType::boolean;
  } else {
    ok = false;
  }
  FLOWLESS_CHECK(ok, ctx, ": unsupported .npy dtype '", descr, "'");
  swap = order == '>' && dtype_size(t) > 1;
  return t;
}

inline void npy_byteswap(uint8_t* p, size_t n_elems, size_t width) {
  if (width <= 1) return;
  for (size_t i = 0; i < n_elems; ++i) {
    uint8_t* e = p + i * width;
    for (size_t a = 0, b = width - 1; a < b; ++a, --b) std::swap(e[a], e[b]);
  }
}

// Column-major (Fortran) element order to row-major, any rank.
inline std::vector<uint8_t> npy_fortran_to_c(const uint8_t* src, const std::vector<int64_t>& shape, size_t width,
                                         size_t n) {
  std::vector<uint8_t> out(n * width);
  const size_t rank = shape.size();
  if (n == 0) return out;
  if (rank <= 1) {
    std::memcpy(out.data(), src, n * width);
    return out;
  }
  // Fortran stride of dim k = prod(shape[0..k)).
  std::vector<int64_t> fstride(rank, 1);
  for (size_t k = 1; k < rank; ++k) fstride[k] = fstride[k - 1] * shape[k - 1];
  std::vector<int64_t> idx(rank, 0);
  int64_t foff = 0;
  for (size_t c = 0; c < n; ++c) {
    std::memcpy(out.data() + c * width, src + size_t(foff) * width, width);
    for (size_t k = rank; k-- > 0;) {  // odometer over C order, last dim fastest
      ++idx[k];
      foff += fstride[k];
      if (idx[k] < shape[k]) break;
      foff -= fstride[k] * shape[k];
      idx[k] = 0;
    }
  }
  return out;
}

inline const char* npy_descr(DType t, const std::string& ctx) {
  switch (t) {
    case DType::f16: return "<f2";
    case DType::f32: return "<f4";
    case DType::f64: return "<f8";
    case DType::i8: return "|i1";
    case DType::i16: return "<i2";
    case DType::i32: return "<i4";
    case DType::i64: return "<i8";
    case DType::u8: return "|u1";
    case DType::u16: return "<u2";
    case DType::u32: return "<u4";
    case DType::u64: return "<u8";
    case DType::boolean: return "|b1";
    case DType::bf16: break;
  }
  FLOWLESS_FAIL(ctx, ": bfloat16 has no numpy dtype; convert the array to float32 before saving it as .npy");
}

}  // namespace detail

/// Parses the bytes of an .npy file; context (usually the path) names it in errors.
inline Array parse_npy(const std::string& bytes, const std::string& context) {
  FLOWLESS_CHECK(bytes.size() >= 10, context, ": not an .npy file (", bytes.size(), " bytes is too short)");
  FLOWLESS_CHECK(bytes.compare(0, 6, "\x93NUMPY") == 0, context, ": not an .npy file (bad magic)");
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const int major = p[6], minor = p[7];
  FLOWLESS_CHECK((major == 1 || major == 2 || major == 3) && minor == 0, context, ": unsupported .npy version ",
                 major, ".", minor);
  uint64_t hlen, hstart;
  if (major == 1) {
    hlen = detail::rd16(p + 8);
    hstart = 10;
  } else {
    FLOWLESS_CHECK(bytes.size() >= 12, context, ": truncated .npy header");
    hlen = detail::rd32(p + 8);
    hstart = 12;
  }
  FLOWLESS_CHECK(hlen <= bytes.size() - hstart, context, ": .npy header length ", hlen, " exceeds file size ",
                 bytes.size());
  const std::string header = bytes.substr(static_cast<size_t>(hstart), static_cast<size_t>(hlen));
  detail::NpyHeader h = detail::NpyHeaderParser(header, context).parse();
  bool swap = false;
  Array a;
  a.dtype = detail::npy_descr_dtype(h.descr, swap, context);
  const uint64_t need = shape_nbytes(h.shape, a.dtype, context);
  const uint64_t have = bytes.size() - hstart - hlen;
  FLOWLESS_CHECK(have == need, context, ": .npy data is ", have, " bytes but shape ", shape_str(h.shape), " of ",
                 dtype_name(a.dtype), " needs ", need, have < need ? " (truncated file?)" : "");
  const uint8_t* src = p + hstart + hlen;
  const size_t n = static_cast<size_t>(shape_numel(h.shape, context));
  const size_t width = dtype_size(a.dtype);
  if (h.fortran_order) {
    a.data = detail::npy_fortran_to_c(src, h.shape, width, n);
  } else {
    a.data.assign(src, src + need);
  }
  if (swap) detail::npy_byteswap(a.data.data(), n, width);
  a.shape = std::move(h.shape);
  return a;
}

inline Array load_npy(const std::string& path) { return parse_npy(read_file(path), path); }

namespace detail {
inline std::string npy_bytes(const Array& a, const std::string& ctx) {
  const char* descr = detail::npy_descr(a.dtype, ctx);
  const uint64_t need = shape_nbytes(a.shape, a.dtype, ctx);
  FLOWLESS_CHECK(a.data.size() == need, ctx, ": array ", shape_str(a.shape), " of ", dtype_name(a.dtype), " needs ",
                 need, " bytes but holds ", a.data.size());
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape_str(a.shape) +
                     ", }";
  // Pad with spaces so magic + length + header (ending in '\n') is a multiple of 64.
  size_t prefix = 10;
  size_t total = prefix + dict.size() + 1;
  if (total + (64 - total % 64) % 64 - prefix > 0xFFFF) prefix = 12;
  total = prefix + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(char(prefix == 10 ? 1 : 2));
  out.push_back(0);
  if (prefix == 10) detail::wr16(out, uint32_t(dict.size()));
  else detail::wr32(out, uint32_t(dict.size()));
  out += dict;
  out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  return out;
}
}  // namespace detail

/// The bytes of an .npy file holding a (C order, little-endian).
inline std::string npy_bytes(const Array& a) { return detail::npy_bytes(a, "npy_bytes"); }

/// Writes a as an .npy file, atomically.
inline void save_npy(const std::string& path, const Array& a) {
  write_file_atomic(path, detail::npy_bytes(a, path));
}

/// Arrays of an np.savez archive keyed by entry name without ".npy".
inline std::map<std::string, Array> load_npz(const std::string& path) {
  ZipReader zip(path);
  std::map<std::string, Array> out;
  for (const ZipEntry& e : zip.entries()) {
    if (!e.name.empty() && e.name.back() == '/') continue;  // directory
    FLOWLESS_CHECK(e.method != 8, path, ": entry '", e.name,
                   "' is deflate-compressed; flowless reads only stored archives (np.savez, not "
                   "np.savez_compressed)");
    std::string key = e.name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    FLOWLESS_CHECK(out.find(key) == out.end(), path, ": two entries map to the key '", key, "'");
    out[key] = parse_npy(zip.read(e), path + ": entry '" + e.name + "'");
  }
  return out;
}

/// Writes an np.savez-style archive (stored entries "<key>.npy"), atomically.
inline void save_npz(const std::string& path, const std::map<std::string, Array>& arrays) {
  ZipWriter zw(path);
  for (const auto& [key, a] : arrays) {
    zw.add(key + ".npy", detail::npy_bytes(a, path + ": array '" + key + "'"));
  }
  write_file_atomic(path, zw.finish());
}

}  // namespace flowless::io
