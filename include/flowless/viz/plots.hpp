// flowless/viz/plots.hpp - the plots of `flowless plot`: per-video detection
// timelines and training curves, as standalone SVG text (no dependencies).
//
// timeline_svg(gt, preds, label_names, opt) - one video.
// - Detections: the entries of `preds` whose video_id equals gt.id (others are
//   ignored, so the whole prediction list may be passed), with finite start,
//   end and score and score >= opt.min_score, sorted by score (descending,
//   stable); the opt.top_k best are drawn (top_k <= 0: all). A segment given
//   as end < start is drawn from end to start.
// - Time axis: seconds, from 0 to max(duration, last GT end, last drawn
//   detection end) (1 s when all are 0), "nice" ticks with vertical grid lines.
//   Time t maps to x = plot_left + t / t_max * plot_width, so bar x and width
//   are proportional to start and length (bars narrower than 1 px are drawn
//   1 px wide; negative times are clipped to 0).
// - One lane per class occurring in the GT or among the drawn detections,
//   ordered by label_id; the lane's name is label_names[id], else the GT
//   segment's label, else "class <id>" (ellipsized to fit the label column;
//   the full name is in the tooltip). GT bars fill the top half of the lane
//   (class="gt c<id>"), detections hang below the divider (class="det c<id>")
//   with height and fill-opacity growing with the score (clamped to [0, 1]);
//   higher scores are painted last. Each drawn detection's score is printed
//   ("0.87", class="score") on the first of two text rows where it does not
//   overlap another score; it is skipped where both are taken (the tooltip
//   still has it). Every bar has a hover tooltip (class, start-end, score).
// - Colour: class_color(label_id), identical for GT and detections and in
//   every video. Legend: every lane's class, then a key for GT / detections.
// - Title: opt.title or "video <id>"; subtitle with subset, duration, counts.
// - Nothing to draw: the title, the axis and a "no ground-truth segments or
//   detections" message (an SVG, never an Error). Error: opt.width < 320.
//
// curves_svg(series, opt) - one line chart; curves_panel_svg(panels, opt) -
// charts stacked vertically, one per (panel title, series) pair, under
// opt.title, sharing one x range (so epochs line up). Per series, points where x or y is not finite (or y <= 0 with
// opt.log_y) are skipped and break the line; a lone point is drawn as a dot.
// Axes: x spans the data exactly (integer ticks when every x is an integer,
// e.g. epochs); y is fitted to the data and rounded out to nice ticks
// (opt.y_min / opt.y_max fix either end; log_y rounds out to 1-2-5 x 10^k
// and ticks at those values, or at decades past 3 decades). Lines are
// clipped to the plot area. Legend: "name (last: v)" with the series colour
// series_color(index), "name (no data)" when it has no drawable point. A chart
// without any drawable point shows "no data" in an empty frame. Error: a series
// whose x and y sizes differ, opt.width < 320 or opt.height < 120.
//
// write_timelines(out_dir, ann, split, preds, max_videos, opt) - creates
// out_dir (mkdir -p) and writes, atomically, one timeline SVG per video of the
// split (ann.split({split}); "" = every video), in file order, the first
// max_videos of them (<= 0: all), named after the video id with characters
// outside [A-Za-z0-9._-] replaced by '_' (unique, case-insensitively, by a
// "_2", "_3", ... suffix), plus index.html: a table (id, subset, duration,
// #GT, #detections, top score) linking to every SVG, then the SVGs inline as
// <img>. Returns nothing; a split without videos gives an index saying so.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "flowless/core/error.hpp"
#include "flowless/data/annotations.hpp"
#include "flowless/eval/detection_map.hpp"
#include "flowless/io/file.hpp"
#include "flowless/viz/svg.hpp"

