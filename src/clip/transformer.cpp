#include "clip/transformer.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace medsad::clip {

torch::Tensor apply_activation(const torch::Tensor& x, Activation act) {
  if (act == Activation::QuickGelu) return x * torch::sigmoid(1.702 * x);
  return torch::gelu(x);
}

torch::Tensor linear_in(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                        torch::Dtype dtype) {
  return torch::nn::functional::linear(x.to(dtype), weight.to(dtype), bias.defined() ? bias.to(dtype) : bias);
}

SelfAttentionImpl::SelfAttentionImpl(int64_t width, int64_t heads_) : heads(heads_) {
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = register_module("out_proj", torch::nn::Linear(width, width));
  torch::nn::init::xavier_uniform_(in_proj_weight);
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  TORCH_CHECK(x.dim() == 3, "attention expects [B, L, D], got ", x.sizes());
  const int64_t B = x.size(0), L = x.size(1), D = x.size(2), Dh = D / heads, BH = B * heads;
  auto qkv = linear_in(x, in_proj_weight, in_proj_bias, compute_dtype)  // [B, L, 3D]
                 .view({B, L, 3, heads, Dh})
                 .permute({2, 0, 3, 1, 4});  // [3, B, H, L, Dh]
  const auto q = (qkv[0] * (1.0 / std::sqrt(static_cast<double>(Dh)))).reshape({BH, L, Dh});
  const auto k = qkv[1].reshape({BH, L, Dh}), v = qkv[2].reshape({BH, L, Dh});
  // The attention weights are made for a few of the B*H heads at a time: ViT-L/14 at 336 px has
  // 21 MB of them per image in fp32, and tensors that size are fresh mmaps (page faults) and
  // thrash the caches: batch 8 ran at a sixth of batch 1's speed per image.
  const int64_t chunk = std::max<int64_t>(1, kAttentionChunkElements / (L * L));
  const auto additive_mask = mask.defined() ? mask.to(q.scalar_type()) : mask;  // [L, L], cast once
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < BH; s += chunk) {
    const int64_t e = std::min(BH, s + chunk);
    auto logits = torch::matmul(q.slice(0, s, e), k.slice(0, s, e).transpose(-2, -1));  // [c, L, L]
    if (additive_mask.defined()) logits = logits + additive_mask;
    // In the compute dtype: LibTorch's CPU softmax accumulates bf16 rows in fp32 and rounds only
    // its output (checked: 4096-long rows sum to 1 +- 0.001), which the bf16 product with v did
    // anyway. With an fp32 softmax its backward took 15% of a ViT-B/16 training step.
    const auto attention = torch::softmax(logits, -1);
    parts.push_back(torch::matmul(attention, v.slice(0, s, e)));  // [c, L, Dh]
  }
  auto out = (parts.size() == 1 ? parts[0] : torch::cat(parts))  // [B*H, L, Dh]
                 .view({B, heads, L, Dh})
                 .transpose(1, 2)
                 .reshape({B, L, D});  // [B, L, D]
  return linear_in(out, out_proj->weight, out_proj->bias, compute_dtype).to(x.dtype());
}

ResidualAttentionBlockImpl::ResidualAttentionBlockImpl(int64_t width, int64_t heads, int64_t mlp_width,
                                                       Activation act, double eps)
    : activation(act) {
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(eps)));
  attn = register_module("attn", SelfAttention(width, heads));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(eps)));
  c_fc = torch::nn::Linear(width, mlp_width);
  c_proj = torch::nn::Linear(mlp_width, width);
  mlp = register_module("mlp", torch::nn::Sequential());
  mlp->push_back("c_fc", c_fc);
  mlp->push_back("c_proj", c_proj);
}

torch::Tensor ResidualAttentionBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto h = x + attn(ln_1(x), mask);  // [B, L, D]
  const auto y = ln_2(h);
  auto mlp_rows = [&](const torch::Tensor& rows) {  // [..., D] -> [..., D]
    const auto m = apply_activation(linear_in(rows, c_fc->weight, c_fc->bias, compute_dtype), activation);
    return linear_in(m, c_proj->weight, c_proj->bias, compute_dtype).to(h.dtype());
  };
  // The hidden layer is made for a slice of the B*L rows at a time when it would exceed
  // kMlpChunkBytes (ViT-L/14 at 336 px, batch 8: 38 MB in bf16), for the reason given in attention.
  const int64_t rows = y.size(0) * y.size(1), width = c_fc->weight.size(0);
  const int64_t chunk = std::max<int64_t>(1, kMlpChunkBytes / (width * torch::elementSize(compute_dtype)));
  if (rows <= chunk) return h + mlp_rows(y);
  const auto flat = y.reshape({rows, y.size(2)});
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < rows; s += chunk) parts.push_back(mlp_rows(flat.slice(0, s, std::min(rows, s + chunk))));
  return h + torch::cat(parts).view(h.sizes());
}

void ResidualAttentionBlockImpl::set_compute_dtype(torch::Dtype dtype) {
  compute_dtype = dtype;
  attn->compute_dtype = dtype;
}

TransformerImpl::TransformerImpl(int64_t width, int64_t layers, int64_t heads, int64_t mlp_width, Activation act,
                                 double eps) {
  resblocks = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) {
    blocks.emplace_back(width, heads, mlp_width, act, eps);
    resblocks->push_back(blocks.back());
  }
}

torch::Tensor TransformerImpl::forward(torch::Tensor x, const torch::Tensor& mask) {
  for (auto& block : blocks) x = block(x, mask);
  return x;
}

void TransformerImpl::set_compute_dtype(torch::Dtype dtype) {
  for (auto& block : blocks) block->set_compute_dtype(dtype);
}

}  // namespace medsad::clip
