#include "eval/volume_predict.h"

#include <algorithm>

#include "core/error.h"
#include "data/image_io.h"
#include "eval/evaluate.h"

namespace medsad::eval {
using data::axis_dim;
using data::map_to_slice_grid;
using data::volume_slice_image;

VolumePrediction predict_volume(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                const data::Volume& volume, data::SliceAxis axis, int64_t batch_size) {
  // The intensity window of `medsad synth` (data/volume_slices.h).
  const auto [lo, hi] = data::volume_window(volume);

  const int64_t d = axis_dim(axis), count = volume.voxels.size(d);

  VolumePrediction out;
  out.anomaly_map = torch::zeros(volume.voxels.sizes(), torch::kFloat32);
  for (int64_t start = 0; start < count; start += batch_size) {
    std::vector<torch::Tensor> images;
    for (int64_t k = start; k < std::min(count, start + batch_size); ++k) {
      images.push_back(volume_slice_image(volume, axis, k, lo, hi));  // [3, H, W], square pixels
      const int64_t rows = images.back().size(1), cols = images.back().size(2);
      if (rows < kMinImageSide || cols < kMinImageSide)
        fail("", "its " + std::string(data::to_string(axis)) + " slices are " + std::to_string(cols) + "x" +
                     std::to_string(rows) + " pixels: too small to score (at least " +
                     std::to_string(kMinImageSide) + " a side)");
    }
    const auto results = predict_images(model, preprocess, images, batch_size);
    for (size_t i = 0; i < results.size(); ++i) {
      out.slice_scores.push_back(results[i].score);
      out.anomaly_map.select(d, start + static_cast<int64_t>(i)).copy_(map_to_slice_grid(results[i].map, volume, axis));
    }
  }
  return out;
}

}  // namespace medsad::eval
