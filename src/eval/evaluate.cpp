#include "eval/evaluate.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <future>
#include <iomanip>
#include <limits>
#include <numeric>
#include <sstream>

#include "clip/preprocess.h"
#include "core/error.h"
#include "core/file_io.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "eval/metrics.h"

namespace medsad::eval {
namespace {

nlohmann::json number_or_null(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }
nlohmann::json interval_or_null(const ConfidenceInterval& c) {
  return std::isnan(c.low) ? nlohmann::json(nullptr) : nlohmann::json::array({c.low, c.high});
}

}  // namespace

std::vector<ImageResult> predict_images(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                        const std::vector<torch::Tensor>& images, int64_t batch_size) {
  c10::InferenceMode inference;
  const int64_t S = model.config.image_size;
  std::vector<ImageResult> results(images.size());
  for (size_t start = 0; start < images.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(images.size(), start + static_cast<size_t>(batch_size));
    std::vector<torch::Tensor> batch;
    for (size_t i = start; i < end; ++i)
      batch.push_back(clip::normalize_image(data::resize_image(images[i], S), preprocess));
    const auto out = model.forward(torch::stack(batch).to(model.device()), /*smooth=*/true);
    const auto scores = out.score.to(torch::kCPU, torch::kDouble), maps = out.anomaly_map.to(torch::kCPU);
    for (size_t i = start; i < end; ++i) {
      const auto j = static_cast<int64_t>(i - start);
      results[i].score = scores[j].item<double>();
      results[i].map = data::resize_map(maps[j], images[i].size(1), images[i].size(2)).clone();
    }
  }
  return results;
}

std::vector<ImageResult> evaluate_samples(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                          const std::vector<data::Sample>& samples, int64_t batch_size,
                                          bool show_progress) {
  const Predictor predict = [&](const std::vector<torch::Tensor>& images) {
    return predict_images(model, preprocess, images, batch_size);
  };
  return evaluate_samples(predict, samples, batch_size, show_progress);
}

std::optional<double> lesion_dice(const ImageResult& r, double pixel_threshold) {
  if (!r.error.empty() || r.label != 1 || !r.mask.defined()) return std::nullopt;
  const auto truth = r.mask.flatten().gt(0.5);
  if (!truth.any().item<bool>()) return std::nullopt;
  return confusion_at(r.map.flatten(), truth, pixel_threshold).dice();
}

namespace {

struct ReadChunk {
  std::vector<ImageResult> results;   // path, label, mask or error of each sample
  std::vector<torch::Tensor> images;  // the readable ones, in order
};

// Decodes samples [start, end). An unreadable image becomes that sample's error; an unreadable
// mask of a readable image throws (a broken dataset, not a broken input).
ReadChunk read_chunk(const std::vector<data::Sample>& samples, size_t start, size_t end) {
  ReadChunk chunk;
  for (size_t i = start; i < end; ++i) {
    ImageResult r;
    r.path = samples[i].image;
    r.label = samples[i].label;
    try {
      auto rgb = read_image_rgb(samples[i].image);
      if (!samples[i].mask.empty())
        r.mask = data::read_mask(samples[i].mask, samples[i].image, rgb.size(1), rgb.size(2));
      else if (samples[i].label == 0)
        r.mask = torch::zeros({rgb.size(1), rgb.size(2)});  // a normal image has no lesion
      chunk.images.push_back(rgb);
    } catch (const Error& e) {
      if (!samples[i].mask.empty() && e.path() == samples[i].mask) throw;
      r.error = e.what();
    }
    chunk.results.push_back(std::move(r));
  }
  return chunk;
}

}  // namespace

std::vector<ImageResult> evaluate_samples(const Predictor& predict, const std::vector<data::Sample>& samples,
                                          int64_t batch_size, bool show_progress) {
  std::vector<ImageResult> results;
  const bool tty = show_progress && ::isatty(STDERR_FILENO);
  const auto step = static_cast<size_t>(batch_size);
  auto read_from = [&](size_t start) {
    return std::async(std::launch::async, read_chunk, std::cref(samples), start, std::min(samples.size(), start + step));
  };
  // The next batch is decoded while the model scores this one.
  auto next = read_from(0);
  for (size_t start = 0; start < samples.size(); start += step) {
    ReadChunk chunk = next.get();
    if (start + step < samples.size()) next = read_from(start + step);
    const auto preds = chunk.images.empty() ? std::vector<ImageResult>{} : predict(chunk.images);
    size_t k = 0;
    for (auto& r : chunk.results) {
      if (r.error.empty()) {
        r.score = preds[k].score;
        r.map = preds[k].map;
        ++k;
      }
      results.push_back(std::move(r));
    }
    if (tty) std::fprintf(stderr, "\r  scoring %zu/%zu", std::min(samples.size(), start + step), samples.size());
  }
  if (tty) std::fprintf(stderr, "\n");
  return results;
}

namespace {

struct Pooled {
  torch::Tensor scores, labels;  // image level, readable images only
  std::vector<torch::Tensor> maps, masks;  // images with a known mask
};

Pooled pool(const std::vector<ImageResult>& results) {
  Pooled p;
  std::vector<double> scores;
  std::vector<int64_t> labels;
  for (const auto& r : results) {
    if (!r.error.empty() || r.label < 0) continue;
    scores.push_back(r.score);
    labels.push_back(r.label);
    if (r.mask.defined()) {
      p.maps.push_back(r.map);
      p.masks.push_back(r.mask);
    }
  }
  p.scores = torch::tensor(scores, torch::kFloat64);
  p.labels = torch::tensor(labels, torch::kInt64);
  return p;
}

bool has_both_classes(const torch::Tensor& labels) {
  return labels.numel() > 0 && labels.max().item<int64_t>() == 1 && labels.min().item<int64_t>() == 0;
}

bool has_lesion(const Pooled& p) {
  for (const auto& m : p.masks)
    if (m.gt(0.5).any().item<bool>()) return true;
  return false;
}

// Every pixel of every map with a mask, as one ranking: {[P] scores, [P] bool lesion}.
std::pair<torch::Tensor, torch::Tensor> pooled_pixels(const Pooled& p) {
  std::vector<torch::Tensor> flat_maps, flat_masks;
  for (size_t i = 0; i < p.maps.size(); ++i) {
    flat_maps.push_back(p.maps[i].flatten());
    flat_masks.push_back(p.masks[i].flatten());
  }
  return {torch::cat(flat_maps), torch::cat(flat_masks).gt(0.5)};
}

}  // namespace

bool has_lesion_mask(const std::vector<ImageResult>& results) {
  return std::any_of(results.begin(), results.end(), [](const ImageResult& r) {
    return r.error.empty() && r.mask.defined() && r.mask.gt(0.5).any().item<bool>();
  });
}

model::Calibration calibrate(const std::vector<ImageResult>& results, const OperatingRule& image_rule,
                             double unmasked_pixel_threshold) {
  model::Calibration c;
  c.pixel_threshold = unmasked_pixel_threshold;
  const auto p = pool(results);
  if (!has_both_classes(p.labels)) return c;
  c.image_threshold = metric_operating_point(p.scores, p.labels, image_rule).threshold;
  c.image_rule = image_rule.to_string();
  if (has_lesion(p)) c.pixel_threshold = metric_mean_dice_max(p.maps, p.masks).threshold;
  c.calibrated = true;
  return c;
}

nlohmann::json compute_metrics(const std::vector<ImageResult>& results, const model::Calibration& calibration) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const auto p = pool(results);
  nlohmann::json image, pixel;
  const bool both = has_both_classes(p.labels);
  image["count"] = p.labels.numel();
  image["abnormal"] = p.labels.numel() ? p.labels.sum().item<int64_t>() : 0;
  image["auroc"] = number_or_null(both ? metric_auroc(p.scores, p.labels) : nan);
  image["ap"] = number_or_null(both ? metric_average_precision(p.scores, p.labels) : nan);
  image["f1_max"] = number_or_null(both ? metric_f1_max(p.scores, p.labels).value : nan);
  image["auroc_ci95"] = interval_or_null(both ? bootstrap_auroc_ci95(p.scores, p.labels) : ConfidenceInterval{nan, nan});
  const auto counts = p.labels.numel() ? confusion_at(p.scores, p.labels, calibration.image_threshold)
                                       : ConfusionCounts{};
  image["threshold"] = calibration.image_threshold;
  image["threshold_rule"] = calibration.image_rule;
  image["sensitivity"] = number_or_null(counts.tp + counts.fn ? counts.sensitivity() : nan);
  image["specificity"] = number_or_null(counts.tn + counts.fp ? counts.specificity() : nan);

