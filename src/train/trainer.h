// Supervised training of MedSAD-CLIP (design doc, "Training and model selection"): AdamW on the
// adapters, TPCA and prompt context only, cosine decay, augmentation; the checkpoint kept is the
// best on the validation split (never test); then calibration on validation.
#pragma once
#include <string>

#include <vector>

#include <torch/torch.h>

#include "clip/scratch.h"
#include "data/dataset.h"
#include "eval/metrics.h"
#include "model/config.h"
#include "model/losses.h"
#include "model/medsad_clip.h"

namespace medsad::train {

struct TrainOptions {
  std::string weights;          // CLIP backbone checkpoint, or "none": a small backbone trained from scratch
  clip::ScratchClipOptions scratch;  // its sizes when weights == "none"
  std::string hf_config;        // Hugging Face config.json, if not beside the weights
  std::string clip_activation = "auto";  // auto, quick_gelu or gelu (clip::read_clip_checkpoint)
  std::string bpe;              // CLIP vocabulary; "" with weights "none": byte-level tokenizer
  std::string out_dir;          // runs/NAME: config.json, last.ckpt, best.ckpt
  data::DatasetSpec data;
  model::MedSadConfig model;
  int64_t epochs = 20;
  int64_t batch_size = 8;
  double lr = 1e-3;
  double weight_decay = 1e-4;
  int64_t warmup_steps = 0;     // linear learning-rate warm-up before the cosine decay
  torch::Dtype precision = torch::kFloat32;  // compute dtype of the backbone's matrix products
  torch::Device device = torch::kCPU;        // where the model trains; data stays on the CPU
  bool augment = true;
  uint64_t seed = 0;
  bool resume = false;          // continue from out_dir/last.ckpt
  bool overwrite = false;       // replace a previous run's checkpoints in out_dir (else refused)
  eval::OperatingRule image_rule;  // how best.ckpt's image threshold is chosen on validation

  void validate() const;
};

struct TrainSummary {
  int64_t epochs_run = 0;
  double first_epoch_loss = 0, last_epoch_loss = 0;
  double best_validation = 0;
  int64_t best_epoch = 0;
};

// Runs training to completion, writing checkpoints atomically. Throws Error on bad input.
TrainSummary train(const TrainOptions& options);

}  // namespace medsad::train
