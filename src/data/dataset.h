// Reading medical anomaly-detection datasets in their published layouts into one flat list of
// samples (image, optional mask, label, split). Design doc: medsad-clip.md, "Data" (the
// validation split drives calibration; the test split is never used for training).
//
// Layouts read (folder names are matched case-insensitively; images are files ending in .png
// .jpg .jpeg .tif .tiff .bmp .dcm, any case; names starting with '.' are skipped; a file whose
// stem ends in "_mask" or "_mask_<digits>" is never an image; listings are sorted by name):
//
//  * Bmad (BMAD and MVFA):  ROOT/<split>/<class>/[img/]IMAGE
//      <split> ∈ train | valid | val | validation | test;  <class> ∈ good | normal (label 0),
//      ungood | abnormal | anomaly | bad (label 1); other folders are ignored. When
//      <class>/{img|image|images}/ exists the images are read from it, else from <class>/ itself.
//      The mask of IMAGE is looked up, first hit wins, in
//        <split>/<class>/{anomaly_mask, label, labels, mask, masks, ground_truth}/
//        <split>/<class>_mask/                                  (e.g. test/Ungood_mask/)
//        <split>/{anomaly_mask, label, labels, mask, masks, ground_truth}/  (abnormal classes only)
//      and matches a file with the same name, else the same stem with any image extension, else
//      the stem + "_mask" with any image extension. train/ may hold good/ only.
//  * Folder (anomalib "Folder"): normal_dir, abnormal_dir (optional), mask_dir (optional); each
//      relative to `root` when root is given. Images are listed recursively (mask_dir's subtree
//      excluded). An abnormal image's mask is searched in mask_dir/<same sub-folder>/ then in
//      mask_dir/, by the name rule above (so a.png ↔ a.png, a.tif or a_mask.png; mask_dir may be
//      abnormal_dir itself). Normal images get no mask. Without normal_dir, ROOT/{normal|good}/,
//      ROOT/{abnormal|ungood|anomaly|bad}/ and the first of ROOT/{anomaly_mask, label, labels,
//      mask, masks, ground_truth, abnormal_mask, ungood_mask}/ are used.
//  * Busi: ROOT/{normal, benign, malignant}/NAME.png with masks NAME_mask.png and, where a case
//      has several lesions, NAME_mask_1.png, NAME_mask_2.png ... Several masks are merged
//      (pixelwise OR) into ROOT/.medsad_cache/busi_masks/ (or a temp folder when ROOT is not
//      writable). benign and malignant are abnormal; normal images get no mask.
//  * Csv: a manifest with a header naming the columns image (or image_path, path), label and
//      optionally mask (or mask_path), split (any case and order, other columns ignored); every
//      row has as many fields as the header; an image listed twice is an error. label ∈ 0 | 1 | normal | abnormal | good | ungood;
//      split ∈ train | valid | val | validation | test. Relative paths are relative to the
//      folder of the CSV. RFC 4180: quoted fields may hold commas, quotes ("") and line breaks.
//
// Splits: where the data has no test split, a stratified (per label), seeded share
// test_fraction of the train split becomes the test split; then, where it has no validation
// split, valid_fraction of (what remains of) train becomes the validation split. Per label the
// share is round(fraction · n), at least 1 and at most n − 1 where n ≥ 2, none where n < 2 or
// the fraction is 0.
// abnormal_budget then keeps K abnormal train images (seeded choice; the rest are dropped).
// The same seed gives the same splits on every platform (mt19937_64 + our own Fisher–Yates).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/mask_io.h"  // read_mask, the mask half of a Sample

namespace medsad::data {

enum class Split { Train, Valid, Test };
const char* to_string(Split split);

struct Sample {
  std::string image;           // path of the image, absolute or as given (joined to the root)
  std::string mask;            // path of the binary mask, "" if none
  int label = 0;               // 0 normal, 1 abnormal
  Split split = Split::Train;  // which split the sample belongs to
};

enum class Layout { Auto, Bmad, Folder, Busi, Csv };
const char* to_string(Layout layout);

struct DatasetSpec {
  Layout layout = Layout::Auto;  // Auto: detect from `root` (see detect_layout)
  std::string root;              // BMAD / BUSI root, base of the Folder dirs, or the CSV file
  std::string normal_dir;        // Folder: folder of normal images (required for Folder)
  std::string abnormal_dir;      // Folder: folder of abnormal images ("" if none)
  std::string mask_dir;          // Folder: folder of masks for the abnormal images ("" if none)
  double valid_fraction = 0.2;   // share of each label carved from train where no valid split
  double test_fraction = 0.2;    // share of each label carved from train where no test split
  int64_t abnormal_budget = -1;  // keep only K abnormal train images (-1: all), chosen by seed
  uint64_t seed = 0;             // seed of every random choice above
};

// "auto", "bmad", "mvfa" (= bmad), "folder", "busi", "csv", any case. Throws Error otherwise.
[[nodiscard]] Layout parse_layout(const std::string& name);

// Csv for a .csv file; Bmad when train/, valid/ or test/ holds a good or Ungood folder; Busi
// when normal/ sits beside benign/ or malignant/; Folder when normal/ (or good/) sits beside
// abnormal/ (or ungood/). Throws Error(root, ...) listing what was looked for otherwise.
[[nodiscard]] Layout detect_layout(const std::string& root);

struct Dataset {
  Layout layout = Layout::Auto;  // the layout that was read (never Auto)
  std::vector<Sample> samples;   // all splits, ordered train, valid, test, each by listing order
  std::vector<Sample> split(Split which) const;
};

// Reads the dataset, carves missing splits and applies the abnormal budget. Throws Error when
// the root is missing or unrecognised, no image is found, a CSV row is bad (CSV path, line
// number), two samples share an image file, or BUSI masks cannot be merged.
[[nodiscard]] Dataset load_dataset(const DatasetSpec& spec);

// A table: per split and in total, the normal and abnormal counts and, for the abnormal
// images, how many have a mask (found) and how many do not (missing).
[[nodiscard]] std::string dataset_summary(const Dataset& dataset);

// The image files directly in `dir` as the layouts count them (the extensions above, any case;
// hidden and mask-named files skipped), sorted by name. Throws Error(dir, ...) if `dir` cannot
// be listed.
[[nodiscard]] std::vector<std::string> image_files_in(const std::string& dir);

// ---- Pieces of load_dataset, exposed for tests and tools (layouts.cpp) ----

// Samples exactly as the layout stores them, before carving and budget.
[[nodiscard]] std::vector<Sample> list_bmad(const std::string& root);
[[nodiscard]] std::vector<Sample> list_folder(const DatasetSpec& spec);
[[nodiscard]] std::vector<Sample> list_busi(const std::string& root);
[[nodiscard]] std::vector<Sample> list_csv(const std::string& csv_path);

// One record of an RFC 4180 CSV text: its fields and the line on which it starts (1-based).
struct CsvRecord {
  std::vector<std::string> fields;
  int line = 0;
};
// Parses CSV text (comma separator, "" escapes, quoted commas and line breaks, LF or CRLF, a
// leading UTF-8 BOM ignored, blank lines skipped). Throws Error(path, "line N: ...") on an
// unterminated quote or a stray character after a closing quote.
[[nodiscard]] std::vector<CsvRecord> parse_csv(const std::string& text, const std::string& path);

}  // namespace medsad::data
