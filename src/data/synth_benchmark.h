// A brain-MRI lesion benchmark generated from real anatomy (`medsad synth`): axial slices of
// T1 volumes, each output image a slice with fresh random variation (synth_variation.h) and,
// for abnormal images, a fresh synthetic lesion (synth_lesions.h) whose mask is exact.
//
// Slices: after reorientation to RAS+ (nifti_volume.h), the axial slices whose brain area is at
// least min_brain_area of the volume's largest; each is shown anterior up and the subject's right
// on the image's left (the radiological convention), cropped to the brain's bounding box plus
// crop_margin, padded to a square, resized to image_size, and mapped to [0, 1] by the volume's
// brain intensity percentiles (1st -> 0, 99th -> 0.8: lesions and variation keep headroom).
//
// Splits never share anatomy: the usable slices of each volume are cut into blocks of
// consecutive slices spanning at least block_mm, with the fewest slices dropped between blocks
// that keeps slices of different blocks split_gap_mm apart (slice_blocking: 8 slices and 2
// dropped at 1 mm, 3 and none at 3 mm, so thick-slice volumes are cut too); blocks go to train,
// valid and test (about 65/12/23 %; at least one each, two from 6 blocks on) interleaved along
// the head with a seeded phase, so each split still spans the whole brain. Each output image
// draws its slice from its split's blocks, so a split may hold more images than slices.
//
// Output (the MVFA/BMAD layout that data/dataset.h reads):
//   DIR/{train,valid,test}/good/img/SPLIT_NNNNNN.png             8-bit grey
//   DIR/{train,valid,test}/Ungood/img/SPLIT_NNNNNN.png           8-bit grey
//   DIR/{train,valid,test}/Ungood/anomaly_mask/SPLIT_NNNNNN.png  0/255, same name
//   DIR/synth.json  options, sources (with SHA-256), each volume's blocks, and per image: path,
//                   mask, split, label, lesion kind, source volume and slice. Written last.
// Files are written under DIR/.synth-partial and moved into place once all are written, so a run
// that fails (a bad volume, a full disk) or is interrupted leaves a previous benchmark intact.
// The same options give byte-identical files, whatever the thread count: image i draws from its
// own generator seeded by (seed, i).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data/dataset.h"
#include "data/nifti_volume.h"
#include "data/synth_lesions.h"
#include "data/synth_variation.h"

namespace medsad::data {

struct SynthVolume {
  std::string image;       // NIfTI T1-weighted volume
  std::string brain_mask;  // NIfTI brain mask or brain-extracted image on the image's grid (brain =
                           // voxels > 0); "": the image itself is brain-extracted
  int64_t volume_index = -1;  // of a 4-D image (e.g. a Decathlon case's stacked contrasts), which
                              // volume (read_nifti_volume); -1: the image must be a single volume
};

// Colin27's T1 and its brain extraction, from the Debian package mricron-data.
[[nodiscard]] std::vector<SynthVolume> default_synth_volumes();

struct SynthOptions {
  std::string out_dir;  // created if missing; a non-empty folder must hold a previous synth.json
  std::vector<SynthVolume> volumes = default_synth_volumes();
  int64_t image_size = 128;        // side of the square images, pixels
  int64_t train_count = 1200;      // images per split
  int64_t valid_count = 160;
  int64_t test_count = 320;
  double abnormal_fraction = 0.5;  // share of each split's images with a lesion (rounded)
  uint64_t seed = 0;
  LesionDifficulty difficulty;     // medium
  VariationOptions variation;
  double min_brain_area = 0.25;    // usable slice: brain area >= this share of the volume's largest
  double crop_margin = 0.10;       // around the brain's bounding box, share of its longer side
  double block_mm = 8.0;           // each block of consecutive slices spans at least this much along S
  double split_gap_mm = 3.0;       // slices of different blocks lie at least this far apart along S
  std::string montage;             // PNG of example images with lesion outlines ("": none)

  void validate() const;  // throws Error naming the option and its bad value
};

// One usable axial slice, ready for lesions.
struct SynthSlice {
  int64_t volume = 0;  // index into SynthOptions::volumes
  int64_t index = 0;   // axial slice k of the canonical [S, A, R] volume
  SliceImage slice;    // image_size x image_size
};

// The usable slices of `volume` (brain: bool [S, A, R]), ascending in k, prepared as described
// above. Throws Error(path, ...) when the brain is empty or of constant intensity.
[[nodiscard]] std::vector<SynthSlice> prepare_slices(const Volume& volume, const torch::Tensor& brain,
                                                     int64_t volume_index, const SynthOptions& options,
                                                     const std::string& path);

struct SliceBlock {
  int64_t first = 0;  // first and last slice index k, inclusive
  int64_t last = 0;
  Split split = Split::Train;
};

// How the axial slices of a volume `slice_spacing_mm` apart are cut: blocks of the fewest slices
// spanning block_mm (ceil(block_mm / spacing), at least 1) and, between blocks, the fewest dropped
// slices that put the nearest slices of two blocks split_gap_mm apart (ceil(split_gap_mm /
// spacing) - 1, at least 0).
struct SliceBlocking {
  int64_t block_slices = 8;  // consecutive slices that go to one split
  int64_t gap_slices = 2;    // slices dropped between blocks (never in any split)
};
[[nodiscard]] SliceBlocking slice_blocking(const SynthOptions& options, double slice_spacing_mm);

// Cuts the ascending slice indices into blocks as `blocking` says and assigns them to splits
// (seeded by the options' seed and volume_index). Throws Error(path, ...) when there are fewer
// than 3 blocks.
[[nodiscard]] std::vector<SliceBlock> assign_blocks(const std::vector<int64_t>& slice_indices, int64_t volume_index,
                                                    const SliceBlocking& blocking, const SynthOptions& options,
                                                    const std::string& path);

struct SynthSummary {
  int64_t images[3][2] = {};  // [split: train, valid, test][label: normal, abnormal]
  int64_t slices[3] = {};     // usable slices per split
};

// Writes the benchmark (and the montage) described above.
SynthSummary generate_benchmark(const SynthOptions& options);

}  // namespace medsad::data
