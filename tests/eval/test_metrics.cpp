// Tests of eval/metrics: every metric against a brute-force version written here straight from
// its definition (every positive-negative pair, every candidate threshold evaluated from scratch,
// regions found by our own flood fill), on random data full of ties, plus hand-computed cases.
#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "eval/evaluate.h"
#include "eval/metrics.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::eval;

namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// ---------- brute-force references ----------

struct Counts {
  int64_t tp = 0, fp = 0, fn = 0;
};

Counts brute_counts(const std::vector<double>& scores, const std::vector<int>& labels, double threshold) {
  Counts c;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool predicted = scores[i] >= threshold;
    if (predicted && labels[i]) ++c.tp;
    if (predicted && !labels[i]) ++c.fp;
    if (!predicted && labels[i]) ++c.fn;
  }
  return c;
}

std::vector<double> distinct_descending(const std::vector<double>& scores) {
  const std::set<double, std::greater<double>> distinct(scores.begin(), scores.end());
  return {distinct.begin(), distinct.end()};
}

double brute_auroc(const std::vector<double>& scores, const std::vector<int>& labels) {
  double wins = 0;
  int64_t pairs = 0;
  for (size_t i = 0; i < scores.size(); ++i)
    for (size_t j = 0; j < scores.size(); ++j)
      if (labels[i] && !labels[j]) {
        wins += scores[i] > scores[j] ? 1.0 : scores[i] == scores[j] ? 0.5 : 0.0;
        ++pairs;
      }
  return pairs == 0 ? kNan : wins / static_cast<double>(pairs);
}

double brute_average_precision(const std::vector<double>& scores, const std::vector<int>& labels) {
  const int64_t positives = std::count_if(labels.begin(), labels.end(), [](int y) { return y != 0; });
  if (positives == 0) return kNan;
  double ap = 0, previous_recall = 0;
  for (double t : distinct_descending(scores)) {
    const Counts c = brute_counts(scores, labels, t);
    const double recall = static_cast<double>(c.tp) / static_cast<double>(positives);
    const double precision = static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fp);
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
  }
  return ap;
}

// Best 2TP/(2TP+FP+FN) and the highest threshold reaching it.
ThresholdScore brute_f1_max(const std::vector<double>& scores, const std::vector<int>& labels) {
  ThresholdScore best{-1, 0};
  for (double t : distinct_descending(scores)) {
    const Counts c = brute_counts(scores, labels, t);
    const double f1 = 2.0 * static_cast<double>(c.tp) / static_cast<double>(2 * c.tp + c.fp + c.fn);
    if (f1 > best.value) best = {f1, t};
  }
  return best;
}

// An image of the pixel tests: row-major map values and 0/1 mask.
struct Image {
  int rows = 0, cols = 0;
  std::vector<float> map;
  std::vector<int> mask;
};

// Region label per pixel (-1 = normal) by breadth-first flood fill over the 8 neighbours.
std::vector<int> flood_fill_regions(const Image& image, int& region_count) {
  std::vector<int> region(image.map.size(), -1);
  for (int start = 0; start < image.rows * image.cols; ++start) {
    if (!image.mask[start] || region[start] >= 0) continue;
    std::deque<int> queue{start};
    region[start] = region_count;
    while (!queue.empty()) {
      const int p = queue.front();
      queue.pop_front();
      for (int dy = -1; dy <= 1; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int y = p / image.cols + dy, x = p % image.cols + dx;
          if (y < 0 || y >= image.rows || x < 0 || x >= image.cols) continue;
          const int q = y * image.cols + x;
          if (image.mask[q] && region[q] < 0) {
            region[q] = region_count;
            queue.push_back(q);
          }
        }
    }
    ++region_count;
  }
  return region;
}

double brute_aupro(const std::vector<Image>& images, double fpr_limit) {
  int region_count = 0;
  std::vector<std::vector<int>> regions;
  std::vector<double> all_scores;
  for (const auto& image : images) {
    regions.push_back(flood_fill_regions(image, region_count));
    all_scores.insert(all_scores.end(), image.map.begin(), image.map.end());
  }
  // Curve points (FPR, PRO), starting at (0, 0), one per distinct threshold.
  std::vector<std::pair<double, double>> curve{{0.0, 0.0}};
  for (double t : distinct_descending(all_scores)) {
    int64_t normal = 0, normal_above = 0;
    std::vector<int64_t> size(region_count, 0), covered(region_count, 0);
    for (size_t i = 0; i < images.size(); ++i)
      for (size_t p = 0; p < images[i].map.size(); ++p) {
        const bool above = images[i].map[p] >= t;
        const int r = regions[i][p];
        if (r < 0) {
          ++normal;
          normal_above += above;
        } else {
          ++size[r];
          covered[r] += above;
        }
      }
    double pro = 0;
    for (int r = 0; r < region_count; ++r) pro += static_cast<double>(covered[r]) / static_cast<double>(size[r]);
    curve.emplace_back(static_cast<double>(normal_above) / static_cast<double>(normal), pro / region_count);
  }
  double area = 0;
  for (size_t k = 1; k < curve.size(); ++k) {
    const auto [x0, y0] = curve[k - 1];
    const auto [x1, y1] = curve[k];
    if (x0 >= fpr_limit) break;
    if (x1 <= fpr_limit) {
      area += (x1 - x0) * (y0 + y1) / 2;
    } else {
      const double y_at_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0);
      area += (fpr_limit - x0) * (y0 + y_at_limit) / 2;
    }
  }
  return area / fpr_limit;
}

