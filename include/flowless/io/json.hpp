// flowless/io/json.hpp - a small, self-contained JSON value, parser and writer.
//
// Contract
// - Value holds null, bool, number (always a double), string, array or object.
//   Objects keep their keys in insertion (file) order. A repeated key in parsed
//   text keeps its first position and takes the last value, as Python's json
//   module does. Integers are stored as doubles, so integers beyond 2^53 lose
//   precision (as in JavaScript); as_int() checks that the value is integral.
// - Typed accessors (as_string on a number, at() of a missing key, ...) throw
//   flowless::Error "expected a string, found a number" / "missing key 'k'".
//   Those messages carry no file name: code reading a file either checks types
//   itself or rethrows with the path (see with_context()).
// - parse() accepts strict JSON (RFC 8259) plus the tokens NaN, Infinity and
//   -Infinity that Python's json module writes for non-finite floats. Errors
//   read "<context>: line L, column C: <problem>". Nesting deeper than
//   kMaxDepth (512) is an error, not a stack overflow. A leading UTF-8 BOM is
//   skipped. \u escapes are decoded to UTF-8 (surrogate pairs combined, a lone
//   surrogate is an error); other bytes are kept as they are.
// - dump() writes numbers so that they parse back to the identical double
//   (shortest round-trip form via std::to_chars); integral values below 2^53
//   print without a fraction ("3", not "3.0"), -0.0 prints as "-0.0" and
//   non-finite values as NaN / Infinity / -Infinity (Python's spelling).
//   indent < 0 writes compact text; indent >= 0 writes one element per line,
//   indented by that many spaces per level, like json.dumps(indent=n).
// - Number parsing and printing do not depend on the C locale.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/file.hpp"

namespace flowless::json {

class Value {
 public:
  enum class Type { null, boolean, number, string, array, object };
  using Array = std::vector<Value>;
  using Object = std::vector<std::pair<std::string, Value>>;

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : type_(Type::boolean), bool_(b) {}
  Value(double d) : type_(Type::number), num_(d) {}
  Value(int i) : type_(Type::number), num_(static_cast<double>(i)) {}
  Value(int64_t i) : type_(Type::number), num_(static_cast<double>(i)) {}
  Value(size_t i) : type_(Type::number), num_(static_cast<double>(i)) {}
  /// Any other integer type (long long, unsigned, ...), bool excluded.
  template <class T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                 !std::is_same_v<T, int> && !std::is_same_v<T, int64_t> &&
                                 !std::is_same_v<T, size_t>,
                             int> = 0>
  Value(T i) : type_(Type::number), num_(static_cast<double>(i)) {}
  Value(const char* s) : type_(Type::string), str_(s ? s : "") {}
  Value(std::string s) : type_(Type::string), str_(std::move(s)) {}

  Value(const Value& o)
      : type_(o.type_), bool_(o.bool_), num_(o.num_), str_(o.str_), arr_(o.arr_), obj_(o.obj_) {}
  Value(Value&&) noexcept = default;
  Value& operator=(const Value& o) {
    if (this != &o) {
      Value tmp(o);
      *this = std::move(tmp);
    }
    return *this;
  }
  Value& operator=(Value&&) noexcept = default;
  ~Value() = default;

  static Value array() {
    Value v;
    v.type_ = Type::array;
    return v;
  }
  static Value object() {
    Value v;
    v.type_ = Type::object;
    return v;
  }

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::null; }
  bool is_bool() const { return type_ == Type::boolean; }
  bool is_number() const { return type_ == Type::number; }
  bool is_string() const { return type_ == Type::string; }
  bool is_array() const { return type_ == Type::array; }
  bool is_object() const { return type_ == Type::object; }

  /// "null", "a boolean", "a number", "a string", "an array", "an object".
  static const char* type_name(Type t) {
    switch (t) {
      case Type::null: return "null";
      case Type::boolean: return "a boolean";
      case Type::number: return "a number";
      case Type::string: return "a string";
      case Type::array: return "an array";
      case Type::object: return "an object";
    }
    return "?";
  }
  const char* type_name() const { return type_name(type_); }

