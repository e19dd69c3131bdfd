// Running a trained model over samples, and the design's metrics, calibration and per-image
// table computed from the results (design doc, "Metrics" and "Training and model selection").
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "clip/config.h"
#include "data/dataset.h"
#include "eval/metrics.h"
#include "model/checkpoint.h"
#include "model/medsad_clip.h"

namespace medsad::eval {

struct ImageResult {
  std::string path;
  int label = -1;          // 0 normal, 1 abnormal, -1 unknown (prediction on a lone image)
  double score = 0;        // image anomaly score in [0, 1]
  torch::Tensor map;       // [H, W] anomaly map at the image's own size, in [0, 1]
  torch::Tensor mask;      // [H, W] ground truth (0/1), undefined if none
  std::string error;       // non-empty if the image could not be read; other fields unset
};

// Scores images (RGB [3, H, W] in [0, 1]) in batches; maps come back at each image's own size.
std::vector<ImageResult> predict_images(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                        const std::vector<torch::Tensor>& images, int64_t batch_size = 8);

// Anything that scores a batch of RGB images [3, H, W] in [0, 1]: score and map of each, in order.
using Predictor = std::function<std::vector<ImageResult>(const std::vector<torch::Tensor>& images)>;

// Reads and scores samples (with their masks) in batches. An unreadable image gets `error` set
// and the run goes on; an unreadable or misshapen mask is an Error. The next batch is decoded on
// a second thread while this one is scored. `show_progress` draws a bar on a terminal.
std::vector<ImageResult> evaluate_samples(const Predictor& predict, const std::vector<data::Sample>& samples,
                                          int64_t batch_size, bool show_progress);
// The same with MedSAD-CLIP as the predictor.
std::vector<ImageResult> evaluate_samples(model::MedSadClipImpl& model, const clip::ImagePreprocess& preprocess,
                                          const std::vector<data::Sample>& samples, int64_t batch_size,
                                          bool show_progress);

// Dice of the map thresholded at `pixel_threshold` against the mask, for an abnormal image with
// a non-empty lesion mask; nullopt otherwise (normal images, unknown masks, unreadable images).
std::optional<double> lesion_dice(const ImageResult& result, double pixel_threshold);

// Whether any readable result has a lesion in its mask: what calibrate needs to choose the pixel
// threshold.
bool has_lesion_mask(const std::vector<ImageResult>& results);

// Image threshold by `image_rule` (default: maximising F1), and pixel threshold maximising the
// mean per-image Dice over the images with a lesion (the mean Dice that compute_metrics
// reports), on these results; with no lesion mask among them, the pixel threshold is
// `unmasked_pixel_threshold` (a checkpoint's own when recalibrating).
model::Calibration calibrate(const std::vector<ImageResult>& results, const OperatingRule& image_rule = {},
                             double unmasked_pixel_threshold = 0.5);

// Every metric of the design; NaN (JSON null) where the split lacks what a metric needs.
nlohmann::json compute_metrics(const std::vector<ImageResult>& results, const model::Calibration& calibration);

// path,label,score,decision,dice (dice empty where the image has no mask or is normal).
void write_per_image_csv(const std::string& path, const std::vector<ImageResult>& results,
                         const model::Calibration& calibration);

// Model-selection score on validation: mean of image AUROC and pixel AUROC where available (0
// with neither), compute_metrics' two figures without the rest of its work (AUPRO, intervals:
// about 1 s per epoch at the demo's size).
double selection_score(const std::vector<ImageResult>& results);

}  // namespace medsad::eval
