// Resizing to the model input and training augmentation, applied to an image and its mask alike.
#pragma once
#include <torch/torch.h>

namespace medsad::data {

// rgb: [3, H, W] in [0, 1] -> [3, S, S] (bicubic, antialiased, clamped). Medical images keep
// their whole field of view: the image is resized, not cropped, so the mask stays aligned.
torch::Tensor resize_image(const torch::Tensor& rgb, int64_t size);

// mask: [H, W] -> [S, S], nearest neighbour, binary.
torch::Tensor resize_mask(const torch::Tensor& mask, int64_t size);

// map: [S, S] -> [H, W], bilinear (the anomaly map back at the image's own size).
torch::Tensor resize_map(const torch::Tensor& map, int64_t height, int64_t width);

struct AugmentOptions {
  double flip_probability = 0.5;  // horizontal and vertical, each
  double max_rotation_deg = 15.0;
  double max_translation = 0.10;  // fraction of the side
  double intensity_jitter = 0.10; // brightness shift and contrast scale spread
};

// In place on a batch: images [B, 3, S, S] in [0, 1], masks [B, S, S]. Uses torch's global RNG
// (seeded by the trainer), so a run is reproducible.
void augment_batch(torch::Tensor& images, torch::Tensor& masks, const AugmentOptions& options);

}  // namespace medsad::data
