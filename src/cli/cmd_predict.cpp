// `medsad predict`: score images one by one with no dataset around them. One JSON line per
// image; with --out, the binary lesion mask and a heat-map overlay at the image's own size.
// A NIfTI volume (.nii, .nii.gz, a .hdr/.img pair) is scored slice by slice along --axis: one
// JSON line per slice; with --out, NAME_slices.csv and NAME_mask.nii.gz on the volume's own grid.
// Of a 4-D file, --volume-index K scores volume K (NAME_volK_slices.csv, NAME_volK_mask.nii.gz).
// A multi-frame DICOM file is scored frame by frame: one JSON line per frame; with --out,
// NAME_frames.csv and each frame's images as NAME_frameK_*.png.
// A folder is its DICOM series (slices in position order; with --out, also the series' masks as
// one NIfTI volume on its grid) or, holding no DICOM file, its images and NIfTI volumes in name
// order. With --dicom-seg, each DICOM image's mask (a series' in one file) is also written as a
// DICOM Segmentation, NAME_seg.dcm. A bad input prints one error line and the run goes on; the exit code is 1 if any
// failed.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <future>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"
#include "core/file_io.h"
#include "core/text.h"
#include "data/dicom_io.h"
#include "data/dicom_seg.h"
#include "data/image_io.h"
#include "data/nifti_volume.h"
#include "data/predict_inputs.h"
#include "eval/evaluate.h"
#include "eval/series_masks.h"
#include "eval/visualize.h"
#include "eval/volume_predict.h"
#include "model/checkpoint.h"

