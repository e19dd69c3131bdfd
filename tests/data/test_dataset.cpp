// Dataset layouts (BMAD/MVFA, Folder, BUSI, CSV), split carving, budget, errors and masks, on
// small trees of tiny PNGs generated in scratch folders.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <set>

#include "core/error.h"
#include "data/dataset.h"
#include "data/mask_io.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::data;
namespace fs = std::filesystem;

namespace {

// A rows × cols grey image filled with `value`, parent folders created.
void write_image(const fs::path& path, int value = 128, int rows = 6, int cols = 8) {
  fs::create_directories(path.parent_path());
  ASSERT_TRUE(cv::imwrite(path.string(), cv::Mat(rows, cols, CV_8UC1, cv::Scalar(value)))) << path;
}

// A rows × cols mask, 0 except the rectangle [y0, y1) × [x0, x1) set to `value`.
void write_mask(const fs::path& path, int y0, int y1, int x0, int x1, int value = 255, int rows = 6, int cols = 8) {
  fs::create_directories(path.parent_path());
  cv::Mat mask(rows, cols, CV_8UC1, cv::Scalar(0));
  mask(cv::Range(y0, y1), cv::Range(x0, x1)).setTo(value);
  ASSERT_TRUE(cv::imwrite(path.string(), mask)) << path;
}

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Writes count images NAME_PREFIX000.png ... in dir.
void write_images(const fs::path& dir, const std::string& prefix, int count) {
  for (int i = 0; i < count; ++i) {
    char name[64];
    std::snprintf(name, sizeof name, "%s%03d.png", prefix.c_str(), i);
    write_image(dir / name);
  }
}

size_t count(const Dataset& d, Split split, int label) {
  return std::count_if(d.samples.begin(), d.samples.end(),
                       [&](const Sample& s) { return s.split == split && s.label == label; });
}

const Sample* find(const Dataset& d, const std::string& file_name) {
  for (const auto& s : d.samples)
    if (fs::path(s.image).filename() == file_name) return &s;
  return nullptr;
}

std::string file_name(const std::string& path) { return fs::path(path).filename().string(); }

void expect_no_shared_file(const Dataset& d) {
  std::set<std::string> seen;
  for (const auto& s : d.samples) EXPECT_TRUE(seen.insert(fs::weakly_canonical(s.image).string()).second) << s.image;
}

std::vector<std::string> images_of(const Dataset& d, Split split) {
  std::vector<std::string> names;
  for (const auto& s : d.split(split)) names.push_back(s.image);
  return names;
}

// The Error thrown by `body`, or a failure if none was.
template <typename Body>
Error error_of(Body body) {
  try {
    body();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected medsad::Error";
  return Error("", "");
}

DatasetSpec spec_for(const fs::path& root) {
  DatasetSpec spec;
  spec.root = root.string();
  return spec;
}

// MVFA form: ROOT/{train,valid,test}/{good,Ungood}/img with masks in the sibling anomaly_mask/.
void make_mvfa(const fs::path& root) {
  write_images(root / "train/good/img", "n", 5);
  write_images(root / "valid/good/img", "vn", 2);
  write_images(root / "valid/Ungood/img", "va", 3);
  write_mask(root / "valid/Ungood/anomaly_mask/va000.png", 0, 2, 0, 2);
  write_mask(root / "valid/Ungood/anomaly_mask/va001.png", 0, 2, 0, 2);  // va002 has no mask
  write_images(root / "test/good/img", "tn", 2);
  write_images(root / "test/Ungood/img", "ta", 2);
  write_mask(root / "test/Ungood/anomaly_mask/ta000.png", 1, 3, 1, 3);
  write_mask(root / "test/Ungood/anomaly_mask/ta001.png", 1, 3, 1, 3);
}

}  // namespace

// ---------------------------------------------------------------- BMAD / MVFA

TEST(DatasetBmad, MvfaImgFoldersWithSiblingAnomalyMasks) {
  test::ScratchDir dir;
  make_mvfa(dir.path());
  const Dataset d = load_dataset(spec_for(dir.path()));
  EXPECT_EQ(d.layout, Layout::Bmad);
  EXPECT_EQ(count(d, Split::Train, 0), 5u);
  EXPECT_EQ(count(d, Split::Train, 1), 0u);
  EXPECT_EQ(count(d, Split::Valid, 0), 2u);
  EXPECT_EQ(count(d, Split::Valid, 1), 3u);
  EXPECT_EQ(count(d, Split::Test, 0), 2u);
  EXPECT_EQ(count(d, Split::Test, 1), 2u);
  EXPECT_EQ(d.samples.size(), 14u);
  EXPECT_EQ(find(d, "va000.png")->mask, (dir.path() / "valid/Ungood/anomaly_mask/va000.png").string());
  EXPECT_EQ(find(d, "ta001.png")->mask, (dir.path() / "test/Ungood/anomaly_mask/ta001.png").string());
  EXPECT_EQ(find(d, "va002.png")->mask, "");
  EXPECT_EQ(find(d, "n000.png")->mask, "");
  EXPECT_EQ(find(d, "va000.png")->image, (dir.path() / "valid/Ungood/img/va000.png").string());
  // Ordered train, valid, test; within a split normal before abnormal, each sorted by name.
  const auto valid = images_of(d, Split::Valid);
  ASSERT_EQ(valid.size(), 5u);
  EXPECT_EQ(file_name(valid[0]), "vn000.png");
  EXPECT_EQ(file_name(valid[2]), "va000.png");
  EXPECT_EQ(file_name(valid[4]), "va002.png");
  EXPECT_EQ(d.samples.front().split, Split::Train);
  EXPECT_EQ(d.samples.back().split, Split::Test);
  expect_no_shared_file(d);
}

TEST(DatasetBmad, WithoutImgLevelAcceptsSplitLevelMaskFolders) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "train/good", "n", 4);  // train: normal images only, directly in good/
  write_images(root / "valid/good", "vn", 1);
  write_images(root / "valid/Ungood", "va", 2);
  write_mask(root / "valid/Ungood_mask/va000.png", 0, 1, 0, 1);  // {split}/Ungood_mask/
  write_images(root / "test/good", "tn", 1);
  write_images(root / "test/ungood", "ta", 2);
  write_mask(root / "test/anomaly_mask/ta001.png", 0, 1, 0, 1);  // {split}/anomaly_mask/
  const Dataset d = load_dataset(spec_for(root));
  EXPECT_EQ(d.layout, Layout::Bmad);
  EXPECT_EQ(count(d, Split::Train, 0), 4u);
  EXPECT_EQ(count(d, Split::Valid, 0), 1u);
  EXPECT_EQ(count(d, Split::Valid, 1), 2u);
  EXPECT_EQ(count(d, Split::Test, 0), 1u);
  EXPECT_EQ(count(d, Split::Test, 1), 2u);
  EXPECT_EQ(find(d, "va000.png")->mask, (root / "valid/Ungood_mask/va000.png").string());
  EXPECT_EQ(find(d, "va001.png")->mask, "");
  EXPECT_EQ(find(d, "ta000.png")->mask, "");
  EXPECT_EQ(find(d, "ta001.png")->mask, (root / "test/anomaly_mask/ta001.png").string());
}

