// Tests for the JSON library, the annotation loader, the detection evaluator
// (ANETdetection port) and the 1-D NMS (nms_cpu.cpp / nms.py port).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <functional>
#include <unistd.h>
#include <limits>
#include <string>
#include <vector>

#include "test_util.hpp"
#include "flowless/io/file.hpp"
#include "flowless/io/json.hpp"
#include "flowless/eval/paired.hpp"
#include "flowless/eval/error_analysis.hpp"
#include "flowless/core/random.hpp"

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
// A scratch folder for this process, removed at exit.
std::string temp_dir() {
  static const flowless::test::ScratchDir d("eval");
  return d.path;
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

// ---------------------------------------------------------------- annotations

#include "flowless/data/annotations.hpp"

namespace {
std::string write_temp(const std::string& name, const std::string& text) {
  std::string p = temp_dir() + "/" + name;
  flowless::io::write_file_atomic(p, text);
  return p;
}
std::string ann_error(const std::string& text) {
  std::string p = write_temp("ann.json", text);
  return error_of([&] { flowless::data::load_annotations(p); });
}
}  // namespace

TEST_CASE("annotations: load the synthetic fixture") {
  auto a = flowless::data::load_annotations(std::string(FLOWLESS_TEST_DATA) +
                                            "/eval_synthetic/annotations.json");
  CHECK(a.version == "synthetic");
  REQUIRE(a.videos.size() == 60);
  CHECK(a.videos[0].id == "video_0000");
  CHECK(a.videos[0].subset == "Validation");
  const auto* v = a.find("video_0001");
  REQUIRE(v != nullptr);
  CHECK(v->duration == 359.12);
  CHECK(v->fps == 29.97);
  REQUIRE(v->segments.size() == 20);
  CHECK(v->segments[0].start == 33.22);
  CHECK(v->segments[0].end == 41.36);
  CHECK(v->segments[0].label == "Action04");
  CHECK(v->segments[0].label_id == 4);
  CHECK(a.find("nope") == nullptr);
  CHECK(a.split({"test"}).size() == 40);
  CHECK(a.split({"TEST"}).size() == 40);
  CHECK(a.split({"validation", "Test"}).size() == 60);
  CHECK(a.split({}).size() == 60);
  CHECK(a.split({"train"}).empty());
  REQUIRE(a.label_names.size() == 6);
  CHECK(a.label_names.at(0) == "Action00");
  CHECK(a.label_names.at(5) == "Action05");
  size_t n = 0;
  for (const auto& vv : a.videos) n += vv.segments.size();
  CHECK(n == 622);
}

TEST_CASE("annotations: ids from sorted names, partial ids, round trip") {
  std::string p = write_temp("names.json", R"({"database": {
    "b": {"subset": "Test", "duration": 10, "annotations": [
          {"label": "Zebra", "segment": [1, 2]}, {"label": "Ant", "segment": [3, 3]}]},
    "a": {"subset": "train", "duration": 5.5, "fps": 25, "annotations": [
          {"label": "Moth", "segment": [0.5, 9.0]}]},
    "c": {"subset": "Test", "duration": 1}}})");
  auto a = flowless::data::load_annotations(p);
  REQUIRE(a.videos.size() == 3);
  CHECK(a.videos[0].id == "b");  // file order
  CHECK(a.videos[0].segments[0].label_id == 2);  // Ant=0, Moth=1, Zebra=2
  CHECK(a.videos[0].segments[1].label_id == 0);
  CHECK(a.videos[0].segments[1].end == 3);  // zero length kept
  CHECK(a.videos[1].segments[0].label_id == 1);
  CHECK(a.videos[1].segments[0].end == 9.0);  // beyond duration kept
  CHECK(a.videos[0].fps == 0);
  CHECK(a.videos[1].fps == 25);
  CHECK(a.videos[2].segments.empty());
  CHECK(a.label_names == std::map<int, std::string>{{0, "Ant"}, {1, "Moth"}, {2, "Zebra"}});

  // Partial ids: names and ids complete each other across the file.
  auto b = flowless::data::load_annotations(write_temp("partial.json", R"({"database": {
    "v": {"subset": "Test", "duration": 10, "annotations": [
          {"label": "Run", "segment": [1, 2]}, {"label_id": 7, "segment": [3, 4]},
          {"label": "Run", "label_id": 3, "segment": [4, 5]},
          {"label": "Jump", "label_id": 7, "segment": [5, 6]}, {"label_id": 9, "segment": [6, 7]}]}}})"));
  const auto& s = b.videos[0].segments;
  CHECK(s[0].label_id == 3);
  CHECK(s[1].label == "Jump");
  CHECK(s[4].label == "");
  CHECK(s[4].label_id == 9);
  CHECK(b.label_names == std::map<int, std::string>{{3, "Run"}, {7, "Jump"}});

  // save -> load gives the same data.
  std::string q = temp_dir() + "/saved.json";
  flowless::data::save_annotations(a, q);
  auto c = flowless::data::load_annotations(q);
  REQUIRE(c.videos.size() == a.videos.size());
  for (size_t i = 0; i < a.videos.size(); ++i) {
    CHECK(c.videos[i].id == a.videos[i].id);
    CHECK(c.videos[i].subset == a.videos[i].subset);
    CHECK(c.videos[i].duration == a.videos[i].duration);
    CHECK(c.videos[i].fps == a.videos[i].fps);
    REQUIRE(c.videos[i].segments.size() == a.videos[i].segments.size());
    for (size_t k = 0; k < a.videos[i].segments.size(); ++k) {
      CHECK(c.videos[i].segments[k].start == a.videos[i].segments[k].start);
      CHECK(c.videos[i].segments[k].end == a.videos[i].segments[k].end);
      CHECK(c.videos[i].segments[k].label == a.videos[i].segments[k].label);
      CHECK(c.videos[i].segments[k].label_id == a.videos[i].segments[k].label_id);
    }
  }
  CHECK(c.label_names == a.label_names);
}

TEST_CASE("annotations: invalid files are errors naming file and video") {
  auto e = ann_error(R"({"version": "x"})");
  CHECK(contains(e, "ann.json: missing key 'database'"));
  e = ann_error(R"({"database": []})");
  CHECK(contains(e, "ann.json: 'database' must be an object"));
  e = ann_error(R"({"database": {"v3": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": [1, 2]}, {"label": "a", "label_id": 0, "segment": [5.0, 2.0]}]}}})");
  CHECK(contains(e, "ann.json: video 'v3': annotation 1: segment [5, 2] has negative length"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": ["1", 2]}]}}})");
  CHECK(contains(e, "video 'v': annotation 0: 'segment' must hold two numbers, found a string"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": [NaN, 2]}]}}})");
  CHECK(contains(e, "video 'v': annotation 0: segment [NaN, 2] is not finite"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": [1]}]}}})");
  CHECK(contains(e, "'segment' must be an array [start, end]"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": 9, "annotations": [
      {"segment": [1, 2]}]}}})");
  CHECK(contains(e, "needs 'label' or 'label_id'"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 1.5, "segment": [1, 2]}]}}})");
  CHECK(contains(e, "'label_id' must be an integer >= 0, found 1.5"));
  e = ann_error(R"({"database": {"v": {"duration": 9, "annotations": []}}})");
  CHECK(contains(e, "ann.json: video 'v': missing key 'subset'"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "annotations": []}}})");
  CHECK(contains(e, "video 'v': missing key 'duration'"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": -1}}})");
  CHECK(contains(e, "video 'v': duration -1 is not a finite number >= 0"));
  e = ann_error(R"({"database": {"v": {"subset": "Test", "duration": 1, "fps": 0}}})");
  CHECK(contains(e, "video 'v': fps 0 is not a finite number > 0"));
  // Conflicting label <-> id mappings.
  e = ann_error(R"({"database": {"v1": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": [1, 2]}]},
      "v2": {"subset": "Test", "duration": 9, "annotations": [{"label": "a", "label_id": 1, "segment": [1, 2]}]}}})");
  CHECK(contains(e, "ann.json: video 'v2': annotation 0: label 'a' has label_id 1 here but 0 in video 'v1'"));
  e = ann_error(R"({"database": {"v1": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": [1, 2]}, {"label": "b", "label_id": 0, "segment": [1, 2]}]}}})");
  CHECK(contains(e, "video 'v1': annotation 1: label_id 0 is label 'b' here but 'a' in video 'v1'"));
  e = ann_error(R"({"database": {"v1": {"subset": "Test", "duration": 9, "annotations": [
      {"label": "a", "label_id": 0, "segment": [1, 2]}, {"label": "b", "segment": [1, 2]}]}}})");
  CHECK(contains(e, "video 'v1': annotation 1: label 'b' has no label_id anywhere in the file"));
  e = ann_error("{\"database\": {\"v\": \n  {\"subset\": Test}}}");
  CHECK(contains(e, "ann.json: line 2, column 14: unexpected 'T'"));
}

// ---------------------------------------------------------------- evaluator

#include "flowless/eval/detection_map.hpp"

namespace fe = flowless::eval;

