#include "data/synth_benchmark.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "core/random.h"
#include "core/text.h"
#include "data/image_io.h"

namespace fs = std::filesystem;

namespace medsad::data {
namespace {

constexpr Split kSplits[3] = {Split::Train, Split::Valid, Split::Test};
constexpr double kSplitShares[3] = {0.65, 0.12, 0.23};  // of each volume's blocks
constexpr LesionKind kKinds[3] = {LesionKind::Tumour, LesionKind::WhiteMatter, LesionKind::Haemorrhage};
constexpr float kBrainTop = 0.8f;  // the brain's 99th intensity percentile maps here
constexpr size_t kMontageColumns = 6;  // two of each lesion kind
constexpr uint64_t kBlockStreams = uint64_t(1) << 63;  // generator streams of the block draws, above any image's

using SlicePools = std::array<std::vector<SynthSlice>, 3>;  // usable slices of train, valid, test

// What one output image is; planned before generation so that images can be made in parallel.
struct ImagePlan {
  Split split = Split::Train;
  std::string image;  // paths relative to the benchmark root
  std::string mask;   // "" for a normal image
  bool abnormal = false;
  LesionKind kind = LesionKind::Tumour;  // abnormal only
  int64_t volume = 0;  // source, filled by the generation
  int64_t slice = 0;
};

// The part of `image` inside the square `box` (which may stick out of it), zero-padded.
cv::Mat crop_padded(const cv::Mat& image, const cv::Rect& box) {
  cv::Mat out = cv::Mat::zeros(box.size(), image.type());
  const cv::Rect inside = box & cv::Rect(0, 0, image.cols, image.rows);
  image(inside).copyTo(out(inside - box.tl()));
  return out;
}

// SPLIT/good or SPLIT/Ungood, below the benchmark root.
fs::path class_dir(Split split, bool abnormal) { return fs::path(to_string(split)) / (abnormal ? "Ungood" : "good"); }

// The first kMontageColumns normal images on the top row, the first abnormal ones below, then
// the same abnormal ones with the lesion outlined in red, each at its own size.
void write_montage(const std::string& path, const fs::path& root, const std::vector<ImagePlan>& plans) {
  std::vector<const ImagePlan*> shown[2];  // normal, abnormal
  for (const auto& plan : plans)
    if (shown[plan.abnormal].size() < kMontageColumns) shown[plan.abnormal].push_back(&plan);
  const int cell = decode_image_file((root / plans.front().image).string(), "image").cols, pad = 4;
  const int columns = static_cast<int>(std::max(shown[0].size(), shown[1].size()));
  cv::Mat canvas(3 * cell + 4 * pad, columns * cell + (columns + 1) * pad, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto place = [&](const ImagePlan& plan, bool outline, int row, int column) {
    cv::Mat colour;
    cv::cvtColor(decode_image_file((root / plan.image).string(), "image"), colour, cv::COLOR_GRAY2BGR);
    if (outline) {
      std::vector<std::vector<cv::Point>> contours;
      cv::findContours(decode_image_file((root / plan.mask).string(), "mask"), contours, cv::RETR_EXTERNAL,
                       cv::CHAIN_APPROX_NONE);
      cv::drawContours(colour, contours, -1, cv::Scalar(0, 0, 255), 1);
    }
    colour.copyTo(canvas(cv::Rect(pad + column * (cell + pad), pad + row * (cell + pad), cell, cell)));
  };
  for (size_t i = 0; i < shown[0].size(); ++i) place(*shown[0][i], false, 0, static_cast<int>(i));
  for (size_t i = 0; i < shown[1].size(); ++i) {
    place(*shown[1][i], false, 1, static_cast<int>(i));
    place(*shown[1][i], true, 2, static_cast<int>(i));
  }
  if (fs::path(path).has_parent_path()) make_folders(fs::path(path).parent_path().string());
  write_png(path, canvas, 9);
}

// A run writes into this folder inside DIR and moves its splits into DIR only once every file
// is written, so a run that fails or is interrupted leaves a previous benchmark as it was.
constexpr const char* kStagingName = ".synth-partial";

// Accepts a new, empty or previous-benchmark folder (ignoring a staging folder an interrupted run
// left, which it removes); refuses any other non-empty folder. Deletes nothing else.
void check_out_dir(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) return;
  if (!fs::is_directory(root, ec)) fail(root.string(), "exists and is not a folder");
  if (fs::remove_all(root / kStagingName, ec) == static_cast<std::uintmax_t>(-1))
    fail((root / kStagingName).string(), "cannot remove an interrupted run's files: " + ec.message());
  if (!fs::is_empty(root, ec) && !fs::exists(root / "synth.json", ec))
    fail(root.string(), "is not empty and holds no synth.json: give a new or empty folder");
}

// Replaces the previous benchmark's synth.json and splits by the staged splits. synth.json is
// removed first and written last (by the caller), so it marks a complete benchmark.
void move_staged_splits(const fs::path& root) {
  std::error_code ec;
  fs::remove(root / "synth.json", ec);
  for (Split split : kSplits) {
    const fs::path target = root / to_string(split), staged = root / kStagingName / to_string(split);
    if (fs::remove_all(target, ec) == static_cast<std::uintmax_t>(-1))
      fail(target.string(), "cannot remove the previous benchmark's split: " + ec.message());
    if (!fs::exists(staged, ec)) continue;
    fs::rename(staged, target, ec);
    if (ec) fail(target.string(), "cannot move the new split into place: " + ec.message());
  }
  fs::remove_all(root / kStagingName, ec);
}

// Reads each volume and its brain, prepares its slices, assigns its blocks and adds the slices
// to the pools of their splits. Returns the record of the sources for synth.json.
nlohmann::json load_volumes(const SynthOptions& options, SlicePools& pools, SynthSummary& summary) {
  nlohmann::json sources = nlohmann::json::array();
  for (size_t v = 0; v < options.volumes.size(); ++v) {
    const auto& source = options.volumes[v];
    const Volume volume = read_nifti_volume(source.image, source.volume_index);
    const auto brain =
        source.brain_mask.empty() ? volume.voxels > 0 : read_nifti_mask(source.brain_mask, volume, source.image);
    if (!brain.any().item<bool>()) {
      if (source.brain_mask.empty())
        fail(source.image, "holds no voxel above 0 (without a --brain-mask it must be a brain-extracted volume)");
      fail(source.brain_mask, "the brain mask is empty (no voxel above 0)");
    }
    auto slices = prepare_slices(volume, brain, static_cast<int64_t>(v), options, source.image);
    std::vector<int64_t> indices;
    for (const auto& slice : slices) indices.push_back(slice.index);
    const SliceBlocking blocking = slice_blocking(options, volume.spacing_mm[0]);
    nlohmann::json blocks = nlohmann::json::array();
    for (const auto& block : assign_blocks(indices, static_cast<int64_t>(v), blocking, options, source.image)) {
      blocks.push_back({{"first", block.first}, {"last", block.last}, {"split", to_string(block.split)}});
      for (auto& slice : slices)
        if (slice.index >= block.first && slice.index <= block.last) {
          ++summary.slices[static_cast<int>(block.split)];
          pools[static_cast<size_t>(block.split)].push_back(std::move(slice));
        }
    }
    sources.push_back({{"image", source.image},
                       {"image_sha256", sha256_file(source.image)},
                       {"volume_index", source.volume_index},
                       {"brain_mask", source.brain_mask},
                       {"brain_mask_sha256", source.brain_mask.empty() ? "" : sha256_file(source.brain_mask)},
                       {"shape_sar", volume.voxels.sizes().vec()},
                       {"spacing_mm_sar", volume.spacing_mm},
                       {"block_slices", blocking.block_slices},
                       {"gap_slices", blocking.gap_slices},
                       {"blocks", blocks}});
  }
  return sources;
}

// Every image's split, file names, label and lesion kind: the first round(fraction * count)
// images of a split are abnormal, their kinds cycling tumour, white matter, haemorrhage.
std::vector<ImagePlan> plan_images(const SynthOptions& options, SynthSummary& summary) {
  std::vector<ImagePlan> plans;
  const int64_t counts[3] = {options.train_count, options.valid_count, options.test_count};
  for (int s = 0; s < 3; ++s) {
    const int64_t abnormal = std::llround(options.abnormal_fraction * static_cast<double>(counts[s]));
    for (int64_t i = 0; i < counts[s]; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "%s_%06lld.png", to_string(kSplits[s]), static_cast<long long>(i));
      ImagePlan plan;
      plan.split = kSplits[s];
      plan.abnormal = i < abnormal;
      plan.kind = kKinds[i % 3];
      plan.image = (class_dir(plan.split, plan.abnormal) / "img" / name).string();
      if (plan.abnormal) plan.mask = (class_dir(plan.split, true) / "anomaly_mask" / name).string();
      ++summary.images[s][plan.abnormal ? 1 : 0];
      plans.push_back(std::move(plan));
    }
  }
  return plans;
}

}  // namespace

