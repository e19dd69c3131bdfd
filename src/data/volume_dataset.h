// Labelled NIfTI volumes as a 2-D dataset (`medsad slices`): each case (an image volume and its
// label volume, e.g. BraTS's *_flair.nii.gz and *_seg.nii.gz, or the Medical Segmentation
// Decathlon's imagesTr/ and labelsTr/) is cut into slices along one axis, made exactly as
// `medsad predict VOLUME` makes them (data/volume_slices.h), and written in the MVFA/BMAD layout
// that data/dataset.h reads:
//   DIR/{train,valid,test}/good/img/SUBJECT_sK.png           8-bit grey, slices with no lesion
//   DIR/{train,valid,test}/Ungood/img/SUBJECT_sK.png         slices with a lesion
//   DIR/{train,valid,test}/Ungood/anomaly_mask/SUBJECT_sK.png  0/255, the label > 0
//   DIR/slices.json  options, and per case its files, subject, split and slice counts. Written last.
// Splits are by case (subject), never by slice, so no subject's anatomy is in two splits. A slice
// counts when its tissue (finite non-zero voxels) covers at least min_tissue of the case's largest
// slice; it is abnormal with at least min_lesion_pixels label voxels, normal with none, and left
// out in between (a lesion's last few voxels are neither a clear lesion nor clear of one).
// Files are written under DIR/.slices-partial and moved into place once all are written.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/volume_slices.h"

namespace medsad::data {

struct VolumeCase {
  std::string image, label, subject;
};

struct VolumeSliceOptions {
  std::string images_dir;    // searched recursively for image volumes
  std::string labels_dir;    // label volumes under the same relative paths; "": beside the images
  std::string image_suffix;  // an image volume's name ends with it ("": any .nii or .nii.gz)
  std::string label_suffix;  // without labels_dir: the label is the image's path with image_suffix
                             // replaced by this (both required then)
  std::string out_dir;       // new or empty
  int64_t volume_index = -1;  // of 4-D image files, which volume (read_nifti_volume)
  SliceAxis axis = SliceAxis::Axial;
  std::array<double, 3> split{0.7, 0.1, 0.2};  // shares of the cases: train, valid, test
  uint64_t seed = 0;                           // which cases go to which split
  double min_tissue = 0.25;
  int64_t min_lesion_pixels = 10;

  void validate() const;  // throws Error naming the option and its bad value
};

// The cases the options describe, sorted by subject. Throws Error when a label is missing, two
// cases share a subject, or none is found.
[[nodiscard]] std::vector<VolumeCase> find_volume_cases(const VolumeSliceOptions& options);

struct VolumeSliceSummary {
  int64_t cases[3] = {};      // per split: train, valid, test
  int64_t images[3][2] = {};  // [split][normal, abnormal]
};

// Writes the dataset described above; `progress` (may be empty) hears of each case done.
VolumeSliceSummary write_volume_slices(const VolumeSliceOptions& options,
                                       const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace medsad::data
