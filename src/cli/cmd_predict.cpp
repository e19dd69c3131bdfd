// `medsad predict`: score images one by one with no dataset around them. One JSON line per
// image; with --out, the binary lesion mask and a heat-map overlay at the image's own size.
// A NIfTI volume (.nii, .nii.gz, a .hdr/.img pair) is scored slice by slice along --axis: one
// JSON line per slice; with --out, NAME_slices.csv and NAME_mask.nii.gz on the volume's own grid.
// A multi-frame DICOM file is scored frame by frame: one JSON line per frame; with --out,
// NAME_frames.csv and each frame's images as NAME_frameK_*.png.
// A folder is its DICOM series (slices in position order; with --out, also the series' masks as
// one NIfTI volume on its grid) or, holding no DICOM file, its images and NIfTI volumes in name
// order. A bad input prints one error line and the run goes on; the
// exit code is 1 if any failed.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/runtime.h"
#include "core/file_io.h"
#include "core/text.h"
#include "data/dataset.h"
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

// A NIfTI-1 volume's extension, any case: .nii or .nii.gz, or either half of a .hdr/.img pair
// (gzipped or not); "" for any other file.
std::string volume_extension(const std::string& path) {
  const std::string name = ascii_lower(fs::path(path).filename().string());
  for (const char* ext : {".nii.gz", ".nii", ".hdr.gz", ".hdr", ".img.gz", ".img"})
    if (ends_with(name, ext) && name.size() > std::strlen(ext)) return ext;
  return "";
}

bool is_nifti_path(const std::string& path) { return !volume_extension(path).empty(); }

// A DICOM file of several frames; false for anything else, unreadable files included (the image
// reader reports those).
bool is_multiframe_dicom(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec) || !data::is_dicom_file(path)) return false;
  try {
    return data::dicom_frame_count(path) > 1;
  } catch (const Error&) {
    return false;
  }
}

// The file name without its volume extension.
std::string volume_stem(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return name.substr(0, name.size() - volume_extension(path).size());
}

// The files a folder argument stands for: its DICOM series in slice order if it holds a DICOM
// file, else its images (as the dataset layouts count them) and NIfTI volumes in name order.
std::vector<std::string> folder_inputs(const std::string& dir, bool* is_series) {
  std::vector<std::string> volumes;
  bool dicom = false;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name.empty() || name[0] == '.' || !it->is_regular_file(type_ec)) continue;
    const std::string ext = volume_extension(name);
    if (ext == ".img" || ext == ".img.gz") continue;  // the pair's .hdr stands for it
    if (!ext.empty()) volumes.push_back(it->path().string());
    else if (data::is_dicom_file(it->path().string())) dicom = true;
  }
  if (ec) fail(dir, "cannot list the folder: " + ec.message());
  *is_series = dicom;
  if (dicom) return data::sorted_dicom_series(dir);
  auto files = data::image_files_in(dir);
  files.insert(files.end(), volumes.begin(), volumes.end());
  std::sort(files.begin(), files.end());
  if (files.empty()) fail(dir, "no DICOM series, image or NIfTI volume in this folder");
  return files;
}

// The NAME of each input's files under --out: its file name without the extension (.nii.gz
// whole), or, where inputs share one, the path as given with "/" written "__" and the
// extension's "." as "_" (scans/a/x.png -> scans__a__x_png), so that no input's files
// overwrite another's. Inputs still alike after that (the same file twice) get _2, _3...
std::vector<std::string> output_names(const std::vector<std::string>& paths) {
  std::vector<std::string> stems, names;
  std::map<std::string, int> stem_count;
  for (const auto& path : paths) {
    stems.push_back(is_nifti_path(path) ? volume_stem(path) : fs::path(path).stem().string());
    ++stem_count[stems.back()];
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    if (stem_count[stems[i]] == 1) {
      names.push_back(stems[i]);
      continue;
    }
    std::string name;
    for (const auto& part : fs::path(paths[i]).relative_path()) {
      const std::string text = part.string();
      if (text.empty() || text == "." || text == "..") continue;
      name += (name.empty() ? "" : "__") + text;
    }
    for (char& c : name)
      if (c == '.') c = '_';
    names.push_back(name);
  }
  std::set<std::string> taken;
  for (auto& name : names) {
    const std::string base = name;
    for (int n = 2; taken.count(name); ++n) name = base + "_" + std::to_string(n);
    taken.insert(name);
  }
  return names;
}

