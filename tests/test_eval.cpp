// Tests for the JSON library, the annotation loader, the detection evaluator
// (ANETdetection port) and the 1-D NMS (nms_cpu.cpp / nms.py port).
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <unistd.h>
#include <limits>
#include <string>
#include <vector>

#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"

using flowless::Error;
namespace json = flowless::json;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}
bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}
std::string temp_dir() {
  std::string d = std::string("/tmp/flowless_test_eval_") + std::to_string(::getpid());
  flowless::io::make_dirs(d);
  return d;
}
}  // namespace

// ---------------------------------------------------------------- JSON

TEST_CASE("json: parse scalars, arrays, objects in insertion order") {
  auto v = json::parse(R"( {"b": 1, "a": [true, false, null, -2.5e3, "x\ty\u00e9\ud83d\ude00"],
                           "c": {"z": 0, "y": -0.0}} )");
  REQUIRE(v.is_object());
  REQUIRE(v.size() == 3);
  CHECK(v.items()[0].first == "b");
  CHECK(v.items()[1].first == "a");
  CHECK(v.items()[2].first == "c");
  CHECK(v.at("b").as_int() == 1);
  const auto& a = v.at("a");
  REQUIRE(a.size() == 5);
  CHECK(a[0].as_bool() == true);
  CHECK(a[1].as_bool() == false);
  CHECK(a[2].is_null());
  CHECK(a[3].as_number() == -2500.0);
  CHECK(a[4].as_string() == "x\ty\xc3\xa9\xf0\x9f\x98\x80");
  CHECK(v.at("c").items()[0].first == "z");
  CHECK(std::signbit(v.at("c").at("y").as_number()));
  CHECK(v.contains("a"));
  CHECK_FALSE(v.contains("d"));
}

TEST_CASE("json: Python's NaN / Infinity tokens and repeated keys") {
  auto v = json::parse(R"([NaN, Infinity, -Infinity])");
  CHECK(std::isnan(v[0].as_number()));
  CHECK(v[1].as_number() == std::numeric_limits<double>::infinity());
  CHECK(v[2].as_number() == -std::numeric_limits<double>::infinity());
  CHECK(json::dump(v) == "[NaN,Infinity,-Infinity]");
  // Python: a repeated key keeps its first position and takes the last value.
  auto o = json::parse(R"({"k": 1, "j": 2, "k": 3})");
  REQUIRE(o.size() == 2);
  CHECK(o.items()[0].first == "k");
  CHECK(o.at("k").as_int() == 3);
  CHECK(json::parse("1e400").as_number() == std::numeric_limits<double>::infinity());
  CHECK(json::parse("-1e-400").as_number() == 0.0);
}

TEST_CASE("json: numbers round-trip exactly, integers print without fraction") {
  std::vector<double> xs = {0.1, 1.0 / 3.0, 0.39999999999999997, 1e-300, 123456789.125,
                            -7.0, 9007199254740993.0, 1e21, 5e-324, 2.5e-5};
  for (double x : xs) {
    std::string t = json::dump(json::Value(x));
    CHECK(json::parse(t).as_number() == x);
  }
  CHECK(json::dump(json::Value(3)) == "3");
  CHECK(json::dump(json::Value(-12.0)) == "-12");
  CHECK(json::dump(json::Value(0.5)) == "0.5");
  CHECK(json::dump(json::Value(0.1)) == "0.1");
  CHECK(json::dump(json::Value(-0.0)) == "-0.0");
  CHECK(json::dump(json::Value(int64_t(1) << 40)) == "1099511627776");
  CHECK(json::dump(json::Value(size_t(7))) == "7");
  CHECK(json::dump(json::Value(7LL)) == "7");
  CHECK(json::dump(json::Value(7u)) == "7");
}

TEST_CASE("json: dump escapes strings, writes nested structures and indents") {
  json::Value v = json::Value::object();
  v["s"] = "a\"b\\c\n\x01";
  v["e"] = json::Value::array();
  v["o"] = json::Value::object();
  v["l"].push_back(1);
  v["l"].push_back("two");
  v["n"] = nullptr;
  v["b"] = true;
  CHECK(json::dump(v) ==
        R"({"s":"a\"b\\c\n\u0001","e":[],"o":{},"l":[1,"two"],"n":null,"b":true})");
  CHECK(json::dump(v, 2) ==
        "{\n  \"s\": \"a\\\"b\\\\c\\n\\u0001\",\n  \"e\": [],\n  \"o\": {},\n  \"l\": [\n"
        "    1,\n    \"two\"\n  ],\n  \"n\": null,\n  \"b\": true\n}");
  CHECK(json::parse(json::dump(v, 2)) == v);
  CHECK(json::parse(json::dump(v)) == v);
}

