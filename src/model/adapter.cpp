#include "model/adapter.h"

namespace medsad::model {

ImageAdapterImpl::ImageAdapterImpl(int64_t residual_width, int64_t joint_width) {
  down = register_module("down", torch::nn::Linear(torch::nn::LinearOptions(residual_width, joint_width).bias(false)));
  up = register_module("up", torch::nn::Linear(torch::nn::LinearOptions(joint_width, residual_width).bias(false)));
}

AdapterOutput ImageAdapterImpl::forward(const torch::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 3 && tokens.size(2) == down->options.in_features(), "adapter expects [B, L, ",
              down->options.in_features(), "], got ", tokens.sizes());
  AdapterOutput out;
  out.hidden = torch::leaky_relu(down(tokens));      // [B, L, d_j]
  out.residual = torch::leaky_relu(up(out.hidden));  // [B, L, d_v]
  return out;
}

}  // namespace medsad::model