  bool as_bool() const {
    expect(Type::boolean);
    return bool_;
  }
  double as_number() const {
    expect(Type::number);
    return num_;
  }
  /// The number as an integer; Error if it is not integral or out of range.
  int64_t as_int() const {
    expect(Type::number);
    FLOWLESS_CHECK(std::isfinite(num_) && std::floor(num_) == num_,
                   "expected an integer, found ", repr_number(num_));
    FLOWLESS_CHECK(num_ >= -9223372036854775808.0 && num_ < 9223372036854775808.0,
                   "integer ", repr_number(num_), " is out of the 64-bit range");
    return static_cast<int64_t>(num_);
  }
  const std::string& as_string() const {
    expect(Type::string);
    return str_;
  }
  const Array& as_array() const {
    expect(Type::array);
    return arr_;
  }
  Array& as_array() {
    expect(Type::array);
    return arr_;
  }

  /// Elements of an array or members of an object; 0 for null.
  size_t size() const {
    if (type_ == Type::array) return arr_.size();
    if (type_ == Type::object) return obj_.size();
    if (type_ == Type::null) return 0;
    FLOWLESS_FAIL("expected an array or an object, found ", type_name());
  }
  const Value& operator[](size_t i) const {
    expect(Type::array);
    FLOWLESS_CHECK(i < arr_.size(), "index ", i, " out of range for an array of ", arr_.size(),
                   " elements");
    return arr_[i];
  }
  Value& operator[](size_t i) {
    expect(Type::array);
    FLOWLESS_CHECK(i < arr_.size(), "index ", i, " out of range for an array of ", arr_.size(),
                   " elements");
    return arr_[i];
  }
  /// Appends to an array; a null Value becomes an empty array first.
  void push_back(Value v) {
    if (type_ == Type::null) type_ = Type::array;
    expect(Type::array);
    arr_.push_back(std::move(v));
  }

  bool contains(const std::string& key) const {
    expect(Type::object);
    return find_index(key) != npos;
  }
  /// Member lookup; Error "missing key 'k'" if absent.
  const Value& at(const std::string& key) const {
    expect(Type::object);
    size_t i = find_index(key);
    FLOWLESS_CHECK(i != npos, "missing key '", key, "'");
    return obj_[i].second;
  }
  /// Member access for writing: inserts null if absent; a null Value becomes
  /// an empty object first.
  Value& operator[](const std::string& key) {
    if (type_ == Type::null) type_ = Type::object;
    expect(Type::object);
    size_t i = find_index(key);
    if (i != npos) return obj_[i].second;
    obj_.emplace_back(key, Value());
    if (index_) (*index_)[key] = obj_.size() - 1;
    return obj_.back().second;
  }
  const Object& items() const {
    expect(Type::object);
    return obj_;
  }

  /// Optional members: absent or null -> def; present with another type -> Error.
  double number_or(const std::string& key, double def) const {
    const Value* v = optional(key);
    return v ? v->as_number_for(key) : def;
  }
  int64_t int_or(const std::string& key, int64_t def) const {
    const Value* v = optional(key);
    if (!v) return def;
    double d = v->as_number_for(key);
    FLOWLESS_CHECK(std::isfinite(d) && std::floor(d) == d && d >= -9223372036854775808.0 &&
                       d < 9223372036854775808.0,
                   "key '", key, "': expected an integer, found ", repr_number(d));
    return static_cast<int64_t>(d);
  }
  std::string string_or(const std::string& key, const std::string& def) const {
    const Value* v = optional(key);
    if (!v) return def;
    FLOWLESS_CHECK(v->is_string(), "key '", key, "': expected a string, found ", v->type_name());
    return v->str_;
  }
  bool bool_or(const std::string& key, bool def) const {
    const Value* v = optional(key);
    if (!v) return def;
    FLOWLESS_CHECK(v->is_bool(), "key '", key, "': expected a boolean, found ", v->type_name());
    return v->bool_;
  }

