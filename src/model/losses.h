// MedSAD-CLIP's training losses (design doc, Losses). Maps are abnormal probabilities.
#pragma once
#include <torch/torch.h>

#include "model/config.h"
#include "model/medsad_clip.h"

namespace medsad::model {

// Binary focal loss on probabilities, mean over pixels: -(1-p)^g log p (y=1), -p^g log(1-p) (y=0).
// prob, mask: [B, H, W].
torch::Tensor loss_focal(const torch::Tensor& prob, const torch::Tensor& mask, double gamma);

// Soft Dice loss per image, averaged: 1 - (2 sum(p y) + 1) / (sum p + sum y + 1). [B, H, W] -> scalar.
torch::Tensor loss_dice(const torch::Tensor& prob, const torch::Tensor& mask);

// Binary cross-entropy of probabilities p [B] against labels [B] (0/1).
torch::Tensor loss_bce(const torch::Tensor& p, const torch::Tensor& labels);

// Additive-cosine-margin image-text contrastive loss (CosFace form):
// -log( e^{s(cos(g,t_y)-m)} / (e^{s(cos(g,t_y)-m)} + e^{s cos(g,t_{1-y})}) ), mean over the batch.
// global: [B, E] and text: [2, E], both L2-normalised; labels: [B] int64.
torch::Tensor loss_margin(const torch::Tensor& global, const torch::Tensor& text, const torch::Tensor& labels,
                          double margin, double scale);

struct LossTerms {
  torch::Tensor total, seg, det, margin;  // scalars
};

// Total = sum over levels (focal + Dice) on images with a mask + l_det BCE + l_m margin.
// masks: [B, S, S] (zeros for normal images); has_mask: [B] bool; labels: [B] int64.
LossTerms medsad_loss(const MedSadOutput& out, const torch::Tensor& masks, const torch::Tensor& has_mask,
                      const torch::Tensor& labels, const MedSadConfig& config);

}  // namespace medsad::model