// ---------- random data ----------

// N labelled scores; positives drawn higher on average. With `round_to_tenth` the scores take
// only 11 values, so most thresholds hold ties of both classes.
void random_scores(uint32_t seed, int n, bool round_to_tenth, std::vector<double>& scores, std::vector<int>& labels) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::bernoulli_distribution is_positive(0.3);
  scores.clear();
  labels.clear();
  for (int i = 0; i < n; ++i) {
    const int label = is_positive(rng);
    float score = std::min(1.0f, uniform(rng) * 0.8f + 0.3f * label);
    if (round_to_tenth) score = std::round(score * 10.0f) / 10.0f;
    scores.push_back(score);  // float values, so the float32 tensor below holds them exactly
    labels.push_back(label);
  }
}

// Several images of different sizes; some without lesions; lesion pixels scattered (many small
// regions, some joined only diagonally) and scored higher on average.
std::vector<Image> random_images(uint32_t seed, bool round_to_tenth) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> side(3, 12);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<Image> images(5);
  for (size_t i = 0; i < images.size(); ++i) {
    Image& image = images[i];
    image.rows = side(rng);
    image.cols = side(rng);
    const bool normal_image = i % 3 == 1;
    std::bernoulli_distribution lesion(0.3);
    for (int p = 0; p < image.rows * image.cols; ++p) {
      const int in_mask = normal_image ? 0 : lesion(rng);
      float value = std::min(1.0f, uniform(rng) * 0.7f + 0.35f * in_mask);
      if (round_to_tenth) value = std::round(value * 10.0f) / 10.0f;
      image.map.push_back(value);
      image.mask.push_back(in_mask);
    }
  }
  return images;
}

torch::Tensor scores_tensor(const std::vector<double>& scores, torch::ScalarType dtype) {
  return torch::tensor(scores, torch::kDouble).to(dtype);
}

torch::Tensor labels_tensor(const std::vector<int>& labels, torch::ScalarType dtype) {
  return torch::tensor(std::vector<int64_t>(labels.begin(), labels.end()), torch::kInt64).to(dtype);
}

void image_tensors(const std::vector<Image>& images, std::vector<torch::Tensor>& maps, std::vector<torch::Tensor>& masks) {
  for (const auto& image : images) {
    maps.push_back(torch::tensor(image.map, torch::kFloat).reshape({image.rows, image.cols}));
    masks.push_back(labels_tensor(image.mask, torch::kUInt8).reshape({image.rows, image.cols}));
  }
}

torch::Tensor floats(std::vector<float> values) { return torch::tensor(values, torch::kFloat); }
torch::Tensor ints(std::vector<int64_t> values) { return torch::tensor(values, torch::kInt64); }

// The exact text of the medsad::Error thrown by `call`, or "" if none.
std::string error_text(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const torch::ScalarType kScoreDtypes[] = {torch::kFloat, torch::kDouble};
const torch::ScalarType kLabelDtypes[] = {torch::kBool, torch::kUInt8, torch::kInt64};

// Calls check(scores, labels, score_tensor, label_tensor) on random_scores of seeds 1..seeds, each
// with ties (scores rounded to tenths) and without, the tensors in dtypes that vary with the seed.
template <typename Check>
void for_each_random_case(uint32_t seeds, int n, Check&& check) {
  std::vector<double> scores;
  std::vector<int> labels;
  for (uint32_t seed = 1; seed <= seeds; ++seed)
    for (bool rounded : {true, false}) {
      random_scores(seed, n, rounded, scores, labels);
      SCOPED_TRACE("seed " + std::to_string(seed) + (rounded ? " rounded" : " distinct"));
      check(scores, labels, scores_tensor(scores, kScoreDtypes[seed % 2]),
            labels_tensor(labels, kLabelDtypes[seed % 3]));
    }
}

}  // namespace

// ---------- hand-computed cases ----------

TEST(MetricAuroc, HandComputedCases) {
  // Pairs (pos, neg): 0.35 beats 0.1 but not 0.4; 0.8 beats both -> 3 of 4.
  EXPECT_DOUBLE_EQ(metric_auroc(floats({0.1f, 0.4f, 0.35f, 0.8f}), ints({0, 0, 1, 1})), 0.75);
  EXPECT_EQ(metric_auroc(floats({0.1f, 0.2f, 0.8f, 0.9f}), ints({0, 0, 1, 1})), 1.0);
  EXPECT_EQ(metric_auroc(floats({0.1f, 0.2f, 0.8f, 0.9f}), ints({1, 1, 0, 0})), 0.0);
  EXPECT_EQ(metric_auroc(floats({0.5f, 0.5f, 0.5f, 0.5f}), ints({1, 0, 1, 0})), 0.5);
  // One tied pair out of two: (1 + 1/2) / 2.
  EXPECT_EQ(metric_auroc(floats({0.5f, 0.5f, 0.2f}), ints({1, 0, 0})), 0.75);
}