TEST(DatasetBmad, LabelFolderIsAnAliasOfAnomalyMask) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "train/good", "n", 3);
  write_images(root / "test/good/img", "tn", 1);
  write_mask(root / "test/good/label/tn000.png", 0, 0, 0, 0);  // BMAD's empty masks of normals
  write_images(root / "test/Ungood/img", "ta", 2);
  write_mask(root / "test/Ungood/label/ta000.png", 0, 3, 0, 3);
  write_images(root / "valid/Ungood", "va", 1);
  write_mask(root / "valid/label/va000.png", 0, 3, 0, 3);  // split-level label/ folder
  const Dataset d = load_dataset(spec_for(root));
  EXPECT_EQ(find(d, "ta000.png")->mask, (root / "test/Ungood/label/ta000.png").string());
  EXPECT_EQ(find(d, "ta001.png")->mask, "");
  EXPECT_EQ(find(d, "tn000.png")->mask, (root / "test/good/label/tn000.png").string());
  EXPECT_EQ(find(d, "va000.png")->mask, (root / "valid/label/va000.png").string());
}

TEST(DatasetBmad, MasksMatchByStemAndMaskSuffixAcrossExtensions) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "train/good", "n", 2);
  write_image(root / "test/Ungood/img/a.jpg");
  write_image(root / "test/Ungood/img/b.png");
  write_mask(root / "test/Ungood/anomaly_mask/a.png", 0, 1, 0, 1);       // other extension
  write_mask(root / "test/Ungood/anomaly_mask/b_mask.png", 0, 1, 0, 1);  // _mask suffix
  const Dataset d = load_dataset(spec_for(root));
  EXPECT_EQ(find(d, "a.jpg")->mask, (root / "test/Ungood/anomaly_mask/a.png").string());
  EXPECT_EQ(find(d, "b.png")->mask, (root / "test/Ungood/anomaly_mask/b_mask.png").string());
}

TEST(DatasetBmad, CaseInsensitiveNamesAllImageExtensionsAndSkippedFiles) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_image(root / "Train/GOOD/b.PNG");
  write_image(root / "Train/GOOD/a.JPG");
  write_image(root / "Train/GOOD/c.jpeg");
  write_image(root / "Train/GOOD/d.tif");
  write_image(root / "Train/GOOD/e.TIFF");
  write_image(root / "Train/GOOD/f.bmp");
  write_text(root / "Train/GOOD/g.dcm", "not decoded here");  // DICOM: read by another module
  write_text(root / "Train/GOOD/notes.txt", "x");
  write_image(root / "Train/GOOD/.hidden.png");
  write_image(root / "Train/GOOD/h_mask.png");  // mask-named files are never images
  write_image(root / "Test/UnGood/IMG/x.png");
  write_mask(root / "Test/UnGood/Anomaly_Mask/x.png", 0, 1, 0, 1);
  write_image(root / "Test/defects/y.png");  // not a class folder: ignored
  DatasetSpec spec = spec_for(root);
  spec.valid_fraction = 0.0;
  const Dataset d = load_dataset(spec);
  const auto train = images_of(d, Split::Train);
  std::vector<std::string> names;
  for (const auto& p : train) names.push_back(file_name(p));
  EXPECT_EQ(names, (std::vector<std::string>{"a.JPG", "b.PNG", "c.jpeg", "d.tif", "e.TIFF", "f.bmp", "g.dcm"}));
  ASSERT_EQ(count(d, Split::Test, 1), 1u);
  EXPECT_EQ(find(d, "x.png")->mask, (root / "Test/UnGood/Anomaly_Mask/x.png").string());
  EXPECT_EQ(find(d, "y.png"), nullptr);
}

