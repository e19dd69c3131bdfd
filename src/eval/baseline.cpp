#include "eval/baseline.h"

#include "core/error.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "model/medsad_clip.h"

namespace medsad::eval {
namespace {

torch::Tensor grey_at(const torch::Tensor& rgb, int64_t size) {
  return data::resize_image(rgb, size).mean(0);  // [S, S]
}

}  // namespace

MeanDeviationBaseline fit_mean_deviation(const std::vector<data::Sample>& samples, int64_t size) {
  if (size < 8 || size > 4096) fail("", "baseline image size must be between 8 and 4096");
  torch::Tensor sum = torch::zeros({size, size}, torch::kFloat64), sum_sq = torch::zeros_like(sum);
  int64_t n = 0;
  for (const auto& s : samples) {
    if (s.label != 0) continue;
    const auto grey = grey_at(read_image_rgb(s.image), size).to(torch::kFloat64);
    sum += grey;
    sum_sq += grey * grey;
    ++n;
  }
  if (n == 0) fail("", "the baseline needs normal training images, and there are none");
  MeanDeviationBaseline b;
  b.size = size;
  b.mean = (sum / n).to(torch::kFloat32);
  // Where every normal image agrees (background) the spread is ~0 and any noise would be an
  // infinite z-score: floor it at 2% of the grey range.
  b.std = (sum_sq / n - (sum / n).pow(2)).clamp_min(0).sqrt().clamp_min(0.02).to(torch::kFloat32);
  b.smooth_sigma = 4.0 * size / 240.0;
  return b;
}

std::vector<ImageResult> MeanDeviationBaseline::predict(const std::vector<torch::Tensor>& images) const {
  std::vector<ImageResult> results(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    const auto z = (grey_at(images[i], size) - mean).abs() / std;  // [S, S]
    const auto map = model::gaussian_smooth((z / (1 + z)).unsqueeze(0), smooth_sigma);  // [1, S, S]
    results[i].score = model::top_percent_mean(map).item<double>();
    results[i].map = data::resize_map(map[0], images[i].size(1), images[i].size(2)).clone();
  }
  return results;
}

}  // namespace medsad::eval
