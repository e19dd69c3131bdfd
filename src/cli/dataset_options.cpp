#include "cli/dataset_options.h"

#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "data/dicom_io.h"
#include "eval/evaluate.h"

namespace medsad::cli {

void add_window_option(CLI::App* cmd, std::string& window) {
  cmd->add_option("--window", window,
                  "DICOM window CENTER,WIDTH or a preset: brain, subdural, stroke, lung, mediastinum, soft-tissue, "
                  "bone, liver (default: each file's own window, else its full range)");
}

void apply_window_option(const std::string& window) {
  if (!window.empty()) data::set_dicom_window(data::parse_dicom_window(window));
}

void add_dataset_options(CLI::App* app, DatasetOptions& o) {
  app->add_option("--data", o.spec.root, "dataset root (BMAD/MVFA, BUSI) or CSV manifest");
  app->add_option("--layout", o.layout, "auto, bmad, folder, busi or csv (default auto)");
  app->add_option("--normal-dir", o.spec.normal_dir, "Folder layout: normal images");
  app->add_option("--abnormal-dir", o.spec.abnormal_dir, "Folder layout: abnormal images");
  app->add_option("--mask-dir", o.spec.mask_dir, "Folder layout: masks (same stem, optional _mask suffix)");
  app->add_option("--valid-fraction", o.spec.valid_fraction, "carved from train where no validation split exists")
      ->check(CLI::Range(0.0, 0.9));
  app->add_option("--test-fraction", o.spec.test_fraction, "carved where no test split exists")
      ->check(CLI::Range(0.0, 0.9));
  app->add_option("--abnormal-budget", o.spec.abnormal_budget, "keep K labelled abnormal training images (-1: all)")
      ->check(CLI::Range(int64_t(-1), int64_t(1) << 40));
  app->add_option("--seed", o.spec.seed, "seed for split carving, budget, and training")
      ->check(not_negative());
}

data::DatasetSpec resolve_dataset_options(const DatasetOptions& o) {
  data::DatasetSpec spec = o.spec;
  spec.layout = data::parse_layout(o.layout);
  return spec;
}

void fail_on_unreadable_images(const std::vector<eval::ImageResult>& results) {
  std::vector<const std::string*> errors;
  for (const auto& r : results)
    if (!r.error.empty()) errors.push_back(&r.error);
  if (errors.empty()) return;
  for (size_t i = 0; i + 1 < errors.size(); ++i) std::fprintf(stderr, "medsad: error: %s\n", errors[i]->c_str());
  fail("", *errors.back() + " (" + std::to_string(errors.size()) + " of " + std::to_string(results.size()) +
               " images could not be read)");
}

}  // namespace medsad::cli
