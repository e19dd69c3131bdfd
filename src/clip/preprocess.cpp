#include "clip/preprocess.h"

#include <cmath>

#include "data/image_io.h"

namespace medsad::clip {

torch::Tensor resize_and_crop(const torch::Tensor& rgb, int64_t size) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(0) == 3, "expected [3, H, W], got ", rgb.sizes());
  const int64_t H = rgb.size(1), W = rgb.size(2);
  if (H == size && W == size) return rgb;
  // Shorter side to `size`, longer side scaled in proportion (torchvision's Resize(int) rule).
  const int64_t new_h = H <= W ? size : static_cast<int64_t>(size * static_cast<double>(H) / W);
  const int64_t new_w = H <= W ? static_cast<int64_t>(size * static_cast<double>(W) / H) : size;
  namespace F = torch::nn::functional;
  auto resized = F::interpolate(rgb.unsqueeze(0), F::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{new_h, new_w})
                                                      .mode(torch::kBicubic)
                                                      .align_corners(false)
                                                      .antialias(true))
                     .squeeze(0)
                     .clamp(0.0, 1.0);  // [3, new_h, new_w]
  const int64_t top = static_cast<int64_t>(std::round((new_h - size) / 2.0));
  const int64_t left = static_cast<int64_t>(std::round((new_w - size) / 2.0));
  return resized.slice(1, top, top + size).slice(2, left, left + size).contiguous();  // [3, size, size]
}

torch::Tensor normalize_image(const torch::Tensor& rgb, const ImagePreprocess& pre) {
  auto mean = torch::tensor({pre.mean[0], pre.mean[1], pre.mean[2]}).view({3, 1, 1});
  auto std = torch::tensor({pre.std[0], pre.std[1], pre.std[2]}).view({3, 1, 1});
  return (rgb - mean) / std;
}

torch::Tensor load_clip_image(const std::string& path, int64_t size, const ImagePreprocess& pre) {
  return normalize_image(resize_and_crop(read_image_rgb(path), size), pre);
}

}  // namespace medsad::clip
