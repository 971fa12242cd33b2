// flowless/viz/svg.hpp - a small dependency-free SVG writer and the plotting
// helpers shared by flowless/viz/plots.hpp.
//
// Contract
// - xml_escape(s): s as XML 1.0 character data / attribute value: & < > " '
//   become entities; control characters other than \t \n \r, invalid UTF-8
//   (bad lead/continuation bytes, truncated or overlong sequences, surrogates,
//   code points > U+10FFFF) and U+FFFE / U+FFFF become U+FFFD, so any byte
//   string (a video id, a class name) yields well-formed XML.
// - ellipsize(s, n): s cut to at most n code points, the last being "…" when
//   cut; never splits a UTF-8 sequence. utf8_length counts code points
//   (continuation bytes are not counted).
// - text_width(s, font_size): an estimate (0.6 em per code point) of the
//   rendered width of s in a sans-serif font, for layout only.
// - fmt_num(v, decimals): fixed notation with at most `decimals` decimals,
//   trailing zeros trimmed, "-0" written "0"; non-finite -> "0" (coordinates
//   must always be numbers).
// - class_color(id): "#rrggbb", a fixed function of the id alone, so a class
//   has the same colour in every plot (GT and detections, every video). Ids
//   0..19 use a hand-picked palette of 20 colours readable on white; larger
//   ids use golden-angle hues; negative ids are grey. series_color(i) is
//   class_color(i).
// - nice_ticks(lo, hi, max_ticks, integer_step): ascending multiples of a
//   step in {1, 2, 2.5, 5} x 10^k inside [lo, hi] (at most max_ticks of them,
//   at least one when lo <= hi are finite); integer_step forces step >= 1.
//   nice_step gives the step alone. tick_labels formats the ticks with the
//   fewest decimals (<= 6) that print every tick exactly to within step/1000.
// - Attrs: an attribute list; numbers go through fmt_num, strings through
//   xml_escape. Attribute names are written as given (they come from code).
// - SvgDocument(width): open/close/leaf/element/rect/line/text append
//   elements to the body (text content and tooltips escaped; a tooltip is an
//   SVG <title> child, shown on hover); finish(height) closes what is still
//   open and returns the whole document: XML declaration, <svg> root with
//   xmlns, width, height and viewBox, a white background, the body.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "flowless/core/error.hpp"

namespace flowless::viz {

inline void append_escaped(std::string& out, std::string_view s) {
  static const char kRepl[] = "\xEF\xBF\xBD";  // U+FFFD
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
          if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') out += kRepl;
          else out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07u;
    } else {
      out += kRepl;
      ++i;
      continue;
    }
    bool ok = i + static_cast<size_t>(len) <= n;
    for (int k = 1; ok && k < len; ++k) {
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (d & 0x3Fu);
    }
    if (ok) {
      const uint32_t min_cp = len == 2 ? 0x80u : len == 3 ? 0x800u : 0x10000u;
      ok = cp >= min_cp && cp <= 0x10FFFFu && !(cp >= 0xD800u && cp <= 0xDFFFu) &&
           cp != 0xFFFEu && cp != 0xFFFFu;
    }
    if (!ok) {  // replace the lead byte; continuation bytes are replaced in turn
      out += kRepl;
      ++i;
      continue;
    }
    out.append(s.data() + i, static_cast<size_t>(len));
    i += static_cast<size_t>(len);
  }
}

inline std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  append_escaped(out, s);
  return out;
}

inline size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char ch : s)
    if ((static_cast<unsigned char>(ch) & 0xC0) != 0x80) ++n;
  return n;
}

inline std::string ellipsize(std::string_view s, size_t max_chars) {
  if (utf8_length(s) <= max_chars) return std::string(s);
  if (max_chars == 0) return std::string();
  size_t keep = max_chars - 1, count = 0, i = 0;
  for (; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (count == keep) break;
      ++count;
    }
  }
  return std::string(s.substr(0, i)) + "\xE2\x80\xA6";  // U+2026
}

inline double text_width(std::string_view s, double font_size) {
  return 0.6 * font_size * static_cast<double>(utf8_length(s));
}

