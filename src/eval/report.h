// `medsad eval --report DIR`: one self-contained HTML page (DIR/index.html) for people. The
// metrics table and calibrated thresholds, ROC and precision-recall curves and the score
// histograms of both classes as inline SVG, and a gallery with one card per image (image, ground
// truth, heat-map overlay with the predicted outline) sorted by score, false positives and false
// negatives marked. Pictures are embedded as PNG data URIs: no external asset, no network.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/evaluate.h"
#include "model/checkpoint.h"

namespace medsad::eval {

// The ROC curve of `scores` against `labels` (1 abnormal), one point per distinct threshold from
// (0, 0) to (1, 1): x = false-positive rate, y = true-positive rate.
std::vector<std::pair<double, double>> roc_points(const std::vector<double>& scores, const std::vector<int>& labels);
// The precision-recall curve, one point per distinct threshold: x = recall, y = precision.
std::vector<std::pair<double, double>> pr_points(const std::vector<double>& scores, const std::vector<int>& labels);

// Writes DIR/index.html (atomically) for `results` (images re-read from their paths for the
// gallery; unreadable ones are listed without pictures). `title` heads the page.
void write_html_report(const std::string& dir, const std::string& title, const std::vector<ImageResult>& results,
                       const nlohmann::json& metrics, const model::Calibration& calibration);

}  // namespace medsad::eval