TEST(DatasetBmad, MissingValidIsCarvedStratifiedFromTrain) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "train/good", "n", 10);
  write_images(root / "train/Ungood", "a", 5);
  write_images(root / "test/good", "n", 3);  // same names as train/good: other files, no clash
  write_images(root / "test/Ungood", "a", 3);
  DatasetSpec spec = spec_for(root);
  spec.valid_fraction = 0.2;
  const Dataset d = load_dataset(spec);
  EXPECT_EQ(count(d, Split::Valid, 0), 2u);  // round(0.2 * 10)
  EXPECT_EQ(count(d, Split::Valid, 1), 1u);  // round(0.2 * 5)
  EXPECT_EQ(count(d, Split::Train, 0), 8u);
  EXPECT_EQ(count(d, Split::Train, 1), 4u);
  EXPECT_EQ(count(d, Split::Test, 0), 3u);  // the existing test split is kept as it is
  EXPECT_EQ(count(d, Split::Test, 1), 3u);
  for (const auto& s : d.split(Split::Valid)) EXPECT_NE(s.image.find("/train/"), std::string::npos) << s.image;
  expect_no_shared_file(d);
}

TEST(DatasetBmad, MissingTestIsCarvedBeforeValid) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "train/good", "n", 10);
  write_images(root / "train/Ungood", "a", 10);
  DatasetSpec spec = spec_for(root);
  spec.test_fraction = 0.3;
  spec.valid_fraction = 0.2;
  const Dataset d = load_dataset(spec);
  for (int label : {0, 1}) {
    EXPECT_EQ(count(d, Split::Test, label), 3u);   // round(0.3 * 10)
    EXPECT_EQ(count(d, Split::Valid, label), 1u);  // round(0.2 * 7)
    EXPECT_EQ(count(d, Split::Train, label), 6u);
  }
}

TEST(DatasetBmad, CarvingKeepsOneOfAClassWithTwoImagesAndNoneOfASingleImage) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "train/good", "n", 2);
  write_images(root / "train/Ungood", "a", 1);
  write_images(root / "test/good", "tn", 1);
  DatasetSpec spec = spec_for(root);
  spec.valid_fraction = 0.1;  // round(0.2) = 0, raised to 1
  const Dataset d = load_dataset(spec);
  EXPECT_EQ(count(d, Split::Valid, 0), 1u);
  EXPECT_EQ(count(d, Split::Train, 0), 1u);
  EXPECT_EQ(count(d, Split::Valid, 1), 0u);
  EXPECT_EQ(count(d, Split::Train, 1), 1u);
}

TEST(DatasetBmad, ExplicitLayoutOnAnotherTreeIsAnError) {
  test::ScratchDir dir;
  write_images(dir.path() / "normal", "n", 2);
  DatasetSpec spec = spec_for(dir.path());
  spec.layout = Layout::Bmad;
  const Error e = error_of([&] { (void)load_dataset(spec); });
  EXPECT_EQ(e.path(), dir.path().string());
  EXPECT_NE(e.problem().find("Ungood"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------- Folder

TEST(DatasetFolder, MasksPairedByStemWithOrWithoutMaskSuffix) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "normal", "n", 10);
  write_images(root / "abnormal", "a", 10);
  write_mask(root / "masks/a000.png", 0, 1, 0, 1);       // same name
  write_mask(root / "masks/a001_mask.png", 0, 1, 0, 1);  // _mask suffix
  write_mask(root / "masks/a002.tif", 0, 1, 0, 1);       // same stem, other extension
  write_mask(root / "masks/n000.png", 0, 1, 0, 1);       // a normal image never gets a mask
  DatasetSpec spec;
  spec.layout = Layout::Folder;
  spec.normal_dir = (root / "normal").string();
  spec.abnormal_dir = (root / "abnormal").string();
  spec.mask_dir = (root / "masks").string();
  const Dataset d = load_dataset(spec);
  EXPECT_EQ(d.layout, Layout::Folder);
  EXPECT_EQ(find(d, "a000.png")->mask, (root / "masks/a000.png").string());
  EXPECT_EQ(find(d, "a001.png")->mask, (root / "masks/a001_mask.png").string());
  EXPECT_EQ(find(d, "a002.png")->mask, (root / "masks/a002.tif").string());
  EXPECT_EQ(find(d, "a003.png")->mask, "");
  EXPECT_EQ(find(d, "n000.png")->mask, "");
  for (int label : {0, 1}) {
    EXPECT_EQ(count(d, Split::Test, label), 2u);   // round(0.2 * 10)
    EXPECT_EQ(count(d, Split::Valid, label), 2u);  // round(0.2 * 8)
    EXPECT_EQ(count(d, Split::Train, label), 6u);
  }
  expect_no_shared_file(d);
}

TEST(DatasetFolder, DirsRelativeToRootMasksBesideImagesAndSubFolders) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "ok", "n", 3);
  write_image(root / "bad/a.png");
  write_mask(root / "bad/a_mask.png", 0, 1, 0, 1);  // mask beside its image: not an image itself
  write_image(root / "bad/crack/b.png");            // sub-folders are read
  DatasetSpec spec = spec_for(root);
  spec.normal_dir = "ok";
  spec.abnormal_dir = "bad";
  spec.mask_dir = "bad";
  spec.test_fraction = 0.0;
  spec.valid_fraction = 0.0;
  const Dataset d = load_dataset(spec);  // Auto: root unrecognised, normal_dir given -> Folder
  EXPECT_EQ(d.layout, Layout::Folder);
  EXPECT_EQ(count(d, Split::Train, 0), 3u);
  EXPECT_EQ(count(d, Split::Train, 1), 2u);
  EXPECT_EQ(find(d, "a.png")->mask, (root / "bad/a_mask.png").string());
  EXPECT_EQ(find(d, "b.png")->mask, "");
  EXPECT_EQ(find(d, "a_mask.png"), nullptr);
}