TEST_CASE("eval: numpy argsort, pairwise mean and linspace are reproduced exactly") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto check_argsort = [](const std::vector<double>& v, const std::vector<int64_t>& want) {
    CHECK(fe::detail::numpy_argsort(v) == want);
  };
  // Expected permutations printed by numpy 1.24 np.argsort (ties!).
  check_argsort({3, 0, 0, 0, 0, 3, 3, 2, 0, 0}, {1, 2, 3, 4, 8, 9, 7, 0, 5, 6});
  check_argsort(std::vector<double>(16, 1.0),
                {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15});  // insertion sort
  check_argsort(std::vector<double>(17, 1.0),  // one partition step
                {0, 14, 13, 12, 11, 10, 9, 15, 8, 6, 5, 4, 3, 2, 1, 7, 16});
  check_argsort({0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1},
                {0, 2, 16, 4, 6, 14, 8, 18, 10, 12, 17, 15, 13, 9, 7, 5, 3, 1, 11, 19});
  check_argsort({1, 1, 2, 1, 1, 0, 2, 2, 0, 0, 1, 1, 3, 2, 1, 1, 2, 2, 0, 2,
                 3, 3, 3, 1, 1, 2, 2, 2, 3, 1, 3, 0, 0, 3, 3, 1, 0, 1, 0, 3},
                {38, 18, 5, 36, 8, 9, 31, 32, 0, 29, 15, 14, 11, 10, 35, 4, 3, 37, 1, 24,
                 23, 27, 26, 25, 19, 17, 16, 13, 7, 6, 2, 21, 20, 28, 30, 12, 33, 34, 22, 39});
  check_argsort(
      {2, 2, 0, 1, 0, nan, 1, 0, 1, 2, 2, 1, 1, 0, 2, 2, 2, 3, 3, 0, 2, 2, 0, 1, 1, 2, 1, 2, 2, 0,
       1, 3, 3, 2, 0, 2, 0, 3, 3, 1, 3, 3, 1, 3, 1, 0, 2, 3, 2, 1, 3, 1, 1, 0, 0, 2, 3, 1, 2, 3,
       0, 1, 2, 2, 1, 1, 0, 2, 3, 0, 3, 0, 0, 2, 0, 3, 1, nan, 3, 3, 1, 0, 1, 3, 2, 0, 3, 3, 3, 2,
       3, 2, 2, 3, 2, 3, 1, 3, 3, 0, 2, 1, 0, 0, 1, 0, 2, 0, 2, 3, 1, 0, 0, 1, 1, 1, 1, 3, 2, 3,
       3, 2, 0, 0, 2, 2, 3, 2, 3, 0, 1, 2, 2, 1, 0, 2, 0, 2, 3, 2, nan, 2, 1, 2, 2, 0, 0, 1, 2, 0},
      {74,  36,  45,  53,  54,  60,  66,  69,  71,  72,  81,  85,  99,  102, 103, 105, 107, 111,
       112, 122, 123, 129, 134, 136, 145, 146, 34,  29,  149, 7,   22,  4,   2,   19,  13,  11,
       130, 57,  80,  61,  6,   51,  64,  65,  76,  116, 115, 114, 113, 23,  52,  110, 82,  30,
       147, 96,  26,  142, 101, 8,   12,  39,  3,   44,  24,  104, 133, 49,  42,  10,  106, 108,
       100, 14,  27,  124, 118, 121, 94,  125, 127, 131, 132, 135, 137, 139, 141, 143, 144, 1,
       9,   92,  89,  20,  33,  35,  25,  46,  48,  55,  58,  21,  62,  63,  91,  67,  73,  148,
       0,   28,  15,  84,  16,  109, 50,  98,  47,  97,  43,  41,  138, 40,  38,  37,  95,  90,
       32,  31,  88,  56,  93,  128, 87,  126, 59,  86,  83,  120, 119, 117, 75,  68,  70,  18,
       17,  79,  78,  140, 77,  5});
  // Musser's median-of-3 killer with ties (values > 1500 floored to multiples
  // of 8) drives numpy past its depth limit into heapsort; fingerprint of the
  // permutation numpy 1.24 returned.
  {
    const int n = 2000, k = n / 2;
    std::vector<double> a(n, 0.0);
    for (int i = 1; i <= k; ++i) {
      if (i % 2 == 1) {
        a[i - 1] = i;
        a[i] = k + i;
      }
      a[k + i - 1] = 2 * i;
    }
    for (auto& x : a)
      if (x > 1500) x = std::floor(x / 8) * 8;
    auto p = fe::detail::numpy_argsort(a);
    int64_t f1 = 0, f2 = 0;
    for (int64_t i = 0; i < n; ++i) {
      f1 += (i + 1) * p[i];
      f2 = (f2 + ((i + 1) * (i + 1) % 1000000007) * p[i]) % 1000000007;
    }
    CHECK(f1 == 2250886330LL);
    CHECK(f2 == 630776071LL);
    CHECK(std::vector<int64_t>(p.end() - 6, p.end()) ==
          std::vector<int64_t>{999, 997, 995, 993, 1998, 1999});
  }
  // A sorted permutation on distinct values whatever the size (and no crash on
  // long runs of equal values).
  std::vector<double> big(5000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>((i * 7919) % 5000);
  auto o = fe::detail::numpy_argsort(big);
  for (size_t i = 0; i < o.size(); ++i) CHECK(big[static_cast<size_t>(o[i])] == double(i));
  std::vector<double> flat(3000, 1.0);
  auto of = fe::detail::numpy_argsort(flat);
  std::sort(of.begin(), of.end());
  for (size_t i = 0; i < of.size(); ++i) REQUIRE(of[i] == int64_t(i));

  CHECK(fe::detail::linspace(0.5, 0.95, 10) ==
        std::vector<double>{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.8999999999999999, 0.95});
  CHECK(fe::detail::linspace(0.1, 0.5, 5) ==
        std::vector<double>{0.1, 0.2, 0.30000000000000004, 0.4, 0.5});
  CHECK(fe::detail::linspace(0.7, 0.3, 3) == std::vector<double>{0.7, 0.5, 0.3});
  CHECK(fe::detail::linspace(0.2, 0.9, 1) == std::vector<double>{0.2});
  CHECK(fe::parse_tiou_range("0.3:0.7:5") ==
        std::vector<double>{0.3, 0.39999999999999997, 0.5, 0.6, 0.7});
  CHECK(fe::parse_tiou_range("0.5, 0.75,0.95") == std::vector<double>{0.5, 0.75, 0.95});
  CHECK(fe::parse_tiou_range("0.5") == std::vector<double>{0.5});
  CHECK(contains(error_of([] { fe::parse_tiou_range("0.3:0.7"); }), "exactly three fields"));
  CHECK(contains(error_of([] { fe::parse_tiou_range("0.3:0.7:2.5"); }), "count '2.5'"));
  CHECK(contains(error_of([] { fe::parse_tiou_range("0.3,x"); }), "'x' is not a number"));
  CHECK(contains(error_of([] { fe::parse_tiou_range("1.5"); }), "threshold 1.5 is outside [0, 1]"));
  CHECK(contains(error_of([] { fe::parse_tiou_range(""); }), "tIoU thresholds ''"));

  // Pairwise summation differs from a plain loop in the last bits; numpy
  // printed 0.1 * 10 summed as 1.0 (plain loop: 0.9999999999999999).
  std::vector<double> tenths(10, 0.1);
  CHECK(fe::detail::numpy_sum(tenths) == 1.0);
  double plain = 0;
  for (double x : tenths) plain += x;
  CHECK(plain != 1.0);
}

TEST_CASE("eval: synthetic fixture matches the reference evaluator") {
  const std::string dir = std::string(FLOWLESS_TEST_DATA) + "/eval_synthetic";
  auto ann = flowless::data::load_annotations(dir + "/annotations.json");
  auto preds = fe::load_predictions(dir + "/predictions.json", ann);
  CHECK(preds.size() == 715);
  auto tious = fe::parse_tiou_range("0.3:0.7:5");
  auto res = fe::evaluate_detection(ann, "test", preds, tious);
  auto expected = json::parse_file(dir + "/expected_map.json");

  double max_diff = 0;
  auto cmp = [&](const std::vector<double>& got, const json::Value& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i)
      max_diff = std::max(max_diff, std::fabs(got[i] - want[i].as_number()));
  };
  cmp(res.tiou_thresholds, expected.at("tiou_thresholds"));
  cmp(res.map, expected.at("mAP"));
  cmp(res.recall_at_1x, expected.at("recall_at_1x"));
  cmp(res.recall_at_5x, expected.at("recall_at_5x"));
  max_diff = std::max(max_diff, std::fabs(res.average_map - expected.at("average_mAP").as_number()));
  MESSAGE("eval_synthetic max abs diff vs expected_map.json: ", max_diff);
  CHECK(max_diff <= 1e-6);
  CHECK(max_diff <= 1e-15);  // in fact bit-identical arithmetic
  CHECK(res.tiou_thresholds[1] == 0.39999999999999997);

  // Per-class AP from the numpy port of metrics.py (dev/eval_reference.py).
  std::map<std::string, std::vector<double>> want = {
      {"Action00", {0.3300167107663322, 0.3300167107663322, 0.29802455907318737, 0.26035774334445616, 0.0976988707197387}},
      {"Action01", {0.3592191706653681, 0.3383747048387147, 0.3152816218637059, 0.2056933188898598, 0.06763295549854406}},
      {"Action02", {0.39178786028868184, 0.34316400434994426, 0.2903538069007301, 0.23729671018196835, 0.08574321524985662}},
      {"Action03", {0.31761987842017725, 0.2871868318601326, 0.2203896493604184, 0.13982247423848249, 0.08253441847644746}},
      {"Action04", {0.4371059434671893, 0.4251337426210388, 0.38745334822505595, 0.3393434817948982, 0.15329822138645674}},
      {"Action05", {0.3923919042617353, 0.3786943455572567, 0.3604976309784331, 0.29660761528443763, 0.1232802128084586}}};
  REQUIRE(res.per_class_ap.size() == want.size());
  for (const auto& [name, ap] : want) {
    REQUIRE(res.per_class_ap.count(name) == 1);
    for (size_t t = 0; t < ap.size(); ++t) CHECK(res.per_class_ap.at(name)[t] == doctest::Approx(ap[t]).epsilon(1e-12));
  }

  // to_json / format_table carry the same numbers.
  auto j = fe::to_json(res);
  CHECK(j.at("average_mAP").as_number() == res.average_map);
  CHECK(j.at("mAP").size() == 5);
  CHECK(j.at("per_class_ap").at("Action03")[2].as_number() == res.per_class_ap.at("Action03")[2]);
  CHECK(json::parse(json::dump(j)) == j);
  std::string table = fe::format_table(res);
  CHECK(contains(table, "0.40"));
  CHECK(contains(table, "37.14"));   // mAP@0.3
  CHECK(contains(table, "27.64"));   // average
  CHECK(contains(table, "Action05"));

  // The split name is case-insensitive; a split without GT is an error.
  auto res2 = fe::evaluate_detection(ann, "Test", preds, tious);
  CHECK(res2.average_map == res.average_map);
  CHECK(contains(error_of([&] { fe::evaluate_detection(ann, "training", preds, tious); }),
                 "split 'training' has no ground-truth segment"));
}

namespace {
flowless::data::Annotations small_annotations() {
  flowless::data::Annotations a;
  a.label_names = {{0, "Jump"}, {1, "Run"}};
  flowless::data::VideoAnnotation va{"A", "test", 100, 30, {}};
  va.segments = {{0, 10, 0, "Jump"}, {20, 30, 0, "Jump"}};
  flowless::data::VideoAnnotation vb{"B", "Test", 100, 30, {}};
  vb.segments = {{0, 10, 0, "Jump"}, {5, 8, 1, "Run"}};
  flowless::data::VideoAnnotation vc{"C", "validation", 100, 30, {}};
  vc.segments = {{0, 5, 0, "Jump"}};
  a.videos = {va, vb, vc};
  return a;
}
}  // namespace

TEST_CASE("eval: hand-computed AP and Recall@kx") {
  auto ann = small_annotations();
  std::vector<fe::Prediction> preds = {
      {"A", 0, 10, 0, 0.9},   // TP (tIoU 1)
      {"A", 1, 10, 0, 0.8},   // best GT already taken, next has tIoU 0 -> FP
      {"C", 0, 5, 0, 0.7},    // video C is not in the split -> FP
      {"B", 0, 4, 0, 0.6},    // tIoU 0.4: TP at 0.3, FP at 0.5
      {"A", 20, 29, 0, 0.5},  // tIoU 0.9 -> TP
      {"B", 5, 8, 7, 0.99},   // label 7 has no GT: ignored
  };
  auto r = fe::evaluate_detection(ann, "test", preds, {0.3, 0.5});
  // Class Jump: at 0.3 TP,FP,FP,TP,TP of 3 GT -> AP = 1/3 + 0.6/3 + 0.6/3;
  // at 0.5 TP,FP,FP,FP,TP -> AP = 1/3 + 0.4/3. Class Run has no predictions: 0.
  REQUIRE(r.per_class_ap.size() == 2);
  CHECK(r.per_class_ap.at("Jump")[0] == doctest::Approx(2.2 / 3).epsilon(1e-14));
  CHECK(r.per_class_ap.at("Jump")[1] == doctest::Approx(1.4 / 3).epsilon(1e-14));
  CHECK(r.per_class_ap.at("Run") == std::vector<double>{0, 0});
  CHECK(r.map[0] == doctest::Approx(1.1 / 3).epsilon(1e-14));
  CHECK(r.map[1] == doctest::Approx(0.7 / 3).epsilon(1e-14));
  CHECK(r.average_map == doctest::Approx(0.9 / 3).epsilon(1e-14));
  // Recall@1x, class Jump: video A keeps its top 2 predictions (0.9, 0.8): GT
  // [0,10] found; video B keeps 1 (tIoU 0.4). 5x adds [20,29] in A.
  CHECK(r.recall_at_1x[0] == doctest::Approx((2.0 / 3) / 2));
  CHECK(r.recall_at_1x[1] == doctest::Approx((1.0 / 3) / 2));
  CHECK(r.recall_at_5x[0] == doctest::Approx(1.0 / 2));
  CHECK(r.recall_at_5x[1] == doctest::Approx((2.0 / 3) / 2));

  // The unknown label really is ignored, whatever its score.
  auto preds2 = preds;
  preds2.pop_back();
  auto r2 = fe::evaluate_detection(ann, "test", preds2, {0.3, 0.5});
  CHECK(r2.map == r.map);
  CHECK(r2.recall_at_1x == r.recall_at_1x);

  // Lower-scored duplicates of a TP are false positives (one GT, one match).
  std::vector<fe::Prediction> dup = {{"B", 5, 8, 1, 0.5}, {"B", 5, 8, 1, 0.5}};
  auto r3 = fe::evaluate_detection(ann, "test", dup, {0.5});
  CHECK(r3.per_class_ap.at("Run")[0] == 1.0);  // TP first: precision 1 at full recall
  std::vector<fe::Prediction> dup2 = {{"B", 4, 9, 1, 0.9}, {"B", 5, 8, 1, 0.5}};
  auto r4 = fe::evaluate_detection(ann, "test", dup2, {0.5, 0.7});
  // 0.5: first (tIoU 0.6) matches, second is FP -> AP 1; 0.7: FP then TP -> 0.5.
  CHECK(r4.per_class_ap.at("Run") == std::vector<double>{1.0, 0.5});

  // Empty split "" evaluates every video: video C's GT joins and the
  // prediction there becomes a TP.
  auto r5 = fe::evaluate_detection(ann, "", preds, {0.5});
  CHECK(r5.per_class_ap.at("Jump")[0] > r.per_class_ap.at("Jump")[1]);

  CHECK(contains(error_of([&] { fe::evaluate_detection(ann, "test", preds, {}); }),
                 "no tIoU thresholds"));
  auto bad = preds;
  bad[0].score = std::numeric_limits<double>::quiet_NaN();
  CHECK(contains(error_of([&] { fe::evaluate_detection(ann, "test", bad, {0.5}); }),
                 "prediction 0 (video 'A') has a non-finite segment or score"));
}

