#include "train/train_step.h"

namespace medsad::train {

model::LossTerms train_step(model::MedSadClipImpl& model, torch::optim::Optimizer& optimizer,
                            std::vector<torch::Tensor>& trainable, const torch::Tensor& images,
                            const torch::Tensor& masks, const torch::Tensor& has_mask, const torch::Tensor& labels) {
  const auto out = model.forward(images);
  auto terms = model::medsad_loss(out, masks, has_mask, labels, model.config);
  optimizer.zero_grad();
  terms.total.backward();
  torch::nn::utils::clip_grad_norm_(trainable, 1.0);
  optimizer.step();
  return terms;
}

}  // namespace medsad::train
