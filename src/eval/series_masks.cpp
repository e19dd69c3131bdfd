#include "eval/series_masks.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/error.h"
#include "data/dicom_seg.h"
#include "data/nifti_volume.h"

namespace medsad::eval {
namespace fs = std::filesystem;

void SeriesMasks::add_folder(const std::string& dir, const std::vector<std::string>& files, size_t first_input) {
  std::vector<Stack> found;
  for (size_t i = 0; i < files.size(); ++i) {
    std::optional<data::DicomSliceGeometry> geometry;
    try {
      geometry = data::read_dicom_slice_geometry(files[i]);
    } catch (const Error&) {  // reported when the slice itself is read
    }
    const std::string series = geometry ? geometry->series : "";
    const bool located = geometry.has_value();  // a run of files without geometry is a stack of its own
    if (found.empty() || found.back().series != series || located != found.back().why.empty())
      found.push_back({dir, "", series, first_input + i, {}, {}, {}, geometry ? "" : "no position, orientation or "
                                                                                  "pixel spacing in its headers"});
    if (geometry) found.back().slices.push_back(*geometry);
    found.back().files.push_back(files[i]);
    found.back().masks.emplace_back();
  }
  std::string name = fs::path(dir).lexically_normal().filename().string();
  if (name.empty() || name == "." || name == "..") name = "series";
  for (size_t s = 0; s < found.size(); ++s) {
    if (found[s].masks.size() < 2) continue;
    found[s].name = found.size() > 1 ? name + "_series" + std::to_string(s + 1) : name;
    stacks_.push_back(std::move(found[s]));
  }
}

bool SeriesMasks::holds(size_t input) const {
  return std::any_of(stacks_.begin(), stacks_.end(), [input](const Stack& stack) {
    return input >= stack.first && input < stack.first + stack.masks.size();
  });
}

void SeriesMasks::keep(size_t input, const torch::Tensor& mask) {
  for (auto& stack : stacks_)
    if (input >= stack.first && input < stack.first + stack.masks.size())
      stack.masks[input - stack.first] = mask.to(torch::kUInt8);
}

int SeriesMasks::write(const std::string& out_dir, bool dicom_seg) const {
  int failed = 0;
  for (const auto& stack : stacks_) {
    std::string why = stack.why;
    std::optional<std::array<double, 16>> affine;
    if (why.empty()) affine = data::dicom_stack_affine(stack.slices, &why);
    const bool all_scored =
        std::all_of(stack.masks.begin(), stack.masks.end(), [](const auto& m) { return m.defined(); });
    if (dicom_seg && !all_scored) {
      std::fprintf(stderr, "medsad: note: %s: no %s_seg.dcm for this series (not every slice could be scored)\n",
                   stack.dir.c_str(), stack.name.c_str());
    } else if (dicom_seg) {
      std::vector<data::SegmentationFrame> frames;
      for (size_t k = 0; k < stack.files.size(); ++k) frames.push_back({stack.files[k], stack.masks[k]});
      try {
        data::write_dicom_segmentation((fs::path(out_dir) / (stack.name + "_seg.dcm")).string(), frames,
                                       "MedSAD-CLIP lesion mask");
      } catch (const Error& e) {
        std::fprintf(stderr, "medsad: error: %s\n", e.what());
        ++failed;
      }
    }
    if (affine && !all_scored) why = "not every slice could be scored";
    if (!why.empty() || !affine) {
      std::fprintf(stderr, "medsad: note: %s: no %s_mask.nii.gz for this series (%s)\n", stack.dir.c_str(),
                   stack.name.c_str(), why.c_str());
      continue;
    }
    data::write_nifti_mask_with_affine((fs::path(out_dir) / (stack.name + "_mask.nii.gz")).string(),
                                       torch::stack(stack.masks), *affine);  // [slices, rows, columns]
  }
  return failed;
}

}  // namespace medsad::eval
