#include "data/image_io.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "data/dicom_io.h"

namespace medsad {

cv::Mat decode_image_file(const std::string& path, const std::string& what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path, what == "image" ? "no such file" : "no such " + what + " file");
  if (std::filesystem::is_directory(path, ec))
    fail(path, what == "image" ? "is a directory, expected an image file" : "is a directory, expected a " + what + " image");
  if (data::is_dicom_file(path)) return data::read_dicom_image(path);
  cv::Mat image;
  try {
    image = cv::imread(path, cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    image.release();
  }
  if (image.empty()) fail(path, "cannot decode the " + what + " (corrupt, truncated or not a PNG/JPEG/TIFF/BMP file)");
  return image;
}

torch::Tensor read_image_rgb(const std::string& path) { return image_to_rgb(decode_image_file(path, "image"), path); }

torch::Tensor decode_image_rgb(const std::string& bytes, const std::string& name) {
  if (bytes.size() >= 132 && bytes.compare(128, 4, "DICM") == 0) {
    // DCMTK reads files: the bytes go through a private temporary one.
    const auto dir = std::filesystem::temp_directory_path();
    static std::atomic<uint64_t> counter{0};
    const auto path = (dir / ("medsad_upload_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + ".dcm")).string();
    write_file_atomic(path, bytes);
    try {
      auto image = read_image_rgb(path);
      std::filesystem::remove(path);
      return image;
    } catch (const Error& e) {
      std::filesystem::remove(path);
      fail(name, e.problem());
    }
  }
  cv::Mat image;
  try {
    image = cv::imdecode(cv::Mat(1, static_cast<int>(bytes.size()), CV_8U, const_cast<char*>(bytes.data())),
                         cv::IMREAD_UNCHANGED);
  } catch (const cv::Exception&) {
    image.release();
  }
  if (image.empty()) fail(name, "cannot decode the image (corrupt, truncated or not a PNG/JPEG/TIFF/BMP/DICOM file)");
  return image_to_rgb(image, name);
}

std::string encode_png(const cv::Mat& image) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", image, bytes)) fail("", "cannot encode the image as PNG");
  return std::string(bytes.begin(), bytes.end());
}

torch::Tensor image_to_rgb(const cv::Mat& image, const std::string& path) {

  double scale = 1.0;
  switch (image.depth()) {
    case CV_8U: scale = 1.0 / 255.0; break;
    case CV_16U: scale = 1.0 / 65535.0; break;
    case CV_32F: break;
    default: fail(path, "unsupported pixel depth (expected 8-bit, 16-bit or float)");
  }
  cv::Mat rgb;
  switch (image.channels()) {
    case 1: cv::cvtColor(image, rgb, cv::COLOR_GRAY2RGB); break;
    case 2: {  // grey + alpha
      cv::Mat grey;
      cv::extractChannel(image, grey, 0);
      cv::cvtColor(grey, rgb, cv::COLOR_GRAY2RGB);
      break;
    }
    case 3: cv::cvtColor(image, rgb, cv::COLOR_BGR2RGB); break;
    case 4: cv::cvtColor(image, rgb, cv::COLOR_BGRA2RGB); break;
    default: fail(path, "unsupported channel count " + std::to_string(image.channels()));
  }
  cv::Mat as_float;
  rgb.convertTo(as_float, CV_32FC3, scale);
  const int64_t H = as_float.rows, W = as_float.cols;
  auto hwc = torch::from_blob(as_float.ptr<float>(), {H, W, 3}, torch::kFloat32);  // [H, W, 3] view
  return hwc.permute({2, 0, 1}).clone().clamp_(0.0, 1.0);                          // [3, H, W]
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