std::vector<SynthVolume> default_synth_volumes() {
  return {{"/usr/share/mricron/templates/ch2.nii.gz", "/usr/share/mricron/templates/ch2bet.nii.gz"}};
}

void SynthOptions::validate() const {
  if (out_dir.empty()) fail("", "no output folder given");
  if (volumes.empty()) fail("", "no volumes given");
  for (const auto& volume : volumes) {
    if (volume.image.empty()) fail("", "a volume has an empty path");
    if (volume.volume_index < -1) fail(volume.image, "volume index " + std::to_string(volume.volume_index) + " < 0");
  }
  check_range("image size", static_cast<double>(image_size), 32, 1024);
  check_range("train count", static_cast<double>(train_count), 1, 1e6);
  check_range("valid count", static_cast<double>(valid_count), 1, 1e6);
  check_range("test count", static_cast<double>(test_count), 1, 1e6);
  check_range("abnormal fraction", abnormal_fraction, 0, 1);
  check_range("min_brain_area", min_brain_area, 0.01, 1);
  check_range("crop_margin", crop_margin, 0, 0.5);
  check_range("block_mm", block_mm, 0.01, 1000);
  check_range("split_gap_mm", split_gap_mm, 0, 1000);
  difficulty.validate();
  variation.validate();
}

