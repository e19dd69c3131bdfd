// `medsad synth` run as a user would: a tiny benchmark with its JSON summary and montage, and
// one-line errors (exit 1) for absurd options and missing volumes.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

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
