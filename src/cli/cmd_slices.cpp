// `medsad slices`: labelled NIfTI volumes (BraTS, the Decathlon, ...) as a 2-D dataset in the
// MVFA/BMAD layout that train and eval read (data/volume_dataset.h); a one-line JSON summary.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "core/text.h"
#include "data/dataset.h"
#include "data/volume_dataset.h"

namespace medsad::cli {

void setup_slices_command(CLI::App& app, Action& action) {
  struct Options {
    data::VolumeSliceOptions slices;
    std::string axis = "axial", split = "0.7,0.1,0.2";
  };
  auto o = std::make_shared<Options>();
  auto& s = o->slices;
  auto* cmd = app.add_subcommand(
      "slices", "cut labelled NIfTI volumes into a 2-D dataset (MVFA layout) split by case, for train and eval");
  cmd->add_option("--images", s.images_dir, "folder searched (recursively) for image volumes")->required();
  cmd->add_option("--labels", s.labels_dir,
                  "folder of label volumes under the same relative paths (the Decathlon's labelsTr); without it, "
                  "labels lie beside their images, named by --label-suffix");
  cmd->add_option("--image-suffix", s.image_suffix,
                  "an image volume's name ends with this, e.g. _flair.nii.gz (default: any .nii or .nii.gz)");
  cmd->add_option("--label-suffix", s.label_suffix,
                  "without --labels: the label's name is the image's with --image-suffix replaced by this, e.g. "
                  "_seg.nii.gz");
  cmd->add_option("--out", s.out_dir, "dataset folder (new or empty)")->required();
  cmd->add_option("--volume-index", s.volume_index, "of 4-D image files: which volume (0-based), e.g. 0 FLAIR "
                                                    "in the Decathlon's brain tumours")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  cmd->add_option("--axis", o->axis, "slice along axial (default), coronal or sagittal")
      ->check(CLI::IsMember({"axial", "coronal", "sagittal"}));
  cmd->add_option("--split", o->split, "shares of the cases for train, valid and test (default 0.7,0.1,0.2)");
  cmd->add_option("--seed", s.seed, "which cases go to which split (default 0)")
      ->check(not_negative());
  cmd->add_option("--min-tissue", s.min_tissue,
                  "keep slices whose tissue covers at least this share of the case's largest slice (default 0.25)");
  cmd->add_option("--min-lesion-pixels", s.min_lesion_pixels,
                  "a slice is abnormal from this many label voxels on; fewer (but some) leave it out (default 10)");
  cmd->callback([&action, o] {
    action = [o] {
      auto options = o->slices;
      options.axis = data::parse_slice_axis(o->axis);
      std::istringstream shares(o->split);
      std::string share;
      for (size_t i = 0; i < 3; ++i) {
        if (!std::getline(shares, share, ','))
          fail("", "--split needs three shares, train,valid,test: got '" + o->split + "'");
        try {
          size_t used = 0;
          options.split[i] = std::stod(share, &used);
          if (used != share.size()) throw std::invalid_argument(share);
        } catch (const std::exception&) {
          fail("", "--split: '" + share + "' is not a number");
        }
      }
      if (std::getline(shares, share, ','))
        fail("", "--split needs three shares, train,valid,test: got '" + o->split + "'");
      const bool tty = ::isatty(STDERR_FILENO);
      const auto start = std::chrono::steady_clock::now();
      const auto summary = data::write_volume_slices(options, [&](size_t done, size_t total) {
        if (tty) std::fprintf(stderr, "\rslices: %zu/%zu cases", done, total);
        if (tty && done == total) std::fprintf(stderr, "\n");
      });
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      nlohmann::json line = {{"out", options.out_dir}, {"seconds", std::round(seconds * 100) / 100}};
      for (auto split : {data::Split::Train, data::Split::Valid, data::Split::Test}) {
        const int i = static_cast<int>(split);
        line["cases"][data::to_string(split)] = summary.cases[i];
        line["images"][data::to_string(split)] = {{"normal", summary.images[i][0]},
                                                  {"abnormal", summary.images[i][1]}};
      }
      std::printf("%s\n", json_text(line).c_str());
    };
  });
}

}  // namespace medsad::cli
