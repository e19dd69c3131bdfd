// Dataset options shared by `medsad train` and `medsad eval`.
#pragma once
#include <CLI/CLI.hpp>

#include "data/dataset.h"

namespace medsad::cli {

struct DatasetOptions {
  data::DatasetSpec spec;
  std::string layout = "auto";
};

void add_dataset_options(CLI::App* app, DatasetOptions& options);

// Converts the parsed options (layout name) into the spec; Error on an unknown layout.
data::DatasetSpec resolve_dataset_options(const DatasetOptions& options);

}  // namespace medsad::cli
