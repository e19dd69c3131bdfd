#include "data/volume_dataset.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/random.h"
#include "core/text.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/predict_inputs.h"

namespace medsad::data {
namespace fs = std::filesystem;
namespace {

constexpr const char* kStagingName = ".slices-partial";
constexpr Split kSplits[3] = {Split::Train, Split::Valid, Split::Test};

// An image volume's file: a single-file NIfTI or the header of a pair (its .img is the same case).
bool is_volume_file(const std::string& name) {
  const std::string lower = ascii_lower(name);
  for (const char* ext : {".nii", ".nii.gz", ".hdr", ".hdr.gz"})
    if (ends_with(lower, ext) && lower.size() > std::string(ext).size()) return true;
  return false;
}

// [H, W] float in [0, 1] -> 8-bit grey.
cv::Mat to_grey8(const torch::Tensor& plane) {
  const auto bytes = plane.mul(255.0).round().clamp(0, 255).to(torch::kUInt8).contiguous();
  return cv::Mat(static_cast<int>(bytes.size(0)), static_cast<int>(bytes.size(1)), CV_8U, bytes.data_ptr()).clone();
}

// How many cases each split gets: a split with a share above 0 gets at least one; train takes
// the rest and must keep one.
std::array<int64_t, 3> split_counts(const std::array<double, 3>& shares, int64_t n) {
  std::array<int64_t, 3> counts{};
  for (size_t s : {size_t(1), size_t(2)})
    counts[s] = shares[s] > 0 ? std::max<int64_t>(1, std::llround(shares[s] * static_cast<double>(n))) : 0;
  counts[0] = n - counts[1] - counts[2];
  if (counts[0] < 1)
    fail("", std::to_string(n) + " case(s) cannot fill the training split and " + std::to_string(counts[1]) +
                 " validation and " + std::to_string(counts[2]) +
                 " test case(s): give more cases or other --split shares");
  return counts;
}

}  // namespace

void VolumeSliceOptions::validate() const {
  if (images_dir.empty()) fail("", "no --images folder given");
  if (out_dir.empty()) fail("", "no --out folder given");
  if (labels_dir.empty() && (image_suffix.empty() || label_suffix.empty()))
    fail("", "without --labels, give --image-suffix and --label-suffix (e.g. _flair.nii.gz and _seg.nii.gz)");
  if (!image_suffix.empty() && image_suffix == label_suffix)
    fail("", "--image-suffix and --label-suffix are the same ('" + image_suffix + "')");
  double total = 0;
  for (double share : split) {
    check_range("split share", share, 0, 1);
    total += share;
  }
  if (std::abs(total - 1) > 1e-6) fail("", "--split shares must add up to 1, not " + std::to_string(total));
  if (split[0] <= 0) fail("", "--split must give the training split a share above 0");
  check_range("min_tissue", min_tissue, 0, 1);
  check_range("min_lesion_pixels", static_cast<double>(min_lesion_pixels), 1, 1e9);
}

std::vector<VolumeCase> find_volume_cases(const VolumeSliceOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(options.images_dir, ec))
    fail(options.images_dir, fs::exists(options.images_dir, ec) ? "is not a folder (--images takes the folder of cases)"
                                                                : "no such folder");
  std::vector<VolumeCase> cases;
  std::map<std::string, std::string> seen;  // subject -> image
  for (fs::recursive_directory_iterator it(options.images_dir, ec), end; it != end && !ec; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string path = it->path().string(), name = it->path().filename().string();
    if (!is_volume_file(name)) continue;
    if (!options.image_suffix.empty() && !ends_with(name, options.image_suffix)) continue;
    if (!options.label_suffix.empty() && ends_with(name, options.label_suffix)) continue;  // a label beside
    VolumeCase c;
    c.image = path;
    if (options.labels_dir.empty()) {
      c.subject = name.substr(0, name.size() - options.image_suffix.size());
      c.label = (it->path().parent_path() / (c.subject + options.label_suffix)).string();
    } else {
      c.subject = options.image_suffix.empty() ? volume_stem(path)
                                               : name.substr(0, name.size() - options.image_suffix.size());
      c.label = (fs::path(options.labels_dir) / fs::relative(it->path(), options.images_dir)).string();
    }
    if (!fs::exists(c.label, ec)) fail(c.image, "no label volume " + c.label + " for it");
    const auto [at, added] = seen.emplace(c.subject, c.image);
    if (!added) fail(c.image, "the same subject name '" + c.subject + "' as " + at->second);
    cases.push_back(std::move(c));
  }
  if (ec) fail(options.images_dir, "cannot be listed: " + ec.message());
  if (cases.empty())
    fail(options.images_dir, "holds no image volume" +
                                 (options.image_suffix.empty() ? std::string() : " ending in " + options.image_suffix));
  std::sort(cases.begin(), cases.end(), [](const auto& a, const auto& b) { return a.subject < b.subject; });
  return cases;
}

