#include "eval/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "core/text.h"
#include "data/image_io.h"
#include "eval/visualize.h"

namespace medsad::eval {
namespace {

constexpr int kThumbnail = 160;   // longest side of a gallery picture, pixels
constexpr double kPlot = 260;     // side of a curve's plotting square in the SVG, units

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string number(double v, int digits = 3) {
  if (std::isnan(v)) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string png_data_uri(const cv::Mat& image) { return "data:image/png;base64," + base64(encode_png(image)); }

cv::Mat thumbnail(const cv::Mat& image) {
  const double scale = static_cast<double>(kThumbnail) / std::max(image.rows, image.cols);
  if (scale >= 1) return image;
  cv::Mat out;
  cv::resize(image, out, cv::Size(), scale, scale, cv::INTER_AREA);
  return out;
}

// Points in [0, 1]^2 as an SVG plot with axes, labels and an optional chance line.
std::string svg_curve(const std::vector<std::pair<double, double>>& points, const std::string& title,
                      const std::string& x_label, const std::string& y_label, bool diagonal) {
  const double m = 40, size = kPlot + 2 * m;
  std::ostringstream s;
  s << "<svg class=\"curve\" viewBox=\"0 0 " << size << ' ' << size << "\" width=\"" << size << "\" height=\"" << size
    << "\" role=\"img\" aria-label=\"" << escape(title) << "\">";
  s << "<text x=\"" << size / 2 << "\" y=\"18\" text-anchor=\"middle\" class=\"t\">" << escape(title) << "</text>";
  s << "<rect x=\"" << m << "\" y=\"" << m << "\" width=\"" << kPlot << "\" height=\"" << kPlot << "\" class=\"frame\"/>";
  for (int i = 0; i <= 4; ++i) {
    const double f = i / 4.0;
    s << "<text x=\"" << m + f * kPlot << "\" y=\"" << m + kPlot + 14 << "\" text-anchor=\"middle\">" << number(f, 2)
      << "</text><text x=\"" << m - 4 << "\" y=\"" << m + (1 - f) * kPlot + 4 << "\" text-anchor=\"end\">"
      << number(f, 2) << "</text>";
  }
  s << "<text x=\"" << size / 2 << "\" y=\"" << size - 6 << "\" text-anchor=\"middle\">" << escape(x_label)
    << "</text><text x=\"12\" y=\"" << size / 2 << "\" transform=\"rotate(-90 12 " << size / 2
    << ")\" text-anchor=\"middle\">" << escape(y_label) << "</text>";
  if (diagonal)
    s << "<line x1=\"" << m << "\" y1=\"" << m + kPlot << "\" x2=\"" << m + kPlot << "\" y2=\"" << m << "\" class=\"chance\"/>";
  s << "<polyline class=\"line\" points=\"";
  for (const auto& [x, y] : points) s << m + x * kPlot << ',' << m + (1 - y) * kPlot << ' ';
  s << "\"/></svg>";
  return s.str();
}

// Score histograms of normal and abnormal images (20 bins over [0, 1]) and the threshold.
std::string svg_histogram(const std::vector<double>& scores, const std::vector<int>& labels, double threshold) {
  constexpr int kBins = 20;
  int counts[2][kBins] = {};
  int top = 1;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] < 0) continue;
    const int bin = std::clamp(static_cast<int>(scores[i] * kBins), 0, kBins - 1);
    top = std::max(top, ++counts[labels[i]][bin]);
  }
  const double m = 40, w = kPlot * 1.6, h = kPlot * 0.8, bar = w / kBins;
  std::ostringstream s;
  s << "<svg class=\"histogram\" viewBox=\"0 0 " << w + 2 * m << ' ' << h + 2 * m << "\" width=\"" << w + 2 * m
    << "\" height=\"" << h + 2 * m << "\" role=\"img\" aria-label=\"score histograms\">";
  s << "<text x=\"" << m + w / 2 << "\" y=\"18\" text-anchor=\"middle\" class=\"t\">Image scores: normal (blue), "
       "abnormal (red), threshold (black)</text>";
  s << "<rect x=\"" << m << "\" y=\"" << m << "\" width=\"" << w << "\" height=\"" << h << "\" class=\"frame\"/>";
  for (int c = 0; c < 2; ++c)
    for (int b = 0; b < kBins; ++b) {
      const double bh = h * counts[c][b] / top;
      s << "<rect class=\"" << (c ? "abn" : "nor") << "\" x=\"" << m + b * bar + c * bar / 2 << "\" y=\"" << m + h - bh
        << "\" width=\"" << bar / 2 << "\" height=\"" << bh << "\"><title>" << counts[c][b] << "</title></rect>";
    }
  const double tx = m + std::clamp(threshold, 0.0, 1.0) * w;
  s << "<line x1=\"" << tx << "\" y1=\"" << m << "\" x2=\"" << tx << "\" y2=\"" << m + h << "\" class=\"thr\"/>";
  for (int i = 0; i <= 4; ++i)
    s << "<text x=\"" << m + i / 4.0 * w << "\" y=\"" << m + h + 14 << "\" text-anchor=\"middle\">" << number(i / 4.0, 2)
      << "</text>";
  s << "<text x=\"" << m - 4 << "\" y=\"" << m + 4 << "\" text-anchor=\"end\">" << top << "</text></svg>";
  return s.str();
}

