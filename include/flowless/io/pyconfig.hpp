// flowless/io/pyconfig.hpp - reads an mmengine-style Python config file (the
// configs/*.py of OpenTAD and the OpenMMLab toolboxes) into a json::Value,
// without Python.
//
// read_pyconfig(path) -> an object holding every top-level name the file (and
// its bases) assigns, except _base_.
// parse_pyconfig(text, name) -> the same for one text held in memory, whose
// _base_ is refused (there is no folder to resolve it from); errors name `name`.
//
// Accepted: a sequence of top-level statements `name = expression`, comments,
// blank lines, string-literal statements (docstrings), lines continued inside
// brackets or after a backslash. Expressions:
//   dict(key=value, ...)             -> object (keys in written order)
//   {"key": value, ...}              -> object (string keys)
//   [a, b], (a, b), (a,)             -> array (tuples are arrays, as in JSON)
//   'text', "text", '''text''', r'raw', adjacent literals concatenated
//   123, 1_000, 0x1f, 1.5, 1e-4, .5  -> number (a double, as in json::Value)
//   True / False / None              -> true / false / null
//   a name assigned earlier (in this file or one of its bases)
//   unary - and +; a + b (numbers, strings, lists), a - b, a * b (numbers, or a
//   list and an integer: [1] * 6), a / b, a // b, a % b (numbers), parentheses;
//   usual precedence, left to right.
// _base_ = "file.py" or a list of them: each is read first (paths relative to
// the including file's folder; bases may have bases), in order, and merged as
// mmengine's Config does: a key two bases both define is an error; then the
// file's own assignments are merged into the bases' - an object is merged key
// by key, recursively (unless it holds _delete_=True, which replaces the base
// value; the _delete_ key itself is dropped), any other value replaces.
//
// Anything else - import, def, class, if/for, lambda, comprehensions, f-strings,
// calls other than dict(), attribute access, subscripts, {{_base_.x}} text
// substitutions - is an Error "<file>: line L, column C: <what>", as are an
// undefined name, a missing or cyclic base file and nesting deeper than 256.
#pragma once

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"

namespace flowless::io {

namespace pyconfig_detail {

using json::Value;

enum class Tok { name, number, string, op, newline, end };

struct Token {
  Tok kind = Tok::end;
  std::string text;  // name, operator, decoded string
  double number = 0;
  bool integral = false;
  int line = 1, col = 1;
};

class Lexer {
 public:
  Lexer(const std::string& src, const std::string& file) : s_(src), file_(file) {}

