// flowless/io/safetensors.hpp - the safetensors format (Hugging Face).
//
// Layout: u64 little-endian header length N, N bytes of JSON header, then the
// data buffer. The header is an object mapping tensor names to
//   {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}
// (offsets relative to the data buffer) plus an optional "__metadata__"
// object of string -> string.
// Reading validates everything before use: N <= 100 MB and within the file,
// known dtypes (F16 BF16 F32 F64 I8 I16 I32 I64 U8 U16 U32 U64 BOOL; others
// such as F8_E4M3 are refused), end - begin == numel * itemsize, offsets
// inside the buffer, no overlap, no holes and no trailing bytes (as the
// format requires). Errors name the file (context) and the tensor.
// Writing (save_safetensors) stores tensors in name order, pads the header
// with spaces to a multiple of 8 and writes "__metadata__" when non-empty;
// the file is replaced atomically.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/array.hpp"
#include "flowless/io/file.hpp"

namespace flowless::io {

struct SafeTensors {
  std::map<std::string, std::string> metadata;
  std::map<std::string, Array> tensors;
};

namespace detail {

// Just enough JSON for a safetensors header: objects, arrays, strings (all
// escapes, \u with surrogate pairs) and non-negative integers. Nesting is
// limited; duplicate keys are an error.
struct StJson {
  enum Kind { Object, ArrayK, String, Integer } kind = Object;
  std::vector<std::pair<std::string, std::unique_ptr<StJson>>> members;  // Object
  std::vector<std::unique_ptr<StJson>> items;                             // Array
  std::string str;                                                        // String
  uint64_t num = 0;                                                       // Integer
};

class StJsonParser {
 public:
  StJsonParser(const std::string& s, const std::string& ctx) : s_(s), ctx_(ctx) {}

  std::unique_ptr<StJson> parse_document() {
    ws();
    if (peek() != '{') fail("header is not a JSON object");
    auto v = value(0);
    ws();
    if (i_ != s_.size()) fail("unexpected text after the JSON object");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    FLOWLESS_FAIL(ctx_, ": malformed safetensors header: ", what, " at byte ", i_);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c || i_ >= s_.size()) fail(std::string("expected '") + c + "'");
    ++i_;
  }

  std::unique_ptr<StJson> value(int depth) {
    if (depth > 8) fail("nesting too deep");
    ws();
    auto v = std::make_unique<StJson>();
    char c = peek();
    if (c == '{') {
      v->kind = StJson::Object;
      ++i_;
      ws();
      if (peek() == '}') {
        ++i_;
        return v;
      }
      while (true) {
        ws();
        std::string key = string();
        for (const auto& m : v->members)
          if (m.first == key) fail("duplicate key \"" + key + "\"");
        ws();
        expect(':');
        v->members.emplace_back(std::move(key), value(depth + 1));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return v;
      }
    }
    if (c == '[') {
      v->kind = StJson::ArrayK;
      ++i_;
      ws();
      if (peek() == ']') {
        ++i_;
        return v;
      }
      while (true) {
        v->items.push_back(value(depth + 1));
        ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return v;
      }
    }
    if (c == '"') {
      v->kind = StJson::String;
      v->str = string();
      return v;
    }
    if (c >= '0' && c <= '9') {
      v->kind = StJson::Integer;
      if (c == '0' && i_ + 1 < s_.size() && s_[i_ + 1] >= '0' && s_[i_ + 1] <= '9') fail("leading zero");
      uint64_t n = 0;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
        if (n > (UINT64_MAX - 9) / 10) fail("integer too large");
        n = n * 10 + uint64_t(s_[i_++] - '0');
      }
      if (peek() == '.' || peek() == 'e' || peek() == 'E') fail("expected an integer, found a fraction");
      v->num = n;
      return v;
    }
    if (c == '-') fail("negative number");
    fail("unexpected character");
  }

  static void put_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  uint32_t hex4() {
    if (s_.size() - i_ < 4) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      v <<= 4;
      if (h >= '0' && h <= '9') v |= uint32_t(h - '0');
      else if (h >= 'a' && h <= 'f') v |= uint32_t(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F') v |= uint32_t(h - 'A' + 10);
      else fail("bad hex digit in \\u escape");
    }
    return v;
  }

