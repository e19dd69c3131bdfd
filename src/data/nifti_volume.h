// Reading and writing 3-D NIfTI volumes with niftilib: NIfTI-1 and NIfTI-2, as .nii, .nii.gz and
// .hdr/.img pairs.
//
// A volume comes back in one canonical voxel order, RAS+: the voxel index grows toward the
// subject's Right, Anterior and Superior. The orientation is read from the sform when
// sform_code > 0, else from the qform when qform_code > 0, else the file is taken to be RAS
// already. Only axis permutations and flips are applied (the nearest such order to an oblique
// matrix, as nifti_mat44_to_orientation picks it): voxels are never resampled.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace medsad::data {

struct NiftiHeader;  // a file's header as niftilib read it (nifti_volume.cpp)

struct Volume {
  // float32 [S, A, R] = [D, H, W]: voxels[k][j][i] with i toward Right, j toward Anterior,
  // k toward Superior: voxels[k] is axial slice k, rows posterior to anterior, columns left to right.
  torch::Tensor voxels;
  std::array<double, 3> spacing_mm{1.0, 1.0, 1.0};  // voxel size along dims 0, 1, 2 (S, A, R), mm

  // How the file's voxel order [nk, nj, ni] became [S, A, R], and the file's header (its version,
  // grid, voxel sizes, qform and sform): write_nifti_mask_like uses them to put a result back on
  // the file's own grid.
  std::array<int64_t, 3> permutation{0, 1, 2};  // canonical dim -> file dim
  std::vector<int64_t> flips;                   // canonical dims flipped after the permutation
  std::shared_ptr<const NiftiHeader> header;  // null for a volume not read from a file
};

// Reads any real datatype niftilib reads (u/int8..64, float32/64) as float32 with the header's
// scaling applied (value · scl_slope + scl_inter; scl_slope 0 means unscaled, as NIfTI says).
// Non-finite float voxels read as 0 (niftilib replaces them as it loads). A file of several volumes (dims 4 to 7 above 1: a time series, or
// the contrasts of one subject stacked, as the Medical Segmentation Decathlon's brain tumours
// are) gives its volume `volume_index` (0-based, dims 4 to 7 flattened, dim 4 fastest); -1
// requires a single volume. Throws Error(path, ...) if the file is missing, not NIfTI (ANALYZE
// 7.5 included), truncated, complex/RGB, of several volumes with no index, or without that index.
[[nodiscard]] Volume read_nifti_volume(const std::string& path, int64_t volume_index = -1);

// The binary mask (voxel > 0) in `mask_path`, bool [S, A, R] in the canonical order. Throws
// Error(mask_path, ...) as read_nifti_volume does, or when its canonical shape differs from
// `volume`'s (the message names `volume_path` and both shapes).
[[nodiscard]] torch::Tensor read_nifti_mask(const std::string& mask_path, const Volume& volume,
                                            const std::string& volume_path);

// The lesion voxels (label > 0) of the segmentation in `label_path`, as read_nifti_mask reads a
// mask, after checking that it is one: Error(label_path, ...) for negative values, values that
// are not whole numbers, or over 1000 distinct values.
[[nodiscard]] torch::Tensor read_nifti_labels(const std::string& label_path, const Volume& volume,
                                              const std::string& volume_path);

// Writes `volume` as float32 with an RAS scanner-space qform and sform (origin at voxel 0),
// gzip-compressed when `path` ends in ".gz", atomically. Throws Error(path, ...) on failure.
void write_nifti_volume(const std::string& path, const Volume& volume);

// Writes `mask` ([nk, nj, ni] in the file's voxel order, i fastest; stored as uint8) with
// `affine` (voxel index to RAS mm, row-major 4x4) as its sform and qform, e.g. a DICOM series'
// (data/dicom_io.h, dicom_stack_affine). gzip-compressed when `path` ends in ".gz", atomically.
void write_nifti_mask_with_affine(const std::string& path, const torch::Tensor& mask,
                                  const std::array<double, 16>& affine);

// Writes `mask` (any dtype, [S, A, R] of `source`'s shape; stored as uint8) on `source`'s own voxel
// grid: its NIfTI version, voxel order, dimensions, voxel sizes, qform and sform, so that it overlays
// `source` in any viewer. gzip-compressed when `path` ends in ".gz", atomically. `source` must have been read
// by read_nifti_volume. Throws Error(path, ...) on failure.
void write_nifti_mask_like(const std::string& path, const torch::Tensor& mask, const Volume& source);

}  // namespace medsad::data
