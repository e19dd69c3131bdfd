// Exact detection and segmentation metrics (metrics.h). Every ranking metric copies the scores
// once into (score, tag) pairs, sorts them by score (std::sort, descending) and walks the sorted
// array one group of tied scores at a time, so a threshold never splits tied scores and the cost
// is O(N log N) + O(N) for N scores or pixels. Counts are kept in integers and only the final
// ratios are formed in double, which keeps AUROC exact and AP/F1 at full double precision.
// References: sklearn.metrics roc_auc_score / average_precision_score (AUROC, AP), anomalib
// F1Max (F1-max), MVTec AD evaluation code generic_util.compute_pro + trapezoid (AUPRO).
#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/random.h"

namespace medsad::eval {
namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

std::string shape_of(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.sizes();
  return out.str();
}

std::string number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Flattened copy as contiguous CPU double: float32/half scores convert exactly, so a threshold
// taken from these values reproduces the same decisions on the caller's tensor.
torch::Tensor flat_double(const torch::Tensor& scores) {
  return scores.reshape({-1}).to(torch::kCPU, torch::kDouble).contiguous();
}

// Flattened contiguous CPU bool: true where the label is nonzero.
torch::Tensor flat_positive(const torch::Tensor& labels) {
  return labels.reshape({-1}).to(torch::kCPU).ne(0).contiguous();
}

void check_scores(const std::string& metric, const torch::Tensor& scores) {
  if (!scores.is_floating_point())
    fail("", metric + ": scores must be a floating-point tensor, got " + c10::toString(scores.scalar_type()));
}

// NaN has no place in a ranking (every comparison with it is false).
void fail_on_nan(const std::string& metric) { fail("", metric + ": scores contain NaN"); }

void check_same_shape(const std::string& metric, const torch::Tensor& scores, const torch::Tensor& labels) {
  check_scores(metric, scores);
  if (scores.sizes() != labels.sizes())
    fail("", metric + ": scores have shape " + shape_of(scores) + " but labels have shape " + shape_of(labels));
}

void check_maps_and_masks(const std::string& metric, const std::vector<torch::Tensor>& maps,
                          const std::vector<torch::Tensor>& masks) {
  if (maps.size() != masks.size())
    fail("", metric + ": " + std::to_string(maps.size()) + " maps but " + std::to_string(masks.size()) + " masks");
  for (size_t i = 0; i < maps.size(); ++i) {
    check_scores(metric, maps[i]);
    if (maps[i].dim() != 2)
      fail("", metric + ": map " + std::to_string(i) + " has shape " + shape_of(maps[i]) + ", expected [H, W]");
    if (maps[i].sizes() != masks[i].sizes())
      fail("", metric + ": map " + std::to_string(i) + " has shape " + shape_of(maps[i]) + " but its mask has shape " +
                   shape_of(masks[i]));
  }
}

// One score with what the metric needs to know about it: a 0/1 label, or a region id for AUPRO.
// 16 bytes, so the sort moves score and tag together (no index array and gather afterwards);
// std::sort of these ran about twice as fast as torch::sort + index_select on 20M scores.
struct RankedSample {
  double score;
  int32_t tag;
};

// Appends (score, tags[k]) for every element k of `scores` in flattened order; tags has numel
// entries. Rejects NaN here, while the scores pass through the cache anyway.
template <typename Tag>
void append_samples(const std::string& metric, const torch::Tensor& scores, const Tag* tags,
                    std::vector<RankedSample>& samples) {
  const auto flat = scores.reshape({-1}).to(torch::kCPU).contiguous();
  const int64_t n = flat.numel();
  const size_t first = samples.size();
  samples.resize(first + static_cast<size_t>(n));
  RankedSample* out = samples.data() + first;
  bool has_nan = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, flat.scalar_type(), "append_samples", [&] {
    const scalar_t* score = flat.data_ptr<scalar_t>();
    for (int64_t k = 0; k < n; ++k) {
      const double value = static_cast<double>(score[k]);
      has_nan |= std::isnan(value);
      out[k] = {value, static_cast<int32_t>(tags[k])};
    }
  });
  if (has_nan) fail_on_nan(metric);
}