  /// Deep equality; object member order is ignored (as for Python dicts).
  friend bool operator==(const Value& a, const Value& b) {
    if (a.type_ != b.type_) return false;
    switch (a.type_) {
      case Type::null: return true;
      case Type::boolean: return a.bool_ == b.bool_;
      case Type::number: return a.num_ == b.num_ || (std::isnan(a.num_) && std::isnan(b.num_));
      case Type::string: return a.str_ == b.str_;
      case Type::array: return a.arr_ == b.arr_;
      case Type::object:
        if (a.obj_.size() != b.obj_.size()) return false;
        for (const auto& kv : a.obj_) {
          size_t j = b.find_index(kv.first);
          if (j == npos || !(b.obj_[j].second == kv.second)) return false;
        }
        return true;
    }
    return false;
  }
  friend bool operator!=(const Value& a, const Value& b) { return !(a == b); }

  /// Shortest text that parses back to exactly d (no locale); integral values
  /// below 2^53 without a fraction; NaN / Infinity / -Infinity.
  static std::string repr_number(double d) {
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
    if (d == 0) return std::signbit(d) ? "-0.0" : "0";
    char buf[64];
    if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) {
      auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(d));
      return std::string(buf, r.ptr);
    }
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    return std::string(buf, r.ptr);
  }

 private:
  friend class Parser;
  static constexpr size_t npos = static_cast<size_t>(-1);
  static constexpr size_t kIndexFrom = 16;  // objects this large get a hash index

  void expect(Type t) const {
    FLOWLESS_CHECK(type_ == t, "expected ", type_name(t), ", found ", type_name());
  }
  double as_number_for(const std::string& key) const {
    FLOWLESS_CHECK(type_ == Type::number, "key '", key, "': expected a number, found ",
                   type_name());
    return num_;
  }
  const Value* optional(const std::string& key) const {
    expect(Type::object);
    size_t i = find_index(key);
    if (i == npos || obj_[i].second.is_null()) return nullptr;
    return &obj_[i].second;
  }
  size_t find_index(const std::string& key) const {
    if (obj_.size() < kIndexFrom) {
      for (size_t i = 0; i < obj_.size(); ++i)
        if (obj_[i].first == key) return i;
      return npos;
    }
    // Keys are unique and members are only ever appended, so the index is
    // brought up to date by adding the members it has not seen yet.
    if (!index_) index_ = std::make_unique<std::unordered_map<std::string, size_t>>();
    for (size_t i = index_->size(); i < obj_.size(); ++i) index_->emplace(obj_[i].first, i);
    auto it = index_->find(key);
    return it == index_->end() ? npos : it->second;
  }

  Type type_ = Type::null;
  bool bool_ = false;
  double num_ = 0;
  std::string str_;
  Array arr_;
  Object obj_;
  // Lazily built key -> position map for large objects; never copied.
  mutable std::unique_ptr<std::unordered_map<std::string, size_t>> index_;
};

