// The lesion benchmark generated from Colin27 (mricron-data) at 64 px with a few images per
// split: byte-for-byte determinism, the MVFA layout and its counts, exact masks inside the
// brain, and splits that never share or neighbour a slice.
#include <array>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>
#include <tuple>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "data/dataset.h"
#include "data/synth_benchmark.h"
#include "test_support.h"

namespace medsad::data {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

SynthOptions small_options(const std::string& out, uint64_t seed) {
  SynthOptions options;
  options.out_dir = out;
  options.image_size = 64;
  options.train_count = 12;
  options.valid_count = 6;
  options.test_count = 9;
  options.seed = seed;
  return options;
}

// Every file below `root`: path relative to root -> bytes.
std::map<std::string, std::vector<char>> file_tree(const fs::path& root) {
  std::map<std::string, std::vector<char>> files;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file())
      files[fs::relative(entry.path(), root).string()] = read_file_bytes(entry.path().string());
  return files;
}

nlohmann::json read_record(const fs::path& root) {
  return nlohmann::json::parse(read_file_text((root / "synth.json").string()));
}

// One benchmark shared by the tests that only read it.
class SynthBenchmark : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScratchDir;
    (void)generate_benchmark(small_options(root(), 3));
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string root() { return dir_->file("bench"); }
  static ScratchDir* dir_;
};
ScratchDir* SynthBenchmark::dir_ = nullptr;

TEST_F(SynthBenchmark, SameSeedSameBytesOtherSeedDiffers) {
  ScratchDir dir;
  (void)generate_benchmark(small_options(dir.file("again"), 3));
  (void)generate_benchmark(small_options(dir.file("other"), 4));
  const auto first = file_tree(root());
  EXPECT_EQ(first.size(), 12u + 6u + 9u + (6u + 3u + 5u) + 1u);  // images, masks, synth.json
  EXPECT_TRUE(first == file_tree(dir.file("again")));
  const auto other = file_tree(dir.file("other"));
  int differing = 0;
  for (const auto& [path, bytes] : first) differing += other.count(path) && other.at(path) != bytes;
  EXPECT_GT(differing, 20);
}

TEST_F(SynthBenchmark, LoadsAsMvfaLayoutWithCountsPerSplitAndLabel) {
  DatasetSpec spec;
  spec.root = root();
  const Dataset dataset = load_dataset(spec);
  EXPECT_EQ(dataset.layout, Layout::Bmad);
  const std::map<Split, std::pair<int, int>> expected = {
      {Split::Train, {6, 6}}, {Split::Valid, {3, 3}}, {Split::Test, {4, 5}}};  // 9 * 0.5 rounds to 5 abnormal
  for (const auto& [split, counts] : expected) {
    int normal = 0, abnormal = 0;
    for (const auto& sample : dataset.split(split)) {
      (sample.label ? abnormal : normal) += 1;
      const cv::Mat image = cv::imread(sample.image, cv::IMREAD_UNCHANGED);
      EXPECT_EQ(image.type(), CV_8UC1) << sample.image;
      EXPECT_EQ(image.size(), cv::Size(64, 64)) << sample.image;
      if (sample.label == 1) {
        ASSERT_FALSE(sample.mask.empty()) << sample.image;
        EXPECT_GT(read_mask(sample.mask, sample.image, 64, 64).sum().item<float>(), 0) << sample.mask;
      }
    }
    EXPECT_EQ(normal, counts.first) << to_string(split);
    EXPECT_EQ(abnormal, counts.second) << to_string(split);
  }
}

