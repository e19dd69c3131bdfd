#include "clip/config.h"

#include <sstream>

#include "core/error.h"

namespace medsad::clip {
namespace {

void require_positive(const char* tower, const char* field, int64_t value) {
  if (value <= 0)
    fail("", std::string(tower) + " config: " + field + " must be positive, got " + std::to_string(value));
}

}  // namespace

void ClipVisionConfig::validate() const {
  for (auto [name, v] : {std::pair{"width", width}, {"layers", layers}, {"heads", heads},
                         {"mlp_width", mlp_width}, {"patch_size", patch_size}, {"image_size", image_size}})
    require_positive("vision", name, v);
  if (width % heads != 0)
    fail("", "vision config: width " + std::to_string(width) + " is not divisible by heads " + std::to_string(heads));
  if (image_size < patch_size)
    fail("", "vision config: image_size " + std::to_string(image_size) + " is smaller than the patch " +
                 std::to_string(patch_size));
}

void ClipTextConfig::validate() const {
  for (auto [name, v] : {std::pair{"width", width}, {"layers", layers}, {"heads", heads},
                         {"mlp_width", mlp_width}, {"context_length", context_length}, {"vocab_size", vocab_size}})
    require_positive("text", name, v);
  if (width % heads != 0)
    fail("", "text config: width " + std::to_string(width) + " is not divisible by heads " + std::to_string(heads));
  if (context_length < 2) fail("", "text config: context_length must hold start and end tokens");
}

void ClipConfig::validate() const {
  vision.validate();
  text.validate();
  require_positive("clip", "embed_dim", embed_dim);
}

std::string ClipVisionConfig::to_string() const {
  std::ostringstream s;
  s << "ViT width " << width << ", " << layers << " blocks, " << heads << " heads, mlp " << mlp_width << ", patch "
    << patch_size << ", input " << image_size << " (" << grid_size() << "x" << grid_size() << " patches)";
  return s.str();
}

std::string ClipTextConfig::to_string() const {
  std::ostringstream s;
  s << "transformer width " << width << ", " << layers << " blocks, " << heads << " heads, mlp " << mlp_width
    << ", context " << context_length << ", vocabulary " << vocab_size;
  return s.str();
}

std::string ClipConfig::to_string() const {
  std::ostringstream s;
  s << "image: " << vision.to_string() << "\ntext: " << text.to_string() << "\nembedding: " << embed_dim
    << ", activation " << (activation == Activation::QuickGelu ? "QuickGELU" : "GELU");
  return s.str();
}

}  // namespace medsad::clip
