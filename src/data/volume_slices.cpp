#include "data/volume_slices.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace medsad::data {
namespace F = torch::nn::functional;
namespace {

// Voxel sizes (mm) of the slice's rows and columns: the two canonical dims left after `axis`.
std::pair<double, double> in_plane_spacing(const data::Volume& v, SliceAxis axis) {
  const int64_t d = axis_dim(axis);
  const int64_t row_dim = d == 0 ? 1 : 0, col_dim = d == 2 ? 1 : 2;
  return {v.spacing_mm[static_cast<size_t>(row_dim)], v.spacing_mm[static_cast<size_t>(col_dim)]};
}

// [rows, cols] -> the square-pixel size (rows, cols) the image is shown at.
std::pair<int64_t, int64_t> square_size(const data::Volume& v, SliceAxis axis) {
  const int64_t d = axis_dim(axis);
  const int64_t rows = v.voxels.size(d == 0 ? 1 : 0), cols = v.voxels.size(d == 2 ? 1 : 2);
  const auto [row_mm, col_mm] = in_plane_spacing(v, axis);
  const double pixel = std::min(row_mm, col_mm);
  return {std::max<int64_t>(1, std::llround(rows * row_mm / pixel)),
          std::max<int64_t>(1, std::llround(cols * col_mm / pixel))};
}

torch::Tensor resize_bilinear(const torch::Tensor& plane, int64_t h, int64_t w) {  // [H, W] -> [h, w]
  if (plane.size(0) == h && plane.size(1) == w) return plane;
  const auto options =
      F::InterpolateFuncOptions().size(std::vector<int64_t>{h, w}).mode(torch::kBilinear).align_corners(false);
  return F::interpolate(plane.unsqueeze(0).unsqueeze(0), options).squeeze(0).squeeze(0);
}

}  // namespace

SliceAxis parse_slice_axis(const std::string& name) {
  if (name == "axial") return SliceAxis::Axial;
  if (name == "coronal") return SliceAxis::Coronal;
  if (name == "sagittal") return SliceAxis::Sagittal;
  fail("", "--axis must be axial, coronal or sagittal, got '" + name + "'");
}

int64_t axis_dim(SliceAxis axis) { return axis == SliceAxis::Axial ? 0 : axis == SliceAxis::Coronal ? 1 : 2; }

const char* to_string(SliceAxis axis) {
  switch (axis) {
    case SliceAxis::Axial: return "axial";
    case SliceAxis::Coronal: return "coronal";
    case SliceAxis::Sagittal: return "sagittal";
  }
  return "?";
}

torch::Tensor volume_slice_image(const data::Volume& volume, SliceAxis axis, int64_t index, float lo, float hi) {
  auto plane = volume.voxels.select(axis_dim(axis), index).to(torch::kFloat32);  // [rows, cols]
  plane = torch::nan_to_num(plane, 0.0, 0.0, 0.0);
  plane = ((plane - lo) / std::max(hi - lo, 1e-12f)).clamp(0.0, 1.0);
  const auto [h, w] = square_size(volume, axis);
  plane = resize_bilinear(plane, h, w).flip({0, 1}).contiguous();  // [h, w]
  return plane.unsqueeze(0).expand({3, h, w}).contiguous();         // [3, h, w]
}

torch::Tensor map_to_slice_grid(const torch::Tensor& map, const data::Volume& volume, SliceAxis axis) {
  const int64_t d = axis_dim(axis);
  const int64_t rows = volume.voxels.size(d == 0 ? 1 : 0), cols = volume.voxels.size(d == 2 ? 1 : 2);
  return resize_bilinear(map.to(torch::kFloat32).flip({0, 1}), rows, cols);  // [rows, cols]
}

IntensityWindow volume_window(const Volume& volume) {
  const auto flat = volume.voxels.flatten();
  auto values = flat.masked_select(torch::isfinite(flat) & (flat != 0));
  if (values.numel() == 0) fail("", "the volume holds no finite non-zero voxel");
  if (values.numel() > (int64_t{1} << 24))  // a sample of 16-32 million is plenty for two percentiles
    values = values.slice(0, 0, values.numel(), values.numel() >> 24);
  const auto sorted = std::get<0>(values.sort());
  const auto at = [&](double q) {
    return sorted[static_cast<int64_t>(q * static_cast<double>(sorted.numel() - 1))].item<float>();
  };
  return {at(0.01), at(0.99)};
}

}  // namespace medsad::data
