#include "model/adapter.h"

#include "clip/transformer.h"

namespace medsad::model {

ImageAdapterImpl::ImageAdapterImpl(int64_t residual_width, int64_t joint_width) {
  down = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(residual_width, joint_width).bias(false)));
  up = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(joint_width, residual_width).bias(false)));
}

AdapterOutput ImageAdapterImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 3 && tokens.size(2) == down->options.in_features(), "adapter expects [B, L, ",
              down->options.in_features(), "], got ", tokens.sizes());
  AdapterOutput out;
  const auto hidden = torch::leaky_relu(clip::linear_in(tokens, down->weight, {}, compute_dtype));  // [B, L, d_j]
  out.hidden = hidden.to(torch::kFloat32);
  out.residual = torch::leaky_relu(clip::linear_in(hidden, up->weight, {}, compute_dtype)).to(torch::kFloat32);  // [B, L, d_v]
  return out;
}

}  // namespace medsad::model