TEST(DatasetFolder, MaskSubFolderMirrorsAbnormalSubFolder) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "good", "n", 2);
  write_image(root / "defect/crack/x.png");
  write_image(root / "defect/hole/x.png");
  write_mask(root / "gt/crack/x_mask.png", 0, 1, 0, 1);
  write_mask(root / "gt/hole/x_mask.png", 0, 1, 0, 1);
  DatasetSpec spec;
  spec.layout = Layout::Folder;
  spec.root = root.string();
  spec.normal_dir = "good";
  spec.abnormal_dir = "defect";
  spec.mask_dir = "gt";
  spec.test_fraction = 0.0;
  spec.valid_fraction = 0.0;
  const Dataset d = load_dataset(spec);
  ASSERT_EQ(count(d, Split::Train, 1), 2u);
  for (const auto& s : d.samples)
    if (s.label == 1)
      EXPECT_EQ(fs::path(s.mask).parent_path().filename(), fs::path(s.image).parent_path().filename()) << s.image;
}

TEST(DatasetFolder, NormalOnlyAndAutoDetectedFolderRoot) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "normal", "n", 5);
  DatasetSpec spec;
  spec.normal_dir = (root / "normal").string();  // no root: Folder
  const Dataset only_normal = load_dataset(spec);
  EXPECT_EQ(only_normal.layout, Layout::Folder);
  EXPECT_EQ(only_normal.samples.size(), 5u);
  EXPECT_EQ(count(only_normal, Split::Test, 0), 1u);

  write_images(root / "abnormal", "a", 5);
  write_mask(root / "mask/a003_mask.png", 0, 1, 0, 1);
  EXPECT_EQ(detect_layout(root.string()), Layout::Folder);
  const Dataset detected = load_dataset(spec_for(root));
  EXPECT_EQ(detected.layout, Layout::Folder);
  EXPECT_EQ(detected.samples.size(), 10u);
  EXPECT_EQ(find(detected, "a003.png")->mask, (root / "mask/a003_mask.png").string());
}

TEST(DatasetFolder, MissingDirsAreErrorsNamingThem) {
  test::ScratchDir dir;
  write_images(dir.path() / "normal", "n", 2);
  DatasetSpec spec;
  spec.layout = Layout::Folder;
  spec.normal_dir = (dir.path() / "normal").string();
  spec.abnormal_dir = (dir.path() / "nope").string();
  const Error e = error_of([&] { (void)load_dataset(spec); });
  EXPECT_EQ(e.path(), spec.abnormal_dir);
  EXPECT_NE(e.problem().find("abnormal_dir"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------- BUSI

TEST(DatasetBusi, MultipleMasksAreMergedPixelwise) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_image(root / "normal/normal (1).png");
  write_mask(root / "normal/normal (1)_mask.png", 0, 0, 0, 0);
  write_image(root / "normal/normal (2).png");
  write_image(root / "benign/benign (1).png");
  write_mask(root / "benign/benign (1)_mask.png", 0, 2, 0, 2);
  write_mask(root / "benign/benign (1)_mask_1.png", 4, 6, 6, 8, 1);  // nonzero counts, not just 255
  write_image(root / "benign/benign (2).png");
  write_mask(root / "benign/benign (2)_mask.png", 1, 2, 1, 2);
  write_image(root / "malignant/malignant (1).png");
  write_mask(root / "malignant/malignant (1)_mask.png", 0, 1, 0, 8);
  write_mask(root / "malignant/malignant (1)_mask_1.png", 0, 6, 0, 1);
  write_mask(root / "malignant/malignant (1)_mask_2.png", 5, 6, 0, 8);
  write_image(root / "malignant/malignant (2).png");  // no mask at all
  DatasetSpec spec = spec_for(root);
  spec.test_fraction = 0.0;
  spec.valid_fraction = 0.0;
  const Dataset d = load_dataset(spec);
  EXPECT_EQ(d.layout, Layout::Busi);
  EXPECT_EQ(count(d, Split::Train, 0), 2u);
  EXPECT_EQ(count(d, Split::Train, 1), 4u);
  for (const auto& s : d.samples) EXPECT_EQ(s.image.find("_mask"), std::string::npos) << s.image;
  EXPECT_EQ(find(d, "normal (1).png")->mask, "");
  EXPECT_EQ(find(d, "benign (2).png")->mask, (root / "benign/benign (2)_mask.png").string());
  EXPECT_EQ(find(d, "malignant (2).png")->mask, "");

  const std::string merged_benign = find(d, "benign (1).png")->mask;
  EXPECT_EQ(merged_benign.rfind((root / ".medsad_cache").string(), 0), 0u) << merged_benign;
  auto expected = torch::zeros({6, 8});
  expected.slice(0, 0, 2).slice(1, 0, 2).fill_(1);
  expected.slice(0, 4, 6).slice(1, 6, 8).fill_(1);
  EXPECT_TRUE(torch::equal(read_mask(merged_benign, "benign (1).png", 6, 8), expected));

  auto expected_malignant = torch::zeros({6, 8});
  expected_malignant.select(0, 0).fill_(1);
  expected_malignant.select(0, 5).fill_(1);
  expected_malignant.select(1, 0).fill_(1);
  EXPECT_TRUE(torch::equal(read_mask(find(d, "malignant (1).png")->mask, "m.png", 6, 8), expected_malignant));
}

TEST(DatasetBusi, CacheFallsBackToTempWhenRootCacheCannotBeCreated) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_text(root / ".medsad_cache", "a file where the cache folder would go");
  write_images(root / "normal", "n", 1);
  write_image(root / "benign/b.png");
  write_mask(root / "benign/b_mask.png", 0, 1, 0, 1);
  write_mask(root / "benign/b_mask_1.png", 1, 2, 1, 2);
  const Dataset d = load_dataset(spec_for(root));
  const std::string mask = find(d, "b.png")->mask;
  const fs::path temp = fs::temp_directory_path();
  EXPECT_EQ(mask.rfind(temp.string(), 0), 0u) << mask;
  EXPECT_EQ(read_mask(mask, "b.png", 6, 8).sum().item<float>(), 2.0f);
  fs::remove_all(fs::path(mask).parent_path().parent_path().parent_path());  // medsad_cache_<hash>/
}

TEST(DatasetBusi, MergingMasksOfDifferentSizesNamesBoth) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_images(root / "normal", "n", 1);
  write_image(root / "malignant/m.png");
  write_mask(root / "malignant/m_mask.png", 0, 1, 0, 1);
  write_mask(root / "malignant/m_mask_1.png", 0, 1, 0, 1, 255, 5, 5);
  const Error e = error_of([&] { (void)load_dataset(spec_for(root)); });
  EXPECT_EQ(e.path(), (root / "malignant/m_mask_1.png").string());
  EXPECT_NE(e.problem().find((root / "malignant/m_mask.png").string()), std::string::npos) << e.what();
}

