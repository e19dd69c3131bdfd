// Token-Patch Cross-Attention (TPCA), the paper's core (design doc, Architecture 4): patch
// features of one tap level attend to the text-token features of both prompts.
//   P' = LN(P + W_o Attn(P W_q, T W_k, T W_v)), H heads, padding tokens left out.
#pragma once
#include <torch/torch.h>

namespace medsad::model {

struct TokenPatchCrossAttentionImpl : torch::nn::Module {
  TokenPatchCrossAttentionImpl(int64_t width, int64_t heads);

  // patches: [B, N, D]; text_tokens: [S, D] (both prompts' tokens, shared by the batch);
  // token_valid: [S] bool, false for padding. Returns [B, N, D].
  torch::Tensor forward(const torch::Tensor& patches, const torch::Tensor& text_tokens,
                        const torch::Tensor& token_valid);

  int64_t heads;
  torch::Dtype compute_dtype = torch::kFloat32;  // of the products (fp32 master weights; softmax, LN and output fp32)
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, out_proj{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(TokenPatchCrossAttention);

}  // namespace medsad::model
