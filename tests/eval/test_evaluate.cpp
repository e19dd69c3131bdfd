// Calibration and the reported metrics on hand-made results whose thresholds and Dice values
// are worked out by hand in the comments.
#include <cmath>
#include <vector>

#include "eval/evaluate.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::eval;

namespace {

ImageResult result(int label, double score, std::vector<float> map, std::vector<int64_t> mask, int64_t cols) {
  ImageResult r;
  r.path = "image" + std::to_string(label);
  r.label = label;
  r.score = score;
  const auto rows = static_cast<int64_t>(map.size()) / cols;
  r.map = torch::tensor(map).reshape({rows, cols});
  r.mask = torch::tensor(mask).reshape({rows, cols}).to(torch::kUInt8);
  return r;
}

// Two abnormal images, an 8-pixel lesion scored 0.8 and a 1-pixel lesion scored 0.5 beside two
// 0.6 pixels, and two normal images. Mean Dice over the abnormal ones peaks at threshold 0.5:
// (1 + 2/4) / 2 = 0.75; pooled Dice would stop at 0.8 and give the small lesion Dice 0.
std::vector<ImageResult> results() {
  return {result(1, 0.9, {0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.8f, 0.1f, 0.1f}, {1, 1, 1, 1, 1, 1, 1, 1, 0, 0}, 5),
          result(1, 0.7, {0.5f, 0.6f, 0.6f, 0.1f}, {1, 0, 0, 0}, 4),
          result(0, 0.6, {0.9f, 0.1f, 0.1f, 0.1f}, {0, 0, 0, 0}, 2),
          result(0, 0.2, {0.5f, 0.5f, 0.1f, 0.1f}, {0, 0, 0, 0}, 2)};
}

}  // namespace

TEST(Calibrate, PixelThresholdMaximisesTheReportedMeanDice) {
  const auto calibration = calibrate(results());
  ASSERT_TRUE(calibration.calibrated);
  EXPECT_EQ(calibration.pixel_threshold, static_cast<double>(0.5f));
  EXPECT_EQ(calibration.image_threshold, 0.7);  // F1: 0.9 -> 2/3, 0.7 -> 1, 0.6 -> 0.8
  const auto metrics = compute_metrics(results(), calibration);
  EXPECT_DOUBLE_EQ(metrics["pixel"]["mean_dice"].get<double>(), 0.75);
}

TEST(Calibrate, WithoutLesionMasksThePixelThresholdIsTheOneGiven) {
  auto unmasked = results();
  for (auto& r : unmasked)
    if (r.label == 1) r.mask = torch::Tensor();  // abnormal images whose masks are unknown
  const auto calibration = calibrate(unmasked, {}, 0.31);
  ASSERT_TRUE(calibration.calibrated);
  EXPECT_EQ(calibration.pixel_threshold, 0.31);
  EXPECT_EQ(calibration.image_threshold, 0.7);  // chosen as with the masks
  EXPECT_EQ(calibrate(results(), {}, 0.31).pixel_threshold, static_cast<double>(0.5f));  // with them: chosen
}

TEST(ComputeMetrics, NormalFlaggedFractionIsTheShareOfNormalPixelsAtOrAboveTheThreshold) {
  model::Calibration calibration;
  calibration.pixel_threshold = 0.5;  // normal images: 1 of 4 and 2 of 4 pixels flagged
  EXPECT_DOUBLE_EQ(compute_metrics(results(), calibration)["pixel"]["normal_flagged_fraction"].get<double>(), 0.375);
  calibration.pixel_threshold = 0.95;
  EXPECT_DOUBLE_EQ(compute_metrics(results(), calibration)["pixel"]["normal_flagged_fraction"].get<double>(), 0.0);
}
