// Trained MedSAD-CLIP checkpoints: only what was trained (adapters, TPCA, prompt context), the
// config, the calibration and the SHA-256 of the backbone file, in one safetensors file whose
// "__metadata__" carries the JSON. Megabytes, not the backbone's gigabytes. Written atomically.
// Predict and serve load these without depending on train/.
#pragma once
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "clip/config.h"
#include "clip/tokenizer.h"
#include "core/safetensors.h"
#include "model/config.h"
#include "model/medsad_clip.h"

namespace medsad::model {

// Thresholds chosen on the validation split after training, so one image can be scored alone.
struct Calibration {
  bool calibrated = false;
  double image_threshold = 0.5;  // decision: score >= threshold (F1-max on validation, or image_rule)
  std::string image_rule = "f1";  // how image_threshold was chosen (eval::OperatingRule's text)
  double pixel_threshold = 0.5;  // lesion pixels: map >= threshold (mean-Dice-max on validation)
  nlohmann::json to_json() const;
  static Calibration from_json(const nlohmann::json& j);
};

struct CheckpointInfo {
  MedSadConfig config;
  Calibration calibration;
  std::string backbone_path;    // the weights file training used (a hint; --weights overrides); "none": scratch
  std::string backbone_sha256;  // must match the backbone given at load ("" for a scratch backbone)
  nlohmann::json backbone_config;  // the backbone's ClipConfig (a scratch backbone's weights are in the checkpoint)
  std::string bpe_path;         // tokenizer vocabulary training used (--bpe overrides); "": byte-level
  nlohmann::json training;      // epoch, step, best validation score, options
};

// Writes model parameters as "model.<name>" plus `extra` tensors (e.g. optimizer state).
void save_checkpoint(const std::string& path, MedSadClipImpl& model, const CheckpointInfo& info,
                     const TensorMap& extra = {});

CheckpointInfo read_checkpoint_info(const std::string& path);

// Every tensor of a checkpoint, checked against the SHA-256 its writer recorded (checkpoints
// from before that field load unchecked) and for NaN/Inf model weights: Error naming the file.
TensorMap read_checkpoint_tensors(const std::string& path);

// Copies the checkpoint at `path` to `out` (atomically; `out` may be `path`) with `calibration`
// in place of its own: every tensor and every other field unchanged. `medsad calibrate`.
void write_recalibrated_checkpoint(const std::string& path, const std::string& out, const Calibration& calibration);

// Copies "model.*" tensors into `model`, strictly (missing/unexpected/misshapen: Error naming it).
void load_checkpoint_weights(const std::string& path, const TensorMap& tensors, MedSadClipImpl& model);

struct TrainedModel {
  MedSadClip model{nullptr};
  CheckpointInfo info;
  clip::ImagePreprocess preprocess;
};

// Loads a checkpoint with its backbone (weights_override, else the recorded path) and tokenizer
// (bpe_override, else the recorded path); refuses a backbone whose SHA-256 differs. A scratch
// backbone comes from the checkpoint itself. Ready to score (MedSadClipImpl::prepare_for_inference)
// with the backbone's matrix products in `precision`, on `device`.
TrainedModel load_trained_model(const std::string& checkpoint_path, const std::string& weights_override = "",
                                const std::string& bpe_override = "", torch::Dtype precision = torch::kFloat32,
                                torch::Device device = torch::kCPU);

}  // namespace medsad::model
