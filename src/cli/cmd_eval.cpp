// `medsad eval`: a trained checkpoint on one split of a dataset: metrics.json, per_image.csv;
// with --save-maps, each anomaly map as a 16-bit PNG (value = score x 65535) at the image's size;
// with --cases K, picture panels of the K best and K worst segmented lesions and of the K
// highest-scoring normal images (the likeliest false alarms). `medsad calibrate`: the thresholds
// chosen again on a split, written into a copy of the checkpoint.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "cli/dataset_options.h"
#include "core/error.h"
#include "core/file_io.h"
#include "core/runtime.h"
#include "core/text.h"
#include "data/image_io.h"
#include "eval/evaluate.h"
#include "eval/report.h"
#include "eval/visualize.h"
#include "model/checkpoint.h"

namespace medsad::cli {
namespace fs = std::filesystem;
namespace {

// A collision-free file name for an image's map: its path below the dataset root, '/' -> "__".
std::string map_name(const std::string& image, const std::string& root) {
  std::error_code ec;
  fs::path rel = fs::relative(image, root.empty() ? fs::path(image).parent_path() : fs::path(root), ec);
  if (ec || rel.empty() || rel.native().rfind("..", 0) == 0) rel = fs::path(image).filename();
  std::string name = rel.replace_extension(".png").string();
  for (size_t pos; (pos = name.find('/')) != std::string::npos;) name.replace(pos, 1, "__");
  return name;
}

// cases/best_NN.png, worst_NN.png (abnormal images by Dice) and normal_NN.png (normal images by
// score, highest first), each an image | ground truth | prediction panel with a caption.
void write_case_panels(const fs::path& dir, const std::vector<eval::ImageResult>& results,
                       const model::Calibration& calibration, int64_t k) {
  std::vector<std::pair<double, size_t>> abnormal, normal;
  for (size_t i = 0; i < results.size(); ++i) {
    if (const auto dice = eval::lesion_dice(results[i], calibration.pixel_threshold)) abnormal.emplace_back(*dice, i);
    else if (results[i].error.empty() && results[i].label == 0) normal.emplace_back(results[i].score, i);
  }
  std::sort(abnormal.rbegin(), abnormal.rend());
  std::sort(normal.rbegin(), normal.rend());
  make_folders(dir.string());
  auto write = [&](const std::string& name, size_t i, const std::string& what) {
    const auto& r = results[i];
    char caption[160];
    std::snprintf(caption, sizeof caption, "%s  score %.3f (%s)", what.c_str(), r.score,
                  r.score >= calibration.image_threshold ? "abnormal" : "normal");
    const auto panel = eval::case_panel(read_image_rgb(r.path), r.map, r.mask, calibration.pixel_threshold, caption);
    write_png((dir / name).string(), panel);
  };
  const auto n = static_cast<size_t>(k);
  char name[32], what[64];
  for (size_t j = 0; j < std::min(n, abnormal.size()); ++j) {
    std::snprintf(name, sizeof name, "best_%02zu.png", j + 1);
    std::snprintf(what, sizeof what, "Dice %.2f", abnormal[j].first);
    write(name, abnormal[j].second, what);
    const auto& worst = abnormal[abnormal.size() - 1 - j];
    std::snprintf(name, sizeof name, "worst_%02zu.png", j + 1);
    std::snprintf(what, sizeof what, "Dice %.2f", worst.first);
    write(name, worst.second, what);
  }
  for (size_t j = 0; j < std::min(n, normal.size()); ++j) {
    std::snprintf(name, sizeof name, "normal_%02zu.png", j + 1);
    write(name, normal[j].second, "normal image");
  }
}

// eval's and calibrate's options (calibrate leaves report, save_maps and cases unset).
struct Options {
  std::string model, weights, bpe, split, out, report;
  DatasetOptions data;
  bool save_maps = false;
  int64_t batch = 8, cases = 0;
  ComputeOptions compute;
  std::string window;
};

// The options of a command that scores a checkpoint on a dataset split (eval, calibrate).
void add_scoring_options(CLI::App* cmd, Options& o, const std::string& split, const std::string& out_help) {
  o.split = split;
  cmd->add_option("--model", o.model, "trained checkpoint (best.ckpt)")->required();
  add_dataset_options(cmd, o.data);
  cmd->add_option("--split", o.split, "train, valid or test (default " + split + ")")
      ->check(CLI::IsMember({"train", "valid", "test"}));
  cmd->add_option("--out", o.out, out_help)->required();
  cmd->add_option("--weights", o.weights, "CLIP backbone (default: the one recorded at training)");
  cmd->add_option("--bpe", o.bpe, "CLIP vocabulary (default: the one recorded at training)");
  cmd->add_option("--batch", o.batch, "batch size (default 8)")->check(CLI::Range(1, 4096));
  add_compute_options(cmd, o.compute);
  add_window_option(cmd, o.window);
}

// A trained checkpoint scored on one split of a dataset, carved with the seed training used
// unless --seed was given.
struct ScoredSplit {
  model::TrainedModel trained;
  std::string root;
  std::vector<eval::ImageResult> results;
};
ScoredSplit score_split(const Options& o, bool seed_given) {
  apply_window_option(o.window);
  const auto compute = resolve_compute_options(o.compute);
  ScoredSplit out{model::load_trained_model(o.model, o.weights, o.bpe, compute.precision, compute.device), "", {}};
  auto spec = resolve_dataset_options(o.data);
  if (!seed_given) spec.seed = out.trained.info.training.value("seed", uint64_t(0));
  out.root = spec.root;
  const auto dataset = data::load_dataset(spec);
  std::fprintf(stderr, "%s", data::dataset_summary(dataset).c_str());
  const auto split = o.split == "train" ? data::Split::Train
                     : o.split == "valid" ? data::Split::Valid
                                          : data::Split::Test;
  const auto samples = dataset.split(split);
  if (samples.empty()) fail(spec.root, "the " + o.split + " split is empty");
  out.results = eval::evaluate_samples(*out.trained.model, out.trained.preprocess, samples, o.batch, true);
  return out;
}

}  // namespace

void setup_eval_command(CLI::App& app, Action& action) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("eval", "evaluate a trained model on a dataset split");
  add_scoring_options(cmd, *o, "test", "output folder");
  cmd->add_flag("--save-maps", o->save_maps, "write each anomaly map as a 16-bit PNG");
  cmd->add_option("--report", o->report, "write a self-contained HTML report (curves, gallery) to DIR/index.html");
  cmd->add_option("--cases", o->cases, "picture panels of the K best and worst lesions and top-scoring normals")
      ->check(CLI::Range(0, 1000));
  auto* seed_option = cmd->get_option("--seed");
  cmd->callback([&action, o, seed_option] {
    action = [o, seed_option] {
      make_folders(o->out);  // before the scoring, so that an unusable --out costs nothing
      if (!o->report.empty()) make_folders(o->report);
      const auto scored = score_split(*o, seed_option->count() > 0);
      fail_on_unreadable_images(scored.results);  // before writing: a previous run's results stay
      const auto& results = scored.results;
      const auto& spec_root = scored.root;
      const auto& calibration = scored.trained.info.calibration;
      const auto metrics = eval::compute_metrics(results, calibration);
      write_file_atomic((fs::path(o->out) / "metrics.json").string(), json_text(metrics, 2) + "\n");
      eval::write_per_image_csv((fs::path(o->out) / "per_image.csv").string(), results, calibration);
      if (o->save_maps) {
        make_folders((fs::path(o->out) / "maps").string());
        for (const auto& r : results)
          if (r.error.empty()) write_png((fs::path(o->out) / "maps" / map_name(r.path, spec_root)).string(), eval::to_mat_u16(r.map));
      }
      if (!o->report.empty())
        eval::write_html_report(o->report, "MedSAD-CLIP on " + spec_root + " (" + o->split + " split)", results, metrics,
                                calibration);
      if (o->cases > 0) write_case_panels(fs::path(o->out) / "cases", results, calibration, o->cases);
      std::printf("%s\n", json_text(metrics).c_str());
    };
  });

