// `medsad synth` run as a user would: a tiny benchmark with its JSON summary and montage, a
// volume picked from a 4-D file, and one-line errors (exit 1) for absurd options and missing
// volumes.
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include <nifti2_io.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "core/file_io.h"
#include "data/nifti_volume.h"
#include "data/synth_benchmark.h"
#include "test_support.h"

namespace medsad {
namespace {

using test::quote;

void expect_one_line_error(const test::CommandResult& r, const std::string& must_contain) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(r.err.rfind("medsad: error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(must_contain), std::string::npos) << "expected '" << must_contain << "' in: " << r.err;
}

TEST(SynthCommand, WritesTheBenchmarkAndPrintsOneJsonLine) {
  test::ScratchDir dir;
  const auto r = test::run_medsad("synth --out " + quote(dir.file("bench")) +
                                  " --size 32 --train 4 --valid 3 --test 3 --abnormal-fraction 0.5 --seed 9" +
                                  " --difficulty easy --variation 2 --montage " + quote(dir.file("docs/montage.png")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  const auto summary = nlohmann::json::parse(r.out);
  EXPECT_EQ(summary["images"]["train"]["normal"], 2);
  EXPECT_EQ(summary["images"]["train"]["abnormal"], 2);
  EXPECT_EQ(summary["images"]["test"]["abnormal"], 2);  // 1.5 rounds up
  EXPECT_GT(summary["slices"]["valid"], 0);
  EXPECT_FALSE(cv::imread(dir.file("docs/montage.png")).empty());
  EXPECT_FALSE(cv::imread(dir.file("bench/valid/Ungood/anomaly_mask/valid_000000.png")).empty());
  std::ifstream record(dir.file("bench/synth.json"));
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(record)["variation"]["max_rotation_deg"].get<double>(), 16.0);  // 2 x 8
}

// Every image and mask file below `root` (not synth.json, which names its sources): relative path -> bytes.
std::map<std::string, std::string> image_files(const std::string& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root))
    if (entry.path().extension() == ".png")
      files[std::filesystem::relative(entry.path(), root).string()] = read_file_text(entry.path().string());
  return files;
}

TEST(SynthCommand, AVolumeOfA4DFileIsPickedByTheIndexFollowingIt) {
  // Colin27 as volume 1 of a 4-D file whose volume 0 is Colin27 mirrored left to right: with
  // --volume-index 1 the benchmark's images are the 3-D volume's, byte for byte; with 0 they differ.
  test::ScratchDir dir;
  const auto colin = data::default_synth_volumes()[0];
  const auto head = data::read_nifti_volume(colin.image);  // canonical [S, A, R]
  const int64_t dims[8] = {4, head.voxels.size(2), head.voxels.size(1), head.voxels.size(0), 2, 1, 1, 1};
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> stack(nifti_make_new_nim(dims, DT_FLOAT32, 1), nifti_image_free);
  ASSERT_TRUE(stack);
  const auto mirrored = head.voxels.flip(2).contiguous(), unchanged = head.voxels.contiguous();
  const auto bytes = static_cast<size_t>(head.voxels.numel()) * sizeof(float);
  std::memcpy(stack->data, mirrored.data_ptr<float>(), bytes);
  std::memcpy(static_cast<char*>(stack->data) + bytes, unchanged.data_ptr<float>(), bytes);
  stack->dx = stack->pixdim[1] = static_cast<float>(head.spacing_mm[2]);
  stack->dy = stack->pixdim[2] = static_cast<float>(head.spacing_mm[1]);
  stack->dz = stack->pixdim[3] = static_cast<float>(head.spacing_mm[0]);
  const std::string stack_path = dir.file("stack.nii");
  nifti_set_filenames(stack.get(), stack_path.c_str(), 0, 1);
  nifti_image_write(stack.get());

  const std::string sizes = " --size 32 --train 3 --valid 3 --test 3 --seed 4";
  const auto run = [&](const std::string& name, const std::string& volume) {
    const auto r = test::run_medsad("synth --out " + quote(dir.file(name)) + sizes + volume);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return image_files(dir.file(name));
  };
  const auto reference = run("from3d", "");
  ASSERT_FALSE(reference.empty());
  EXPECT_EQ(run("vol1", " --volume " + quote(stack_path) + " --volume-index 1 --brain-mask " + quote(colin.brain_mask)),
            reference);
  EXPECT_NE(run("vol0", " --volume " + quote(stack_path) + " --brain-mask " + quote(colin.brain_mask) +
                            " --volume-index 0"),
            reference);
  const auto record = nlohmann::json::parse(read_file_text(dir.file("vol1/synth.json")));
  EXPECT_EQ(record["volumes"][0]["volume_index"], 1);

  const std::string out = " --out " + quote(dir.file("refused"));
  const auto unpicked = test::run_medsad("synth" + out + " --volume " + quote(stack_path));
  EXPECT_EQ(unpicked.exit_code, 1);
  EXPECT_NE(unpicked.err.find(stack_path + ": holds 2 volumes"), std::string::npos) << unpicked.err;
  expect_one_line_error(test::run_medsad("synth" + out + " --volume-index 1 --volume " + quote(stack_path)),
                        "--volume-index 1 must follow the --volume it belongs to");
  expect_one_line_error(test::run_medsad("synth" + out + " --volume-index 1"), "--volume-index needs a --volume");
  expect_one_line_error(test::run_medsad("synth" + out + " --volume " + quote(stack_path) + " --volume-index 2"),
                        "has no volume 2: it holds 2");
}

TEST(SynthCommand, BadOptionsAndMissingVolumesAreOneLineErrors) {
  // One case per way of failing (option range, option name, file, option order); the other
  // ranges are SynthOptions' own tests.
  test::ScratchDir dir;
  const std::string out = " --out " + quote(dir.file("bench"));
  expect_one_line_error(test::run_medsad("synth" + out + " --size 8"), "image size 8 is out of range");
  expect_one_line_error(test::run_medsad("synth" + out + " --difficulty extreme"), "unknown difficulty 'extreme'");
  expect_one_line_error(test::run_medsad("synth" + out + " --variation 5"), "variation 5 is out of range");
  expect_one_line_error(test::run_medsad("synth" + out + " --volume /nonexistent/t1.nii.gz"),
                        "/nonexistent/t1.nii.gz: no such file");
  expect_one_line_error(test::run_medsad("synth" + out + " --brain-mask /tmp/mask.nii.gz"),
                        "/tmp/mask.nii.gz: --brain-mask needs a --volume before it");
}

}  // namespace
}  // namespace medsad
