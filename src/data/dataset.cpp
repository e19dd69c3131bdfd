// Dataset loading: layout choice, seeded stratified carving of missing splits, the abnormal
// budget, the no-shared-file check and the summary table. The layouts live in layouts.cpp.
#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include "core/error.h"
#include "core/random.h"
#include "core/text.h"

namespace fs = std::filesystem;

namespace medsad::data {

const char* to_string(Split split) {
  switch (split) {
    case Split::Train:
      return "train";
    case Split::Valid:
      return "valid";
    case Split::Test:
      return "test";
  }
  return "?";
}

const char* to_string(Layout layout) {
  switch (layout) {
    case Layout::Auto:
      return "auto";
    case Layout::Bmad:
      return "bmad";
    case Layout::Folder:
      return "folder";
    case Layout::Busi:
      return "busi";
    case Layout::Csv:
      return "csv";
  }
  return "?";
}

Layout parse_layout(const std::string& name) {
  const std::string key = ascii_lower(name);
  if (key == "auto") return Layout::Auto;
  if (key == "bmad" || key == "mvfa") return Layout::Bmad;
  if (key == "folder") return Layout::Folder;
  if (key == "busi") return Layout::Busi;
  if (key == "csv") return Layout::Csv;
  fail("", "unknown dataset layout '" + name + "' (expected auto, bmad, mvfa, folder, busi or csv)");
}

std::vector<Sample> Dataset::split(Split which) const {
  std::vector<Sample> chosen;
  for (const auto& sample : samples)
    if (sample.split == which) chosen.push_back(sample);
  return chosen;
}

namespace {

void fisher_yates(std::vector<size_t>& items, std::mt19937_64& rng) {
  for (size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[draw_below(rng, i)]);
}

// How many of n train images of one label move to a carved split.
size_t carve_count(size_t n, double fraction) {
  if (n < 2 || fraction <= 0.0) return 0;
  const auto k = static_cast<size_t>(std::llround(fraction * static_cast<double>(n)));
  return std::clamp<size_t>(k, 1, n - 1);
}

bool has_split(const std::vector<Sample>& samples, Split split) {
  return std::any_of(samples.begin(), samples.end(), [&](const Sample& s) { return s.split == split; });
}

std::vector<size_t> train_indices(const std::vector<Sample>& samples, int label) {
  std::vector<size_t> indices;
  for (size_t i = 0; i < samples.size(); ++i)
    if (samples[i].split == Split::Train && samples[i].label == label) indices.push_back(i);
  return indices;
}

// Moves a seeded share of each label of the train split to `target`.
void carve(std::vector<Sample>& samples, Split target, double fraction, std::mt19937_64& rng) {
  for (int label : {0, 1}) {
    auto pool = train_indices(samples, label);
    const size_t k = carve_count(pool.size(), fraction);
    fisher_yates(pool, rng);
    for (size_t i = 0; i < k; ++i) samples[pool[i]].split = target;
  }
}

// Keeps `budget` seeded abnormal train images and drops the others.
void apply_abnormal_budget(std::vector<Sample>& samples, int64_t budget, std::mt19937_64& rng) {
  auto pool = train_indices(samples, 1);
  if (budget < 0 || pool.size() <= static_cast<size_t>(budget)) return;
  fisher_yates(pool, rng);
  std::vector<bool> drop(samples.size(), false);
  for (size_t i = static_cast<size_t>(budget); i < pool.size(); ++i) drop[pool[i]] = true;
  std::vector<Sample> kept;
  for (size_t i = 0; i < samples.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(samples[i]));
  samples = std::move(kept);
}

void check_no_shared_file(const std::vector<Sample>& samples) {
  std::map<std::string, const Sample*> seen;
  for (const auto& sample : samples) {
    std::error_code ec;
    fs::path key = fs::weakly_canonical(sample.image, ec);
    if (ec) key = fs::path(sample.image).lexically_normal();
    const auto [previous, inserted] = seen.emplace(key.string(), &sample);
    if (!inserted) {
      const Sample& first = *previous->second;
      std::string problem = std::string("appears twice in the dataset (in the ") + to_string(first.split) +
                            " split and in the " + to_string(sample.split) + " split); splits must not share a file";
      if (first.image != sample.image) problem += " (first listed as " + first.image + ")";
      fail(sample.image, problem);
    }
  }
}

void validate(const DatasetSpec& spec) {
  const std::pair<const char*, double> fractions[] = {{"valid_fraction", spec.valid_fraction},
                                                      {"test_fraction", spec.test_fraction}};
  for (const auto& [name, value] : fractions)
    if (!(value >= 0.0 && value < 1.0))
      fail("", std::string(name) + " must be in [0, 1), got " + std::to_string(value));
  if (spec.abnormal_budget < -1)
    fail("", "abnormal_budget must be -1 (all) or a count >= 0, got " + std::to_string(spec.abnormal_budget));
}

Layout resolve_layout(const DatasetSpec& spec) {
  if (spec.layout != Layout::Auto) return spec.layout;
  if (spec.root.empty()) {
    if (!spec.normal_dir.empty()) return Layout::Folder;
    fail("", "no dataset root given (a BMAD/MVFA or BUSI folder, a CSV manifest, or normal_dir for a Folder layout)");
  }
  std::error_code ec;
  if (!spec.normal_dir.empty() && fs::is_directory(spec.root, ec)) {
    try {
      return detect_layout(spec.root);
    } catch (const Error&) {
      return Layout::Folder;  // a root that is only the base of normal_dir / abnormal_dir / mask_dir
    }
  }
  return detect_layout(spec.root);
}

}  // namespace

Dataset load_dataset(const DatasetSpec& spec) {
  validate(spec);
  Dataset dataset;
  dataset.layout = resolve_layout(spec);
  switch (dataset.layout) {
    case Layout::Bmad:
      dataset.samples = list_bmad(spec.root);
      break;
    case Layout::Folder:
      dataset.samples = list_folder(spec);
      break;
    case Layout::Busi:
      dataset.samples = list_busi(spec.root);
      break;
    case Layout::Csv:
      dataset.samples = list_csv(spec.root);
      break;
    case Layout::Auto:
      fail(spec.root, "internal: layout left undetected");
  }
  if (dataset.samples.empty()) {
    const std::string where = spec.root.empty() ? spec.normal_dir : spec.root;
    fail(where, std::string("empty dataset: no image files (png, jpg, jpeg, tif, tiff, bmp, dcm) found in the ") +
                    to_string(dataset.layout) + " layout");
  }

  std::mt19937_64 rng(spec.seed);
  if (!has_split(dataset.samples, Split::Test)) carve(dataset.samples, Split::Test, spec.test_fraction, rng);
  if (!has_split(dataset.samples, Split::Valid)) carve(dataset.samples, Split::Valid, spec.valid_fraction, rng);
  apply_abnormal_budget(dataset.samples, spec.abnormal_budget, rng);
  std::stable_sort(dataset.samples.begin(), dataset.samples.end(),
                   [](const Sample& a, const Sample& b) { return a.split < b.split; });
  check_no_shared_file(dataset.samples);
  return dataset;
}

std::string dataset_summary(const Dataset& dataset) {
  struct Row {
    size_t normal = 0, abnormal = 0, found = 0, missing = 0;
  };
  Row rows[3], total;
  for (const auto& sample : dataset.samples) {
    for (Row* row : {&rows[static_cast<int>(sample.split)], &total}) {
      if (sample.label == 0) {
        ++row->normal;
      } else {
        ++row->abnormal;
        ++(sample.mask.empty() ? row->missing : row->found);
      }
    }
  }
  std::string text =
      std::string("layout: ") + to_string(dataset.layout) + ", " + std::to_string(dataset.samples.size()) + " images\n";
  char line[128];
  std::snprintf(line, sizeof line, "%-6s %8s %9s %12s %14s\n", "split", "normal", "abnormal", "masks found",
                "masks missing");
  text += line;
  const auto add_row = [&](const char* name, const Row& row) {
    std::snprintf(line, sizeof line, "%-6s %8zu %9zu %12zu %14zu\n", name, row.normal, row.abnormal, row.found,
                  row.missing);
    text += line;
  };
  for (Split split : {Split::Train, Split::Valid, Split::Test})
    add_row(to_string(split), rows[static_cast<int>(split)]);
  add_row("total", total);
  text += "(masks are counted over the abnormal images)\n";
  return text;
}

}  // namespace medsad::data