namespace flowless::viz {

struct TimelineOptions {
  int top_k = 20;          // detections drawn: the k highest scores (<= 0: all)
  double min_score = 0.0;  // detections scoring lower are not drawn
  double width = 1000;     // pixels
  std::string title;       // "" -> "video <id>"
};

struct Series {
  std::string name;
  std::vector<double> x, y;
};

struct CurveOptions {
  std::string title;
  std::string x_label = "epoch";
  std::string y_label;  // curves_svg only (panels are named by their titles)
  double width = 720;
  double height = 300;  // one chart (axes included, title and legend excluded)
  bool log_y = false;
  double y_min = std::numeric_limits<double>::quiet_NaN();  // NaN: fitted
  double y_max = std::numeric_limits<double>::quiet_NaN();
  bool markers = true;  // dots at the points of series with <= 60 points
};

namespace plots_detail {

inline std::string fmt_g(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

inline std::string fmt_fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

inline std::string seconds(double t) { return fmt_fixed(t, t < 100 ? 2 : 1); }

struct Lane {
  int label_id = -1;
  std::string name;
  int n_gt = 0, n_det = 0;
};

/// Legend rows: swatch + text entries, wrapped at `right`. Returns the y below.
struct LegendEntry {
  std::string text, color;
  bool line = false;  // a line sample (curves) instead of a square (classes)
};

inline double draw_legend(SvgDocument& doc, const std::vector<LegendEntry>& entries, double left,
                          double right, double y, double font) {
  const double row_h = font + 7;
  double x = left;
  for (const auto& e : entries) {
    const double sample = e.line ? 18 : 10;
    const double w = sample + 5 + text_width(e.text, font) + 16;
    if (x > left && x + w > right) {
      x = left;
      y += row_h;
    }
    if (e.line) {
      doc.line(x, y - font * 0.35, x + sample, y - font * 0.35,
               Attrs()("stroke", e.color)("stroke-width", 2.0));
    } else {
      doc.rect(x, y - font * 0.8, 10, 10, Attrs()("fill", e.color));
    }
    doc.text(x + sample + 5, y, e.text, Attrs()("font-size", font)("fill", "#333333"));
    x += w;
  }
  return y + row_h;
}

}  // namespace plots_detail

inline std::string timeline_svg(const data::VideoAnnotation& gt,
                                const std::vector<eval::Prediction>& preds,
                                const std::map<int, std::string>& label_names,
                                const TimelineOptions& opt = TimelineOptions()) {
  using namespace plots_detail;
  FLOWLESS_CHECK(std::isfinite(opt.width) && opt.width >= 320, "timeline_svg: width ",
                 opt.width, " is too small (need at least 320 px)");
  const double W = opt.width;

  // ---- the detections drawn ----
  std::vector<const eval::Prediction*> dets;
  size_t n_video = 0, n_below = 0;
  for (const auto& p : preds) {
    if (p.video_id != gt.id) continue;
    ++n_video;
    if (!std::isfinite(p.start) || !std::isfinite(p.end) || !std::isfinite(p.score)) continue;
    if (p.score < opt.min_score) {
      ++n_below;
      continue;
    }
    dets.push_back(&p);
  }
  std::stable_sort(dets.begin(), dets.end(),
                   [](const eval::Prediction* a, const eval::Prediction* b) { return a->score > b->score; });
  if (opt.top_k > 0 && dets.size() > static_cast<size_t>(opt.top_k)) dets.resize(opt.top_k);

  std::vector<const data::Segment*> segs;
  for (const auto& s : gt.segments)
    if (std::isfinite(s.start) && std::isfinite(s.end)) segs.push_back(&s);

  // ---- time range and lanes ----
  double t_max = std::isfinite(gt.duration) && gt.duration > 0 ? gt.duration : 0.0;
  for (const auto* s : segs) t_max = std::max(t_max, std::max(s->start, s->end));
  for (const auto* p : dets) t_max = std::max(t_max, std::max(p->start, p->end));
  if (!(t_max > 0)) t_max = 1;

  std::map<int, Lane> lanes;
  auto lane_of = [&](int id, const std::string& seg_label) -> Lane& {
    auto it = lanes.find(id);
    if (it != lanes.end()) {
      if (it->second.name.empty() && !seg_label.empty()) it->second.name = seg_label;
      return it->second;
    }
    Lane l;
    l.label_id = id;
    auto nt = label_names.find(id);
    if (nt != label_names.end() && !nt->second.empty()) l.name = nt->second;
    else l.name = seg_label;
    return lanes.emplace(id, l).first->second;
  };
  for (const auto* s : segs) ++lane_of(s->label_id, s->label).n_gt;
  for (const auto* p : dets) ++lane_of(p->label_id, std::string()).n_det;
  for (auto& [id, l] : lanes)
    if (l.name.empty()) l.name = "class " + std::to_string(id);

  // ---- layout ----
  const double name_font = 12, small = 10;
  double col = 90;
  for (const auto& [id, l] : lanes) col = std::max(col, text_width(l.name, name_font) + 44);
  col = std::min(col, std::max(90.0, std::min(280.0, 0.35 * W)));
  const size_t name_chars =
      static_cast<size_t>(std::max(4.0, (col - 44) / (0.6 * name_font) + 1e-6));
  const double left = 12 + col, right = W - 18, plot_w = right - left;
  auto xof = [&](double t) { return left + std::max(t, 0.0) / t_max * plot_w; };
  const double lane_h = 56, lanes_top = 62;
  const double gt_top = 6, gt_h = 18, div_y = 28, det_top = 30, det_h = 22;
  const double n_lanes = static_cast<double>(lanes.size());
  const double lanes_h = lanes.empty() ? 64 : n_lanes * lane_h;
  const double axis_y = lanes_top + lanes_h + 2;

  SvgDocument doc(W);
  // Title and subtitle.
  const std::string title = opt.title.empty() ? "video " + gt.id : opt.title;
  doc.text(14, 24, ellipsize(title, static_cast<size_t>((W - 28) / (0.6 * 15))),
           Attrs()("font-size", 15.0)("font-weight", "bold")("fill", "#111111"));
  {
    std::string sub;
    if (!gt.subset.empty()) sub += gt.subset + " \xC2\xB7 ";
    sub += "duration " + seconds(gt.duration) + " s \xC2\xB7 " + std::to_string(segs.size()) +
           " GT segment" + (segs.size() == 1 ? "" : "s") + " \xC2\xB7 ";
    sub += "showing " + std::to_string(dets.size()) + " of " + std::to_string(n_video) +
           " detection" + (n_video == 1 ? "" : "s");
    if (opt.top_k > 0) sub += " (top " + std::to_string(opt.top_k);
    else sub += " (all";
    if (opt.min_score > 0) sub += ", score \xE2\x89\xA5 " + fmt_g(opt.min_score, 3);
    sub += ")";
    doc.text(14, 42, ellipsize(sub, static_cast<size_t>((W - 28) / (0.6 * 11))),
             Attrs()("font-size", 11.0)("fill", "#555555"));
  }

  // Lane backgrounds.
  {
    size_t i = 0;
    for (const auto& [id, l] : lanes) {
      (void)id;
      const double y0 = lanes_top + static_cast<double>(i) * lane_h;
      doc.rect(6, y0, W - 12, lane_h, Attrs()("fill", i % 2 ? "#ffffff" : "#f4f5f7"));
      ++i;
    }
  }
  // Time grid and axis.
  const std::vector<double> ticks =
      nice_ticks(0, t_max, std::max(2, static_cast<int>(plot_w / 90)));
  const std::vector<std::string> tick_text = tick_labels(ticks);
  for (double t : ticks)
    doc.line(xof(t), lanes_top, xof(t), axis_y, Attrs()("stroke", "#dddddd")("stroke-width", 1.0));
  doc.line(left, axis_y, right, axis_y, Attrs()("stroke", "#444444")("stroke-width", 1.0));
  for (size_t k = 0; k < ticks.size(); ++k) {
    doc.line(xof(ticks[k]), axis_y, xof(ticks[k]), axis_y + 5, Attrs()("stroke", "#444444"));
    doc.text(xof(ticks[k]), axis_y + 17, tick_text[k],
             Attrs()("font-size", small)("text-anchor", "middle")("fill", "#333333"));
  }
  doc.text(left + plot_w / 2, axis_y + 33, "time (s)",
           Attrs()("font-size", 11.0)("text-anchor", "middle")("fill", "#333333"));

  if (lanes.empty()) {
    std::string msg = "no ground-truth segments or detections for this video";
    if (n_below > 0)
      msg += " (" + std::to_string(n_below) + " detection" + (n_below == 1 ? "" : "s") +
             " below min_score " + fmt_g(opt.min_score, 3) + ")";
    doc.text(left + plot_w / 2, lanes_top + lanes_h / 2 + 4, msg,
             Attrs()("class", "nodata")("font-size", 13.0)("text-anchor", "middle")("fill", "#777777"));
  }

  // Lanes: labels, GT bars, detections, scores.
  std::map<int, double> lane_y;
  {
    size_t i = 0;
    for (const auto& [id, l] : lanes) {
      const double y0 = lanes_top + static_cast<double>(i++) * lane_h;
      lane_y[id] = y0;
      const std::string color = class_color(id);
      doc.open("g", Attrs()("class", "lane c" + std::to_string(id)));
      doc.rect(14, y0 + 13, 10, 10, Attrs()("fill", color), l.name);
      doc.text(30, y0 + 22, ellipsize(l.name, name_chars),
               Attrs()("font-size", name_font)("fill", "#111111"));
      doc.text(30, y0 + 38,
               std::to_string(l.n_gt) + " GT \xC2\xB7 " + std::to_string(l.n_det) + " det",
               Attrs()("font-size", small)("fill", "#777777"));
      doc.text(left - 5, y0 + gt_top + 13, "GT",
               Attrs()("font-size", 9.0)("text-anchor", "end")("fill", "#999999"));
      doc.text(left - 5, y0 + det_top + 10, "det",
               Attrs()("font-size", 9.0)("text-anchor", "end")("fill", "#999999"));
      doc.line(left, y0 + div_y, right, y0 + div_y,
               Attrs()("stroke", "#c8c8c8")("stroke-width", 0.8)("stroke-dasharray", "3,3"));
      doc.close();
    }
  }
  doc.open("g", Attrs()("class", "gt-bars"));
  for (const auto* s : segs) {
    const double a = std::min(s->start, s->end), b = std::max(s->start, s->end);
    const double x = xof(a), w = std::max(1.0, xof(b) - x);
    const Lane& l = lanes.at(s->label_id);
    doc.rect(x, lane_y.at(s->label_id) + gt_top, w, gt_h,
             Attrs()("class", "gt c" + std::to_string(s->label_id))("fill", class_color(s->label_id))(
                 "stroke", "#222222")("stroke-width", 0.6),
             l.name + " (ground truth): " + seconds(s->start) + "\xE2\x80\x93" + seconds(s->end) +
                 " s");
  }
  doc.close();
  doc.open("g", Attrs()("class", "detections"));
  for (auto it = dets.rbegin(); it != dets.rend(); ++it) {  // best painted last
    const eval::Prediction* p = *it;
    const double s = std::clamp(p->score, 0.0, 1.0);
    const double a = std::min(p->start, p->end), b = std::max(p->start, p->end);
    const double x = xof(a), w = std::max(1.0, xof(b) - x);
    const Lane& l = lanes.at(p->label_id);
    const std::string color = class_color(p->label_id);
    doc.rect(x, lane_y.at(p->label_id) + det_top, w, std::max(2.0, det_h * s),
             Attrs()("class", "det c" + std::to_string(p->label_id))("fill", color)(
                 "fill-opacity", 0.2 + 0.7 * s)("stroke", color)("stroke-width", 0.8)(
                 "stroke-opacity", 0.5 + 0.5 * s),
             l.name + " (detection): " + seconds(p->start) + "\xE2\x80\x93" + seconds(p->end) +
                 " s, score " + fmt_fixed(p->score, 3));
  }
  doc.close();
  doc.open("g", Attrs()("class", "scores"));
  {
    std::map<int, std::vector<std::vector<std::pair<double, double>>>> used;  // lane -> row -> spans
    const double font = 9;
    for (const eval::Prediction* p : dets) {  // best first
      const std::string txt = fmt_fixed(p->score, 2);
      const double tw = text_width(txt, font);
      const double a = std::min(p->start, p->end), b = std::max(p->start, p->end);
      const double cx = std::clamp((xof(a) + xof(b)) / 2, left + tw / 2, right - tw / 2);
      auto& rows = used[p->label_id];
      rows.resize(2);
      for (size_t r = 0; r < rows.size(); ++r) {
        bool free = true;
        for (const auto& [u0, u1] : rows[r])
          if (cx - tw / 2 - 2 < u1 && cx + tw / 2 + 2 > u0) free = false;
        if (!free) continue;
        rows[r].emplace_back(cx - tw / 2, cx + tw / 2);
        const double y = lane_y.at(p->label_id) + det_top + 9 + 11 * static_cast<double>(r);
        doc.text(cx, y, txt,
                 Attrs()("class", "score")("font-size", font)("text-anchor", "middle")(
                     "fill", "#111111")("stroke", "#ffffff")("stroke-width", 2.5)(
                     "stroke-opacity", 0.85)("paint-order", "stroke"));
        break;
      }
    }
  }
  doc.close();

  // Legend.
  double y = axis_y + 56;
  if (!lanes.empty()) {
    std::vector<LegendEntry> entries;
    for (const auto& [id, l] : lanes) entries.push_back({ellipsize(l.name, 40), class_color(id), false});
    y = draw_legend(doc, entries, 14, W - 14, y, 11);
    // Key: GT bar and detections of growing score.
    const double ky = y + 2;
    doc.rect(14, ky - 10, 26, 10, Attrs()("fill", "#888888")("stroke", "#222222")("stroke-width", 0.6));
    doc.text(46, ky, "ground truth", Attrs()("font-size", 11.0)("fill", "#333333"));
    const double kx = 46 + text_width("ground truth", 11) + 24;
    const double ss[3] = {0.25, 0.6, 1.0};
    for (int k = 0; k < 3; ++k)
      doc.rect(kx + 14 * k, ky - 11, 11, std::max(2.0, 12 * ss[k]),
               Attrs()("fill", "#888888")("fill-opacity", 0.2 + 0.7 * ss[k])("stroke", "#888888")(
                   "stroke-width", 0.8)("stroke-opacity", 0.5 + 0.5 * ss[k]));
    doc.text(kx + 48, ky, "detections: height and opacity grow with the score",
             Attrs()("font-size", 11.0)("fill", "#333333"));
    y = ky + 14;
  }
  return doc.finish(y);
}

namespace plots_detail {

/// One chart at vertical offset y0; returns the height used.
/// x_range: a fixed x range (both finite, lo < hi) or NaNs (fitted to the data).
inline double draw_chart(SvgDocument& doc, double y0, const std::string& title, double title_font,
                         const std::vector<Series>& series, const CurveOptions& opt, int clip_id,
                         const std::string& y_label,
                         std::pair<double, double> x_range = {NAN, NAN}) {
  const double W = doc.width();
  for (const auto& s : series)
    FLOWLESS_CHECK(s.x.size() == s.y.size(), "curves_svg: series '", s.name, "' has ",
                   s.x.size(), " x values but ", s.y.size(), " y values");
  auto usable = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!opt.log_y || y > 0);
  };

