// `medsad predict`: score images one by one with no dataset around them. One JSON line per
// image; with --out, the binary lesion mask and a heat-map overlay at the image's own size.
// A NIfTI volume (.nii, .nii.gz) is scored slice by slice along --axis: one JSON line per slice;
// with --out, NAME_slices.csv and NAME_mask.nii.gz on the volume's own voxel grid.
// A bad input prints one error line and the run goes on; the exit code is 1 if any failed.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"
#include "core/file_io.h"
#include "data/dicom_io.h"
#include "data/image_io.h"
#include "data/nifti_volume.h"
#include "eval/evaluate.h"
#include "eval/visualize.h"
#include "eval/volume_predict.h"
#include "model/checkpoint.h"

namespace medsad::cli {
namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_nifti_path(const std::string& path) { return ends_with(path, ".nii") || ends_with(path, ".nii.gz"); }

// The file name without .nii / .nii.gz.
std::string volume_stem(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  for (const char* ext : {".nii.gz", ".nii"})
    if (ends_with(name, ext)) return name.substr(0, name.size() - std::strlen(ext));
  return name;
}

void predict_volume_file(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                         const model::Calibration& calibration, const std::string& path, eval::SliceAxis axis,
                         int64_t batch, const std::string& out_dir) {
  const auto volume = data::read_nifti_volume(path);
  eval::VolumePrediction prediction;
  try {
    prediction = eval::predict_volume(model, preprocess, volume, axis, batch);
  } catch (const Error& e) {
    fail(path, e.problem());
  }
  const auto mask = prediction.anomaly_map >= calibration.pixel_threshold;  // [S, A, R]
  const int64_t d = eval::axis_dim(axis);
  std::string csv = "slice,score,decision,lesion_fraction\n";
  for (size_t k = 0; k < prediction.slice_scores.size(); ++k) {
    const double score = prediction.slice_scores[k];
    const double fraction = mask.select(d, static_cast<int64_t>(k)).to(torch::kFloat64).mean().item<double>();
    const char* decision = score >= calibration.image_threshold ? "abnormal" : "normal";
    const nlohmann::json line = {{"path", path}, {"axis", eval::to_string(axis)}, {"slice", k}, {"score", score},
                                 {"decision", decision}, {"threshold", calibration.image_threshold},
                                 {"lesion_fraction", fraction}};
    std::printf("%s\n", line.dump().c_str());
    char row[128];
    std::snprintf(row, sizeof row, "%zu,%.6f,%s,%.6f\n", k, score, decision, fraction);
    csv += row;
  }
  std::fflush(stdout);
  if (out_dir.empty()) return;
  const std::string stem = volume_stem(path);
  write_file_atomic((fs::path(out_dir) / (stem + "_slices.csv")).string(), csv);
  data::write_nifti_mask_like((fs::path(out_dir) / (stem + "_mask.nii.gz")).string(), mask, volume);
}

}  // namespace

void setup_predict_command(CLI::App& app, Action& action) {
  struct Options {
    std::string model, weights, bpe, out;
    std::vector<std::string> images;
    int64_t batch = 8;
    ComputeOptions compute;
    std::string window;
    std::string axis = "axial";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("predict", "score single images with a trained model");
  cmd->add_option("--model", o->model, "trained checkpoint (best.ckpt)")->required();
  cmd->add_option("images", o->images, "image files (PNG, JPEG, TIFF, BMP, DICOM), DICOM series folders, or NIfTI volumes")->required();
  cmd->add_option("--out", o->out, "folder for NAME_mask.png, NAME_overlay.png and NAME_map.png (the anomaly map in [0, 1] as 16-bit grey) (volumes: NAME_slices.csv, NAME_mask.nii.gz)");
  cmd->add_option("--axis", o->axis, "volumes: slice along axial (default), coronal or sagittal")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--weights", o->weights, "CLIP backbone (default: the one recorded at training)");
  cmd->add_option("--bpe", o->bpe, "CLIP vocabulary (default: the one recorded at training)");
  cmd->add_option("--batch", o->batch, "batch size (default 8)")->check(CLI::Range(1, 4096));
  add_compute_options(cmd, o->compute);
  add_window_option(cmd, o->window);
  cmd->callback([&action, o] {
    action = [o] {
      apply_window_option(o->window);
      const auto compute = resolve_compute_options(o->compute);
      if (!o->out.empty()) make_folders(o->out);
      auto trained = model::load_trained_model(o->model, o->weights, o->bpe, compute.precision, compute.device);
      const auto& calibration = trained.info.calibration;
      int64_t failed = 0;
      std::vector<std::string> image_paths;
      for (const auto& path : o->images) {
        std::error_code ec;
        if (fs::is_directory(path, ec)) {  // a DICOM series: its slices in position order
          try {
            for (auto& slice : data::sorted_dicom_series(path)) image_paths.push_back(std::move(slice));
          } catch (const Error& e) {
            std::fprintf(stderr, "medsad: error: %s\n", e.what());
            ++failed;
          }
          continue;
        }
        if (!is_nifti_path(path)) {
          image_paths.push_back(path);
          continue;
        }
        try {
          predict_volume_file(*trained.model, trained.preprocess, calibration, path, eval::parse_slice_axis(o->axis),
                              o->batch, o->out);
        } catch (const Error& e) {
          std::fprintf(stderr, "medsad: error: %s\n", e.what());
          ++failed;
        }
      }
      struct Batch {
        std::vector<std::string> paths, errors;
        std::vector<torch::Tensor> images;
      };
      const auto step = static_cast<size_t>(o->batch);
      auto read_from = [&](size_t start) {
        return std::async(std::launch::async, [&image_paths, start, step] {
          Batch b;
          for (size_t i = start; i < std::min(image_paths.size(), start + step); ++i) {
            try {
              b.images.push_back(read_image_rgb(image_paths[i]));
              b.paths.push_back(image_paths[i]);
            } catch (const Error& e) {
              b.errors.push_back(e.what());
            }
          }
          return b;
        });
      };
      // The next batch is decoded while the model scores this one.
      auto next = read_from(0);
      for (size_t start = 0; start < image_paths.size(); start += step) {
        const Batch batch = next.get();
        if (start + step < image_paths.size()) next = read_from(start + step);
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
          write_png((fs::path(o->out) / (stem + "_map.png")).string(), eval::to_mat_u16(results[i].map));
        }
        std::fflush(stdout);
      }
      if (failed) fail("", std::to_string(failed) + " of " + std::to_string(o->images.size()) + " inputs could not be read");
    };
  });
}

}  // namespace medsad::cli
