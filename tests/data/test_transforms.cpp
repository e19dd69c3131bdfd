#include "data/transforms.h"
#include "test_support.h"

using namespace medsad::data;

TEST(Transforms, ResizeKeepsImagesAtSizeAndMasksBinary) {
  const auto rgb = torch::rand({3, 40, 40});
  EXPECT_TRUE(torch::equal(resize_image(rgb, 40), rgb));
  EXPECT_EQ(resize_image(rgb, 24).sizes(), torch::IntArrayRef({3, 24, 24}));
  auto mask = torch::zeros({40, 40});
  mask.slice(0, 10, 30).slice(1, 10, 30).fill_(1);
  const auto small = resize_mask(mask, 20);
  EXPECT_EQ(small.sum().item<float>(), 100.0f);  // the 20x20 square becomes 10x10
  EXPECT_TRUE(torch::equal(small, small.round()));
  EXPECT_EQ(resize_map(torch::rand({8, 8}), 30, 50).sizes(), torch::IntArrayRef({30, 50}));
}

TEST(Transforms, AugmentationMovesImageAndMaskTogether) {
  torch::manual_seed(5);
  // Bright squares on a dark image; the mask is exactly the bright pixels.
  auto images = torch::full({6, 3, 48, 48}, 0.1);
  auto masks = torch::zeros({6, 48, 48});
  for (int b = 0; b < 6; ++b) {
    images[b].slice(1, 8 + b, 26 + b).slice(2, 14, 34).fill_(0.9);
    masks[b].slice(0, 8 + b, 26 + b).slice(1, 14, 34).fill_(1.0);
  }
  AugmentOptions no_jitter;
  no_jitter.intensity_jitter = 0.0;
  augment_batch(images, masks, no_jitter);
  const auto bright = images.mean(1) > 0.5;  // [B, H, W]
  const auto agree = (bright == (masks > 0.5)).to(torch::kFloat32).mean().item<float>();
  EXPECT_GT(agree, 0.97);  // only interpolated edge pixels may differ
  EXPECT_FALSE(torch::equal(masks[0], masks[1]));
}
