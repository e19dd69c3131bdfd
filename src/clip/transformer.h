// The pre-LayerNorm transformer block shared by CLIP's image and text towers.
// Reference: OpenAI CLIP clip/model.py (ResidualAttentionBlock, Transformer); parameter names
// are the checkpoint's own (ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj).
#pragma once
#include <torch/torch.h>

#include "clip/config.h"

namespace medsad::clip {

torch::Tensor apply_activation(const torch::Tensor& x, Activation act);

// Large intermediates are made in slices no bigger than these (see SelfAttention and the MLP):
// under glibc's 32 MB mmap threshold and nearer the cache sizes. Small inputs take one slice.
constexpr int64_t kAttentionChunkElements = int64_t{4} << 20;  // attention weights, 16 MB in fp32
constexpr int64_t kMlpChunkBytes = int64_t{16} << 20;         // MLP hidden activations

// y = x W^T + b computed in `dtype`: with bf16 the matrix product runs on oneDNN's bf16 kernels
// (AVX-512 BF16 / AMX; ~15x fp32 on CPUs that have them) while W stays an fp32 master weight,
// so gradients still reach fp32 parameters. Returns `dtype`.
torch::Tensor linear_in(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                        torch::Dtype dtype);

// Multi-head self-attention with packed q/k/v projections (nn.MultiheadAttention's layout).
struct SelfAttentionImpl : torch::nn::Module {
  SelfAttentionImpl(int64_t width, int64_t heads);
  // x: [B, L, D]; mask: additive [L, L] or undefined. Returns [B, L, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  int64_t heads;
  torch::Dtype compute_dtype = torch::kFloat32;  // matmul precision; softmax accumulates in fp32
  torch::Tensor in_proj_weight;  // [3D, D]: rows q, k, v
  torch::Tensor in_proj_bias;    // [3D]
  torch::nn::Linear out_proj{nullptr};
};
TORCH_MODULE(SelfAttention);

struct ResidualAttentionBlockImpl : torch::nn::Module {
  ResidualAttentionBlockImpl(int64_t width, int64_t heads, int64_t mlp_width, Activation act, double eps);
  // x: [B, L, D] -> [B, L, D]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  // Matrix products in `dtype`; LayerNorm and the residual stream stay fp32.
  void set_compute_dtype(torch::Dtype dtype);

  Activation activation;
  torch::Dtype compute_dtype = torch::kFloat32;
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
  void set_compute_dtype(torch::Dtype dtype);

  torch::nn::ModuleList resblocks{nullptr};
  std::vector<ResidualAttentionBlock> blocks;  // typed view of resblocks
};
TORCH_MODULE(Transformer);

}  // namespace medsad::clip