TEST_CASE("json: large objects keep order and find keys") {
  json::Value v;
  for (int i = 0; i < 1000; ++i) v["k" + std::to_string(999 - i)] = i;
  REQUIRE(v.size() == 1000);
  CHECK(v.items()[0].first == "k999");
  CHECK(v.at("k0").as_int() == 999);
  CHECK(v.at("k500").as_int() == 499);
  v["k500"] = "x";
  CHECK(v.size() == 1000);
  json::Value copy = v;
  CHECK(copy.at("k500").as_string() == "x");
  copy["new"] = 1;
  CHECK(copy.contains("new"));
  CHECK_FALSE(v.contains("new"));
  auto parsed = json::parse(json::dump(v));
  CHECK(parsed == v);
  CHECK(parsed.items()[999].first == "k0");
}

TEST_CASE("json: accessors with defaults and type errors") {
  auto v = json::parse(R"({"n": 2, "f": 2.5, "s": "x", "b": false, "z": null})");
  CHECK(v.number_or("n", 7) == 2);
  CHECK(v.number_or("missing", 7) == 7);
  CHECK(v.number_or("z", 7) == 7);
  CHECK(v.int_or("n", 7) == 2);
  CHECK(v.string_or("s", "d") == "x");
  CHECK(v.string_or("missing", "d") == "d");
  CHECK(v.bool_or("b", true) == false);
  CHECK(v.bool_or("z", true) == true);
  CHECK(contains(error_of([&] { v.int_or("f", 0); }), "key 'f': expected an integer, found 2.5"));
  CHECK(contains(error_of([&] { v.number_or("s", 0); }), "key 's': expected a number, found a string"));
  CHECK(contains(error_of([&] { v.string_or("n", ""); }), "expected a string, found a number"));
  CHECK(contains(error_of([&] { v.at("s").as_number(); }), "expected a number, found a string"));
  CHECK(contains(error_of([&] { v.at("f").as_int(); }), "expected an integer, found 2.5"));
  CHECK(contains(error_of([&] { v.at("nope"); }), "missing key 'nope'"));
  CHECK(contains(error_of([&] { v.as_array(); }), "expected an array, found an object"));
  CHECK(contains(error_of([&] { json::parse("[1]")[1]; }), "index 1 out of range"));
  CHECK(contains(error_of([&] { json::Value(1).push_back(2); }), "expected an array, found a number"));
  CHECK(contains(error_of([&] {
                   json::with_context("f.json", [&] { return v.at("s").as_int(); });
                 }),
                 "f.json: expected a number, found a string"));
}

TEST_CASE("json: syntax errors name context, line and column") {
  auto err = [](const std::string& text) {
    return error_of([&] { json::parse(text, "cfg.json"); });
  };
  CHECK(contains(err("{\n  \"a\": 1,\n  \"b\" 2\n}"), "cfg.json: line 3, column 7: expected ':' after key 'b'"));
  CHECK(contains(err("[1, 2"), "cfg.json: line 1, column 1: unterminated array"));
  CHECK(contains(err("{\"a\": [1, }"), "line 1, column 11: unexpected '}', expected a JSON value"));
  CHECK(contains(err(""), "empty document"));
  CHECK(contains(err("[1] x"), "line 1, column 5: unexpected 'x' after the JSON value"));
  CHECK(contains(err("01"), "leading zero"));
  CHECK(contains(err("1."), "expected a digit after '.'"));
  CHECK(contains(err("-"), "expected a digit"));
  CHECK(contains(err("\"abc"), "unterminated string"));
  CHECK(contains(err("\"a\nb\""), "control character"));
  CHECK(contains(err("\"\\x\""), "invalid escape"));
  CHECK(contains(err("\"\\ud800\""), "lone UTF-16 surrogate"));
  CHECK(contains(err("\"\\u12g4\""), "invalid hex digit"));
  CHECK(contains(err("tru"), "unexpected 't'"));
  CHECK(contains(err("{1: 2}"), "expected a string key"));
  CHECK(contains(err("[1 2]"), "expected ',' or ']'"));
  // Deep nesting is an error, not a stack overflow.
  CHECK(contains(err(std::string(100000, '[')), "nesting deeper than 512 levels"));
  CHECK_NOTHROW(json::parse(std::string(500, '[') + std::string(500, ']')));
  // parse_file names the path.
  std::string dir = temp_dir();
  flowless::io::write_file_atomic(dir + "/bad.json", "{\"a\": nul}");
  CHECK(contains(error_of([&] { json::parse_file(dir + "/bad.json"); }),
                 dir + "/bad.json: line 1, column 7"));
  CHECK(contains(error_of([&] { json::parse_file(dir + "/missing.json"); }), "missing.json"));
}