TEST_CASE("error analysis: hand-computed DETAD false-positive types and removal gains") {
  auto ann = small_annotations();  // test split: A Jump [0,10] [20,30]; B Jump [0,10], Run [5,8]
  std::vector<fe::Prediction> preds = {
      {"A", 40, 50, 0, 0.95},  // no overlap with any GT: background
      {"A", 0, 10, 0, 0.9},    // TP
      {"A", 1, 10, 0, 0.8},    // its Jump GT (tIoU 0.9) already taken: double detection
      {"B", 5, 8, 0, 0.7},     // Jump tIoU 0.3; at 0.5 the best GT is Run's (tIoU 1): wrong label
      {"A", 20, 26, 0, 0.6},   // tIoU 0.6: TP
      {"B", 0, 3, 0, 0.5},     // Jump tIoU 0.3: localization at 0.5
      {"B", 0, 10, 1, 0.8},    // Run tIoU 0.3; best GT Jump (tIoU 1): wrong label at 0.5
      {"B", 4, 8, 1, 0.7},     // Run tIoU 0.75: TP
      {"B", 12, 20, 1, 0.6},   // background
      {"A", 8, 12, 1, 0.5},    // best GT Jump [0,10], tIoU 1/6 in [0.1, 0.5): confusion
      {"B", 5, 8, 7, 0.99},    // no GT of label 7: ignored, as by the evaluator
  };
  using fe::FpType;
  auto count = [](const fe::FalsePositiveAnalysis& r, size_t t, FpType ty) { return r.counts[t][size_t(ty)]; };
  fe::FalsePositiveOptions all;
  all.limit_factor = 0;
  auto r = fe::analyze_false_positives(ann, "test", preds, {0.25, 0.5}, all);
  CHECK(r.num_predictions == 10);
  // tIoU 0.5
  CHECK(count(r, 1, FpType::true_positive) == 3);
  CHECK(count(r, 1, FpType::double_detection) == 1);
  CHECK(count(r, 1, FpType::wrong_label) == 2);
  CHECK(count(r, 1, FpType::localization) == 1);
  CHECK(count(r, 1, FpType::confusion) == 1);
  CHECK(count(r, 1, FpType::background) == 2);
  // tIoU 0.25: B [5,8] Jump (0.3) and B [0,10] Run (0.3) become TPs; B [0,3]
  // Jump and B [4,8] Run then find their GT taken: double detections.
  CHECK(count(r, 0, FpType::true_positive) == 4);
  CHECK(count(r, 0, FpType::double_detection) == 3);
  CHECK(count(r, 0, FpType::wrong_label) == 0);
  CHECK(count(r, 0, FpType::localization) == 0);
  CHECK(count(r, 0, FpType::confusion) == 1);
  CHECK(count(r, 0, FpType::background) == 2);
  const std::array<double, 6> frac = {0.35, 0.2, 0.1, 0.05, 0.1, 0.2};
  for (size_t e = 0; e < 6; ++e) CHECK(r.fraction[e] == doctest::Approx(frac[e]).epsilon(1e-12));
  // Without a limit the mAP is the evaluator's, bit for bit.
  auto ev = fe::evaluate_detection(ann, "test", preds, {0.25, 0.5});
  CHECK(r.map == ev.map);
  CHECK(r.average_map == ev.average_map);

  // At 0.5 alone: Jump ranks BG, TP, DD, WL, TP, LOC -> AP (1/2 + 2/5) / 3 = 0.3;
  // Run ranks WL, TP, BG, CONF -> AP 0.5; mAP 0.4. Removing one type (the
  // others keep their flags): DD -> Jump 1/3; WL -> Jump 1/3, Run 1;
  // LOC and CONF come after the last TP -> no change; BG -> Jump 0.5.
  auto h = fe::analyze_false_positives(ann, "test", preds, {0.5}, all);
  CHECK(h.average_map == doctest::Approx(0.4).epsilon(1e-12));
  CHECK(h.average_map_gain[size_t(FpType::true_positive)] == 0);
  CHECK(h.average_map_gain[size_t(FpType::double_detection)] == doctest::Approx((1.0 / 3 + 0.5) / 2 - 0.4).epsilon(1e-12));
  CHECK(h.average_map_gain[size_t(FpType::wrong_label)] == doctest::Approx((1.0 / 3 + 1.0) / 2 - 0.4).epsilon(1e-12));
  CHECK(std::fabs(h.average_map_gain[size_t(FpType::localization)]) < 1e-15);
  CHECK(std::fabs(h.average_map_gain[size_t(FpType::confusion)]) < 1e-15);
  CHECK(h.average_map_gain[size_t(FpType::background)] == doctest::Approx((0.5 + 0.5) / 2 - 0.4).epsilon(1e-12));

  // The default limit, top 10G, keeps everything here; limit 1 keeps the top
  // #GT per class: Jump's 0.95, 0.9, 0.8 and Run's 0.8.
  auto lim = fe::analyze_false_positives(ann, "test", preds, {0.5});
  CHECK(lim.num_predictions == 10);
  fe::FalsePositiveOptions one;
  one.limit_factor = 1;
  auto top = fe::analyze_false_positives(ann, "test", preds, {0.5}, one);
  CHECK(top.num_predictions == 4);
  CHECK(count(top, 0, FpType::true_positive) == 1);
  CHECK(count(top, 0, FpType::double_detection) == 1);
  CHECK(count(top, 0, FpType::wrong_label) == 1);
  CHECK(count(top, 0, FpType::background) == 1);

  // JSON and table carry the same numbers.
  auto j = fe::to_json(h);
  CHECK(j.at("num_predictions").as_number() == 10);
  CHECK(j.at("counts").at("wrong_label")[0].as_number() == 2);
  CHECK(j.at("average_mAP_gain").at("background").as_number() == h.average_map_gain[5]);
  CHECK_FALSE(j.at("average_mAP_gain").contains("true_positive"));
  const std::string table = fe::format_table(h);
  CHECK(contains(table, "all 10 predictions"));
  CHECK(contains(table, "wrong label"));
  CHECK(contains(table, "+26.67"));  // removing the wrong labels: 2/3 - 0.4

  // Errors
  fe::FalsePositiveOptions neg;
  neg.limit_factor = -1;
  CHECK(contains(error_of([&] { fe::analyze_false_positives(ann, "test", preds, {0.5}, neg); }),
                 "limit_factor -1 must be finite and >= 0"));
  fe::FalsePositiveOptions wide;
  wide.min_tiou = 1.5;
  CHECK(contains(error_of([&] { fe::analyze_false_positives(ann, "test", preds, {0.5}, wide); }),
                 "min_tiou 1.5 outside [0, 1]"));
  auto bad = preds;
  bad[2].end = std::numeric_limits<double>::infinity();
  CHECK(contains(error_of([&] { fe::analyze_false_positives(ann, "test", bad, {0.5}); }),
                 "analyze_false_positives: prediction 2 (video 'A') has a non-finite segment or score"));
  CHECK(contains(error_of([&] { fe::analyze_false_positives(ann, "training", preds, {0.5}); }),
                 "split 'training' has no ground-truth segment"));
  // No predictions at all: every AP 0, nothing to analyse.
  auto none = fe::analyze_false_positives(ann, "test", {}, {0.5});
  CHECK(none.num_predictions == 0);
  CHECK(none.average_map == 0);
}

TEST_CASE("error analysis: on the reference fixture the types partition the predictions") {
  const std::string dir = std::string(FLOWLESS_TEST_DATA) + "/eval_synthetic";
  auto ann = flowless::data::load_annotations(dir + "/annotations.json");
  auto preds = fe::load_predictions(dir + "/predictions.json", ann);
  auto tious = fe::parse_tiou_range("0.3:0.7:5");
  fe::FalsePositiveOptions all;
  all.limit_factor = 0;
  auto r = fe::analyze_false_positives(ann, "test", preds, tious, all);
  auto ev = fe::evaluate_detection(ann, "test", preds, tious);
  CHECK(r.map == ev.map);
  CHECK(r.num_predictions == 715);
  double frac_sum = 0;
  for (double f : r.fraction) frac_sum += f;
  CHECK(frac_sum == doctest::Approx(1.0).epsilon(1e-12));
  for (size_t t = 0; t < tious.size(); ++t) {
    int64_t n = 0;
    for (auto c : r.counts[t]) n += c;
    CHECK(n == 715);
    // A higher threshold never has more true positives.
    if (t > 0) CHECK(r.counts[t][0] <= r.counts[t - 1][0]);
  }
  // Removing any error type can only raise AP (its entries are all false positives).
  for (size_t e = 1; e < 6; ++e) CHECK(r.average_map_gain[e] >= 0);
  // The default limit (top 10G) analyses at most 10x the GT count.
  auto lim = fe::analyze_false_positives(ann, "test", preds, tious);
  CHECK(lim.num_predictions <= 715);
  CHECK(lim.average_map <= r.average_map + 1e-12);

  // Against the numpy port of DETAD (dev/eval_reference.py detad), without a
  // limit, with DETAD's default 10G and with 1G (which cuts through tied scores).
  auto expected = json::parse_file(dir + "/expected_fp.json");
  for (double limit : {0.0, 10.0, 1.0}) {
    CAPTURE(limit);
    fe::FalsePositiveOptions o;
    o.limit_factor = limit;
    auto got = fe::analyze_false_positives(ann, "test", preds, tious, o);
    const auto& want = expected.at("limit_" + std::to_string(int(limit)));
    CHECK(got.num_predictions == int64_t(want.at("num_predictions").as_number()));
    for (int e = 0; e < fe::kNumFpTypes; ++e) {
      const auto& wc = want.at("counts").at(fe::fp_type_key(e));
      for (size_t t = 0; t < tious.size(); ++t) CHECK(double(got.counts[t][size_t(e)]) == wc[t].as_number());
      if (e > 0)
        CHECK(got.average_map_gain[size_t(e)] ==
              doctest::Approx(want.at("average_mAP_gain").at(fe::fp_type_key(e)).as_number()).epsilon(1e-12));
    }
    CHECK(got.average_map == doctest::Approx(want.at("average_mAP").as_number()).epsilon(1e-12));
  }
}

