// Reading DICOM images through DCMTK: single files and series folders.
//
// Monochrome images (MONOCHROME1 shown inverted, as the standard says) go through the modality
// LUT (rescale slope/intercept) and a VOI window: the one given to set_dicom_window, else the
// file's own first window (Window Center/Width tags), else the full range of its values. Colour
// images (RGB, YBR) come back as colour. Compressed transfer syntaxes that DCMTK decodes are
// registered: JPEG baseline, extended and lossless, JPEG-LS, RLE and deflate; JPEG 2000, which
// Debian's DCMTK lacks, is decoded with OpenJPEG.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "core/error.h"

class DcmFileFormat;  // DCMTK

namespace medsad::data {

struct DicomWindow {
  double center = 0, width = 0;  // width > 0 when set
  bool is_set() const { return width > 0; }
};

// "C,W" (numbers, W > 0) or a preset: brain (40,80), subdural (75,215), stroke (32,8), lung
// (-600,1500), mediastinum (50,350), soft-tissue (50,400), bone (480,2500), liver (60,160).
// Throws Error naming the option otherwise.
DicomWindow parse_dicom_window(const std::string& text);

// The window every later DICOM read uses (the CLI's --window); an unset window means "the file's".
void set_dicom_window(const DicomWindow& window);

// True for a file with the DICOM preamble ("DICM" at byte 128), or named *.dcm (older files
// have no preamble).
bool is_dicom_file(const std::string& path);

// The displayed image: 8-bit grey (CV_8UC1) or BGR (CV_8UC3), windowed as described above.
// Throws Error(path, ...) for a file that is missing, not DICOM, has no pixel data, uses a
// compression that cannot be decoded, or holds several frames (read_dicom_frames reads those).
cv::Mat read_dicom_image(const std::string& path);

// Every frame of a multi-frame file (cine, enhanced CT/MR), each as read_dicom_image gives a
// single-frame file's image; where the file's window is the full range, it spans all frames.
std::vector<cv::Mat> read_dicom_frames(const std::string& path);

// Number of Frames from the header alone (1 when absent). Throws Error as read_dicom_image.
size_t dicom_frame_count(const std::string& path);

// The pixel data of all frames, decompressed, as stored (little-endian
// sample order): for checks against other readers. Throws Error(path, ...) as read_dicom_image.
std::string read_dicom_pixel_bytes(const std::string& path);

// Where a slice lies in the patient (DICOM's LPS frame, mm), from its header alone.
struct DicomSliceGeometry {
  int rows = 0, columns = 0;
  std::array<double, 3> position{};       // Image Position (Patient): centre of the first pixel
  std::array<double, 6> orientation{};    // Image Orientation (Patient): row direction, column direction
  std::array<double, 2> spacing{};        // Pixel Spacing: between rows, between columns
  std::string series;                     // Series Instance UID
};

// Loads the header of `path` into `file` (values over 4 kB, such as the pixel data, left unread),
// with DCMTK set up as the readers here use it. Throws Error(path, ...) as read_dicom_image.
void load_dicom_header(DcmFileFormat& file, const std::string& path);

// The geometry of a DICOM file, or nothing when its header lacks position, orientation or
// pixel spacing (secondary captures, most ultrasound). Throws Error as read_dicom_image.
std::optional<DicomSliceGeometry> read_dicom_slice_geometry(const std::string& path);

// The voxel-to-RAS matrix (row-major 4x4, mm) of `slices` stacked in order: voxel (i, j, k) is
// column i, row j of slice k, at position_0 + i * column spacing * row direction + j * row spacing
// * column direction + k * (position_last - position_0) / (n - 1), with x and y negated (LPS to
// RAS). Nothing, with the reason in *why, unless they are two or more slices of one size and
// orientation, evenly spaced along a line (to a tenth of the spacing: positions are often
// rounded to 0.1 mm).
std::optional<std::array<double, 16>> dicom_stack_affine(const std::vector<DicomSliceGeometry>& slices,
                                                         std::string* why);

// The DICOM files of a series folder (hidden files and non-DICOM files skipped), in slice order:
// by Image Position (Patient) along the slice normal from Image Orientation (Patient), else by
// Instance Number, else by name. A folder holding several series gives them one after another
// (by Series Number, else Series Instance UID), each in slice order. A file that looks like
// DICOM (its preamble, or a .dcm name) but cannot be read is left out, and its Error added to
// `unreadable` when given. Throws Error(dir, ...) if the folder holds no readable DICOM file.
std::vector<std::string> sorted_dicom_series(const std::string& dir, std::vector<Error>* unreadable = nullptr);

}  // namespace medsad::data
