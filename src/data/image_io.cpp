#include "data/image_io.h"

#include <png.h>
#include <unistd.h>

#include <atomic>
#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <limits>
#include <mutex>

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <zlib.h>

#include "core/error.h"
#include "core/file_io.h"
#include "data/dicom_io.h"

namespace medsad {
namespace {

uint32_t big_endian_u32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool is_png(const unsigned char* data, size_t size) {
  static const unsigned char kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return size >= 8 && std::memcmp(data, kPngSignature, 8) == 0;
}

// PNGs are decoded here with libpng rather than by OpenCV: libpng's default handlers, which
// OpenCV keeps, print to stderr ("libpng error: Not enough image data", "libpng warning: tEXt:
// CRC error") beside our own one-line error, or beside a result for a file libpng only warns
// about. These handlers are silent and keep libpng's words for our line. The result is what
// OpenCV's IMREAD_UNCHANGED gives once the alpha channel every caller drops is gone: palette and
// grey under 8 bits expanded to 8, 16 bits kept, colour in BGR order.
struct PngMemoryRead {
  const unsigned char* data;
  size_t size;
  size_t at = 0;
  std::string error;
  std::vector<png_bytep> rows;
};

// Returns the problem, or "" with the pixels in `image`.
std::string decode_png(const unsigned char* data, size_t size, cv::Mat& image) {
  PngMemoryRead state{data, size, 0, {}, {}};
  const auto on_error = [](png_structp png, png_const_charp message) {
    static_cast<PngMemoryRead*>(png_get_error_ptr(png))->error = message;
    png_longjmp(png, 1);
  };
  const auto on_warning = [](png_structp, png_const_charp) {};  // the image stays readable
  const auto read_bytes = [](png_structp png, png_bytep out, size_t length) {
    auto& in = *static_cast<PngMemoryRead*>(png_get_io_ptr(png));
    if (length > in.size - in.at) png_error(png, "the file ends inside a chunk");
    std::memcpy(out, in.data + in.at, length);
    in.at += length;
  };
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, on_error, on_warning);
  if (png == nullptr) return "out of memory decoding the PNG";
  png_infop info = png_create_info_struct(png);
  // Nothing below holds a C++ object that a longjmp back here would skip: `state` and `image`
  // outlive it.
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return "corrupt PNG: " + (state.error.empty() ? std::string("out of memory") : state.error);
  }
  png_set_read_fn(png, &state, read_bytes);
  png_read_info(png, info);
  const int colour_type = png_get_color_type(png, info);
  png_set_expand(png);       // palette -> RGB, grey of 1, 2 or 4 bits -> 8, transparency -> alpha
  png_set_strip_alpha(png);  // ... which no caller uses
  const uint16_t one = 1;
  if (*reinterpret_cast<const unsigned char*>(&one) == 1) png_set_swap(png);  // 16-bit samples to host order
  if (colour_type & PNG_COLOR_MASK_COLOR) png_set_bgr(png);
  (void)png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const int depth = png_get_bit_depth(png, info) == 16 ? CV_16U : CV_8U;
  image.create(static_cast<int>(png_get_image_height(png, info)), static_cast<int>(png_get_image_width(png, info)),
               CV_MAKETYPE(depth, png_get_channels(png, info)));
  state.rows.resize(static_cast<size_t>(image.rows));
  for (int y = 0; y < image.rows; ++y) state.rows[static_cast<size_t>(y)] = image.ptr(y);
  png_read_image(png, state.rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return "";
}

// A truncated or damaged PNG would only get libpng's terse message (decode_png), and a truncated
// JPEG is worse: libjpeg fills the missing part with grey and only warns, so a cut-off scan would be
// scored as if whole. Both formats mark their end, and a PNG checksums every chunk; this checks
// both before decoding. Returns the problem, or "" for a sound file (and for every other
// format, left to its decoder).
std::string damage_problem(const unsigned char* data, size_t size) {
  if (is_png(data, size)) {
    // Chunks: 4-byte big-endian data length, 4-byte type, the data, then the CRC-32 of type and
    // data; IEND comes last.
    for (size_t at = 8; at + 12 <= size;) {
      const uint64_t length = big_endian_u32(data + at);
      if (at + 12 + length > size) break;
      const std::string type(reinterpret_cast<const char*>(data + at + 4), 4);
      // Like libpng, only a critical chunk's (upper-case first letter) damage is fatal; an
      // ancillary one (text, gamma, ...) would only be dropped with a warning.
      const bool critical = (data[at + 4] & 0x20) == 0;
      const uLong crc = crc32(crc32(0L, Z_NULL, 0), data + at + 4, static_cast<uInt>(4 + length));
      if (critical && crc != big_endian_u32(data + at + 8 + length))
        return "corrupt PNG: the " + type + " chunk at byte " + std::to_string(at) + " fails its checksum";
      if (type == "IHDR" && length >= 8) {
        // libpng refuses sizes of 0 or over a million a side, printing its own lines first.
        const uint64_t width = big_endian_u32(data + at + 8), height = big_endian_u32(data + at + 12);
        if (width < 1 || height < 1 || width > 1000000 || height > 1000000)
          return "corrupt PNG: its header gives a " + std::to_string(width) + "x" + std::to_string(height) +
                 " image (1 to 1000000 pixels a side)";
        // OpenCV refuses images over 2^30 pixels (CV_IO_MAX_IMAGE_PIXELS) without saying why.
        if (width * height > (uint64_t{1} << 30))
          return "PNG too large: its header gives a " + std::to_string(width) + "x" + std::to_string(height) +
                 " image, over the 2^30 pixels an image may have";
      }
      if (type == "IEND") return "";
      at += 12 + static_cast<size_t>(length);
    }
    return "truncated PNG: the file ends before its IEND chunk";
  }
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) {
    // The compressed image follows the last start-of-scan marker (FF DA) and ends with FF D9.
    // Entropy-coded data never hold FF DA or FF D9 (an FF there is followed by 00 or a restart
    // marker), so the last FF DA is the last scan's, and an image cut short has no FF D9 after it.
    size_t last_scan = 0;
    for (size_t i = 2; i + 1 < size; ++i)
      if (data[i] == 0xFF && data[i + 1] == 0xDA) last_scan = i;
    if (last_scan == 0) return "truncated JPEG: the file ends before its image data";
    for (size_t i = last_scan + 2; i + 1 < size; ++i)
      if (data[i] == 0xFF && data[i + 1] == 0xD9) return "";
    return "truncated JPEG: the file ends before its end-of-image marker";
  }
  return "";
}