  std::vector<Token> run() {
    std::vector<Token> out;
    int depth = 0;
    while (true) {
      skip_space_and_comments(depth > 0);
      Token t;
      t.line = line_;
      t.col = col();
      if (i_ >= s_.size()) {
        if (!out.empty() && out.back().kind != Tok::newline) out.push_back(make(Tok::newline, t));
        t.kind = Tok::end;
        out.push_back(t);
        return out;
      }
      const char c = s_[i_];
      if (c == '\n') {
        advance_line();
        if (depth == 0 && !out.empty() && out.back().kind != Tok::newline) out.push_back(make(Tok::newline, t));
        continue;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t j = i_;
        while (j < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[j])) || s_[j] == '_')) ++j;
        std::string word = s_.substr(i_, j - i_);
        // string prefixes: r, R (raw); f / b / u prefixes are refused or accepted as plain
        if (j < s_.size() && (s_[j] == '\'' || s_[j] == '"') && word.size() <= 2) {
          std::string p = word;
          for (auto& ch : p) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          if (p.find('f') != std::string::npos) fail(t, "f-strings are not supported");
          if (p == "r" || p == "u" || p == "b" || p == "rb" || p == "br") {
            i_ = j;
            t.kind = Tok::string;
            t.text = read_string(t, p.find('r') != std::string::npos);
            out.push_back(t);
            continue;
          }
        }
        i_ = j;
        t.kind = Tok::name;
        t.text = word;
        out.push_back(t);
        continue;
      }
      if (std::isdigit(static_cast<unsigned char>(c)) ||
          (c == '.' && i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1])))) {
        out.push_back(read_number(t));
        continue;
      }
      if (c == '\'' || c == '"') {
        t.kind = Tok::string;
        t.text = read_string(t, false);
        out.push_back(t);
        continue;
      }
      // operators
      static const char* two[] = {"//", "**", "==", "!=", "<=", ">=", "->", ":="};
      std::string op(1, c);
      for (const char* o : two)
        if (s_.compare(i_, 2, o) == 0) op = o;
      if (op == "(" || op == "[" || op == "{") ++depth;
      if (op == ")" || op == "]" || op == "}") {
        if (depth == 0) fail(t, "unbalanced '", op, "'");
        --depth;
      }
      if (op.size() == 1 && std::string("()[]{},:=+-*/%.").find(c) == std::string::npos)
        fail(t, "unexpected character '", op, "'");
      i_ += op.size();
      t.kind = Tok::op;
      t.text = op;
      out.push_back(t);
    }
  }

 private:
  const std::string& s_;
  const std::string& file_;
  size_t i_ = 0, line_start_ = 0;
  int line_ = 1;

  int col() const { return static_cast<int>(i_ - line_start_) + 1; }
  void advance_line() {
    ++i_;
    ++line_;
    line_start_ = i_;
  }
  static Token make(Tok k, const Token& at) {
    Token t = at;
    t.kind = k;
    return t;
  }
  template <class... A>
  [[noreturn]] void fail(const Token& t, A&&... a) const {
    FLOWLESS_FAIL(file_, ": line ", t.line, ", column ", t.col, ": ", std::forward<A>(a)...);
  }

  void skip_space_and_comments(bool in_brackets) {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\f') {
        ++i_;
      } else if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (c == '\\' && i_ + 1 < s_.size() && (s_[i_ + 1] == '\n' || s_[i_ + 1] == '\r')) {
        ++i_;
        if (s_[i_] == '\r') ++i_;
        if (i_ < s_.size() && s_[i_] == '\n') advance_line();
      } else if (c == '\n' && in_brackets) {
        advance_line();
      } else {
        return;
      }
    }
  }

  Token read_number(Token t) {
    size_t j = i_;
    std::string digits;
    bool is_float = false;
    if (s_.compare(i_, 2, "0x") == 0 || s_.compare(i_, 2, "0X") == 0) {
      j += 2;
      while (j < s_.size() && (std::isxdigit(static_cast<unsigned char>(s_[j])) || s_[j] == '_')) {
        if (s_[j] != '_') digits += s_[j];
        ++j;
      }
      if (digits.empty()) fail(t, "bad hexadecimal literal");
      t.number = static_cast<double>(std::strtoull(digits.c_str(), nullptr, 16));
      t.integral = true;
    } else {
      while (j < s_.size()) {
        const char c = s_[j];
        if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
          if (c != '_') digits += c;
        } else if (c == '.') {
          is_float = true;
          digits += c;
        } else if (c == 'e' || c == 'E') {
          is_float = true;
          digits += c;
          if (j + 1 < s_.size() && (s_[j + 1] == '+' || s_[j + 1] == '-')) digits += s_[++j];
        } else {
          break;
        }
        ++j;
      }
      if (j < s_.size() && (std::isalpha(static_cast<unsigned char>(s_[j])) || s_[j] == '_'))
        fail(t, "bad number literal '", s_.substr(i_, j - i_ + 1), "'");
      char* endp = nullptr;
      t.number = std::strtod(digits.c_str(), &endp);
      if (endp != digits.c_str() + digits.size()) fail(t, "bad number literal '", s_.substr(i_, j - i_), "'");
      t.integral = !is_float;
    }
    i_ = j;
    t.kind = Tok::number;
    return t;
  }

  std::string read_string(const Token& t, bool raw) {
    const char q = s_[i_];
    const bool triple = s_.compare(i_, 3, std::string(3, q)) == 0;
    i_ += triple ? 3 : 1;
    std::string out;
    while (true) {
      if (i_ >= s_.size()) fail(t, "unterminated string");
      const char c = s_[i_];
      if (triple ? s_.compare(i_, 3, std::string(3, q)) == 0 : c == q) {
        i_ += triple ? 3 : 1;
        return out;
      }
      if (c == '\n') {
        if (!triple) fail(t, "unterminated string");
        out += c;
        advance_line();
        continue;
      }
      if (c == '\\' && i_ + 1 < s_.size()) {
        const char e = s_[i_ + 1];
        if (raw) {
          out += c;
          out += e;
          i_ += 2;
          if (e == '\n') ++line_, line_start_ = i_;
          continue;
        }
        i_ += 2;
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case '0': out += '\0'; break;
          case '\\': out += '\\'; break;
          case '\'': out += '\''; break;
          case '"': out += '"'; break;
          case '\n': ++line_, line_start_ = i_; break;  // line continuation inside a string
          default: out += '\\'; out += e; break;        // Python keeps unknown escapes
        }
        continue;
      }
      out += c;
      ++i_;
    }
  }
};

