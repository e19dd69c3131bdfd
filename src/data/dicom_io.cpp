#include "data/dicom_io.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string_view>

#include <dcmtk/config/osconfig.h>  // first, as DCMTK requires
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmimage/diregist.h>  // colour images
#include <dcmtk/dcmimgle/dcmimage.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/text.h"
#include "data/jpeg2000.h"

namespace medsad::data {
namespace fs = std::filesystem;
namespace {

std::mutex window_mutex;
DicomWindow default_window;

// DCMTK keeps codec registrations and its logger in globals: set them up once.
void init_dcmtk() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(OFLogger::FATAL_LOG_LEVEL);  // our one-line errors instead of its warnings
    DJDecoderRegistration::registerCodecs();      // JPEG baseline, extended, lossless
    DJLSDecoderRegistration::registerCodecs();    // JPEG-LS
    DcmRLEDecoderRegistration::registerCodecs();  // RLE
  });
}

// Loads the file (values over 4 kB, i.e. the pixel data, only when `header_only` is false).
void load(DcmFileFormat& file, const std::string& path, bool header_only) {
  init_dcmtk();
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "no such file");
  if (fs::is_directory(path, ec)) fail(path, "is a directory, expected a DICOM file");
  const OFCondition status =
      file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, header_only ? 4096 : DCM_MaxReadLength, ERM_autoDetect);
  if (status.bad()) fail(path, std::string("not a readable DICOM file (") + status.text() + ")");
}

// All N values of a multi-valued decimal tag (a position, an orientation, a spacing); false if
// any is missing.
template <size_t N>
bool read_numbers(DcmDataset* data, const DcmTagKey& tag, std::array<double, N>& out) {
  for (unsigned long i = 0; i < N; ++i)
    if (data->findAndGetFloat64(tag, out[i], i).bad()) return false;
  return true;
}

bool is_jpeg2000(E_TransferSyntax xfer) {
  return xfer == EXS_JPEG2000LosslessOnly || xfer == EXS_JPEG2000 || xfer == EXS_JPEG2000MulticomponentLosslessOnly ||
         xfer == EXS_JPEG2000Multicomponent;
}

// The codestreams of the first `frames` frames: after the offset table, each frame's fragments
// run up to the one that ends with the end-of-codestream marker (FF D9, perhaps padded to an
// even length), which needs no offset table and holds for any split into fragments.
std::vector<std::string> jpeg2000_frames(DcmDataset* data, E_TransferSyntax xfer, size_t frames,
                                         const std::string& path) {
  DcmElement* element = nullptr;
  DcmPixelSequence* sequence = nullptr;
  auto* pixel_data =
      data->findAndGetElement(DCM_PixelData, element).good() ? dynamic_cast<DcmPixelData*>(element) : nullptr;
  if (!pixel_data || pixel_data->getEncapsulatedRepresentation(xfer, nullptr, sequence).bad() || !sequence ||
      sequence->card() < 2)
    fail(path, "JPEG 2000 DICOM file without encapsulated pixel data fragments");
  const auto ends_frame = [](const std::string& codestream) {
    std::string_view tail(codestream);
    if (!tail.empty() && tail.back() == '\0') tail.remove_suffix(1);
    return tail.size() >= 2 && tail.substr(tail.size() - 2) == "\xFF\xD9";
  };
  std::vector<std::string> codestreams(1);
  for (unsigned long i = 1; i < sequence->card(); ++i) {
    if (ends_frame(codestreams.back())) {
      if (codestreams.size() == frames) break;
      codestreams.emplace_back();
    }
    DcmPixelItem* fragment = nullptr;
    Uint8* bytes = nullptr;
    if (sequence->getItem(fragment, i).bad() || fragment->getUint8Array(bytes).bad())
      fail(path, "unreadable JPEG 2000 pixel data fragment " + std::to_string(i));
    if (bytes) codestreams.back().append(reinterpret_cast<const char*>(bytes), fragment->getLength());
  }
  if (codestreams.size() < frames)
    fail(path, "JPEG 2000 pixel data hold " + std::to_string(codestreams.size()) + " frames where the header says " +
                   std::to_string(frames));
  return codestreams;
}

// Number of Frames, 1 when absent; Error for a value that is not a positive count.
size_t frame_count(DcmDataset* data, const std::string& path) {
  Sint32 frames = 1;
  if (data->findAndGetSint32(DCM_NumberOfFrames, frames).bad()) return 1;
  if (frames < 1) fail(path, "Number of Frames is " + std::to_string(frames));
  return static_cast<size_t>(frames);
}

