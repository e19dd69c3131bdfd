// The non-learned reference every benchmark result is compared with: per-pixel deviation from
// the mean of the normal training images. A lesion benchmark is only worth keeping if this
// baseline does clearly worse than MedSAD-CLIP on it.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "data/dataset.h"
#include "eval/evaluate.h"

namespace medsad::eval {

struct MeanDeviationBaseline {
  int64_t size = 0;     // images are compared at size x size
  torch::Tensor mean;   // [S, S] per-pixel mean grey level of the normal training images
  torch::Tensor std;    // [S, S] per-pixel standard deviation, floored (see baseline.cpp)
  double smooth_sigma;  // Gaussian sigma of the map in pixels at S, as MedSAD-CLIP smooths its own

  // Map: the z-score |x - mean| / std squashed to [0, 1) by z / (1 + z), smoothed, at each image's
  // own size; image score: mean of the map's top 1%, as MedSAD-CLIP's Seg part of the score.
  std::vector<ImageResult> predict(const std::vector<torch::Tensor>& images) const;
};

// Fits on the normal images among `samples` (read as grey at size x size). Throws Error if
// there is none or one cannot be read.
MeanDeviationBaseline fit_mean_deviation(const std::vector<data::Sample>& samples, int64_t size);

}  // namespace medsad::eval