  double y = y0;
  if (!title.empty()) {
    doc.text(14, y + title_font + 6, ellipsize(title, static_cast<size_t>((W - 28) / (0.6 * title_font))),
             Attrs()("font-size", title_font)("font-weight", "bold")("fill", "#111111"));
    y += title_font + 14;
  } else {
    y += 8;
  }

  // Data range.
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  bool all_int = true;
  size_t n_points = 0;
  std::vector<LegendEntry> legend;
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    double last = NAN;
    for (size_t k = 0; k < s.x.size(); ++k) {
      if (!usable(s.x[k], s.y[k])) continue;
      ++n_points;
      x_lo = std::min(x_lo, s.x[k]);
      x_hi = std::max(x_hi, s.x[k]);
      y_lo = std::min(y_lo, s.y[k]);
      y_hi = std::max(y_hi, s.y[k]);
      if (s.x[k] != std::floor(s.x[k])) all_int = false;
      last = s.y[k];
    }
    std::string name = s.name.empty() ? "series " + std::to_string(i + 1) : s.name;
    name = ellipsize(name, 48);
    name += std::isfinite(last) ? " (last: " + fmt_g(last, 4) + ")" : " (no data)";
    legend.push_back({name, series_color(static_cast<int>(i)), true});
  }
  if (!legend.empty()) y = draw_legend(doc, legend, 14, W - 14, y + 12, 11) - 4;