// Debian's DCMTK has no JPEG 2000 codec: the first `frames` frames are decoded with OpenJPEG and
// put back as uncompressed pixel data, so that DicomImage applies the modality and VOI LUTs as
// for any other file. A multi-component codestream comes out as RGB (OpenJPEG undoes the colour
// transform that YBR_RCT / YBR_ICT name). The codestream's signedness wins over the header's.
void decode_jpeg2000_in_place(DcmDataset* data, E_TransferSyntax xfer, size_t frames, const std::string& path) {
  Uint16 rows = 0, columns = 0, samples = 1, bits_allocated = 0;
  data->findAndGetUint16(DCM_Rows, rows);
  data->findAndGetUint16(DCM_Columns, columns);
  data->findAndGetUint16(DCM_SamplesPerPixel, samples);
  data->findAndGetUint16(DCM_BitsAllocated, bits_allocated);
  if (bits_allocated != 8 && bits_allocated != 16)
    fail(path, "JPEG 2000 pixel data with Bits Allocated " + std::to_string(bits_allocated) + " (expected 8 or 16)");
  std::vector<int32_t> all;
  bool is_signed = false;
  for (const auto& codestream : jpeg2000_frames(data, xfer, frames, path)) {
    const Jpeg2000Image image = decode_jpeg2000(codestream, path);
    if (image.width != columns || image.height != rows || image.components != samples)
      fail(path, "JPEG 2000 pixel data of " + std::to_string(image.width) + "x" + std::to_string(image.height) + "x" +
                     std::to_string(image.components) + " where the header says " + std::to_string(columns) + "x" +
                     std::to_string(rows) + "x" + std::to_string(samples));
    if (image.precision > bits_allocated)
      fail(path, "JPEG 2000 samples of " + std::to_string(image.precision) + " bits in " +
                     std::to_string(bits_allocated) + "-bit pixel data");
    is_signed = image.is_signed;
    all.insert(all.end(), image.samples.begin(), image.samples.end());
  }
  OFCondition stored;
  if (bits_allocated == 8) {
    std::vector<Uint8> bytes(all.begin(), all.end());
    stored = data->putAndInsertUint8Array(DCM_PixelData, bytes.data(), static_cast<unsigned long>(bytes.size()));
  } else {
    std::vector<Uint16> words(all.size());  // signed samples as two's complement
    std::transform(all.begin(), all.end(), words.begin(),
                   [](int32_t v) { return static_cast<Uint16>(static_cast<uint32_t>(v) & 0xFFFFu); });
    stored = data->putAndInsertUint16Array(DCM_PixelData, words.data(), static_cast<unsigned long>(words.size()));
  }
  if (stored.bad()) fail(path, std::string("cannot store the decoded JPEG 2000 pixel data (") + stored.text() + ")");
  data->putAndInsertUint16(DCM_PixelRepresentation, is_signed ? 1 : 0);
  data->putAndInsertString(DCM_NumberOfFrames, std::to_string(frames).c_str());
  if (samples > 1) {
    data->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
    data->putAndInsertUint16(DCM_PlanarConfiguration, 0);
  }
}

// Brings the pixel data to uncompressed little-endian; an Error names a compression that the
// registered codecs do not decode.
// `all_frames` false: only the first frame needs to be (JPEG 2000 decodes only that one).
void decompress(DcmFileFormat& file, const std::string& path, bool all_frames) {
  DcmDataset* data = file.getDataset();
  if (!data->tagExistsWithValue(DCM_PixelData)) fail(path, "DICOM file without pixel data (not an image)");
  const DcmXfer original(data->getOriginalXfer());
  if (is_jpeg2000(original.getXfer()))
    return decode_jpeg2000_in_place(data, original.getXfer(), all_frames ? frame_count(data, path) : 1, path);
  if (data->chooseRepresentation(EXS_LittleEndianExplicit, nullptr).bad() ||
      !data->canWriteXfer(EXS_LittleEndianExplicit))
    fail(path, std::string("pixel data compressed as ") + original.getXferName() +
                   ", which this DCMTK build cannot decode");
}

}  // namespace

