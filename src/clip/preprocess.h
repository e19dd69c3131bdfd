// CLIP image preprocessing, as open_clip's image_transform for inference: resize the shorter
// side to the input size (bicubic, antialiased like PIL), centre crop, normalise by mean/std.
// An image already at the input size is not resampled.
#pragma once
#include <string>

#include <torch/torch.h>

#include "clip/config.h"

namespace medsad::clip {

// rgb: [3, H, W] in [0, 1] -> [3, size, size] in [0, 1].
torch::Tensor resize_and_crop(const torch::Tensor& rgb, int64_t size);

// rgb: [..., 3, H, W] in [0, 1] -> (rgb - mean) / std (a batch works too).
torch::Tensor normalize_image(const torch::Tensor& rgb, const ImagePreprocess& pre);

// read_image_rgb + resize_and_crop + normalize_image: [3, size, size].
torch::Tensor load_clip_image(const std::string& path, int64_t size, const ImagePreprocess& pre);

}  // namespace medsad::clip
