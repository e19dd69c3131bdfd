// What the arguments of `medsad predict` stand for: which are NIfTI volumes or multi-frame DICOM
// files, what a folder holds, and the name each input's output files get.
#pragma once
#include <string>
#include <vector>

#include "core/error.h"

namespace medsad::data {

// A NIfTI volume by its name: .nii, .nii.gz, or either half of a .hdr/.img pair (any case).
bool is_nifti_path(const std::string& path);

// The file name without its volume extension (.nii.gz whole): "sub-01_T1w.nii.gz" -> "sub-01_T1w".
std::string volume_stem(const std::string& path);

// A DICOM file of several frames; false for anything else, unreadable files included (the image
// reader reports those).
bool is_multiframe_dicom(const std::string& path);

// What a folder argument stands for (folder_inputs).
struct FolderInputs {
  std::vector<std::string> files;      // in the order they are scored
  bool is_series = false;              // files are the folder's DICOM series, in slice order
  std::vector<Error> unreadable;       // series files that look like DICOM but cannot be read: left out
  std::vector<std::string> set_aside;  // a series folder's images and volumes: not scored with the series
};

// A folder's DICOM series in slice order if it holds a readable DICOM file, else its images (as
// the dataset layouts count them) and NIfTI volumes in name order (unreadable .dcm files among
// the images, to fail as each is read). Throws Error(dir, ...) for a folder that cannot be
// listed or holds none of them.
FolderInputs folder_inputs(const std::string& dir);

// The NAME of each input's files under --out: its file name without the extension (.nii.gz
// whole), or, where inputs share one, the path as given with "/" written "__" and the
// extension's "." as "_" (scans/a/x.png -> scans__a__x_png), so that no input's files
// overwrite another's. Inputs still alike after that (the same file twice) get _2, _3...
std::vector<std::string> output_names(const std::vector<std::string>& paths);

// Throws Error(input, ...) when an input file lies in `out_dir` under a name predict writes for
// one of `names` (NAME[_volK][_frameK]_mask.png, _overlay.png, _map.png, _seg.dcm, _slices.csv,
// _mask.nii.gz, _frames.csv): scoring a.png beside its own a_mask.png must not overwrite it.
void check_outputs_spare_inputs(const std::string& out_dir, const std::vector<std::string>& inputs,
                                const std::vector<std::string>& names);

}  // namespace medsad::data