inline std::string fmt_num(double v, int decimals = 2) {
  if (!std::isfinite(v)) return "0";
  decimals = std::clamp(decimals, 0, 12);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s(buf);
  if (s.find('.') != std::string::npos) {
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

inline std::string class_color(int id) {
  static const char* const kPalette[20] = {
      "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
      "#17becf", "#bcbd22", "#393b79", "#637939", "#e6ab02", "#843c39", "#7b4173",
      "#00a087", "#b15928", "#fc8d62", "#8da0cb", "#a6d854", "#66c2a5"};
  if (id < 0) return "#555555";
  if (id < 20) return kPalette[id];
  // Golden-angle hues with three lightness/saturation levels (HSL -> RGB).
  const double h = std::fmod(static_cast<double>(id) * 137.50776405, 360.0) / 60.0;
  const double s = 0.70 - 0.12 * (id % 3), l = 0.36 + 0.08 * ((id / 3) % 3);
  const double c = (1 - std::fabs(2 * l - 1)) * s;
  const double x = c * (1 - std::fabs(std::fmod(h, 2.0) - 1));
  double r = 0, g = 0, b = 0;
  switch (static_cast<int>(h) % 6) {
    case 0: r = c; g = x; break;
    case 1: r = x; g = c; break;
    case 2: g = c; b = x; break;
    case 3: g = x; b = c; break;
    case 4: r = x; b = c; break;
    default: r = c; b = x; break;
  }
  const double m = l - c / 2;
  auto byte = [&](double v) { return std::clamp(static_cast<int>(std::lround((v + m) * 255)), 0, 255); };
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", byte(r), byte(g), byte(b));
  return buf;
}

inline std::string series_color(int i) { return class_color(i); }

inline double nice_step(double lo, double hi, int max_ticks, bool integer_step = false) {
  max_ticks = std::max(max_ticks, 2);
  double span = hi - lo;
  if (!(span > 0) || !std::isfinite(span)) span = std::max(std::fabs(hi), 1.0);
  // The smallest step in {1, 2, 2.5, 5} x 10^k giving at most max_ticks ticks in [lo, hi].
  double mag = std::pow(10.0, std::floor(std::log10(span / max_ticks)));
  static const double kMult[] = {1, 2, 2.5, 5};
  for (int round = 0; round < 8; ++round, mag *= 10) {
    for (double m : kMult) {
      double step = m * mag;
      if (integer_step && step < 1) continue;
      const double eps = step * 1e-9;
      const double count = std::floor((hi + eps) / step) - std::ceil((lo - eps) / step) + 1;
      if (!(hi > lo) || count <= max_ticks) return step;
    }
  }
  return mag;
}

inline std::vector<double> nice_ticks(double lo, double hi, int max_ticks, bool integer_step = false) {
  std::vector<double> out;
  if (!std::isfinite(lo) || !std::isfinite(hi) || lo > hi) return out;
  const double step = nice_step(lo, hi, max_ticks, integer_step);
  const double eps = step * 1e-9;
  const double k0 = std::ceil((lo - eps) / step), k1 = std::floor((hi + eps) / step);
  for (double k = k0; k <= k1 && out.size() < 1000; k += 1) {
    double v = k * step;
    if (v == 0) v = 0;  // no -0
    out.push_back(v);
  }
  if (out.empty()) out.push_back(lo);
  return out;
}

inline std::vector<std::string> tick_labels(const std::vector<double>& ticks) {
  double step = 0;
  for (size_t i = 1; i < ticks.size(); ++i) {
    double d = std::fabs(ticks[i] - ticks[i - 1]);
    if (d > 0 && (step == 0 || d < step)) step = d;
  }
  int decimals = 6;
  for (int d = 0; d <= 6; ++d) {
    bool ok = true;
    for (double t : ticks) {
      double r = std::round(t * std::pow(10.0, d)) / std::pow(10.0, d);
      double tol = step > 0 ? step * 1e-3 : std::max(std::fabs(t) * 1e-6, 1e-12);
      if (std::fabs(r - t) > tol) ok = false;
    }
    if (ok) {
      decimals = d;
      break;
    }
  }
  std::vector<std::string> out;
  out.reserve(ticks.size());
  for (double t : ticks) out.push_back(fmt_num(t, decimals));
  return out;
}

class Attrs {
 public:
  Attrs() = default;
  Attrs& operator()(std::string_view name, double v) {
    s_ += ' ';
    s_ += name;
    s_ += "=\"";
    s_ += fmt_num(v);
    s_ += '"';
    return *this;
  }
  Attrs& operator()(std::string_view name, std::string_view v) {
    s_ += ' ';
    s_ += name;
    s_ += "=\"";
    append_escaped(s_, v);
    s_ += '"';
    return *this;
  }
  Attrs& operator()(std::string_view name, const char* v) { return (*this)(name, std::string_view(v)); }
  Attrs& operator()(std::string_view name, const std::string& v) {
    return (*this)(name, std::string_view(v));
  }
  Attrs& append(const Attrs& o) {
    s_ += o.s_;
    return *this;
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

class SvgDocument {
 public:
  explicit SvgDocument(double width) : width_(width) { body_.reserve(1 << 14); }

  double width() const { return width_; }

  void open(std::string_view tag, const Attrs& a = Attrs()) {
    body_ += '<';
    body_ += tag;
    body_ += a.str();
    body_ += ">\n";
    stack_.emplace_back(tag);
  }
  void close() {
    FLOWLESS_CHECK(!stack_.empty(), "SvgDocument::close: no open element");
    body_ += "</";
    body_ += stack_.back();
    body_ += ">\n";
    stack_.pop_back();
  }
  void leaf(std::string_view tag, const Attrs& a, std::string_view tooltip = {}) {
    body_ += '<';
    body_ += tag;
    body_ += a.str();
    if (tooltip.empty()) {
      body_ += "/>\n";
      return;
    }
    body_ += "><title>";
    append_escaped(body_, tooltip);
    body_ += "</title></";
    body_ += tag;
    body_ += ">\n";
  }
  /// <tag attrs>escaped text</tag>
  void element(std::string_view tag, const Attrs& a, std::string_view content) {
    body_ += '<';
    body_ += tag;
    body_ += a.str();
    body_ += '>';
    append_escaped(body_, content);
    body_ += "</";
    body_ += tag;
    body_ += ">\n";
  }
  void rect(double x, double y, double w, double h, Attrs extra = Attrs(),
            std::string_view tooltip = {}) {
    Attrs a;
    a("x", x)("y", y)("width", std::max(w, 0.0))("height", std::max(h, 0.0));
    leaf("rect", Attrs(a).append(extra), tooltip);
  }
  void line(double x1, double y1, double x2, double y2, Attrs extra = Attrs()) {
    Attrs a;
    a("x1", x1)("y1", y1)("x2", x2)("y2", y2);
    leaf("line", Attrs(a).append(extra));
  }
  void text(double x, double y, std::string_view content, Attrs extra = Attrs()) {
    Attrs a;
    a("x", x)("y", y);
    element("text", Attrs(a).append(extra), content);
  }
  /// Raw markup written as is (for callers that built it with Attrs / xml_escape).
  void raw(std::string_view markup) { body_ += markup; }

  std::string finish(double height) {
    while (!stack_.empty()) close();
    height = std::max(height, 1.0);
    std::string out;
    out.reserve(body_.size() + 512);
    out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\"";
    out += Attrs()("width", width_)("height", height)(
                      "viewBox", "0 0 " + fmt_num(width_) + " " + fmt_num(height))(
                      "font-family", "DejaVu Sans, Helvetica, Arial, sans-serif")
               .str();
    out += ">\n";
    out += "<rect";
    out += Attrs()("x", 0.0)("y", 0.0)("width", width_)("height", height)("fill", "#ffffff").str();
    out += "/>\n";
    out += body_;
    out += "</svg>\n";
    return out;
  }

 private:
  double width_;
  std::string body_;
  std::vector<std::string> stack_;
};

}  // namespace flowless::viz