// ---------------------------------------------------------------- CSV

TEST(DatasetCsv, ParserFollowsRfc4180) {
  const std::string text =
      "\xEF\xBB\xBFimage,label\r\n"
      "\"a, b.png\",1\r\n"
      "\r\n"
      "\"say \"\"hi\"\".png\", normal \n"
      "\"two\nlines.png\",0\n"
      "plain.png,\"1\"";
  const auto records = parse_csv(text, "m.csv");
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[0].fields, (std::vector<std::string>{"image", "label"}));
  EXPECT_EQ(records[1].fields, (std::vector<std::string>{"a, b.png", "1"}));
  EXPECT_EQ(records[1].line, 2);
  EXPECT_EQ(records[2].fields, (std::vector<std::string>{"say \"hi\".png", "normal"}));
  EXPECT_EQ(records[2].line, 4);
  EXPECT_EQ(records[3].fields, (std::vector<std::string>{"two\nlines.png", "0"}));
  EXPECT_EQ(records[4].fields, (std::vector<std::string>{"plain.png", "1"}));
  EXPECT_EQ(records[4].line, 7);
  EXPECT_EQ(parse_csv("a,,c\n", "m.csv")[0].fields, (std::vector<std::string>{"a", "", "c"}));

  const Error open = error_of([] { (void)parse_csv("image,label\n\"a.png,1\n", "m.csv"); });
  EXPECT_EQ(open.path(), "m.csv");
  EXPECT_NE(open.problem().find("line 2"), std::string::npos) << open.what();
  const Error stray = error_of([] { (void)parse_csv("image,label\n\"a\"x.png,1\n", "m.csv"); });
  EXPECT_NE(stray.problem().find("line 2"), std::string::npos) << stray.what();
}

TEST(DatasetCsv, QuotedRelativePathsLabelsAndSplitsInAnyColumnOrder) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  write_image(root / "data/img, one.png");
  write_mask(root / "data/mask, one.png", 0, 1, 0, 1);
  write_image(root / "data/b.png");
  write_image(root / "data/c.png");
  write_image(root / "data/d.png");
  write_image(root / "e.png");
  write_text(root / "data/manifest.csv",
             "split,mask,label,image\r\n"
             "test,\"mask, one.png\",abnormal,\"img, one.png\"\r\n"
             "train,,good,b.png\r\n"
             "val,,Normal,c.png\r\n"
             "valid,,UNGOOD,d.png\r\n"
             "train,,0," +
                 (root / "e.png").string() + "\r\n");
  const Dataset d = load_dataset(spec_for(root / "data/manifest.csv"));
  EXPECT_EQ(d.layout, Layout::Csv);
  ASSERT_EQ(d.samples.size(), 5u);
  const Sample* one = find(d, "img, one.png");
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->image, (root / "data/img, one.png").string());
  EXPECT_EQ(one->mask, (root / "data/mask, one.png").string());
  EXPECT_EQ(one->label, 1);
  EXPECT_EQ(one->split, Split::Test);
  EXPECT_EQ(find(d, "b.png")->split, Split::Train);
  EXPECT_EQ(find(d, "c.png")->split, Split::Valid);
  EXPECT_EQ(find(d, "c.png")->label, 0);
  EXPECT_EQ(find(d, "d.png")->label, 1);
  EXPECT_EQ(find(d, "e.png")->image, (root / "e.png").string());
  EXPECT_EQ(count(d, Split::Train, 0), 2u);
}

