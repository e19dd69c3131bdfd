// Each cmd_*.cpp adds its subcommands to the app; the chosen one leaves its work in `action`,
// which main() runs after parsing and runtime set-up.
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace medsad::cli {

using Action = std::function<void()>;

void setup_clip_commands(CLI::App& app, Action& action);
void setup_train_command(CLI::App& app, Action& action);
void setup_eval_command(CLI::App& app, Action& action);
void setup_predict_command(CLI::App& app, Action& action);
void setup_synth_command(CLI::App& app, Action& action);
void setup_baseline_command(CLI::App& app, Action& action);

}  // namespace medsad::cli
