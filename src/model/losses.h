// MedSAD-CLIP's training losses (design doc, Losses). The cross-entropy terms take logits
// (abnormal minus normal), not probabilities: at tau = 100 the probabilities of a network
// trained from scratch saturate to 0/1, and a loss on clamped probabilities then has no gradient
// exactly where the model is confidently wrong.
#pragma once
#include <torch/torch.h>

#include "model/config.h"
#include "model/medsad_clip.h"

namespace medsad::model {

// Binary focal loss, mean over pixels: -w (1-p)^g log p (y=1), -p^g log(1-p) (y=0), p = sigmoid(logits),
// w = lesion_weight (lesions are a few percent of the pixels). logits, mask: [B, H, W].
torch::Tensor loss_focal(const torch::Tensor& logits, const torch::Tensor& mask, double gamma,
                         double lesion_weight = 1.0);

// Soft Dice loss per image, averaged: 1 - (2 sum(p y) + 1) / (sum p + sum y + 1). [B, H, W] -> scalar.
torch::Tensor loss_dice(const torch::Tensor& prob, const torch::Tensor& mask);

// Binary cross-entropy of p = sigmoid(logits) [B] against labels [B] (0/1).
torch::Tensor loss_bce(const torch::Tensor& logits, const torch::Tensor& labels);

// Additive-cosine-margin image-text contrastive loss (CosFace form):
// -log( e^{s(cos(g,t_y)-m)} / (e^{s(cos(g,t_y)-m)} + e^{s cos(g,t_{1-y})}) ), mean over the batch.
// global: [B, E] and text: [2, E], both L2-normalised; labels: [B] int64.
torch::Tensor loss_margin(const torch::Tensor& global, const torch::Tensor& text, const torch::Tensor& labels,
                          double margin, double scale);

struct LossTerms {
  torch::Tensor total, seg, det, margin;  // scalars
};

// Total = sum over levels (focal + Dice) on images with a mask + l_det BCE + l_m margin. With
// config.dice_on_normal_images false the Dice term skips the normal (label 0) images.
// masks: [B, S, S] (zeros for normal images); has_mask: [B] bool; labels: [B] int64.
LossTerms medsad_loss(const MedSadOutput& out, const torch::Tensor& masks, const torch::Tensor& has_mask,
                      const torch::Tensor& labels, const MedSadConfig& config);

}  // namespace medsad::model