/// Runs f(); a flowless::Error thrown inside is rethrown as "<context>: <what>".
template <class F>
auto with_context(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

class Parser {
 public:
  static constexpr int kMaxDepth = 512;

  Parser(const std::string& text, const std::string& context) : s_(text), ctx_(context) {}

  Value parse_document() {
    if (s_.size() >= 3 && static_cast<unsigned char>(s_[0]) == 0xEF &&
        static_cast<unsigned char>(s_[1]) == 0xBB && static_cast<unsigned char>(s_[2]) == 0xBF)
      pos_ = 3;
    skip_ws();
    if (pos_ >= s_.size()) fail("empty document, expected a JSON value");
    Value v = parse_value(0);
    skip_ws();
    if (pos_ < s_.size()) fail("unexpected '", printable(s_[pos_]), "' after the JSON value");
    return v;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail_at(size_t at, Args&&... args) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
    }
    FLOWLESS_FAIL(ctx_, ": line ", line, ", column ", col, ": ", std::forward<Args>(args)...);
  }
  template <class... Args>
  [[noreturn]] void fail(Args&&... args) const {
    fail_at(pos_, std::forward<Args>(args)...);
  }
  static std::string printable(char c) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) return std::string(1, c);
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", u);
    return buf;
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r'))
      ++pos_;
  }
  bool consume_word(const char* w) {
    size_t n = std::strlen(w);
    if (s_.compare(pos_, n, w) == 0) {
      pos_ += n;
      return true;
    }
    return false;
  }

  Value parse_value(int depth) {
    if (pos_ >= s_.size()) fail("unexpected end of input, expected a JSON value");
    char c = s_[pos_];
    switch (c) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': {
        Value v;
        v.type_ = Value::Type::string;
        v.str_ = parse_string();
        return v;
      }
      case 't':
        if (consume_word("true")) return Value(true);
        break;
      case 'f':
        if (consume_word("false")) return Value(false);
        break;
      case 'n':
        if (consume_word("null")) return Value();
        break;
      case 'N':
        if (consume_word("NaN")) return Value(std::numeric_limits<double>::quiet_NaN());
        break;
      case 'I':
        if (consume_word("Infinity")) return Value(std::numeric_limits<double>::infinity());
        break;
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
    }
    fail("unexpected '", printable(c), "', expected a JSON value");
  }

  Value parse_object(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than ", kMaxDepth, " levels");
    size_t open = pos_;
    ++pos_;  // '{'
    Value v = Value::object();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size()) fail_at(open, "unterminated object");
      if (s_[pos_] != '"') fail("expected a string key, found '", printable(s_[pos_]), "'");
      std::string key = parse_string();
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') {
        if (pos_ >= s_.size()) fail_at(open, "unterminated object");
        fail("expected ':' after key '", key, "'");
      }
      ++pos_;
      skip_ws();
      Value item = parse_value(depth);
      size_t i = v.find_index(key);
      if (i != Value::npos) {
        v.obj_[i].second = std::move(item);  // Python: last value wins
      } else {
        v.obj_.emplace_back(std::move(key), std::move(item));
      }
      skip_ws();
      if (pos_ >= s_.size()) fail_at(open, "unterminated object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return v;
      }
      fail("expected ',' or '}' in object, found '", printable(s_[pos_]), "'");
    }
  }

  Value parse_array(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than ", kMaxDepth, " levels");
    size_t open = pos_;
    ++pos_;  // '['
    Value v = Value::array();
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size()) fail_at(open, "unterminated array");
      v.arr_.push_back(parse_value(depth));
      skip_ws();
      if (pos_ >= s_.size()) fail_at(open, "unterminated array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return v;
      }
      fail("expected ',' or ']' in array, found '", printable(s_[pos_]), "'");
    }
  }

  Value parse_number() {
    size_t start = pos_;
    auto digit = [&](size_t p) { return p < s_.size() && s_[p] >= '0' && s_[p] <= '9'; };
    bool neg = false;
    if (s_[pos_] == '-') {
      neg = true;
      ++pos_;
      if (consume_word("Infinity")) return Value(-std::numeric_limits<double>::infinity());
    }
    if (!digit(pos_)) fail("invalid number: expected a digit");
    int int_digits = 0;
    if (s_[pos_] == '0') {
      ++pos_;
      int_digits = 1;
      if (digit(pos_)) fail_at(start, "invalid number: leading zero");
    } else {
      while (digit(pos_)) {
        ++pos_;
        ++int_digits;
      }
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (!digit(pos_)) fail("invalid number: expected a digit after '.'");
      while (digit(pos_)) ++pos_;
    }
    long exp10 = 0;
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      bool eneg = false;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) eneg = s_[pos_++] == '-';
      if (!digit(pos_)) fail("invalid number: expected a digit in the exponent");
      while (digit(pos_)) {
        if (exp10 < 100000) exp10 = exp10 * 10 + (s_[pos_] - '0');
        ++pos_;
      }
      if (eneg) exp10 = -exp10;
    }
    double d = 0;
    const char* b = s_.data() + start;
    const char* e = s_.data() + pos_;
    auto r = std::from_chars(b, e, d);
    if (r.ec == std::errc::result_out_of_range) {
      // Overflow -> +-inf, underflow -> +-0, as Python's float() does.
      bool big = int_digits + exp10 > 0;
      d = big ? std::numeric_limits<double>::infinity() : 0.0;
      if (neg) d = -d;
    } else if (r.ec != std::errc() || r.ptr != e) {
      fail_at(start, "invalid number '", std::string(b, e), "'");
    }
    return Value(d);
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  uint32_t parse_hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[pos_ + k];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
      else fail_at(pos_ + k, "invalid hex digit '", printable(c), "' in \\u escape");
    }
    pos_ += 4;
    return v;
  }

  std::string parse_string() {
    size_t open = pos_;
    ++pos_;  // '"'
    std::string out;
    for (;;) {
      if (pos_ >= s_.size()) fail_at(open, "unterminated string");
      char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20)
        fail("control character ", printable(c), " inside a string (must be escaped)");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      if (pos_ >= s_.size()) fail_at(open, "unterminated string");
      char esc = s_[pos_++];
      switch (esc) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          size_t at = pos_ - 2;
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.compare(pos_, 2, "\\u") != 0) fail_at(at, "lone UTF-16 surrogate in \\u escape");
            pos_ += 2;
            uint32_t lo = parse_hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail_at(at, "lone UTF-16 surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail_at(at, "lone UTF-16 surrogate in \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default: fail_at(pos_ - 2, "invalid escape '\\", printable(esc), "' in string");
      }
    }
  }

  const std::string& s_;
  const std::string& ctx_;
  size_t pos_ = 0;
};