TEST_CASE("eval: remove_duplicate_annotations") {
  flowless::data::VideoAnnotation v{"v", "test", 100, 0, {}};
  v.segments = {{1, 2, 0, ""},        {1.0005, 2.0009, 0, ""},  // duplicate within 1e-3
                {1, 2, 1, ""},                                  // same segment, other label: kept
                {3, 3.0005, 0, ""},                             // shorter than 1e-3: dropped
                {1.002, 2, 0, ""},                              // start differs by 2e-3: kept
                {5, 5.001, 2, ""},                              // 0.0010000000000003 long: kept
                {7.001, 7.002, 2, ""}};                         // 0.0009999999999994 long: dropped
  auto kept = fe::detail::dedup_gt(v, 0);
  REQUIRE(kept.size() == 4);
  CHECK(kept[0].first.start == 1);
  CHECK(kept[1].second == 1);
  CHECK(kept[2].first.start == 1.002);
  // Lengths are compared in double arithmetic, exactly as the reference does.
  CHECK(kept[3].first.start == 5);
}

TEST_CASE("eval: load_predictions reads both layouts") {
  auto ann = small_annotations();
  std::string p1 = write_temp("anet.json", R"({"version": "x", "results": {
      "A": [{"segment": [1, 2], "label": "Run", "score": 0.5},
            {"segment": [3, 4], "label_id": 0, "score": 0.25}],
      "Z": [{"segment": [0, 1], "label": 1, "scores": 0.125}]}})");
  auto p = fe::load_predictions(p1, ann);
  REQUIRE(p.size() == 3);
  CHECK(p[0].video_id == "A");
  CHECK(p[0].label_id == 1);
  CHECK(p[0].score == 0.5);
  CHECK(p[1].label_id == 0);
  CHECK(p[1].start == 3);
  CHECK(p[1].end == 4);
  CHECK(p[2].video_id == "Z");
  CHECK(p[2].label_id == 1);
  CHECK(p[2].score == 0.125);
  std::string p2 = write_temp("ref.json", R"({"database": {
      "B": [{"segment": [1, 2], "label_id": 1, "scores": 0.75}]}})");
  auto q = fe::load_predictions(p2, ann);
  REQUIRE(q.size() == 1);
  CHECK(q[0].score == 0.75);

  auto err = [&](const std::string& text) {
    std::string path = write_temp("pred.json", text);
    return error_of([&] { fe::load_predictions(path, ann); });
  };
  CHECK(contains(err(R"({"foo": 1})"), "pred.json: expected key 'results'"));
  CHECK(contains(err(R"({"results": {"A": [{"segment": [1, 2], "label": "Fly", "score": 1}]}})"),
                 "pred.json: video 'A': prediction 0: label 'Fly' is not a class of the annotations"));
  CHECK(contains(err(R"({"results": {"A": [{"segment": [1, 2], "label": 0}]}})"),
                 "video 'A': prediction 0: missing key 'score'"));
  CHECK(contains(err(R"({"results": {"A": [{"segment": [1, 2], "label": 0, "score": NaN}]}})"),
                 "score NaN is not finite"));
  CHECK(contains(err(R"({"results": {"A": [{"segment": [1], "label": 0, "score": 1}]}})"),
                 "'segment' must be an array [start, end]"));
  CHECK(contains(err(R"({"results": {"A": {"segment": [1, 2]}}})"),
                 "video 'A': expected a list of predictions"));
  CHECK(contains(err(R"({"results": {"A": [{"segment": [1, 2], "score": 1}]}})"),
                 "needs 'label_id' or 'label'"));
}

// ---------------------------------------------------------------- NMS

#include "flowless/infer/nms.hpp"

using flowless::infer::batched_nms;
using flowless::infer::NmsConfig;
using flowless::infer::nms_1d;
using flowless::infer::Segments;
using flowless::infer::soft_nms_1d;

namespace {
NmsConfig cfg_of(const char* method, bool multiclass, float iou, float sigma, float vote, int cap) {
  NmsConfig c;
  c.method = method;
  c.multiclass = multiclass;
  c.iou_threshold = iou;
  c.sigma = sigma;
  c.voting_thresh = vote;
  c.max_seg_num = cap;
  c.min_score = 0.001f;
  return c;
}
void check_batched(const Segments& in, const NmsConfig& cfg, const Segments& want) {
  Segments got = batched_nms(in, cfg);
  INFO("method ", cfg.method, " multiclass ", cfg.multiclass, " cap ", cfg.max_seg_num);
  REQUIRE(got.size() == want.size());
  CHECK(got.label == want.label);
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(got.score[i] == doctest::Approx(want.score[i]).epsilon(1e-5));
    CHECK(std::fabs(got.start[i] - want.start[i]) <= 1e-4f);
    CHECK(std::fabs(got.end[i] - want.end[i]) <= 1e-4f);
  }
}
void check_soft(const Segments& in, float thr, float sigma, float min_score, int method,
                const std::vector<int>& index, const std::vector<float>& score) {
  auto r = soft_nms_1d(in.start.data(), in.end.data(), in.score.data(),
                       static_cast<int>(in.size()), thr, sigma, min_score, method);
  INFO("soft-NMS method ", method);
  CHECK(r.index == index);
  REQUIRE(r.score.size() == score.size());
  for (size_t i = 0; i < score.size(); ++i) {
    CHECK(r.score[i] == doctest::Approx(score[i]).epsilon(1e-5));
    CHECK(r.start[i] == in.start[static_cast<size_t>(index[i])]);  // boundaries unchanged
    CHECK(r.end[i] == in.end[static_cast<size_t>(index[i])]);
  }
}
}  // namespace

TEST_CASE("nms: hand-computed soft-NMS (gaussian, linear, hard)") {
  // A and B identical, C overlaps A by 1/3, D apart.
  std::vector<float> x1 = {0, 0, 5, 20}, x2 = {10, 10, 15, 30}, s = {0.9f, 0.8f, 0.7f, 0.5f};
  auto r = soft_nms_1d(x1.data(), x2.data(), s.data(), 4, 0.1f, 0.5f, 0.001f, 2);
  CHECK(r.index == std::vector<int>{0, 2, 3, 1});
  const double iou_ab = 10.0 / (10.000001 + 10.000001 - 10.0);  // area = len + 1e-6
  const double iou_ac = 5.0 / (10.000001 + 10.000001 - 5.0);
  const double b = 0.8 * std::exp(-iou_ab * iou_ab / 0.5) * std::exp(-iou_ac * iou_ac / 0.5);
  REQUIRE(r.score.size() == 4);
  CHECK(r.score[0] == doctest::Approx(0.9));
  CHECK(r.score[1] == doctest::Approx(0.7 * std::exp(-iou_ac * iou_ac / 0.5)).epsilon(1e-6));
  CHECK(r.score[2] == doctest::Approx(0.5));
  CHECK(r.score[3] == doctest::Approx(b).epsilon(1e-6));
  CHECK(r.start == std::vector<float>{0, 5, 20, 0});
  CHECK(r.end == std::vector<float>{10, 15, 30, 10});

  // Hard (method 0, thr 0.3): B [2,12] has iou 2/3 with A -> score 0 -> removed.
  std::vector<float> h1 = {0, 2, 9}, h2 = {10, 12, 20}, hs = {0.9f, 0.8f, 0.7f};
  auto rh = soft_nms_1d(h1.data(), h2.data(), hs.data(), 3, 0.3f, 0.5f, 0.001f, 0);
  CHECK(rh.index == std::vector<int>{0, 2});
  CHECK(rh.score == std::vector<float>{0.9f, 0.7f});
  // Linear (method 1): B -> 0.8 * (1 - 2/3); C (iou 0.05 with A, 1/6 with B) untouched.
  auto rl = soft_nms_1d(h1.data(), h2.data(), hs.data(), 3, 0.3f, 0.5f, 0.001f, 1);
  CHECK(rl.index == std::vector<int>{0, 2, 1});
  CHECK(rl.score[1] == 0.7f);
  CHECK(rl.score[2] == doctest::Approx(0.8 * (1 - 8.000002 / 12.000002)).epsilon(1e-6));
}

TEST_CASE("nms: soft-NMS stopped after max_keep selections is the prefix of the full run") {
  // Many overlapping candidates with repeated (tied) scores and some that decay below min_score.
  flowless::Rng rng(17);
  const int n = 400;
  std::vector<float> x1(n), x2(n), s(n);
  for (int i = 0; i < n; ++i) {
    x1[size_t(i)] = float(rng.uniform() * 100.0);
    x2[size_t(i)] = x1[size_t(i)] + float(0.5 + rng.uniform() * 10.0);
    s[size_t(i)] = float(int(rng.uniform() * 20.0) + 1) / 20.f;  // 20 distinct values: many ties
  }
  for (int method : {0, 1, 2}) {
    CAPTURE(method);
    const auto full = soft_nms_1d(x1.data(), x2.data(), s.data(), n, 0.1f, 0.5f, 0.05f, method);
    REQUIRE(full.index.size() > 30);  // hard NMS keeps the fewest (37 here)
    for (int k : {0, 1, 20, 150, n, n + 5}) {
      CAPTURE(k);
      const auto part = soft_nms_1d(x1.data(), x2.data(), s.data(), n, 0.1f, 0.5f, 0.05f, method, k);
      const size_t m = std::min(full.index.size(), size_t(k));
      REQUIRE(part.index.size() == m);
      CHECK(std::equal(part.index.begin(), part.index.end(), full.index.begin()));
      CHECK(std::equal(part.score.begin(), part.score.end(), full.score.begin()));
      CHECK(std::equal(part.start.begin(), part.start.end(), full.start.begin()));
      CHECK(std::equal(part.end.begin(), part.end.end(), full.end.begin()));
    }
  }
  CHECK_THROWS_WITH_AS(soft_nms_1d(x1.data(), x2.data(), s.data(), n, 0.1f, 0.5f, 0.05f, 2, -1),
                       doctest::Contains("max_keep"), flowless::Error);
}

TEST_CASE("nms: min_score removal swaps the last candidate in, which decides ties") {
  // B decays below min_score and is replaced by D (the last); D and C tie at
  // 0.5, and D now sits first, so D is selected before C.
  std::vector<float> x1 = {0, 0, 50, 100}, x2 = {10, 10, 60, 110},
                     s = {0.9f, 0.002f, 0.5f, 0.5f};
  auto r = soft_nms_1d(x1.data(), x2.data(), s.data(), 4, 0.1f, 0.5f, 0.001f, 2);
  CHECK(r.index == std::vector<int>{0, 3, 2});
  CHECK(r.score == std::vector<float>{0.9f, 0.5f, 0.5f});
  // Without the removal the original order decides: C before D.
  auto r2 = soft_nms_1d(x1.data(), x2.data(), s.data(), 4, 0.1f, 0.5f, 0.0f, 2);
  CHECK(r2.index == std::vector<int>{0, 2, 3, 1});
  // A score already below min_score goes at the first pass even without overlap.
  std::vector<float> y1 = {0, 50}, y2 = {10, 60}, ys = {0.9f, 0.0005f};
  CHECK(soft_nms_1d(y1.data(), y2.data(), ys.data(), 2, 0.1f, 0.5f, 0.001f, 2).index ==
        std::vector<int>{0});
  // ... unless it is the only / best one.
  CHECK(soft_nms_1d(y1.data() + 1, y2.data() + 1, ys.data() + 1, 1, 0.1f, 0.5f, 0.001f, 2)
            .index == std::vector<int>{0});
  CHECK(soft_nms_1d(y1.data(), y2.data(), ys.data(), 0, 0.1f, 0.5f, 0.001f, 2).index.empty());
  CHECK(contains(error_of([&] { soft_nms_1d(y1.data(), y2.data(), ys.data(), 2, 0.1f, 0.5f, 0.001f, 3); }),
                 "method must be 0 (hard), 1 (linear) or 2 (gaussian), got 3"));
}

