#include "data/mask_io.h"

#include <filesystem>
#include <opencv2/core.hpp>

#include "core/error.h"
#include "data/image_io.h"

namespace medsad::data {
namespace {

std::string size_text(int64_t height, int64_t width) { return std::to_string(height) + "x" + std::to_string(width); }

// The mask at `path` as CV_8UC1 holding 0 or 1.
cv::Mat read_binary(const std::string& path) {
  const cv::Mat raw = decode_image_file(path, "mask");
  // Colour channels only: grey+alpha keeps channel 0, BGRA keeps B, G, R.
  std::vector<cv::Mat> channels;
  cv::split(raw, channels);
  const size_t colour = channels.size() == 2 ? 1 : std::min<size_t>(channels.size(), 3);
  cv::Mat binary = cv::Mat::zeros(raw.rows, raw.cols, CV_8UC1);
  for (size_t c = 0; c < colour; ++c) {
    cv::Mat nonzero = channels[c] != 0;  // CV_8U, 255 where nonzero
    binary.setTo(1, nonzero);
  }
  return binary;
}

}  // namespace

torch::Tensor read_mask(const std::string& mask_path, const std::string& image_path, int64_t height, int64_t width) {
  const cv::Mat binary = read_binary(mask_path);
  if (binary.rows != height || binary.cols != width)
    fail(mask_path, "mask is " + size_text(binary.rows, binary.cols) + " (HxW) but its image " + image_path + " is " +
                        size_text(height, width));
  const cv::Mat contiguous = binary.isContinuous() ? binary : binary.clone();
  return torch::from_blob(const_cast<uint8_t*>(contiguous.ptr<uint8_t>()), {height, width}, torch::kUInt8)
      .to(torch::kFloat32);  // [H, W], copies out of the cv::Mat
}

void merge_masks(const std::vector<std::string>& mask_paths, const std::string& out_path) {
  if (mask_paths.empty()) fail(out_path, "no masks to merge");
  cv::Mat merged = read_binary(mask_paths.front());
  for (size_t i = 1; i < mask_paths.size(); ++i) {
    const cv::Mat next = read_binary(mask_paths[i]);
    if (next.size() != merged.size())
      fail(mask_paths[i], "mask is " + size_text(next.rows, next.cols) + " (HxW) but " + mask_paths.front() +
                              ", another mask of the same image, is " + size_text(merged.rows, merged.cols));
    cv::bitwise_or(merged, next, merged);
  }
  write_png(out_path, merged * 255);
}

}  // namespace medsad::data