VolumeSliceSummary write_volume_slices(const VolumeSliceOptions& options,
                                       const std::function<void(size_t, size_t)>& progress) {
  options.validate();
  const auto cases = find_volume_cases(options);
  const fs::path root(options.out_dir);
  std::error_code ec;
  if (fs::exists(root, ec) && (!fs::is_directory(root, ec) || !fs::is_empty(root, ec)))
    fail(root.string(), "exists and is not an empty folder: give a new or empty one");

  // Cases to splits: a seeded shuffle of the sorted subjects (Fisher-Yates, so any platform agrees).
  const auto counts = split_counts(options.split, static_cast<int64_t>(cases.size()));
  std::vector<size_t> order(cases.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(mix_seed(options.seed, 0));
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(rng() % i)]);
  std::vector<Split> split_of(cases.size());
  for (size_t i = 0; i < order.size(); ++i)
    split_of[order[i]] = static_cast<int64_t>(i) < counts[0] ? Split::Train
                         : static_cast<int64_t>(i) < counts[0] + counts[1] ? Split::Valid
                                                                            : Split::Test;

  // The folder is new or empty: a run that fails leaves it as it was (or not there at all).
  const bool created_root = !fs::exists(root, ec);
  const fs::path staging = root / kStagingName;
  const auto undo = [&] {
    for (Split split : kSplits) fs::remove_all(root / to_string(split), ec);
    fs::remove_all(staging, ec);
    if (created_root) fs::remove(root, ec);
  };
  for (Split split : kSplits)
    for (const char* sub : {"good/img", "Ungood/img", "Ungood/anomaly_mask"}) {
      fs::create_directories(staging / to_string(split) / sub, ec);
      if (ec) {
        const std::string problem = "cannot create the folder: " + ec.message();
        undo();
        fail(root.string(), problem);
      }
    }

  VolumeSliceSummary summary;
  nlohmann::json records = nlohmann::json::array();
  const int64_t d = axis_dim(options.axis);
  try {
    for (size_t c = 0; c < cases.size(); ++c) {
      const auto& vc = cases[c];
      const Volume volume = read_nifti_volume(vc.image, options.volume_index);
      Volume label;
      label.voxels = read_nifti_labels(vc.label, volume, vc.image).to(torch::kFloat32);
      label.spacing_mm = volume.spacing_mm;
      IntensityWindow window;
      try {
        window = volume_window(volume);
      } catch (const Error& e) {
        fail(vc.image, e.problem());
      }
      // Per slice along the axis: tissue (finite non-zero voxels) and lesion voxels.
      const auto tissue = (torch::isfinite(volume.voxels) & (volume.voxels != 0)).to(torch::kInt64);
      std::vector<int64_t> reduce_dims;
      for (int64_t k = 0; k < 3; ++k)
        if (k != d) reduce_dims.push_back(k);
      const auto tissue_area = tissue.sum(reduce_dims);
      const auto lesion_area = (label.voxels > 0.5).to(torch::kInt64).sum(reduce_dims);
      const int64_t largest = tissue_area.max().item<int64_t>();
      const int s = static_cast<int>(split_of[c]);
      int64_t kept[2] = {0, 0}, ambiguous = 0;
      for (int64_t k = 0; k < volume.voxels.size(d); ++k) {
        if (static_cast<double>(tissue_area[k].item<int64_t>()) < options.min_tissue * static_cast<double>(largest) ||
            tissue_area[k].item<int64_t>() == 0)
          continue;
        const int64_t lesion = lesion_area[k].item<int64_t>();
        if (lesion > 0 && lesion < options.min_lesion_pixels) {
          ++ambiguous;
          continue;
        }
        const bool abnormal = lesion > 0;
        char name[64];
        std::snprintf(name, sizeof name, "_s%03lld.png", static_cast<long long>(k));
        const fs::path dir = staging / to_string(split_of[c]) / (abnormal ? "Ungood" : "good");
        const auto image = volume_slice_image(volume, options.axis, k, window.lo, window.hi);  // [3, H, W]
        write_png((dir / "img" / (vc.subject + name)).string(), to_grey8(image[0]));
        if (abnormal) {
          // The label through the same resampling and flips, cut at half.
          const auto mask = volume_slice_image(label, options.axis, k, 0.0f, 1.0f)[0].ge(0.5).to(torch::kFloat32);
          write_png((dir / "anomaly_mask" / (vc.subject + name)).string(), to_grey8(mask));
        }
        ++kept[abnormal ? 1 : 0];
      }
      ++summary.cases[s];
      summary.images[s][0] += kept[0];
      summary.images[s][1] += kept[1];
      records.push_back({{"subject", vc.subject}, {"image", vc.image}, {"label", vc.label},
                         {"split", to_string(split_of[c])}, {"normal_slices", kept[0]},
                         {"abnormal_slices", kept[1]}, {"ambiguous_slices_left_out", ambiguous},
                         {"window", {window.lo, window.hi}}});
      if (progress) progress(c + 1, cases.size());
    }
    for (Split split : kSplits) {
      fs::rename(staging / to_string(split), root / to_string(split), ec);
      if (ec) fail((root / to_string(split)).string(), "cannot move the split into place: " + ec.message());
    }
    const nlohmann::json record = {
        {"generator", "medsad slices"},
        {"options",
         {{"images", options.images_dir}, {"labels", options.labels_dir}, {"image_suffix", options.image_suffix},
          {"label_suffix", options.label_suffix}, {"volume_index", options.volume_index},
          {"axis", to_string(options.axis)}, {"split", options.split}, {"seed", options.seed},
          {"min_tissue", options.min_tissue}, {"min_lesion_pixels", options.min_lesion_pixels}}},
        {"cases", records}};
    write_file_atomic((root / "slices.json").string(), json_text(record, 1) + "\n");
  } catch (...) {
    undo();
    throw;
  }
  fs::remove_all(staging, ec);
  return summary;
}

}  // namespace medsad::data
