// The four on-disk layouts (BMAD/MVFA, anomalib Folder, BUSI, CSV manifest) and layout
// detection; see dataset.h for the exact folder and file names accepted.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"
#include "data/dataset.h"

namespace fs = std::filesystem;

namespace medsad::data {
namespace {

const std::vector<std::string> kSplitNamesTrain = {"train"};
const std::vector<std::string> kSplitNamesValid = {"valid", "val", "validation"};
const std::vector<std::string> kSplitNamesTest = {"test"};
const std::vector<std::string> kImageDirNames = {"img", "image", "images"};
const std::vector<std::string> kMaskDirNames = {"anomaly_mask", "label", "labels", "mask", "masks", "ground_truth"};
const std::vector<std::string> kFolderNormalNames = {"normal", "good"};
const std::vector<std::string> kFolderAbnormalNames = {"abnormal", "ungood", "anomaly", "bad"};

std::string trim(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

bool is_hidden(const fs::path& path) { return path.filename().string().rfind('.', 0) == 0; }

bool has_image_extension(const fs::path& path) {
  static const std::set<std::string> kExtensions = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"};
  return kExtensions.count(ascii_lower(path.extension().string())) > 0;
}

// True when `stem` ends in "_mask" or "_mask_<digits>" (any case); *base gets the part before.
bool split_mask_stem(const std::string& stem, std::string* base) {
  const std::string low = ascii_lower(stem);
  size_t end = low.size();
  while (end > 0 && std::isdigit(static_cast<unsigned char>(low[end - 1]))) --end;
  if (end < low.size()) {  // digits: they must follow "_mask_"
    if (end == 0 || low[end - 1] != '_') return false;
    --end;
  }
  static const std::string kSuffix = "_mask";
  if (end < kSuffix.size() + 1 || low.compare(end - kSuffix.size(), kSuffix.size(), kSuffix) != 0) return false;
  if (base) *base = stem.substr(0, end - kSuffix.size());
  return true;
}

// Sub-folders of `dir`, sorted by name; hidden ones skipped.
std::vector<fs::path> sub_dirs(const fs::path& dir) {
  std::vector<fs::path> dirs;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (!is_hidden(it->path()) && it->is_directory(ec)) dirs.push_back(it->path());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// The sub-folder of `dir` named like the first of `names` that exists (names compared in
// lower case), or "" if none.
fs::path find_child_dir(const fs::path& dir, const std::vector<std::string>& names) {
  const auto dirs = sub_dirs(dir);
  for (const auto& name : names)
    for (const auto& sub : dirs)
      if (ascii_lower(sub.filename().string()) == name) return sub;
  return {};
}

// Image files of `dir` (recursively when asked, skipping `exclude`'s subtree), sorted by path.
// Mask-named files ("*_mask", "*_mask_N") are never images.
std::vector<fs::path> list_images(const fs::path& dir, bool recursive, const fs::path& exclude = {}) {
  std::vector<fs::path> images;
  std::error_code ec;
  const auto keep = [&](const fs::directory_entry& entry) {
    std::error_code type_ec;
    return !is_hidden(entry.path()) && entry.is_regular_file(type_ec) && has_image_extension(entry.path()) &&
           !split_mask_stem(entry.path().stem().string(), nullptr);
  };
  if (!recursive) {
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      if (keep(*it)) images.push_back(it->path());
  } else {
    std::error_code canonical_ec;
    const fs::path excluded = exclude.empty() ? fs::path() : fs::weakly_canonical(exclude, canonical_ec);
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (it->is_directory(type_ec)) {
        if (is_hidden(it->path()) || (!excluded.empty() && fs::weakly_canonical(it->path(), type_ec) == excluded))
          it.disable_recursion_pending();
        continue;
      }
      if (keep(*it)) images.push_back(it->path());
    }
  }
  if (ec) fail(dir.string(), "cannot list the folder: " + ec.message());
  std::sort(images.begin(), images.end());
  return images;
}

// Finds the mask of an image in a folder: same file name, else same stem with any image
// extension, else stem + "_mask" with any image extension. Folder listings are cached.
class MaskFinder {
 public:
  std::string find(const fs::path& mask_dir, const fs::path& image) {
    if (mask_dir.empty()) return "";
    const auto& by_stem = index(mask_dir);
    const std::string name = image.filename().string();
    const std::string stem = image.stem().string();
    const auto is_image_itself = [&](const std::string& file) {
      std::error_code ec;
      return fs::equivalent(mask_dir / file, image, ec);
    };
    if (auto it = by_stem.find(stem); it != by_stem.end()) {
      for (const auto& file : it->second)
        if (file == name && !is_image_itself(file)) return (mask_dir / file).string();
      for (const auto& file : it->second)
        if (!is_image_itself(file)) return (mask_dir / file).string();
    }
    if (auto it = by_stem.find(stem + "_mask"); it != by_stem.end()) return (mask_dir / it->second.front()).string();
    return "";
  }

 private:
  using StemIndex = std::map<std::string, std::vector<std::string>>;  // stem -> file names, sorted
  const StemIndex& index(const fs::path& dir) {
    const std::string key = dir.string();
    auto found = cache_.find(key);
    if (found != cache_.end()) return found->second;
    StemIndex by_stem;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code type_ec;
      if (!is_hidden(it->path()) && it->is_regular_file(type_ec) && has_image_extension(it->path()))
        by_stem[it->path().stem().string()].push_back(it->path().filename().string());
    }
    for (auto& [stem, files] : by_stem) std::sort(files.begin(), files.end());
    return cache_.emplace(key, std::move(by_stem)).first->second;
  }
  std::map<std::string, StemIndex> cache_;
};

// BMAD class folder name -> label, or -1 for a folder that is not a class.
int class_label(const std::string& folder_name) {
  const std::string name = ascii_lower(folder_name);
  if (name == "good" || name == "normal") return 0;
  if (name == "ungood" || name == "abnormal" || name == "anomaly" || name == "bad") return 1;
  return -1;
}

bool is_bmad_split_dir(const fs::path& split_dir) {
  for (const auto& sub : sub_dirs(split_dir))
    if (class_label(sub.filename().string()) >= 0) return true;
  return false;
}

struct SplitDir {
  Split split;
  fs::path dir;
};

std::vector<SplitDir> bmad_split_dirs(const fs::path& root) {
  std::vector<SplitDir> found;
  const std::pair<Split, const std::vector<std::string>*> kinds[] = {
      {Split::Train, &kSplitNamesTrain}, {Split::Valid, &kSplitNamesValid}, {Split::Test, &kSplitNamesTest}};
  for (const auto& [split, names] : kinds) {
    const fs::path dir = find_child_dir(root, *names);
    if (!dir.empty() && is_bmad_split_dir(dir)) found.push_back({split, dir});
  }
  return found;
}

bool is_busi_root(const fs::path& root) {
  return !find_child_dir(root, {"normal"}).empty() &&
         (!find_child_dir(root, {"benign"}).empty() || !find_child_dir(root, {"malignant"}).empty());
}

bool is_folder_root(const fs::path& root) {
  return !find_child_dir(root, kFolderNormalNames).empty() && !find_child_dir(root, kFolderAbnormalNames).empty();
}

// FNV-1a: a stable name for the temp cache of a root that cannot be written to.
std::string stable_hash(const std::string& text) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  return hex;
}

bool can_write_in(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return false;
  const fs::path probe = dir / (".probe." + std::to_string(::getpid()));
  const bool ok = static_cast<bool>(std::ofstream(probe));
  fs::remove(probe, ec);
  return ok;
}

// <root>/.medsad_cache/busi_masks when writable, else a folder under the system temp dir.
fs::path busi_cache_dir(const fs::path& root) {
  const fs::path local = root / ".medsad_cache" / "busi_masks";
  if (can_write_in(local)) return local;
  std::error_code ec;
  const fs::path absolute = fs::absolute(root, ec);
  const fs::path temp = fs::temp_directory_path() / ("medsad_cache_" + stable_hash(absolute.string())) / "busi_masks";
  if (!can_write_in(temp))
    fail(root.string(), "cannot write merged BUSI masks in " + local.string() + " nor in " + temp.string());
  return temp;
}

fs::path resolve_against(const fs::path& base, const std::string& path) {
  const fs::path p(path);
  if (p.is_absolute() || base.empty()) return p.lexically_normal();
  return (base / p).lexically_normal();
}

}  // namespace