inline bool is_integral(const Value& v) {
  return v.is_number() && std::isfinite(v.as_number()) && std::floor(v.as_number()) == v.as_number();
}

/// mmengine Config._merge_a_into_b: `from` merged into `into`.
inline void merge_into(Value& into, const Value& from) {
  for (const auto& [k, v] : from.items()) {
    if (v.is_object() && into.is_object() && into.contains(k) && into.at(k).is_object() &&
        !(v.contains("_delete_") && v.at("_delete_").is_bool() && v.at("_delete_").as_bool())) {
      merge_into(into[k], v);
    } else {
      Value copy = v;
      if (copy.is_object() && copy.contains("_delete_")) {
        Value clean = Value::object();
        for (const auto& [k2, v2] : copy.items())
          if (k2 != "_delete_") clean[k2] = v2;
        copy = clean;
      }
      into[k] = copy;
    }
  }
}

class Reader {
 public:
  explicit Reader(std::vector<std::string>* stack) : stack_(stack) {}

  Value read(const std::string& path) {
    for (const auto& p : *stack_)
      FLOWLESS_CHECK(p != path, path, ": _base_ files include each other (cycle through ", stack_->front(), ")");
    FLOWLESS_CHECK(stack_->size() < 64, path, ": _base_ files nested more than 64 deep");
    stack_->push_back(path);
    Value out = parse(read_file(path), path, true);
    stack_->pop_back();
    return out;
  }

  Value parse(const std::string& src, const std::string& name, bool bases_allowed) {
    file_ = name;
    toks_ = Lexer(src, name).run();
    Value own = Value::object();    // this file's assignments, in order
    Value bases = Value::object();  // merged base files
    while (peek().kind != Tok::end) {
      if (peek().kind == Tok::newline) {
        ++pos_;
        continue;
      }
      const Token& first = peek();
      if (first.kind == Tok::string) {  // a docstring or other bare string statement
        (void)expression(0);
        expect_newline();
        continue;
      }
      if (first.kind != Tok::name) fail(first, "expected an assignment 'name = value'");
      static const char* keywords[] = {"import", "from", "def", "class", "if", "for", "while", "with",
                                       "try", "return", "lambda", "del", "assert", "global", "print"};
      for (const char* kw : keywords)
        if (first.text == kw) fail(first, "'", kw, "' statements are not supported in a config read without Python");
      const std::string name = first.text;
      ++pos_;
      if (!(peek().kind == Tok::op && peek().text == "="))
        fail(peek(), "expected '=' after '", name, "' (only 'name = value' statements are supported)");
      ++pos_;
      Value v = expression(0);
      expect_newline();
      if (name == "_base_") {
        if (!bases_allowed) fail(first, "_base_ needs a config file (this text has no folder to find it in)");
        if (has_base_) fail(first, "_base_ must be assigned once");
        has_base_ = true;
        std::vector<std::string> files;
        if (v.is_string()) files.push_back(v.as_string());
        else if (v.is_array())
          for (const auto& e : v.as_array()) {
            if (!e.is_string()) fail(first, "_base_ must be a file name or a list of file names");
            files.push_back(e.as_string());
          }
        else fail(first, "_base_ must be a file name or a list of file names");
        for (const auto& f : files) {
          const std::string base_path = resolve(f);
          FLOWLESS_CHECK(file_exists(base_path), file_, ": _base_ file '", f, "' not found (looked for ", base_path, ")");
          Reader sub(stack_);
          Value b = sub.read(base_path);
          for (const auto& [k, bv] : b.items()) {
            FLOWLESS_CHECK(!bases.contains(k), file_, ": key '", k, "' is defined by two _base_ files (", base_path,
                           " and an earlier one); mmengine refuses this too");
            bases[k] = bv;
            own_names_[k] = bv;
          }
        }
        continue;
      }
      own[name] = v;
      own_names_[name] = v;
    }
    Value out = bases;
    if (out.is_null()) out = Value::object();
    merge_into(out, own);
    return out;
  }

