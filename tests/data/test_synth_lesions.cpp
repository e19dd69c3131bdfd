// Synthetic lesions and variation on a hand-made slice: every lesion kind stays inside the
// brain, its mask is exactly what it changed, and the variation moves image and mask alike.
#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "data/synth_lesions.h"
#include "data/synth_variation.h"
#include "test_support.h"

namespace medsad::data {
namespace {

// 96x96: an elliptical "brain" with bright stripes (white-matter-like) in a dim "skull" ring.
SliceImage make_slice() {
  SliceImage slice{cv::Mat(96, 96, CV_32F, cv::Scalar(0.0f)), cv::Mat::zeros(96, 96, CV_8U)};
  cv::ellipse(slice.brain, cv::Point(48, 48), cv::Size(34, 40), 0, 0, 360, cv::Scalar(255), cv::FILLED);
  for (int y = 0; y < 96; ++y)
    for (int x = 0; x < 96; ++x) {
      const double dx = (x - 48) / 44.0, dy = (y - 48) / 46.0;
      const bool head = dx * dx + dy * dy < 1;
      slice.image.at<float>(y, x) = slice.brain.at<uchar>(y, x)
                                        ? static_cast<float>(0.55 + 0.15 * std::sin(x / 5.0) * std::cos(y / 7.0))
                                        : (head ? 0.3f : 0.0f);
    }
  return slice;
}

int count(const cv::Mat& binary) { return cv::countNonZero(binary); }

TEST(SynthLesions, EveryKindStaysInTheBrainAndItsMaskIsWhatChanged) {
  const SliceImage slice = make_slice();
  const cv::Mat outside_brain = slice.brain == 0;
  for (LesionKind kind : {LesionKind::Tumour, LesionKind::WhiteMatter, LesionKind::Haemorrhage})
    for (const auto& difficulty : {LesionDifficulty::easy(), LesionDifficulty::hard()})
      for (uint64_t seed = 0; seed < 8; ++seed) {
        SCOPED_TRACE(std::string(to_string(kind)) + " seed " + std::to_string(seed));
        std::mt19937_64 rng(seed);
        const LesionedSlice out = add_lesion(slice, kind, difficulty, rng);
        ASSERT_EQ(out.mask.type(), CV_8U);
        ASSERT_GT(count(out.mask), 0);
        EXPECT_EQ(count(out.mask & outside_brain), 0);
        const cv::Mat changed = out.image != slice.image;  // exact: untouched pixels are copied
        EXPECT_EQ(count(changed & outside_brain), 0);
        // Mass effect moves tissue outside a tumour; the other kinds change nothing outside the mask.
        if (kind != LesionKind::Tumour) EXPECT_EQ(count(changed & (out.mask == 0)), 0);
        // No halo of untouched pixels in the mask: soft edges are floored at a visible weight, so
        // only pixels where the lesion's value happens to match the tissue change by less than a
        // grey level.
        cv::Mat difference;
        cv::absdiff(out.image, slice.image, difference);
        EXPECT_GE(count((difference > 1.0 / 255) & out.mask), 0.7 * count(out.mask));
      }
}

TEST(SynthLesions, SameGeneratorStateSameLesion) {
  const SliceImage slice = make_slice();
  std::mt19937_64 first(42), second(42);
  const auto a = add_lesion(slice, LesionKind::Tumour, LesionDifficulty::medium(), first);
  const auto b = add_lesion(slice, LesionKind::Tumour, LesionDifficulty::medium(), second);
  EXPECT_EQ(count(a.image != b.image), 0);
  EXPECT_EQ(count(a.mask != b.mask), 0);
}

TEST(SynthLesions, DifficultyNamesAndBadRanges) {
  EXPECT_EQ(LesionDifficulty::from_name("hard").max_radius, LesionDifficulty::hard().max_radius);
  EXPECT_THROW((void)LesionDifficulty::from_name("extreme"), Error);
  LesionDifficulty inverted = LesionDifficulty::medium();
  inverted.min_contrast = 0.6;
  EXPECT_THROW(inverted.validate(), Error);
}

TEST(SynthVariation, NoneIsTheIdentity) {
  const SliceImage slice = make_slice();
  cv::Mat image = slice.image.clone(), mask = slice.brain.clone();
  std::mt19937_64 rng(1);
  apply_variation(image, mask, VariationOptions::none(), rng);
  EXPECT_EQ(count(image != slice.image), 0);
  EXPECT_EQ(count(mask != slice.brain), 0);
}

TEST(SynthVariation, ScaledMultipliesTheDefaultAmplitudes) {
  const VariationOptions defaults, none = VariationOptions::none();
  const auto fields = [](const VariationOptions& v) {
    return std::vector<double>{v.max_rotation_deg, v.max_scale, v.max_shift, v.elastic,
                               v.bias,             v.max_gamma, v.max_contrast, v.max_noise};
  };
  EXPECT_EQ(fields(VariationOptions::scaled(0)), fields(none));
  EXPECT_EQ(fields(VariationOptions::scaled(1)), fields(defaults));
  const VariationOptions doubled = VariationOptions::scaled(2);
  EXPECT_DOUBLE_EQ(doubled.max_rotation_deg, 2 * defaults.max_rotation_deg);
  EXPECT_DOUBLE_EQ(doubled.elastic, 2 * defaults.elastic);
  EXPECT_DOUBLE_EQ(doubled.max_noise, 2 * defaults.max_noise);
  EXPECT_DOUBLE_EQ(doubled.max_gamma, defaults.max_gamma * defaults.max_gamma);
  EXPECT_NO_THROW(VariationOptions::scaled(3).validate());
  EXPECT_THROW((void)VariationOptions::scaled(-0.5), Error);
  EXPECT_THROW((void)VariationOptions::scaled(3.5), Error);
}

TEST(SynthVariation, ImageAndMaskMoveAlike) {
  // With the intensity changes off, an image that is the mask itself must still match the mask.
  VariationOptions geometry_only;
  geometry_only.bias = 0;
  geometry_only.max_gamma = 1;
  geometry_only.max_contrast = 0;
  geometry_only.max_noise = 0;
  geometry_only.max_rotation_deg = 10;
  const SliceImage slice = make_slice();
  for (uint64_t seed = 0; seed < 5; ++seed) {
    cv::Mat mask = slice.brain.clone(), image;
    mask.convertTo(image, CV_32F, 1.0 / 255);
    std::mt19937_64 rng(seed);
    apply_variation(image, mask, geometry_only, rng);
    const int disagree = count((image >= 0.5) != mask);
    EXPECT_NE(count(mask != slice.brain), 0) << "seed " << seed << ": nothing moved";
    EXPECT_LE(disagree, 0.03 * count(mask)) << "seed " << seed;  // bilinear vs nearest, at the edge only
  }
}

}  // namespace
}  // namespace medsad::data
