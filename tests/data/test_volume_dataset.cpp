// Labelled volumes cut into a 2-D dataset: a label box whose place in each PNG is worked out by
// hand (flips, square pixels), slices sorted into normal, abnormal and left out by their voxel
// counts, splits by case, and the result read back by the dataset loader.
#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "data/dataset.h"
#include "data/nifti_volume.h"
#include "data/volume_dataset.h"
#include "test_support.h"

namespace medsad::data {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

// Case i of a BraTS-like tree: DIR/Ci/Ci_flair.nii.gz and DIR/Ci/Ci_seg.nii.gz on a [S, A, R] =
// [10, 12, 8] grid of 2 x 1 x 2 mm. Tissue fills A 2..9 and R 1..6 of slices 1..8 (a shrunken
// slice 0 and an empty slice 9 fall below min_tissue); the label is the box A 4..6 x R 2..4
// (9 voxels a slice) in slices 3..5, plus 12 voxels (A 4..7 x R 2..4) in slice 6, so slice 6
// is abnormal and slices 3..5 (9 < 10 voxels) are left out.
void write_case(const std::string& dir, int i) {
  auto voxels = torch::zeros({10, 12, 8});
  voxels.slice(0, 1, 9).slice(1, 2, 10).slice(2, 1, 7).fill_(100.0 + i);
  voxels[0].slice(0, 5, 7).slice(1, 3, 5).fill_(50);  // 4 voxels: under a quarter of 48
  voxels.slice(0, 1, 9).slice(1, 5, 7).slice(2, 3, 5).fill_(200);  // some contrast for the window
  auto label = torch::zeros({10, 12, 8});
  label.slice(0, 3, 6).slice(1, 4, 7).slice(2, 2, 5).fill_(1);
  label[6].slice(0, 4, 8).slice(1, 2, 5).fill_(2);  // any label > 0 is lesion
  const std::string name = "C" + std::to_string(i);
  fs::create_directories(dir + "/" + name);
  write_nifti_volume(dir + "/" + name + "/" + name + "_flair.nii.gz", Volume{voxels, {2.0, 1.0, 2.0}});
  write_nifti_volume(dir + "/" + name + "/" + name + "_seg.nii.gz", Volume{label, {2.0, 1.0, 2.0}});
}

VolumeSliceOptions options_for(const ScratchDir& dir) {
  VolumeSliceOptions options;
  options.images_dir = dir.file("cases");
  options.image_suffix = "_flair.nii.gz";
  options.label_suffix = "_seg.nii.gz";
  options.out_dir = dir.file("slices");
  options.split = {0.5, 0.25, 0.25};
  return options;
}

TEST(VolumeSlices, CasesBecomeSlicesInTheMvfaLayoutSplitByCase) {
  ScratchDir dir;
  for (int i = 0; i < 6; ++i) write_case(dir.file("cases"), i);
  const auto summary = write_volume_slices(options_for(dir));
  // 6 cases: 2 valid, 2 test (a quarter each, rounded), 2 train; per case 8 tissue slices
  // (1..8), slices 3..5 left out, slice 6 abnormal: 4 normal, 1 abnormal.
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(summary.cases[s], 2) << s;
    EXPECT_EQ(summary.images[s][0], 2 * 4) << s;
    EXPECT_EQ(summary.images[s][1], 2 * 1) << s;
  }
  const auto record = nlohmann::json::parse(read_file_text(dir.file("slices/slices.json")));
  std::set<std::string> subjects;
  for (const auto& c : record["cases"]) {
    subjects.insert(c["subject"].get<std::string>());
    EXPECT_EQ(c["ambiguous_slices_left_out"], 3) << c;
    const std::string split = c["split"], subject = c["subject"];
    // Every file of the case lies in its split, under the case's name.
    EXPECT_TRUE(fs::exists(dir.file("slices/" + split + "/Ungood/img/" + subject + "_s006.png"))) << c;
    EXPECT_TRUE(fs::exists(dir.file("slices/" + split + "/good/img/" + subject + "_s001.png"))) << c;
    for (const char* other : {"train", "valid", "test"})
      if (split != other)
        EXPECT_FALSE(fs::exists(dir.file(std::string("slices/") + other + "/good/img/" + subject + "_s001.png")));
    EXPECT_FALSE(fs::exists(dir.file("slices/" + split + "/good/img/" + subject + "_s000.png")));  // too little tissue
    EXPECT_FALSE(fs::exists(dir.file("slices/" + split + "/good/img/" + subject + "_s004.png")));  // left out
  }
  EXPECT_EQ(subjects.size(), 6u);
  EXPECT_FALSE(fs::exists(dir.file("slices/.slices-partial")));