std::vector<SynthSlice> prepare_slices(const Volume& volume, const torch::Tensor& brain, int64_t volume_index,
                                       const SynthOptions& options, const std::string& path) {
  TORCH_CHECK(volume.voxels.dim() == 3 && brain.sizes() == volume.voxels.sizes() && brain.scalar_type() == torch::kBool,
              "prepare_slices expects float [S, A, R] voxels and a bool brain of the same shape");
  const auto voxels = volume.voxels.to(torch::kFloat32).contiguous();  // [S, A, R]
  const auto inside = brain.contiguous();                              // [S, A, R]
  const int64_t depth = voxels.size(0), rows = voxels.size(1), cols = voxels.size(2), plane = rows * cols;
  const float* voxel = voxels.data_ptr<float>();
  const bool* in_brain = inside.data_ptr<bool>();

  // Brain area per slice and the brain's finite intensities, in plain loops: whole-volume
  // tensor passes cost several times more here.
  std::vector<int64_t> areas(static_cast<size_t>(depth), 0);
  std::vector<float> values;
  for (int64_t k = 0; k < depth; ++k)
    for (int64_t p = k * plane; p < (k + 1) * plane; ++p)
      if (in_brain[p]) {
        ++areas[static_cast<size_t>(k)];
        if (std::isfinite(voxel[p])) values.push_back(voxel[p]);
      }
  if (values.empty()) fail(path, "the brain mask is empty");
  const auto quantile = [&](double q) {
    const auto at = values.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(values.size() - 1));
    std::nth_element(values.begin(), at, values.end());
    return *at;
  };
  const float lo = quantile(0.01), hi = quantile(0.99);
  if (!(hi > lo)) fail(path, "the brain has no intensity contrast (its 1st and 99th percentiles are equal)");
  const int64_t largest = *std::max_element(areas.begin(), areas.end());

  // In-plane pixels are made square (in mm) before cropping; sizes are rounded to whole pixels.
  const double pixel_mm = std::min(volume.spacing_mm[1], volume.spacing_mm[2]);
  const cv::Size square_pixels(static_cast<int>(std::lround(cols * volume.spacing_mm[2] / pixel_mm)),
                               static_cast<int>(std::lround(rows * volume.spacing_mm[1] / pixel_mm)));
  const cv::Size out_size(static_cast<int>(options.image_size), static_cast<int>(options.image_size));
  const cv::Size plane_size(static_cast<int>(cols), static_cast<int>(rows));

  std::vector<SynthSlice> slices;
  for (int64_t k = 0; k < depth; ++k) {
    const auto area = static_cast<double>(areas[static_cast<size_t>(k)]);
    if (area < options.min_brain_area * static_cast<double>(largest)) continue;
    // Anterior up and the subject's right on the left: both in-plane axes of [A, R] flipped.
    const cv::Mat voxel_plane(plane_size, CV_32F, const_cast<float*>(voxel + k * plane));  // [A, R] views
    const cv::Mat brain_plane(plane_size, CV_8U, const_cast<bool*>(in_brain + k * plane));
    cv::Mat image, mask;
    cv::flip(voxel_plane, image, -1);
    cv::flip(brain_plane, mask, -1);
    cv::patchNaNs(image, 0);
    image.convertTo(image, CV_32F, kBrainTop / (hi - lo), -lo * kBrainTop / (hi - lo));
    cv::max(image, 0.0, image);
    cv::min(image, 1.0, image);
    mask *= 255;
    if (image.size() != square_pixels) {
      cv::resize(image, image, square_pixels, 0, 0, cv::INTER_LINEAR);
      cv::resize(mask, mask, square_pixels, 0, 0, cv::INTER_NEAREST);
    }
    const cv::Rect box = cv::boundingRect(mask);
    const int side = static_cast<int>(std::lround(std::max(box.width, box.height) * (1 + 2 * options.crop_margin)));
    const cv::Rect square(box.x + box.width / 2 - side / 2, box.y + box.height / 2 - side / 2, side, side);
    SynthSlice slice{volume_index, k, {}};
    // Area averaging when shrinking (no aliasing), bicubic when enlarging a small top slice.
    cv::resize(crop_padded(image, square), slice.slice.image, out_size, 0, 0,
               side >= options.image_size ? cv::INTER_AREA : cv::INTER_CUBIC);
    cv::max(slice.slice.image, 0.0, slice.slice.image);
    cv::min(slice.slice.image, 1.0, slice.slice.image);
    cv::Mat brain_share;  // CV_8U: 255 x the share of brain under each output pixel
    cv::resize(crop_padded(mask, square), brain_share, out_size, 0, 0, cv::INTER_AREA);
    slice.slice.brain = brain_share >= 128;
    slices.push_back(std::move(slice));
  }
  return slices;
}

