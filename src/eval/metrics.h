// Exact evaluation metrics for anomaly detection (image level) and segmentation (pixel level),
// design doc medsad-clip.md "Metrics". Everything here is exact (no binning, no sampling):
// one sort of the scores, then a single pass over distinct score values, so that pixel metrics
// over tens of millions of pixels take seconds.
//
// Conventions (positive = abnormal image / lesion pixel; a score s is called positive at
// threshold t iff s >= t; "distinct thresholds" = the distinct score values, tied scores always
// move together):
//  * AUROC: Mann-Whitney U / (P * N), a tied positive-negative pair counting 1/2; equals the
//    trapezoidal area under the ROC curve, as sklearn.metrics.roc_auc_score.
//  * AP: sklearn.metrics.average_precision_score, sum_k (R_k - R_{k-1}) P_k over the distinct
//    thresholds in descending order (step function, no interpolation).
//  * F1-max: best F1 = 2TP / (2TP + FP + FN) over the distinct thresholds (anomalib's F1Max).
//  * Dice-max: F1-max over the pooled pixels of all images.
//  * AUPRO: MVTec AD's compute_pro / anomalib's AUPRO, see metric_aupro.
// Undefined values are NaN (see each function); callers average with that in mind.
//
// The bootstrap intervals at the end are the one exception to "exact": they resample the images
// (seeded, so still deterministic) to show how far a metric could move with another draw of the
// same number of test images.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace medsad::eval {

// All functions below take scores of any floating dtype (read as double, so thresholds taken from
// float32 scores stay exact) and labels of any dtype (nonzero = positive). Scores and labels must
// have the same shape (normally [N]; other shapes are flattened). Non-floating or NaN scores and
// mismatched shapes throw medsad::Error.

// Area under the ROC curve. NaN if either class is absent.
[[nodiscard]] double metric_auroc(const torch::Tensor& scores, const torch::Tensor& labels);

// Average precision (sklearn's). NaN if there are no positives.
[[nodiscard]] double metric_average_precision(const torch::Tensor& scores, const torch::Tensor& labels);

// The best value of a thresholded metric and the threshold reaching it (positive iff score >= threshold).
struct ThresholdScore {
  double value = 0;      // the best metric value
  double threshold = 0;  // a score value; among equally good thresholds, the highest
};

// Best F1 over all distinct thresholds. {NaN, NaN} if there are no positives.
[[nodiscard]] ThresholdScore metric_f1_max(const torch::Tensor& scores, const torch::Tensor& labels);

// How an image threshold is chosen on a split (`medsad calibrate --image-rule`): the operating
// point a site wants, e.g. a screening tool that must miss at most 5% of abnormal images.
struct OperatingRule {
  enum class Kind { F1, Youden, Sensitivity, Specificity };
  Kind kind = Kind::F1;
  double target = 0;  // Sensitivity / Specificity: the least rate to reach, in (0, 1]
  // "f1", "youden", "sensitivity=X" or "specificity=X" with X in (0, 1]; Error otherwise.
  static OperatingRule parse(const std::string& text);
  std::string to_string() const;  // the text parse reads back
};

// The threshold `rule` picks among the distinct thresholds, and the value it reaches there:
//  * F1: best F1 (as metric_f1_max);
//  * Youden: best sensitivity + specificity - 1; among equals, the highest threshold;
//  * Sensitivity=x: the highest threshold whose sensitivity is at least x; value: its specificity;
//  * Specificity=x: the lowest threshold whose specificity is at least x (a threshold above every
//    score when only that reaches it); value: its sensitivity.
// {NaN, NaN} unless both classes are present.
[[nodiscard]] ThresholdScore metric_operating_point(const torch::Tensor& scores, const torch::Tensor& labels,
                                                    const OperatingRule& rule);

// Confusion matrix at one threshold, with the rates derived from it.
struct ConfusionCounts {
  int64_t tp = 0;  // positive, score >= threshold
  int64_t fp = 0;  // negative, score >= threshold
  int64_t tn = 0;  // negative, score <  threshold
  int64_t fn = 0;  // positive, score <  threshold

  double sensitivity() const;  // TP / (TP + FN); NaN without positives
  double specificity() const;  // TN / (TN + FP); NaN without negatives
  double precision() const;    // TP / (TP + FP); NaN when nothing is called positive
  // 2TP / (2TP + FP + FN), the same number as dice(); 1 when TP = FP = FN = 0 (an empty
  // prediction of an empty mask is perfect, the usual per-image segmentation convention).
  double f1() const;
  double dice() const;  // = f1()
  double iou() const;   // TP / (TP + FP + FN); 1 when TP = FP = FN = 0, as dice()
};

[[nodiscard]] ConfusionCounts confusion_at(const torch::Tensor& scores, const torch::Tensor& labels,
                                           double threshold);

// Pixel level. maps[i]: anomaly map [H_i, W_i] (normally in [0, 1]); masks[i]: [H_i, W_i], nonzero
// = lesion. Image sizes may differ; maps.size() must equal masks.size() and each map its mask's
// shape, else medsad::Error.

// Dice-max: F1-max over all pixels of all images pooled. {NaN, NaN} if no image has a lesion pixel.
[[nodiscard]] ThresholdScore metric_dice_max(const std::vector<torch::Tensor>& maps,
                                             const std::vector<torch::Tensor>& masks);

// Mean-Dice-max: the threshold that maximises the mean per-image Dice over the images with a
// lesion pixel (images without one are left out, as in the reported mean Dice), over all
// distinct pixel scores of those images. {NaN, NaN} if no image has a lesion pixel. Unlike
// Dice-max, a small lesion weighs as much as a large one.
[[nodiscard]] ThresholdScore metric_mean_dice_max(const std::vector<torch::Tensor>& maps,
                                                  const std::vector<torch::Tensor>& masks);

// Area under the per-region-overlap curve up to FPR = fpr_limit, divided by fpr_limit (so 1 is
// perfect). Regions are the 8-connected components of every mask; PRO(t) is the mean over all
// regions of all images of |region ∩ {map >= t}| / |region|; FPR(t) is the fraction of normal
// pixels (outside every mask, normal images included) with map >= t. The curve runs over all
// distinct thresholds from (0, 0) and is integrated by the trapezoid rule, the segment crossing
// fpr_limit interpolated linearly (MVTec AD's compute_pro + trapezoid(x_max)). NaN if there are
// no regions or no normal pixels. fpr_limit must lie in (0, 1].
[[nodiscard]] double metric_aupro(const std::vector<torch::Tensor>& maps, const std::vector<torch::Tensor>& masks,
                                  double fpr_limit = 0.3);

// A 95% percentile-bootstrap interval: the 2.5th and 97.5th percentiles (linear interpolation) of
// a statistic over `resamples` resamples of the images drawn with replacement, deterministic by
// `seed`. It is the spread from which images the test split happens to hold, not the spread
// between training runs (seeds), which comes on top.
struct ConfidenceInterval {
  double low = 0;
  double high = 0;
};

// Of image AUROC. Abnormal and normal images are resampled separately, so every resample keeps
// the split's class counts. {NaN, NaN} if either class is absent.
[[nodiscard]] ConfidenceInterval bootstrap_auroc_ci95(const torch::Tensor& scores, const torch::Tensor& labels,
                                                      int64_t resamples = 2000, uint64_t seed = 0);

// Of the mean of `values` (per-image Dice, say). {NaN, NaN} if there are none.
[[nodiscard]] ConfidenceInterval bootstrap_mean_ci95(const std::vector<double>& values, int64_t resamples = 2000,
                                                     uint64_t seed = 0);

}  // namespace medsad::eval
