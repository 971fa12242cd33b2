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