std::string metrics_table(const nlohmann::json& metrics) {
  std::ostringstream s;
  s << "<table class=\"metrics\"><tr><th>level</th><th>metric</th><th>value</th></tr>";
  for (const char* level : {"image", "pixel"}) {
    if (!metrics.contains(level)) continue;
    for (const auto& [key, value] : metrics[level].items()) {
      std::string shown = escape(json_text(value));
      if (value.is_number()) shown = number(value.get<double>());
      if (value.is_array() && value.size() == 2 && value[0].is_number() && value[1].is_number())  // an interval
        shown = number(value[0].get<double>()) + " &ndash; " + number(value[1].get<double>());
      s << "<tr><td>" << level << "</td><td>" << escape(key) << "</td><td>" << shown << "</td></tr>";
    }
  }
  s << "</table>";
  return s.str();
}

// One gallery card: outcome class, caption and the three pictures.
std::string card(const ImageResult& r, const model::Calibration& calibration) {
  const bool called = r.error.empty() && r.score >= calibration.image_threshold;
  std::string outcome = "unknown";
  if (!r.error.empty()) outcome = "error";
  else if (r.label == 1) outcome = called ? "tp" : "fn";
  else if (r.label == 0) outcome = called ? "fp" : "tn";
  static const std::map<std::string, std::string> badge = {
      {"tp", "true positive"}, {"fn", "FALSE NEGATIVE"}, {"fp", "FALSE POSITIVE"},
      {"tn", "true negative"}, {"unknown", "no label"},    {"error", "unreadable"}};
  std::ostringstream s;
  s << "<figure class=\"card " << outcome << "\" data-score=\"" << number(r.score, 6) << "\">";
  if (r.error.empty()) {
    try {
      const auto rgb = read_image_rgb(r.path);
      cv::Mat image = to_mat_u8(rgb.mean(0));
      cv::cvtColor(image, image, cv::COLOR_GRAY2BGR);
      const cv::Mat lesion = to_mat_u8((r.map >= calibration.pixel_threshold).to(torch::kFloat32));
      s << "<img alt=\"image\" src=\"" << png_data_uri(thumbnail(image)) << "\">";
      if (r.mask.defined()) s << "<img alt=\"ground truth\" src=\"" << png_data_uri(thumbnail(to_mat_u8(r.mask))) << "\">";
      s << "<img alt=\"prediction\" src=\"" << png_data_uri(thumbnail(anomaly_overlay(rgb, r.map, lesion))) << "\">";
    } catch (const Error&) {
      outcome = "error";
    }
  }
  s << "<figcaption><b>" << badge.at(outcome) << "</b> score " << number(r.score) << "<br><span class=\"path\">"
    << escape(r.path) << "</span>" << (r.error.empty() ? "" : "<br>" + escape(r.error)) << "</figcaption></figure>";
  return s.str();
}

