// Reading binary segmentation masks (OpenCV) and merging several masks of one image (BUSI's
// NAME_mask_1.png, NAME_mask_2.png ...). A mask is any decodable 8/16-bit or float image; a
// pixel is foreground when any colour channel is nonzero (alpha is ignored).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace medsad::data {

// Mask of the image at `image_path` whose size is height × width: float [H, W], 1 where the mask
// is nonzero, else 0. Throws Error(mask_path, ...) if the mask is missing or undecodable, or if
// its size differs from the image's (the message names the image path and both sizes, H×W).
[[nodiscard]] torch::Tensor read_mask(const std::string& mask_path, const std::string& image_path, int64_t height,
                                      int64_t width);

// Writes the pixelwise OR of `mask_paths` (at least one) to `out_path` as an 8-bit PNG holding
// 0 and 255, atomically. Throws Error naming the mask that is unreadable or whose size differs
// from the first one's.
void merge_masks(const std::vector<std::string>& mask_paths, const std::string& out_path);

}  // namespace medsad::data