// Highest score first; the order inside a run of tied scores does not matter, ties are grouped.
void sort_descending(std::vector<RankedSample>& samples) {
  std::sort(samples.begin(), samples.end(),
            [](const RankedSample& a, const RankedSample& b) { return a.score > b.score; });
}

// Samples tagged 1 (positive) or 0 (negative), sorted, with the class totals.
struct RankedLabels {
  std::vector<RankedSample> samples;  // [N], non-increasing score
  int64_t positives = 0;
  int64_t negatives = 0;
};

void finish_ranking(RankedLabels& ranked) {
  sort_descending(ranked.samples);
  for (const auto& sample : ranked.samples) ranked.positives += sample.tag;
  ranked.negatives = static_cast<int64_t>(ranked.samples.size()) - ranked.positives;
}

RankedLabels rank_by_score(const std::string& metric, const torch::Tensor& scores, const torch::Tensor& labels) {
  check_same_shape(metric, scores, labels);
  RankedLabels ranked;
  append_samples(metric, scores, flat_positive(labels).data_ptr<bool>(), ranked.samples);
  finish_ranking(ranked);
  return ranked;
}

// Calls visit(score, positives, negatives) once per distinct score, highest first, with the
// label counts of the samples holding exactly that score.
template <typename Visit>
void for_each_distinct_score(const RankedLabels& ranked, Visit&& visit) {
  const RankedSample* sample = ranked.samples.data();
  const int64_t n = static_cast<int64_t>(ranked.samples.size());
  for (int64_t begin = 0; begin < n;) {
    int64_t end = begin;
    int64_t positives = 0;
    for (; end < n && sample[end].score == sample[begin].score; ++end) positives += sample[end].tag;
    visit(sample[begin].score, positives, end - begin - positives);
    begin = end;
  }
}

ThresholdScore best_f1(const RankedLabels& ranked) {
  if (ranked.positives == 0) return {kNan, kNan};
  ThresholdScore best{-1.0, 0.0};
  int64_t tp = 0, fp = 0;
  for_each_distinct_score(ranked, [&](double score, int64_t positives, int64_t negatives) {
    tp += positives;
    fp += negatives;
    // 2TP + FP + FN = TP + FP + P, formed in integers so the one rounding is the division.
    const double f1 = 2.0 * static_cast<double>(tp) / static_cast<double>(tp + fp + ranked.positives);
    // Strictly greater: among equal F1 values the first, i.e. highest, threshold wins.
    if (f1 > best.value) best = {f1, score};
  });
  return best;
}

}  // namespace

double metric_auroc(const torch::Tensor& scores, const torch::Tensor& labels) {
  const auto ranked = rank_by_score("metric_auroc", scores, labels);
  if (ranked.positives == 0 || ranked.negatives == 0) return kNan;
  // Twice the Mann-Whitney U, in integers: a positive earns 2 per negative ranked strictly below
  // it and 1 per negative tied with it. Exact while 2 * P * N fits in int64 (N up to ~3e9).
  int64_t twice_u = 0;
  int64_t negatives_above = 0;
  for_each_distinct_score(ranked, [&](double, int64_t positives, int64_t negatives) {
    const int64_t negatives_below = ranked.negatives - negatives_above - negatives;
    twice_u += positives * (2 * negatives_below + negatives);
    negatives_above += negatives;
  });
  return static_cast<double>(twice_u) /
         (2.0 * static_cast<double>(ranked.positives) * static_cast<double>(ranked.negatives));
}