  // y range.
  if (std::isfinite(opt.y_min) && (!opt.log_y || opt.y_min > 0)) y_lo = opt.y_min;
  if (std::isfinite(opt.y_max) && (!opt.log_y || opt.y_max > 0)) y_hi = opt.y_max;
  const bool have = n_points > 0;
  if (!have) {
    x_lo = 0, x_hi = 1;
    if (!std::isfinite(y_lo)) y_lo = opt.log_y ? 1 : 0;
    if (!std::isfinite(y_hi)) y_hi = opt.log_y ? 10 : 1;
  }
  if (y_lo > y_hi) std::swap(y_lo, y_hi);
  std::vector<double> yt;
  const bool log_y = opt.log_y;
  auto ymap_v = [log_y](double v) { return log_y ? std::log10(v) : v; };  // value -> axis coordinate
  if (opt.log_y) {
    // Round out to the nearest 1-2-5 values: the largest <= y_lo, the smallest >= y_hi.
    auto down125 = [](double v) {
      const double p = std::pow(10.0, std::floor(std::log10(v)));
      for (double m : {5.0, 2.0, 1.0})
        if (m * p <= v * (1 + 1e-12)) return m * p;
      return p;
    };
    auto up125 = [](double v) {
      const double p = std::pow(10.0, std::floor(std::log10(v)));
      for (double m : {1.0, 2.0, 5.0, 10.0})
        if (m * p >= v * (1 - 1e-12)) return m * p;
      return 10 * p;
    };
    if (!std::isfinite(opt.y_min)) y_lo = down125(y_lo);
    if (!std::isfinite(opt.y_max)) y_hi = up125(y_hi);
    if (y_hi <= y_lo) y_hi = up125(y_lo * 1.5);
    const double d0 = std::floor(std::log10(y_lo)), d1 = std::ceil(std::log10(y_hi));
    const bool fine = d1 - d0 <= 3;
    for (double d = d0; d <= d1; d += 1)
      for (double m : {1.0, 2.0, 5.0}) {
        if (!fine && m != 1.0) continue;
        const double v = m * std::pow(10.0, d);
        if (v >= y_lo * (1 - 1e-12) && v <= y_hi * (1 + 1e-12)) yt.push_back(v);
      }
  } else {
    if (y_hi == y_lo) {
      const double pad = y_lo != 0 ? std::fabs(y_lo) * 0.1 : 1.0;
      if (!std::isfinite(opt.y_min)) y_lo -= pad;
      if (!std::isfinite(opt.y_max)) y_hi += pad;
      if (y_hi == y_lo) y_hi = y_lo + 1;
    }
    const double step = nice_step(y_lo, y_hi, 6);
    if (!std::isfinite(opt.y_min)) y_lo = std::floor(y_lo / step + 1e-9) * step;
    if (!std::isfinite(opt.y_max)) y_hi = std::ceil(y_hi / step - 1e-9) * step;
    yt = nice_ticks(y_lo, y_hi, 7);
  }
  std::vector<std::string> yt_text;
  if (opt.log_y) {
    for (double v : yt) yt_text.push_back(fmt_g(v, 3));
  } else {
    yt_text = tick_labels(yt);
  }
  if (have && std::isfinite(x_range.first) && std::isfinite(x_range.second) &&
      x_range.first < x_range.second) {
    x_lo = x_range.first;
    x_hi = x_range.second;
  }
  if (x_hi == x_lo) {
    x_lo -= all_int ? 1 : 0.5;
    x_hi += all_int ? 1 : 0.5;
  }

