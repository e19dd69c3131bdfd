// Scoring a whole NIfTI volume slice by slice (`medsad predict VOLUME.nii.gz`): every slice along
// one axis becomes an image as `medsad synth` makes them (intensity window from the volume's
// 1st-99th percentiles, square pixels in mm, displayed the radiological way), is scored, and its
// anomaly map goes back onto the volume's voxel grid.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "clip/config.h"
#include "data/nifti_volume.h"
#include "model/medsad_clip.h"

namespace medsad::eval {

enum class SliceAxis { Axial, Coronal, Sagittal };  // along S, A or R of the canonical [S, A, R]

// "axial", "coronal" or "sagittal"; throws Error otherwise.
SliceAxis parse_slice_axis(const std::string& name);
const char* to_string(SliceAxis axis);
// The dim of the canonical [S, A, R] voxel tensor that `axis` slices along: 0, 1 or 2.
int64_t axis_dim(SliceAxis axis);

// Slice `index` along `axis` as an RGB image [3, H, W] in [0, 1]: intensities mapped linearly
// from [lo, hi] to [0, 1] (clamped, NaN -> 0), resampled to square pixels, both in-plane axes
// flipped (superior or anterior up, the subject's right on the left).
torch::Tensor volume_slice_image(const data::Volume& volume, SliceAxis axis, int64_t index, float lo, float hi);

// The inverse placement of a map [H, W] made on volume_slice_image's image: back to the slice's
// voxel grid [rows, cols] of the canonical volume (bilinear, flips undone).
torch::Tensor map_to_slice_grid(const torch::Tensor& map, const data::Volume& volume, SliceAxis axis);

struct VolumePrediction {
  std::vector<double> slice_scores;  // per slice along the axis
  torch::Tensor anomaly_map;         // float [S, A, R] in [0, 1], the volume's canonical grid
};

// Scores every slice of `volume` along `axis`, `batch_size` at a time.
VolumePrediction predict_volume(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                const data::Volume& volume, SliceAxis axis, int64_t batch_size);

}  // namespace medsad::eval
