// The two CLIP towers and the logit scale, with parameters named as in OpenAI checkpoints
// under "visual." (image tower), "text." (text tower; OpenAI keeps these at the top level) and
// "logit_scale".
#pragma once
#include <torch/torch.h>

#include "clip/config.h"
#include "clip/text.h"
#include "clip/vision.h"

namespace medsad::clip {

struct ClipModelImpl : torch::nn::Module {
  explicit ClipModelImpl(const ClipConfig& config);

  torch::Tensor encode_image(const torch::Tensor& images) { return visual(images); }  // [B,3,H,W] -> [B,E]
  torch::Tensor encode_text(const torch::Tensor& tokens) { return text(tokens); }     // [K,L] -> [K,E]
  // Matrix products and convolutions of both towers in `dtype` (fp32 or bf16); parameters,
  // LayerNorms, softmax accumulation and outputs stay fp32.
  void set_compute_dtype(torch::Dtype dtype);

  ClipConfig config;
  VisionTransformer visual{nullptr};
  TextTransformer text{nullptr};
  torch::Tensor logit_scale;  // scalar, log of the softmax temperature (ln 100 for trained CLIP)
};
TORCH_MODULE(ClipModel);

}  // namespace medsad::clip