  // Plot area.
  double label_w = 0;
  for (const auto& t : yt_text) label_w = std::max(label_w, text_width(t, 10));
  const double left = 14 + (y_label.empty() ? 0 : 18) + label_w + 8;
  const double right = W - 18;
  const double top = y + 6, bottom = y0 + (y - y0) + opt.height - 44;
  const double pw = right - left, ph = bottom - top;
  const double a0 = ymap_v(y_lo), a1 = ymap_v(y_hi);
  auto px = [&](double x) { return left + (x - x_lo) / (x_hi - x_lo) * pw; };
  auto py = [&](double v) { return bottom - (ymap_v(v) - a0) / (a1 - a0) * ph; };

  std::vector<double> xt =
      nice_ticks(x_lo, x_hi, std::max(2, static_cast<int>(pw / 70)), all_int);
  if (!have) xt.clear(), yt.clear(), yt_text.clear();  // an empty frame: no made-up scale
  const std::vector<std::string> xt_text = tick_labels(xt);
  for (size_t k = 0; k < yt.size(); ++k) {
    const double yy = py(yt[k]);
    doc.line(left, yy, right, yy, Attrs()("stroke", "#e6e6e6")("stroke-width", 1.0));
    doc.text(left - 6, yy + 3.5, yt_text[k],
             Attrs()("font-size", 10.0)("text-anchor", "end")("fill", "#333333"));
  }
  for (size_t k = 0; k < xt.size(); ++k) {
    const double xx = px(xt[k]);
    doc.line(xx, top, xx, bottom, Attrs()("stroke", "#f0f0f0")("stroke-width", 1.0));
    doc.line(xx, bottom, xx, bottom + 5, Attrs()("stroke", "#444444"));
    doc.text(xx, bottom + 17, xt_text[k],
             Attrs()("font-size", 10.0)("text-anchor", "middle")("fill", "#333333"));
  }
  doc.rect(left, top, pw, ph, Attrs()("fill", "none")("stroke", "#888888")("stroke-width", 1.0));
  if (!opt.x_label.empty())
    doc.text(left + pw / 2, bottom + 34, opt.x_label,
             Attrs()("font-size", 11.0)("text-anchor", "middle")("fill", "#333333"));
  if (!y_label.empty()) {
    const double lx = 14 + 10, ly = top + ph / 2;
    doc.text(lx, ly, y_label,
             Attrs()("font-size", 11.0)("text-anchor", "middle")("fill", "#333333")(
                 "transform", "rotate(-90 " + fmt_num(lx) + " " + fmt_num(ly) + ")"));
  }