TEST(MetricAuroc, NanWhenAClassIsAbsent) {
  EXPECT_TRUE(std::isnan(metric_auroc(floats({0.1f, 0.9f}), ints({1, 1}))));
  EXPECT_TRUE(std::isnan(metric_auroc(floats({0.1f, 0.9f}), ints({0, 0}))));
  EXPECT_TRUE(std::isnan(metric_auroc(floats({}), ints({}))));
}

TEST(MetricAveragePrecision, HandComputedCases) {
  // sklearn's documented example: 0.5 * 1 (at 0.8) + 0.5 * 2/3 (at 0.35) = 5/6.
  EXPECT_DOUBLE_EQ(metric_average_precision(floats({0.1f, 0.4f, 0.35f, 0.8f}), ints({0, 0, 1, 1})), 5.0 / 6.0);
  // All tied: one threshold, recall 1 at precision 1/2 (no optimistic ordering inside a tie).
  EXPECT_DOUBLE_EQ(metric_average_precision(floats({0.5f, 0.5f, 0.5f, 0.5f}), ints({1, 0, 1, 0})), 0.5);
  EXPECT_DOUBLE_EQ(metric_average_precision(floats({0.3f, 0.7f}), ints({1, 1})), 1.0);
  EXPECT_TRUE(std::isnan(metric_average_precision(floats({0.3f, 0.7f}), ints({0, 0}))));
}

TEST(MetricF1Max, HandComputedCase) {
  // Thresholds 0.8: 2/3, 0.4: 1/2, 0.35: 4/5, 0.1: 2/3.
  const auto best = metric_f1_max(floats({0.1f, 0.4f, 0.35f, 0.8f}), ints({0, 0, 1, 1}));
  EXPECT_DOUBLE_EQ(best.value, 0.8);
  EXPECT_EQ(best.threshold, static_cast<double>(0.35f));
}

TEST(MetricF1Max, EqualValuesKeepTheHighestThreshold) {
  // Thresholds 0.9: TP1 FP0 FN1 -> 2/3; 0.5: TP2 FP2 FN0 -> 2/3; the first (highest) is reported.
  const auto best = metric_f1_max(floats({0.9f, 0.5f, 0.5f, 0.5f}), ints({1, 1, 0, 0}));
  EXPECT_DOUBLE_EQ(best.value, 2.0 / 3.0);
  EXPECT_EQ(best.threshold, static_cast<double>(0.9f));
}

TEST(MetricF1Max, NanWithoutPositives) {
  const auto best = metric_f1_max(floats({0.1f, 0.9f}), ints({0, 0}));
  EXPECT_TRUE(std::isnan(best.value));
  EXPECT_TRUE(std::isnan(best.threshold));
}

