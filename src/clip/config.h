// Architecture of an OpenAI-style ViT CLIP, as plain structs. Every field is inferred from a
// checkpoint's tensor shapes (infer_clip_config in weights.h), never from a table of model names.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace medsad::clip {

enum class Activation { QuickGelu, Gelu };

// "quick_gelu" or "gelu"; throws Error for any other name.
Activation activation_from_name(const std::string& name);  // OpenAI CLIP uses QuickGELU: x * sigmoid(1.702 x)

// How pixels become patch tokens. CLIP checkpoints use one patch_size x patch_size convolution.
// A backbone trained from scratch on little data optimises far better with a convolutional stem:
//   ConvStack:   log2(patch_size) 3x3 stride-2 convolutions with GELU between them;
//   ConvEncoder: a small CNN encoder (a hybrid ViT): log2(patch_size) stages of two 3x3
//                convolutions, each followed by GroupNorm and GELU, the first stage at full
//                resolution and each later one halving it and doubling the channels from
//                stem_channels, then a 3x3 stride-2 convolution to the width.
enum class PatchStem { Conv, ConvStack, ConvEncoder };
std::string stem_name(PatchStem stem);                 // "conv", "conv_stack", "conv_encoder"
PatchStem stem_from_name(const std::string& name);     // throws Error on any other name

struct ClipVisionConfig {
  int64_t width = 768;        // residual width D
  int64_t layers = 12;        // transformer blocks
  int64_t heads = 12;         // attention heads (width / 64 for OpenAI checkpoints)
  int64_t mlp_width = 3072;   // hidden width of each block's MLP
  int64_t patch_size = 16;    // square patch side, pixels
  int64_t image_size = 224;   // native input side; position embeddings are stored for this grid
  PatchStem stem = PatchStem::Conv;
  int64_t stem_channels = 16;  // PatchStem::ConvEncoder: channels of its first stage

  int64_t grid_size() const { return image_size / patch_size; }
  void validate() const;
  std::string to_string() const;
};

struct ClipTextConfig {
  int64_t width = 512;
  int64_t layers = 12;
  int64_t heads = 8;
  int64_t mlp_width = 2048;
  int64_t context_length = 77;  // tokens, start and end tokens included
  int64_t vocab_size = 49408;

  void validate() const;
  std::string to_string() const;
};

struct ClipConfig {
  ClipVisionConfig vision;
  ClipTextConfig text;
  int64_t embed_dim = 512;  // joint image-text embedding width d_j
  Activation activation = Activation::QuickGelu;
  double layer_norm_eps = 1e-5;

  void validate() const;
  std::string to_string() const;
  nlohmann::json to_json() const;
  static ClipConfig from_json(const nlohmann::json& j);  // throws Error on a malformed config
};

// CLIP's image normalisation; the weight bundle carries it (Hugging Face checkpoints may differ).
struct ImagePreprocess {
  float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
};

}  // namespace medsad::clip
