#include "clip/text.h"

#include <limits>

namespace medsad::clip {

TextTransformerImpl::TextTransformerImpl(const ClipTextConfig& cfg, int64_t embed_dim, Activation act, double eps)
    : config(cfg) {
  const int64_t D = cfg.width;
  token_embedding = register_module("token_embedding", torch::nn::Embedding(cfg.vocab_size, D));
  positional_embedding = register_parameter("positional_embedding", torch::randn({cfg.context_length, D}) * 0.01);
  transformer = register_module("transformer", Transformer(D, cfg.layers, cfg.heads, cfg.mlp_width, act, eps));
  ln_final = register_module("ln_final", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(eps)));
  text_projection = register_parameter("text_projection", torch::randn({D, embed_dim}) / std::sqrt(double(D)));
}

torch::Tensor TextTransformerImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "text tower expects [K, L] token ids, got ", tokens.sizes());
  return encode_embeddings(token_embedding(tokens), tokens.argmax(-1)).global;
}

TextFeatures TextTransformerImpl::encode_embeddings(const torch::Tensor& embeddings, const torch::Tensor& eot_index) {
  TORCH_CHECK(embeddings.dim() == 3, "expected [K, L, D] embeddings, got ", embeddings.sizes());
  const int64_t K = embeddings.size(0), L = embeddings.size(1);
  TORCH_CHECK(L <= config.context_length, "text of ", L, " tokens exceeds the context of ", config.context_length);
  // Causal mask: position i attends to j <= i.
  auto mask = torch::full({L, L}, -std::numeric_limits<float>::infinity(), embeddings.options()).triu(1);  // [L, L]
  auto x = embeddings + positional_embedding.slice(0, 0, L).to(embeddings.dtype());  // [K, L, D]
  x = ln_final(transformer(x, mask));                                               // [K, L, D]
  TextFeatures out;
  out.tokens = torch::matmul(x, text_projection);                                   // [K, L, E]
  out.global = out.tokens.index({torch::arange(K, eot_index.options()), eot_index});  // [K, E]
  return out;
}

}  // namespace medsad::clip