TEST_F(SynthBenchmark, SplitsUseDisjointSlicesAtLeastThreeApartAcrossTheBrain) {
  const auto record = read_record(root());
  const auto& blocks = record["volumes"][0]["blocks"];
  ASSERT_GE(blocks.size(), 6u);
  const int64_t lowest = blocks.front()["first"], highest = blocks.back()["last"];
  const double middle = (lowest + highest) / 2.0;
  std::map<std::string, std::vector<std::pair<int64_t, int64_t>>> by_split;
  for (const auto& block : blocks) by_split[block["split"]].emplace_back(block["first"], block["last"]);
  ASSERT_EQ(by_split.size(), 3u);
  for (const auto& [split, ranges] : by_split) {
    // Each split reaches into both halves of the usable slices.
    EXPECT_LT(ranges.front().first, middle) << split;
    EXPECT_GT(ranges.back().second, middle) << split;
  }
  for (size_t a = 0; a < blocks.size(); ++a)
    for (size_t b = a + 1; b < blocks.size(); ++b)
      if (blocks[a]["split"] != blocks[b]["split"])
        EXPECT_GE(int64_t(blocks[b]["first"]) - int64_t(blocks[a]["last"]), 3) << blocks[a] << blocks[b];

  std::map<std::string, std::vector<int64_t>> slices;
  for (const auto& image : record["images"]) {
    const std::string split = image["split"];
    const int64_t slice = image["slice"];
    slices[split].push_back(slice);
    const auto& ranges = by_split[split];
    const auto holds = [&](const auto& range) { return slice >= range.first && slice <= range.second; };
    EXPECT_TRUE(std::any_of(ranges.begin(), ranges.end(), holds)) << image;
  }
  for (const auto& [split_a, a] : slices)
    for (const auto& [split_b, b] : slices)
      if (split_a < split_b)
        for (int64_t x : a)
          for (int64_t y : b) EXPECT_GE(std::abs(x - y), 3) << split_a << " " << x << ", " << split_b << " " << y;
}

TEST(SynthBlocks, EverySeedGivesEachSplitBlocksInBothHalvesOfTheHead) {
  // blocks -> {train, valid, test} blocks; 12 is Colin27 at the defaults
  const std::map<int, std::array<int, 3>> expected = {
      {6, {2, 2, 2}}, {9, {5, 2, 2}}, {12, {7, 2, 3}}, {20, {13, 2, 5}}};
  for (const auto& [n, counts] : expected) {
    std::vector<int64_t> usable(static_cast<size_t>(10 * n - 2));  // 8 kept + 2 dropped per block
    std::iota(usable.begin(), usable.end(), int64_t(30));
    for (uint64_t seed = 0; seed < 200; ++seed) {
      SynthOptions options;
      options.seed = seed;
      const auto blocks = assign_blocks(usable, 0, SliceBlocking{8, 2}, options, "colin.nii");
      ASSERT_EQ(blocks.size(), static_cast<size_t>(n));
      std::map<Split, int> count, lower_half, upper_half;
      for (size_t b = 0; b < blocks.size(); ++b) {
        ++count[blocks[b].split];
        // The middle block of an odd count belongs to both halves.
        if (2 * b + 1 <= blocks.size()) ++lower_half[blocks[b].split];
        if (2 * b + 1 >= blocks.size()) ++upper_half[blocks[b].split];
        if (b > 0) EXPECT_EQ(blocks[b].first - blocks[b - 1].last, 3);
      }
      for (Split split : {Split::Train, Split::Valid, Split::Test}) {
        EXPECT_EQ(count[split], counts[static_cast<size_t>(split)]) << n << " blocks, seed " << seed;
        EXPECT_TRUE(lower_half[split] > 0 && upper_half[split] > 0)
            << to_string(split) << ", " << n << " blocks, seed " << seed;
      }
    }
  }
  const std::vector<int64_t> two_blocks = {40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50};
  EXPECT_THROW((void)assign_blocks(two_blocks, 0, SliceBlocking{8, 2}, SynthOptions{}, "tiny.nii"), Error);
}

TEST(SynthBlocks, BlocksAndGapsAreMillimetresWhateverTheSliceSpacing) {
  // spacing (mm) -> {block slices, dropped slices}: a block spans at least 8 mm, and the nearest
  // slices of two blocks, (dropped + 1) x spacing apart, at least 3 mm.
  const std::map<double, std::array<int64_t, 2>> expected = {
      {0.5, {16, 5}}, {1.0, {8, 2}}, {1.2, {7, 2}}, {2.0, {4, 1}}, {3.0, {3, 0}}, {6.0, {2, 0}}, {10.0, {1, 0}}};
  for (const auto& [spacing, slices] : expected) {
    const SliceBlocking blocking = slice_blocking(SynthOptions{}, spacing);
    EXPECT_EQ(blocking.block_slices, slices[0]) << spacing << " mm";
    EXPECT_EQ(blocking.gap_slices, slices[1]) << spacing << " mm";
  }
}