DicomWindow parse_dicom_window(const std::string& text) {
  static const std::map<std::string, DicomWindow> presets = {
      {"brain", {40, 80}},      {"subdural", {75, 215}},      {"stroke", {32, 8}},     {"lung", {-600, 1500}},
      {"mediastinum", {50, 350}}, {"soft-tissue", {50, 400}}, {"bone", {480, 2500}},   {"liver", {60, 160}}};
  const auto preset = presets.find(ascii_lower(text));
  if (preset != presets.end()) return preset->second;
  DicomWindow w;
  const auto comma = text.find(',');
  try {
    size_t used_c = 0, used_w = 0;
    if (comma == std::string::npos) throw std::invalid_argument(text);
    w.center = std::stod(text.substr(0, comma), &used_c);
    w.width = std::stod(text.substr(comma + 1), &used_w);
    if (used_c != comma || used_w != text.size() - comma - 1) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    fail("", "--window must be CENTER,WIDTH or a preset (brain, subdural, stroke, lung, mediastinum, soft-tissue, "
             "bone, liver), got '" + text + "'");
  }
  if (!(w.width > 0) || !std::isfinite(w.center) || !std::isfinite(w.width))
    fail("", "--window width must be a positive number, got '" + text + "'");
  return w;
}

void set_dicom_window(const DicomWindow& window) {
  std::lock_guard<std::mutex> lock(window_mutex);
  default_window = window;
}

bool is_dicom_file(const std::string& path) {
  if (ascii_lower(fs::path(path).extension().string()) == ".dcm") return true;
  std::ifstream in(path, std::ios::binary);
  char head[132] = {};
  if (!in.read(head, sizeof head)) return false;
  return std::string(head + 128, 4) == "DICM";
}

namespace {

// The file's first frame, or all of them, windowed alike (a min-max window spans every frame
// rendered, as a volume's one window spans its slices).
// A Rescale Slope or Intercept that is not a finite number would turn every pixel into NaN, which
// DCMTK renders as a blank image that then scores as a normal one.
void check_rescale(DcmDataset* data, const std::string& path) {
  for (const auto& [tag, name] : {std::pair{DCM_RescaleSlope, "Rescale Slope"},
                                  std::pair{DCM_RescaleIntercept, "Rescale Intercept"}}) {
    Float64 value = 0;
    if (data->findAndGetFloat64(tag, value).good() && !std::isfinite(value))
      fail(path, std::string(name) + " is not a finite number");
  }
}

// Whether the file's first Window Center/Width shows its pixels: both finite, a width above 0,
// a window that overlaps the values present and is at most 64 times their range (wider, every
// pixel falls within a few grey levels). Otherwise the image's full range is shown instead.
bool stored_window_shows(DcmDataset* data, DicomImage& image) {
  Float64 center = 0, width = 0;
  if (image.getWindowCount() == 0 || data->findAndGetFloat64(DCM_WindowCenter, center).bad() ||
      data->findAndGetFloat64(DCM_WindowWidth, width).bad())
    return false;
  double lo = 0, hi = 0;
  if (!std::isfinite(center) || !std::isfinite(width) || width <= 0 || !image.getMinMaxValues(lo, hi)) return false;
  const double range = std::max(hi - lo, 1.0);
  return center + width / 2 >= lo && center - width / 2 <= hi && width <= 64 * range;
}

std::vector<cv::Mat> render_frames(const std::string& path, bool all_frames) {
  DcmFileFormat file;
  load(file, path, false);
  if (!all_frames) {
    // An image reader's caller (a dataset, the CLIP embedder) expects one picture per file: a
    // cine loop or an enhanced multi-frame series read as its first frame would silently train
    // or score on one slice of many.
    const size_t frames = frame_count(file.getDataset(), path);
    if (frames > 1)
      fail(path, "holds " + std::to_string(frames) +
                     " frames (a multi-frame DICOM file); expected a single image here (medsad predict scores "
                     "every frame of such a file)");
  }
  decompress(file, path, all_frames);
  check_rescale(file.getDataset(), path);
  DicomImage image(&file, EXS_LittleEndianExplicit, CIF_UsePartialAccessToPixelData, 0, all_frames ? 0 : 1);
  if (image.getStatus() != EIS_Normal)
    fail(path, std::string("cannot render the DICOM image (") + DicomImage::getString(image.getStatus()) + ")");
  const int width = static_cast<int>(image.getWidth()), height = static_cast<int>(image.getHeight());
  if (width < 1 || height < 1) fail(path, "DICOM image of zero size");
  if (image.isMonochrome()) {
    DicomWindow window;
    {
      std::lock_guard<std::mutex> lock(window_mutex);
      window = default_window;
    }
    const bool ok = window.is_set()                         ? image.setWindow(window.center, window.width)
                    : stored_window_shows(file.getDataset(), image) ? image.setWindow(0)
                                                                    : image.setMinMaxWindow();
    if (!ok) image.setMinMaxWindow();  // a malformed window in the file
  }
  std::vector<cv::Mat> frames;
  for (unsigned long k = 0; k < image.getFrameCount(); ++k) {
    const void* pixels = image.getOutputData(8, k, 0);  // 8 bits, frame k, interleaved colour
    if (!pixels)
      fail(path, "cannot render the DICOM pixel data of frame " + std::to_string(k + 1) + " (corrupt or truncated)");
    if (image.isMonochrome()) {
      frames.push_back(cv::Mat(height, width, CV_8UC1, const_cast<void*>(pixels)).clone());
    } else {
      frames.emplace_back();
      cv::cvtColor(cv::Mat(height, width, CV_8UC3, const_cast<void*>(pixels)), frames.back(), cv::COLOR_RGB2BGR);
    }
  }
  if (frames.empty()) fail(path, "DICOM image without frames");
  return frames;
}

}  // namespace

