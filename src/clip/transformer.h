// The pre-LayerNorm transformer block shared by CLIP's image and text towers.
// Reference: OpenAI CLIP clip/model.py (ResidualAttentionBlock, Transformer); parameter names
// are the checkpoint's own (ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj).
#pragma once
#include <torch/torch.h>

#include "clip/config.h"

namespace medsad::clip {

torch::Tensor apply_activation(const torch::Tensor& x, Activation act);

// Multi-head self-attention with packed q/k/v projections (nn.MultiheadAttention's layout).
struct SelfAttentionImpl : torch::nn::Module {
  SelfAttentionImpl(int64_t width, int64_t heads);
  // x: [B, L, D]; mask: additive [L, L] or undefined. Returns [B, L, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  int64_t heads;
  torch::Tensor in_proj_weight;  // [3D, D]: rows q, k, v
  torch::Tensor in_proj_bias;    // [3D]
  torch::nn::Linear out_proj{nullptr};
};
TORCH_MODULE(SelfAttention);

struct ResidualAttentionBlockImpl : torch::nn::Module {
  ResidualAttentionBlockImpl(int64_t width, int64_t heads, int64_t mlp_width, Activation act, double eps);
  // x: [B, L, D] -> [B, L, D]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  Activation activation;
  torch::nn::LayerNorm ln_1{nullptr}, ln_2{nullptr};
  SelfAttention attn{nullptr};
  torch::nn::Sequential mlp{nullptr};  // c_fc, c_proj (activation applied between them in forward)
  torch::nn::Linear c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(ResidualAttentionBlock);

struct TransformerImpl : torch::nn::Module {
  TransformerImpl(int64_t width, int64_t layers, int64_t heads, int64_t mlp_width, Activation act, double eps);
  // x: [B, L, D] -> [B, L, D], all blocks.
  torch::Tensor forward(torch::Tensor x, const torch::Tensor& mask = {});

  torch::nn::ModuleList resblocks{nullptr};
  std::vector<ResidualAttentionBlock> blocks;  // typed view of resblocks
};
TORCH_MODULE(Transformer);

}  // namespace medsad::clip