  if (!have) {
    doc.text(left + pw / 2, top + ph / 2 + 5, "no data",
             Attrs()("class", "nodata")("font-size", 14.0)("text-anchor", "middle")("fill", "#888888"));
    return bottom + 44 - y0;
  }

  const std::string clip = "flowless-clip-" + std::to_string(clip_id);
  doc.open("defs");
  doc.open("clipPath", Attrs()("id", clip));
  doc.rect(left - 3, top - 3, pw + 6, ph + 6);
  doc.close();
  doc.close();
  doc.open("g", Attrs()("clip-path", "url(#" + clip + ")"));
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    const std::string color = series_color(static_cast<int>(i));
    doc.open("g", Attrs()("class", "series s" + std::to_string(i)));
    std::string pts;
    size_t run = 0, usable_n = 0;
    auto flush = [&]() {
      if (run >= 2)
        doc.leaf("polyline", Attrs()("points", pts)("fill", "none")("stroke", color)(
                                 "stroke-width", 1.8)("stroke-linejoin", "round"));
      pts.clear();
      run = 0;
    };
    for (size_t k = 0; k < s.x.size(); ++k) {
      if (!usable(s.x[k], s.y[k])) {
        flush();
        continue;
      }
      ++usable_n;
      if (run) pts += ' ';
      pts += fmt_num(px(s.x[k])) + "," + fmt_num(py(s.y[k]));
      ++run;
    }
    flush();
    // Dots: every point for short series, and always for points with no neighbour.
    for (size_t k = 0; k < s.x.size(); ++k) {
      if (!usable(s.x[k], s.y[k])) continue;
      const bool prev = k > 0 && usable(s.x[k - 1], s.y[k - 1]);
      const bool next = k + 1 < s.x.size() && usable(s.x[k + 1], s.y[k + 1]);
      if ((opt.markers && usable_n <= 60) || (!prev && !next))
        doc.leaf("circle", Attrs()("cx", px(s.x[k]))("cy", py(s.y[k]))("r", 2.4)("fill", color),
                 (s.name.empty() ? std::string() : s.name + ": ") + fmt_g(s.x[k], 6) + ", " +
                     fmt_g(s.y[k], 6));
    }
    doc.close();
  }
  doc.close();
  return bottom + 44 - y0;
}

}  // namespace plots_detail

