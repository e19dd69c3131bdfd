// One optimisation step of MedSAD-CLIP, apart from the training loop so that code which trains
// in its own way (bench/speed, a GPU build with only LibTorch) needs no data readers.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "model/losses.h"
#include "model/medsad_clip.h"

namespace medsad::train {

// Forward, the design's losses, backward, gradient clipping at norm 1, optimizer step.
// images: [B, 3, S, S] normalised; masks: [B, S, S]; has_mask: [B] bool; labels: [B] int64, all
// on the model's device. `trainable` is what the optimizer updates.
model::LossTerms train_step(model::MedSadClipImpl& model, torch::optim::Optimizer& optimizer,
                            std::vector<torch::Tensor>& trainable, const torch::Tensor& images,
                            const torch::Tensor& masks, const torch::Tensor& has_mask, const torch::Tensor& labels);

}  // namespace medsad::train
