#include "data/predict_inputs.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "core/error.h"
#include "core/text.h"
#include "data/dataset.h"
#include "data/dicom_io.h"

namespace medsad::data {
namespace fs = std::filesystem;
namespace {

// A NIfTI volume's extension, any case: .nii or .nii.gz, or either half of a .hdr/.img pair
// (gzipped or not); "" for any other file.
std::string volume_extension(const std::string& path) {
  const std::string name = ascii_lower(fs::path(path).filename().string());
  for (const char* ext : {".nii.gz", ".nii", ".hdr.gz", ".hdr", ".img.gz", ".img"})
    if (ends_with(name, ext) && name.size() > std::strlen(ext)) return ext;
  return "";
}

}  // namespace

std::string volume_stem(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  return name.substr(0, name.size() - volume_extension(path).size());
}

bool is_nifti_path(const std::string& path) { return !volume_extension(path).empty(); }

bool is_multiframe_dicom(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec) || !is_dicom_file(path)) return false;
  try {
    return dicom_frame_count(path) > 1;
  } catch (const Error&) {
    return false;
  }
}

FolderInputs folder_inputs(const std::string& dir) {
  std::vector<std::string> volumes;
  bool dicom = false;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (name.empty() || name[0] == '.' || !it->is_regular_file(type_ec)) continue;
    const std::string ext = volume_extension(name);
    if (ext == ".img" || ext == ".img.gz") continue;  // the pair's .hdr stands for it
    if (!ext.empty()) volumes.push_back(it->path().string());
    else if (is_dicom_file(it->path().string())) dicom = true;
  }
  if (ec) fail(dir, "cannot list the folder: " + ec.message());
  FolderInputs found;
  auto others = image_files_in(dir);
  others.insert(others.end(), volumes.begin(), volumes.end());
  std::sort(others.begin(), others.end());
  if (dicom) {
    try {
      std::vector<Error> left_out;  // kept only if the folder is a series
      found.files = sorted_dicom_series(dir, &left_out);
      found.is_series = true;
      found.unreadable = std::move(left_out);
      const std::set<std::string> in_series(found.files.begin(), found.files.end());
      for (auto& file : others)
        if (!in_series.count(file) && !is_dicom_file(file)) found.set_aside.push_back(std::move(file));
      return found;
    } catch (const Error&) {
      // No readable DICOM file: the folder's images (its .dcm files among them, to be reported
      // as each is read) and volumes.
    }
  }
  if (others.empty()) fail(dir, "no DICOM series, image or NIfTI volume in this folder");
  found.files = std::move(others);
  return found;
}

std::vector<std::string> output_names(const std::vector<std::string>& paths) {
  std::vector<std::string> stems, names;
  std::map<std::string, int> stem_count;
  for (const auto& path : paths) {
    stems.push_back(is_nifti_path(path) ? volume_stem(path) : fs::path(path).stem().string());
    ++stem_count[stems.back()];
  }
  for (size_t i = 0; i < paths.size(); ++i) {
    if (stem_count[stems[i]] == 1) {
      names.push_back(stems[i]);
      continue;
    }
    std::string name;
    for (const auto& part : fs::path(paths[i]).relative_path()) {
      const std::string text = part.string();
      if (text.empty() || text == "." || text == "..") continue;
      name += (name.empty() ? "" : "__") + text;
    }
    for (char& c : name)
      if (c == '.') c = '_';
    names.push_back(name);
  }
  std::set<std::string> taken;
  for (auto& name : names) {
    const std::string base = name;
    for (int n = 2; taken.count(name); ++n) name = base + "_" + std::to_string(n);
    taken.insert(name);
  }
  return names;
}

void check_outputs_spare_inputs(const std::string& out_dir, const std::vector<std::string>& inputs,
                                const std::vector<std::string>& names) {
  std::error_code ec;
  fs::path out = fs::weakly_canonical(out_dir, ec).lexically_normal();
  if (ec) return;  // the folder cannot be resolved: writing to it will fail and say so
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  static const std::regex kOutputSuffix(
      R"((_vol\d+)?(_frame\d+)?_(mask\.png|overlay\.png|map\.png|seg\.dcm|slices\.csv|mask\.nii\.gz|frames\.csv))");
  for (const auto& input : inputs) {
    const fs::path path = fs::weakly_canonical(input, ec);
    if (ec || path.parent_path() != out) continue;
    const std::string file = path.filename().string();
    for (const auto& name : names)
      if (file.size() > name.size() && file.compare(0, name.size(), name) == 0 &&
          std::regex_match(file.substr(name.size()), kOutputSuffix))
        fail(input, "an input in --out " + out_dir + " that the output of '" + name +
                        "' would overwrite: give another --out");
  }
}

}  // namespace medsad::data