void predict_volume_file(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                         const model::Calibration& calibration, const std::string& path, eval::SliceAxis axis,
                         int64_t batch, const std::string& out_dir, const std::string& out_name) {
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
    nlohmann::json line = {{"path", path}, {"axis", eval::to_string(axis)}, {"slice", k}, {"score", score},
                           {"decision", decision}, {"threshold", calibration.image_threshold},
                           {"lesion_fraction", fraction}};
    if (!out_dir.empty()) line["name"] = out_name;
    std::printf("%s\n", line.dump().c_str());
    char row[128];
    std::snprintf(row, sizeof row, "%zu,%.6f,%s,%.6f\n", k, score, decision, fraction);
    csv += row;
  }
  std::fflush(stdout);
  if (out_dir.empty()) return;
  write_file_atomic((fs::path(out_dir) / (out_name + "_slices.csv")).string(), csv);
  data::write_nifti_mask_like((fs::path(out_dir) / (out_name + "_mask.nii.gz")).string(), mask, volume);
}

// The slices of a DICOM series folder given to predict, kept to write the series' lesion mask as
// one NIfTI volume on the series' own grid (NAME_mask.nii.gz, NAME the folder's name), as a
// NIfTI input gets: a viewer then overlays it on the series.
class SeriesMasks {
 public:
  // Records the series among `files` (a series folder's listing, each series together, in
  // position order), the inputs from index `first_input` on. A lone file is no series.
  void add_folder(const std::string& dir, const std::vector<std::string>& files, size_t first_input) {
    std::vector<Stack> found;
    for (size_t i = 0; i < files.size(); ++i) {
      std::optional<data::DicomSliceGeometry> geometry;
      try {
        geometry = data::read_dicom_slice_geometry(files[i]);
      } catch (const Error&) {  // reported when the slice itself is read
      }
      const std::string series = geometry ? geometry->series : "";
      if (found.empty() || found.back().series != series || !geometry != !found.back().why.empty())
        found.push_back({dir, "", series, first_input + i, {}, {}, geometry ? "" : "no position, orientation or "
                                                                                    "pixel spacing in its headers"});
      if (geometry) found.back().slices.push_back(*geometry);
      found.back().masks.emplace_back();
    }
    std::string name = fs::path(dir).lexically_normal().filename().string();
    if (name.empty() || name == "." || name == "..") name = "series";
    for (size_t s = 0; s < found.size(); ++s) {
      if (found[s].masks.size() < 2) continue;
      found[s].name = found.size() > 1 ? name + "_series" + std::to_string(s + 1) : name;
      stacks_.push_back(std::move(found[s]));
    }
  }

  // Keeps the mask [H, W] of input `input` if it is a slice of a recorded series.
  void keep(size_t input, const torch::Tensor& mask) {
    for (auto& stack : stacks_)
      if (input >= stack.first && input < stack.first + stack.masks.size())
        stack.masks[input - stack.first] = mask.to(torch::kUInt8);
  }

  // Writes each series whose every slice was scored; says on stderr why any other has no volume.
  void write(const std::string& out_dir) const {
    for (const auto& stack : stacks_) {
      std::string why = stack.why;
      std::optional<std::array<double, 16>> affine;
      if (why.empty()) affine = data::dicom_stack_affine(stack.slices, &why);
      const bool all_scored =
          std::all_of(stack.masks.begin(), stack.masks.end(), [](const auto& m) { return m.defined(); });
      if (affine && !all_scored) why = "not every slice could be scored";
      if (!why.empty() || !affine) {
        std::fprintf(stderr, "medsad: note: %s: no %s_mask.nii.gz for this series (%s)\n", stack.dir.c_str(),
                     stack.name.c_str(), why.c_str());
        continue;
      }
      data::write_nifti_mask_with_affine((fs::path(out_dir) / (stack.name + "_mask.nii.gz")).string(),
                                         torch::stack(stack.masks), *affine);  // [slices, rows, columns]
    }
  }

