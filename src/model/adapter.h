// Bottleneck image adapter at one tap block (design doc, Architecture 2; MVFA's adapter):
// h = LeakyReLU(W1 z) in the joint text space (width d_j), r = LeakyReLU(W2 h) back in the
// residual width d_v. h is what the branches compare with text; r is mixed into the stream.
#pragma once
#include <torch/torch.h>

namespace medsad::model {

struct AdapterOutput {
  torch::Tensor hidden;    // [B, L, d_j]
  torch::Tensor residual;  // [B, L, d_v]
};

struct ImageAdapterImpl : torch::nn::Module {
  ImageAdapterImpl(int64_t residual_width, int64_t joint_width);
  // tokens: [B, L, d_v]
  AdapterOutput forward(const torch::Tensor& tokens);

  torch::Dtype compute_dtype = torch::kFloat32;  // of the two products (fp32 master weights; outputs fp32)

  torch::nn::Linear down{nullptr};  // W1: d_v -> d_j, no bias (MVFA)
  torch::nn::Linear up{nullptr};    // W2: d_j -> d_v, no bias
};
TORCH_MODULE(ImageAdapter);

}  // namespace medsad::model
