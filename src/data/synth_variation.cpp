#include "data/synth_variation.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "core/error.h"
#include "core/random.h"
#include "data/noise_field.h"

namespace medsad::data {

VariationOptions VariationOptions::none() { return {0, 0, 0, 0, 0, 1, 0, 0}; }

VariationOptions VariationOptions::scaled(double factor) {
  check_range("variation", factor, 0, 3);
  VariationOptions v;
  for (double* amplitude : {&v.max_rotation_deg, &v.max_scale, &v.max_shift, &v.elastic, &v.bias, &v.max_contrast,
                            &v.max_noise})
    *amplitude *= factor;
  v.max_gamma = std::pow(v.max_gamma, factor);
  return v;
}

void VariationOptions::validate() const {
  check_range("variation max_rotation_deg", max_rotation_deg, 0, 45);
  check_range("variation max_scale", max_scale, 0, 0.5);
  check_range("variation max_shift", max_shift, 0, 0.25);
  check_range("variation elastic", elastic, 0, 0.05);
  check_range("variation bias", bias, 0, 1);
  check_range("variation max_gamma", max_gamma, 1, 3);
  check_range("variation max_contrast", max_contrast, 0, 0.5);
  check_range("variation max_noise", max_noise, 0, 0.2);
}

nlohmann::json VariationOptions::to_json() const {
  return {{"max_rotation_deg", max_rotation_deg}, {"max_scale", max_scale}, {"max_shift", max_shift},
          {"elastic", elastic}, {"bias", bias}, {"max_gamma", max_gamma},
          {"max_contrast", max_contrast}, {"max_noise", max_noise}};
}

void apply_variation(cv::Mat& image, cv::Mat& mask, const VariationOptions& options, std::mt19937_64& rng) {
  TORCH_CHECK(image.type() == CV_32F && mask.type() == CV_8U && image.size() == mask.size(),
              "apply_variation expects a CV_32F image and a CV_8U mask of the same size");
  const int rows = image.rows, cols = image.cols;
  const double side = std::max(rows, cols);
  const auto symmetric = [&](double amplitude) { return draw_uniform(rng, -1.0, 1.0) * amplitude; };

  // Geometry: output pixel p samples the source at centre + R^-1 (p - centre - shift) / scale
  // + warp(p). The elastic warp varies over a quarter of the image: shape, not texture.
  const double angle = symmetric(options.max_rotation_deg) * M_PI / 180.0;
  const double scale = 1.0 + symmetric(options.max_scale);
  const double shift_x = symmetric(options.max_shift) * side, shift_y = symmetric(options.max_shift) * side;
  const cv::Mat warp_x = smooth_noise(rows, cols, side / 4, rng) * (options.elastic * side);
  const cv::Mat warp_y = smooth_noise(rows, cols, side / 4, rng) * (options.elastic * side);
  const double cx = (cols - 1) / 2.0, cy = (rows - 1) / 2.0, c = std::cos(angle), s = std::sin(angle);
  cv::Mat map_x(image.size(), CV_32F), map_y(image.size(), CV_32F);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) {
      const double px = x - cx - shift_x, py = y - cy - shift_y;
      map_x.at<float>(y, x) = static_cast<float>(cx + (c * px + s * py) / scale + warp_x.at<float>(y, x));
      map_y.at<float>(y, x) = static_cast<float>(cy + (-s * px + c * py) / scale + warp_y.at<float>(y, x));
    }
  cv::Mat moved_image, moved_mask;
  cv::remap(image, moved_image, map_x, map_y, cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar(0));
  cv::remap(mask, moved_mask, map_x, map_y, cv::INTER_NEAREST, cv::BORDER_CONSTANT, cv::Scalar(0));
  mask = moved_mask;

  // Intensity: bias field (over half the image), gamma, contrast, then Rician noise, the
  // magnitude of a complex signal with Gaussian noise in both channels.
  cv::Mat bias;
  cv::exp(smooth_noise(rows, cols, side / 2, rng) * options.bias, bias);
  const double gamma = std::exp(symmetric(std::log(options.max_gamma)));
  const double contrast = 1.0 + symmetric(options.max_contrast);
  const double noise_sd = draw_uniform(rng, 0.0, options.max_noise);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) {
      const double biased = std::clamp(double{moved_image.at<float>(y, x)} * bias.at<float>(y, x), 0.0, 1.0);
      const double signal = std::pow(biased, gamma) * contrast;
      const auto [noise_real, noise_imaginary] = draw_normal_pair(rng);
      const double real = signal + noise_sd * noise_real, imaginary = noise_sd * noise_imaginary;
      moved_image.at<float>(y, x) = static_cast<float>(std::min(1.0, std::sqrt(real * real + imaginary * imaginary)));
    }
  image = moved_image;
}

}  // namespace medsad::data
