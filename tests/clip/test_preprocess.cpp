#include "clip/preprocess.h"
#include "test_support.h"

using namespace medsad::clip;

TEST(Preprocess, ImageAtInputSizeIsNotResampled) {
  const auto rgb = torch::rand({3, 32, 32});
  EXPECT_TRUE(torch::equal(resize_and_crop(rgb, 32), rgb));
}

TEST(Preprocess, ShorterSideIsResizedThenCentreCropped) {
  // A 40 x 80 image whose left and right quarters are 0 and middle half is 1: after resizing the
  // shorter side to 20 (-> 20 x 40) and centre-cropping 20 x 20, only the middle half remains.
  auto rgb = torch::zeros({3, 40, 80});
  rgb.slice(2, 20, 60).fill_(1.0);
  const auto out = resize_and_crop(rgb, 20);
  ASSERT_EQ(out.sizes(), torch::IntArrayRef({3, 20, 20}));
  EXPECT_NEAR(out.slice(2, 2, 18).mean().item<float>(), 1.0, 1e-3);
  EXPECT_GE(out.min().item<float>(), 0.0f);
  EXPECT_LE(out.max().item<float>(), 1.0f);
}

TEST(Preprocess, NormalisationUsesMeanAndStd) {
  ImagePreprocess pre;
  const auto out = normalize_image(torch::full({3, 2, 2}, 0.5), pre);
  for (int c = 0; c < 3; ++c)
    EXPECT_NEAR(out[c][1][1].item<float>(), (0.5 - pre.mean[c]) / pre.std[c], 1e-6);
}