  pixel["images"] = p.masks.size();
  if (has_lesion(p)) {
    const auto [all_maps, all_masks] = pooled_pixels(p);
    pixel["auroc"] = number_or_null(metric_auroc(all_maps, all_masks));
    pixel["ap"] = number_or_null(metric_average_precision(all_maps, all_masks));
    pixel["aupro_0.3"] = number_or_null(metric_aupro(p.maps, p.masks, 0.3));
    pixel["dice_max"] = number_or_null(metric_dice_max(p.maps, p.masks).value);
    std::vector<double> dice;
    double iou_sum = 0;
    for (size_t i = 0; i < p.maps.size(); ++i) {
      if (!p.masks[i].gt(0.5).any().item<bool>()) continue;  // abnormal images with a lesion mask
      const auto c = confusion_at(p.maps[i].flatten(), p.masks[i].flatten().gt(0.5), calibration.pixel_threshold);
      dice.push_back(c.dice());
      iou_sum += c.iou();
    }
    const auto n = static_cast<double>(dice.size());
    pixel["mean_dice"] = number_or_null(dice.empty() ? nan : std::accumulate(dice.begin(), dice.end(), 0.0) / n);
    pixel["mean_dice_ci95"] = interval_or_null(bootstrap_mean_ci95(dice));
    pixel["mean_iou"] = number_or_null(dice.empty() ? nan : iou_sum / n);
  }
  pixel["threshold"] = calibration.pixel_threshold;
  // What the pixel threshold costs on normal images: the mean share of their pixels it flags.
  double flagged = 0;
  int64_t normals = 0;
  for (const auto& r : results)
    if (r.error.empty() && r.label == 0 && r.map.defined()) {
      flagged += r.map.to(torch::kFloat64).ge(calibration.pixel_threshold).to(torch::kFloat64).mean().item<double>();
      ++normals;
    }
  pixel["normal_flagged_fraction"] = number_or_null(normals ? flagged / static_cast<double>(normals) : nan);
  int64_t skipped = 0;
  for (const auto& r : results) skipped += !r.error.empty();
  return {{"image", image}, {"pixel", pixel}, {"skipped_images", skipped}};
}

