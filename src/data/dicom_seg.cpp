#include "data/dicom_seg.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>

#include <dcmtk/config/osconfig.h>  // first, as DCMTK requires
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmfg/fgderimg.h>
#include <dcmtk/dcmfg/fgfracon.h>
#include <dcmtk/dcmfg/fgpixmsr.h>
#include <dcmtk/dcmfg/fgplanor.h>
#include <dcmtk/dcmfg/fgplanpo.h>
#include <dcmtk/dcmiod/iodreferences.h>
#include <dcmtk/dcmseg/segdoc.h>
#include <dcmtk/dcmseg/segment.h>

#include "core/error.h"
#include "data/dicom_io.h"

namespace medsad::data {
namespace {

// What a frame needs from its source's header. Positions and orientations stay the source's own
// decimal strings, so that the segmentation places each frame exactly where its image is.
struct SourceHeader {
  std::string sop_class, sop_instance;
  int rows = 0, columns = 0;
  std::vector<std::string> position, orientation, spacing;  // 3, 6, 2 values, or empty
  std::string thickness;
};

std::vector<std::string> strings_of(DcmItem* data, const DcmTagKey& tag, unsigned long count) {
  std::vector<std::string> values;
  for (unsigned long i = 0; i < count; ++i) {
    OFString value;
    if (data->findAndGetOFString(tag, value, i).bad() || value.empty()) return {};
    values.emplace_back(value.c_str());
  }
  return values;
}

// The first item of functional group `macro` (e.g. the Plane Position Sequence) for frame `frame`
// (1-based) of an enhanced multi-frame image: the frame's own, else the shared one; null if none.
DcmItem* functional_group(DcmDataset* data, const DcmTagKey& macro, int64_t frame) {
  DcmItem *groups = nullptr, *item = nullptr;
  if (data->findAndGetSequenceItem(DCM_PerFrameFunctionalGroupsSequence, groups, static_cast<int>(frame - 1)).good() &&
      groups->findAndGetSequenceItem(macro, item).good())
    return item;
  if (data->findAndGetSequenceItem(DCM_SharedFunctionalGroupsSequence, groups).good() &&
      groups->findAndGetSequenceItem(macro, item).good())
    return item;
  return nullptr;
}

// `frame`: 0 for a single-frame image, whose geometry is in its top-level tags; k >= 1 for frame
// k of a multi-frame one, whose geometry (if any) is in its functional groups.
SourceHeader read_source_header(DcmFileFormat& file, const std::string& path, int64_t frame) {
  DcmDataset* data = file.getDataset();
  SourceHeader h;
  OFString sop_class, sop_instance;
  Uint16 rows = 0, columns = 0;
  if (data->findAndGetOFString(DCM_SOPClassUID, sop_class).bad() ||
      data->findAndGetOFString(DCM_SOPInstanceUID, sop_instance).bad() || sop_instance.empty())
    fail(path, "no SOP Class or Instance UID: a segmentation cannot reference it");
  if (data->findAndGetUint16(DCM_Rows, rows).bad() || data->findAndGetUint16(DCM_Columns, columns).bad())
    fail(path, "no Rows or Columns");
  h.sop_class = sop_class.c_str();
  h.sop_instance = sop_instance.c_str();
  h.rows = rows;
  h.columns = columns;
  DcmItem *position = data, *orientation = data, *measures = data;
  if (frame > 0) {
    Sint32 frames = 1;
    data->findAndGetSint32(DCM_NumberOfFrames, frames);
    if (frame > frames)
      fail(path, "has no frame " + std::to_string(frame) + " (" + std::to_string(frames) + " frames)");
    position = functional_group(data, DCM_PlanePositionSequence, frame);
    orientation = functional_group(data, DCM_PlaneOrientationSequence, frame);
    measures = functional_group(data, DCM_PixelMeasuresSequence, frame);
  }
  if (position) h.position = strings_of(position, DCM_ImagePositionPatient, 3);
  if (orientation) h.orientation = strings_of(orientation, DCM_ImageOrientationPatient, 6);
  if (measures) h.spacing = strings_of(measures, DCM_PixelSpacing, 2);
  const auto thickness = measures ? strings_of(measures, DCM_SliceThickness, 1) : std::vector<std::string>{};
  if (!thickness.empty()) h.thickness = thickness[0];
  return h;
}

// The storage classes whose images the standard makes single-frame: a reference to them names no
// frame (PS3.3 C.10.6 via dciodvfy: "shall not be present for a SOP class that is not multi-frame").
bool is_single_frame_class(const std::string& sop_class) {
  static const char* const kSingleFrame[] = {
      UID_CTImageStorage, UID_MRImageStorage, UID_ComputedRadiographyImageStorage, UID_UltrasoundImageStorage,
      UID_SecondaryCaptureImageStorage, UID_PositronEmissionTomographyImageStorage,
      UID_DigitalXRayImageStorageForPresentation, UID_DigitalXRayImageStorageForProcessing,
      UID_DigitalMammographyXRayImageStorageForPresentation, UID_DigitalMammographyXRayImageStorageForProcessing,
      UID_DigitalIntraOralXRayImageStorageForPresentation, UID_DigitalIntraOralXRayImageStorageForProcessing};
  return std::any_of(std::begin(kSingleFrame), std::end(kSingleFrame),
                     [&](const char* uid) { return sop_class == uid; });
}

void check(const OFCondition& status, const std::string& path, const std::string& what) {
  if (status.bad()) fail(path, "cannot " + what + " (" + status.text() + ")");
}

}  // namespace

void write_dicom_segmentation(const std::string& path, const std::vector<SegmentationFrame>& frames,
                              const std::string& description) {
  if (frames.empty()) fail(path, "no frames to write");
  std::vector<std::unique_ptr<DcmFileFormat>> files;  // each source once, in order of first use
  std::map<std::string, size_t> file_of;
  std::vector<SourceHeader> headers;
  for (size_t i = 0; i < frames.size(); ++i) {
    auto [at, added] = file_of.emplace(frames[i].source, files.size());
    if (added) {
      files.push_back(std::make_unique<DcmFileFormat>());
      load_dicom_header(*files.back(), frames[i].source);
    }
    headers.push_back(read_source_header(*files[at->second], frames[i].source, frames[i].frame));
    const auto& mask = frames[i].mask;
    if (mask.dim() != 2 || mask.size(0) != headers[i].rows || mask.size(1) != headers[i].columns)
      fail(frames[i].source, "its mask is not " + std::to_string(headers[i].rows) + "x" +
                                 std::to_string(headers[i].columns) + ", the image's size");
    if (headers[i].rows != headers[0].rows || headers[i].columns != headers[0].columns)
      fail(frames[i].source, "a different size from " + frames[0].source + ": one segmentation holds one size");
  }
  // Pixel sizes are given when every source has one, and frames are placed when every source
  // also has a position and an orientation; each is shared by all frames when all sources agree
  // on it, and given frame by frame otherwise.
  bool measured = true, placed = true, same_measures = true, same_orientation = true;
  for (const auto& h : headers) {
    measured = measured && h.spacing.size() == 2;
    placed = placed && h.position.size() == 3 && h.orientation.size() == 6;
    same_measures = same_measures && h.spacing == headers[0].spacing && h.thickness == headers[0].thickness;
    same_orientation = same_orientation && h.orientation == headers[0].orientation;
  }
  placed = placed && measured;

  DcmSegmentation* created = nullptr;
  const IODGeneralEquipmentModule::EquipmentInfo equipment("medsad", "MedSAD-CLIP", "1", "medsad");
  const ContentIdentificationMacro content("1", "LESION", description, "");  // creator: a person's name, none
  check(DcmSegmentation::createBinarySegmentation(created, static_cast<Uint16>(headers[0].rows),
                                                  static_cast<Uint16>(headers[0].columns), equipment, content),
        path, "create a segmentation");
  std::unique_ptr<DcmSegmentation> seg(created);
  check(seg->importFromSourceImage(*files[0]->getDataset()), frames[0].source, "take its patient and study");
  // Headers in the wild break their own value representations (a Study Time of the wrong form),
  // and DCMTK will not write such a value: an imported value that fails its VR's check is emptied
  // (the patient and study attributes that may fail it are type 2, present but possibly empty).
  DcmItem& imported = *seg->getData();
  for (unsigned long i = 0; i < imported.card(); ++i) {
    DcmElement* element = imported.getElement(i);
    if (element->ident() != EVR_SQ && element->checkValue().bad()) element->putString("");
  }
  // Without the source's frame of reference (none, or an empty or broken UID) frames cannot be
  // placed, and the segmentation has none either (the module is conditional in its IOD).
  // Nor can it keep one without every frame's pixel size, which DCMTK then requires.
  OFString frame_of_reference;
  if (imported.findAndGetOFString(DCM_FrameOfReferenceUID, frame_of_reference).bad() || frame_of_reference.empty() ||
      !measured) {
    imported.findAndDeleteElement(DCM_FrameOfReferenceUID);
    seg->getFrameOfReference().makeOptional();
    placed = false;
  }
  check(seg->getSeries().setSeriesDescription(description.substr(0, 64), OFFalse), path, "set the series");
  check(seg->getSeries().setSeriesNumber("900"), path, "set the series number");

  DcmSegment* segment = nullptr;
  check(DcmSegment::create(segment, "Lesion", CodeSequenceMacro("49755003", "SCT", "Morphologically Altered Structure"),
                           CodeSequenceMacro("52988006", "SCT", "Lesion"), DcmSegTypes::SAT_AUTOMATIC, "MedSAD-CLIP"),
        path, "create the segment");
  Uint16 segment_number = 0;
  check(seg->addSegment(segment, segment_number), path, "add the segment");  // takes ownership

  // Dimensions: the segment, then (for placed frames) the position in the patient.
  char organization[100];
  dcmGenerateUniqueIdentifier(organization, SITE_INSTANCE_UID_ROOT);
  auto& dimensions = seg->getDimensions();
  check(dimensions.addDimensionIndex(DCM_ReferencedSegmentNumber, organization, DCM_SegmentIdentificationSequence,
                                     "ReferencedSegmentNumber"),
        path, "add a dimension");
  // The functional groups of a frame's pixel size and orientation, from its source's header.
  const auto measures_of = [&](size_t i) {
    auto measures = std::make_unique<FGPixelMeasures>();
    check(measures->setPixelSpacing((headers[i].spacing[0] + "\\" + headers[i].spacing[1]).c_str()),
          frames[i].source, "take its pixel spacing");
    if (!headers[i].thickness.empty())
      check(measures->setSliceThickness(headers[i].thickness.c_str()), frames[i].source, "take its slice thickness");
    return measures;
  };
  const auto orientation_of = [&](size_t i) {
    const auto& o = headers[i].orientation;
    std::unique_ptr<FGPlaneOrientationPatient> orientation(FGPlaneOrientationPatient::createMinimal(
        o[0].c_str(), o[1].c_str(), o[2].c_str(), o[3].c_str(), o[4].c_str(), o[5].c_str()));
    if (!orientation) fail(frames[i].source, "its Image Orientation (Patient) is not valid");
    return orientation;
  };
  if (measured && same_measures) check(seg->addForAllFrames(*measures_of(0)), path, "add the pixel measures");
  if (placed) {
    check(dimensions.addDimensionIndex(DCM_ImagePositionPatient, organization, DCM_PlanePositionSequence,
                                       "ImagePositionPatient"),
          path, "add a dimension");
    if (same_orientation) check(seg->addForAllFrames(*orientation_of(0)), path, "add the plane orientation");
  }

  for (size_t i = 0; i < frames.size(); ++i) {
    const auto& h = headers[i];
    auto bytes = (frames[i].mask != 0).to(torch::kUInt8).contiguous();  // one byte per pixel, 0 or 1
    FGFrameContent frame_content;
    check(frame_content.setDimensionIndexValues(segment_number, 0), path, "set a dimension index");
    std::unique_ptr<FGPlanePosPatient> position;
    if (placed) {
      // The n-th distinct position along the stack: 1-based in the frames' order.
      check(frame_content.setDimensionIndexValues(static_cast<Uint32>(i + 1), 1), path, "set a dimension index");
      position.reset(FGPlanePosPatient::createMinimal(h.position[0].c_str(), h.position[1].c_str(),
                                                      h.position[2].c_str()));
      if (!position) fail(frames[i].source, "its Image Position (Patient) is not valid");
    }
    ImageSOPInstanceReferenceMacro* reference = nullptr;
    check(ImageSOPInstanceReferenceMacro::create(h.sop_class.c_str(), h.sop_instance.c_str(), reference),
          frames[i].source, "reference it");
    // The frame number is set apart: DCMTK 3.6.7's create() with frames puts numbers into the
    // Integer String element as binary and fails. A file of a single-frame class that holds
    // several frames anyway (as some legacy MR does) may not be referenced by frame.
    if (frames[i].frame > 0 && !is_single_frame_class(h.sop_class)) {
      const OFCondition status = reference->addReferencedFrameNumber(static_cast<Uint16>(frames[i].frame));
      if (status.bad()) delete reference;
      check(status, frames[i].source, "reference its frame");
    }
    const OFVector<ImageSOPInstanceReferenceMacro> derived_from(1, *reference);
    delete reference;
    std::unique_ptr<FGDerivationImage> derivation(
        DcmSegmentation::createDerivationImageFG(derived_from, "MedSAD-CLIP lesion mask at its calibrated threshold"));
    if (!derivation) fail(frames[i].source, "cannot make the derivation reference");
    OFVector<FGBase*> per_frame;
    per_frame.push_back(&frame_content);
    per_frame.push_back(derivation.get());
    if (position) per_frame.push_back(position.get());
    std::unique_ptr<FGPixelMeasures> measures;
    std::unique_ptr<FGPlaneOrientationPatient> orientation;
    if (measured && !same_measures) per_frame.push_back((measures = measures_of(i)).get());
    if (placed && !same_orientation) per_frame.push_back((orientation = orientation_of(i)).get());
    check(seg->addFrame(bytes.data_ptr<uint8_t>(), segment_number, per_frame), path, "add a frame");
  }

  // Each source once, each with its series and study, from the headers already loaded.
  IODReferences references;
  for (const auto& file : files) {
    auto reference = std::make_unique<IODImageReference>(IODReference::LEVEL_STUDY);
    if (reference->readFromItem(*file->getDataset()) && references.add(reference.get())) reference.release();
  }
  OFString study;
  files[0]->getDataset()->findAndGetOFString(DCM_StudyInstanceUID, study);
  seg->getCommonInstanceReference().addReferences(references, study);

  DcmFileFormat out;
  check(seg->writeDataset(*out.getDataset()), path, "make the segmentation");
  if (!placed) {  // frames not placed in the patient: the image's orientation is then required (type 2C)
    OFString orientation;
    files[0]->getDataset()->findAndGetOFStringArray(DCM_PatientOrientation, orientation);
    check(out.getDataset()->putAndInsertOFStringArray(DCM_PatientOrientation, orientation), path,
          "set the patient orientation");
  }
  const std::string partial = path + ".partial";
  check(out.saveFile(partial.c_str(), EXS_LittleEndianExplicit), path, "write");
  std::error_code ec;
  std::filesystem::rename(partial, path, ec);
  if (ec) {
    std::filesystem::remove(partial, ec);
    fail(path, "cannot move the written file into place");
  }
}

}  // namespace medsad::data
