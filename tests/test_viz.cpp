// Tests for the SVG writer and the plots of `flowless plot` (viz/svg.hpp,
// viz/plots.hpp): well-formed XML (checked by a small parser below), escaping,
// proportional bar geometry, class colours, empty inputs, the index page.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "test_util.hpp"
#include "flowless/io/file.hpp"
#include "flowless/viz/plots.hpp"
#include "flowless/viz/svg.hpp"

namespace viz = flowless::viz;
using flowless::data::Segment;
using flowless::data::VideoAnnotation;
using flowless::eval::Prediction;

namespace {

bool has(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}
size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
  return n;
}

bool name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}
bool name_char(char c) {
  return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

// Checks the character data s[a, b): no '<', every '&' starts a known entity.
std::string check_chars(const std::string& s, size_t a, size_t b) {
  for (size_t k = a; k < b; ++k) {
    if (s[k] == '<') return "raw '<' at " + std::to_string(k);
    if (s[k] != '&') continue;
    size_t semi = s.find(';', k);
    if (semi == std::string::npos || semi >= b) return "unterminated entity at " + std::to_string(k);
    std::string ent = s.substr(k + 1, semi - k - 1);
    bool ok = ent == "amp" || ent == "lt" || ent == "gt" || ent == "quot" || ent == "apos";
    if (!ok && ent.size() >= 2 && ent[0] == '#') {
      ok = true;
      bool hex = ent[1] == 'x';
      if (hex && ent.size() == 2) ok = false;
      for (size_t j = hex ? 2 : 1; j < ent.size(); ++j)
        if (!(hex ? std::isxdigit(static_cast<unsigned char>(ent[j]))
                  : std::isdigit(static_cast<unsigned char>(ent[j]))))
          ok = false;
    }
    if (!ok) return "bad entity '&" + ent + ";' at " + std::to_string(k);
  }
  return "";
}

// A tiny well-formedness checker: optional XML declaration, comments, one
// root element, balanced and matching tags, quoted unique attributes, escaped
// text. Returns "" when the document is well-formed, else what is wrong.
std::string xml_problem(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  if (s.compare(0, 5, "<?xml") == 0) {
    size_t e = s.find("?>");
    if (e == std::string::npos) return "unterminated XML declaration";
    i = e + 2;
  }
  std::vector<std::string> stack;
  int roots = 0;
  while (i < n) {
    size_t lt = s.find('<', i);
    size_t text_end = lt == std::string::npos ? n : lt;
    if (stack.empty()) {
      for (size_t k = i; k < text_end; ++k)
        if (!std::isspace(static_cast<unsigned char>(s[k]))) return "text outside the root";
    } else {
      std::string p = check_chars(s, i, text_end);
      if (!p.empty()) return p;
    }
    if (lt == std::string::npos) break;
    if (s.compare(lt, 4, "<!--") == 0) {
      size_t e = s.find("-->", lt + 4);
      if (e == std::string::npos) return "unterminated comment";
      i = e + 3;
      continue;
    }
    if (s.compare(lt, 2, "</") == 0) {
      size_t e = s.find('>', lt);
      if (e == std::string::npos) return "unterminated end tag";
      std::string name = s.substr(lt + 2, e - lt - 2);
      while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
      if (stack.empty()) return "end tag </" + name + "> without a start tag";
      if (stack.back() != name) return "</" + name + "> closes <" + stack.back() + ">";
      stack.pop_back();
      i = e + 1;
      continue;
    }
    size_t k = lt + 1;
    if (k >= n || !name_start(s[k])) return "bad tag name at " + std::to_string(lt);
    size_t ns = k;
    while (k < n && name_char(s[k])) ++k;
    std::string name = s.substr(ns, k - ns);
    std::set<std::string> attrs;
    bool self_close = false;
    for (;;) {
      bool ws = false;
      while (k < n && std::isspace(static_cast<unsigned char>(s[k]))) ++k, ws = true;
      if (k >= n) return "unterminated tag <" + name + ">";
      if (s[k] == '>') {
        ++k;
        break;
      }
      if (s.compare(k, 2, "/>") == 0) {
        k += 2;
        self_close = true;
        break;
      }
      if (!ws || !name_start(s[k])) return "bad attribute in <" + name + "> at " + std::to_string(k);
      size_t as = k;
      while (k < n && name_char(s[k])) ++k;
      std::string an = s.substr(as, k - as);
      if (!attrs.insert(an).second) return "duplicate attribute " + an + " in <" + name + ">";
      if (k >= n || s[k] != '=') return "attribute " + an + " without '='";
      ++k;
      if (k >= n || (s[k] != '"' && s[k] != '\'')) return "unquoted attribute " + an;
      char q = s[k++];
      size_t e = s.find(q, k);
      if (e == std::string::npos) return "unterminated attribute " + an;
      std::string p = check_chars(s, k, e);
      if (!p.empty()) return "attribute " + an + ": " + p;
      k = e + 1;
    }
    if (stack.empty()) {
      if (++roots > 1) return "more than one root element";
    }
    if (!self_close) stack.push_back(name);
    i = k;
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "no root element";
  return "";
}

std::string unescape(const std::string& v) {
  std::string out;
  for (size_t k = 0; k < v.size(); ++k) {
    if (v[k] != '&') {
      out += v[k];
      continue;
    }
    size_t semi = v.find(';', k);
    std::string ent = v.substr(k + 1, semi - k - 1);
    out += ent == "amp" ? "&" : ent == "lt" ? "<" : ent == "gt" ? ">" : ent == "quot" ? "\"" : "'";
    k = semi;
  }
  return out;
}

using AttrMap = std::map<std::string, std::string>;

// The (unescaped) attributes of every <tag ...> element, in document order.
std::vector<AttrMap> elements(const std::string& s, const std::string& tag) {
  std::vector<AttrMap> out;
  const std::string open = "<" + tag;
  for (size_t p = s.find(open); p != std::string::npos; p = s.find(open, p + 1)) {
    size_t k = p + open.size();
    if (k < s.size() && name_char(s[k])) continue;  // a longer tag name
    AttrMap a;
    for (;;) {
      while (std::isspace(static_cast<unsigned char>(s[k]))) ++k;
      if (s[k] == '>' || s[k] == '/') break;
      size_t eq = s.find('=', k);
      std::string name = s.substr(k, eq - k);
      char q = s[eq + 1];
      size_t e = s.find(q, eq + 2);
      a[name] = unescape(s.substr(eq + 2, e - eq - 2));
      k = e + 1;
    }
    out.push_back(a);
  }
  return out;
}

std::vector<AttrMap> with_class(const std::vector<AttrMap>& els, const std::string& cls) {
  std::vector<AttrMap> out;
  for (const auto& e : els) {
    auto it = e.find("class");
    if (it != e.end() && it->second == cls) out.push_back(e);
  }
  return out;
}

double num(const AttrMap& a, const std::string& key) {
  auto it = a.find(key);
  REQUIRE_MESSAGE(it != a.end(), "missing attribute ", key);
  return std::stod(it->second);
}

// The text content of every <text> element whose class is `cls`.
std::vector<std::string> texts_with_class(const std::string& s, const std::string& cls) {
  std::vector<std::string> out;
  const std::string open = "<text";
  for (size_t p = s.find(open); p != std::string::npos; p = s.find(open, p + 1)) {
    size_t gt = s.find('>', p);
    std::string head = s.substr(p, gt - p);
    if (!has(head, "class=\"" + cls + "\"")) continue;
    size_t end = s.find("</text>", gt);
    out.push_back(unescape(s.substr(gt + 1, end - gt - 1)));
  }
  return out;
}

Prediction pred(const std::string& vid, double s, double e, int label, double score) {
  Prediction p;
  p.video_id = vid;
  p.start = s;
  p.end = e;
  p.label_id = label;
  p.score = score;
  return p;
}

Segment seg(double s, double e, int label, const std::string& name) {
  Segment g;
  g.start = s;
  g.end = e;
  g.label_id = label;
  g.label = name;
  return g;
}

std::string scratch_dir() {
  static const flowless::test::ScratchDir d("viz");
  return d.path;
}

}  // namespace

TEST_CASE("viz: the XML checker itself rejects malformed documents") {
  CHECK(xml_problem("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/>t &amp; &#38;</a>\n") == "");
  CHECK(xml_problem("<a><b></a></b>") != "");
  CHECK(xml_problem("<a><b></b>") != "");
  CHECK(xml_problem("<a>x < y</a>") != "");
  CHECK(xml_problem("<a>x & y</a>") != "");
  CHECK(xml_problem("<a t=\"<\"/>") != "");
  CHECK(xml_problem("<a x=\"1\" x=\"2\"/>") != "");
  CHECK(xml_problem("<a/><b/>") != "");
  CHECK(xml_problem("<a x=1/>") != "");
}

TEST_CASE("viz: xml_escape, ellipsize, number formatting, ticks, colours") {
  CHECK(viz::xml_escape("a<b>&\"'c") == "a&lt;b&gt;&amp;&quot;&apos;c");
  CHECK(viz::xml_escape("tab\tnl\ncr\r") == "tab\tnl\ncr\r");
  const std::string repl = "\xEF\xBF\xBD";
  CHECK(viz::xml_escape(std::string("x\x01y\x1f", 4)) == "x" + repl + "y" + repl);
  CHECK(viz::xml_escape(std::string("a\0b", 3)) == "a" + repl + "b");
  const std::string utf8 = "caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9D\x84\x9E";  // café ✓ 𝄞
  CHECK(viz::xml_escape(utf8) == utf8);
  CHECK(viz::xml_escape("\xC3") == repl);                      // truncated
  CHECK(viz::xml_escape("\xC0\xAF") == repl + repl);           // overlong '/'
  CHECK(viz::xml_escape("\xED\xA0\x80") == repl + repl + repl);  // surrogate
  CHECK(viz::xml_escape("\xEF\xBF\xBE") == repl + repl + repl);  // U+FFFE
  CHECK(viz::xml_escape("\xF4\x90\x80\x80z") == repl + repl + repl + repl + "z");  // > U+10FFFF
  CHECK(viz::xml_escape("\xFFok") == repl + "ok");
  CHECK(xml_problem("<t>" + viz::xml_escape(std::string("\x01<&>\xFF\xC3", 6)) + "</t>") == "");

  CHECK(viz::utf8_length(utf8) == 8);
  CHECK(viz::ellipsize("abcdef", 6) == "abcdef");
  CHECK(viz::ellipsize("abcdef", 4) == "abc\xE2\x80\xA6");
  const std::string e = viz::ellipsize("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 3);  // éééé
  CHECK(e == "\xC3\xA9\xC3\xA9\xE2\x80\xA6");
  CHECK(viz::ellipsize("abc", 0) == "");

  CHECK(viz::fmt_num(1.5) == "1.5");
  CHECK(viz::fmt_num(2.0) == "2");
  CHECK(viz::fmt_num(123.456) == "123.46");
  CHECK(viz::fmt_num(-0.001) == "0");
  CHECK(viz::fmt_num(std::nan("")) == "0");
  CHECK(viz::fmt_num(std::numeric_limits<double>::infinity()) == "0");

  CHECK(viz::nice_ticks(0, 100, 6) == std::vector<double>{0, 20, 40, 60, 80, 100});
  CHECK(viz::nice_ticks(0, 7.3, 8) == std::vector<double>{0, 1, 2, 3, 4, 5, 6, 7});
  CHECK(viz::nice_ticks(0, 3, 7, true) == std::vector<double>{0, 1, 2, 3});
  CHECK(viz::nice_ticks(0.31, 0.47, 5).size() >= 2);
  CHECK(viz::nice_ticks(5, 5, 6) == std::vector<double>{5});
  CHECK(viz::nice_ticks(2, 1, 6).empty());
  CHECK(viz::tick_labels({0, 0.25, 0.5}) == std::vector<std::string>{"0", "0.25", "0.5"});
  CHECK(viz::tick_labels({0, 2.5, 5}) == std::vector<std::string>{"0", "2.5", "5"});
  CHECK(viz::tick_labels({0.1, 0.2, 0.30000000000000004}) ==
        std::vector<std::string>{"0.1", "0.2", "0.3"});
  CHECK(viz::tick_labels({1000, 2000}) == std::vector<std::string>{"1000", "2000"});

  std::set<std::string> colours;
  for (int id = 0; id < 200; ++id) {
    const std::string c = viz::class_color(id);
    CHECK(c.size() == 7);
    CHECK(c[0] == '#');
    CHECK(c == viz::class_color(id));
    colours.insert(c);
  }
  CHECK(colours.size() == 200);  // ActivityNet's 200 classes all differ
  CHECK(viz::class_color(-1) == "#555555");
}

TEST_CASE("viz: SvgDocument writes a well-formed document and escapes text") {
  viz::SvgDocument doc(400);
  doc.open("g", viz::Attrs()("class", "a<b")("opacity", 0.5));
  doc.rect(1, 2, 3, 4, viz::Attrs()("fill", "#123456"), "tip <&>");
  doc.text(5, 6, "x < y & z");
  doc.open("g");  // left open: finish closes it
  const std::string svg = doc.finish(100);
  CHECK(xml_problem(svg) == "");
  CHECK(has(svg, "class=\"a&lt;b\""));
  CHECK(has(svg, "<title>tip &lt;&amp;&gt;</title>"));
  CHECK(has(svg, "x &lt; y &amp; z"));
  CHECK(has(svg, "viewBox=\"0 0 400 100\""));
  CHECK(has(svg, "xmlns=\"http://www.w3.org/2000/svg\""));
  viz::SvgDocument bad(100);
  CHECK_THROWS_AS(bad.close(), flowless::Error);
}

TEST_CASE("viz: timeline_svg geometry, escaping, colours, top-k and min_score") {
  VideoAnnotation v;
  v.id = "video<&>\"1\"";
  v.subset = "Validation";
  v.duration = 100;
  v.segments = {seg(0, 10, 0, "Run<fast>"), seg(10, 30, 0, "Run<fast>"), seg(50, 60, 2, "A&B")};
  std::map<int, std::string> names = {{0, "Run<fast>"}, {2, "A&B"}, {5, "Only'Det"}};
  std::vector<Prediction> preds = {
      pred(v.id, 12, 28, 0, 0.9),   pred(v.id, 60, 70, 0, 0.45),  pred(v.id, 80, 90, 5, 0.3),
      pred(v.id, 48, 59, 2, 0.7),   pred(v.id, 1, 2, 2, 0.05),    pred(v.id, 33, 40, 7, 0.01),
      pred("other", 0, 50, 0, 0.99),
  };
  viz::TimelineOptions opt;
  opt.width = 900;
  opt.top_k = 4;
  const std::string svg = viz::timeline_svg(v, preds, names, opt);
  REQUIRE(xml_problem(svg) == "");

  // Escaped title / names; nothing raw.
  CHECK(has(svg, "video video&lt;&amp;&gt;&quot;1&quot;"));
  CHECK(has(svg, "Run&lt;fast&gt;"));
  CHECK(has(svg, "A&amp;B"));
  CHECK(has(svg, "Only&apos;Det"));
  CHECK_FALSE(has(svg, "Run<fast>"));
  CHECK_FALSE(has(svg, "A&B"));

  const auto rects = elements(svg, "rect");
  // GT bars are proportional: x = a + b t, width = b (end - start).
  const auto gt0 = with_class(rects, "gt c0");
  const auto gt2 = with_class(rects, "gt c2");
  REQUIRE(gt0.size() == 2);
  REQUIRE(gt2.size() == 1);
  const double a = num(gt0[0], "x"), b = num(gt0[0], "width") / 10;
  CHECK(b > 0);
  CHECK(num(gt0[1], "x") == doctest::Approx(a + 10 * b).epsilon(1e-3));
  CHECK(num(gt0[1], "width") == doctest::Approx(20 * b).epsilon(1e-3));
  CHECK(num(gt2[0], "x") == doctest::Approx(a + 50 * b).epsilon(1e-3));
  CHECK(num(gt2[0], "width") == doctest::Approx(10 * b).epsilon(1e-3));
  CHECK(a > 0);
  CHECK(a + 100 * b <= 900);
  CHECK(a + 100 * b > 800);  // the axis uses most of the width

  // Top-4 by score among this video's detections: 0.9, 0.7, 0.45, 0.3.
  const auto det0 = with_class(rects, "det c0");
  const auto det2 = with_class(rects, "det c2");
  const auto det5 = with_class(rects, "det c5");
  CHECK(det0.size() == 2);
  CHECK(det2.size() == 1);
  CHECK(det5.size() == 1);
  CHECK(with_class(rects, "det c7").empty());  // 5th and 6th best are not drawn
  CHECK(count_of(svg, "class=\"det ") == 4);
  CHECK_FALSE(has(svg, "0.99"));  // the other video's detection
  // Detections are positioned on the same time axis, below the GT half of the lane.
  const AttrMap* d09 = nullptr;
  const AttrMap* d045 = nullptr;
  for (const auto& d : det0) (num(d, "x") < a + 30 * b ? d09 : d045) = &d;
  REQUIRE(d09 != nullptr);
  REQUIRE(d045 != nullptr);
  CHECK(num(*d09, "x") == doctest::Approx(a + 12 * b).epsilon(1e-3));
  CHECK(num(*d09, "width") == doctest::Approx(16 * b).epsilon(1e-3));
  CHECK(num(*d09, "y") > num(gt0[0], "y") + num(gt0[0], "height"));
  // Height and opacity grow with the score.
  CHECK(num(*d09, "height") == doctest::Approx(2 * num(*d045, "height")).epsilon(1e-2));
  CHECK(num(*d09, "fill-opacity") > num(*d045, "fill-opacity"));
  // Lanes differ in y; GT and detections of one class share a lane.
  CHECK(num(gt2[0], "y") != num(gt0[0], "y"));
  CHECK(num(det2[0], "y") - num(gt2[0], "y") == doctest::Approx(num(*d09, "y") - num(gt0[0], "y")));

  // One colour per class, the same for GT and detections, distinct between classes.
  CHECK(gt0[0].at("fill") == viz::class_color(0));
  CHECK(gt0[1].at("fill") == gt0[0].at("fill"));
  CHECK(det0[0].at("fill") == gt0[0].at("fill"));
  CHECK(det2[0].at("fill") == gt2[0].at("fill"));
  CHECK(gt2[0].at("fill") != gt0[0].at("fill"));
  CHECK(det5[0].at("fill") == viz::class_color(5));

  // Scores printed for the drawn detections (they do not overlap here).
  auto scores = texts_with_class(svg, "score");
  std::sort(scores.begin(), scores.end());
  CHECK(scores == std::vector<std::string>{"0.30", "0.45", "0.70", "0.90"});
  // Tooltips carry the details.
  CHECK(has(svg, "Run&lt;fast&gt; (detection): 12.00\xE2\x80\x93" "28.00 s, score 0.900"));
  // Legend lists the three lanes.
  CHECK(count_of(svg, "Only&apos;Det") >= 2);  // lane label + legend

  // min_score drops low detections (and their lanes), top_k <= 0 keeps all above it.
  viz::TimelineOptions opt2;
  opt2.top_k = 0;
  opt2.min_score = 0.4;
  const std::string svg2 = viz::timeline_svg(v, preds, names, opt2);
  REQUIRE(xml_problem(svg2) == "");
  CHECK(count_of(svg2, "class=\"det ") == 3);
  CHECK_FALSE(has(svg2, "Only&apos;Det"));
  // A huge top_k draws all of them.
  viz::TimelineOptions opt3;
  opt3.top_k = 1000;
  CHECK(count_of(viz::timeline_svg(v, preds, names, opt3), "class=\"det ") == 6);

  // Close detections: scores use two rows, then are skipped (tooltip kept).
  std::vector<Prediction> crowd;
  for (int k = 0; k < 6; ++k) crowd.push_back(pred(v.id, 40 + 0.1 * k, 41 + 0.1 * k, 0, 0.9 - 0.1 * k));
  const std::string svg3 = viz::timeline_svg(v, crowd, names, opt);
  REQUIRE(xml_problem(svg3) == "");
  CHECK(texts_with_class(svg3, "score").size() == 2);
  CHECK(count_of(svg3, "class=\"det ") == 4);

  CHECK_THROWS_AS(viz::timeline_svg(v, preds, names, viz::TimelineOptions{20, 0.0, 100, ""}),
                  flowless::Error);
}

TEST_CASE("viz: timeline_svg of empty inputs is a readable 'no data' SVG") {
  VideoAnnotation v;
  v.id = "empty";
  const std::string svg = viz::timeline_svg(v, {}, {}, viz::TimelineOptions());
  REQUIRE(xml_problem(svg) == "");
  CHECK(texts_with_class(svg, "nodata").size() == 1);
  CHECK(has(svg, "video empty"));

  // Only detections below min_score: the message says so.
  viz::TimelineOptions opt;
  opt.min_score = 0.5;
  const std::string svg2 = viz::timeline_svg(v, {pred("empty", 1, 2, 0, 0.1)}, {}, opt);
  REQUIRE(xml_problem(svg2) == "");
  const auto msg = texts_with_class(svg2, "nodata");
  REQUIRE(msg.size() == 1);
  CHECK(has(msg[0], "1 detection below min_score 0.5"));

  // Zero duration and no names: the axis comes from the segments, lanes are "class <id>".
  VideoAnnotation w;
  w.id = "w";
  w.segments = {seg(2, 4, 3, "")};
  const std::string svg3 = viz::timeline_svg(w, {pred("w", 1, 8, 3, 0.5)}, {}, {});
  REQUIRE(xml_problem(svg3) == "");
  CHECK(has(svg3, "class 3"));
  const auto gt = with_class(elements(svg3, "rect"), "gt c3");
  const auto det = with_class(elements(svg3, "rect"), "det c3");
  REQUIRE(gt.size() == 1);
  REQUIRE(det.size() == 1);
  // t_max = 8 (the detection's end): det spans 7/8 of the axis, GT 2/8.
  CHECK(num(det[0], "width") == doctest::Approx(3.5 * num(gt[0], "width")).epsilon(1e-3));
}

TEST_CASE("viz: curves_svg and curves_panel_svg") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  viz::Series loss{"train <loss> & co", {0, 1, 2, 3, 4}, {1.0, 0.8, nan, 0.5, 0.4}};
  viz::Series val{"val", {0, 2, 4}, {0.9, 0.7, 0.6}};
  viz::CurveOptions opt;
  opt.title = "Loss <per> epoch";
  opt.y_label = "loss";
  const std::string svg = viz::curves_svg({loss, val}, opt);
  REQUIRE(xml_problem(svg) == "");
  CHECK(has(svg, "train &lt;loss&gt; &amp; co (last: 0.4)"));
  CHECK(has(svg, "Loss &lt;per&gt; epoch"));
  CHECK(texts_with_class(svg, "nodata").empty());

  const auto lines = elements(svg, "polyline");
  REQUIRE(lines.size() == 3);  // loss split by the NaN into two runs, plus val
  auto points = [](const AttrMap& a) {
    std::vector<std::pair<double, double>> out;
    std::string s = a.at("points");
    size_t p = 0;
    while (p < s.size()) {
      size_t c = s.find(',', p), sp = s.find(' ', c);
      if (sp == std::string::npos) sp = s.size();
      out.emplace_back(std::stod(s.substr(p, c - p)), std::stod(s.substr(c + 1, sp - c - 1)));
      p = sp + 1;
    }
    return out;
  };
  const auto r0 = points(lines[0]), r1 = points(lines[1]), r2 = points(lines[2]);
  REQUIRE(r0.size() == 2);
  REQUIRE(r1.size() == 2);
  REQUIRE(r2.size() == 3);
  // x proportional to the epoch, larger y higher up (smaller pixel y), linear in y.
  const double dx = r0[1].first - r0[0].first;
  CHECK(dx > 0);
  CHECK(r1[0].first == doctest::Approx(r0[0].first + 3 * dx).epsilon(1e-3));
  CHECK(r2[2].first == doctest::Approx(r0[0].first + 4 * dx).epsilon(1e-3));
  CHECK(r0[0].second < r0[1].second);
  const double dy = r0[1].second - r0[0].second;  // 0.2 in data units
  CHECK(r1[0].second - r0[0].second == doctest::Approx(2.5 * dy).epsilon(1e-3));
  CHECK(elements(svg, "circle").size() == 7);  // markers on every finite point
  CHECK(lines[0].at("stroke") == viz::series_color(0));
  CHECK(lines[2].at("stroke") == viz::series_color(1));

  // log_y: non-positive values are skipped.
  viz::CurveOptions lo;
  lo.log_y = true;
  viz::Series s{"s", {1, 2, 3, 4, 5}, {10, 1, 0.1, 0, -1}};
  const std::string svg_log = viz::curves_svg({s}, lo);
  REQUIRE(xml_problem(svg_log) == "");
  const auto ll = elements(svg_log, "polyline");
  REQUIRE(ll.size() == 1);
  const auto lp = points(ll[0]);
  REQUIRE(lp.size() == 3);
  CHECK(lp[1].second - lp[0].second == doctest::Approx(lp[2].second - lp[1].second).epsilon(1e-3));

  // A lone finite point is still visible as a dot; fixed y range.
  viz::CurveOptions fixed;
  fixed.y_min = 0;
  fixed.y_max = 1;
  fixed.markers = false;
  const std::string svg_one = viz::curves_svg({{"m", {0, 1, 2}, {nan, 0.5, nan}}}, fixed);
  REQUIRE(xml_problem(svg_one) == "");
  CHECK(elements(svg_one, "polyline").empty());
  CHECK(elements(svg_one, "circle").size() == 1);

  // Nothing to draw: "no data", never an error.
  for (const auto& series : std::vector<std::vector<viz::Series>>{
           {}, {{"empty", {}, {}}}, {{"all nan", {0, 1}, {nan, nan}}}}) {
    const std::string e = viz::curves_svg(series, opt);
    REQUIRE(xml_problem(e) == "");
    CHECK(texts_with_class(e, "nodata").size() == 1);
    CHECK(elements(e, "polyline").empty());
  }
  CHECK(has(viz::curves_svg({{"all nan", {0, 1}, {nan, nan}}}, opt), "all nan (no data)"));
  // A constant series gets a non-degenerate y range.
  const std::string flat = viz::curves_svg({{"flat", {0, 1, 2}, {3, 3, 3}}}, opt);
  REQUIRE(xml_problem(flat) == "");
  const auto fp = points(elements(flat, "polyline").at(0));
  CHECK(std::isfinite(fp[0].second));
  CHECK(fp[0].second == fp[2].second);

  CHECK_THROWS_AS(viz::curves_svg({{"bad", {0, 1}, {1}}}, opt), flowless::Error);

  // Two stacked panels.
  viz::CurveOptions po;
  po.title = "training";
  const std::string panels = viz::curves_panel_svg(
      {{"loss", {loss}}, {"mAP <avg>", {{"mAP", {0, 1, 2}, {0.1, 0.3, 0.45}}}}}, po);
  REQUIRE(xml_problem(panels) == "");
  CHECK(has(panels, "mAP &lt;avg&gt;"));
  const auto clips = elements(panels, "clipPath");
  REQUIRE(clips.size() == 2);
  CHECK(clips[0].at("id") != clips[1].at("id"));
  const auto pl = elements(panels, "polyline");
  REQUIRE(pl.size() == 3);
  CHECK(points(pl[2])[0].second > points(pl[0])[0].second);  // second panel lies below
  const std::string none = viz::curves_panel_svg({}, po);
  REQUIRE(xml_problem(none) == "");
  CHECK(texts_with_class(none, "nodata").size() == 1);
  const std::string half = viz::curves_panel_svg({{"loss", {}}, {"mAP", {val}}}, po);
  REQUIRE(xml_problem(half) == "");
  CHECK(texts_with_class(half, "nodata").size() == 1);
}

TEST_CASE("viz: write_timelines writes one SVG per video and an index") {
  flowless::data::Annotations ann;
  ann.label_names = {{0, "Jump"}, {1, "Throw<x>"}};
  VideoAnnotation a, b, c;
  a.id = "vid/1<a>";
  a.subset = "Validation";
  a.duration = 50;
  a.segments = {seg(5, 10, 0, "Jump")};
  b.id = "vid_1_a_";  // same file stem as a
  b.subset = "validation";
  b.duration = 20;
  b.segments = {seg(1, 3, 1, "Throw<x>")};
  c.id = "test_v";
  c.subset = "Test";
  c.duration = 10;
  ann.videos = {a, b, c};
  std::vector<Prediction> preds = {pred(a.id, 4, 11, 0, 0.8), pred(b.id, 1, 2, 1, 0.6),
                                   pred(b.id, 2, 4, 0, 0.2), pred("test_v", 1, 2, 0, 0.5),
                                   pred("unknown", 1, 2, 0, 0.5)};

  const std::string dir = scratch_dir() + "/timelines";
  viz::write_timelines(dir, ann, "validation", preds, 0);
  namespace fs = std::filesystem;
  const std::string f1 = dir + "/vid_1_a_.svg", f2 = dir + "/vid_1_a__2.svg";
  REQUIRE(fs::exists(f1));
  REQUIRE(fs::exists(f2));
  CHECK_FALSE(fs::exists(dir + "/test_v.svg"));
  const std::string s1 = flowless::io::read_file(f1), s2 = flowless::io::read_file(f2);
  CHECK(xml_problem(s1) == "");
  CHECK(xml_problem(s2) == "");
  CHECK(has(s1, "vid/1&lt;a&gt;"));
  CHECK(count_of(s1, "class=\"det ") == 1);
  CHECK(count_of(s2, "class=\"det ") == 2);
  CHECK(has(s2, "Throw&lt;x&gt;"));
  const std::string index = flowless::io::read_file(dir + "/index.html");
  CHECK(has(index, "href=\"vid_1_a_.svg\""));
  CHECK(has(index, "href=\"vid_1_a__2.svg\""));
  CHECK(has(index, "src=\"vid_1_a__2.svg\""));
  CHECK(has(index, "vid/1&lt;a&gt;"));
  CHECK_FALSE(has(index, "<a>"));
  CHECK_FALSE(has(index, "test_v"));
  CHECK(has(index, "showing 2 of 2 videos"));
  CHECK(has(index, "<td class=\"n\">0.800</td>"));

  // max_videos, the whole file (split ""), an empty split.
  const std::string dir2 = scratch_dir() + "/one";
  viz::write_timelines(dir2, ann, "", preds, 1);
  CHECK(fs::exists(dir2 + "/vid_1_a_.svg"));
  CHECK_FALSE(fs::exists(dir2 + "/vid_1_a__2.svg"));
  CHECK(has(flowless::io::read_file(dir2 + "/index.html"), "showing 1 of 3 videos"));
  const std::string dir3 = scratch_dir() + "/none";
  viz::write_timelines(dir3, ann, "training", preds, 0);
  const std::string idx3 = flowless::io::read_file(dir3 + "/index.html");
  CHECK(has(idx3, "No videos in split training"));
  size_t n_files = 0;
  for (const auto& e : fs::directory_iterator(dir3)) n_files += e.is_regular_file();
  CHECK(n_files == 1);
}