  // The mask of slice 6 by hand: rows are A flipped (anterior up: row = 11 - a), columns R flipped
  // (the subject's right on the left) at 2 mm, shown as 16 one-millimetre columns: R voxel r
  // covers columns 16 - 2 (r + 1) .. 16 - 2 r - 1. The label A 4..7 x R 2..4 is rows 4..7 and
  // columns 6..11; the bilinear resampling cut at a half moves an edge by a pixel at most.
  const auto& first = record["cases"][0];
  const std::string mask_path = "slices/" + first["split"].get<std::string>() + "/Ungood/anomaly_mask/" +
                                first["subject"].get<std::string>() + "_s006.png";
  const cv::Mat mask = cv::imread(dir.file(mask_path), cv::IMREAD_GRAYSCALE);
  ASSERT_EQ(mask.rows, 12);
  ASSERT_EQ(mask.cols, 16);
  int wrong_inside = 0, wrong_outside = 0;
  for (int row = 0; row < 12; ++row)
    for (int col = 0; col < 16; ++col) {
      const bool inside = row >= 4 && row <= 7 && col >= 7 && col <= 10;   // clear of the edges
      const bool outside = row < 3 || row > 8 || col < 5 || col > 12;      // clear of them too
      if (inside) wrong_inside += mask.at<uint8_t>(row, col) != 255;
      if (outside) wrong_outside += mask.at<uint8_t>(row, col) != 0;
    }
  EXPECT_EQ(wrong_inside, 0);
  EXPECT_EQ(wrong_outside, 0);

  // And train reads it as any BMAD dataset.
  DatasetSpec dataset;
  dataset.root = dir.file("slices");
  const auto loaded = load_dataset(dataset);
  EXPECT_EQ(loaded.samples.size(), 6u * 5u);
}

