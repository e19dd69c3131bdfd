// Each cmd_*.cpp adds its subcommands to the app; the chosen one leaves its work in `action`,
// which main() runs after parsing and runtime set-up.
#pragma once
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "core/runtime.h"

namespace medsad::cli {

using Action = std::function<void()>;

// --precision and --device for the commands that run the model (train, eval, predict, serve).
struct ComputeOptions {
  std::string precision = "auto";
  std::string device = "auto";
};
inline void add_compute_options(CLI::App* cmd, ComputeOptions& options) {
  cmd->add_option("--precision", options.precision,
                  "matrix products: fp32, bf16, or auto (bf16 on CUDA and where the CPU has native bf16)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--device", options.device, "cpu, cuda, cuda:N, or auto (CUDA if this build sees a GPU)");
}
struct Compute {
  torch::Device device = torch::kCPU;
  torch::Dtype precision = torch::kFloat32;
};
// The device first (an Error if it is not there), then the precision for it, with the process
// set up for both (medsad::configure_precision).
inline Compute resolve_compute_options(const ComputeOptions& options) {
  Compute out;
  out.device = resolve_device(options.device);
  out.precision = configure_precision(options.precision, out.device);
  return out;
}

// --window for the commands that read images (train, eval, predict): the VOI window of DICOM
// images, "CENTER,WIDTH" or a preset name (data::parse_dicom_window). apply_window_option sets
// it for the process; empty leaves each file's own window.
void add_window_option(CLI::App* cmd, std::string& window);
void apply_window_option(const std::string& window);

// --image-rule for the commands that calibrate (train at its end, calibrate): how the image
// threshold is chosen on the split, the text eval::OperatingRule::parse reads (default f1).
inline void add_image_rule_option(CLI::App* cmd, std::string& rule) {
  cmd->add_option("--image-rule", rule,
                  "how the image threshold is chosen: f1 (F1-max, the default), youden (max sensitivity + "
                  "specificity - 1), sensitivity=X (the highest threshold that finds at least X of the abnormal "
                  "images) or specificity=X (the lowest that clears at least X of the normal ones)");
}

// --clip-activation for the commands that read CLIP weights (clip info/embed, train): the MLP
// activation a state dict does not record (clip::read_clip_checkpoint).
inline void add_clip_activation_option(CLI::App* cmd, std::string& activation) {
  cmd->add_option("--clip-activation", activation,
                  "auto (a Hugging Face config's hidden_act, else QuickGELU as in OpenAI's weights), quick_gelu, or "
                  "gelu (open_clip's LAION- and DataComp-trained weights)")
      ->check(CLI::IsMember({"auto", "quick_gelu", "gelu"}));
}

// For unsigned options (seeds): CLI11 would read "-1" as 2^64 - 1, and its own NonNegativeNumber
// prints a 300-digit bound.
inline CLI::Validator not_negative() {
  return CLI::Validator(
      [](std::string& value) { return value.rfind('-', 0) == 0 ? "must not be negative, got " + value : std::string(); },
      "NON-NEGATIVE");
}

void setup_clip_commands(CLI::App& app, Action& action);
void setup_train_command(CLI::App& app, Action& action);
void setup_eval_command(CLI::App& app, Action& action);
void setup_predict_command(CLI::App& app, Action& action);
void setup_synth_command(CLI::App& app, Action& action);
void setup_slices_command(CLI::App& app, Action& action);
void setup_baseline_command(CLI::App& app, Action& action);
void setup_serve_command(CLI::App& app, Action& action);

}  // namespace medsad::cli
