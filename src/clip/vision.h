// CLIP's ViT image tower: conv patch embedding, class token, learned positions, pre-LN
// transformer, ln_post on the class token, linear projection to the joint space.
// Reference: OpenAI CLIP clip/model.py VisionTransformer; position-embedding resizing as
// open_clip's resize_pos_embed (bicubic, antialiased, class position kept).
#pragma once
#include <vector>

#include <torch/torch.h>

#include "clip/config.h"
#include "clip/transformer.h"

namespace medsad::clip {

struct VisionTaps {
  std::vector<torch::Tensor> block_tokens;  // per requested block: residual stream [B, 1+N, D]
  torch::Tensor embedding;                  // [B, E] unnormalised projection
};

// One stage of PatchStem::ConvEncoder: two 3x3 convolutions (the first with `stride`), each
// followed by GroupNorm (8 groups) and GELU. [B, in, H, W] -> [B, out, H/stride, W/stride].
struct ConvEncoderStageImpl : torch::nn::Module {
  ConvEncoderStageImpl(int64_t in, int64_t out, int64_t stride);
  // Convolutions in `compute_dtype`, GroupNorm in fp32; returns `compute_dtype`.
  torch::Tensor forward(const torch::Tensor& x, torch::Dtype compute_dtype);

  int64_t stride;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
};
TORCH_MODULE(ConvEncoderStage);

struct VisionTransformerImpl : torch::nn::Module {
  VisionTransformerImpl(const ClipVisionConfig& config, int64_t embed_dim, Activation act, double eps);

  // images: [B, 3, H, W] normalised. Patch grid is (H / patch, W / patch), remainders dropped.
  // Returns [B, E].
  torch::Tensor forward(const torch::Tensor& images);

  // As forward, also returning the residual stream after each block in `blocks` (1-based).
  VisionTaps forward_with_taps(const torch::Tensor& images, const std::vector<int64_t>& blocks);

  // The steps of forward, for callers that act between blocks (the MedSAD-CLIP adapters).
  torch::Tensor embed(const torch::Tensor& images);  // [B, 3, H, W] -> [B, 1+N, D] after ln_pre
  torch::Tensor pool(const torch::Tensor& tokens);   // [B, 1+N, D] -> [B, E]: ln_post(class) @ proj
  // Position embeddings for a grid_h x grid_w patch grid: [1 + grid_h*grid_w, D].
  torch::Tensor positions_for_grid(int64_t grid_h, int64_t grid_w);
  // Convolutions and transformer matrix products in `dtype` (see linear_in).
  void set_compute_dtype(torch::Dtype dtype);

  ClipVisionConfig config;
  torch::Dtype compute_dtype = torch::kFloat32;
  torch::nn::Conv2d conv1{nullptr};    // PatchStem::Conv: [D, 3, p, p], stride p
  torch::nn::ModuleList stem{nullptr};  // PatchStem::ConvStack: 3x3 stride-2 convolutions, 3 -> ... -> D
  torch::nn::ModuleList encoder{nullptr};   // PatchStem::ConvEncoder: ConvEncoderStage, 3 -> c -> 2c -> ...
  torch::nn::Conv2d encoder_proj{nullptr};  // PatchStem::ConvEncoder: 3x3 stride 2, last stage -> D
  torch::Tensor class_embedding;       // [D]
  torch::Tensor positional_embedding;  // [1 + G*G, D] for the native grid G
  torch::nn::LayerNorm ln_pre{nullptr}, ln_post{nullptr};
  Transformer transformer{nullptr};
  torch::Tensor proj;  // [D, E]
};
TORCH_MODULE(VisionTransformer);

}  // namespace medsad::clip