  // `medsad calibrate`: the thresholds chosen again on a split (by default validation), for
  // another site's data or after a change to how they are chosen, without retraining.
  auto c = std::make_shared<Options>();
  auto* cal = app.add_subcommand("calibrate", "choose a trained model's image and pixel thresholds again on a "
                                              "dataset split (default valid) and write the checkpoint with them");
  add_scoring_options(cal, *c, "valid", "the recalibrated checkpoint (may be --model itself; written atomically)");
  auto image_rule = std::make_shared<std::string>("f1");
  add_image_rule_option(cal, *image_rule);
  auto* cal_seed = cal->get_option("--seed");
  cal->callback([&action, c, cal_seed, image_rule] {
    action = [c, cal_seed, image_rule] {
      // Refused before the scoring, not after it.
      const auto rule = eval::OperatingRule::parse(*image_rule);
      const fs::path out_dir = fs::absolute(c->out).parent_path();
      if (!fs::is_directory(out_dir)) fail(c->out, "its folder " + out_dir.string() + " does not exist");
      std::error_code ec;
      if (fs::exists(c->out, ec)) {  // replaced only if it is a checkpoint itself (--model, or an older copy)
        try {
          (void)model::read_checkpoint_info(c->out);
        } catch (const Error&) {
          fail(c->out, "exists and is not a medsad checkpoint: give a new file, or the checkpoint to replace");
        }
      }
      const auto scored = score_split(*c, cal_seed->count() > 0);
      fail_on_unreadable_images(scored.results);
      const double pixel_before = scored.trained.info.calibration.pixel_threshold;
      const auto calibration = eval::calibrate(scored.results, rule, pixel_before);
      if (!calibration.calibrated)
        fail(scored.root, "the " + c->split + " split needs normal and abnormal images to calibrate on");
      if (!eval::has_lesion_mask(scored.results))
        spdlog::warn("{}: the {} split has no lesion masks: the pixel threshold stays {}", scored.root, c->split,
                     pixel_before);
      model::write_recalibrated_checkpoint(c->model, c->out, calibration);
      const nlohmann::json line = {{"out", c->out}, {"split", c->split}, {"images", scored.results.size()},
                                   {"before", scored.trained.info.calibration.to_json()},
                                   {"after", calibration.to_json()}};
      std::printf("%s\n", json_text(line).c_str());
    };
  });
}

}  // namespace medsad::cli
