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
  bool is_series = true;
  std::vector<Error> unreadable;
  const auto files = folder_inputs(dir.path().string(), &is_series, &unreadable);
  EXPECT_FALSE(is_series);
  const std::vector<std::string> expected = {dir.file("a.png"), dir.file("b.png"), dir.file("pair.hdr"),
                                             dir.file("v.nii.gz")};
  EXPECT_EQ(files, expected);
  EXPECT_TRUE(unreadable.empty());
  test::ScratchDir empty;
  EXPECT_THROW((void)folder_inputs(empty.path().string(), &is_series, &unreadable), Error);

  // A .dcm that is not DICOM beside the images: the folder is still its images (the .dcm among
  // them, to fail when read), not an empty series.
  std::ofstream(dir.file("stray.dcm")) << "not DICOM";
  auto with_stray = expected;
  with_stray.insert(with_stray.begin() + 3, dir.file("stray.dcm"));
  EXPECT_EQ(folder_inputs(dir.path().string(), &is_series, &unreadable), with_stray);
  EXPECT_FALSE(is_series);
  EXPECT_TRUE(unreadable.empty());
}