cv::Mat read_dicom_image(const std::string& path) { return render_frames(path, false).front(); }

std::vector<cv::Mat> read_dicom_frames(const std::string& path) { return render_frames(path, true); }

size_t dicom_frame_count(const std::string& path) {
  DcmFileFormat file;
  load(file, path, true);
  return frame_count(file.getDataset(), path);
}

std::string read_dicom_pixel_bytes(const std::string& path) {
  DcmFileFormat file;
  load(file, path, false);
  decompress(file, path, true);
  DcmElement* element = nullptr;
  if (file.getDataset()->findAndGetElement(DCM_PixelData, element).bad() || !element)
    fail(path, "DICOM file without pixel data (not an image)");
  Uint8* bytes = nullptr;
  if (element->getUint8Array(bytes).bad() || !bytes) {
    Uint16* words = nullptr;
    if (element->getUint16Array(words).bad() || !words) fail(path, "cannot read the DICOM pixel data");
    bytes = reinterpret_cast<Uint8*>(words);
  }
  return std::string(reinterpret_cast<const char*>(bytes), element->getLength());
}

void load_dicom_header(DcmFileFormat& file, const std::string& path) { load(file, path, true); }

std::optional<DicomSliceGeometry> read_dicom_slice_geometry(const std::string& path) {
  DcmFileFormat file;
  load(file, path, true);
  DcmDataset* data = file.getDataset();
  DicomSliceGeometry g;
  Uint16 rows = 0, columns = 0;
  if (data->findAndGetUint16(DCM_Rows, rows).bad() || data->findAndGetUint16(DCM_Columns, columns).bad())
    return std::nullopt;
  g.rows = rows;
  g.columns = columns;
  if (!read_numbers(data, DCM_ImagePositionPatient, g.position) ||
      !read_numbers(data, DCM_ImageOrientationPatient, g.orientation) ||
      !read_numbers(data, DCM_PixelSpacing, g.spacing) || !(g.spacing[0] > 0 && g.spacing[1] > 0))
    return std::nullopt;
  OFString series;
  if (data->findAndGetOFString(DCM_SeriesInstanceUID, series).good()) g.series = series.c_str();
  return g;
}