double metric_average_precision(const torch::Tensor& scores, const torch::Tensor& labels) {
  const auto ranked = rank_by_score("metric_average_precision", scores, labels);
  if (ranked.positives == 0) return kNan;
  // Recall only moves where positives are; there it rises by positives / P. The 1/P is applied
  // once at the end, so a run of precision-1 steps sums exactly.
  double ap_times_p = 0;
  int64_t tp = 0, fp = 0;
  for_each_distinct_score(ranked, [&](double, int64_t positives, int64_t negatives) {
    tp += positives;
    fp += negatives;
    if (positives > 0)
      ap_times_p += static_cast<double>(positives) * static_cast<double>(tp) / static_cast<double>(tp + fp);
  });
  return ap_times_p / static_cast<double>(ranked.positives);
}

ThresholdScore metric_f1_max(const torch::Tensor& scores, const torch::Tensor& labels) {
  return best_f1(rank_by_score("metric_f1_max", scores, labels));
}

OperatingRule OperatingRule::parse(const std::string& text) {
  const auto bad = [&text] {
    fail("", "--image-rule must be f1, youden, sensitivity=X or specificity=X with X in (0, 1], got '" + text + "'");
  };
  OperatingRule rule;
  if (text == "f1") return rule;
  if (text == "youden") {
    rule.kind = Kind::Youden;
    return rule;
  }
  const auto eq = text.find('=');
  if (eq == std::string::npos) bad();
  const std::string name = text.substr(0, eq), value = text.substr(eq + 1);
  if (name == "sensitivity") rule.kind = Kind::Sensitivity;
  else if (name == "specificity") rule.kind = Kind::Specificity;
  else bad();
  size_t used = 0;
  try {
    rule.target = std::stod(value, &used);
  } catch (const std::exception&) {
    bad();
  }
  if (used != value.size() || !(rule.target > 0 && rule.target <= 1)) bad();
  return rule;
}

std::string OperatingRule::to_string() const {
  std::ostringstream out;
  switch (kind) {
    case Kind::F1: return "f1";
    case Kind::Youden: return "youden";
    case Kind::Sensitivity: out << "sensitivity=" << target; break;
    case Kind::Specificity: out << "specificity=" << target; break;
  }
  return out.str();
}

ThresholdScore metric_operating_point(const torch::Tensor& scores, const torch::Tensor& labels,
                                      const OperatingRule& rule) {
  const auto ranked = rank_by_score("metric_operating_point", scores, labels);
  if (ranked.positives == 0 || ranked.negatives == 0) return {kNan, kNan};
  if (rule.kind == OperatingRule::Kind::F1) return best_f1(ranked);
  const double P = static_cast<double>(ranked.positives), N = static_cast<double>(ranked.negatives);
  // Rates compared with a target as counts: tp >= x * P, up to rounding in the product.
  const auto reaches = [](int64_t count, double total, double target) {
    return static_cast<double>(count) >= target * total - 1e-9;
  };
  // Above every score nothing is called positive: sensitivity 0, specificity 1.
  ThresholdScore best{kNan, kNan};
  if (rule.kind == OperatingRule::Kind::Specificity)
    best = {0.0, std::nextafter(ranked.samples.front().score, std::numeric_limits<double>::infinity())};
  if (rule.kind == OperatingRule::Kind::Youden) best.value = -2;
  int64_t tp = 0, fp = 0;
  for_each_distinct_score(ranked, [&](double score, int64_t positives, int64_t negatives) {
    tp += positives;
    fp += negatives;
    switch (rule.kind) {
      case OperatingRule::Kind::Youden: {
        const double j = static_cast<double>(tp) / P - static_cast<double>(fp) / N;
        if (j > best.value) best = {j, score};  // strictly: the highest threshold among equals
        break;
      }
      case OperatingRule::Kind::Sensitivity:  // thresholds fall, sensitivity rises: keep the first
        if (std::isnan(best.threshold) && reaches(tp, P, rule.target)) best = {1 - static_cast<double>(fp) / N, score};
        break;
      case OperatingRule::Kind::Specificity:  // specificity falls: keep the last that reaches it
        if (reaches(ranked.negatives - fp, N, rule.target)) best = {static_cast<double>(tp) / P, score};
        break;
      case OperatingRule::Kind::F1: break;
    }
  });
  return best;
}