// OpenCV's imdecode also writes a decoder's failure straight to std::cerr ("imdecode_(''): can't
// read data: ...") before returning an empty image, for a cut-off BMP, TIFF or PNM. While any
// thread decodes, std::cerr goes to a sink: the first decode in swaps it, the last one out puts
// it back. medsad's own messages go through stdio (fprintf, spdlog), which this leaves alone.
class QuietCerr {
 public:
  QuietCerr() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (decoding_++ == 0) saved_ = std::cerr.rdbuf(&sink_);
  }
  ~QuietCerr() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--decoding_ == 0) std::cerr.rdbuf(saved_);
  }
  QuietCerr(const QuietCerr&) = delete;
  QuietCerr& operator=(const QuietCerr&) = delete;

 private:
  struct Sink : std::streambuf {
    int overflow(int c) override { return traits_type::not_eof(c); }
  };
  static inline std::mutex mutex_;
  static inline int decoding_ = 0;
  static inline std::streambuf* saved_ = nullptr;
  static inline Sink sink_;
};

// Decodes PNG/JPEG/TIFF/BMP bytes as stored (any depth and channel count); `name` for errors.
cv::Mat decode_bytes(const unsigned char* data, size_t size, const std::string& name, const std::string& what) {
  const std::string damage = damage_problem(data, size);
  if (!damage.empty()) fail(name, damage);
  if (is_png(data, size)) {
    cv::Mat image;
    const std::string problem = decode_png(data, size, image);
    if (!problem.empty()) fail(name, problem);
    return image;
  }
  // OpenCV's codecs log their own messages about a bad file ("[ WARN:0@0.27] ... TIFF ...",
  // "[ERROR:0@0.29] ... OpenJPEG2000 ..."); medsad reports each such file once, in its own
  // one-line error.
  static const bool codec_messages_off = [] {
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    return true;
  }();
  (void)codec_messages_off;
  cv::Mat image;
  try {
    const QuietCerr quiet;
    image = cv::imdecode(cv::Mat(1, static_cast<int>(size), CV_8U, const_cast<unsigned char*>(data)),
                         cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    image.release();
  }
  if (image.empty()) fail(name, "cannot decode the " + what + " (corrupt, truncated or not a PNG/JPEG/TIFF/BMP/DICOM file)");
  return image;
}

}  // namespace

