// Volumes as 2-D images: a NIfTI volume's slice along one axis, made the way `medsad synth`
// makes its slices (an intensity window from the volume's 1st-99th percentiles, square pixels in
// mm, shown the radiological way), so that `medsad predict VOLUME`, `medsad slices` and the
// benchmark all hand the model the same picture of a slice.
#pragma once
#include <string>

#include <torch/torch.h>

#include "data/nifti_volume.h"

namespace medsad::data {

enum class SliceAxis { Axial, Coronal, Sagittal };  // along S, A or R of the canonical [S, A, R]

// "axial", "coronal" or "sagittal"; throws Error otherwise.
SliceAxis parse_slice_axis(const std::string& name);
const char* to_string(SliceAxis axis);
// The dim of the canonical [S, A, R] voxel tensor that `axis` slices along: 0, 1 or 2.
int64_t axis_dim(SliceAxis axis);

// Slice `index` along `axis` as an RGB image [3, H, W] in [0, 1]: intensities mapped linearly
// from [lo, hi] to [0, 1] (clamped, NaN -> 0), resampled to square pixels, both in-plane axes
// flipped (superior or anterior up, the subject's right on the left).
torch::Tensor volume_slice_image(const Volume& volume, SliceAxis axis, int64_t index, float lo, float hi);

// The inverse placement of a map [H, W] made on volume_slice_image's image: back to the slice's
// voxel grid [rows, cols] of the canonical volume (bilinear, flips undone).
torch::Tensor map_to_slice_grid(const torch::Tensor& map, const Volume& volume, SliceAxis axis);

struct IntensityWindow {
  float lo = 0, hi = 1;  // mapped to 0 and 1
};

// The 1st and 99th percentiles of the volume's finite non-zero voxels (no brain mask is given;
// zero is the background of skull-stripped volumes). Throws Error("", ...) when there is none.
IntensityWindow volume_window(const Volume& volume);

}  // namespace medsad::data