Layout detect_layout(const std::string& root) {
  std::error_code ec;
  if (root.empty()) fail("", "no dataset root given");
  if (!fs::exists(root, ec)) fail(root, "no such file or directory (dataset root)");
  if (fs::is_regular_file(root, ec)) {
    if (ascii_lower(fs::path(root).extension().string()) == ".csv") return Layout::Csv;
    fail(root, "is a file but not a .csv manifest; expected a dataset folder or a CSV file");
  }
  if (!bmad_split_dirs(root).empty()) return Layout::Bmad;
  if (is_busi_root(root)) return Layout::Busi;
  if (is_folder_root(root)) return Layout::Folder;
  fail(root,
       "no recognisable dataset layout: looked for a .csv manifest, train/, valid/ or test/ holding "
       "good/ or Ungood/ (BMAD/MVFA), normal/ beside benign/ or malignant/ (BUSI), and normal/ or good/ "
       "beside abnormal/ or Ungood/ (Folder); give normal_dir for another Folder layout");
}

std::vector<Sample> list_bmad(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(root, "no such folder (BMAD/MVFA dataset root)");
  const auto splits = bmad_split_dirs(root);
  if (splits.empty()) fail(root, "not a BMAD/MVFA dataset: no train/, valid/ or test/ folder holding good/ or Ungood/");
  MaskFinder masks;
  std::vector<Sample> samples;
  for (const auto& [split, split_dir] : splits) {
    auto class_dirs = sub_dirs(split_dir);
    std::stable_sort(class_dirs.begin(), class_dirs.end(), [](const fs::path& a, const fs::path& b) {
      return class_label(a.filename().string()) < class_label(b.filename().string());
    });
    for (const auto& class_dir : class_dirs) {
      const std::string class_name = class_dir.filename().string();
      const int label = class_label(class_name);
      if (label < 0) continue;
      const fs::path img_dir = find_child_dir(class_dir, kImageDirNames);
      std::vector<fs::path> mask_dirs;
      if (const fs::path d = find_child_dir(class_dir, kMaskDirNames); !d.empty()) mask_dirs.push_back(d);
      if (const fs::path d = find_child_dir(split_dir, {ascii_lower(class_name) + "_mask"}); !d.empty())
        mask_dirs.push_back(d);
      if (label == 1)
        if (const fs::path d = find_child_dir(split_dir, kMaskDirNames); !d.empty()) mask_dirs.push_back(d);
      for (const auto& image : list_images(img_dir.empty() ? class_dir : img_dir, false)) {
        Sample sample{image.string(), "", label, split};
        for (const auto& mask_dir : mask_dirs) {
          sample.mask = masks.find(mask_dir, image);
          if (!sample.mask.empty()) break;
        }
        samples.push_back(std::move(sample));
      }
    }
  }
  return samples;
}

