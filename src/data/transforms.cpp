#include "data/transforms.h"

#include <cmath>

namespace medsad::data {
namespace F = torch::nn::functional;

torch::Tensor resize_image(const torch::Tensor& rgb, int64_t size) {
  if (rgb.size(1) == size && rgb.size(2) == size) return rgb;
  return F::interpolate(rgb.unsqueeze(0), F::InterpolateFuncOptions()
                                              .size(std::vector<int64_t>{size, size})
                                              .mode(torch::kBicubic)
                                              .align_corners(false)
                                              .antialias(true))
      .squeeze(0)
      .clamp(0.0, 1.0);
}

torch::Tensor resize_mask(const torch::Tensor& mask, int64_t size) {
  if (mask.size(0) == size && mask.size(1) == size) return (mask > 0.5).to(torch::kFloat32);
  return F::interpolate(mask.to(torch::kFloat32).view({1, 1, mask.size(0), mask.size(1)}),
                        F::InterpolateFuncOptions().size(std::vector<int64_t>{size, size}).mode(torch::kNearest))
      .view({size, size})
      .gt(0.5)
      .to(torch::kFloat32);
}

torch::Tensor resize_map(const torch::Tensor& map, int64_t height, int64_t width) {
  if (map.size(0) == height && map.size(1) == width) return map;
  return F::interpolate(map.view({1, 1, map.size(0), map.size(1)}),
                        F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{height, width})
                            .mode(torch::kBilinear)
                            .align_corners(false))
      .view({height, width})
      .clamp(0.0, 1.0);
}

void augment_batch(torch::Tensor& images, torch::Tensor& masks, const AugmentOptions& o) {
  const int64_t B = images.size(0);
  const auto u = torch::rand({B, 7});  // flips, rotation, translation x/y, brightness, contrast
  const double pi = std::acos(-1.0);
  const auto angle = (u.select(1, 2) * 2 - 1) * (o.max_rotation_deg * pi / 180.0);
  const auto flip_x = torch::where(u.select(1, 0) < o.flip_probability, -1.0, 1.0);
  const auto flip_y = torch::where(u.select(1, 1) < o.flip_probability, -1.0, 1.0);
  const auto cos = torch::cos(angle), sin = torch::sin(angle);
  // Output -> input sampling grid: rotation with flips, then translation (normalised coordinates).
  auto theta = torch::stack({torch::stack({cos * flip_x, -sin * flip_y, (u.select(1, 3) * 2 - 1) * 2 * o.max_translation}, 1),
                             torch::stack({sin * flip_x, cos * flip_y, (u.select(1, 4) * 2 - 1) * 2 * o.max_translation}, 1)},
                            1);  // [B, 2, 3]
  const auto grid = F::affine_grid(theta.to(images.dtype()), images.sizes().vec(), /*align_corners=*/false);
  images = F::grid_sample(images, grid,
                          F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
  masks = F::grid_sample(masks.unsqueeze(1), grid,
                         F::GridSampleFuncOptions().mode(torch::kNearest).padding_mode(torch::kZeros).align_corners(false))
              .squeeze(1);
  const auto brightness = ((u.select(1, 5) * 2 - 1) * o.intensity_jitter).view({B, 1, 1, 1});
  const auto contrast = (1 + (u.select(1, 6) * 2 - 1) * o.intensity_jitter).view({B, 1, 1, 1});
  const auto mean = images.mean({1, 2, 3}, /*keepdim=*/true);
  images = ((images - mean) * contrast + mean + brightness).clamp(0.0, 1.0);
}

}  // namespace medsad::data
