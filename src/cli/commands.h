// Each cmd_*.cpp adds its subcommands to the app; the chosen one leaves its work in `action`,
// which main() runs after parsing and runtime set-up.
#pragma once
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

namespace medsad::cli {

using Action = std::function<void()>;

// --precision for the commands that run the model (train, eval, predict); resolve the value with
// medsad::configure_precision.
inline void add_precision_option(CLI::App* cmd, std::string& precision) {
  cmd->add_option("--precision", precision,
                  "backbone matrix products: fp32, bf16, or auto (bf16 where the CPU has native bf16)")
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
}

// --window for the commands that read images (train, eval, predict): the VOI window of DICOM
// images, "CENTER,WIDTH" or a preset name (data::parse_dicom_window). apply_window_option sets
// it for the process; empty leaves each file's own window.
void add_window_option(CLI::App* cmd, std::string& window);
void apply_window_option(const std::string& window);

void setup_clip_commands(CLI::App& app, Action& action);
void setup_train_command(CLI::App& app, Action& action);
void setup_eval_command(CLI::App& app, Action& action);
void setup_predict_command(CLI::App& app, Action& action);
void setup_synth_command(CLI::App& app, Action& action);
void setup_baseline_command(CLI::App& app, Action& action);
void setup_serve_command(CLI::App& app, Action& action);

}  // namespace medsad::cli
