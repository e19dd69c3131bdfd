// `medsad predict`: score images one by one with no dataset around them. One JSON line per
// image; with --out, the binary lesion mask and a heat-map overlay at the image's own size.
// A bad image prints one error line and the run goes on; the exit code is 1 if any failed.
#include <cstdio>
#include <filesystem>
#include <future>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"
#include "data/image_io.h"
#include "eval/evaluate.h"
#include "eval/visualize.h"
#include "model/checkpoint.h"

namespace medsad::cli {
namespace fs = std::filesystem;

void setup_predict_command(CLI::App& app, Action& action) {
  struct Options {
    std::string model, weights, bpe, out;
    std::vector<std::string> images;
    int64_t batch = 8;
    std::string precision = "auto";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("predict", "score single images with a trained model");
  cmd->add_option("--model", o->model, "trained checkpoint (best.ckpt)")->required();
  cmd->add_option("images", o->images, "image files")->required();
  cmd->add_option("--out", o->out, "folder for NAME_mask.png and NAME_overlay.png");
  cmd->add_option("--weights", o->weights, "CLIP backbone (default: the one recorded at training)");
  cmd->add_option("--bpe", o->bpe, "CLIP vocabulary (default: the one recorded at training)");
  cmd->add_option("--batch", o->batch, "batch size (default 8)")->check(CLI::Range(1, 4096));
  add_precision_option(cmd, o->precision);
  cmd->callback([&action, o] {
    action = [o] {
      auto trained = model::load_trained_model(o->model, o->weights, o->bpe, configure_precision(o->precision));
      const auto& calibration = trained.info.calibration;
      if (!o->out.empty()) fs::create_directories(o->out);
      int64_t failed = 0;
      struct Batch {
        std::vector<std::string> paths, errors;
        std::vector<torch::Tensor> images;
      };
      const auto step = static_cast<size_t>(o->batch);
      auto read_from = [&](size_t start) {
        return std::async(std::launch::async, [&o, start, step] {
          Batch b;
          for (size_t i = start; i < std::min(o->images.size(), start + step); ++i) {
            try {
              b.images.push_back(read_image_rgb(o->images[i]));
              b.paths.push_back(o->images[i]);
            } catch (const Error& e) {
              b.errors.push_back(e.what());
            }
          }
          return b;
        });
      };
      // The next batch is decoded while the model scores this one.
      auto next = read_from(0);
      for (size_t start = 0; start < o->images.size(); start += step) {
        const Batch batch = next.get();
        if (start + step < o->images.size()) next = read_from(start + step);
        for (const auto& error : batch.errors) std::fprintf(stderr, "medsad: error: %s\n", error.c_str());
        failed += static_cast<int64_t>(batch.errors.size());
        const auto& paths = batch.paths;
        const auto& images = batch.images;
        const auto results = eval::predict_images(*trained.model, trained.preprocess, images, o->batch);
        for (size_t i = 0; i < results.size(); ++i) {
          const auto lesion = results[i].map >= calibration.pixel_threshold;
          const nlohmann::json line = {{"path", paths[i]},
                                       {"score", results[i].score},
                                       {"decision", results[i].score >= calibration.image_threshold ? "abnormal" : "normal"},
                                       {"threshold", calibration.image_threshold},
                                       {"lesion_fraction", lesion.to(torch::kFloat64).mean().item<double>()}};
          std::printf("%s\n", line.dump().c_str());
          if (o->out.empty()) continue;
          const std::string stem = fs::path(paths[i]).stem().string();
          const cv::Mat mask = eval::to_mat_u8(lesion.to(torch::kFloat32));
          write_png((fs::path(o->out) / (stem + "_mask.png")).string(), mask);
          write_png((fs::path(o->out) / (stem + "_overlay.png")).string(), eval::anomaly_overlay(images[i], results[i].map, mask));
        }
        std::fflush(stdout);
      }
      if (failed) fail("", std::to_string(failed) + " of " + std::to_string(o->images.size()) + " images could not be read");
    };
  });
}

}  // namespace medsad::cli