std::vector<Sample> list_folder(const DatasetSpec& spec) {
  std::error_code ec;
  const fs::path base = spec.root;
  if (!spec.root.empty() && !fs::is_directory(base, ec)) fail(spec.root, "no such folder (Folder dataset root)");
  fs::path normal_dir, abnormal_dir, mask_dir;
  if (spec.normal_dir.empty()) {  // detected: root/{normal|good}, root/{abnormal|ungood|...}, root/{mask|...}
    if (spec.root.empty()) fail("", "the Folder layout needs normal_dir (or a root holding normal/ and abnormal/)");
    normal_dir = find_child_dir(base, kFolderNormalNames);
    if (normal_dir.empty()) fail(spec.root, "the Folder layout needs normal_dir; no normal/ or good/ folder here");
    abnormal_dir = find_child_dir(base, kFolderAbnormalNames);
    mask_dir = find_child_dir(base, kMaskDirNames);
    if (mask_dir.empty()) mask_dir = find_child_dir(base, {"abnormal_mask", "ungood_mask"});
  } else {
    normal_dir = resolve_against(base, spec.normal_dir);
    if (!spec.abnormal_dir.empty()) abnormal_dir = resolve_against(base, spec.abnormal_dir);
    if (!spec.mask_dir.empty()) mask_dir = resolve_against(base, spec.mask_dir);
  }
  const std::pair<const fs::path*, const char*> given[] = {
      {&normal_dir, "normal_dir"}, {&abnormal_dir, "abnormal_dir"}, {&mask_dir, "mask_dir"}};
  for (const auto& [dir, what] : given)
    if (!dir->empty() && !fs::is_directory(*dir, ec)) fail(dir->string(), std::string("no such folder (") + what + ")");

  std::vector<Sample> samples;
  for (const auto& image : list_images(normal_dir, true, mask_dir))
    samples.push_back({image.string(), "", 0, Split::Train});
  if (!abnormal_dir.empty()) {
    MaskFinder masks;
    for (const auto& image : list_images(abnormal_dir, true, mask_dir)) {
      Sample sample{image.string(), "", 1, Split::Train};
      if (!mask_dir.empty()) {
        const fs::path sub = image.parent_path().lexically_relative(abnormal_dir);
        if (!sub.empty() && sub != ".") sample.mask = masks.find(mask_dir / sub, image);
        if (sample.mask.empty()) sample.mask = masks.find(mask_dir, image);
      }
      samples.push_back(std::move(sample));
    }
  }
  return samples;
}