std::vector<std::pair<double, double>> curve(const std::vector<double>& scores, const std::vector<int>& labels, bool roc) {
  std::vector<size_t> order;
  for (size_t i = 0; i < scores.size(); ++i)
    if (labels[i] >= 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  double positives = 0, negatives = 0;
  for (size_t i : order) (labels[i] ? positives : negatives) += 1;
  std::vector<std::pair<double, double>> points;
  if (roc) points.emplace_back(0, 0);
  double tp = 0, fp = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    (labels[order[k]] ? tp : fp) += 1;
    if (k + 1 < order.size() && scores[order[k + 1]] == scores[order[k]]) continue;  // ties move together
    if (roc) points.emplace_back(negatives > 0 ? fp / negatives : 0, positives > 0 ? tp / positives : 0);
    else points.emplace_back(positives > 0 ? tp / positives : 0, tp / (tp + fp));
  }
  return points;
}

}  // namespace

std::vector<std::pair<double, double>> roc_points(const std::vector<double>& scores, const std::vector<int>& labels) {
  return curve(scores, labels, true);
}

std::vector<std::pair<double, double>> pr_points(const std::vector<double>& scores, const std::vector<int>& labels) {
  return curve(scores, labels, false);
}

void write_html_report(const std::string& dir, const std::string& title, const std::vector<ImageResult>& results,
                       const nlohmann::json& metrics, const model::Calibration& calibration) {
  std::vector<double> scores;
  std::vector<int> labels;
  for (const auto& r : results)
    if (r.error.empty()) {
      scores.push_back(r.score);
      labels.push_back(r.label);
    }
  std::vector<const ImageResult*> sorted;
  for (const auto& r : results) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(), [](const ImageResult* a, const ImageResult* b) {
    return a->error.empty() != b->error.empty() ? a->error.empty() : a->score > b->score;
  });
  std::ostringstream html;
  html << "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" << escape(title)
       << "</title><style>"
          "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}svg{margin:8px;font-size:11px}"
          ".t{font-size:13px;font-weight:bold}.frame{fill:none;stroke:#888}.line{fill:none;stroke:#c22;stroke-width:2}"
          ".chance{stroke:#aaa;stroke-dasharray:4}.nor{fill:#36c}.abn{fill:#c33}.thr{stroke:#000;stroke-width:2}"
          ".gallery{display:flex;flex-wrap:wrap;gap:10px}.card{margin:0;padding:6px;border:3px solid #ddd;"
          "border-radius:6px;width:510px}.card img{width:160px;height:160px;object-fit:contain;margin-right:3px;"
          "background:#000}.fp,.fn{border-color:#d22}.tp{border-color:#3a3}.path{color:#777;font-size:11px;"
          "word-break:break-all}figcaption{font-size:13px}"
          "</style></head><body>";
  html << "<h1>" << escape(title) << "</h1>";
  html << "<p>The checkpoint's calibration: image threshold <b>" << number(calibration.image_threshold, 4)
       << "</b> (rule " << escape(calibration.image_rule) << "), pixel threshold <b>"
       << number(calibration.pixel_threshold, 4) << "</b>"
       << (calibration.calibrated ? "" : " (uncalibrated defaults)") << ". " << results.size() << " images.</p>";
  html << "<h2>Metrics</h2>" << metrics_table(metrics);
  html << "<h2>Curves</h2><div>" << svg_curve(roc_points(scores, labels), "ROC (image level)", "false-positive rate",
                                              "true-positive rate", true)
       << svg_curve(pr_points(scores, labels), "Precision-recall (image level)", "recall", "precision", false)
       << svg_histogram(scores, labels, calibration.image_threshold) << "</div>";
  html << "<h2>Images by score</h2><p>Each card: the image, the ground truth, the heat map with the predicted "
          "outline (white). Red frames: false positives and false negatives at the image threshold.</p>"
          "<div class=\"gallery\">";
  for (const auto* r : sorted) html << card(*r, calibration);
  html << "</div><script>document.body.dataset.cards=document.querySelectorAll('.card').length;"
          "document.body.dataset.errors=document.querySelectorAll('.fp,.fn').length;</script></body></html>\n";
  make_folders(dir);
  write_file_atomic((std::filesystem::path(dir) / "index.html").string(), html.str());
}

}  // namespace medsad::eval