cv::Mat decode_image_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path, what == "image" ? "no such file" : "no such " + what + " file");
  if (std::filesystem::is_directory(path, ec))
    fail(path, what == "image" ? "is a directory, expected an image file" : "is a directory, expected a " + what + " image");
  if (data::is_dicom_file(path)) return data::read_dicom_image(path);
  const auto bytes = read_file_bytes(path);
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) fail(path, "is over 2 GB, too large for an image");
  return decode_bytes(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), path, what);
}

torch::Tensor read_image_rgb(const std::string& path) { return image_to_rgb(decode_image_file(path, "image"), path); }

std::vector<torch::Tensor> decode_image_frames_rgb(const std::string& bytes, const std::string& name) {
  if (bytes.size() >= 132 && bytes.compare(128, 4, "DICM") == 0) {
    // DCMTK reads files: the bytes go through a private temporary one.
    const auto dir = std::filesystem::temp_directory_path();
    static std::atomic<uint64_t> counter{0};
    const auto path = (dir / ("medsad_upload_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".dcm")).string();
    write_file_atomic(path, bytes);
    try {
      std::vector<torch::Tensor> frames;
      for (const auto& frame : data::read_dicom_frames(path)) frames.push_back(image_to_rgb(frame, name));
      std::filesystem::remove(path);
      return frames;
    } catch (const Error& e) {
      std::filesystem::remove(path);
      fail(name, e.problem());
    }
  }
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) fail(name, "is over 2 GB, too large for an image");
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  return {image_to_rgb(decode_bytes(data, bytes.size(), name, "image"), name)};
}

std::string encode_png(const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) fail("", "cannot encode the image as PNG");
  return std::string(bytes.begin(), bytes.end());
}

torch::Tensor image_to_rgb(const cv::Mat& image, const std::string& path) {
  if (image.rows < kMinImageSide || image.cols < kMinImageSide)
    fail(path, "is " + std::to_string(image.cols) + "x" + std::to_string(image.rows) +
                   " pixels: too small to score (at least " + std::to_string(kMinImageSide) + " a side)");
  // The colour channels at the stored depth: grey, or BGR without alpha.
  cv::Mat colour;
  switch (image.channels()) {
    case 1: colour = image; break;
    case 2: cv::extractChannel(image, colour, 0); break;  // grey + alpha
    case 3: colour = image; break;
    case 4: {  // BGRA
      colour.create(image.rows, image.cols, CV_MAKETYPE(image.depth(), 3));
      const int from_to[] = {0, 0, 1, 1, 2, 2};
      cv::mixChannels(&image, 1, &colour, 1, from_to, 3);
      break;
    }
    default: fail(path, "unsupported channel count " + std::to_string(image.channels()));
  }
  // Values to [0, 1]. Unsigned integers by their type's full range, as a viewer shows them.
  // Signed and floating-point pixels (a CT slice in Hounsfield units, an MRI export in scanner
  // units) have no such range: values already within [0, 1] are kept, others are mapped from
  // the image's own minimum and maximum.
  double scale = 1.0, offset = 0.0;
  switch (colour.depth()) {
    case CV_8U: scale = 1.0 / 255.0; break;
    case CV_16U: scale = 1.0 / 65535.0; break;
    case CV_8S: case CV_16S: case CV_32S: case CV_32F: case CV_64F: {
      if (!cv::checkRange(colour)) fail(path, "holds NaN or infinite pixel values");
      double lo = 0, hi = 0;
      cv::minMaxLoc(colour.reshape(1), &lo, &hi);
      const bool floating = colour.depth() == CV_32F || colour.depth() == CV_64F;
      if (!(floating && lo >= 0 && hi <= 1)) {
        scale = hi > lo ? 1.0 / (hi - lo) : 0.0;
        offset = -lo * scale;
      }
      break;
    }
    default: fail(path, "unsupported pixel depth");
  }
  cv::Mat as_float;
  colour.convertTo(as_float, CV_32F, scale, offset);
  cv::Mat rgb;
  cv::cvtColor(as_float, rgb, as_float.channels() == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
  const int64_t H = rgb.rows, W = rgb.cols;
  auto hwc = torch::from_blob(rgb.ptr<float>(), {H, W, 3}, torch::kFloat32);  // [H, W, 3] view
  return hwc.permute({2, 0, 1}).clone().clamp_(0.0, 1.0);                     // [3, H, W]
}

void write_png(const std::string& path, const cv::Mat& image, int compression) {
  std::vector<uchar> bytes;
  std::vector<int> params;
  if (compression >= 0) params = {cv::IMWRITE_PNG_COMPRESSION, compression};
  if (!cv::imencode(".png", image, bytes, params))
    fail(path, "cannot encode the image as PNG");
  write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace medsad
