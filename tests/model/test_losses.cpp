// Every loss against values computed by hand from its definition (design doc, Losses).
#include <cmath>

#include "model/losses.h"
#include "test_support.h"

using namespace medsad::model;

TEST(ModelLosses, FocalByHand) {
  // p = 0.8 on a lesion pixel: -(0.2^2) ln 0.8; p = 0.3 on a normal pixel: -(0.3^2) ln 0.7.
  const auto prob = torch::tensor({0.8, 0.3}, torch::kFloat64).view({1, 1, 2});
  const auto logits = torch::log(prob / (1 - prob));
  const auto mask = torch::tensor({1.0, 0.0}, torch::kFloat64).view({1, 1, 2});
  const double expected = (-(0.04) * std::log(0.8) - 0.09 * std::log(0.7)) / 2;
  EXPECT_NEAR(loss_focal(logits, mask, 2.0).item<double>(), expected, 1e-12);
  // gamma = 0 is plain BCE.
  EXPECT_NEAR(loss_focal(logits, mask, 0.0).item<double>(), (-std::log(0.8) - std::log(0.7)) / 2, 1e-12);
}

TEST(ModelLosses, LesionWeightScalesOnlyLesionPixels) {
  // w = 5: the lesion pixel's term is 5x, the normal pixel's unchanged.
  const auto prob = torch::tensor({0.8, 0.3}, torch::kFloat64).view({1, 1, 2});
  const auto logits = torch::log(prob / (1 - prob));
  const auto mask = torch::tensor({1.0, 0.0}, torch::kFloat64).view({1, 1, 2});
  const double expected = (-5 * 0.04 * std::log(0.8) - 0.09 * std::log(0.7)) / 2;
  EXPECT_NEAR(loss_focal(logits, mask, 2.0, 5.0).item<double>(), expected, 1e-12);
}

TEST(ModelLosses, SaturatedWrongPredictionsKeepLossAndGradient) {
  // A lesion pixel at logit -40 (p = 4e-18, saturated in float): BCE = 40 exactly, and the
  // gradient is -1 per pixel / count, not the zero a clamped probability would give.
  auto logits = torch::tensor({-40.0f, 40.0f}).view({1, 1, 2}).requires_grad_();
  const auto mask = torch::tensor({1.0f, 1.0f}).view({1, 1, 2});
  const auto loss = loss_focal(logits, mask, 0.0);
  EXPECT_NEAR(loss.item<float>(), 20.0f, 1e-4);
  loss.backward();
  EXPECT_NEAR(logits.grad()[0][0][0].item<float>(), -0.5f, 1e-6);
  auto det = torch::tensor({-60.0f}).requires_grad_();
  const auto bce = loss_bce(det, torch::tensor({1}));
  EXPECT_NEAR(bce.item<float>(), 60.0f, 1e-4);
  bce.backward();
  EXPECT_NEAR(det.grad()[0].item<float>(), -1.0f, 1e-6);
}

TEST(ModelLosses, DiceByHand) {
  // Image 1: p = [1, 0.5, 0, 0], y = [1, 1, 0, 0]: dice = (2*1.5 + 1) / (1.5 + 2 + 1) = 4/4.5.
  // Image 2 (normal, empty mask): p = [0.5, 0, 0, 0]: dice = 1 / (0.5 + 1).
  const auto prob = torch::tensor({1.0, 0.5, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0}, torch::kFloat64).view({2, 2, 2});
  const auto mask = torch::tensor({1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}, torch::kFloat64).view({2, 2, 2});
  const double expected = ((1 - 4.0 / 4.5) + (1 - 1.0 / 1.5)) / 2;
  EXPECT_NEAR(loss_dice(prob, mask).item<double>(), expected, 1e-12);
}

TEST(ModelLosses, BceByHand) {
  const auto p = torch::tensor({0.9, 0.2}, torch::kFloat64);
  const auto y = torch::tensor({1, 0});
  EXPECT_NEAR(loss_bce(torch::log(p / (1 - p)), y).item<double>(), (-std::log(0.9) - std::log(0.8)) / 2, 1e-12);
}

TEST(ModelLosses, MarginByHand) {
  // cos(g, t_normal) = 0.6, cos(g, t_abnormal) = 0.8 for a normal image (y = 0), m = 0.2, s = 10:
  // -log(e^{10(0.6-0.2)} / (e^{4} + e^{8})) = log(1 + e^4).
  const auto text = torch::eye(2, torch::kFloat64);
  const auto g = torch::tensor({0.6, 0.8}, torch::kFloat64).view({1, 2});
  const auto y0 = torch::tensor({0});
  EXPECT_NEAR(loss_margin(g, text, y0, 0.2, 10.0).item<double>(), std::log(1 + std::exp(4.0)), 1e-9);
  // The same image labelled abnormal: -log(e^{6} / (e^{6} + e^{6})) = log 2.
  EXPECT_NEAR(loss_margin(g, text, torch::tensor({1}), 0.2, 10.0).item<double>(), std::log(2.0), 1e-9);
  // Margin 0 is the plain image-text cross-entropy, smaller than with a margin.
  EXPECT_LT(loss_margin(g, text, torch::tensor({1}), 0.0, 10.0).item<double>(), std::log(2.0));
}