TEST(DatasetCsv, WithoutSplitColumnTestAndValidAreCarved) {
  test::ScratchDir dir;
  std::string csv = "label,image\n";
  for (int i = 0; i < 10; ++i) {
    write_image(dir.path() / ("n" + std::to_string(i) + ".png"));
    write_image(dir.path() / ("a" + std::to_string(i) + ".png"));
    csv += "0,n" + std::to_string(i) + ".png\n1,a" + std::to_string(i) + ".png\n";
  }
  write_text(dir.path() / "all.csv", csv);
  const Dataset d = load_dataset(spec_for(dir.path() / "all.csv"));
  for (int label : {0, 1}) {
    EXPECT_EQ(count(d, Split::Test, label), 2u);
    EXPECT_EQ(count(d, Split::Valid, label), 2u);
    EXPECT_EQ(count(d, Split::Train, label), 6u);
  }
  expect_no_shared_file(d);
}

TEST(DatasetCsv, BadRowsNameTheCsvAndTheLine) {
  test::ScratchDir dir;
  write_image(dir.path() / "a.png");
  write_image(dir.path() / "b.png");
  const auto error_for = [&](const std::string& text) {
    write_text(dir.path() / "m.csv", text);
    return error_of([&] { (void)load_dataset(spec_for(dir.path() / "m.csv")); });
  };
  const std::string csv = (dir.path() / "m.csv").string();

  Error e = error_for("image,label\na.png,0\nb.png,maybe\n");
  EXPECT_EQ(e.path(), csv);
  EXPECT_NE(e.problem().find("line 3"), std::string::npos) << e.what();
  EXPECT_NE(e.problem().find("maybe"), std::string::npos) << e.what();

  e = error_for("image,label\na.png,0\n\"gone, really.png\",1\n");
  EXPECT_EQ(e.path(), csv);
  EXPECT_NE(e.problem().find("line 3"), std::string::npos) << e.what();
  EXPECT_NE(e.problem().find("gone, really.png"), std::string::npos) << e.what();

  e = error_for("image,label,mask\na.png,1,nomask.png\n");
  EXPECT_NE(e.problem().find("line 2"), std::string::npos) << e.what();
  EXPECT_NE(e.problem().find("nomask.png"), std::string::npos) << e.what();

  e = error_for("image,label,split\na.png,1,holdout\n");
  EXPECT_NE(e.problem().find("holdout"), std::string::npos) << e.what();

  e = error_for("image,label\na.png,1,extra\n");
  EXPECT_NE(e.problem().find("line 2"), std::string::npos) << e.what();

  e = error_for("path_to_file,target\na.png,1\n");
  EXPECT_EQ(e.path(), csv);
  EXPECT_NE(e.problem().find("image"), std::string::npos) << e.what();

  e = error_for("image,label,split\na.png,0,train\nb.png,1,test\na.png,0,test\n");  // one file, two splits
  EXPECT_EQ(e.path(), csv);
  EXPECT_NE(e.problem().find("line 4"), std::string::npos) << e.what();
  EXPECT_NE(e.problem().find("line 2"), std::string::npos) << e.what();

  e = error_for("image,label\n");
  EXPECT_EQ(e.path(), csv);
  EXPECT_NE(e.problem().find("empty dataset"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------- detection and errors

TEST(DatasetDetect, EachLayoutIsRecognised) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  make_mvfa(root / "mvfa");
  write_images(root / "bmad_test_only/test/Ungood", "a", 1);
  write_images(root / "busi/normal", "n", 1);
  write_images(root / "busi/malignant", "m", 1);
  write_images(root / "busi_benign/Normal", "n", 1);
  write_images(root / "busi_benign/Benign", "b", 1);
  write_images(root / "folder/good", "n", 1);
  write_images(root / "folder/Ungood", "a", 1);
  write_text(root / "list.CSV", "image,label\n");
  EXPECT_EQ(detect_layout((root / "mvfa").string()), Layout::Bmad);
  EXPECT_EQ(detect_layout((root / "bmad_test_only").string()), Layout::Bmad);
  EXPECT_EQ(detect_layout((root / "busi").string()), Layout::Busi);
  EXPECT_EQ(detect_layout((root / "busi_benign").string()), Layout::Busi);
  EXPECT_EQ(detect_layout((root / "folder").string()), Layout::Folder);
  EXPECT_EQ(detect_layout((root / "list.CSV").string()), Layout::Csv);
  EXPECT_EQ(load_dataset(spec_for(root / "busi")).layout, Layout::Busi);
  EXPECT_EQ(load_dataset(spec_for(root / "bmad_test_only")).samples.size(), 1u);
}

TEST(DatasetDetect, ParseLayoutNames) {
  EXPECT_EQ(parse_layout("auto"), Layout::Auto);
  EXPECT_EQ(parse_layout("bmad"), Layout::Bmad);
  EXPECT_EQ(parse_layout("MVFA"), Layout::Bmad);
  EXPECT_EQ(parse_layout("folder"), Layout::Folder);
  EXPECT_EQ(parse_layout("busi"), Layout::Busi);
  EXPECT_EQ(parse_layout("csv"), Layout::Csv);
  const Error e = error_of([] { (void)parse_layout("mvtec"); });
  EXPECT_NE(e.problem().find("mvtec"), std::string::npos) << e.what();
  EXPECT_STREQ(to_string(Split::Train), "train");
  EXPECT_STREQ(to_string(Split::Valid), "valid");
  EXPECT_STREQ(to_string(Split::Test), "test");
}

TEST(DatasetErrors, MissingRootUnrecognisedTreeAndEmptyDataset) {
  test::ScratchDir dir;
  const fs::path root = dir.path();
  Error e = error_of([&] { (void)load_dataset(spec_for(root / "absent")); });
  EXPECT_EQ(e.path(), (root / "absent").string());
  EXPECT_NE(e.problem().find("no such"), std::string::npos) << e.what();

  write_images(root / "stuff/pictures", "p", 2);
  e = error_of([&] { (void)load_dataset(spec_for(root / "stuff")); });
  EXPECT_EQ(e.path(), (root / "stuff").string());
  for (const char* looked_for : {".csv", "train/", "Ungood", "benign/", "normal_dir"})
    EXPECT_NE(e.problem().find(looked_for), std::string::npos) << looked_for << " in " << e.what();

  fs::create_directories(root / "empty/train/good/img");
  fs::create_directories(root / "empty/test/Ungood/img");
  e = error_of([&] { (void)load_dataset(spec_for(root / "empty")); });
  EXPECT_EQ(e.path(), (root / "empty").string());
  EXPECT_NE(e.problem().find("empty dataset"), std::string::npos) << e.what();

  write_text(root / "notes.txt", "x");
  e = error_of([&] { (void)load_dataset(spec_for(root / "notes.txt")); });
  EXPECT_EQ(e.path(), (root / "notes.txt").string());

  e = error_of([] { (void)load_dataset(DatasetSpec{}); });
  EXPECT_NE(e.problem().find("root"), std::string::npos) << e.what();

  DatasetSpec bad = spec_for(root);
  bad.valid_fraction = 1.5;
  e = error_of([&] { (void)load_dataset(bad); });
  EXPECT_NE(e.problem().find("valid_fraction"), std::string::npos) << e.what();
}

TEST(DatasetErrors, OneFileInTwoPlacesIsAnError) {
  test::ScratchDir dir;
  write_images(dir.path() / "imgs", "x", 3);
  DatasetSpec spec;
  spec.layout = Layout::Folder;
  spec.normal_dir = (dir.path() / "imgs").string();
  spec.abnormal_dir = (dir.path() / "imgs/.").string();
  const Error e = error_of([&] { (void)load_dataset(spec); });
  EXPECT_NE(e.problem().find("twice"), std::string::npos) << e.what();
  EXPECT_NE(e.path().find("x00"), std::string::npos) << e.what();
}

// ---------------------------------------------------------------- seeds, budget, summary

namespace {
Dataset load_big_folder(const fs::path& root, uint64_t seed, int64_t budget = -1) {
  if (!fs::exists(root / "normal")) {
    write_images(root / "normal", "n", 40);
    write_images(root / "abnormal", "a", 40);
  }
  DatasetSpec spec;
  spec.root = root.string();
  spec.normal_dir = "normal";
  spec.abnormal_dir = "abnormal";
  spec.seed = seed;
  spec.abnormal_budget = budget;
  return load_dataset(spec);
}
}  // namespace

TEST(DatasetSplits, SameSeedSameSplitsOtherSeedOtherSplits) {
  test::ScratchDir dir;
  const Dataset a = load_big_folder(dir.path(), 7);
  const Dataset b = load_big_folder(dir.path(), 7);
  const Dataset c = load_big_folder(dir.path(), 8);
  for (Split split : {Split::Train, Split::Valid, Split::Test}) EXPECT_EQ(images_of(a, split), images_of(b, split));
  EXPECT_NE(images_of(a, Split::Test), images_of(c, Split::Test));
  EXPECT_NE(images_of(a, Split::Valid), images_of(c, Split::Valid));
  for (const Dataset* d : {&a, &c}) {
    expect_no_shared_file(*d);
    EXPECT_EQ(d->samples.size(), 80u);
    for (int label : {0, 1}) {
      EXPECT_EQ(count(*d, Split::Test, label), 8u);   // round(0.2 * 40)
      EXPECT_EQ(count(*d, Split::Valid, label), 6u);  // round(0.2 * 32)
      EXPECT_EQ(count(*d, Split::Train, label), 26u);
    }
  }
}

TEST(DatasetSplits, SeedZeroSplitIsPinned) {
  // Pins the platform-independent shuffle (mt19937_64 + our Fisher-Yates): a change here means
  // every saved experiment would silently get other splits.
  test::ScratchDir dir;
  const Dataset d = load_big_folder(dir.path(), 0);
  std::vector<std::string> test_names;
  for (const auto& s : d.split(Split::Test)) test_names.push_back(file_name(s.image));
  EXPECT_EQ(test_names,
            (std::vector<std::string>{"n005.png", "n009.png", "n011.png", "n016.png", "n021.png", "n030.png",
                                      "n031.png", "n034.png", "a006.png", "a016.png", "a018.png", "a021.png",
                                      "a025.png", "a026.png", "a027.png", "a036.png"}));
}

TEST(DatasetBudget, KeepsKAbnormalTrainImagesChosenBySeed) {
  test::ScratchDir dir;
  const Dataset all = load_big_folder(dir.path(), 3);
  const Dataset k5 = load_big_folder(dir.path(), 3, 5);
  const Dataset k5_again = load_big_folder(dir.path(), 3, 5);
  const Dataset k0 = load_big_folder(dir.path(), 3, 0);
  const Dataset k_big = load_big_folder(dir.path(), 3, 1000);
  EXPECT_EQ(count(k5, Split::Train, 1), 5u);
  EXPECT_EQ(count(k5, Split::Train, 0), 26u);
  EXPECT_EQ(count(k0, Split::Train, 1), 0u);
  EXPECT_EQ(count(k_big, Split::Train, 1), 26u);
  EXPECT_EQ(k5.samples.size(), 80u - 21u);  // dropped, not moved
  EXPECT_EQ(images_of(k5, Split::Valid), images_of(all, Split::Valid));
  EXPECT_EQ(images_of(k5, Split::Test), images_of(all, Split::Test));
  EXPECT_EQ(images_of(k5, Split::Train), images_of(k5_again, Split::Train));
  // The kept ones come from the full train split.
  const auto full_train = images_of(all, Split::Train);
  for (const auto& s : k5.split(Split::Train))
    EXPECT_NE(std::find(full_train.begin(), full_train.end(), s.image), full_train.end());
  // Another seed keeps another subset (of another train split).
  const Dataset other = load_big_folder(dir.path(), 4, 5);
  EXPECT_NE(images_of(other, Split::Train), images_of(k5, Split::Train));
}

TEST(DatasetSummary, CountsPerSplitAndMasksFoundOrMissing) {
  test::ScratchDir dir;
  make_mvfa(dir.path());
  const std::string text = dataset_summary(load_dataset(spec_for(dir.path())));
  EXPECT_NE(text.find("layout: bmad, 14 images"), std::string::npos) << text;
  EXPECT_NE(text.find("split    normal  abnormal  masks found  masks missing"), std::string::npos) << text;
  EXPECT_NE(text.find("train         5         0            0              0"), std::string::npos) << text;
  EXPECT_NE(text.find("valid         2         3            2              1"), std::string::npos) << text;
  EXPECT_NE(text.find("test          2         2            2              0"), std::string::npos) << text;
  EXPECT_NE(text.find("total         9         5            4              1"), std::string::npos) << text;
}

// ---------------------------------------------------------------- masks

TEST(MaskIo, BinarisesAnyNonzeroPixel) {
  test::ScratchDir dir;
  cv::Mat grey(2, 3, CV_8UC1, cv::Scalar(0));
  grey.at<uint8_t>(0, 1) = 1;
  grey.at<uint8_t>(1, 2) = 255;
  cv::imwrite(dir.file("g.png"), grey);
  const auto mask = read_mask(dir.file("g.png"), "img.png", 2, 3);
  EXPECT_EQ(mask.scalar_type(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(mask, torch::tensor({0.f, 1.f, 0.f, 0.f, 0.f, 1.f}).reshape({2, 3})));

  cv::Mat wide(2, 3, CV_16UC1, cv::Scalar(0));
  wide.at<uint16_t>(1, 0) = 300;
  cv::imwrite(dir.file("w.png"), wide);
  EXPECT_EQ(read_mask(dir.file("w.png"), "img.png", 2, 3)[1][0].item<float>(), 1.0f);
  EXPECT_EQ(read_mask(dir.file("w.png"), "img.png", 2, 3).sum().item<float>(), 1.0f);

  cv::Mat colour(2, 3, CV_8UC4, cv::Scalar(0, 0, 0, 255));  // opaque alpha is not foreground
  colour.at<cv::Vec4b>(0, 0) = cv::Vec4b(0, 0, 9, 255);
  cv::imwrite(dir.file("c.png"), colour);
  EXPECT_EQ(read_mask(dir.file("c.png"), "img.png", 2, 3).sum().item<float>(), 1.0f);
}

TEST(MaskIo, SizeMismatchNamesBothFilesAndSizes) {
  test::ScratchDir dir;
  write_mask(dir.file("m.png"), 0, 1, 0, 1, 255, 6, 8);
  const Error e = error_of([&] { (void)read_mask(dir.file("m.png"), dir.file("image.png"), 7, 8); });
  EXPECT_EQ(e.path(), dir.file("m.png"));
  EXPECT_NE(e.problem().find(dir.file("image.png")), std::string::npos) << e.what();
  EXPECT_NE(e.problem().find("6x8"), std::string::npos) << e.what();
  EXPECT_NE(e.problem().find("7x8"), std::string::npos) << e.what();
}

TEST(MaskIo, MissingOrUndecodableMaskNamesTheMask) {
  test::ScratchDir dir;
  Error e = error_of([&] { (void)read_mask(dir.file("none.png"), "i.png", 2, 2); });
  EXPECT_EQ(e.path(), dir.file("none.png"));
  write_text(dir.file("junk.png"), "not a png");
  e = error_of([&] { (void)read_mask(dir.file("junk.png"), "i.png", 2, 2); });
  EXPECT_EQ(e.path(), dir.file("junk.png"));
  EXPECT_NE(e.problem().find("decode"), std::string::npos) << e.what();
}

TEST(MaskIo, MergeIsPixelwiseOr) {
  test::ScratchDir dir;
  write_mask(dir.file("a.png"), 0, 1, 0, 8);
  write_mask(dir.file("b.png"), 0, 6, 0, 1, 3);
  merge_masks({dir.file("a.png"), dir.file("b.png")}, dir.file("out.png"));
  const cv::Mat out = cv::imread(dir.file("out.png"), cv::IMREAD_UNCHANGED);
  ASSERT_EQ(out.type(), CV_8UC1);
  EXPECT_EQ(cv::countNonZero(out), 8 + 5);
  EXPECT_EQ(out.at<uint8_t>(3, 0), 255);
  EXPECT_EQ(out.at<uint8_t>(3, 3), 0);
}
