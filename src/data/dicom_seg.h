// Writing lesion masks as a DICOM Segmentation (DCMTK's dcmseg), so that a PACS viewer or 3D
// Slicer shows them over the images they were made from.
//
// One binary segment ("Lesion": SNOMED CT 52988006, category 49755003 morphologically altered
// structure, made by an automatic algorithm), one frame per source image. The object joins the
// source's patient, study and frame of reference, opens a series of its own, and references
// every source image (Common Instance Reference, and each frame's Derivation Image, with the
// source frame's number for a multi-frame image). Sources with a plane position and orientation
// (an enhanced multi-frame image's in its functional groups) give each frame its position.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

namespace medsad::data {

struct SegmentationFrame {
  std::string source;     // a DICOM image
  torch::Tensor mask;     // [rows, columns] of the source, nonzero = lesion
  int64_t frame = 0;      // of a multi-frame source, which frame (1-based); 0: a single-frame image
};

// Writes `frames` (all from one study, of one size) as a DICOM Segmentation to `path`,
// atomically. `description` goes into the series and content descriptions. Throws
// Error(path or a source, ...) on a source that is not DICOM, sizes that differ, or a failed write.
void write_dicom_segmentation(const std::string& path, const std::vector<SegmentationFrame>& frames,
                              const std::string& description);

}  // namespace medsad::data
