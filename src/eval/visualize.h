// Pictures of results for people: heat-map overlays with the predicted outline, and side-by-side
// case panels (image | ground truth | prediction) for reports. 8-bit BGR cv::Mat throughout.
#pragma once
#include <opencv2/core.hpp>
#include <torch/torch.h>

namespace medsad::eval {

// [H, W] float in [0, 1] (clamped) -> CV_8U.
cv::Mat to_mat_u8(const torch::Tensor& hw);

// [H, W] float in [0, 1] (clamped) -> CV_16U, 1 = 65535: an anomaly map kept for analysis.
cv::Mat to_mat_u16(const torch::Tensor& hw);

// The image in grey under a JET heat map of `map` ([H, W] in [0, 1]), `lesion` (CV_8U, non-zero =
// predicted lesion) outlined in white. rgb: [3, H, W] in [0, 1].
cv::Mat anomaly_overlay(const torch::Tensor& rgb, const torch::Tensor& map, const cv::Mat& lesion);

// Three panels side by side: the image with the ground-truth outline in green (if `truth` is
// defined, [H, W] 0/1), the overlay of anomaly_overlay, and a caption line under them.
cv::Mat case_panel(const torch::Tensor& rgb, const torch::Tensor& map, const torch::Tensor& truth,
                   double pixel_threshold, const std::string& caption);

}  // namespace medsad::eval