 private:
  struct Stack {
    std::string dir, name, series;
    size_t first = 0;                               // input index of the first slice
    std::vector<data::DicomSliceGeometry> slices;
    std::vector<torch::Tensor> masks;               // uint8 [rows, columns] per slice, once scored
    std::string why;                                // why no volume can be written, if known already
  };
  std::vector<Stack> stacks_;
};

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
// frame; with --out, NAME_frames.csv and each frame's images as NAME_frameK_*.png.
void predict_frames_file(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                         const model::Calibration& calibration, const std::string& path, int64_t batch,
                         const std::string& out_dir, const std::string& out_name) {
  const auto frames = data::read_dicom_frames(path);
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
      std::printf("%s\n", line.dump().c_str());
      char row[128];
      std::snprintf(row, sizeof row, "%zu,%.6f,%s,%.6f\n", k, results[i].score, decision, fraction);
      csv += row;
      if (out_dir.empty()) continue;
      std::string number = std::to_string(k);
      number.insert(0, static_cast<size_t>(digits) - number.size(), '0');
      write_image_outputs(out_dir, out_name + "_frame" + number, images[i], results[i].map, lesion);
    }
    std::fflush(stdout);
  }
  if (!out_dir.empty()) write_file_atomic((fs::path(out_dir) / (out_name + "_frames.csv")).string(), csv);
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
  cmd->add_option("images", o->images,
                  "image files (PNG, JPEG, TIFF, BMP, DICOM), NIfTI volumes (.nii, .nii.gz, .hdr/.img), or folders: "
                  "a DICOM series, else the folder's images and volumes")
      ->required();
  cmd->add_option("--out", o->out,
                  "folder for NAME_mask.png, NAME_overlay.png and NAME_map.png (the anomaly map in [0, 1] as 16-bit "
                  "grey) (volumes: NAME_slices.csv, NAME_mask.nii.gz; multi-frame DICOM: NAME_frames.csv, "
                  "NAME_frameK_*.png); NAME is the file's stem, or its path with / as __ where two inputs share a stem");
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
      int64_t failed = 0, unlisted_folders = 0;
      std::vector<std::string> inputs;  // files, folders expanded
      SeriesMasks series_masks;
      for (const auto& path : o->images) {
        std::error_code ec;
        if (!fs::is_directory(path, ec)) {
          inputs.push_back(path);
          continue;
        }
        try {
          bool is_series = false;
          auto files = folder_inputs(path, &is_series);
          if (is_series && !o->out.empty()) series_masks.add_folder(path, files, inputs.size());
          for (auto& file : files) inputs.push_back(std::move(file));
        } catch (const Error& e) {
          std::fprintf(stderr, "medsad: error: %s\n", e.what());
          ++failed, ++unlisted_folders;
        }
      }
      const auto names = output_names(inputs);
      std::vector<std::string> image_paths, image_names;
      std::vector<size_t> image_inputs;  // each image's index in inputs
      for (size_t i = 0; i < inputs.size(); ++i) {
        try {
          if (is_nifti_path(inputs[i])) {
            predict_volume_file(*trained.model, trained.preprocess, calibration, inputs[i],
                                eval::parse_slice_axis(o->axis), o->batch, o->out, names[i]);
          } else if (is_multiframe_dicom(inputs[i])) {
            predict_frames_file(*trained.model, trained.preprocess, calibration, inputs[i], o->batch, o->out, names[i]);
          } else {
            image_paths.push_back(inputs[i]);
            image_names.push_back(names[i]);
            image_inputs.push_back(i);
          }
        } catch (const Error& e) {
          std::fprintf(stderr, "medsad: error: %s\n", e.what());
          ++failed;
        }
      }
      struct Batch {
        std::vector<size_t> indices;  // into image_paths, of the readable images
        std::vector<std::string> errors;
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
          std::printf("%s\n", line.dump().c_str());
          if (o->out.empty()) continue;
          write_image_outputs(o->out, image_names[k], images[i], results[i].map, lesion);
          series_masks.keep(image_inputs[k], lesion);
        }
        std::fflush(stdout);
      }
      if (!o->out.empty()) series_masks.write(o->out);
      if (failed)
        fail("", std::to_string(failed) + " of " +
                     std::to_string(static_cast<int64_t>(inputs.size()) + unlisted_folders) + " inputs could not be read");
    };
  });
}

}  // namespace medsad::cli