TEST(MetricConfusion, CountsAndRatesAtAThreshold) {
  // score >= 0.35 -> predicted [0, 1, 1, 1] against labels [0, 0, 1, 1].
  const auto c = confusion_at(floats({0.1f, 0.4f, 0.35f, 0.8f}), ints({0, 0, 1, 1}), static_cast<double>(0.35f));
  EXPECT_EQ(c.tp, 2);
  EXPECT_EQ(c.fp, 1);
  EXPECT_EQ(c.tn, 1);
  EXPECT_EQ(c.fn, 0);
  EXPECT_DOUBLE_EQ(c.sensitivity(), 1.0);
  EXPECT_DOUBLE_EQ(c.specificity(), 0.5);
  EXPECT_DOUBLE_EQ(c.precision(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(c.f1(), 0.8);
  EXPECT_DOUBLE_EQ(c.dice(), 0.8);
  EXPECT_DOUBLE_EQ(c.iou(), 2.0 / 3.0);
}

TEST(MetricConfusion, ThresholdIsInclusiveAndComparedInDouble) {
  // A score equal to the threshold is positive. The next double above 0.3f must exclude 0.3f;
  // compared in float32 that threshold would round back to 0.3f and wrongly include it.
  const double t = static_cast<double>(0.3f);
  EXPECT_EQ(confusion_at(floats({0.3f}), ints({1}), 0.3).tp, 1);
  EXPECT_EQ(confusion_at(floats({0.3f}), ints({1}), t).tp, 1);
  EXPECT_EQ(confusion_at(floats({0.3f}), ints({1}), std::nextafter(t, 1.0)).fn, 1);
}

TEST(MetricConfusion, EmptyPredictionOfEmptyMaskIsPerfectAndUndefinedRatesAreNan) {
  const auto c = confusion_at(floats({0.1f, 0.2f}), ints({0, 0}), 0.5);
  EXPECT_EQ(c.tn, 2);
  EXPECT_EQ(c.dice(), 1.0);
  EXPECT_EQ(c.iou(), 1.0);
  EXPECT_EQ(c.f1(), 1.0);
  EXPECT_EQ(c.specificity(), 1.0);
  EXPECT_TRUE(std::isnan(c.sensitivity()));
  EXPECT_TRUE(std::isnan(c.precision()));
}

TEST(MetricDiceMax, PoolsPixelsOfAllImages) {
  // Image 1 alone would reach Dice 1 at 0.6; the normal image's 0.6 pixel is pooled in:
  // thresholds 0.9: 2/3, 0.6: TP2 FP1 -> 4/5, 0.3: 4/6, ...
  const std::vector<torch::Tensor> maps{floats({0.9f, 0.2f, 0.6f, 0.1f}).reshape({2, 2}), floats({0.6f, 0.3f, 0.0f}).reshape({1, 3})};
  const std::vector<torch::Tensor> masks{ints({1, 0, 1, 0}).reshape({2, 2}), ints({0, 0, 0}).reshape({1, 3})};
  const auto best = metric_dice_max(maps, masks);
  EXPECT_DOUBLE_EQ(best.value, 0.8);
  EXPECT_EQ(best.threshold, static_cast<double>(0.6f));
  EXPECT_TRUE(std::isnan(metric_dice_max({maps[1]}, {masks[1]}).value));
}

TEST(MetricAupro, UsesEightConnectedRegionsAndAveragesOverRegions) {
  // Mask pixels (0,0), (0,1), (1,2): one 8-connected region of 3 pixels (4-connectivity would give
  // two regions, PRO 1/2 at the top threshold). Only (1,2) scores 0.9, the rest 0.1; 6 normal pixels.
  // Curve (0,0) -> (0,1/3) -> (1,1). Up to 0.3: PRO(0.3) = 1/3 + 0.3 * 2/3 = 8/15,
  // area = 0.3 * (1/3 + 8/15) / 2, normalised 13/30. Up to 1: (1/3 + 1) / 2 = 2/3.
  auto map = torch::full({3, 3}, 0.1f);
  map[1][2] = 0.9f;
  auto mask = torch::zeros({3, 3}, torch::kUInt8);
  mask[0][0] = 1;
  mask[0][1] = 1;
  mask[1][2] = 1;
  EXPECT_NEAR(metric_aupro({map}, {mask}, 0.3), 13.0 / 30.0, 1e-12);
  EXPECT_NEAR(metric_aupro({map}, {mask}, 1.0), 2.0 / 3.0, 1e-12);
}

TEST(MetricAupro, PerfectAndLateDetection) {
  // 1 x 4 image, lesion at pixel 0, 3 normal pixels.
  const auto mask = ints({1, 0, 0, 0}).reshape({1, 4});
  EXPECT_DOUBLE_EQ(metric_aupro({floats({0.9f, 0.8f, 0.2f, 0.1f}).reshape({1, 4})}, {mask}), 1.0);
  // The lesion ranks second: (0,0) -> (1/3,0) -> (1/3,1) -> (2/3,1) -> (1,1). Up to 0.3: 0.
  // Up to 0.5: (0.5 - 1/3) * 1 / 0.5 = 1/3.
  const auto late = floats({0.8f, 0.9f, 0.2f, 0.1f}).reshape({1, 4});
  EXPECT_DOUBLE_EQ(metric_aupro({late}, {mask}, 0.3), 0.0);
  EXPECT_NEAR(metric_aupro({late}, {mask}, 0.5), 1.0 / 3.0, 1e-12);
}

TEST(MetricAupro, NanWithoutRegionsOrWithoutNormalPixels) {
  const auto map = floats({0.2f, 0.4f}).reshape({1, 2});
  EXPECT_TRUE(std::isnan(metric_aupro({map}, {ints({0, 0}).reshape({1, 2})})));
  EXPECT_TRUE(std::isnan(metric_aupro({map}, {ints({1, 1}).reshape({1, 2})})));
  EXPECT_TRUE(std::isnan(metric_aupro({}, {})));
}

// ---------- against brute force on random data ----------

TEST(MetricImageLevel, MatchesBruteForceOnRandomTiedData) {
  for_each_random_case(6, 300, [](const std::vector<double>& scores, const std::vector<int>& labels,
                                const torch::Tensor& score_t, const torch::Tensor& label_t) {
    EXPECT_NEAR(metric_auroc(score_t, label_t), brute_auroc(scores, labels), 1e-12);
    EXPECT_NEAR(metric_average_precision(score_t, label_t), brute_average_precision(scores, labels), 1e-12);
    const auto best = metric_f1_max(score_t, label_t);
    const auto expected = brute_f1_max(scores, labels);
    EXPECT_EQ(best.value, expected.value);
    EXPECT_EQ(best.threshold, expected.threshold);
    // The reported threshold reproduces the reported value.
    EXPECT_EQ(confusion_at(score_t, label_t, best.threshold).f1(), best.value);
    const Counts c = brute_counts(scores, labels, 0.5);
    const auto counts = confusion_at(score_t, label_t, 0.5);
    EXPECT_EQ(counts.tp, c.tp);
    EXPECT_EQ(counts.fp, c.fp);
    EXPECT_EQ(counts.fn, c.fn);
    EXPECT_EQ(counts.tp + counts.fp + counts.tn + counts.fn, static_cast<int64_t>(scores.size()));
  });
}

TEST(MetricOperatingPoint, MatchesBruteForceOnRandomTiedData) {
  // Each rule against its definition checked at every candidate threshold: the distinct scores
  // and one above them all (nothing called abnormal).
  for_each_random_case(4, 200, [](const std::vector<double>& scores, const std::vector<int>& labels,
                                const torch::Tensor& score_t, const torch::Tensor& label_t) {
    const double P = static_cast<double>(std::count(labels.begin(), labels.end(), 1));
    const double N = static_cast<double>(labels.size()) - P;
    auto candidates = distinct_descending(scores);
    candidates.insert(candidates.begin(), std::nextafter(candidates.front(), 2.0));
    const auto sensitivity = [&](double t) { return static_cast<double>(brute_counts(scores, labels, t).tp) / P; };
    const auto specificity = [&](double t) { return 1 - static_cast<double>(brute_counts(scores, labels, t).fp) / N; };

    ThresholdScore youden{-2, 0};
    for (double t : candidates)
      if (sensitivity(t) + specificity(t) - 1 > youden.value) youden = {sensitivity(t) + specificity(t) - 1, t};
    const auto got_youden = metric_operating_point(score_t, label_t, OperatingRule::parse("youden"));
    EXPECT_NEAR(got_youden.value, youden.value, 1e-12);
    EXPECT_EQ(got_youden.threshold, youden.threshold);
    EXPECT_EQ(metric_operating_point(score_t, label_t, OperatingRule::parse("f1")).threshold,
              brute_f1_max(scores, labels).threshold);

    for (double target : {0.5, 0.9, 0.95, 1.0}) {
      double highest = -1;  // the highest threshold whose sensitivity reaches the target
      for (double t : candidates)
        if (sensitivity(t) >= target && t > highest) highest = t;
      const auto got = metric_operating_point(score_t, label_t, {OperatingRule::Kind::Sensitivity, target});
      EXPECT_EQ(got.threshold, highest) << "sensitivity " << target;
      EXPECT_NEAR(got.value, specificity(highest), 1e-12);
      EXPECT_GE(confusion_at(score_t, label_t, got.threshold).sensitivity(), target);

      double lowest = 2;  // the lowest threshold whose specificity reaches the target
      for (double t : candidates)
        if (specificity(t) >= target && t < lowest) lowest = t;
      const auto got_spec = metric_operating_point(score_t, label_t, {OperatingRule::Kind::Specificity, target});
      EXPECT_EQ(got_spec.threshold, lowest) << "specificity " << target;
      EXPECT_NEAR(got_spec.value, sensitivity(lowest), 1e-12);
    }
  });
}

TEST(MetricOperatingPoint, HandComputedCaseAndRuleTexts) {
  // Scores 0.9 (abnormal), 0.8 (normal), 0.6 (abnormal), 0.3 (abnormal), 0.2 (normal).
  const auto scores = floats({0.9f, 0.8f, 0.6f, 0.3f, 0.2f});
  const auto labels = ints({1, 0, 1, 1, 0});
  // Sensitivity >= 2/3 first at 0.6 (specificity 1/2); all three found only from 0.3.
  auto at = metric_operating_point(scores, labels, OperatingRule::parse("sensitivity=0.6"));
  EXPECT_EQ(at.threshold, static_cast<double>(0.6f));
  EXPECT_DOUBLE_EQ(at.value, 0.5);
  EXPECT_EQ(metric_operating_point(scores, labels, OperatingRule::parse("sensitivity=1")).threshold,
            static_cast<double>(0.3f));
  // Specificity 1 needs a threshold above 0.8: sensitivity 1/3 at 0.9.
  at = metric_operating_point(scores, labels, OperatingRule::parse("specificity=1"));
  EXPECT_EQ(at.threshold, static_cast<double>(0.9f));
  EXPECT_DOUBLE_EQ(at.value, 1.0 / 3.0);
  // Youden: 0.3 gives 1 + 1/2 - 1 = 1/2, the best.
  at = metric_operating_point(scores, labels, OperatingRule::parse("youden"));
  EXPECT_EQ(at.threshold, static_cast<double>(0.3f));
  EXPECT_DOUBLE_EQ(at.value, 0.5);
  // A normal image at the top: specificity 1 only above every score.
  at = metric_operating_point(floats({0.9f, 0.5f}), ints({0, 1}), OperatingRule::parse("specificity=1"));
  EXPECT_GT(at.threshold, static_cast<double>(0.9f));
  EXPECT_DOUBLE_EQ(at.value, 0.0);
  EXPECT_TRUE(std::isnan(metric_operating_point(floats({0.1f, 0.9f}), ints({1, 1}), OperatingRule{}).threshold));

  for (const char* text : {"f1", "youden", "sensitivity=0.95", "specificity=1"})
    EXPECT_EQ(OperatingRule::parse(text).to_string(), text);
  for (const char* bad : {"", "F1", "sensitivity", "sensitivity=", "sensitivity=0", "sensitivity=1.5",
                          "specificity=0.9x", "precision=0.9", "sensitivity=nan"})
    EXPECT_THROW(OperatingRule::parse(bad), medsad::Error) << bad;
}

TEST(MetricPixelLevel, DiceMaxMatchesBruteForceOnPooledPixels) {
  for (uint32_t seed = 1; seed <= 5; ++seed)
    for (bool rounded : {true, false}) {
      const auto images = random_images(seed, rounded);
      std::vector<torch::Tensor> maps, masks;
      image_tensors(images, maps, masks);
      std::vector<double> pooled_scores;
      std::vector<int> pooled_labels;
      for (const auto& image : images) {
        pooled_scores.insert(pooled_scores.end(), image.map.begin(), image.map.end());
        pooled_labels.insert(pooled_labels.end(), image.mask.begin(), image.mask.end());
      }
      SCOPED_TRACE("seed " + std::to_string(seed) + (rounded ? " rounded" : " distinct"));
      const auto best = metric_dice_max(maps, masks);
      const auto expected = brute_f1_max(pooled_scores, pooled_labels);
      EXPECT_EQ(best.value, expected.value);
      EXPECT_EQ(best.threshold, expected.threshold);
    }
}

// Mean over the images with a lesion of each image's Dice at threshold t, counted pixel by pixel.
double brute_mean_dice(const std::vector<Image>& images, double t) {
  double sum = 0;
  int lesion_images = 0;
  for (const auto& image : images) {
    const Counts c = brute_counts(std::vector<double>(image.map.begin(), image.map.end()), image.mask, t);
    if (c.tp + c.fn == 0) continue;
    sum += 2.0 * static_cast<double>(c.tp) / static_cast<double>(2 * c.tp + c.fp + c.fn);
    ++lesion_images;
  }
  return sum / lesion_images;
}

TEST(MetricPixelLevel, MeanDiceMaxMatchesBruteForcePerImage) {
  for (uint32_t seed = 1; seed <= 5; ++seed)
    for (bool rounded : {true, false}) {
      const auto images = random_images(seed, rounded);
      std::vector<torch::Tensor> maps, masks;
      image_tensors(images, maps, masks);
      std::vector<double> pooled;
      for (const auto& image : images) pooled.insert(pooled.end(), image.map.begin(), image.map.end());
      ThresholdScore expected{-1, 0};
      for (double t : distinct_descending(pooled))
        if (const double mean = brute_mean_dice(images, t); mean > expected.value + 1e-12) expected = {mean, t};
      SCOPED_TRACE("seed " + std::to_string(seed) + (rounded ? " rounded" : " distinct"));
      const auto best = metric_mean_dice_max(maps, masks);
      EXPECT_NEAR(best.value, expected.value, 1e-12);
      EXPECT_NEAR(brute_mean_dice(images, best.threshold), expected.value, 1e-12);
    }
}

TEST(MetricMeanDiceMax, WeighsEveryLesionImageAlikeAndIgnoresNormalImages) {
  // Image 0: an 8-pixel lesion scored 0.8; image 1: a 1-pixel lesion scored 0.5 beside two 0.6
  // pixels; image 2 is normal, with a 0.9 pixel. Mean Dice over images 0 and 1 at thresholds
  // 0.9: 0; 0.8: (1 + 0) / 2; 0.6: (1 + 0) / 2; 0.5: (1 + 2/4) / 2 = 0.75; 0.1: (16/18 + 2/5) / 2.
  // Pooled Dice-max stays at 0.8 (16/18: the large lesion outweighs the small one).
  const std::vector<torch::Tensor> maps{
      floats({0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.1f, 0.1f}).reshape({2, 5}),
      floats({0.5f, 0.6f, 0.6f, 0.1f}).reshape({1, 4}), floats({0.9f, 0.1f}).reshape({1, 2})};
  const std::vector<torch::Tensor> masks{ints({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}).reshape({2, 5}),
                                         ints({1, 0, 0, 0}).reshape({1, 4}), ints({0, 0}).reshape({1, 2})};
  const auto best = metric_mean_dice_max(maps, masks);
  EXPECT_DOUBLE_EQ(best.value, 0.75);
  EXPECT_EQ(best.threshold, static_cast<double>(0.5f));
  EXPECT_EQ(metric_dice_max(maps, masks).threshold, static_cast<double>(0.8f));
  EXPECT_TRUE(std::isnan(metric_mean_dice_max({maps[2]}, {masks[2]}).value));
}

TEST(MetricPixelLevel, AuproMatchesBruteForce) {
  for (uint32_t seed = 1; seed <= 5; ++seed)
    for (bool rounded : {true, false}) {
      const auto images = random_images(seed, rounded);
      std::vector<torch::Tensor> maps, masks;
      image_tensors(images, maps, masks);
      SCOPED_TRACE("seed " + std::to_string(seed) + (rounded ? " rounded" : " distinct"));
      for (double limit : {0.3, 0.05, 0.5, 1.0})
        EXPECT_NEAR(metric_aupro(maps, masks, limit), brute_aupro(images, limit), 1e-12) << "fpr_limit " << limit;
    }
}

TEST(MetricPixelLevel, PixelAurocIsTheFlattenedImageMetric) {
  const auto images = random_images(7, true);
  std::vector<torch::Tensor> maps, masks;
  image_tensors(images, maps, masks);
  std::vector<torch::Tensor> flat_maps, flat_masks;
  std::vector<double> pooled_scores;
  std::vector<int> pooled_labels;
  for (size_t i = 0; i < images.size(); ++i) {
    flat_maps.push_back(maps[i].reshape({-1}));
    flat_masks.push_back(masks[i].reshape({-1}));
    pooled_scores.insert(pooled_scores.end(), images[i].map.begin(), images[i].map.end());
    pooled_labels.insert(pooled_labels.end(), images[i].mask.begin(), images[i].mask.end());
  }
  EXPECT_NEAR(metric_auroc(torch::cat(flat_maps), torch::cat(flat_masks)), brute_auroc(pooled_scores, pooled_labels), 1e-12);
}

// ---------- dtypes, scale, errors ----------

TEST(MetricInputs, AcceptsHalfScores) {
  std::vector<double> scores;
  std::vector<int> labels;
  random_scores(11, 200, true, scores, labels);
  const auto half = scores_tensor(scores, torch::kHalf);
  const auto as_float = half.to(torch::kFloat);
  const auto label_t = labels_tensor(labels, torch::kInt32);
  EXPECT_EQ(metric_auroc(half, label_t), metric_auroc(as_float, label_t));
  EXPECT_EQ(metric_average_precision(half, label_t), metric_average_precision(as_float, label_t));
}

TEST(MetricInputs, TwentyMillionScoresFinish) {
  // Perfectly separated (positives in [1, 1.9), negatives in [0, 0.9)), with distinct random
  // scores so the sort does real work: AUROC and AP must both be exactly 1.
  const int64_t n = 20'000'000;
  torch::manual_seed(0);
  const auto labels = torch::arange(n, torch::kInt64).remainder(2).to(torch::kUInt8);
  const auto scores = labels.to(torch::kFloat) + torch::rand({n}) * 0.9f;
  EXPECT_EQ(metric_auroc(scores, labels), 1.0);
  EXPECT_EQ(metric_average_precision(scores, labels), 1.0);
}

TEST(MetricInputs, BadInputsThrowWithClearMessages) {
  EXPECT_EQ(error_text([] { (void)metric_auroc(floats({0.1f, 0.2f, 0.3f}), ints({0, 1, 1, 0})); }),
            "metric_auroc: scores have shape [3] but labels have shape [4]");
  EXPECT_EQ(error_text([] { (void)confusion_at(floats({0.1f, 0.2f}), ints({0, 1}).reshape({2, 1}), 0.5); }),
            "confusion_at: scores have shape [2] but labels have shape [2, 1]");
  EXPECT_EQ(error_text([] { (void)metric_average_precision(floats({0.1f, NAN}), ints({0, 1})); }),
            "metric_average_precision: scores contain NaN");
  EXPECT_EQ(error_text([] { (void)metric_f1_max(ints({1, 2}), ints({0, 1})); }),
            "metric_f1_max: scores must be a floating-point tensor, got Long");
  const auto map = torch::zeros({2, 3});
  EXPECT_EQ(error_text([&] { (void)metric_aupro({map, map}, {map}); }), "metric_aupro: 2 maps but 1 masks");
  EXPECT_EQ(error_text([&] { (void)metric_dice_max({map, map}, {map, map.t()}); }),
            "metric_dice_max: map 1 has shape [2, 3] but its mask has shape [3, 2]");
  EXPECT_EQ(error_text([&] { (void)metric_dice_max({map.reshape({-1})}, {map.reshape({-1})}); }),
            "metric_dice_max: map 0 has shape [6], expected [H, W]");
  EXPECT_EQ(error_text([&] { (void)metric_aupro({map}, {map}, 0.0); }), "metric_aupro: fpr_limit must lie in (0, 1], got 0");
  EXPECT_EQ(error_text([&] { (void)metric_aupro({map}, {map}, 1.5); }), "metric_aupro: fpr_limit must lie in (0, 1], got 1.5");
}

// ---------- bootstrap intervals, against closed-form standard errors ----------

TEST(BootstrapInterval, MeanMatchesTheNormalApproximation) {
  // For n = 400 draws the mean's bootstrap distribution is close to normal with the sample's
  // standard error, so the interval should be mean -/+ 1.96 s / sqrt(n).
  std::mt19937_64 rng(11);
  std::vector<double> values;
  for (int i = 0; i < 400; ++i) values.push_back(draw_uniform(rng));
  double mean = 0, var = 0;
  for (double v : values) mean += v / 400;
  for (double v : values) var += (v - mean) * (v - mean) / 399;
  const double half = 1.96 * std::sqrt(var / 400);
  const auto ci = bootstrap_mean_ci95(values);
  EXPECT_NEAR((ci.high - ci.low) / 2, half, 0.08 * half);
  EXPECT_NEAR((ci.high + ci.low) / 2, mean, 0.15 * half);
  // Deterministic by seed; another seed moves it only a little.
  const auto again = bootstrap_mean_ci95(values), other = bootstrap_mean_ci95(values, 2000, 5);
  EXPECT_EQ(again.low, ci.low);
  EXPECT_EQ(again.high, ci.high);
  EXPECT_NE(other.low, ci.low);
  EXPECT_NEAR(other.low, ci.low, 0.1 * half);
}

TEST(BootstrapInterval, AurocMatchesHanleyMcNeil) {
  // Binormal scores, 300 abnormal ~ N(1, 1) and 300 normal ~ N(0, 1): the bootstrap interval's
  // half-width should match 1.96 x Hanley & McNeil's (1982) closed-form standard error of AUROC.
  std::mt19937_64 rng(3);
  std::vector<float> scores;
  std::vector<int64_t> labels;
  for (int i = 0; i < 600; ++i) {
    labels.push_back(i % 2);
    scores.push_back(static_cast<float>(draw_normal(rng) + (i % 2)));
  }
  const auto s = floats(scores), l = ints(labels);
  const double a = metric_auroc(s, l), q1 = a / (2 - a), q2 = 2 * a * a / (1 + a), m = 300;
  const double se = std::sqrt((a * (1 - a) + (m - 1) * (q1 - a * a) + (m - 1) * (q2 - a * a)) / (m * m));
  const auto ci = bootstrap_auroc_ci95(s, l);
  EXPECT_NEAR((ci.high - ci.low) / 2, 1.96 * se, 0.15 * 1.96 * se);
  EXPECT_LT(ci.low, a);
  EXPECT_GT(ci.high, a);
}

TEST(BootstrapInterval, DegenerateCases) {
  // Perfect separation stays perfect in every resample; one class, or nothing, has no interval.
  const auto perfect = bootstrap_auroc_ci95(floats({0.1f, 0.2f, 0.8f, 0.9f}), ints({0, 0, 1, 1}));
  EXPECT_EQ(perfect.low, 1.0);
  EXPECT_EQ(perfect.high, 1.0);
  EXPECT_TRUE(std::isnan(bootstrap_auroc_ci95(floats({0.1f, 0.2f}), ints({1, 1})).low));
  EXPECT_TRUE(std::isnan(bootstrap_mean_ci95({}).high));
  const auto constant = bootstrap_mean_ci95({0.25, 0.25, 0.25});
  EXPECT_EQ(constant.low, 0.25);
  EXPECT_EQ(constant.high, 0.25);
  EXPECT_EQ(error_text([] { (void)bootstrap_mean_ci95({0.5}, 3); }),
            "bootstrap resamples must be between 10 and 1000000, got 3");
}

// The per-epoch model-selection score: the mean of image AUROC and pooled pixel AUROC, each by
// brute force here; whichever the split supports alone; 0 with neither.
TEST(SelectionScore, MeanOfImageAndPixelAurocByBruteForce) {
  // Brute-force pixel AUROC over every map that has a mask.
  const auto pixel_auroc = [](const std::vector<ImageResult>& results) {
    std::vector<double> pixels;
    std::vector<int> lesion;
    for (const auto& r : results)
      if (r.mask.defined())
        for (int64_t k = 0; k < r.mask.numel(); ++k) {
          pixels.push_back(r.map.flatten()[k].item<double>());
          lesion.push_back(r.mask.flatten()[k].item<double>() > 0.5);
        }
    return brute_auroc(pixels, lesion);
  };
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<ImageResult> results;
  std::vector<double> scores;
  std::vector<int> labels;
  for (int i = 0; i < 12; ++i) {
    ImageResult r;
    r.label = i % 3 == 0;
    r.score = std::round(u(rng) * 8) / 8;  // ties
    r.map = torch::rand({3, 4}, torch::kFloat64).mul(4).round().div(4);
    r.mask = torch::zeros({3, 4});
    if (r.label) r.mask.index_put_({torch::indexing::Slice(0, 2), 1}, 1.0);
    if (i == 4) r.mask = torch::Tensor();  // a normal image without a mask file: image level only
    scores.push_back(r.score);
    labels.push_back(r.label);
    results.push_back(r);
  }
  ImageResult unreadable;
  unreadable.error = "cannot decode";
  results.push_back(unreadable);
  const double image = brute_auroc(scores, labels);
  EXPECT_NEAR(selection_score(results), (image + pixel_auroc(results)) / 2, 1e-12);

  auto no_masks = results;
  for (auto& r : no_masks) r.mask = torch::Tensor();
  EXPECT_NEAR(selection_score(no_masks), image, 1e-12);
  auto abnormal_only = results;
  abnormal_only.erase(std::remove_if(abnormal_only.begin(), abnormal_only.end(), [](auto& r) { return r.label != 1; }),
                      abnormal_only.end());
  EXPECT_NEAR(selection_score(abnormal_only), pixel_auroc(abnormal_only), 1e-12);
  for (auto& r : abnormal_only) r.mask = torch::Tensor();
  EXPECT_EQ(selection_score(abnormal_only), 0.0);
}
