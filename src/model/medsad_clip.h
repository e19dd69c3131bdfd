// MedSAD-CLIP (design doc, Architecture): a frozen CLIP with image adapters at the tap blocks,
// learnable prompts, Token-Patch Cross-Attention per level, a Seg branch (per-patch abnormal
// probability maps) and a Det branch (global class-token feature vs the two prompts).
#pragma once
#include <vector>

#include <torch/torch.h>

#include "clip/clip_model.h"
#include "clip/tokenizer.h"
#include "model/adapter.h"
#include "model/config.h"
#include "model/prompt_learner.h"
#include "model/token_patch_cross_attention.h"

namespace medsad::model {

struct MedSadOutput {
  std::vector<torch::Tensor> level_logits;  // per tap level: [B, S, S] abnormal-minus-normal logit, upsampled
  std::vector<torch::Tensor> level_maps;    // per tap level: [B, S, S] abnormal probability, sigmoid(level_logits)
  torch::Tensor anomaly_map;              // [B, S, S] mean of the levels (smoothed if asked)
  torch::Tensor det_logits;               // [B, 2] tau * cosines with (normal, abnormal)
  torch::Tensor p_det;                    // [B] abnormal probability of the Det branch
  torch::Tensor global;                   // [B, E] L2-normalised global feature g
  torch::Tensor score;                    // [B] image score: a p_det + (1-a) top-1% mean of the map
  PromptFeatures text;                    // the prompts' features used for this batch
};

struct MedSadClipImpl : torch::nn::Module {
  // `config` must be resolved (config.resolve). A CLIP backbone is frozen here and is not a
  // registered child: parameters() holds only what MedSAD-CLIP trains. With
  // config.train_backbone (a scratch backbone) it is registered as "backbone" and trained too.
  MedSadClipImpl(clip::ClipModel backbone, const clip::Tokenizer& tokenizer, MedSadConfig config);

  // images: [B, 3, S, S] normalised, S = config.image_size. smooth: Gaussian-smooth the Seg map
  // (inference); training uses the raw maps.
  MedSadOutput forward(const torch::Tensor& images, bool smooth = false);

  // Matrix products of the backbone, adapters and TPCA in `dtype` (see clip::linear_in); every
  // parameter stays as it is, outputs fp32.
  void set_compute_dtype(torch::Dtype dtype);

  // For scoring only (eval, predict, serve): eval mode, no gradients anywhere, the backbone's
  // matrix products in `dtype` with its matrices stored in it, the prompt features computed once
  // and the text tower released. Training can no longer continue on this model.
  void prepare_for_inference(torch::Dtype dtype);

  // Moves everything the model computes with to `device`, the frozen backbone (not a registered
  // child) and the prompts' cached features included. Inputs must then be on that device.
  using torch::nn::Module::to;
  void to(torch::Device device, bool non_blocking = false) override;
  torch::Device device() const;  // where the model's tensors are

  MedSadConfig config;
  clip::ClipModel backbone{nullptr};
  torch::nn::ModuleList seg_adapters{nullptr}, det_adapters{nullptr}, tpca{nullptr};
  PromptLearner prompts{nullptr};
};
TORCH_MODULE(MedSadClip);

// Mean of the top 1% values of each map: [B, H, W] -> [B].
torch::Tensor top_percent_mean(const torch::Tensor& maps, double fraction = 0.01);

// Separable Gaussian blur of [B, H, W] maps with replicate borders; sigma in pixels.
torch::Tensor gaussian_smooth(const torch::Tensor& maps, double sigma);

}  // namespace medsad::model