TEST(SynthBenchmarkGeometry, AThickSliceVolumeIsCutIntoShorterBlocks) {
  // Colin27 (1 mm) with every 4th axial slice kept: a 4 mm volume of 46 slices, 11-12 of them
  // usable, which blocks of 8 slices could not share among three splits.
  ScratchDir dir;
  for (const auto& [in, out] : {std::pair{default_synth_volumes()[0].image, dir.file("t1_4mm.nii.gz")},
                                std::pair{default_synth_volumes()[0].brain_mask, dir.file("brain_4mm.nii.gz")}}) {
    const Volume volume = read_nifti_volume(in);
    write_nifti_volume(out, Volume{volume.voxels.slice(0, 0, volume.voxels.size(0), 4).contiguous(),
                                   {4.0, volume.spacing_mm[1], volume.spacing_mm[2]}});
  }
  SynthOptions options = small_options(dir.file("bench"), 1);
  options.volumes = {{dir.file("t1_4mm.nii.gz"), dir.file("brain_4mm.nii.gz")}};
  (void)generate_benchmark(options);

  const auto record = read_record(dir.file("bench"));
  const auto& source = record["volumes"][0];
  EXPECT_EQ(source["block_slices"], 2);  // 8 mm
  EXPECT_EQ(source["gap_slices"], 0);    // neighbours are already 4 mm apart
  std::map<std::string, int> blocks_per_split;
  for (const auto& block : source["blocks"]) {
    ++blocks_per_split[block["split"]];
    EXPECT_LE(int64_t(block["last"]) - int64_t(block["first"]), 1) << block;
  }
  EXPECT_EQ(blocks_per_split.size(), 3u);
  std::map<int64_t, std::string> split_of_slice;
  for (const auto& image : record["images"]) {
    const auto [it, added] = split_of_slice.emplace(image["slice"], image["split"]);
    EXPECT_EQ(it->second, image["split"]) << "slice " << image["slice"] << " in two splits";
  }
}

TEST(SynthBenchmarkGeometry, LesionMasksLieInsideTheBrainOfTheirSlice) {
  // Without geometric variation each mask must sit inside its source slice's brain exactly.
  ScratchDir dir;
  SynthOptions options = small_options(dir.file("still"), 5);
  options.variation = VariationOptions::none();
  options.train_count = 24;
  (void)generate_benchmark(options);

  const auto& source = options.volumes.front();
  const Volume volume = read_nifti_volume(source.image);
  const auto brain = read_nifti_mask(source.brain_mask, volume, source.image);
  const auto slices = prepare_slices(volume, brain, 0, options, source.image);
  std::map<int64_t, cv::Mat> brain_of;
  for (const auto& slice : slices) brain_of[slice.index] = slice.slice.brain;

  int checked = 0;
  const auto record = read_record(options.out_dir);
  for (const auto& image : record["images"]) {
    if (image["label"] == 0) continue;
    const std::string mask_path = (fs::path(options.out_dir) / std::string(image["mask"])).string();
    const cv::Mat mask = cv::imread(mask_path, cv::IMREAD_UNCHANGED);
    ASSERT_EQ(brain_of.count(image["slice"]), 1u) << image;
    EXPECT_GT(cv::countNonZero(mask), 0) << image;
    EXPECT_EQ(cv::countNonZero(mask & (brain_of[image["slice"]] == 0)), 0) << image;
    ++checked;
  }
  EXPECT_EQ(checked, 12 + 3 + 5);
}

TEST(SynthLesionsOnColin27, MaskedPixelsChangeVisibly) {
  // On real anatomy a painted lesion can land on tissue of nearly its own intensity; the mask
  // must still be mostly pixels a reader could see change (>= 0.02, about 5 grey levels, where
  // the brain's 99th percentile is 0.8). Measured: tumours 90%, haemorrhages 96%, white-matter
  // lesions 99.6% over 60 such draws.
  SynthOptions options;
  const auto& source = options.volumes.front();
  const Volume volume = read_nifti_volume(source.image);
  const auto brain = read_nifti_mask(source.brain_mask, volume, source.image);
  const auto slices = prepare_slices(volume, brain, 0, options, source.image);
  ASSERT_GT(slices.size(), 40u);
  for (LesionKind kind : {LesionKind::Tumour, LesionKind::WhiteMatter, LesionKind::Haemorrhage}) {
    double masked = 0, visible = 0;
    for (uint64_t seed = 0; seed < 40; ++seed) {
      std::mt19937_64 rng(seed);
      const SliceImage& slice = slices[(seed * 7) % slices.size()].slice;
      const LesionedSlice out = add_lesion(slice, kind, LesionDifficulty::medium(), rng);
      cv::Mat difference;
      cv::absdiff(out.image, slice.image, difference);
      masked += cv::countNonZero(out.mask);
      visible += cv::countNonZero((difference >= 0.02) & out.mask);
    }
    EXPECT_GE(visible / masked, 0.85) << to_string(kind);
  }
}