std::optional<std::array<double, 16>> dicom_stack_affine(const std::vector<DicomSliceGeometry>& slices,
                                                         std::string* why) {
  const auto refuse = [why](const std::string& reason) {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (slices.size() < 2) return refuse("fewer than two slices");
  const auto& first = slices.front();
  for (const auto& s : slices) {
    if (s.rows != first.rows || s.columns != first.columns) return refuse("slices of different sizes");
    for (size_t i = 0; i < 6; ++i)
      if (std::abs(s.orientation[i] - first.orientation[i]) > 1e-4) return refuse("slices of different orientations");
    if (std::abs(s.spacing[0] - first.spacing[0]) > 1e-4 || std::abs(s.spacing[1] - first.spacing[1]) > 1e-4)
      return refuse("slices of different pixel spacings");
  }
  const size_t n = slices.size();
  std::array<double, 3> step{};  // from one slice's first pixel to the next's
  for (size_t a = 0; a < 3; ++a) step[a] = (slices.back().position[a] - first.position[a]) / static_cast<double>(n - 1);
  const double step_length = std::sqrt(step[0] * step[0] + step[1] * step[1] + step[2] * step[2]);
  if (step_length < 1e-6) return refuse("slices at one position");
  for (size_t k = 0; k < n; ++k)
    for (size_t a = 0; a < 3; ++a)
      if (std::abs(slices[k].position[a] - (first.position[a] + static_cast<double>(k) * step[a])) > 0.1 * step_length)
        return refuse("slices not evenly spaced along a line");
  const auto& o = first.orientation;  // o[0..2]: along a row (column index grows); o[3..5]: down a column
  std::array<double, 16> m{};
  for (size_t a = 0; a < 3; ++a) {
    const double sign = a < 2 ? -1.0 : 1.0;  // LPS to RAS
    m[a * 4 + 0] = sign * o[a] * first.spacing[1];
    m[a * 4 + 1] = sign * o[3 + a] * first.spacing[0];
    m[a * 4 + 2] = sign * step[a];
    m[a * 4 + 3] = sign * first.position[a];
  }
  m[15] = 1.0;
  return m;
}

std::vector<std::string> sorted_dicom_series(const std::string& dir, std::vector<Error>* unreadable) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(dir, "not a folder");
  struct Entry {
    std::string path;
    std::string series;                  // Series Instance UID ("" if absent)
    std::optional<long> series_number;
    std::optional<double> position;  // along the slice normal, mm
    std::optional<long> instance;
  };
  std::vector<Entry> entries;
  for (const auto& item : fs::directory_iterator(dir, ec)) {
    const std::string name = item.path().filename().string();
    if (name.empty() || name[0] == '.' || !item.is_regular_file(ec)) continue;
    const std::string path = item.path().string();
    if (!is_dicom_file(path)) continue;
    DcmFileFormat file;
    try {
      load(file, path, true);
    } catch (const Error& e) {
      if (unreadable) unreadable->push_back(e);  // corrupt, or a stray non-DICOM .dcm
      continue;
    }
    DcmDataset* data = file.getDataset();
    Entry e{path, "", std::nullopt, std::nullopt, std::nullopt};
    OFString series;
    if (data->findAndGetOFString(DCM_SeriesInstanceUID, series).good()) e.series = series.c_str();
    Sint32 series_number = 0;
    if (data->findAndGetSint32(DCM_SeriesNumber, series_number).good()) e.series_number = series_number;
    std::array<double, 3> position{};
    std::array<double, 6> orientation{};
    const bool have_position = read_numbers(data, DCM_ImagePositionPatient, position);
    const bool have_orientation = read_numbers(data, DCM_ImageOrientationPatient, orientation);
    if (have_position) {
      // Normal = row direction x column direction; without an orientation, the z coordinate.
      std::array<double, 3> normal{0, 0, 1};
      if (have_orientation) {
        const double* r = orientation.data();
        const double* c = orientation.data() + 3;
        normal = {r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]};
      }
      e.position = position[0] * normal[0] + position[1] * normal[1] + position[2] * normal[2];
    }
    Sint32 instance = 0;
    if (data->findAndGetSint32(DCM_InstanceNumber, instance).good()) e.instance = instance;
    entries.push_back(std::move(e));
  }
  if (entries.empty()) fail(dir, "no readable DICOM file in this folder");
  const bool by_position = std::all_of(entries.begin(), entries.end(), [](const Entry& e) { return e.position.has_value(); });
  const bool by_instance = std::all_of(entries.begin(), entries.end(), [](const Entry& e) { return e.instance.has_value(); });
  const bool by_series_number =
      std::all_of(entries.begin(), entries.end(), [](const Entry& e) { return e.series_number.has_value(); });
  // A study folder may hold several series (T1, FLAIR...) over the same positions: each series
  // stays together, in Series Number order, and is sorted within.
  std::sort(entries.begin(), entries.end(), [&](const Entry& a, const Entry& b) {
    if (by_series_number && *a.series_number != *b.series_number) return *a.series_number < *b.series_number;
    if (a.series != b.series) return a.series < b.series;
    if (by_position && *a.position != *b.position) return *a.position < *b.position;
    if (by_instance && *a.instance != *b.instance) return *a.instance < *b.instance;
    return a.path < b.path;
  });
  std::vector<std::string> paths;
  for (auto& e : entries) paths.push_back(std::move(e.path));
  return paths;
}

}  // namespace medsad::data
