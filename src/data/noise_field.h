// Smooth random fields, the raw material of synthetic lesion outlines, textures, elastic warps
// and MRI bias fields.
#pragma once
#include <random>

#include <opencv2/core.hpp>

namespace medsad::data {

// CV_32F [rows, cols] of smooth noise with zero mean and unit standard deviation over the field,
// varying over about `cell` pixels: normal draws on a coarse grid, bicubically upsampled.
// Deterministic given the state of `rng`.
[[nodiscard]] cv::Mat smooth_noise(int rows, int cols, double cell, std::mt19937_64& rng);

}  // namespace medsad::data