namespace medsad::cli {
namespace fs = std::filesystem;

namespace {

void predict_volume_file(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                         const model::Calibration& calibration, const std::string& path, data::SliceAxis axis,
                         int64_t volume_index, int64_t batch, const std::string& out_dir, std::string out_name) {
  const auto volume = data::read_nifti_volume(path, volume_index);
  if (volume_index >= 0) out_name += "_vol" + std::to_string(volume_index);
  eval::VolumePrediction prediction;
  try {
    prediction = eval::predict_volume(model, preprocess, volume, axis, batch);
  } catch (const Error& e) {
    fail(path, e.problem());
  }
  const auto mask = prediction.anomaly_map >= calibration.pixel_threshold;  // [S, A, R]
  const int64_t d = data::axis_dim(axis);
  std::string csv = "slice,score,decision,lesion_fraction\n";
  for (size_t k = 0; k < prediction.slice_scores.size(); ++k) {
    const double score = prediction.slice_scores[k];
    const double fraction = mask.select(d, static_cast<int64_t>(k)).to(torch::kFloat64).mean().item<double>();
    const char* decision = score >= calibration.image_threshold ? "abnormal" : "normal";
    nlohmann::json line = {{"path", path}, {"axis", data::to_string(axis)}, {"slice", k}, {"score", score},
                           {"decision", decision}, {"threshold", calibration.image_threshold},
                           {"lesion_fraction", fraction}};
    if (volume_index >= 0) line["volume"] = volume_index;
    if (!out_dir.empty()) line["name"] = out_name;
    std::printf("%s\n", json_text(line).c_str());
    char row[128];
    std::snprintf(row, sizeof row, "%zu,%.6f,%s,%.6f\n", k, score, decision, fraction);
    csv += row;
  }
  std::fflush(stdout);
  if (out_dir.empty()) return;
  write_file_atomic((fs::path(out_dir) / (out_name + "_slices.csv")).string(), csv);
  data::write_nifti_mask_like((fs::path(out_dir) / (out_name + "_mask.nii.gz")).string(), mask, volume);
}

// NAME_mask.png (the lesion mask at the calibrated threshold), NAME_overlay.png and NAME_map.png
// (the anomaly map in [0, 1] as 16-bit grey) for one scored image [3, H, W].
void write_image_outputs(const std::string& out_dir, const std::string& name, const torch::Tensor& image,
                         const torch::Tensor& map, const torch::Tensor& lesion) {
  const cv::Mat mask = eval::to_mat_u8(lesion.to(torch::kFloat32));
  write_png((fs::path(out_dir) / (name + "_mask.png")).string(), mask);
  write_png((fs::path(out_dir) / (name + "_overlay.png")).string(), eval::anomaly_overlay(image, map, mask));
  write_png((fs::path(out_dir) / (name + "_map.png")).string(), eval::to_mat_u16(map));
}

// A multi-frame DICOM file (cine, enhanced CT/MR) is scored frame by frame: one JSON line per
// frame; with --out, NAME_frames.csv and each frame's images as NAME_frameK_*.png, and with
// `dicom_seg` NAME_seg.dcm. Returns 1 if that segmentation could not be written (said on stderr).
int predict_frames_file(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                        const model::Calibration& calibration, const std::string& path, int64_t batch,
                        const std::string& out_dir, const std::string& out_name, bool dicom_seg) {
  const auto frames = data::read_dicom_frames(path);
  std::vector<data::SegmentationFrame> masks;  // for dicom_seg
  const int digits = static_cast<int>(std::to_string(frames.size() - 1).size());
  std::string csv = "frame,score,decision,lesion_fraction\n";
  for (size_t start = 0; start < frames.size(); start += static_cast<size_t>(batch)) {
    std::vector<torch::Tensor> images;
    for (size_t k = start; k < std::min(frames.size(), start + static_cast<size_t>(batch)); ++k)
      images.push_back(image_to_rgb(frames[k], path));
    const auto results = eval::predict_images(model, preprocess, images, batch);
    for (size_t i = 0; i < results.size(); ++i) {
      const size_t k = start + i;
      const auto lesion = results[i].map >= calibration.pixel_threshold;
      const double fraction = lesion.to(torch::kFloat64).mean().item<double>();
      const char* decision = results[i].score >= calibration.image_threshold ? "abnormal" : "normal";
      nlohmann::json line = {{"path", path}, {"frame", k}, {"score", results[i].score}, {"decision", decision},
                             {"threshold", calibration.image_threshold}, {"lesion_fraction", fraction}};
      if (!out_dir.empty()) line["name"] = out_name;
      std::printf("%s\n", json_text(line).c_str());
      char row[128];
      std::snprintf(row, sizeof row, "%zu,%.6f,%s,%.6f\n", k, results[i].score, decision, fraction);
      csv += row;
      if (out_dir.empty()) continue;
      std::string number = std::to_string(k);
      number.insert(0, static_cast<size_t>(digits) - number.size(), '0');
      write_image_outputs(out_dir, out_name + "_frame" + number, images[i], results[i].map, lesion);
      if (dicom_seg) masks.push_back({path, lesion, static_cast<int64_t>(k + 1)});
    }
    std::fflush(stdout);
  }
  if (out_dir.empty()) return 0;
  write_file_atomic((fs::path(out_dir) / (out_name + "_frames.csv")).string(), csv);
  if (!dicom_seg) return 0;
  try {
    data::write_dicom_segmentation((fs::path(out_dir) / (out_name + "_seg.dcm")).string(), masks,
                                   "MedSAD-CLIP lesion mask");
  } catch (const Error& e) {
    std::fprintf(stderr, "medsad: error: %s\n", e.what());
    return 1;
  }
  return 0;
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
    int64_t volume_index = -1;  // -1: NIfTI inputs must hold one volume
    bool dicom_seg = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("predict", "score single images with a trained model");
  cmd->add_option("--model", o->model, "trained checkpoint (best.ckpt)")->required();
  cmd->add_option("images", o->images,
                  "image files (PNG, JPEG, TIFF, BMP, DICOM), NIfTI volumes (.nii, .nii.gz, .hdr/.img), or folders: "
                  "a DICOM series, else the folder's images and volumes")
      ->required();
  auto* out = cmd->add_option("--out", o->out,
                  "folder for NAME_mask.png, NAME_overlay.png and NAME_map.png (the anomaly map in [0, 1] as 16-bit "
                  "grey) (volumes: NAME_slices.csv, NAME_mask.nii.gz; multi-frame DICOM: NAME_frames.csv, "
                  "NAME_frameK_*.png); NAME is the file's stem, or its path with / as __ where two inputs share a stem");
  cmd->add_option("--axis", o->axis, "volumes: slice along axial (default), coronal or sagittal")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--volume-index", o->volume_index,
                  "volumes: of a 4-D NIfTI file (a time series, or contrasts stacked), score volume K (0-based); "
                  "outputs are named NAME_volK_*")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  cmd->add_flag("--dicom-seg", o->dicom_seg,
               "with --out: also each DICOM image's lesion mask as a DICOM Segmentation referencing it (NAME_seg.dcm; "
               "a series folder's in one file, NAME the folder's name)")
      ->needs(out);
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
      int64_t failed = 0, unlisted = 0, unwritten = 0;  // unlisted: bad folders and files left out of them
      std::vector<std::string> inputs;  // files, folders expanded
      // A bad input prints its line and the run goes on; a lone input's line is the run's error.
      std::string lone_error;
      const auto report = [&](const Error& e) {
        ++failed;
        if (o->images.size() == 1 && inputs.size() <= 1)
          lone_error = e.what();
        else
          std::fprintf(stderr, "medsad: error: %s\n", e.what());
      };
      eval::SeriesMasks series_masks;
      for (const auto& path : o->images) {
        std::error_code ec;
        if (!fs::is_directory(path, ec)) {
          inputs.push_back(path);
          continue;
        }
        try {
          auto folder = data::folder_inputs(path);
          if (folder.is_series && !o->out.empty()) series_masks.add_folder(path, folder.files, inputs.size());
          for (auto& file : folder.files) inputs.push_back(std::move(file));
          for (const auto& e : folder.unreadable) report(e), ++unlisted;  // files of the folder left out
          if (!folder.set_aside.empty())  // never scored silently in place of, or beside, the series
            spdlog::warn("{}: scored as a DICOM series, without the {} other image or volume file(s) in it "
                         "(the first: {}); give those as arguments to score them",
                         path, folder.set_aside.size(), fs::path(folder.set_aside.front()).filename().string());
        } catch (const Error& e) {
          report(e);
          ++unlisted;
        }
      }
      if (o->volume_index >= 0 && std::none_of(inputs.begin(), inputs.end(), data::is_nifti_path))
        fail("", "--volume-index picks a volume of a 4-D NIfTI file, and no input is a NIfTI file");
      const auto names = data::output_names(inputs);
      if (!o->out.empty()) data::check_outputs_spare_inputs(o->out, inputs, names);
      auto trained = model::load_trained_model(o->model, o->weights, o->bpe, compute.precision, compute.device);
      const auto& calibration = trained.info.calibration;
      std::vector<std::string> image_paths, image_names;
      std::vector<size_t> image_inputs;  // each image's index in inputs
      for (size_t i = 0; i < inputs.size(); ++i) {
        try {
          if (data::is_nifti_path(inputs[i])) {
            predict_volume_file(*trained.model, trained.preprocess, calibration, inputs[i],
                                data::parse_slice_axis(o->axis), o->volume_index, o->batch, o->out, names[i]);
          } else if (data::is_multiframe_dicom(inputs[i])) {
            unwritten += predict_frames_file(*trained.model, trained.preprocess, calibration, inputs[i], o->batch,
                                             o->out, names[i], o->dicom_seg);
          } else {
            image_paths.push_back(inputs[i]);
            image_names.push_back(names[i]);
            image_inputs.push_back(i);
          }
        } catch (const Error& e) {
          report(e);
        }
      }
      struct Batch {
        std::vector<size_t> indices;  // into image_paths, of the readable images
        std::vector<Error> errors;
        std::vector<torch::Tensor> images;
      };
      const auto step = static_cast<size_t>(o->batch);
      auto read_from = [&](size_t start) {
        return std::async(std::launch::async, [&image_paths, start, step] {
          Batch b;
          for (size_t i = start; i < std::min(image_paths.size(), start + step); ++i) {
            try {
              b.images.push_back(read_image_rgb(image_paths[i]));
              b.indices.push_back(i);
            } catch (const Error& e) {
              b.errors.push_back(e);
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
        for (const auto& error : batch.errors) report(error);
        const auto& images = batch.images;
        const auto results = eval::predict_images(*trained.model, trained.preprocess, images, o->batch);
        for (size_t i = 0; i < results.size(); ++i) {
          const size_t k = batch.indices[i];
          const auto lesion = results[i].map >= calibration.pixel_threshold;
          nlohmann::json line = {{"path", image_paths[k]},
                                 {"score", results[i].score},
                                 {"decision", results[i].score >= calibration.image_threshold ? "abnormal" : "normal"},
                                 {"threshold", calibration.image_threshold},
                                 {"lesion_fraction", lesion.to(torch::kFloat64).mean().item<double>()}};
          if (!o->out.empty()) line["name"] = image_names[k];
          std::printf("%s\n", json_text(line).c_str());
          if (o->out.empty()) continue;
          write_image_outputs(o->out, image_names[k], images[i], results[i].map, lesion);
          series_masks.keep(image_inputs[k], lesion);
          if (o->dicom_seg && !series_masks.holds(image_inputs[k]) && data::is_dicom_file(image_paths[k])) {
            try {
              data::write_dicom_segmentation((fs::path(o->out) / (image_names[k] + "_seg.dcm")).string(),
                                             {{image_paths[k], lesion}}, "MedSAD-CLIP lesion mask");
            } catch (const Error& e) {
              std::fprintf(stderr, "medsad: error: %s\n", e.what());
              ++unwritten;
            }
          }
        }
        std::fflush(stdout);
      }
      if (!o->out.empty()) unwritten += series_masks.write(o->out, o->dicom_seg);
      if (!lone_error.empty()) fail("", lone_error);
      if (failed)
        fail("", std::to_string(failed) + " of " +
                     std::to_string(static_cast<int64_t>(inputs.size()) + unlisted) + " inputs could not be read");
      if (unwritten) fail("", std::to_string(unwritten) + " DICOM Segmentation(s) could not be written");
    };
  });
}

}  // namespace medsad::cli
