#include "model/config.h"

#include <algorithm>
#include <functional>

#include "core/error.h"
#include "core/text.h"

namespace medsad::model {

std::vector<int64_t> default_tap_blocks(int64_t layers, int64_t count) {
  std::vector<int64_t> blocks;
  count = std::min(count, layers);
  for (int64_t k = 1; k <= count; ++k) {
    const int64_t b = (k * layers + count - 1) / count;  // ceil(k * layers / count)
    if (blocks.empty() || blocks.back() != b) blocks.push_back(b);
  }
  return blocks;
}

void MedSadConfig::resolve(int64_t backbone_layers, int64_t native_size, int64_t patch_size) {
  if (tap_blocks.empty()) tap_blocks = default_tap_blocks(backbone_layers);
  if (image_size == 0) image_size = native_size;
  if (patch_size > 0 && image_size % patch_size != 0)
    fail("", "--image-size " + std::to_string(image_size) + " is not a multiple of the backbone's patch size " +
                 std::to_string(patch_size));
  for (int64_t b : tap_blocks)
    if (b < 1 || b > backbone_layers)
      fail("", "tap block " + std::to_string(b) + " is outside the backbone's blocks 1.." +
                   std::to_string(backbone_layers));
  validate();
}

void MedSadConfig::validate() const {
  auto check = [](bool ok, const std::string& what) {
    if (!ok) fail("", what);
  };
  check(!object.empty(), "--object must not be empty");
  check(is_utf8(object), "--object must be UTF-8 text");
  check(image_size > 0 && image_size <= 4096, "--image-size must be between 1 and 4096");
  check(!tap_blocks.empty(), "at least one tap block is needed");
  // One adapter and one map per tapped block, in the order the stream passes them.
  check(std::adjacent_find(tap_blocks.begin(), tap_blocks.end(), std::greater_equal<int64_t>()) == tap_blocks.end(),
        "--tap-blocks must be increasing, each block once");
  check(adapter_beta >= 0 && adapter_beta <= 0.5, "--adapter-beta must be in [0, 0.5]");
  check(prompt_length >= 1 && prompt_length <= 32, "--prompt-length must be between 1 and 32");
  check(tpca_heads >= 1 && tpca_heads <= 64, "--tpca-heads must be between 1 and 64");
  check(temperature > 0 && temperature <= 1000, "--temperature must be in (0, 1000]");
  check(score_alpha >= 0 && score_alpha <= 1, "--alpha must be in [0, 1]");
  check(smooth_sigma >= 0 && smooth_sigma <= 64, "--smooth-sigma must be in [0, 64]");
  check(margin >= 0 && margin <= 2, "--margin must be in [0, 2]");
  check(lambda_det >= 0 && lambda_det <= 1000 && lambda_margin >= 0 && lambda_margin <= 1000,
        "loss weights (--lambda-det, --lambda-margin) must be in [0, 1000]");
  check(focal_gamma >= 0 && focal_gamma <= 10, "--focal-gamma must be in [0, 10]");
  check(lesion_weight > 0 && lesion_weight <= 1000, "--lesion-weight must be in (0, 1000]");
}

nlohmann::json MedSadConfig::to_json() const {
  return {{"object", object},
          {"image_size", image_size},
          {"tap_blocks", tap_blocks},
          {"adapter_beta", adapter_beta},
          {"use_adapters", use_adapters},
          {"use_tpca", use_tpca},
          {"prompts", prompts == PromptMode::Learned ? "learned" : "fixed"},
          {"prompt_length", prompt_length},
          {"tpca_heads", tpca_heads},
          {"temperature", temperature},
          {"score_alpha", score_alpha},
          {"smooth_sigma", smooth_sigma},
          {"margin", margin},
          {"lambda_det", lambda_det},
          {"lambda_margin", lambda_margin},
          {"focal_gamma", focal_gamma},
          {"lesion_weight", lesion_weight},
          {"dice_on_normal_images", dice_on_normal_images},
          {"train_backbone", train_backbone}};
}

MedSadConfig MedSadConfig::from_json(const nlohmann::json& j) {
  MedSadConfig c;
  c.object = j.at("object").get<std::string>();
  c.image_size = j.at("image_size").get<int64_t>();
  c.tap_blocks = j.at("tap_blocks").get<std::vector<int64_t>>();
  c.adapter_beta = j.at("adapter_beta").get<double>();
  c.use_adapters = j.at("use_adapters").get<bool>();
  c.use_tpca = j.at("use_tpca").get<bool>();
  c.prompts = j.at("prompts").get<std::string>() == "fixed" ? PromptMode::Fixed : PromptMode::Learned;
  c.prompt_length = j.at("prompt_length").get<int64_t>();
  c.tpca_heads = j.at("tpca_heads").get<int64_t>();
  c.temperature = j.at("temperature").get<double>();
  c.score_alpha = j.at("score_alpha").get<double>();
  c.smooth_sigma = j.at("smooth_sigma").get<double>();
  c.margin = j.at("margin").get<double>();
  c.lambda_det = j.at("lambda_det").get<double>();
  c.lambda_margin = j.at("lambda_margin").get<double>();
  c.focal_gamma = j.at("focal_gamma").get<double>();
  c.lesion_weight = j.value("lesion_weight", 1.0);
  c.dice_on_normal_images = j.value("dice_on_normal_images", true);
  c.train_backbone = j.value("train_backbone", false);
  c.validate();
  return c;
}

}  // namespace medsad::model