TEST(VolumeSlices, BadCasesAndOptionsGiveOneLineAndWriteNothing) {
  ScratchDir dir;
  for (int i = 0; i < 3; ++i) write_case(dir.file("cases"), i);
  // A failed run leaves --out as it found it: not there, or holding what it held.
  const auto expect_error = [&](VolumeSliceOptions options, const std::string& words) {
    const bool existed = fs::exists(options.out_dir);
    const auto entries = [&] {
      std::set<std::string> names;
      if (fs::exists(options.out_dir))
        for (const auto& entry : fs::directory_iterator(options.out_dir)) names.insert(entry.path().filename());
      return names;
    };
    const auto before = entries();
    try {
      (void)write_volume_slices(options);
      FAIL() << "no error for " << words;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
    EXPECT_EQ(fs::exists(options.out_dir), existed) << words;
    EXPECT_EQ(entries(), before) << words;
  };
  auto options = options_for(dir);
  options.split = {0.5, 0.3, 0.3};
  expect_error(options, "must add up to 1");
  options = options_for(dir);
  options.split = {0.2, 0.4, 0.4};  // 3 cases: 1 valid, 1 test... and 1 train; 2 cases would not do
  fs::remove_all(dir.file("cases/C2"));
  expect_error(options, "cannot fill the training split");
  write_case(dir.file("cases"), 2);
  fs::remove(dir.file("cases/C1/C1_seg.nii.gz"));
  expect_error(options_for(dir), "C1_flair.nii.gz: no label volume");
  write_case(dir.file("cases"), 1);
  write_nifti_volume(dir.file("cases/C1/C1_seg.nii.gz"), Volume{torch::zeros({10, 12, 9}), {2.0, 1.0, 2.0}});
  expect_error(options_for(dir), "C1_seg.nii.gz: mask is 10x12x9 voxels");
  options = options_for(dir);
  fs::create_directories(options.out_dir);  // an empty folder given: it stays, empty
  expect_error(options, "C1_seg.nii.gz: mask is 10x12x9 voxels");
  fs::remove(options.out_dir);
  write_case(dir.file("cases"), 1);
  options = options_for(dir);
  options.label_suffix.clear();
  expect_error(options, "give --image-suffix and --label-suffix");
  fs::create_directories(dir.file("slices"));
  write_file_atomic(dir.file("slices/keep.txt"), std::string("mine"));
  expect_error(options_for(dir), "not an empty folder");
  EXPECT_EQ(read_file_text(dir.file("slices/keep.txt")), "mine");
}

TEST(VolumeSlices, LabelVolumesMustBeSegmentations) {
  // BraTS's classes 0, 1, 2 and 4 are lesion wherever above 0; negative, fractional values and an
  // image's thousands of grey levels are refused, naming the label file. (niftilib reads NaN as 0.)
  ScratchDir dir;
  const Volume image{torch::rand({16, 10, 8}), {1.0, 1.0, 1.0}};
  const std::string path = dir.file("seg.nii.gz");
  auto brats = torch::zeros({16, 10, 8});
  brats[3].fill_(1), brats[4].fill_(2), brats[5].fill_(4);
  write_nifti_volume(path, Volume{brats, image.spacing_mm});
  EXPECT_TRUE(torch::equal(read_nifti_labels(path, image, "t1.nii.gz"), brats > 0));
  const auto with = [&](float value) {
    auto labels = brats.clone();
    labels[9][2][3] = value;
    return labels;
  };
  const std::vector<std::pair<torch::Tensor, std::string>> bad = {
      {with(-1), "negative values"},
      {with(0.3f), "not whole numbers"},
      {torch::arange(16 * 10 * 8, torch::kFloat32).reshape({16, 10, 8}), "1280 distinct values"}};
  for (const auto& [labels, problem] : bad) {
    write_nifti_volume(path, Volume{labels, image.spacing_mm});
    try {
      (void)read_nifti_labels(path, image, "t1.nii.gz");
      ADD_FAILURE() << problem << ": read";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_NE(e.problem().find(problem), std::string::npos) << e.what();
    }
  }
}

TEST(VolumeSlices, TheCommandLineReadsItsSharesAndRefusesBadOnes) {
  ScratchDir dir;
  for (int i = 0; i < 4; ++i) write_case(dir.file("cases"), i);
  const std::string common = "slices --images " + test::quote(dir.file("cases")) +
                             " --image-suffix _flair.nii.gz --label-suffix _seg.nii.gz --out ";
  const auto ran = test::run_medsad(common + test::quote(dir.file("ok")) + " --split 0.5,0.25,0.25 --seed 3");
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  const auto line = nlohmann::json::parse(ran.out);
  EXPECT_EQ(line["cases"]["train"], 2);
  EXPECT_EQ(line["cases"]["valid"], 1);
  EXPECT_EQ(line["images"]["test"]["abnormal"], 1);
  for (const char* bad : {"0.5,x,0.5", "0.5,0.5", "0.4,0.3,0.2,0.1"}) {
    const auto refused = test::run_medsad(common + test::quote(dir.file("bad")) + " --split " + bad);
    EXPECT_EQ(refused.exit_code, 1) << bad;
    EXPECT_NE(refused.err.find("--split"), std::string::npos) << refused.err;
    EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  }
}

}  // namespace
}  // namespace medsad::data
