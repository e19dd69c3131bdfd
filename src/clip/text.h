// CLIP's causal text tower: token + position embeddings, transformer with a causal mask,
// ln_final, features of the end-of-text token projected to the joint space.
// Reference: OpenAI CLIP clip/model.py CLIP.encode_text.
#pragma once
#include <torch/torch.h>

#include "clip/config.h"
#include "clip/transformer.h"

namespace medsad::clip {

struct TextFeatures {
  torch::Tensor global;  // [K, E] end-of-text features, projected (unnormalised)
  torch::Tensor tokens;  // [K, L, E] every position after ln_final, projected
};

struct TextTransformerImpl : torch::nn::Module {
  TextTransformerImpl(const ClipTextConfig& config, int64_t embed_dim, Activation act, double eps);

  // tokens: [K, L] int64 ids, L <= context_length; the end token is the largest id (as in CLIP).
  // Returns [K, E].
  torch::Tensor forward(const torch::Tensor& tokens);

  // For learned prompts: token embeddings given directly. embeddings: [K, L, D];
  // eot_index: [K] int64 position of each end token.
  TextFeatures encode_embeddings(const torch::Tensor& embeddings, const torch::Tensor& eot_index);

  ClipTextConfig config;
  torch::nn::Embedding token_embedding{nullptr};  // [V, D]
  torch::Tensor positional_embedding;             // [context, D]
  Transformer transformer{nullptr};
  torch::nn::LayerNorm ln_final{nullptr};
  torch::Tensor text_projection;  // [D, E]
};
TORCH_MODULE(TextTransformer);

}  // namespace medsad::clip