TEST(ModelLosses, TotalSkipsSegForAbnormalImagesWithoutMask) {
  MedSadConfig config;
  MedSadOutput out;
  out.level_logits = {torch::zeros({2, 2, 2}, torch::kFloat64)};  // p = 0.5 everywhere
  out.level_maps = {torch::sigmoid(out.level_logits[0])};
  out.det_logits = torch::zeros({2, 2}, torch::kFloat64);
  out.global = torch::tensor({1.0, 0.0, 0.0, 1.0}, torch::kFloat64).view({2, 2});
  out.text.global = torch::eye(2, torch::kFloat64);
  const auto masks = torch::zeros({2, 2, 2}, torch::kFloat64);
  const auto labels = torch::tensor({0, 1});
  const auto no_masks = medsad_loss(out, masks, torch::tensor({false, false}), labels, config);
  EXPECT_EQ(no_masks.seg.item<double>(), 0.0);
  EXPECT_NEAR(no_masks.det.item<double>(), std::log(2.0), 1e-12);
  const auto one_mask = medsad_loss(out, masks, torch::tensor({true, false}), labels, config);
  const double focal = -0.25 * std::log(0.5), dice = 1 - 1.0 / 3.0;  // p = 0.5 on 4 normal pixels
  EXPECT_NEAR(one_mask.seg.item<double>(), focal + dice, 1e-12);
  EXPECT_NEAR(one_mask.total.item<double>(), focal + dice + std::log(2.0) + one_mask.margin.item<double>(), 1e-12);
}

TEST(ModelLosses, DiceOnAbnormalImagesOnlyLeavesTheNormalImagesToTheFocalTerm) {
  // Two masked images, p = 0.5 on all 4 pixels of each: a normal one (empty mask) and an abnormal
  // one with 2 lesion pixels. Focal per image: -(0.5^2) ln 0.5 on every pixel (gamma 2, weight 1).
  // Dice: normal 1 / (2 + 1), abnormal (2*1 + 1) / (2 + 2 + 1) = 3/5.
  MedSadConfig config;
  MedSadOutput out;
  out.level_logits = {torch::zeros({2, 2, 2}, torch::kFloat64)};
  out.level_maps = {torch::sigmoid(out.level_logits[0])};
  out.det_logits = torch::zeros({2, 2}, torch::kFloat64);
  out.global = torch::tensor({1.0, 0.0, 0.0, 1.0}, torch::kFloat64).view({2, 2});
  out.text.global = torch::eye(2, torch::kFloat64);
  auto masks = torch::zeros({2, 2, 2}, torch::kFloat64);
  masks[1][0] = 1.0;
  const auto labels = torch::tensor({0, 1});
  const auto has_mask = torch::tensor({true, true});
  const double focal = -0.25 * std::log(0.5);
  const double dice_normal = 1 - 1.0 / 3.0, dice_abnormal = 1 - 3.0 / 5.0;
  EXPECT_NEAR(medsad_loss(out, masks, has_mask, labels, config).seg.item<double>(),
              focal + (dice_normal + dice_abnormal) / 2, 1e-12);
  config.dice_on_normal_images = false;
  EXPECT_NEAR(medsad_loss(out, masks, has_mask, labels, config).seg.item<double>(), focal + dice_abnormal, 1e-12);
  // Labelled normal, both images lose their Dice term (at p = 0.5 focal is the same on either class).
  const auto normal_only = medsad_loss(out, masks, has_mask, torch::tensor({0, 0}), config);
  EXPECT_NEAR(normal_only.seg.item<double>(), focal, 1e-12);
}

TEST(ModelLosses, TheDiceChoiceIsKeptInTheConfigAndOlderConfigsMeanTheDesign) {
  MedSadConfig config;
  config.resolve(12, 224, 16);  // a ViT-B/16's tap blocks and input size
  config.dice_on_normal_images = false;
  auto json = config.to_json();
  EXPECT_FALSE(MedSadConfig::from_json(json).dice_on_normal_images);
  json.erase("dice_on_normal_images");  // a checkpoint written before the option existed
  EXPECT_TRUE(MedSadConfig::from_json(json).dice_on_normal_images);
}
