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

std::string stem_name(PatchStem stem) {
  switch (stem) {
    case PatchStem::Conv: return "conv";
    case PatchStem::ConvStack: return "conv_stack";
    case PatchStem::ConvEncoder: return "conv_encoder";
  }
  return "conv";
}

PatchStem stem_from_name(const std::string& name) {
  for (auto stem : {PatchStem::Conv, PatchStem::ConvStack, PatchStem::ConvEncoder})
    if (stem_name(stem) == name) return stem;
  fail("", "unknown patch stem '" + name + "' (conv, conv_stack or conv_encoder)");
}

void ClipVisionConfig::validate() const {
  for (auto [name, v] : {std::pair{"width", width}, {"layers", layers}, {"heads", heads},
                         {"mlp_width", mlp_width}, {"patch_size", patch_size}, {"image_size", image_size}})
    require_positive("vision", name, v);
  if (width % heads != 0)
    fail("", "vision config: width " + std::to_string(width) + " is not divisible by heads " + std::to_string(heads));
  if (image_size < patch_size)
    fail("", "vision config: image_size " + std::to_string(image_size) + " is smaller than the patch " +
                 std::to_string(patch_size));
  if (stem != PatchStem::Conv && (patch_size < 2 || patch_size > 32 || (patch_size & (patch_size - 1)) != 0))
    fail("", "vision config: a convolutional stem needs a power-of-two patch size from 2 to 32, got " +
                 std::to_string(patch_size));
  if (stem == PatchStem::ConvEncoder && (stem_channels < 8 || stem_channels > 512 || stem_channels % 8 != 0))
    fail("", "vision config: the encoder stem's first stage needs 8 to 512 channels in steps of 8 (GroupNorm "
             "groups), got " + std::to_string(stem_channels));
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
    << patch_size << (stem == PatchStem::ConvStack     ? " (convolutional stem)"
        : stem == PatchStem::ConvEncoder ? " (convolutional encoder stem, " + std::to_string(stem_channels) + " channels)"
                                         : "") << ", input " << image_size << " (" << grid_size() << "x" << grid_size() << " patches)";
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

nlohmann::json ClipConfig::to_json() const {
  return {{"vision", {{"width", vision.width}, {"layers", vision.layers}, {"heads", vision.heads},
                      {"mlp_width", vision.mlp_width}, {"patch_size", vision.patch_size},
                      {"image_size", vision.image_size},
                      {"stem", stem_name(vision.stem)}, {"stem_channels", vision.stem_channels}}},
          {"text", {{"width", text.width}, {"layers", text.layers}, {"heads", text.heads},
                    {"mlp_width", text.mlp_width}, {"context_length", text.context_length},
                    {"vocab_size", text.vocab_size}}},
          {"embed_dim", embed_dim},
          {"activation", activation == Activation::QuickGelu ? "quick_gelu" : "gelu"},
          {"layer_norm_eps", layer_norm_eps}};
}

Activation activation_from_name(const std::string& name) {
  if (name == "quick_gelu") return Activation::QuickGelu;
  if (name == "gelu") return Activation::Gelu;
  fail("", "unknown activation '" + name + "' (expected quick_gelu or gelu)");
}

ClipConfig ClipConfig::from_json(const nlohmann::json& j) {
  ClipConfig c;
  try {
    const auto& v = j.at("vision");
    c.vision.width = v.at("width").get<int64_t>();
    c.vision.layers = v.at("layers").get<int64_t>();
    c.vision.heads = v.at("heads").get<int64_t>();
    c.vision.mlp_width = v.at("mlp_width").get<int64_t>();
    c.vision.patch_size = v.at("patch_size").get<int64_t>();
    c.vision.image_size = v.at("image_size").get<int64_t>();
    c.vision.stem = stem_from_name(v.at("stem").get<std::string>());
    c.vision.stem_channels = v.value("stem_channels", c.vision.stem_channels);  // absent before conv_encoder
    const auto& t = j.at("text");
    c.text.width = t.at("width").get<int64_t>();
    c.text.layers = t.at("layers").get<int64_t>();
    c.text.heads = t.at("heads").get<int64_t>();
    c.text.mlp_width = t.at("mlp_width").get<int64_t>();
    c.text.context_length = t.at("context_length").get<int64_t>();
    c.text.vocab_size = t.at("vocab_size").get<int64_t>();
    c.embed_dim = j.at("embed_dim").get<int64_t>();
    c.activation = activation_from_name(j.at("activation").get<std::string>());
    c.layer_norm_eps = j.at("layer_norm_eps").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail("", "malformed CLIP config (" + json_error_text(e) + ")");
  }
  c.validate();
  return c;
}

}  // namespace medsad::clip