ConfusionCounts confusion_at(const torch::Tensor& scores, const torch::Tensor& labels, double threshold) {
  check_same_shape("confusion_at", scores, labels);
  const auto values = flat_double(scores);
  if (torch::isnan(values).any().item<bool>()) fail_on_nan("confusion_at");
  // Compared in double: a float32 tensor against a double scalar would round the threshold to float.
  const auto predicted = values >= threshold;
  const auto actual = flat_positive(labels);
  ConfusionCounts counts;
  counts.tp = (predicted & actual).sum().item<int64_t>();
  counts.fp = (predicted & actual.logical_not()).sum().item<int64_t>();
  counts.fn = (predicted.logical_not() & actual).sum().item<int64_t>();
  counts.tn = values.numel() - counts.tp - counts.fp - counts.fn;
  return counts;
}

double ConfusionCounts::sensitivity() const {
  return tp + fn == 0 ? kNan : static_cast<double>(tp) / static_cast<double>(tp + fn);
}

double ConfusionCounts::specificity() const {
  return tn + fp == 0 ? kNan : static_cast<double>(tn) / static_cast<double>(tn + fp);
}

double ConfusionCounts::precision() const {
  return tp + fp == 0 ? kNan : static_cast<double>(tp) / static_cast<double>(tp + fp);
}

double ConfusionCounts::f1() const {
  const int64_t denominator = 2 * tp + fp + fn;
  return denominator == 0 ? 1.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(denominator);
}

double ConfusionCounts::dice() const { return f1(); }

double ConfusionCounts::iou() const {
  const int64_t denominator = tp + fp + fn;
  return denominator == 0 ? 1.0 : static_cast<double>(tp) / static_cast<double>(denominator);
}

ThresholdScore metric_dice_max(const std::vector<torch::Tensor>& maps, const std::vector<torch::Tensor>& masks) {
  check_maps_and_masks("metric_dice_max", maps, masks);
  RankedLabels ranked;  // all pixels of all images
  for (size_t i = 0; i < maps.size(); ++i)
    append_samples("metric_dice_max", maps[i], flat_positive(masks[i]).data_ptr<bool>(), ranked.samples);
  finish_ranking(ranked);
  return best_f1(ranked);
}

ThresholdScore metric_mean_dice_max(const std::vector<torch::Tensor>& maps, const std::vector<torch::Tensor>& masks) {
  check_maps_and_masks("metric_mean_dice_max", maps, masks);
  // Every pixel of the images with a lesion, tagged 2 * (image's index among them) + lesion.
  std::vector<RankedSample> pixels;
  std::vector<int64_t> lesion_pixels;  // [images with a lesion]
  for (size_t i = 0; i < maps.size(); ++i) {
    const auto positive = flat_positive(masks[i]);
    const int64_t lesion = positive.sum().item<int64_t>();
    if (lesion == 0) continue;
    const auto image = static_cast<int32_t>(lesion_pixels.size());
    lesion_pixels.push_back(lesion);
    const size_t first = pixels.size();
    append_samples("metric_mean_dice_max", maps[i], positive.data_ptr<bool>(), pixels);
    for (size_t k = first; k < pixels.size(); ++k) pixels[k].tag += 2 * image;
  }
  if (lesion_pixels.empty()) return {kNan, kNan};
  sort_descending(pixels);

  // Lower the threshold one distinct score at a time; only the images of the pixels it admits
  // change their Dice = 2 TP / (predicted + lesion), so the sum is updated for those alone.
  const auto images = static_cast<double>(lesion_pixels.size());
  std::vector<int64_t> tp(lesion_pixels.size(), 0), predicted(lesion_pixels.size(), 0);
  const auto dice = [&](size_t j) {
    return 2.0 * static_cast<double>(tp[j]) / static_cast<double>(predicted[j] + lesion_pixels[j]);
  };
  ThresholdScore best{-1.0, 0.0};
  double dice_sum = 0;
  const auto n = static_cast<int64_t>(pixels.size());
  for (int64_t begin = 0; begin < n;) {
    int64_t end = begin;
    for (; end < n && pixels[end].score == pixels[begin].score; ++end) {
      const auto j = static_cast<size_t>(pixels[end].tag >> 1);
      dice_sum -= dice(j);
      tp[j] += pixels[end].tag & 1;
      ++predicted[j];
      dice_sum += dice(j);
    }
    // Strictly greater: among equal means the first, i.e. highest, threshold wins.
    if (dice_sum / images > best.value) best = {dice_sum / images, pixels[begin].score};
    begin = end;
  }
  return best;
}

