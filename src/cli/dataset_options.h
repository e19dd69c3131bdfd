// Dataset options shared by `medsad train` and `medsad eval`, and the check of a scored split.
#pragma once
#include <vector>

#include <CLI/CLI.hpp>

#include "data/dataset.h"

namespace medsad::eval {
struct ImageResult;
}

namespace medsad::cli {

struct DatasetOptions {
  data::DatasetSpec spec;
  std::string layout = "auto";
};

void add_dataset_options(CLI::App* app, DatasetOptions& options);

// Converts the parsed options (layout name) into the spec; Error on an unknown layout.
data::DatasetSpec resolve_dataset_options(const DatasetOptions& options);

// Metrics over part of a split would pass for the split's: when images could not be read, each
// gets its line on stderr and the last an Error carrying the count (a lone one: one line in all).
void fail_on_unreadable_images(const std::vector<eval::ImageResult>& results);

}  // namespace medsad::cli
