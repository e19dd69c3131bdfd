// Scoring a whole NIfTI volume slice by slice (`medsad predict VOLUME.nii.gz`): every slice along
// one axis becomes an image as data/volume_slices.h makes them, is scored, and its anomaly map
// goes back onto the volume's voxel grid.
#pragma once
#include <string>
#include <vector>

#include <torch/torch.h>

#include "clip/config.h"
#include "data/nifti_volume.h"
#include "data/volume_slices.h"
#include "model/medsad_clip.h"

namespace medsad::eval {

struct VolumePrediction {
  std::vector<double> slice_scores;  // per slice along the axis
  torch::Tensor anomaly_map;         // float [S, A, R] in [0, 1], the volume's canonical grid
};

// Scores every slice of `volume` along `axis`, `batch_size` at a time.
VolumePrediction predict_volume(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                const data::Volume& volume, data::SliceAxis axis, int64_t batch_size);

}  // namespace medsad::eval