double metric_aupro(const std::vector<torch::Tensor>& maps, const std::vector<torch::Tensor>& masks, double fpr_limit) {
  check_maps_and_masks("metric_aupro", maps, masks);
  if (!(fpr_limit > 0.0 && fpr_limit <= 1.0))
    fail("", "metric_aupro: fpr_limit must lie in (0, 1], got " + number(fpr_limit));

  // Every pixel tagged with its region id, numbered across images: 0 = normal, 1..R = regions.
  std::vector<RankedSample> pixels;
  std::vector<int64_t> region_sizes(1, 0);  // indexed by region id; entry 0 counts normal pixels
  for (size_t i = 0; i < maps.size(); ++i) {
    if (maps[i].numel() == 0) continue;
    const int rows = static_cast<int>(maps[i].size(0));
    const int cols = static_cast<int>(maps[i].size(1));
    const auto mask_u8 = flat_positive(masks[i]).to(torch::kUInt8);  // [H*W], contiguous
    const cv::Mat mask_mat(rows, cols, CV_8UC1, mask_u8.data_ptr<uint8_t>());
    cv::Mat components;  // CV_32S [H, W]: 0 = background, 1..count-1 = components
    const int count = cv::connectedComponents(mask_mat, components, /*connectivity=*/8, CV_32S);
    const int32_t first_id = static_cast<int32_t>(region_sizes.size()) - 1;
    region_sizes.resize(region_sizes.size() + count - 1, 0);
    std::vector<int32_t> region(static_cast<size_t>(rows) * cols);  // [H*W], global ids
    for (int y = 0; y < rows; ++y) {
      const int32_t* component = components.ptr<int32_t>(y);
      for (int x = 0; x < cols; ++x) {
        const int32_t id = component[x] == 0 ? 0 : first_id + component[x];
        region[static_cast<size_t>(y) * cols + x] = id;
        ++region_sizes[id];
      }
    }
    append_samples("metric_aupro", maps[i], region.data(), pixels);
  }
  const int64_t region_count = static_cast<int64_t>(region_sizes.size()) - 1;
  const int64_t normal_count = region_sizes[0];
  if (region_count == 0 || normal_count == 0) return kNan;
  sort_descending(pixels);

  // A lesion pixel raises PRO by its share of its region's mean: 1 / (|region| * R).
  std::vector<double> region_weight(region_sizes.size(), 0.0);
  for (int64_t id = 1; id <= region_count; ++id)
    region_weight[id] = 1.0 / (static_cast<double>(region_sizes[id]) * static_cast<double>(region_count));

  const RankedSample* pixel = pixels.data();
  const int64_t n = static_cast<int64_t>(pixels.size());
  double area = 0, fpr_prev = 0, pro_prev = 0, pro = 0;
  int64_t false_positives = 0;
  // The curve always ends at FPR = 1 >= fpr_limit, so the loop stops on the segment that crosses it.
  for (int64_t begin = 0; begin < n && fpr_prev < fpr_limit;) {
    int64_t end = begin;
    for (; end < n && pixel[end].score == pixel[begin].score; ++end) {
      if (pixel[end].tag == 0) ++false_positives;
      else pro += region_weight[pixel[end].tag];
    }
    const double fpr = static_cast<double>(false_positives) / static_cast<double>(normal_count);
    // Trapezoid over [fpr_prev, min(fpr, fpr_limit)], PRO interpolated linearly at the cut.
    // fpr > fpr_limit > fpr_prev there, so the division is safe.
    const double fpr_end = std::min(fpr, fpr_limit);
    const double pro_end =
        fpr > fpr_limit ? pro_prev + (pro - pro_prev) * (fpr_limit - fpr_prev) / (fpr - fpr_prev) : pro;
    area += (fpr_end - fpr_prev) * (pro_prev + pro_end) / 2.0;
    fpr_prev = fpr;
    pro_prev = pro;
    begin = end;
  }
  return area / fpr_limit;
}

