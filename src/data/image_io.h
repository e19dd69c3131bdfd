// Reading 2-D images from disk: PNG, JPEG, TIFF, BMP (OpenCV; 8 or 16 bit, and TIFF's signed and
// floating-point pixels; grey, grey+alpha, RGB or RGBA) and DICOM (data/dicom_io.h: windowed to
// 8 bits), told apart by content.
#pragma once
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <torch/torch.h>

namespace medsad {

// Decodes an image file as stored (any depth and channel count). `what` names it in errors
// ("image", "mask"). Throws Error(path, ...) if missing, a directory, or not decodable.
cv::Mat decode_image_file(const std::string& path, const std::string& what);

// Returns float32 [3, H, W] RGB in [0, 1] (grey replicated to 3 channels, alpha dropped; 8 and
// 16-bit unsigned scaled by their full range; signed and floating-point pixels kept if already
// in [0, 1], else mapped from the image's min..max). Throws Error(path, ...) if missing, not a
// decodable image, or holding NaN/Inf pixels.
torch::Tensor read_image_rgb(const std::string& path);

// The same from a file's bytes in memory (an upload), one image per frame: every frame of a
// multi-frame DICOM file, one image for anything else. `name` stands for the file in errors.
std::vector<torch::Tensor> decode_image_frames_rgb(const std::string& bytes, const std::string& name);

// The smallest side of an image worth scoring: a strip of 1 or 2 pixels blown up to the model's
// input is no picture of anything.
constexpr int64_t kMinImageSide = 8;

// A decoded image (any depth OpenCV gives, 1-4 channels, BGR order) as read_image_rgb returns it.
// Throws Error(path, ...) for a side under kMinImageSide.
torch::Tensor image_to_rgb(const cv::Mat& image, const std::string& path);

// The PNG file bytes of `image` (8 or 16 bit; grey, BGR or BGRA).
std::string encode_png(const cv::Mat& image);

// Encodes `image` (8 or 16 bit; grey, BGR or BGRA) as PNG and writes it atomically
// (write_file_atomic). `compression`: zlib level 0-9, or -1 for OpenCV's fast default; 9 suits
// files that are kept, such as documentation. Throws Error(path, ...) if it cannot be encoded or
// written.
void write_png(const std::string& path, const cv::Mat& image, int compression = -1);

}  // namespace medsad