/// Parses JSON text; errors read "<context>: line L, column C: <problem>".
inline Value parse(const std::string& text, const std::string& context = "<json>") {
  return Parser(text, context).parse_document();
}

/// Reads and parses a file; errors name the path.
inline Value parse_file(const std::string& path) { return parse(io::read_file(path), path); }

namespace detail {
inline void dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

inline void dump_value(std::string& out, const Value& v, int indent, int level) {
  auto newline = [&](int lvl) {
    if (indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(indent) * static_cast<size_t>(lvl), ' ');
  };
  switch (v.type()) {
    case Value::Type::null: out += "null"; break;
    case Value::Type::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Value::Type::number: out += Value::repr_number(v.as_number()); break;
    case Value::Type::string: dump_string(out, v.as_string()); break;
    case Value::Type::array: {
      const auto& a = v.as_array();
      if (a.empty()) {
        out += "[]";
        break;
      }
      out += '[';
      for (size_t i = 0; i < a.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        dump_value(out, a[i], indent, level + 1);
      }
      newline(level);
      out += ']';
      break;
    }
    case Value::Type::object: {
      const auto& o = v.items();
      if (o.empty()) {
        out += "{}";
        break;
      }
      out += '{';
      for (size_t i = 0; i < o.size(); ++i) {
        if (i) out += ',';
        newline(level + 1);
        dump_string(out, o[i].first);
        out += indent < 0 ? ":" : ": ";
        dump_value(out, o[i].second, indent, level + 1);
      }
      newline(level);
      out += '}';
      break;
    }
  }
}
}  // namespace detail

/// Serialises v; indent < 0: compact, else pretty-printed with that indent.
inline std::string dump(const Value& v, int indent = -1) {
  std::string out;
  detail::dump_value(out, v, indent, 0);
  return out;
}

}  // namespace flowless::json
