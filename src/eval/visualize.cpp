#include "eval/visualize.h"

#include <algorithm>

#include <opencv2/imgproc.hpp>

namespace medsad::eval {
namespace {

void draw_outline(cv::Mat& canvas, const cv::Mat& region, const cv::Scalar& colour) {
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(region.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  cv::drawContours(canvas, contours, -1, colour, std::max(1, canvas.cols / 200));
}

cv::Mat grey_bgr(const torch::Tensor& rgb) {
  cv::Mat out;
  cv::cvtColor(to_mat_u8(rgb.mean(0)), out, cv::COLOR_GRAY2BGR);
  return out;
}

}  // namespace

cv::Mat to_mat_u8(const torch::Tensor& hw) {
  const auto u8 = (hw.detach().to(torch::kFloat32).clamp(0, 1) * 255).round().to(torch::kUInt8).contiguous();
  return cv::Mat(static_cast<int>(u8.size(0)), static_cast<int>(u8.size(1)), CV_8U, u8.data_ptr<uint8_t>()).clone();
}

cv::Mat to_mat_u16(const torch::Tensor& hw) {
  // int32 first: LibTorch 1.13 has no uint16 dtype.
  const auto u16 = (hw.detach().to(torch::kFloat32).clamp(0, 1) * 65535).round().to(torch::kInt32).contiguous();
  cv::Mat wide(static_cast<int>(u16.size(0)), static_cast<int>(u16.size(1)), CV_32S, u16.data_ptr<int32_t>());
  cv::Mat out;
  wide.convertTo(out, CV_16U);
  return out;
}

cv::Mat anomaly_overlay(const torch::Tensor& rgb, const torch::Tensor& map, const cv::Mat& lesion) {
  cv::Mat heat, blended;
  cv::applyColorMap(to_mat_u8(map), heat, cv::COLORMAP_JET);
  cv::addWeighted(grey_bgr(rgb), 0.55, heat, 0.45, 0, blended);
  draw_outline(blended, lesion, cv::Scalar(255, 255, 255));
  return blended;
}

cv::Mat case_panel(const torch::Tensor& rgb, const torch::Tensor& map, const torch::Tensor& truth,
                   double pixel_threshold, const std::string& caption) {
  cv::Mat left = grey_bgr(rgb);
  if (truth.defined()) draw_outline(left, to_mat_u8(truth), cv::Scalar(0, 200, 0));
  const cv::Mat right = anomaly_overlay(rgb, map, to_mat_u8((map >= pixel_threshold).to(torch::kFloat32)));
  const int caption_height = std::max(18, left.rows / 10);
  cv::Mat panel(left.rows + caption_height, left.cols * 2, CV_8UC3, cv::Scalar(0, 0, 0));
  left.copyTo(panel(cv::Rect(0, 0, left.cols, left.rows)));
  right.copyTo(panel(cv::Rect(left.cols, 0, right.cols, right.rows)));
  const double scale = std::max(0.3, caption_height / 40.0);
  cv::putText(panel, caption, cv::Point(4, left.rows + caption_height * 3 / 4), cv::FONT_HERSHEY_SIMPLEX, scale,
              cv::Scalar(255, 255, 255), 1, cv::LINE_AA);
  return panel;
}

}  // namespace medsad::eval
