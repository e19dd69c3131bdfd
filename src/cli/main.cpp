// medsad: find and outline abnormalities in medical images (MedSAD-CLIP).
// Reads top to bottom: build the CLI, parse, set how threads wait and how many there are, run the
// chosen command, report errors once. Exit codes: 0 success (and --help), 1 bad input (one line
// naming the file and the problem, or CLI11's message for a command-line syntax error or an
// option out of range), 2 internal error.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"

namespace {

// Whether the chosen command's matrix products run in fp32 on the CPU: `clip` always (it runs
// CLIP as loaded); train, eval, calibrate, predict and serve as their --precision and --device
// resolve. Throws medsad::Error for a device this build or machine lacks.
bool fp32_products_on_cpu(const CLI::App& app) {
  const CLI::App* command = app.get_subcommands().front();
  if (command->get_name() == "clip") return true;
  if (!command->get_option_no_throw("--precision")) return false;
  const auto value = [&](const std::string& name) {
    const CLI::Option* option = command->get_option_no_throw(name);
    return option && !option->results().empty() ? option->results().back() : std::string("auto");
  };
  const auto device = medsad::resolve_device(value("--device"));
  return device.is_cpu() && medsad::resolve_precision(value("--precision"), device) == torch::kFloat32;
}

}  // namespace

int main(int argc, char** argv) {
  medsad::configure_process();
  // Logs go to stderr so that stdout carries only results (JSON).
  spdlog::set_default_logger(spdlog::stderr_color_st("medsad"));
  spdlog::set_pattern("%^%l%$: %v");

  CLI::App app{"medsad: MedSAD-CLIP anomaly detection and segmentation for medical images\n"
               "exit codes: 0 ok, 1 bad input, 2 internal error"};
  app.require_subcommand(1);
  int threads = 0;
  bool verbose = false;
  app.add_option("--threads", threads, "intra-op threads (default: every core)")
      ->check(CLI::Range(0, 4096));
  app.add_flag("-v,--verbose", verbose, "debug logging");

  medsad::cli::Action action;
  medsad::cli::setup_clip_commands(app, action);
  medsad::cli::setup_train_command(app, action);
  medsad::cli::setup_eval_command(app, action);
  medsad::cli::setup_predict_command(app, action);
  medsad::cli::setup_synth_command(app, action);
  medsad::cli::setup_slices_command(app, action);
  medsad::cli::setup_baseline_command(app, action);
  medsad::cli::setup_serve_command(app, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // app.exit prints the message (or the help) and gives CLI11's own code, 0 for --help; any
    // other is bad input, so scripts see one code for every kind of it.
    return app.exit(e) == 0 ? 0 : 1;
  }
  spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);

  try {
    medsad::configure_thread_wait(argv, fp32_products_on_cpu(app));
    const int used = medsad::configure_threads(threads);
    if (threads > 0 && used != threads) spdlog::warn("--threads {}: using {}, four per core", threads, used);
    const std::string blas = medsad::blas_library_path();
    if (!medsad::is_fast_blas(blas))
      spdlog::warn("LibTorch is using a slow reference BLAS ({}): install libopenblas0-pthread for ~10x speed",
                   blas.empty() ? "unknown" : blas);
    spdlog::debug("threads: {}, BLAS: {}, OpenMP wait: {}", used, blas, medsad::thread_wait_description());
    if (action) action();
    return 0;
  } catch (const medsad::Error& e) {
    std::cerr << "medsad: error: " << e.what() << "\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // A path the user gave that cannot be read, listed or created: their input, not our fault.
    std::cerr << "medsad: error: " << (e.path1().empty() ? "" : e.path1().string() + ": ") << e.code().message() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    std::cerr << "medsad: internal error: " << what.substr(0, what.find('\n')) << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "medsad: internal error: " << e.what() << "\n";
    return 2;
  }
}