 private:
  std::vector<std::string>* stack_;
  std::string file_;
  std::vector<Token> toks_;
  size_t pos_ = 0;
  bool has_base_ = false;
  Value own_names_ = Value::object();  // what a name refers to: the bases' values, then own assignments

  const Token& peek() const { return toks_[pos_]; }
  const Token& next() { return toks_[pos_++]; }
  template <class... A>
  [[noreturn]] void fail(const Token& t, A&&... a) const {
    FLOWLESS_FAIL(file_, ": line ", t.line, ", column ", t.col, ": ", std::forward<A>(a)...);
  }
  bool at_op(const char* op) const { return peek().kind == Tok::op && peek().text == op; }
  void expect_op(const char* op) {
    if (!at_op(op)) fail(peek(), "expected '", op, "'", describe(peek()));
    ++pos_;
  }
  static std::string describe(const Token& t) {
    switch (t.kind) {
      case Tok::name: return ", found '" + t.text + "'";
      case Tok::op: return ", found '" + t.text + "'";
      case Tok::string: return ", found a string";
      case Tok::number: return ", found a number";
      case Tok::newline: return ", found the end of the line";
      case Tok::end: return ", found the end of the file";
    }
    return "";
  }
  void expect_newline() {
    if (peek().kind == Tok::end) return;
    if (peek().kind != Tok::newline) fail(peek(), "expected the end of the statement", describe(peek()));
    ++pos_;
  }
  std::string resolve(const std::string& f) const {
    if (!f.empty() && f[0] == '/') return f;
    const size_t slash = file_.find_last_of('/');
    return slash == std::string::npos ? f : file_.substr(0, slash + 1) + f;
  }