std::vector<std::string> image_files_in(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& path : list_images(dir, false)) files.push_back(path.string());
  return files;
}

std::vector<Sample> list_busi(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(root, "no such folder (BUSI dataset root)");
  if (!is_busi_root(root)) fail(root, "not a BUSI dataset: expected normal/ beside benign/ or malignant/");
  fs::path cache;  // created on the first merge only
  std::vector<Sample> samples;
  for (const char* class_name : {"normal", "benign", "malignant"}) {
    const fs::path class_dir = find_child_dir(root, {class_name});
    if (class_dir.empty()) continue;
    const int label = std::string(class_name) == "normal" ? 0 : 1;
    std::map<std::string, std::vector<fs::path>> masks_by_stem;  // image stem -> its mask files, sorted
    for (fs::directory_iterator it(class_dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string base;
      std::error_code type_ec;
      if (!is_hidden(it->path()) && it->is_regular_file(type_ec) && has_image_extension(it->path()) &&
          split_mask_stem(it->path().stem().string(), &base))
        masks_by_stem[base].push_back(it->path());
    }
    if (ec) fail(class_dir.string(), "cannot list the folder: " + ec.message());
    for (const auto& image : list_images(class_dir, false)) {
      Sample sample{image.string(), "", label, Split::Train};
      auto found = masks_by_stem.find(image.stem().string());
      if (label == 1 && found != masks_by_stem.end()) {
        auto& files = found->second;
        std::sort(files.begin(), files.end());
        if (files.size() == 1) {
          sample.mask = files.front().string();
        } else {
          if (cache.empty()) cache = busi_cache_dir(root);
          const fs::path out_dir = cache / ascii_lower(class_dir.filename().string());
          fs::create_directories(out_dir, ec);
          const fs::path out = out_dir / (image.stem().string() + "_mask.png");
          std::vector<std::string> paths;
          for (const auto& f : files) paths.push_back(f.string());
          merge_masks(paths, out.string());
          sample.mask = out.string();
        }
      }
      samples.push_back(std::move(sample));
    }
  }
  return samples;
}

std::vector<CsvRecord> parse_csv(const std::string& text, const std::string& path) {
  std::vector<CsvRecord> records;
  CsvRecord record;
  std::string field;
  bool quoted = false;       // the current field started with a quote
  bool in_quotes = false;    // inside the quotes of the current field
  bool after_quote = false;  // the closing quote of the current field has been read
  int line = 1;
  record.line = 1;

  const auto end_field = [&] {
    record.fields.push_back(quoted ? field : trim(field));
    field.clear();
    quoted = in_quotes = after_quote = false;
  };
  const auto end_record = [&] {
    const bool blank = record.fields.empty() && !quoted && trim(field).empty();
    end_field();
    if (!blank) records.push_back(std::move(record));
    record = CsvRecord{};
  };

  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  bool pending = false;  // a record has started
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          in_quotes = false;
          after_quote = true;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == ',') {
      end_field();
      pending = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_record();
      pending = false;
      ++line;
      record.line = line;
    } else if (c == '"' && !quoted && trim(field).empty()) {
      field.clear();
      quoted = in_quotes = true;
      pending = true;
    } else if (after_quote) {
      if (c != ' ' && c != '\t')
        fail(path, "line " + std::to_string(line) + ": unexpected character '" + std::string(1, c) +
                       "' after a closing quote (a field is either fully quoted or not at all)");
    } else {
      field += c;
      pending = true;
    }
  }
  if (in_quotes) fail(path, "line " + std::to_string(record.line) + ": unterminated quoted field");
  if (pending) end_record();
  return records;
}

