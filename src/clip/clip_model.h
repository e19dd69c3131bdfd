// The two CLIP towers and the logit scale, with parameters named as in OpenAI checkpoints
// under "visual." (image tower), "text." (text tower; OpenAI keeps these at the top level) and
// "logit_scale".
#pragma once
#include <vector>

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
  // The weights that only matrix products and convolutions read: the blocks' projections and the
  // patch embedding, over 95% of the parameters. LayerNorms, embeddings and the output
  // projections are not among them.
  std::vector<torch::Tensor> matrix_parameters();
  // Stores matrix_parameters() in `dtype` (bf16 halves the memory and spares the per-call cast).
  // For a frozen backbone: no fp32 master copy is kept.
  void store_matrices_in(torch::Dtype dtype);
  // Drops the text tower once the prompt features are computed (inference): a quarter of ViT-L/14.
  void release_text_tower();

  ClipConfig config;
  VisionTransformer visual{nullptr};
  TextTransformer text{nullptr};
  torch::Tensor logit_scale;  // scalar, log of the softmax temperature (ln 100 for trained CLIP)
};
TORCH_MODULE(ClipModel);

}  // namespace medsad::clip
