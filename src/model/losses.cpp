#include "model/losses.h"

namespace medsad::model {

torch::Tensor loss_focal(const torch::Tensor& logits, const torch::Tensor& mask, double gamma, double lesion_weight) {
  // log p and log(1-p) from the logit directly: finite and with gradient however saturated p is.
  const auto p = torch::sigmoid(logits);
  const auto positive = -lesion_weight * torch::pow(1 - p, gamma) * torch::log_sigmoid(logits);
  const auto negative = -torch::pow(p, gamma) * torch::log_sigmoid(-logits);
  return torch::where(mask > 0.5, positive, negative).mean();
}

torch::Tensor loss_dice(const torch::Tensor& prob, const torch::Tensor& mask) {
  const auto p = prob.flatten(1), y = mask.flatten(1);  // [B, HW]
  const auto dice = (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1);
  return (1 - dice).mean();
}

torch::Tensor loss_bce(const torch::Tensor& logits, const torch::Tensor& labels) {
  return torch::binary_cross_entropy_with_logits(logits, labels.to(logits.dtype()));
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
  terms.seg = torch::zeros({}, out.det_logits.options());
  if (has_mask.any().item<bool>()) {
    const auto idx = has_mask.nonzero().squeeze(1);
    const auto y = masks.index_select(0, idx);
    // The design scores every masked image's Dice, normal ones against their empty masks. An empty
    // mask's Dice loss, sum p / (sum p + 1), stays near 1 with almost no gradient until the map is
    // nearly 0 everywhere, then pulls every pixel down hard; dice_on_normal_images = false leaves
    // normal images to the focal term. lesion_rows: the masked images with a lesion.
    const auto lesion_rows = config.dice_on_normal_images
                                 ? torch::Tensor()
                                 : (labels.index_select(0, idx) > 0).nonzero().squeeze(1);
    for (size_t level = 0; level < out.level_logits.size(); ++level) {
      const auto z = out.level_logits[level].index_select(0, idx);
      const auto p = out.level_maps[level].index_select(0, idx);  // sigmoid(z), already computed
      const auto dice = config.dice_on_normal_images ? loss_dice(p, y)
                        : lesion_rows.numel() > 0
                            ? loss_dice(p.index_select(0, lesion_rows), y.index_select(0, lesion_rows))
                            : torch::zeros({}, p.options());
      terms.seg = terms.seg + loss_focal(z, y, config.focal_gamma, config.lesion_weight) + dice;
    }
  }
  terms.det = loss_bce(out.det_logits.select(-1, 1) - out.det_logits.select(-1, 0), labels);
  terms.margin = config.margin > 0 ? loss_margin(out.global, out.text.global, labels, config.margin, config.temperature)
                                   : torch::zeros({}, out.det_logits.options());
  terms.total = terms.seg + config.lambda_det * terms.det + config.lambda_margin * terms.margin;
  return terms;
}

}  // namespace medsad::model