TEST_CASE("nms: hard nms_1d") {
  std::vector<float> x1 = {0, 1, 20, 0}, x2 = {10, 10, 25, 9}, s = {0.9f, 0.95f, 0.5f, 0.6f};
  // Order B A D C; B suppresses A (iou 0.9) and D (iou 0.8).
  CHECK(nms_1d(x1.data(), x2.data(), s.data(), 4, 0.5f) == std::vector<int>{1, 2});
  CHECK(nms_1d(x1.data(), x2.data(), s.data(), 4, 0.95f) == std::vector<int>{1, 0, 3, 2});
  CHECK(nms_1d(x1.data(), x2.data(), s.data(), 0, 0.5f).empty());
  // Equal scores keep index order (torch.sort is stable below 17 elements).
  std::vector<float> t1 = {0, 100, 200}, t2 = {1, 101, 201}, ts = {0.5f, 0.5f, 0.5f};
  CHECK(nms_1d(t1.data(), t2.data(), ts.data(), 3, 0.5f) == std::vector<int>{0, 1, 2});
}

TEST_CASE("nms: batched_nms caps, class order, voting, validation") {
  // Two classes; class 1 has three disjoint segments, class 0 one.
  Segments in{{0, 10, 20, 30}, {5, 15, 25, 35}, {0.2f, 0.9f, 0.8f, 0.7f}, {0, 1, 1, 1}};
  NmsConfig cfg;  // soft, multiclass, cap 200
  auto out = batched_nms(in, cfg);
  CHECK(out.score == std::vector<float>{0.9f, 0.8f, 0.7f, 0.2f});
  CHECK(out.label == std::vector<int>{1, 1, 1, 0});
  cfg.max_seg_num = 2;  // per class: class 0 keeps 1, class 1 keeps 2; then top 2 overall
  out = batched_nms(in, cfg);
  CHECK(out.score == std::vector<float>{0.9f, 0.8f});
  CHECK(out.start == std::vector<float>{10, 20});

  // Hard NMS drops scores <= min_score before suppression.
  Segments low{{0, 50}, {10, 60}, {0.001f, 0.5f}, {3, 3}};
  NmsConfig hard;
  hard.method = "hard";
  out = batched_nms(low, hard);
  CHECK(out.score == std::vector<float>{0.5f});
  hard.min_score = 0;
  CHECK(batched_nms(low, hard).size() == 2);

  // Class-agnostic hard NMS + voting: A absorbs B (iou 9/11 >= 0.5).
  Segments v{{0, 1, 30}, {10, 11, 40}, {0.9f, 0.6f, 0.5f}, {0, 1, 0}};
  NmsConfig ag;
  ag.method = "hard";
  ag.multiclass = false;
  ag.iou_threshold = 0.5f;
  ag.voting_thresh = 0.5f;
  out = batched_nms(v, ag);
  REQUIRE(out.size() == 2);
  const double wa = 0.9 * 1.0, wb = 0.6 * (9.0 / 11.0);
  CHECK(out.start[0] == doctest::Approx((wa * 0 + wb * 1) / (wa + wb)).epsilon(1e-6));
  CHECK(out.end[0] == doctest::Approx((wa * 10 + wb * 11) / (wa + wb)).epsilon(1e-6));
  CHECK(out.score == std::vector<float>{0.9f, 0.5f});
  CHECK(out.label == std::vector<int>{0, 0});
  CHECK(out.start[1] == 30);
  CHECK(out.end[1] == 40);
  // OpenTAD's voting weighs by score only: wb = 0.6.
  ag.voting_iou_weight = false;
  out = batched_nms(v, ag);
  CHECK(out.start[0] == doctest::Approx((0.9 * 0 + 0.6 * 1) / 1.5).epsilon(1e-6));
  CHECK(out.end[0] == doctest::Approx((0.9 * 10 + 0.6 * 11) / 1.5).epsilon(1e-6));
  ag.voting_iou_weight = true;
  ag.voting_thresh = 0;  // no voting
  out = batched_nms(v, ag);
  CHECK(out.start[0] == 0);
  // Multiclass never votes.
  ag.multiclass = true;
  ag.voting_thresh = 0.5f;
  out = batched_nms(v, ag);
  CHECK(out.start == std::vector<float>{0, 1, 30});

  NmsConfig none;
  none.method = "none";
  out = batched_nms(v, none);
  CHECK(out.start == v.start);
  CHECK(out.score == v.score);
  CHECK(batched_nms(Segments{}, NmsConfig{}).size() == 0);

  NmsConfig bad;
  bad.method = "fancy";
  CHECK(contains(error_of([&] { batched_nms(v, bad); }), "unknown NMS method 'fancy'"));
  bad = NmsConfig{};
  bad.max_seg_num = 0;
  CHECK(contains(error_of([&] { batched_nms(v, bad); }), "max_seg_num must be >= 1"));
  Segments ragged = v;
  ragged.label.pop_back();
  CHECK(contains(error_of([&] { batched_nms(ragged, NmsConfig{}); }), "lengths differ"));
  Segments nan = v;
  nan.score[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK(contains(error_of([&] { batched_nms(nan, NmsConfig{}); }), "score[1] = nan is not finite"));
}

TEST_CASE("nms: cross-check against the reference code (torch port, dev/eval_reference.py)") {
  // Generated by `python3 dev/eval_reference.py nms-cases`: two random
  // problems of 60 segments / 3 classes (the second with only 4 distinct
  // scores, so ties are broken by the reference's sort and swap rules).
  const Segments problem0 = Segments{{22.38412094116211f, 36.0578498840332f, 3.5624003410339355f, 4.3983635902404785f, 12.797682762145996f, 30.143259048461914f, 22.697399139404297f, 42.72467803955078f, 20.100833892822266f, 28.425024032592773f, 16.850608825683594f, 18.885570526123047f, -1.2232270240783691f, 5.450123310089111f, 11.639111518859863f, 22.852554321289062f, 32.83485794067383f, 39.5549430847168f, 6.163483619689941f, 13.301836967468262f, 33.72835922241211f, 42.67695999145508f, 16.96445655822754f, 43.45408630371094f, 18.939659118652344f, 26.148042678833008f, 46.13374710083008f, 0.7448762655258179f, 6.934717655181885f, 17.809322357177734f, 12.955114364624023f, 44.091461181640625f, 5.971701145172119f, 11.180810928344727f, 7.268591403961182f, 0.8090206384658813f, 7.907516002655029f, 44.42599868774414f, 35.57558822631836f, 36.23054122924805f, 23.15366554260254f, 9.422184944152832f, 28.133655548095703f, 0.28515923023223877f, 6.614741325378418f, 10.388711929321289f, 40.153038024902344f, 39.065067291259766f, 12.24527359008789f, 22.122722625732422f, 39.85331344604492f, 47.213260650634766f, 34.084861755371094f, 25.266265869140625f, 38.98420715332031f, 9.794865608215332f, 28.28192710876465f, 3.799678087234497f, 5.7039947509765625f, 9.979649543762207f},
      {27.241539001464844f, 40.76433181762695f, 5.285342693328857f, 8.804685592651367f, 17.944599151611328f, 33.26460647583008f, 26.31194305419922f, 46.91979217529297f, 25.461963653564453f, 34.805606842041016f, 18.038738250732422f, 21.28615951538086f, 3.4558024406433105f, 11.435771942138672f, 17.749732971191406f, 28.99962615966797f, 36.93190383911133f, 40.44619369506836f, 9.939461708068848f, 14.925021171569824f, 34.432498931884766f, 48.84243392944336f, 22.745534896850586f, 43.96150207519531f, 23.001174926757812f, 29.142663955688477f, 49.14006423950195f, 2.87160587310791f, 11.588386535644531f, 19.532413482666016f, 17.554887771606445f, 49.10858154296875f, 11.619316101074219f, 15.802545547485352f, 7.7993855476379395f, 2.3629298210144043f, 12.905460357666016f, 48.55390548706055f, 36.73533248901367f, 38.00308609008789f, 29.47591209411621f, 14.943638801574707f, 30.325580596923828f, 3.030104637145996f, 7.256946563720703f, 13.834789276123047f, 41.39385986328125f, 40.25099563598633f, 15.579975128173828f, 26.073158264160156f, 42.12472152709961f, 52.4933967590332f, 35.759246826171875f, 31.48837661743164f, 44.54010772705078f, 10.76501750946045f, 31.0352725982666f, 7.435046195983887f, 9.641697883605957f, 14.19117259979248f},
      {0.4847141206264496f, 0.28084710240364075f, 0.06555423885583878f, 0.5425714254379272f, 0.0004151630273554474f, 0.04147196188569069f, 0.14050133526325226f, 0.06576317548751831f, 0.10567916184663773f, 0.00813408475369215f, 0.15495435893535614f, 0.3683011829853058f, 0.030369026586413383f, 0.22499874234199524f, 0.7360360026359558f, 0.2012418508529663f, 0.2640891969203949f, 0.20872612297534943f, 0.36143022775650024f, 0.6689926981925964f, 0.9479419589042664f, 0.668351948261261f, 0.9500532746315002f, 0.21514678001403809f, 0.0025846287608146667f, 0.06914868950843811f, 0.7063605785369873f, 0.2467692643404007f, 0.06324059516191483f, 0.01365254819393158f, 0.0010287398472428322f, 0.006083359941840172f, 0.15886731445789337f, 0.5993902683258057f, 0.5933937430381775f, 0.00031627275166101754f, 0.6591670513153076f, 0.01182553544640541f, 0.1554684340953827f, 0.08836569637060165f, 0.1629675179719925f, 0.16146625578403473f, 0.002634258009493351f, 0.0046623023226857185f, 0.17788171768188477f, 0.25650790333747864f, 0.07445397228002548f, 0.4738251864910126f, 0.0024970814120024443f, 0.21739500761032104f, 0.8830543756484985f, 0.08764797449111938f, 0.9053552150726318f, 0.463865727186203f, 0.002378467470407486f, 0.6664251685142517f, 0.1956317275762558f, 0.07661634683609009f, 0.8096879720687866f, 0.0092068612575531f},
      {0, 0, 0, 0, 0, 2, 2, 2, 2, 0, 2, 2, 0, 0, 2, 1, 2, 1, 0, 2, 1, 2, 0, 1, 0, 2, 2, 2, 2, 0, 2, 2, 1, 0, 0, 0, 2, 0, 0, 2, 0, 2, 2, 0, 1, 1, 2, 0, 1, 1, 0, 0, 1, 1, 0, 0, 0, 1, 2, 1}};
  check_batched(problem0, cfg_of("soft", true, 0.1f, 0.5f, 0.75f, 200),
      Segments{{16.96445655822754f, 33.72835922241211f, 39.85331344604492f, 34.084861755371094f, 5.7039947509765625f, 11.639111518859863f, 46.13374710083008f, 9.794865608215332f, 11.180810928344727f, 7.268591403961182f, 13.301836967468262f, 7.907516002655029f, 4.3983635902404785f, 22.38412094116211f, 42.67695999145508f, 25.266265869140625f, 39.065067291259766f, 18.885570526123047f, 32.83485794067383f, 10.388711929321289f, 0.7448762655258179f, 36.0578498840332f, 6.163483619689941f, 43.45408630371094f, 22.122722625732422f, 39.5549430847168f, 28.28192710876465f, 6.614741325378418f, 35.57558822631836f, 16.850608825683594f, 5.971701145172119f, 22.697399139404297f, 22.852554321289062f, 47.213260650634766f, 36.23054122924805f, 23.15366554260254f, 40.153038024902344f, 26.148042678833008f, 3.799678087234497f, 20.100833892822266f, 3.5624003410339355f, 9.422184944152832f, 5.450123310089111f, 30.143259048461914f, -1.2232270240783691f, 42.72467803955078f, 6.934717655181885f, 17.809322357177734f, 44.42599868774414f, 28.425024032592773f, 0.28515923023223877f, 28.133655548095703f, 9.979649543762207f, 12.24527359008789f, 38.98420715332031f, 18.939659118652344f},
      {22.745534896850586f, 34.432498931884766f, 42.12472152709961f, 35.759246826171875f, 9.641697883605957f, 17.749732971191406f, 49.14006423950195f, 10.76501750946045f, 15.802545547485352f, 7.7993855476379395f, 14.925021171569824f, 12.905460357666016f, 8.804685592651367f, 27.241539001464844f, 48.84243392944336f, 31.48837661743164f, 40.25099563598633f, 21.28615951538086f, 36.93190383911133f, 13.834789276123047f, 2.87160587310791f, 40.76433181762695f, 9.939461708068848f, 43.96150207519531f, 26.073158264160156f, 40.44619369506836f, 31.0352725982666f, 7.256946563720703f, 36.73533248901367f, 18.038738250732422f, 11.619316101074219f, 26.31194305419922f, 28.99962615966797f, 52.4933967590332f, 38.00308609008789f, 29.47591209411621f, 41.39385986328125f, 29.142663955688477f, 7.435046195983887f, 25.461963653564453f, 5.285342693328857f, 14.943638801574707f, 11.435771942138672f, 33.26460647583008f, 3.4558024406433105f, 46.91979217529297f, 11.588386535644531f, 19.532413482666016f, 48.55390548706055f, 34.805606842041016f, 3.030104637145996f, 30.325580596923828f, 14.19117259979248f, 15.579975128173828f, 44.54010772705078f, 23.001174926757812f},
      {0.9500532746315002f, 0.9479419589042664f, 0.8830543756484985f, 0.8538245558738708f, 0.8096879720687866f, 0.7360360026359558f, 0.7063605785369873f, 0.6664251685142517f, 0.5993902683258057f, 0.5933937430381775f, 0.5809421539306641f, 0.567868173122406f, 0.5270511507987976f, 0.4835166931152344f, 0.4703727662563324f, 0.463865727186203f, 0.45808321237564087f, 0.3683011829853058f, 0.2640891969203949f, 0.25650790333747864f, 0.2467692643404007f, 0.2364477664232254f, 0.22011949121952057f, 0.21514678001403809f, 0.21419158577919006f, 0.20872612297534943f, 0.1956317275762558f, 0.17788171768188477f, 0.15025694668293f, 0.14895617961883545f, 0.14741051197052002f, 0.14050133526325226f, 0.08930628001689911f, 0.08764797449111938f, 0.08517017215490341f, 0.08008794486522675f, 0.07445397228002548f, 0.06905931979417801f, 0.0671115443110466f, 0.06663350760936737f, 0.061906345188617706f, 0.06065674126148224f, 0.060115113854408264f, 0.04114089906215668f, 0.030369026586413383f, 0.025281986221671104f, 0.0167312603443861f, 0.011430100537836552f, 0.011190097779035568f, 0.0058101387694478035f, 0.0023424492683261633f, 0.00233824597671628f, 0.0022284274455159903f, 0.0016260574338957667f, 0.00142287602648139f, 0.001124702044762671f},
      {0, 1, 0, 1, 2, 2, 2, 0, 0, 0, 2, 2, 0, 0, 2, 1, 0, 2, 2, 1, 2, 0, 0, 1, 1, 1, 0, 1, 0, 2, 1, 2, 1, 0, 2, 0, 2, 2, 1, 2, 0, 2, 0, 2, 0, 2, 2, 0, 0, 0, 0, 2, 1, 1, 0, 0}});
  check_batched(problem0, cfg_of("soft", true, 0.1f, 0.5f, 0.75f, 7),
      Segments{{16.96445655822754f, 33.72835922241211f, 39.85331344604492f, 34.084861755371094f, 5.7039947509765625f, 11.639111518859863f, 46.13374710083008f},
      {22.745534896850586f, 34.432498931884766f, 42.12472152709961f, 35.759246826171875f, 9.641697883605957f, 17.749732971191406f, 49.14006423950195f},
      {0.9500532746315002f, 0.9479419589042664f, 0.8830543756484985f, 0.8538245558738708f, 0.8096879720687866f, 0.7360360026359558f, 0.7063605785369873f},
      {0, 1, 0, 1, 2, 2, 2}});
  check_batched(problem0, cfg_of("hard", true, 0.3f, 0.5f, 0.75f, 200),
      Segments{{16.96445655822754f, 33.72835922241211f, 34.084861755371094f, 39.85331344604492f, 5.7039947509765625f, 11.639111518859863f, 46.13374710083008f, 13.301836967468262f, 9.794865608215332f, 7.907516002655029f, 11.180810928344727f, 7.268591403961182f, 4.3983635902404785f, 22.38412094116211f, 39.065067291259766f, 25.266265869140625f, 18.885570526123047f, 36.0578498840332f, 32.83485794067383f, 10.388711929321289f, 0.7448762655258179f, 22.122722625732422f, 43.45408630371094f, 39.5549430847168f, 28.28192710876465f, 6.614741325378418f, 5.971701145172119f, 35.57558822631836f, 16.850608825683594f, 22.697399139404297f, 36.23054122924805f, 47.213260650634766f, 3.799678087234497f, 40.153038024902344f, 26.148042678833008f, 42.72467803955078f, 3.5624003410339355f, 30.143259048461914f, -1.2232270240783691f, 17.809322357177734f, 44.42599868774414f, 28.133655548095703f},
      {22.745534896850586f, 34.432498931884766f, 35.759246826171875f, 42.12472152709961f, 9.641697883605957f, 17.749732971191406f, 49.14006423950195f, 14.925021171569824f, 10.76501750946045f, 12.905460357666016f, 15.802545547485352f, 7.7993855476379395f, 8.804685592651367f, 27.241539001464844f, 40.25099563598633f, 31.48837661743164f, 21.28615951538086f, 40.76433181762695f, 36.93190383911133f, 13.834789276123047f, 2.87160587310791f, 26.073158264160156f, 43.96150207519531f, 40.44619369506836f, 31.0352725982666f, 7.256946563720703f, 11.619316101074219f, 36.73533248901367f, 18.038738250732422f, 26.31194305419922f, 38.00308609008789f, 52.4933967590332f, 7.435046195983887f, 41.39385986328125f, 29.142663955688477f, 46.91979217529297f, 5.285342693328857f, 33.26460647583008f, 3.4558024406433105f, 19.532413482666016f, 48.55390548706055f, 30.325580596923828f},
      {0.9500532746315002f, 0.9479419589042664f, 0.9053552150726318f, 0.8830543756484985f, 0.8096879720687866f, 0.7360360026359558f, 0.7063605785369873f, 0.6689926981925964f, 0.6664251685142517f, 0.6591670513153076f, 0.5993902683258057f, 0.5933937430381775f, 0.5425714254379272f, 0.4847141206264496f, 0.4738251864910126f, 0.463865727186203f, 0.3683011829853058f, 0.28084710240364075f, 0.2640891969203949f, 0.25650790333747864f, 0.2467692643404007f, 0.21739500761032104f, 0.21514678001403809f, 0.20872612297534943f, 0.1956317275762558f, 0.17788171768188477f, 0.15886731445789337f, 0.1554684340953827f, 0.15495435893535614f, 0.14050133526325226f, 0.08836569637060165f, 0.08764797449111938f, 0.07661634683609009f, 0.07445397228002548f, 0.06914868950843811f, 0.06576317548751831f, 0.06555423885583878f, 0.04147196188569069f, 0.030369026586413383f, 0.01365254819393158f, 0.01182553544640541f, 0.002634258009493351f},
      {0, 1, 1, 0, 2, 2, 2, 2, 0, 2, 0, 0, 0, 0, 0, 1, 2, 0, 2, 1, 2, 1, 1, 1, 0, 1, 1, 0, 2, 2, 2, 0, 1, 2, 2, 2, 0, 2, 0, 0, 0, 2}});
  check_batched(problem0, cfg_of("soft", false, 0.1f, 0.75f, 0.75f, 20),
      Segments{{16.96445655822754f, 33.72835922241211f, 39.85331344604492f, 34.084861755371094f, 5.827249526977539f, 11.641006469726562f, 46.13374710083008f, 9.794865608215332f, 13.301836967468262f, 7.268591403961182f, 7.907516002655029f, 42.67695999145508f, 22.38412094116211f, 39.065067291259766f, 25.266265869140625f, 4.3983635902404785f, 18.885570526123047f, 11.180810928344727f, 36.0578498840332f, 0.7382438778877258f},
      {22.745534896850586f, 34.432498931884766f, 42.12472152709961f, 35.759246826171875f, 9.72157096862793f, 17.749614715576172f, 49.14006423950195f, 10.76501750946045f, 14.925021171569824f, 7.7993855476379395f, 12.905460357666016f, 48.84243392944336f, 27.241539001464844f, 40.25099563598633f, 31.48837661743164f, 8.804685592651367f, 21.28615951538086f, 15.802545547485352f, 40.76433181762695f, 2.8738925457000732f},
      {0.9500532746315002f, 0.9479419589042664f, 0.8830543756484985f, 0.870667040348053f, 0.8096879720687866f, 0.7311462759971619f, 0.7063605785369873f, 0.6664251685142517f, 0.6089230179786682f, 0.579190194606781f, 0.5675601959228516f, 0.528806209564209f, 0.4839155077934265f, 0.4632715582847595f, 0.4356469213962555f, 0.32893794775009155f, 0.29265421628952026f, 0.27927857637405396f, 0.2504071891307831f, 0.2467692643404007f},
      {0, 1, 0, 1, 2, 2, 2, 0, 2, 0, 2, 2, 0, 0, 1, 0, 2, 0, 0, 2}});
  check_batched(problem0, cfg_of("hard", false, 0.3f, 0.5f, 0.6f, 100),
      Segments{{16.967838287353516f, 33.72835922241211f, 34.084861755371094f, 39.85331344604492f, 5.796517372131348f, 11.484496116638184f, 46.13374710083008f, 13.301836967468262f, 9.794865608215332f, 7.85319185256958f, 7.268591403961182f, 22.44590950012207f, 39.065067291259766f, 25.266265869140625f, 36.0578498840332f, 0.7383092045783997f, 43.45408630371094f, 6.614741325378418f, 35.57558822631836f, 16.850608825683594f, 4.285332679748535f, 42.68299102783203f, 30.143259048461914f, 17.809322357177734f},
      {22.745973587036133f, 34.432498931884766f, 35.759246826171875f, 42.12472152709961f, 10.047332763671875f, 17.087425231933594f, 49.14006423950195f, 14.925021171569824f, 10.76501750946045f, 12.831910133361816f, 7.7993855476379395f, 27.189781188964844f, 40.25099563598633f, 31.48837661743164f, 40.76433181762695f, 2.8734214305877686f, 43.96150207519531f, 7.256946563720703f, 36.73533248901367f, 18.038738250732422f, 8.546099662780762f, 48.599525451660156f, 33.26460647583008f, 19.532413482666016f},
      {0.9500532746315002f, 0.9479419589042664f, 0.9053552150726318f, 0.8830543756484985f, 0.8096879720687866f, 0.7360360026359558f, 0.7063605785369873f, 0.6689926981925964f, 0.6664251685142517f, 0.6591670513153076f, 0.5933937430381775f, 0.4847141206264496f, 0.4738251864910126f, 0.463865727186203f, 0.28084710240364075f, 0.2467692643404007f, 0.21514678001403809f, 0.17788171768188477f, 0.1554684340953827f, 0.15495435893535614f, 0.07661634683609009f, 0.06576317548751831f, 0.04147196188569069f, 0.01365254819393158f},
      {0, 1, 1, 0, 2, 2, 2, 2, 0, 2, 0, 0, 0, 1, 0, 2, 1, 1, 0, 2, 1, 2, 2, 0}});
  check_soft(problem0, 0.3f, 0.5f, 0.05f, 0, {22, 20, 52, 50, 58, 14, 26, 19, 55, 36, 34, 0, 47, 53, 1, 27, 23, 44, 38, 10, 57, 7},
      {0.9500532746315002f, 0.9479419589042664f, 0.9053552150726318f, 0.8830543756484985f, 0.8096879720687866f, 0.7360360026359558f, 0.7063605785369873f, 0.6689926981925964f, 0.6664251685142517f, 0.6591670513153076f, 0.5933937430381775f, 0.4847141206264496f, 0.4738251864910126f, 0.463865727186203f, 0.28084710240364075f, 0.2467692643404007f, 0.21514678001403809f, 0.17788171768188477f, 0.1554684340953827f, 0.15495435893535614f, 0.07661634683609009f, 0.06576317548751831f});
  check_soft(problem0, 0.3f, 0.5f, 0.05f, 1, {22, 20, 52, 50, 58, 14, 26, 19, 55, 36, 34, 0, 47, 53, 21, 1, 27, 3, 11, 23, 44, 16, 38, 10, 45, 56, 17, 33, 2, 51, 49, 39},
      {0.9500532746315002f, 0.9479419589042664f, 0.9053552150726318f, 0.8830543756484985f, 0.8096879720687866f, 0.7360360026359558f, 0.7063605785369873f, 0.6689926981925964f, 0.6664251685142517f, 0.6591670513153076f, 0.5933937430381775f, 0.4847141206264496f, 0.4738251864910126f, 0.463865727186203f, 0.38824576139450073f, 0.28084710240364075f, 0.2467692643404007f, 0.2217172384262085f, 0.21536439657211304f, 0.21514678001403809f, 0.17788171768188477f, 0.15616098046302795f, 0.1554684340953827f, 0.15495435893535614f, 0.1475934535264969f, 0.10906277596950531f, 0.10353361815214157f, 0.07259504497051239f, 0.06555423885583878f, 0.06109299138188362f, 0.060722462832927704f, 0.05508561432361603f});
  check_soft(problem0, 0.3f, 0.5f, 0.05f, 2, {22, 20, 50, 52, 58, 14, 26, 55, 19, 34, 36, 0, 21, 47, 53, 11, 3, 27, 1, 23, 33, 16, 44, 10, 56, 38, 17, 45, 49, 51, 2, 39},
      {0.9500532746315002f, 0.9479419589042664f, 0.8830543756484985f, 0.8538245558738708f, 0.8096879720687866f, 0.7287135720252991f, 0.7063605785369873f, 0.6664251685142517f, 0.5809421539306641f, 0.5722163915634155f, 0.526647686958313f, 0.4835166931152344f, 0.4703727662563324f, 0.45808321237564087f, 0.4221879541873932f, 0.2608739137649536f, 0.25611943006515503f, 0.2467692643404007f, 0.2364477664232254f, 0.2122519612312317f, 0.19063451886177063f, 0.17396792769432068f, 0.1616506278514862f, 0.1393837183713913f, 0.13223811984062195f, 0.12678447365760803f, 0.10509533435106277f, 0.08850344270467758f, 0.07509522885084152f, 0.06903786212205887f, 0.061906345188617706f, 0.0588202178478241f});
  CHECK(nms_1d(problem0.start.data(), problem0.end.data(), problem0.score.data(), 60, 0.3f) == std::vector<int>{22, 20, 52, 50, 58, 14, 26, 19, 55, 36, 34, 0, 47, 53, 1, 27, 23, 44, 38, 10, 57, 7, 5, 29});
  const Segments problem1 = Segments{{32.2285041809082f, 41.736236572265625f, 15.981287956237793f, 22.944414138793945f, 35.826019287109375f, 0.18643027544021606f, 41.07476806640625f, 1.9380457401275635f, 23.000816345214844f, 19.188398361206055f, 11.312856674194336f, 26.785507202148438f, 43.402008056640625f, 16.48932647705078f, 7.838276386260986f, 13.005084991455078f, -0.7454814314842224f, 34.52005386352539f, 10.62315845489502f, 6.448925971984863f, 8.722167015075684f, 37.43660354614258f, 37.66856384277344f, 42.32016372680664f, 31.279373168945312f, 13.549335479736328f, 15.382169723510742f, 30.43474578857422f, 43.10034942626953f, 30.777023315429688f, 12.664398193359375f, 12.787946701049805f, -1.883140206336975f, 27.69901466369629f, 10.257288932800293f, 0.37374067306518555f, 44.039161682128906f, 5.515297889709473f, 19.094369888305664f, 29.250207901000977f, 24.39034652709961f, 6.954369068145752f, 1.8103835582733154f, 42.336490631103516f, 28.223634719848633f, 42.642086029052734f, 14.144246101379395f, 29.796180725097656f, 18.47325897216797f, 21.70787239074707f, 8.549738883972168f, 30.532989501953125f, 31.42405891418457f, 22.15031623840332f, 17.361011505126953f, 7.201052188873291f, 41.048362731933594f, 3.9080405235290527f, 34.539344787597656f, 14.50487995147705f},
      {34.28110122680664f, 45.775169372558594f, 17.922916412353516f, 27.135629653930664f, 39.9151611328125f, 1.4589619636535645f, 45.07426452636719f, 6.71583366394043f, 27.688308715820312f, 22.310762405395508f, 12.353494644165039f, 29.823043823242188f, 47.943931579589844f, 18.894695281982422f, 12.477020263671875f, 18.502973556518555f, 1.1880638599395752f, 38.04964065551758f, 15.363656044006348f, 10.184060096740723f, 12.472762107849121f, 41.31119918823242f, 38.81011962890625f, 46.05592727661133f, 36.856781005859375f, 19.75267791748047f, 20.645421981811523f, 34.336753845214844f, 48.00138854980469f, 32.81758499145508f, 13.678333282470703f, 13.708183288574219f, 4.609689235687256f, 33.1033821105957f, 11.683587074279785f, 5.047468662261963f, 49.804664611816406f, 12.014142036437988f, 25.217554092407227f, 35.07447052001953f, 27.20256805419922f, 9.401544570922852f, 7.773530006408691f, 47.51762771606445f, 29.918298721313477f, 48.83913803100586f, 19.093721389770508f, 34.93158721923828f, 20.09292984008789f, 26.068571090698242f, 10.998051643371582f, 36.37705993652344f, 34.384239196777344f, 26.818254470825195f, 21.393878936767578f, 11.977457046508789f, 43.52887725830078f, 8.87075424194336f, 35.943931579589844f, 18.682445526123047f},
      {0.20000000298023224f, 0.800000011920929f, 0.20000000298023224f, 0.800000011920929f, 0.20000000298023224f, 0.20000000298023224f, 0.20000000298023224f, 0.20000000298023224f, 0.4000000059604645f, 0.800000011920929f, 0.800000011920929f, 0.20000000298023224f, 0.800000011920929f, 0.6000000238418579f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.20000000298023224f, 0.4000000059604645f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.20000000298023224f, 0.20000000298023224f, 0.4000000059604645f, 0.4000000059604645f, 0.6000000238418579f, 0.800000011920929f, 0.800000011920929f, 0.4000000059604645f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.6000000238418579f, 0.6000000238418579f, 0.4000000059604645f, 0.6000000238418579f, 0.800000011920929f, 0.6000000238418579f, 0.20000000298023224f, 0.800000011920929f, 0.800000011920929f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.6000000238418579f, 0.20000000298023224f, 0.800000011920929f, 0.4000000059604645f, 0.20000000298023224f, 0.800000011920929f, 0.4000000059604645f},
      {2, 1, 1, 2, 0, 2, 2, 2, 0, 1, 1, 1, 1, 0, 2, 1, 0, 2, 2, 2, 1, 2, 0, 2, 0, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 0, 2, 1, 1, 2, 2, 1, 2, 0, 0, 1, 2, 2, 1, 2, 2, 0, 0, 1, 2, 1, 0, 2, 0, 1}};
  check_batched(problem1, cfg_of("soft", true, 0.1f, 0.5f, 0.75f, 200),
      Segments{{28.223634719848633f, 6.954369068145752f, -1.883140206336975f, 12.787946701049805f, 11.312856674194336f, 19.188398361206055f, 41.736236572265625f, 0.37374067306518555f, 22.944414138793945f, 44.039161682128906f, 34.539344787597656f, 10.257288932800293f, 7.838276386260986f, 12.664398193359375f, 1.8103835582733154f, 16.48932647705078f, 22.15031623840332f, 43.402008056640625f, 42.32016372680664f, 10.62315845489502f, 7.201052188873291f, 34.52005386352539f, 30.777023315429688f, 14.50487995147705f, 37.66856384277344f, 23.000816345214844f, 31.42405891418457f, 41.048362731933594f, 29.796180725097656f, -0.7454814314842224f, 14.144246101379395f, 18.47325897216797f, 21.70787239074707f, 27.69901466369629f, 6.448925971984863f, 19.094369888305664f, 24.39034652709961f, 30.532989501953125f, 0.18643027544021606f, 37.43660354614258f, 42.336490631103516f, 42.642086029052734f, 17.361011505126953f, 8.549738883972168f, 35.826019287109375f, 26.785507202148438f, 13.549335479736328f, 32.2285041809082f, 5.515297889709473f, 15.981287956237793f, 41.07476806640625f, 30.43474578857422f, 3.9080405235290527f, 8.722167015075684f, 29.250207901000977f, 15.382169723510742f, 31.279373168945312f, 1.9380457401275635f, 13.005084991455078f, 43.10034942626953f},
      {29.918298721313477f, 9.401544570922852f, 4.609689235687256f, 13.708183288574219f, 12.353494644165039f, 22.310762405395508f, 45.775169372558594f, 5.047468662261963f, 27.135629653930664f, 49.804664611816406f, 35.943931579589844f, 11.683587074279785f, 12.477020263671875f, 13.678333282470703f, 7.773530006408691f, 18.894695281982422f, 26.818254470825195f, 47.943931579589844f, 46.05592727661133f, 15.363656044006348f, 11.977457046508789f, 38.04964065551758f, 32.81758499145508f, 18.682445526123047f, 38.81011962890625f, 27.688308715820312f, 34.384239196777344f, 43.52887725830078f, 34.93158721923828f, 1.1880638599395752f, 19.093721389770508f, 20.09292984008789f, 26.068571090698242f, 33.1033821105957f, 10.184060096740723f, 25.217554092407227f, 27.20256805419922f, 36.37705993652344f, 1.4589619636535645f, 41.31119918823242f, 47.51762771606445f, 48.83913803100586f, 21.393878936767578f, 10.998051643371582f, 39.9151611328125f, 29.823043823242188f, 19.75267791748047f, 34.28110122680664f, 12.014142036437988f, 17.922916412353516f, 45.07426452636719f, 34.336753845214844f, 8.87075424194336f, 12.472762107849121f, 35.07447052001953f, 20.645421981811523f, 36.856781005859375f, 6.71583366394043f, 18.502973556518555f, 48.00138854980469f},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.7514874339103699f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.5994696021080017f, 0.597237765789032f, 0.5189012289047241f, 0.4849565327167511f, 0.4410580098628998f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.39801597595214844f, 0.38450005650520325f, 0.38375964760780334f, 0.3569319546222687f, 0.3093041181564331f, 0.30076727271080017f, 0.28105658292770386f, 0.24904808402061462f, 0.21681684255599976f, 0.21332038938999176f, 0.20000000298023224f, 0.1967669576406479f, 0.18686246871948242f, 0.18514545261859894f, 0.17840729653835297f, 0.17593887448310852f, 0.1697942167520523f, 0.15952949225902557f, 0.14726997911930084f, 0.14530067145824432f, 0.13640592992305756f, 0.10673526674509048f, 0.10530690848827362f, 0.08377117663621902f, 0.07887569069862366f, 0.07426046580076218f, 0.06538159400224686f, 0.057368118315935135f, 0.05314989760518074f, 0.03981554135680199f, 0.038166895508766174f, 0.014272498898208141f},
      {0, 1, 1, 1, 1, 1, 1, 0, 2, 2, 0, 1, 2, 2, 2, 0, 1, 1, 2, 2, 1, 2, 1, 1, 0, 0, 0, 0, 2, 0, 2, 1, 2, 1, 2, 1, 2, 0, 2, 2, 0, 1, 2, 2, 0, 1, 1, 2, 1, 1, 2, 1, 2, 1, 2, 2, 0, 2, 1, 1}});
  check_batched(problem1, cfg_of("soft", true, 0.1f, 0.5f, 0.75f, 7),
      Segments{{28.223634719848633f, 44.039161682128906f, 22.944414138793945f, 6.954369068145752f, -1.883140206336975f, 12.787946701049805f, 11.312856674194336f},
      {29.918298721313477f, 49.804664611816406f, 27.135629653930664f, 9.401544570922852f, 4.609689235687256f, 13.708183288574219f, 12.353494644165039f},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f},
      {0, 2, 2, 1, 1, 1, 1}});
  check_batched(problem1, cfg_of("hard", true, 0.3f, 0.5f, 0.75f, 200),
      Segments{{28.223634719848633f, 44.039161682128906f, 22.944414138793945f, 10.257288932800293f, -1.883140206336975f, 12.787946701049805f, 7.201052188873291f, 11.312856674194336f, 19.188398361206055f, 41.736236572265625f, 0.37374067306518555f, 34.539344787597656f, 7.838276386260986f, 10.62315845489502f, 42.32016372680664f, 16.48932647705078f, 22.15031623840332f, 12.664398193359375f, 1.8103835582733154f, 27.69901466369629f, 14.144246101379395f, 29.796180725097656f, 34.52005386352539f, 18.47325897216797f, 14.50487995147705f, 23.000816345214844f, -0.7454814314842224f, 37.66856384277344f, 31.279373168945312f, 41.048362731933594f, 37.43660354614258f, 0.18643027544021606f, 42.336490631103516f, 17.361011505126953f, 35.826019287109375f},
      {29.918298721313477f, 49.804664611816406f, 27.135629653930664f, 11.683587074279785f, 4.609689235687256f, 13.708183288574219f, 11.977457046508789f, 12.353494644165039f, 22.310762405395508f, 45.775169372558594f, 5.047468662261963f, 35.943931579589844f, 12.477020263671875f, 15.363656044006348f, 46.05592727661133f, 18.894695281982422f, 26.818254470825195f, 13.678333282470703f, 7.773530006408691f, 33.1033821105957f, 19.093721389770508f, 34.93158721923828f, 38.04964065551758f, 20.09292984008789f, 18.682445526123047f, 27.688308715820312f, 1.1880638599395752f, 38.81011962890625f, 36.856781005859375f, 43.52887725830078f, 41.31119918823242f, 1.4589619636535645f, 47.51762771606445f, 21.393878936767578f, 39.9151611328125f},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.20000000298023224f, 0.20000000298023224f, 0.20000000298023224f, 0.20000000298023224f, 0.20000000298023224f},
      {0, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0, 0, 2, 2, 2, 0, 1, 2, 2, 1, 2, 2, 2, 1, 1, 0, 0, 0, 0, 0, 2, 2, 0, 2, 0}});
  check_batched(problem1, cfg_of("soft", false, 0.1f, 0.75f, 0.75f, 20),
      Segments{{22.727327346801758f, 19.188398361206055f, 11.312856674194336f, 12.739742279052734f, -1.883140206336975f, 6.954369068145752f, 28.223634719848633f, 34.539344787597656f, 41.95518112182617f, 10.257288932800293f, 44.039161682128906f, 16.48932647705078f, 7.437102794647217f, 1.837292194366455f, 10.62315845489502f, 43.30649185180664f, 37.66856384277344f, 30.777023315429688f, 21.899883270263672f, 0.37374067306518555f},
      {27.163320541381836f, 22.310762405395508f, 12.353494644165039f, 13.69653606414795f, 4.609689235687256f, 9.401544570922852f, 29.918298721313477f, 35.943931579589844f, 45.88043975830078f, 11.683587074279785f, 49.804664611816406f, 18.894695281982422f, 12.16251277923584f, 7.550589084625244f, 15.363656044006348f, 47.962127685546875f, 38.81011962890625f, 32.81758499145508f, 26.393917083740234f, 5.047468662261963f},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.7673222422599792f, 0.7521128058433533f, 0.6000000238418579f, 0.5378904342651367f, 0.5259117484092712f, 0.48698222637176514f, 0.4009474813938141f, 0.4000000059604645f, 0.4000000059604645f, 0.38182228803634644f, 0.37667274475097656f},
      {2, 1, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0, 1, 2, 2, 1, 0, 1, 2, 0}});
  check_batched(problem1, cfg_of("hard", false, 0.3f, 0.5f, 0.6f, 100),
      Segments{{43.458106994628906f, 41.86723709106445f, 34.539344787597656f, 23.048702239990234f, 12.739742279052734f, 19.188398361206055f, 11.312856674194336f, 6.829648971557617f, 10.257288932800293f, -0.4823899269104004f, 28.223634719848633f, 16.48932647705078f, 10.62315845489502f, 37.66856384277344f, 31.37398338317871f, 8.549738883972168f, 18.47325897216797f, -0.7454814314842224f, 37.43660354614258f},
      {49.023162841796875f, 45.79991149902344f, 35.943931579589844f, 27.170902252197266f, 13.69653606414795f, 22.310762405395508f, 12.353494644165039f, 9.594634056091309f, 11.683587074279785f, 4.881400108337402f, 29.918298721313477f, 18.894695281982422f, 15.363656044006348f, 38.81011962890625f, 34.353187561035156f, 10.998051643371582f, 20.09292984008789f, 1.1880638599395752f, 41.31119918823242f},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.6000000238418579f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.20000000298023224f},
      {2, 1, 0, 2, 1, 1, 1, 1, 1, 0, 0, 0, 2, 0, 0, 2, 1, 0, 2}});
  check_soft(problem1, 0.3f, 0.5f, 0.05f, 0, {1, 3, 9, 10, 58, 55, 44, 31, 32, 36, 34, 13, 18, 42, 48, 16, 52, 22, 4},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.20000000298023224f});
  check_soft(problem1, 0.3f, 0.5f, 0.05f, 1, {1, 3, 9, 10, 31, 32, 34, 36, 41, 44, 58, 13, 18, 42, 55, 16, 22, 24, 29, 48, 38, 15, 56, 40, 4, 50, 12, 35, 33, 0, 21, 5, 17, 30, 49, 2, 11, 23, 37},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.6000000238418579f, 0.6000000238418579f, 0.6000000238418579f, 0.4495396614074707f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.4000000059604645f, 0.29404518008232117f, 0.263240784406662f, 0.24830012023448944f, 0.21317297220230103f, 0.20000000298023224f, 0.1949661523103714f, 0.1927902102470398f, 0.17497622966766357f, 0.1708993911743164f, 0.126396045088768f, 0.1096271499991417f, 0.1091260239481926f, 0.09270495921373367f, 0.08817916363477707f, 0.08786284178495407f, 0.06571050733327866f, 0.06498165428638458f, 0.06342557072639465f, 0.06179216876626015f});
  check_soft(problem1, 0.3f, 0.5f, 0.05f, 2, {1, 3, 9, 10, 31, 32, 41, 44, 58, 34, 36, 13, 42, 18, 55, 22, 29, 48, 16, 24, 49, 56, 12, 15, 35, 33, 17, 40, 50, 38, 21, 52, 30, 5, 2, 11, 37, 23, 4, 25, 39, 57, 54},
      {0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.800000011920929f, 0.7514874339103699f, 0.7292551398277283f, 0.6000000238418579f, 0.49550434947013855f, 0.4635583460330963f, 0.41479313373565674f, 0.4000000059604645f, 0.4000000059604645f, 0.3482755422592163f, 0.3349892795085907f, 0.3100084066390991f, 0.3045904040336609f, 0.3000064492225647f, 0.28365615010261536f, 0.25677168369293213f, 0.24844922125339508f, 0.22822651267051697f, 0.22603969275951385f, 0.21681684255599976f, 0.19237197935581207f, 0.17172695696353912f, 0.16479280591011047f, 0.1489190310239792f, 0.12440025806427002f, 0.11093105375766754f, 0.09602580219507217f, 0.09313028305768967f, 0.08947207033634186f, 0.08229757100343704f, 0.07864049822092056f, 0.06976331770420074f, 0.06257206201553345f, 0.053438663482666016f, 0.052837762981653214f});
  CHECK(nms_1d(problem1.start.data(), problem1.end.data(), problem1.score.data(), 60, 0.3f) == std::vector<int>{44, 36, 35, 34, 41, 10, 9, 31, 3, 58, 1, 13, 18, 22, 52, 50, 48, 16, 21});
}