  // Precedence climbing: 1 = + -, 2 = * / // %, unary above.
  Value expression(int depth) {
    if (depth > 256) fail(peek(), "nesting deeper than 256");
    Value lhs = term(depth);
    while (at_op("+") || at_op("-")) {
      const Token op = next();
      Value rhs = term(depth);
      lhs = binary(op, lhs, rhs);
    }
    return lhs;
  }
  Value term(int depth) {
    Value lhs = unary(depth);
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token op = next();
      Value rhs = unary(depth);
      lhs = binary(op, lhs, rhs);
    }
    return lhs;
  }
  Value unary(int depth) {
    if (at_op("-") || at_op("+")) {
      const Token op = next();
      Value v = unary(depth + 1);
      if (!v.is_number()) fail(op, "unary '", op.text, "' needs a number, found ", v.type_name());
      return op.text == "-" ? Value(-v.as_number()) : v;
    }
    Value v = atom(depth);
    if (at_op(".") || at_op("[") || at_op("("))
      fail(peek(), "attribute access, subscripts and calls (other than dict()) are not supported");
    return v;
  }
  Value binary(const Token& op, const Value& a, const Value& b) {
    const std::string& o = op.text;
    if (a.is_number() && b.is_number()) {
      const double x = a.as_number(), y = b.as_number();
      if (o == "+") return Value(x + y);
      if (o == "-") return Value(x - y);
      if (o == "*") return Value(x * y);
      if ((o == "/" || o == "//" || o == "%") && y == 0) fail(op, "division by zero");
      if (o == "/") return Value(x / y);
      if (o == "//") return Value(std::floor(x / y));
      if (o == "%") return Value(x - y * std::floor(x / y));
    }
    if (o == "+" && a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (o == "+" && a.is_array() && b.is_array()) {
      Value r = a;
      for (const auto& e : b.as_array()) r.push_back(e);
      return r;
    }
    if (o == "*" && (a.is_array() || a.is_string()) && is_integral(b)) return repeat(op, a, b.as_number());
    if (o == "*" && (b.is_array() || b.is_string()) && is_integral(a)) return repeat(op, b, a.as_number());
    fail(op, "unsupported operation: ", a.type_name(), " ", o, " ", b.type_name());
  }
  Value repeat(const Token& op, const Value& seq, double n) {
    const double len = seq.is_string() ? double(seq.as_string().size()) : double(seq.size());
    if (n * len > 1e7) fail(op, "repetition to ", n * len, " elements is too large (a config holds at most 10^7)");
    if (seq.is_string()) {
      std::string r;
      for (int i = 0; i < static_cast<int>(n); ++i) r += seq.as_string();
      return Value(r);
    }
    Value r = Value::array();
    for (int i = 0; i < static_cast<int>(n); ++i)
      for (const auto& e : seq.as_array()) r.push_back(e);
    return r;
  }

  Value atom(int depth) {
    const Token t = next();
    switch (t.kind) {
      case Tok::number: return Value(t.number);
      case Tok::string: {
        std::string s = t.text;
        while (peek().kind == Tok::string) s += next().text;  // adjacent literals
        return Value(s);
      }
      case Tok::name: {
        if (t.text == "True") return Value(true);
        if (t.text == "False") return Value(false);
        if (t.text == "None") return Value(nullptr);
        if (t.text == "dict" && at_op("(")) return dict_call(depth);
        if (at_op("(")) fail(t, "calls to '", t.text, "' are not supported (only dict(...))");
        if (t.text == "lambda") fail(t, "lambda is not supported");
        return lookup(t);
      }
      case Tok::op:
        if (t.text == "[") return sequence(depth, "]");
        if (t.text == "(") {
          if (at_op(")")) {
            ++pos_;
            return Value::array();
          }
          Value first = expression(depth + 1);
          if (at_op(")")) {  // parenthesised expression
            ++pos_;
            return first;
          }
          expect_op(",");
          Value tup = Value::array();
          tup.push_back(first);
          while (!at_op(")")) {
            tup.push_back(expression(depth + 1));
            if (!at_op(")")) expect_op(",");
          }
          ++pos_;
          return tup;
        }
        if (t.text == "{") return brace_dict(depth, t);
        fail(t, "unexpected '", t.text, "'");
      case Tok::newline: fail(t, "expected a value, found the end of the line");
      case Tok::end: fail(t, "expected a value, found the end of the file");
    }
    fail(t, "expected a value");
  }
  Value sequence(int depth, const char* close) {
    Value arr = Value::array();
    while (!at_op(close)) {
      arr.push_back(expression(depth + 1));
      if (peek().kind == Tok::name && peek().text == "for") fail(peek(), "comprehensions are not supported");
      if (!at_op(close)) expect_op(",");
    }
    ++pos_;
    return arr;
  }
  Value dict_call(int depth) {
    expect_op("(");
    Value obj = Value::object();
    while (!at_op(")")) {
      const Token key = next();
      if (key.kind == Tok::op && key.text == "**") fail(key, "dict(**x) is not supported");
      if (key.kind != Tok::name) fail(key, "expected a keyword argument 'name=value' in dict(...)");
      expect_op("=");
      obj[key.text] = expression(depth + 1);
      if (!at_op(")")) expect_op(",");
    }
    ++pos_;
    return obj;
  }
  Value brace_dict(int depth, const Token& open) {
    Value obj = Value::object();
    while (!at_op("}")) {
      Value key = expression(depth + 1);
      if (!key.is_string()) fail(open, "only string keys are supported in {...}, found ", key.type_name());
      expect_op(":");
      obj[key.as_string()] = expression(depth + 1);
      if (!at_op("}")) expect_op(",");
    }
    ++pos_;
    return obj;
  }
  Value lookup(const Token& t) {
    if (own_names_.contains(t.text)) return own_names_.at(t.text);
    if (peek().kind == Tok::name && peek().text == "for") fail(peek(), "comprehensions are not supported");
    fail(t, "name '", t.text, "' is not defined (only names assigned earlier in the config or its bases)");
  }
};

}  // namespace pyconfig_detail

/// Reads an mmengine-style Python config (see the file comment).
inline json::Value read_pyconfig(const std::string& path) {
  std::vector<std::string> stack;
  pyconfig_detail::Reader r(&stack);
  return r.read(path);
}

/// One config text without _base_ (see the file comment); errors name `name`.
inline json::Value parse_pyconfig(const std::string& text, const std::string& name) {
  std::vector<std::string> stack;
  pyconfig_detail::Reader r(&stack);
  return r.parse(text, name, false);
}

}  // namespace flowless::io
