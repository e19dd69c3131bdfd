// A DICOM series folder's lesion masks as one NIfTI volume on the series' own grid and, when
// asked, as one DICOM Segmentation, for `medsad predict --out`.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/dicom_io.h"

namespace medsad::eval {

// The slices of a DICOM series folder given to predict, kept to write the series' lesion mask as
// one NIfTI volume on the series' own grid (NAME_mask.nii.gz, NAME the folder's name), as a
// NIfTI input gets: a viewer then overlays it on the series.
class SeriesMasks {
 public:
  // Records the series among `files` (a series folder's listing, each series together, in
  // position order), the inputs from index `first_input` on. A lone file is no series.
  void add_folder(const std::string& dir, const std::vector<std::string>& files, size_t first_input);

  // Whether input `input` is a slice of a recorded series.
  bool holds(size_t input) const;

  // Keeps the mask [H, W] of input `input` if it is a slice of a recorded series.
  void keep(size_t input, const torch::Tensor& mask);

  // Writes each series whose every slice was scored as NAME_mask.nii.gz and, with `dicom_seg`,
  // NAME_seg.dcm (data/dicom_seg.h); says on stderr why any other has no volume. Returns how
  // many segmentations could not be written (each said on stderr).
  int write(const std::string& out_dir, bool dicom_seg) const;

 private:
  struct Stack {
    std::string dir, name, series;
    size_t first = 0;                               // input index of the first slice
    std::vector<std::string> files;                 // per slice
    std::vector<data::DicomSliceGeometry> slices;   // per slice with geometry
    std::vector<torch::Tensor> masks;               // uint8 [rows, columns] per slice, once scored
    std::string why;                                // why no volume can be written, if known already
  };
  std::vector<Stack> stacks_;
};

}  // namespace medsad::eval
