// MedSAD-CLIP's own hyper-parameters and ablation switches (design doc, "Architecture" and
// "Ablation switches"). Defaults are the design's; each is a CLI option of `medsad train`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace medsad::model {

enum class PromptMode { Learned, Fixed };  // CoOp context vectors, or the hand-written template ensemble

struct MedSadConfig {
  std::string object = "brain MRI";  // organ/modality phrase in the prompts
  int64_t image_size = 0;            // model input side; 0: the backbone's native size
  std::vector<int64_t> tap_blocks;   // 1-based; empty: 4 evenly spaced, the last included
  double adapter_beta = 0.1;         // residual mix z <- (1-2b) z + b r_seg + b r_det
  bool use_adapters = true;          // --no-adapters: CLIP's own ln_post + proj maps patches to text space
  bool use_tpca = true;              // --no-tpca: plain cosine maps
  PromptMode prompts = PromptMode::Learned;
  int64_t prompt_length = 8;         // M learnable context vectors per class
  int64_t tpca_heads = 8;            // H
  double temperature = 100.0;        // tau, CLIP's logit scale
  double score_alpha = 0.5;          // image score = a p_det + (1-a) top-1% mean of the map
  double smooth_sigma = 4.0;         // Gaussian sigma of the Seg map in pixels at 240 px (scaled with size); 0 = off
  double margin = 0.2;               // m of the margin contrastive loss; 0 turns the loss off
  double lambda_det = 1.0;           // weight of the Det BCE
  double lambda_margin = 1.0;        // weight of the margin loss
  double focal_gamma = 2.0;
  double lesion_weight = 1.0;        // weight of lesion pixels in the focal loss (1: the design's plain focal)
  bool dice_on_normal_images = true; // --no-normal-dice: the Dice term on abnormal images only (focal on all)
  bool train_backbone = false;       // scratch backbone (--weights none): trained with the rest, saved in the checkpoint

  // Resolves defaults that depend on the backbone (tap blocks, input size) and checks the config
  // against it (tap blocks within its blocks, an input size its patches tile); validates ranges.
  void resolve(int64_t backbone_layers, int64_t native_size, int64_t patch_size);
  void validate() const;
  nlohmann::json to_json() const;
  static MedSadConfig from_json(const nlohmann::json& j);
};

// K evenly spaced blocks of `layers`, the last included: 12 -> 3 6 9 12, 24 -> 6 12 18 24.
std::vector<int64_t> default_tap_blocks(int64_t layers, int64_t count = 4);

}  // namespace medsad::model
