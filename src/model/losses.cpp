#include "model/losses.h"

namespace medsad::model {

torch::Tensor loss_focal(const torch::Tensor& prob, const torch::Tensor& mask, double gamma) {
  const auto p = prob.clamp(1e-6, 1 - 1e-6);
  const auto positive = -torch::pow(1 - p, gamma) * torch::log(p);
  const auto negative = -torch::pow(p, gamma) * torch::log(1 - p);
  return torch::where(mask > 0.5, positive, negative).mean();
}

torch::Tensor loss_dice(const torch::Tensor& prob, const torch::Tensor& mask) {
  const auto p = prob.flatten(1), y = mask.flatten(1);  // [B, HW]
  const auto dice = (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1);
  return (1 - dice).mean();
}

torch::Tensor loss_bce(const torch::Tensor& p, const torch::Tensor& labels) {
  return torch::binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), labels.to(p.dtype()));
}

torch::Tensor loss_margin(const torch::Tensor& global, const torch::Tensor& text, const torch::Tensor& labels,
                          double margin, double scale) {
  const auto cosines = torch::matmul(global, text.t());  // [B, 2]
  const auto onehot = torch::one_hot(labels, 2).to(cosines.dtype());
  return torch::nn::functional::cross_entropy(scale * (cosines - margin * onehot), labels);
}

LossTerms medsad_loss(const MedSadOutput& out, const torch::Tensor& masks, const torch::Tensor& has_mask,
                      const torch::Tensor& labels, const MedSadConfig& config) {
  LossTerms terms;
  terms.seg = torch::zeros({}, out.p_det.options());
  if (has_mask.any().item<bool>()) {
    const auto idx = has_mask.nonzero().squeeze(1);
    const auto y = masks.index_select(0, idx);
    for (const auto& level : out.level_maps) {
      const auto p = level.index_select(0, idx);
      terms.seg = terms.seg + loss_focal(p, y, config.focal_gamma) + loss_dice(p, y);
    }
  }
  terms.det = loss_bce(out.p_det, labels);
  terms.margin = config.margin > 0 ? loss_margin(out.global, out.text.global, labels, config.margin, config.temperature)
                                   : torch::zeros({}, out.p_det.options());
  terms.total = terms.seg + config.lambda_det * terms.det + config.lambda_margin * terms.margin;
  return terms;
}

}  // namespace medsad::model