// ---------------------------------------------------------------- paired comparison over seeds

TEST_CASE("paired_difference: mean, sample std, standard error and positive count of a - b") {
  using flowless::eval::paired_difference;
  // d = {2, -1, 5}: mean 2, sample variance ((0)^2 + 3^2 + 3^2) / 2 = 9, std 3, SE 3 / sqrt(3)
  auto d = paired_difference({52.0, 49.0, 56.0}, {50.0, 50.0, 51.0});
  CHECK(d.n == 3);
  CHECK(d.positive == 2);
  CHECK(d.mean == doctest::Approx(2.0).epsilon(1e-12));
  CHECK(d.std == doctest::Approx(3.0).epsilon(1e-12));
  CHECK(d.std_error == doctest::Approx(std::sqrt(3.0)).epsilon(1e-12));
  // The sign follows the order of the arguments.
  auto r = paired_difference({50.0, 50.0, 51.0}, {52.0, 49.0, 56.0});
  CHECK(r.mean == doctest::Approx(-2.0).epsilon(1e-12));
  CHECK(r.positive == 1);
  CHECK(r.std == doctest::Approx(3.0).epsilon(1e-12));
  // One pair: no spread to estimate; a tie is not positive.
  auto one = paired_difference({1.5}, {1.5});
  CHECK(one.n == 1);
  CHECK(one.mean == 0.0);
  CHECK(one.std == 0.0);
  CHECK(one.std_error == 0.0);
  CHECK(one.positive == 0);
}

TEST_CASE("paired_difference: unequal sizes, no pairs and non-finite values are errors") {
  using flowless::eval::paired_difference;
  CHECK(contains(error_of([] { paired_difference({1.0, 2.0}, {1.0}); }), "2 values against 1"));
  CHECK(contains(error_of([] { paired_difference({}, {}); }), "no pairs"));
  CHECK(contains(error_of([] { paired_difference({1.0, std::nan("")}, {1.0, 2.0}); }), "pair 1 is not finite"));
  CHECK(contains(error_of([] { paired_difference({1.0}, {std::numeric_limits<double>::infinity()}); }),
                 "pair 0 is not finite"));
}
