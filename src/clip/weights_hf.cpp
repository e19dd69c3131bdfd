// Hugging Face transformers CLIPModel checkpoints: model.safetensors + config.json.
// Renamed to OpenAI keys: q/k/v projections concatenated into in_proj, the visual and text
// projections transposed (HF stores them as nn.Linear weights [E, D]; OpenAI as [D, E]).
#include <array>
#include <cstring>
#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "clip/weights.h"
#include "core/error.h"
#include "core/file_io.h"

namespace medsad::clip {
namespace fs = std::filesystem;
namespace {

// HF name piece -> OpenAI name piece, for everything inside one encoder layer.
const std::pair<const char*, const char*> kLayerRenames[] = {
    {"self_attn.out_proj.", "attn.out_proj."}, {"layer_norm1.", "ln_1."}, {"layer_norm2.", "ln_2."},
    {"mlp.fc1.", "mlp.c_fc."},                 {"mlp.fc2.", "mlp.c_proj."},
};

// Top-level renames (exact keys).
const std::pair<const char*, const char*> kTopRenames[] = {
    {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
    {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
    {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
    {"vision_model.pre_layrnorm.weight", "visual.ln_pre.weight"},  // sic: HF's spelling
    {"vision_model.pre_layrnorm.bias", "visual.ln_pre.bias"},
    {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
    {"vision_model.post_layernorm.bias", "visual.ln_post.bias"},
    {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
    {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
    {"text_model.final_layer_norm.weight", "ln_final.weight"},
    {"text_model.final_layer_norm.bias", "ln_final.bias"},
    {"logit_scale", "logit_scale"},
};

// config.json beside the weights: "config.json", else the one JSON file there that describes a
// CLIPModel (has vision_config and text_config), preferring the name closest to the weights'.
std::string find_config(const std::string& weights_path) {
  const fs::path dir = fs::absolute(weights_path).parent_path();
  if (fs::exists(dir / "config.json")) return (dir / "config.json").string();
  const std::string stem = fs::path(weights_path).stem().string();
  std::string best;
  size_t best_prefix = 0;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".json") continue;
    try {
      const auto j = nlohmann::json::parse(read_file_text(entry.path().string()));
      if (!j.is_object() || !j.contains("vision_config") || !j.contains("text_config")) continue;
    } catch (const std::exception&) {
      continue;
    }
    const std::string name = entry.path().filename().string();
    size_t prefix = 0;
    while (prefix < name.size() && prefix < stem.size() && name[prefix] == stem[prefix]) ++prefix;
    if (best.empty() || prefix > best_prefix) {
      best = entry.path().string();
      best_prefix = prefix;
    }
  }
  return best;
}

void read_config(const std::string& path, HfClipWeights& out) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file_text(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, "not valid JSON (" + json_error_text(e) + ")");
  }
  const auto vision = j.value("vision_config", nlohmann::json::object());
  const auto text = j.value("text_config", nlohmann::json::object());
  const std::string vision_act = vision.value("hidden_act", "quick_gelu");
  const std::string text_act = text.value("hidden_act", "quick_gelu");
  if (vision_act != text_act)
    fail(path, "image and text towers use different activations (" + vision_act + ", " + text_act + ")");
  try {
    out.config.activation = activation_from_name(vision_act);
  } catch (const Error&) {
    fail(path, "unsupported hidden_act '" + vision_act + "' (expected quick_gelu or gelu)");
  }
  out.config.vision.heads = vision.value("num_attention_heads", int64_t(0));
  out.config.text.heads = text.value("num_attention_heads", int64_t(0));
  out.config.layer_norm_eps = vision.value("layer_norm_eps", 1e-5);
  out.has_config = true;
}

void read_preprocessor_config(const fs::path& path, ImagePreprocess& pre) {
  if (!fs::exists(path)) return;
  try {
    const auto j = nlohmann::json::parse(read_file_text(path.string()));
    const auto mean = j.at("image_mean").get<std::vector<float>>();
    const auto std = j.at("image_std").get<std::vector<float>>();
    if (mean.size() != 3 || std.size() != 3) fail(path.string(), "image_mean and image_std need 3 values each");
    for (int c = 0; c < 3; ++c) pre.mean[c] = mean[c], pre.std[c] = std[c];
  } catch (const nlohmann::json::exception& e) {
    fail(path.string(), "cannot read image_mean/image_std (" + json_error_text(e) + ")");
  }
}

}  // namespace

HfClipWeights convert_hf_checkpoint(TensorMap raw, const std::string& path, const std::string& config_path) {
  HfClipWeights out;
  const std::string config = config_path.empty() ? find_config(path) : config_path;
  if (!config.empty()) read_config(config, out);
  read_preprocessor_config(fs::absolute(path).parent_path() / "preprocessor_config.json", out.preprocess);
  // Some exports prefix everything with the wrapper's name.
  for (const char* prefix : {"clip.", "model."}) {
    if (raw.count(std::string(prefix) + "logit_scale")) {
      TensorMap stripped;
      for (auto& [k, v] : raw) stripped[k.rfind(prefix, 0) == 0 ? k.substr(std::strlen(prefix)) : k] = v;
      raw.swap(stripped);
    }
  }

  static const std::regex layer_key(R"(^(vision|text)_model\.encoder\.layers\.(\d+)\.(.*)$)");
  std::map<std::string, std::array<torch::Tensor, 3>> qkv;  // "<openai block prefix>.attn.in_proj_{weight,bias}"
  for (auto& [key, tensor] : raw) {
    std::smatch m;
    if (key.find("position_ids") != std::string::npos) continue;  // a buffer, not a weight
    if (std::regex_match(key, m, layer_key)) {
      const std::string block = (m[1] == "vision" ? "visual.transformer.resblocks." : "transformer.resblocks.") +
                                m[2].str() + ".";
      const std::string rest = m[3];
      bool renamed = false;
      for (const char* proj : {"q", "k", "v"}) {
        const std::string head = std::string("self_attn.") + proj + "_proj.";
        if (rest.rfind(head, 0) == 0) {
          const int slot = proj[0] == 'q' ? 0 : proj[0] == 'k' ? 1 : 2;
          qkv[block + "attn.in_proj_" + rest.substr(head.size())][slot] = tensor;
          renamed = true;
        }
      }
      for (const auto& [from, to] : kLayerRenames)
        if (!renamed && rest.rfind(from, 0) == 0) {
          out.tensors[block + to + rest.substr(std::strlen(from))] = tensor;
          renamed = true;
        }
      if (!renamed) fail(path, "unexpected tensor '" + key + "' in a Hugging Face CLIP checkpoint");
      continue;
    }
    if (key == "visual_projection.weight") {
      out.tensors["visual.proj"] = tensor.t().contiguous();
      continue;
    }
    if (key == "text_projection.weight") {
      out.tensors["text_projection"] = tensor.t().contiguous();
      continue;
    }
    bool renamed = false;
    for (const auto& [from, to] : kTopRenames)
      if (key == from) {
        out.tensors[to] = tensor;
        renamed = true;
      }
    if (!renamed) out.tensors[key] = tensor;  // left for the strict copy to report
  }
  for (auto& [name, parts] : qkv) {
    for (int i = 0; i < 3; ++i)
      if (!parts[i].defined())
        fail(path, std::string("missing the ") + "qkv"[i] + " projection for '" + name + "'");
    out.tensors[name] = torch::cat({parts[0], parts[1], parts[2]}, 0);
  }
  return out;
}

}  // namespace medsad::clip