std::vector<Sample> list_csv(const std::string& csv_path) {
  const auto records = parse_csv(read_file_text(csv_path), csv_path);
  if (records.empty()) fail(csv_path, "empty CSV file: expected a header line naming the image and label columns");

  const auto& header = records.front();
  const auto column = [&](const std::vector<std::string>& names) -> int {
    for (const auto& name : names)
      for (size_t c = 0; c < header.fields.size(); ++c)
        if (ascii_lower(header.fields[c]) == name) return static_cast<int>(c);
    return -1;
  };
  const int image_col = column({"image", "image_path", "path"});
  const int label_col = column({"label"});
  const int mask_col = column({"mask", "mask_path"});
  const int split_col = column({"split"});
  if (image_col < 0 || label_col < 0) {
    std::string found;
    for (const auto& name : header.fields) found += (found.empty() ? "" : ", ") + name;
    fail(csv_path, "line " + std::to_string(header.line) + ": the header must name the columns image and label " +
                       "(mask and split optional); found: " + found);
  }

  const fs::path base = fs::path(csv_path).parent_path();
  std::map<std::string, int> line_of_image;
  std::vector<Sample> samples;
  for (size_t r = 1; r < records.size(); ++r) {
    const auto& fields = records[r].fields;
    const std::string where = "line " + std::to_string(records[r].line) + ": ";
    if (fields.size() != header.fields.size())
      fail(csv_path, where + "has " + std::to_string(fields.size()) + " fields but the header has " +
                         std::to_string(header.fields.size()));
    Sample sample;
    if (fields[image_col].empty()) fail(csv_path, where + "the image path is empty");
    const fs::path image = resolve_against(base, fields[image_col]);
    std::error_code ec;
    if (!fs::is_regular_file(image, ec)) fail(csv_path, where + "image file " + image.string() + " does not exist");
    sample.image = image.string();

    const std::string label = ascii_lower(trim(fields[label_col]));
    if (label == "0" || label == "normal" || label == "good")
      sample.label = 0;
    else if (label == "1" || label == "abnormal" || label == "ungood")
      sample.label = 1;
    else
      fail(csv_path, where + "label '" + fields[label_col] + "' is not one of 0, 1, normal, abnormal, good, ungood");

    if (mask_col >= 0 && !fields[mask_col].empty()) {
      const fs::path mask = resolve_against(base, fields[mask_col]);
      if (!fs::is_regular_file(mask, ec)) fail(csv_path, where + "mask file " + mask.string() + " does not exist");
      sample.mask = mask.string();
    }
    if (split_col >= 0) {
      const std::string split = ascii_lower(trim(fields[split_col]));
      if (split == "train")
        sample.split = Split::Train;
      else if (split == "valid" || split == "val" || split == "validation")
        sample.split = Split::Valid;
      else if (split == "test")
        sample.split = Split::Test;
      else
        fail(csv_path, where + "split '" + fields[split_col] + "' is not one of train, valid, val, test");
    }
    const auto [previous, inserted] = line_of_image.emplace(sample.image, records[r].line);
    if (!inserted)
      fail(csv_path,
           where + "image " + sample.image + " is already listed on line " + std::to_string(previous->second));
    samples.push_back(std::move(sample));
  }
  return samples;
}

}  // namespace medsad::data
