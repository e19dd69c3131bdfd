// `medsad baseline`: the non-learned reference on a dataset, fitted on the training split's
// normal images, calibrated on validation and evaluated on test exactly as `medsad eval` does.
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/dataset_options.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"
#include "eval/baseline.h"
#include "eval/evaluate.h"

namespace medsad::cli {
namespace fs = std::filesystem;

void setup_baseline_command(CLI::App& app, Action& action) {
  struct Options {
    DatasetOptions data;
    std::string out;
    int64_t size = 128;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("baseline", "per-pixel deviation from the mean normal training image "
                                             "(a non-learned reference): metrics on the test split");
  add_dataset_options(cmd, o->data);
  cmd->add_option("--out", o->out, "output folder (metrics.json, per_image.csv)")->required();
  cmd->add_option("--image-size", o->size, "images compared at this side (default 128)")->check(CLI::Range(8, 4096));
  cmd->callback([&action, o] {
    action = [o] {
      make_folders(o->out);  // first, so that an unusable --out costs nothing
      const auto spec = resolve_dataset_options(o->data);
      const auto dataset = data::load_dataset(spec);
      const auto baseline = eval::fit_mean_deviation(dataset.split(data::Split::Train), o->size);
      const eval::Predictor predict = [&](const std::vector<torch::Tensor>& images) { return baseline.predict(images); };
      const auto valid = dataset.split(data::Split::Valid), test = dataset.split(data::Split::Test);
      if (test.empty()) fail(spec.root, "the test split is empty");
      model::Calibration calibration;
      if (!valid.empty()) {
        const auto valid_results = eval::evaluate_samples(predict, valid, 16, false);
        fail_on_unreadable_images(valid_results);
        calibration = eval::calibrate(valid_results);
      }
      const auto results = eval::evaluate_samples(predict, test, 16, true);
      fail_on_unreadable_images(results);
      const auto metrics = eval::compute_metrics(results, calibration);
      write_file_atomic((fs::path(o->out) / "metrics.json").string(), json_text(metrics, 2) + "\n");
      eval::write_per_image_csv((fs::path(o->out) / "per_image.csv").string(), results, calibration);
      std::printf("%s\n", json_text(metrics).c_str());
    };
  });
}

}  // namespace medsad::cli