void write_per_image_csv(const std::string& path, const std::vector<ImageResult>& results,
                         const model::Calibration& calibration) {
  std::ostringstream csv;
  csv << "path,label,score,decision,dice\n" << std::setprecision(9);
  for (const auto& r : results) {
    if (!r.error.empty()) continue;
    std::string quoted = r.path;
    if (quoted.find_first_of(",\"\n") != std::string::npos) {
      std::string q = "\"";
      for (char ch : quoted) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
      quoted = q + "\"";
    }
    csv << quoted << ',' << r.label << ',' << r.score << ',' << (r.score >= calibration.image_threshold ? 1 : 0) << ',';
    if (const auto dice = lesion_dice(r, calibration.pixel_threshold)) csv << *dice;
    csv << '\n';
  }
  write_file_atomic(path, csv.str());
}

double selection_score(const std::vector<ImageResult>& results) {
  const auto p = pool(results);
  double sum = 0;
  int n = 0;
  if (has_both_classes(p.labels)) sum += metric_auroc(p.scores, p.labels), ++n;
  if (has_lesion(p)) {
    const auto [maps, masks] = pooled_pixels(p);
    sum += metric_auroc(maps, masks), ++n;
  }
  return n ? sum / n : 0.0;
}

}  // namespace medsad::eval