namespace {

void check_resamples(int64_t resamples) {
  if (resamples < 10 || resamples > 1000000)
    fail("", "bootstrap resamples must be between 10 and 1000000, got " + std::to_string(resamples));
}

// The 2.5th and 97.5th percentiles of `stats`, interpolated linearly between order statistics
// (numpy's default percentile).
ConfidenceInterval central_95(std::vector<double> stats) {
  std::sort(stats.begin(), stats.end());
  const auto at = [&](double q) {
    const double position = q * static_cast<double>(stats.size() - 1);
    const auto below = static_cast<size_t>(std::floor(position));
    const size_t above = std::min(below + 1, stats.size() - 1);
    return stats[below] + (position - static_cast<double>(below)) * (stats[above] - stats[below]);
  };
  return {at(0.025), at(0.975)};
}

}  // namespace

ConfidenceInterval bootstrap_auroc_ci95(const torch::Tensor& scores, const torch::Tensor& labels, int64_t resamples,
                                        uint64_t seed) {
  check_resamples(resamples);
  check_same_shape("bootstrap_auroc_ci95", scores, labels);
  const auto values = flat_double(scores);
  const auto positive = labels.flatten().ne(0);
  const auto positives = values.masked_select(positive), negatives = values.masked_select(positive.logical_not());
  const int64_t p = positives.numel(), n = negatives.numel();
  if (p == 0 || n == 0) return {kNan, kNan};
  const auto resample_labels = torch::cat({torch::ones({p}, torch::kInt64), torch::zeros({n}, torch::kInt64)});
  std::mt19937_64 rng(seed);
  std::vector<double> stats;
  stats.reserve(static_cast<size_t>(resamples));
  auto pick_p = torch::empty({p}, torch::kInt64), pick_n = torch::empty({n}, torch::kInt64);
  for (int64_t r = 0; r < resamples; ++r) {
    auto* ip = pick_p.data_ptr<int64_t>();
    auto* in = pick_n.data_ptr<int64_t>();
    for (int64_t i = 0; i < p; ++i) ip[i] = static_cast<int64_t>(draw_below(rng, static_cast<uint64_t>(p)));
    for (int64_t i = 0; i < n; ++i) in[i] = static_cast<int64_t>(draw_below(rng, static_cast<uint64_t>(n)));
    stats.push_back(metric_auroc(torch::cat({positives.index_select(0, pick_p), negatives.index_select(0, pick_n)}),
                                 resample_labels));
  }
  return central_95(std::move(stats));
}

ConfidenceInterval bootstrap_mean_ci95(const std::vector<double>& values, int64_t resamples, uint64_t seed) {
  check_resamples(resamples);
  if (values.empty()) return {kNan, kNan};
  for (double v : values)
    if (std::isnan(v)) fail_on_nan("bootstrap_mean_ci95");
  std::mt19937_64 rng(seed);
  std::vector<double> stats;
  stats.reserve(static_cast<size_t>(resamples));
  for (int64_t r = 0; r < resamples; ++r) {
    double sum = 0;
    for (size_t i = 0; i < values.size(); ++i) sum += values[draw_below(rng, values.size())];
    stats.push_back(sum / static_cast<double>(values.size()));
  }
  return central_95(std::move(stats));
}

}  // namespace medsad::eval