  std::string string() {
    expect('"');
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail("unterminated string");
      char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("unterminated escape");
      char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.compare(i_, 2, "\\u") != 0) fail("unpaired surrogate in \\u escape");
            i_ += 2;
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("bad low surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unpaired surrogate in \\u escape");
          }
          put_utf8(out, cp);
          break;
        }
        default: fail(std::string("bad escape \\") + e);
      }
    }
  }

  const std::string& s_;
  const std::string& ctx_;
  size_t i_ = 0;
};

inline void st_json_string(std::string& out, const std::string& s) {
  static const char* hex = "0123456789abcdef";
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += char(c);
        }
    }
  }
  out += '"';
}

inline const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::i8: return "I8";
    case DType::i16: return "I16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
    case DType::u16: return "U16";
    case DType::u32: return "U32";
    case DType::u64: return "U64";
    case DType::boolean: return "BOOL";
  }
  return "?";
}

inline bool st_dtype_from_name(const std::string& s, DType& t) {
  static const std::pair<const char*, DType> table[] = {
      {"F16", DType::f16}, {"BF16", DType::bf16}, {"F32", DType::f32}, {"F64", DType::f64},  {"I8", DType::i8},
      {"I16", DType::i16}, {"I32", DType::i32},   {"I64", DType::i64}, {"U8", DType::u8},    {"U16", DType::u16},
      {"U32", DType::u32}, {"U64", DType::u64},   {"BOOL", DType::boolean}};
  for (const auto& [name, dt] : table)
    if (s == name) {
      t = dt;
      return true;
    }
  return false;
}

constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

}  // namespace detail

