// The random variation every synthetic benchmark image gets, normal or abnormal, so that no two
// images drawn from the same slice are alike: a small rotation, scaling, shift and elastic warp
// (anatomy and positioning), a smooth multiplicative bias field (coil sensitivity), a gamma and
// contrast change (scanner and windowing) and Rician noise (magnitude MRI).
#pragma once
#include <random>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace medsad::data {

struct VariationOptions {
  double max_rotation_deg = 8.0;  // rotation drawn in [-this, this] degrees
  double max_scale = 0.05;        // isotropic scale drawn in [1 - this, 1 + this]
  double max_shift = 0.03;        // shift drawn in [-this, this] of the image side, per axis
  double elastic = 0.01;          // sd of the smooth elastic displacement, fraction of the side
  double bias = 0.12;             // sd of the log of the multiplicative bias field
  double max_gamma = 1.25;        // gamma drawn log-uniformly in [1 / this, this]
  double max_contrast = 0.08;     // intensity scale drawn in [1 - this, 1 + this]
  double max_noise = 0.025;       // Rician noise sd drawn in [0, this] (intensities in [0, 1])

  static VariationOptions none();  // the identity: every amplitude 0, gamma 1
  // The defaults with every amplitude times `factor` (gamma's range as a power: 1.25^factor),
  // factor in [0, 3]: 0 is none(), 1 the defaults. `medsad synth --variation`.
  static VariationOptions scaled(double factor);
  void validate() const;           // throws Error naming the field and its bad value
  nlohmann::json to_json() const;
};

// Varies image (CV_32F [H, W] in [0, 1]) and mask (CV_8U [H, W], 0/255) in place: the geometric
// part moves both alike (image bilinear, mask nearest neighbour, zero outside the source); the
// intensity part touches the image only. The image stays in [0, 1]. Draws the same number of
// values from `rng` whatever the options, so an option change does not reshuffle the rest.
void apply_variation(cv::Mat& image, cv::Mat& mask, const VariationOptions& options, std::mt19937_64& rng);

}  // namespace medsad::data
