// `medsad synth`: generate the brain-MRI lesion benchmark (data/synth_benchmark.h) and print a
// one-line JSON summary. Options are checked by SynthOptions::validate, so an absurd value is a
// one-line error with exit code 1 like any other bad input.
#include <chrono>
#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text.h"
#include "data/synth_benchmark.h"

namespace medsad::cli {

void setup_synth_command(CLI::App& app, Action& action) {
  struct Options {
    data::SynthOptions synth;
    std::vector<std::string> volumes, masks;
    std::vector<int64_t> volume_indices;
    std::string difficulty = "medium";
    double variation = 1;
  };
  auto o = std::make_shared<Options>();
  auto& s = o->synth;
  auto* cmd = app.add_subcommand("synth", "generate a brain-MRI lesion benchmark from real anatomy (MVFA layout)");
  cmd->add_option("--out", s.out_dir, "benchmark folder (new, empty, or a previous benchmark's)")->required();
  auto* volume_option = cmd->add_option("--volume", o->volumes,
                                        "NIfTI T1 volume, repeatable (default: Colin27 from mricron-data)");
  auto* mask_option = cmd->add_option("--brain-mask", o->masks,
                                      "brain mask of the --volume before it (brain = voxels > 0); without "
                                      "one, that volume must be brain-extracted");
  auto* index_option = cmd->add_option("--volume-index", o->volume_indices,
                                       "of a 4-D --volume (e.g. a Decathlon case's contrasts): which volume, "
                                       "0-based; follows that --volume")
                           ->check(not_negative());
  cmd->add_option("--size", s.image_size, "image side in pixels (default 128)");
  cmd->add_option("--train", s.train_count, "training images (default 1200)");
  cmd->add_option("--valid", s.valid_count, "validation images (default 160)");
  cmd->add_option("--test", s.test_count, "test images (default 320)");
  cmd->add_option("--abnormal-fraction", s.abnormal_fraction, "share of images with a lesion (default 0.5)");
  cmd->add_option("--seed", s.seed, "seed of every random choice (default 0)")
      ->check(not_negative());
  cmd->add_option("--difficulty", o->difficulty, "lesion size and contrast: easy, medium or hard (default medium)");
  cmd->add_option("--variation", o->variation,
                  "per-image variation (warp, bias field, gamma, contrast, noise) as a multiple of the "
                  "default amplitudes: 0 none, 1 the default, at most 3");
  cmd->add_option("--montage", s.montage, "also write a PNG grid of examples with the lesions outlined");
  cmd->callback([&action, o, cmd, volume_option, mask_option, index_option] {
    action = [o, cmd, volume_option, mask_option, index_option] {
      auto options = o->synth;
      options.difficulty = data::LesionDifficulty::from_name(o->difficulty);
      options.variation = data::VariationOptions::scaled(o->variation);
      if (!o->volumes.empty()) {
        // CLI11 records every value in command-line order: a mask or a volume index belongs to the
        // volume before it.
        options.volumes.clear();
        size_t next_volume = 0, next_mask = 0, next_index = 0;
        for (const CLI::Option* option : cmd->parse_order()) {
          if (option == volume_option) {
            options.volumes.push_back({o->volumes[next_volume++], ""});
          } else if (option == mask_option) {
            const std::string& mask = o->masks[next_mask++];
            if (options.volumes.empty() || !options.volumes.back().brain_mask.empty())
              fail(mask, "--brain-mask must follow the --volume it belongs to (one mask per volume)");
            options.volumes.back().brain_mask = mask;
          } else if (option == index_option) {
            const int64_t index = o->volume_indices[next_index++];
            if (options.volumes.empty() || options.volumes.back().volume_index >= 0)
              fail("", "--volume-index " + std::to_string(index) +
                           " must follow the --volume it belongs to (one index per volume)");
            options.volumes.back().volume_index = index;
          }
        }
      } else if (!o->masks.empty()) {
        fail(o->masks.front(), "--brain-mask needs a --volume before it");
      } else if (!o->volume_indices.empty()) {
        fail("", "--volume-index needs a --volume before it (the default Colin27 volume is 3-D)");
      }
      const auto start = std::chrono::steady_clock::now();
      const auto summary = data::generate_benchmark(options);
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      nlohmann::json line = {{"out", options.out_dir}, {"seconds", std::round(seconds * 100) / 100}};
      for (auto split : {data::Split::Train, data::Split::Valid, data::Split::Test}) {
        const int s = static_cast<int>(split);
        line["images"][data::to_string(split)] = {{"normal", summary.images[s][0]}, {"abnormal", summary.images[s][1]}};
        line["slices"][data::to_string(split)] = summary.slices[s];
      }
      if (!options.montage.empty()) line["montage"] = options.montage;
      std::printf("%s\n", json_text(line).c_str());
    };
  });
}

}  // namespace medsad::cli
