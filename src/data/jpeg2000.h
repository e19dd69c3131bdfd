// JPEG 2000 codestreams (DICOM's JPEG 2000 transfer syntaxes), decoded with OpenJPEG: Debian's
// DCMTK has no JPEG 2000 decoder, and OpenCV's refuses signed samples, which CT stores.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace medsad::data {

struct Jpeg2000Image {
  int width = 0, height = 0, components = 0;
  int precision = 0;             // bits per sample (the largest over the components)
  bool is_signed = false;
  std::vector<int32_t> samples;  // [height][width][components], interleaved
};

// Decodes a raw codestream (FF 4F FF 51 ...) or a .jp2 file's bytes; `name` for errors. Throws
// Error for corrupt or truncated data and for components of different sizes (subsampled
// chroma), which DICOM's JPEG 2000 pixel data never hold.
Jpeg2000Image decode_jpeg2000(const std::string& bytes, const std::string& name);

}  // namespace medsad::data