SliceBlocking slice_blocking(const SynthOptions& options, double slice_spacing_mm) {
  TORCH_CHECK(slice_spacing_mm > 0 && std::isfinite(slice_spacing_mm), "slice_blocking: spacing ", slice_spacing_mm);
  // A hair below each ratio, so that 8 mm at 1 mm is 8 slices, not 9 from rounding.
  const auto slices_for = [&](double mm) { return static_cast<int64_t>(std::ceil(mm / slice_spacing_mm - 1e-6)); };
  return {std::max<int64_t>(1, slices_for(options.block_mm)),
          std::max<int64_t>(0, slices_for(options.split_gap_mm) - 1)};
}

std::vector<SliceBlock> assign_blocks(const std::vector<int64_t>& slice_indices, int64_t volume_index,
                                      const SliceBlocking& blocking, const SynthOptions& options,
                                      const std::string& path) {
  std::vector<SliceBlock> blocks;
  const auto step = static_cast<size_t>(blocking.block_slices + blocking.gap_slices);
  for (size_t start = 0; start < slice_indices.size(); start += step) {
    const size_t end = std::min(slice_indices.size(), start + static_cast<size_t>(blocking.block_slices));
    blocks.push_back({slice_indices[start], slice_indices[end - 1], Split::Train});
  }
  const int64_t n = static_cast<int64_t>(blocks.size());
  if (n < 3)
    fail(path, "only " + std::to_string(slice_indices.size()) + " usable axial slices: too few for a block of " +
                   std::to_string(blocking.block_slices) + " (with " + std::to_string(blocking.gap_slices) +
                   " dropped between blocks) in each of train, valid and test");
  // Exact counts per split: at least one block each, two from 6 blocks on. Valid's and test's
  // blocks go to evenly spaced places with a seeded phase (so block j of a split with c blocks
  // lands near (j + phase) * n / c) and train takes the rest, so every split spans the head. A
  // taken place moves the block to the nearest free one on the side away from the middle, first
  // in the split's first half, so its first block stays in the lower half of the head and its
  // last in the upper half.
  const int64_t least = n >= 6 ? 2 : 1;
  int64_t counts[3];
  counts[1] = std::max<int64_t>(least, std::llround(kSplitShares[1] * static_cast<double>(n)));
  counts[2] = std::max<int64_t>(least, std::llround(kSplitShares[2] * static_cast<double>(n)));
  counts[0] = n - counts[1] - counts[2];
  std::vector<bool> taken(static_cast<size_t>(n), false);
  const auto free_from = [&](int64_t start, int64_t step) {
    for (int64_t b = start; b >= 0 && b < n; b += step)
      if (!taken[static_cast<size_t>(b)]) return b;
    return int64_t(-1);
  };
  std::mt19937_64 rng(mix_seed(options.seed, kBlockStreams + static_cast<uint64_t>(volume_index)));
  for (int s : {1, 2}) {
    const double phase = draw_uniform(rng);
    for (int64_t j = 0; j < counts[s]; ++j) {
      const auto place = static_cast<int64_t>((static_cast<double>(j) + phase) * static_cast<double>(n) /
                                              static_cast<double>(counts[s]));
      const int64_t outward = 2 * j + 1 < counts[s] ? -1 : 1;
      int64_t chosen = free_from(place, outward);
      if (chosen < 0) chosen = free_from(place, -outward);
      taken[static_cast<size_t>(chosen)] = true;
      blocks[static_cast<size_t>(chosen)].split = kSplits[s];
    }
  }
  return blocks;
}