TEST(SynthOptions, AbsurdValuesAreRefusedNamingTheOption) {
  const auto refused = [](const std::function<void(SynthOptions&)>& change, const std::string& words) {
    SynthOptions options = small_options("/tmp/unused", 0);
    change(options);
    try {
      options.validate();
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refused([](SynthOptions& o) { o.image_size = 2048; }, "image size 2048 is out of range (expected 32 to 1024)");
  refused([](SynthOptions& o) { o.train_count = 0; }, "train count 0 is out of range");
  refused([](SynthOptions& o) { o.test_count = 2000000; },
          "test count 2000000 is out of range (expected 1 to 1000000)");
  refused([](SynthOptions& o) { o.abnormal_fraction = 1.5; },
          "abnormal fraction 1.5 is out of range (expected 0 to 1)");
  refused([](SynthOptions& o) { o.volumes.clear(); }, "no volumes given");
  refused([](SynthOptions& o) { o.difficulty.max_radius = 0.9; },
          "lesion max_radius 0.9 is out of range (expected 0.05 to 0.3)");
  refused([](SynthOptions& o) { o.variation.max_noise = -1; },
          "variation max_noise -1 is out of range (expected 0 to 0.2)");
}

TEST(SynthOptions, AFolderHoldingSomethingElseIsNotOverwritten) {
  ScratchDir dir;
  fs::create_directories(dir.file("full"));
  write_file_atomic(dir.file("full/notes.txt"), std::string("keep me"));
  try {
    (void)generate_benchmark(small_options(dir.file("full"), 0));
    ADD_FAILURE() << "wrote into a folder holding other files";
  } catch (const Error& e) {
    EXPECT_EQ(e.path(), dir.file("full"));
    EXPECT_EQ(e.problem(), "is not empty and holds no synth.json: give a new or empty folder");
  }
  EXPECT_TRUE(fs::exists(dir.file("full/notes.txt")));
}

TEST(SynthOptions, AFailedRunLeavesThePreviousBenchmarkIntact) {
  ScratchDir dir;
  const std::string root = dir.file("bench");
  (void)generate_benchmark(small_options(root, 5));
  const auto before = file_tree(root);
  write_file_atomic(dir.file("broken.nii"), std::string("not a volume"));
  auto options = small_options(root, 6);
  options.volumes = {{dir.file("broken.nii"), ""}};
  EXPECT_THROW((void)generate_benchmark(options), Error);
  EXPECT_TRUE(file_tree(root) == before) << "a failed run changed the previous benchmark";
  // An empty brain is blamed on the file that makes it: the mask given, or the volume without one.
  write_nifti_volume(dir.file("zeros.nii"), Volume{torch::zeros({8, 8, 8}), {1.0, 1.0, 1.0}});
  write_nifti_volume(dir.file("head.nii"), Volume{torch::rand({8, 8, 8}) - 2, {1.0, 1.0, 1.0}});
  for (const auto& [volume, mask, blamed] :
       {std::tuple{dir.file("head.nii"), dir.file("zeros.nii"), dir.file("zeros.nii")},
        std::tuple{dir.file("head.nii"), std::string(), dir.file("head.nii")}}) {
    options.volumes = {{volume, mask}};
    try {
      (void)generate_benchmark(options);
      ADD_FAILURE() << "an empty brain was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), blamed) << e.what();
    }
  }

  // An interrupted run's staging folder neither blocks the next run nor stays behind.
  fs::create_directories(root + "/.synth-partial/train/good/img");
  write_file_atomic(root + "/.synth-partial/train/good/img/stale.png", std::string("x"));
  (void)generate_benchmark(small_options(root, 6));
  EXPECT_FALSE(fs::exists(root + "/.synth-partial"));
  const auto after = file_tree(root);
  EXPECT_EQ(after.size(), before.size());
  EXPECT_FALSE(after == before);  // seed 6 replaced seed 5's files
}

}  // namespace
}  // namespace medsad::data
