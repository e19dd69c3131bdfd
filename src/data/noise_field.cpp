#include "data/noise_field.h"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "core/random.h"

namespace medsad::data {

cv::Mat smooth_noise(int rows, int cols, double cell, std::mt19937_64& rng) {
  // One knot per `cell` pixels plus a margin knot each side, so the field does not flatten at
  // the borders; at least 2x2 knots so the field varies at all.
  const auto knots = [&](int pixels) {
    return std::max(2, static_cast<int>(std::ceil(pixels / std::max(cell, 1.0))) + 2);
  };
  cv::Mat grid(knots(rows), knots(cols), CV_32F);
  for (int y = 0; y < grid.rows; ++y)
    for (int x = 0; x < grid.cols; ++x) grid.at<float>(y, x) = static_cast<float>(draw_normal(rng));
  cv::Mat field;
  cv::resize(grid, field, cv::Size(cols, rows), 0, 0, cv::INTER_CUBIC);
  cv::Scalar mean, sd;
  cv::meanStdDev(field, mean, sd);
  field = (field - mean[0]) / std::max(sd[0], 1e-6);
  return field;
}

}  // namespace medsad::data