SynthSummary generate_benchmark(const SynthOptions& options) {
  options.validate();
  const fs::path root(options.out_dir);
  check_out_dir(root);
  SynthSummary summary;
  SlicePools pools;
  const nlohmann::json sources = load_volumes(options, pools, summary);
  std::vector<ImagePlan> plans = plan_images(options, summary);
  const fs::path staging = root / kStagingName;
  for (int s = 0; s < 3; ++s)
    for (bool abnormal : {false, true})
      if (summary.images[s][abnormal ? 1 : 0] > 0) {
        make_folders((staging / class_dir(kSplits[s], abnormal) / "img").string());
        if (abnormal) make_folders((staging / class_dir(kSplits[s], true) / "anomaly_mask").string());
      }

  // Image i draws from its own generator, so the files do not depend on the thread count.
  at::parallel_for(0, static_cast<int64_t>(plans.size()), 8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      auto& plan = plans[static_cast<size_t>(i)];
      std::mt19937_64 rng(mix_seed(options.seed, static_cast<uint64_t>(i)));
      const auto& pool = pools[static_cast<size_t>(plan.split)];
      const SynthSlice& source = pool[draw_below(rng, pool.size())];
      plan.volume = source.volume;
      plan.slice = source.index;
      LesionedSlice made = plan.abnormal ? add_lesion(source.slice, plan.kind, options.difficulty, rng)
                                         : LesionedSlice{source.slice.image.clone(),
                                                         cv::Mat::zeros(source.slice.image.size(), CV_8U)};
      apply_variation(made.image, made.mask, options.variation, rng);
      cv::Mat grey;
      made.image.convertTo(grey, CV_8U, 255.0);
      write_png((staging / plan.image).string(), grey);
      if (plan.abnormal) write_png((staging / plan.mask).string(), made.mask);
    }
  });

  nlohmann::json images = nlohmann::json::array();
  for (const auto& plan : plans)
    images.push_back({{"image", plan.image},
                      {"mask", plan.mask},
                      {"split", to_string(plan.split)},
                      {"label", plan.abnormal ? 1 : 0},
                      {"kind", plan.abnormal ? to_string(plan.kind) : "none"},
                      {"volume", plan.volume},
                      {"slice", plan.slice}});
  const nlohmann::json record = {
      {"generator", "medsad synth"},
      {"seed", options.seed},
      {"image_size", options.image_size},
      {"counts", {{"train", options.train_count}, {"valid", options.valid_count}, {"test", options.test_count}}},
      {"abnormal_fraction", options.abnormal_fraction},
      {"difficulty", options.difficulty.to_json()},
      {"variation", options.variation.to_json()},
      {"slicing", {{"min_brain_area", options.min_brain_area}, {"crop_margin", options.crop_margin},
                   {"block_mm", options.block_mm}, {"split_gap_mm", options.split_gap_mm}}},
      {"volumes", sources},
      {"images", images}};
  move_staged_splits(root);
  write_file_atomic((root / "synth.json").string(), json_text(record, 1) + "\n");
  if (!options.montage.empty()) write_montage(options.montage, root, plans);
  return summary;
}

}  // namespace medsad::data