inline std::string curves_svg(const std::vector<Series>& series,
                              const CurveOptions& opt = CurveOptions()) {
  FLOWLESS_CHECK(std::isfinite(opt.width) && opt.width >= 320, "curves_svg: width ", opt.width,
                 " is too small (need at least 320 px)");
  FLOWLESS_CHECK(std::isfinite(opt.height) && opt.height >= 120, "curves_svg: height ",
                 opt.height, " is too small (need at least 120 px)");
  SvgDocument doc(opt.width);
  const double h = plots_detail::draw_chart(doc, 0, opt.title, 15, series, opt, 0, opt.y_label);
  return doc.finish(h + 6);
}

inline std::string curves_panel_svg(
    const std::vector<std::pair<std::string, std::vector<Series>>>& panels,
    const CurveOptions& opt = CurveOptions()) {
  FLOWLESS_CHECK(std::isfinite(opt.width) && opt.width >= 320, "curves_panel_svg: width ",
                 opt.width, " is too small (need at least 320 px)");
  FLOWLESS_CHECK(std::isfinite(opt.height) && opt.height >= 120, "curves_panel_svg: height ",
                 opt.height, " is too small (need at least 120 px)");
  SvgDocument doc(opt.width);
  double y = 0;
  if (!opt.title.empty()) {
    doc.text(14, 24, ellipsize(opt.title, static_cast<size_t>((opt.width - 28) / (0.6 * 16))),
             Attrs()("font-size", 16.0)("font-weight", "bold")("fill", "#111111"));
    y = 32;
  }
  if (panels.empty()) {
    y += plots_detail::draw_chart(doc, y, "", 13, {}, opt, 0, "");
  }
  // One x range for all panels, so that epochs line up.
  double x_lo = INFINITY, x_hi = -INFINITY;
  for (const auto& [name, series] : panels)
    for (const auto& s : series)
      for (size_t k = 0; k < std::min(s.x.size(), s.y.size()); ++k)
        if (std::isfinite(s.x[k]) && std::isfinite(s.y[k]) && (!opt.log_y || s.y[k] > 0)) {
          x_lo = std::min(x_lo, s.x[k]);
          x_hi = std::max(x_hi, s.x[k]);
        }
  for (size_t i = 0; i < panels.size(); ++i) {
    if (i > 0) {
      doc.line(8, y + 4, opt.width - 8, y + 4, Attrs()("stroke", "#eeeeee"));
      y += 8;
    }
    y += plots_detail::draw_chart(doc, y, panels[i].first, 13, panels[i].second, opt,
                                  static_cast<int>(i), "", {x_lo, x_hi});
  }
  return doc.finish(y + 6);
}

namespace plots_detail {

inline std::string file_stem(const std::string& id) {
  std::string s;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    s += ok ? c : '_';
  }
  if (s.size() > 120) s.resize(120);
  if (s.empty() || s[0] == '.' || s[0] == '-') s = "v_" + s;
  return s;
}

}  // namespace plots_detail

