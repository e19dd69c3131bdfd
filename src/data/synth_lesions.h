// Synthetic lesions painted into a real axial brain-MRI slice (T1-weighted appearance), for a
// lesion benchmark whose anatomy is real and whose ground truth is exact. Three kinds:
//  * Tumour: an irregular mass (a lobulated ellipse roughened by smooth noise) with an enhancing
//    or hypointense rim, an optional dark necrotic core, finger-like hypointense oedema around
//    it, and mass effect: the surrounding tissue is pushed outward (a smooth radial displacement
//    that fades toward the brain's edge) before the lesion is painted.
//  * WhiteMatter: 3-10 small hypointense blobs in bright (white-matter-like) tissue.
//  * Haemorrhage: one irregular, sharp-edged region, mostly bright (subacute blood on T1),
//    sometimes dark, with an optional dark haemosiderin rim.
// Every painted pixel lies inside the brain. The mask is exactly the lesion: each pixel whose
// intensity the lesion set or changed (oedema included), never a pixel only displaced by mass
// effect. Soft lesion edges are floored at a visible weight, so the mask ends where the lesion's
// influence ends, not where it fades out of sight.
#pragma once
#include <random>
#include <string>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace medsad::data {

enum class LesionKind { Tumour, WhiteMatter, Haemorrhage };
const char* to_string(LesionKind kind);

// How hard lesions are to see. Sizes scale with the image side, contrasts with the brain's
// median intensity.
struct LesionDifficulty {
  double min_radius = 0.05;    // tumour radius range, fraction of the image side; haemorrhages are
  double max_radius = 0.13;    //   0.5-0.9 of a tumour radius, white-matter blobs 0.2-0.4
  double min_contrast = 0.20;  // intensity change of the lesion's main part (rim, blob, blood),
  double max_contrast = 0.45;  //   fraction of the brain's median intensity

  static LesionDifficulty easy();    // large and conspicuous
  static LesionDifficulty medium();  // the default
  static LesionDifficulty hard();    // small and faint
  // "easy", "medium" or "hard"; throws Error for any other name.
  static LesionDifficulty from_name(const std::string& name);
  void validate() const;  // throws Error naming the field and its bad value
  nlohmann::json to_json() const;
};

// An axial slice ready for lesions.
struct SliceImage {
  cv::Mat image;  // CV_32F [H, W], intensities in [0, 1]
  cv::Mat brain;  // CV_8U [H, W], 255 inside the brain, 0 elsewhere
};

struct LesionedSlice {
  cv::Mat image;  // CV_32F [H, W], in [0, 1]
  cv::Mat mask;   // CV_8U [H, W], 255 on the lesion, 0 elsewhere
};

// A copy of `slice` with one random lesion of `kind` (size, shape, position and contrast drawn
// from `rng` within `difficulty`). The brain must hold at least one pixel 2 pixels from its edge.
[[nodiscard]] LesionedSlice add_lesion(const SliceImage& slice, LesionKind kind, const LesionDifficulty& difficulty,
                                       std::mt19937_64& rng);

}  // namespace medsad::data