/// Parses a safetensors file held in memory; context names it in errors.
inline SafeTensors parse_safetensors(const std::string& bytes, const std::string& context) {
  FLOWLESS_CHECK(bytes.size() >= 8, context, ": not a safetensors file (", bytes.size(),
                 " bytes is too short for the header length)");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | static_cast<unsigned char>(bytes[size_t(k)]);
  FLOWLESS_CHECK(n <= bytes.size() - 8, context, ": header length ", n, " exceeds file size ", bytes.size());
  FLOWLESS_CHECK(n <= detail::kSafetensorsMaxHeader, context, ": header length ", n, " exceeds the 100 MB limit");
  const std::string header = bytes.substr(8, static_cast<size_t>(n));
  auto root = detail::StJsonParser(header, context).parse_document();
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = bytes.size() - data_start;

  SafeTensors st;
  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (const auto& [name, v] : root->members) {
    if (name == "__metadata__") {
      FLOWLESS_CHECK(v->kind == detail::StJson::Object, context, ": __metadata__ is not an object");
      for (const auto& [k, mv] : v->members) {
        FLOWLESS_CHECK(mv->kind == detail::StJson::String, context, ": __metadata__ value for \"", k,
                       "\" is not a string");
        st.metadata[k] = mv->str;
      }
      continue;
    }
    const std::string where = context + ": tensor '" + name + "'";
    FLOWLESS_CHECK(v->kind == detail::StJson::Object, where, ": entry is not an object");
    const detail::StJson *dt = nullptr, *shape = nullptr, *offs = nullptr;
    for (const auto& [k, mv] : v->members) {
      if (k == "dtype") dt = mv.get();
      else if (k == "shape") shape = mv.get();
      else if (k == "data_offsets") offs = mv.get();
      else FLOWLESS_FAIL(where, ": unexpected field \"", k, "\"");
    }
    FLOWLESS_CHECK(dt && shape && offs, where, ": needs \"dtype\", \"shape\" and \"data_offsets\"");
    FLOWLESS_CHECK(dt->kind == detail::StJson::String, where, ": dtype is not a string");
    Array a;
    FLOWLESS_CHECK(detail::st_dtype_from_name(dt->str, a.dtype), where, ": unsupported dtype \"", dt->str, "\"");
    FLOWLESS_CHECK(shape->kind == detail::StJson::ArrayK, where, ": shape is not a list");
    FLOWLESS_CHECK(shape->items.size() <= 64, where, ": shape has more than 64 dimensions");
    for (const auto& d : shape->items) {
      FLOWLESS_CHECK(d->kind == detail::StJson::Integer && d->num <= uint64_t(INT64_MAX), where,
                     ": shape holds something other than a non-negative integer");
      a.shape.push_back(int64_t(d->num));
    }
    FLOWLESS_CHECK(offs->kind == detail::StJson::ArrayK && offs->items.size() == 2 &&
                       offs->items[0]->kind == detail::StJson::Integer &&
                       offs->items[1]->kind == detail::StJson::Integer,
                   where, ": data_offsets must be [begin, end]");
    const uint64_t b = offs->items[0]->num, e = offs->items[1]->num;
    FLOWLESS_CHECK(b <= e, where, ": data_offsets [", b, ", ", e, "] are reversed");
    FLOWLESS_CHECK(e <= data_size, where, ": data_offsets [", b, ", ", e, "] exceed the data buffer of ", data_size,
                   " bytes");
    const uint64_t need = shape_nbytes(a.shape, a.dtype, where);
    FLOWLESS_CHECK(e - b == need, where, ": shape ", shape_str(a.shape), " of ", dtype_name(a.dtype), " needs ", need,
                   " bytes but data_offsets [", b, ", ", e, "] span ", e - b);
    spans.push_back({b, e, &name});
    st.tensors.emplace(name, std::move(a));
  }
  std::sort(spans.begin(), spans.end(), [](const Span& x, const Span& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  uint64_t pos = 0;
  for (const Span& s : spans) {
    FLOWLESS_CHECK(s.begin >= pos, context, ": tensor '", *s.name, "' overlaps the previous tensor's data");
    FLOWLESS_CHECK(s.begin == pos, context, ": hole in the data buffer before tensor '", *s.name, "' (bytes ", pos,
                   "..", s.begin, ")");
    pos = s.end;
  }
  FLOWLESS_CHECK(pos == data_size, context, ": data buffer has ", data_size - pos,
                 " trailing bytes no tensor refers to (truncated header or corrupt file?)");
  for (const Span& s : spans) {
    Array& a = st.tensors[*s.name];
    const char* src = bytes.data() + data_start + s.begin;
    a.data.assign(reinterpret_cast<const uint8_t*>(src), reinterpret_cast<const uint8_t*>(src) + (s.end - s.begin));
  }
  return st;
}

inline SafeTensors load_safetensors(const std::string& path) { return parse_safetensors(read_file(path), path); }

/// Writes st to path atomically (tensors in name order, header padded to 8).
inline void save_safetensors(const std::string& path, const SafeTensors& st) {
  std::string header = "{";
  bool first = true;
  if (!st.metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : st.metadata) {
      if (!first) header += ',';
      first = false;
      detail::st_json_string(header, k);
      header += ':';
      detail::st_json_string(header, v);
    }
    header += '}';
  }
  first = st.metadata.empty();
  uint64_t off = 0;
  for (const auto& [name, a] : st.tensors) {
    const std::string where = path + ": tensor '" + name + "'";
    FLOWLESS_CHECK(name != "__metadata__", where, ": the name __metadata__ is reserved");
    const uint64_t need = shape_nbytes(a.shape, a.dtype, where);
    FLOWLESS_CHECK(a.data.size() == need, where, ": shape ", shape_str(a.shape), " of ", dtype_name(a.dtype),
                   " needs ", need, " bytes but the array holds ", a.data.size());
    if (!first) header += ',';
    first = false;
    detail::st_json_string(header, name);
    header += ":{\"dtype\":\"";
    header += detail::st_dtype_name(a.dtype);
    header += "\",\"shape\":[";
    for (size_t i = 0; i < a.shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(a.shape[i]);
    }
    header += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + need) + "]}";
    off += need;
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  FLOWLESS_CHECK(header.size() <= detail::kSafetensorsMaxHeader, path, ": header would exceed the 100 MB limit");
  std::string out;
  out.reserve(8 + header.size() + static_cast<size_t>(off));
  uint64_t hn = header.size();
  for (int k = 0; k < 8; ++k) out.push_back(char((hn >> (8 * k)) & 0xff));
  out += header;
  for (const auto& [name, a] : st.tensors) out.append(reinterpret_cast<const char*>(a.data.data()), a.data.size());
  write_file_atomic(path, out);
}

}  // namespace flowless::io