inline void write_timelines(const std::string& out_dir, const data::Annotations& ann,
                            const std::string& split, const std::vector<eval::Prediction>& preds,
                            int max_videos, const TimelineOptions& opt = TimelineOptions()) {
  using namespace plots_detail;
  FLOWLESS_CHECK(!out_dir.empty(), "write_timelines: empty output folder");
  io::make_dirs(out_dir);
  const std::vector<const data::VideoAnnotation*> all =
      split.empty() ? ann.split({}) : ann.split({split});
  std::vector<const data::VideoAnnotation*> videos = all;
  if (max_videos > 0 && videos.size() > static_cast<size_t>(max_videos)) videos.resize(max_videos);

  std::unordered_map<std::string, std::vector<eval::Prediction>> by_video;
  for (const auto& v : videos) by_video.emplace(v->id, std::vector<eval::Prediction>());
  for (const auto& p : preds) {
    auto it = by_video.find(p.video_id);
    if (it != by_video.end()) it->second.push_back(p);
  }

  struct Row {
    const data::VideoAnnotation* v;
    std::string file;
    size_t n_det;
    double top;
  };
  std::vector<Row> rows;
  std::set<std::string> taken;  // lower-cased file names
  for (const auto* v : videos) {
    const std::string stem = file_stem(v->id);
    std::string file = stem + ".svg";
    for (int k = 2; !taken.insert(data::annotations_detail::lower(file)).second; ++k)
      file = stem + "_" + std::to_string(k) + ".svg";
    const auto& vp = by_video.at(v->id);
    const std::string svg = timeline_svg(*v, vp, ann.label_names, opt);
    io::write_file_atomic(out_dir + "/" + file, svg);
    double top = NAN;
    for (const auto& p : vp)
      if (std::isfinite(p.score) && !(p.score <= top)) top = p.score;
    rows.push_back({v, file, vp.size(), top});
  }

  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>";
  const std::string split_name = split.empty() ? std::string("all videos") : "split " + split;
  h += xml_escape("flowless timelines: " + split_name);
  h += "</title>\n<style>\n"
       "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px;color:#222}\n"
       "table{border-collapse:collapse;margin:12px 0 24px}\n"
       "th,td{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left}\n"
       "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
       "img{max-width:100%;border:1px solid #e4e4e4;margin:6px 0 20px}\n"
       "h2{font-size:15px;margin:18px 0 0}\n"
       "</style>\n</head>\n<body>\n";
  h += "<h1>Detections vs ground truth</h1>\n<p>";
  h += xml_escape(split_name) + ": showing " + std::to_string(rows.size()) + " of " +
       std::to_string(all.size()) + " video" + (all.size() == 1 ? "" : "s") + "; " +
       std::to_string(preds.size()) + " prediction" + (preds.size() == 1 ? "" : "s") + " in total";
  if (opt.top_k > 0) h += "; top " + std::to_string(opt.top_k) + " detections per video drawn";
  if (opt.min_score > 0) h += ", score &#8805; " + xml_escape(fmt_g(opt.min_score, 3));
  h += ".</p>\n";
  if (rows.empty()) {
    h += "<p><em>No videos in " + xml_escape(split_name) + ".</em></p>\n";
  } else {
    h += "<table>\n<tr><th>video</th><th>subset</th><th>duration (s)</th><th>GT segments</th>"
         "<th>detections</th><th>top score</th></tr>\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      h += "<tr><td><a href=\"#v" + std::to_string(i) + "\">" + xml_escape(r.v->id) +
           "</a> (<a href=\"" + xml_escape(r.file) + "\">svg</a>)</td><td>" +
           xml_escape(r.v->subset) + "</td><td class=\"n\">" + fmt_fixed(r.v->duration, 1) +
           "</td><td class=\"n\">" + std::to_string(r.v->segments.size()) +
           "</td><td class=\"n\">" + std::to_string(r.n_det) + "</td><td class=\"n\">" +
           (std::isfinite(r.top) ? fmt_fixed(r.top, 3) : std::string("&#8211;")) + "</td></tr>\n";
    }
    h += "</table>\n";
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      h += "<h2 id=\"v" + std::to_string(i) + "\"><a href=\"" + xml_escape(r.file) + "\">" +
           xml_escape(r.v->id) + "</a></h2>\n<img src=\"" + xml_escape(r.file) +
           "\" alt=\"" + xml_escape("timeline of " + r.v->id) + "\" loading=\"lazy\">\n";
    }
  }
  h += "</body>\n</html>\n";
  io::write_file_atomic(out_dir + "/index.html", h);
}

}  // namespace flowless::viz
