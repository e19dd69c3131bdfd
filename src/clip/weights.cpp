#include "clip/weights.h"

#include <caffe2/serialize/inline_container.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "core/text.h"

namespace medsad::clip {
namespace {

namespace fs = std::filesystem;

// Entries some formats store beside the weights; never weights themselves.
bool is_non_weight(const std::string& key) {
  return key == "attn_mask" || key == "input_resolution" || key == "context_length" || key == "vocab_size" ||
         key.find("position_ids") != std::string::npos;
}

std::string shape_string(torch::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

WeightFormat detect_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open the weights file");
  char head[16] = {};
  in.read(head, sizeof head);
  const size_t got = static_cast<size_t>(in.gcount());
  if (got >= 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
    std::vector<std::string> records;
    try {
      caffe2::serialize::PyTorchStreamReader reader(path);
      records = reader.getAllRecords();
    } catch (const c10::Error&) {
      fail(path, "corrupt or truncated zip archive (not a readable PyTorch checkpoint)");
    }
    for (const auto& r : records)
      if (r == "constants.pkl" || r.rfind("code/", 0) == 0) return WeightFormat::OpenAiTorchScript;
    for (const auto& r : records)
      if (r == "data.pkl") return WeightFormat::TorchPickle;
    fail(path, "zip archive is not a PyTorch checkpoint (no data.pkl)");
  }
  // Hugging Face names or OpenAI's: read_clip_checkpoint tells them apart by the tensors' names.
  if (looks_like_safetensors(head, got)) return WeightFormat::HuggingFace;
  if (got >= 2 && static_cast<unsigned char>(head[0]) == 0x80 && head[1] <= 5)
    fail(path, "legacy (non-zip) torch.save format is not supported; re-save it with a PyTorch >= 1.6 torch.save");
  fail(path, "not a CLIP checkpoint (expected a TorchScript or torch.save zip archive, or safetensors)");
}

int64_t count_blocks(const TensorMap& tensors, const std::string& prefix) {
  int64_t n = 0;
  while (tensors.count(prefix + std::to_string(n) + ".ln_1.weight")) ++n;
  return n;
}

// A sharded safetensors checkpoint is named by its index, model.safetensors.index.json.
bool is_shard_index(const std::string& path) { return ends_with(ascii_lower(path), ".json"); }

}  // namespace

const char* to_string(WeightFormat format) {
  switch (format) {
    case WeightFormat::OpenAiTorchScript: return "OpenAI TorchScript";
    case WeightFormat::TorchPickle: return "torch.save state dict";
    case WeightFormat::HuggingFace: return "Hugging Face CLIPModel";
    case WeightFormat::SafetensorsStateDict: return "safetensors state dict";
  }
  return "unknown";
}

ClipConfig infer_clip_config(const TensorMap& tensors, const std::string& path) {
  for (const auto& [key, value] : tensors)
    if (key.rfind("visual.layer1.", 0) == 0 || key.rfind("visual.attnpool.", 0) == 0)
      fail(path, "ResNet CLIP image towers are not supported; use a ViT CLIP (e.g. ViT-B/16, ViT-L/14)");
  auto get = [&](const std::string& key, int64_t dims) -> const torch::Tensor& {
    const auto it = tensors.find(key);
    if (it == tensors.end()) fail(path, "not a ViT CLIP checkpoint: missing tensor '" + key + "'");
    if (it->second.dim() != dims)
      fail(path, "tensor '" + key + "' has shape " + shape_string(it->second.sizes()) + ", expected " +
                     std::to_string(dims) + " dimensions");
    return it->second;
  };

  ClipConfig config;
  auto& v = config.vision;
  const auto& conv = get("visual.conv1.weight", 4);  // [D, 3, p, p]
  v.width = conv.size(0);
  v.patch_size = conv.size(2);
  if (conv.size(1) != 3 || conv.size(3) != v.patch_size)
    fail(path, "visual.conv1.weight has shape " + shape_string(conv.sizes()) + ", expected [width, 3, p, p]");
  const auto& pos = get("visual.positional_embedding", 2);  // [1 + G*G, D]
  const int64_t grid = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(pos.size(0) - 1))));
  if (grid * grid + 1 != pos.size(0) || pos.size(1) != v.width)
    fail(path, "visual.positional_embedding has shape " + shape_string(pos.sizes()) +
                   ", expected [1 + G*G, " + std::to_string(v.width) + "]");
  v.image_size = grid * v.patch_size;
  v.layers = count_blocks(tensors, "visual.transformer.resblocks.");
  if (v.layers == 0) fail(path, "not a ViT CLIP checkpoint: no image transformer blocks");
  v.mlp_width = get("visual.transformer.resblocks.0.mlp.c_fc.weight", 2).size(0);
  // open_clip's largest image towers keep 16 heads and widen them instead (head_width 80, 88, 104).
  v.heads = (v.width == 1280 || v.width == 1408 || v.width == 1664) ? 16 : std::max<int64_t>(1, v.width / 64);
  config.embed_dim = get("visual.proj", 2).size(1);

  auto& t = config.text;
  const auto& tok = get("token_embedding.weight", 2);  // [V, Dt]
  t.vocab_size = tok.size(0);
  t.width = tok.size(1);
  t.context_length = get("positional_embedding", 2).size(0);
  t.layers = count_blocks(tensors, "transformer.resblocks.");
  if (t.layers == 0) fail(path, "not a CLIP checkpoint: no text transformer blocks");
  t.mlp_width = get("transformer.resblocks.0.mlp.c_fc.weight", 2).size(0);
  t.heads = std::max<int64_t>(1, t.width / 64);
  const auto& text_proj = get("text_projection", 2);  // [Dt, E]
  if (text_proj.size(1) != config.embed_dim)
    fail(path, "text_projection has shape " + shape_string(text_proj.sizes()) + " but the image projection gives " +
                   "an embedding of " + std::to_string(config.embed_dim));
  try {
    config.validate();
  } catch (const Error& e) {
    fail(path, e.problem());
  }
  return config;
}

std::vector<std::string> weight_files(const std::string& path) {
  if (!is_shard_index(path)) return {path};
  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file_text(path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, "not valid JSON (" + json_error_text(e) + ")");
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail(path, "a .json weights file must be a sharded safetensors index with a \"weight_map\"");
  std::set<std::string> shards;
  for (const auto& [tensor, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) fail(path, "weight_map entry '" + tensor + "' does not name a file");
    shards.insert((fs::absolute(path).parent_path() / shard.get<std::string>()).string());
  }
  if (shards.empty()) fail(path, "the weight_map lists no tensors");
  std::error_code ec;
  for (const auto& shard : shards)
    if (!fs::is_regular_file(shard, ec)) fail(shard, "shard listed in " + path + " is missing");
  return {shards.begin(), shards.end()};
}

std::string weights_sha256(const std::string& path) {
  if (!is_shard_index(path)) return sha256_file(path);
  Sha256 digest;
  const std::string index = read_file_text(path);
  digest.update(index.data(), index.size());
  for (const auto& shard : weight_files(path)) {
    const std::string hex = sha256_file(shard);
    digest.update(hex.data(), hex.size());
  }
  return digest.hex();
}

ClipCheckpoint read_clip_checkpoint(const std::string& path, const std::string& hf_config,
                                    const std::string& activation) {
  ClipCheckpoint ckpt;
  ckpt.path = path;
  TensorMap raw;
  if (is_shard_index(path)) {
    ckpt.format = WeightFormat::HuggingFace;  // or a state dict: told apart by the names below
    for (const auto& shard : weight_files(path)) {
      if (detect_format(shard) != WeightFormat::HuggingFace) fail(shard, "a shard that is not a safetensors file");
      for (auto& [key, tensor] : read_safetensors(shard))
        if (!raw.emplace(key, std::move(tensor)).second) fail(shard, "tensor '" + key + "' is in two shards");
    }
  } else {
    ckpt.format = detect_format(path);
    switch (ckpt.format) {
      case WeightFormat::OpenAiTorchScript: raw = read_openai_torchscript(path); break;
      case WeightFormat::TorchPickle: raw = read_torch_pickle(path); break;
      case WeightFormat::HuggingFace:
      case WeightFormat::SafetensorsStateDict: raw = read_safetensors(path); break;
    }
  }
  const bool hf_names = raw.count("vision_model.embeddings.patch_embedding.weight") ||
                        raw.count("vision_model.embeddings.class_embedding");
  std::optional<HfClipWeights> hf;
  if (hf_names) {
    hf = convert_hf_checkpoint(std::move(raw), path, hf_config);
    raw = std::move(hf->tensors);
    ckpt.format = WeightFormat::HuggingFace;
    ckpt.preprocess = hf->preprocess;
  } else if (ckpt.format == WeightFormat::HuggingFace) {
    ckpt.format = WeightFormat::SafetensorsStateDict;  // safetensors under OpenAI's names
  }
  for (auto& [key, tensor] : raw) {
    if (is_non_weight(key)) continue;
    if (!tensor.is_floating_point()) fail(path, "tensor '" + key + "' is not floating point");
    ckpt.tensors[key] = tensor.contiguous();
  }
  ckpt.config = infer_clip_config(ckpt.tensors, path);
  if (hf && hf->has_config) {
    if (hf->config.vision.heads > 0) ckpt.config.vision.heads = hf->config.vision.heads;
    if (hf->config.text.heads > 0) ckpt.config.text.heads = hf->config.text.heads;
    ckpt.config.activation = hf->config.activation;
    ckpt.config.layer_norm_eps = hf->config.layer_norm_eps;
    try {
      ckpt.config.validate();
    } catch (const Error& e) {
      fail(path, e.problem());
    }
  }
  if (activation != "auto") ckpt.config.activation = activation_from_name(activation);
  return ckpt;
}

ClipModel build_clip_model(const ClipCheckpoint& ckpt, torch::Dtype matrix_dtype) {
  ClipModel model{nullptr};
  {
    // Modules allocate in the default dtype: allocate in matrix_dtype, then bring back to fp32
    // what must stay fp32 (a few percent of the weights).
    const auto previous = c10::get_default_dtype();
    c10::set_default_dtype(caffe2::TypeMeta::fromScalarType(matrix_dtype));
    try {
      model = ClipModel(ckpt.config);
    } catch (...) {
      c10::set_default_dtype(previous);
      throw;
    }
    c10::set_default_dtype(previous);
  }
  torch::NoGradGuard no_grad;
  std::set<const void*> matrices;
  for (const auto& p : model->matrix_parameters()) matrices.insert(p.unsafeGetTensorImpl());
  for (auto& p : model->parameters())
    if (!matrices.count(p.unsafeGetTensorImpl()) && p.scalar_type() != torch::kFloat32) p.set_data(p.to(torch::kFloat32));
  std::set<std::string> used;
  auto copy_into = [&](const std::string& model_key, torch::Tensor& target) {
    // The text tower's parameters sit at the top level of OpenAI checkpoints.
    const std::string key = model_key.rfind("text.", 0) == 0 ? model_key.substr(5) : model_key;
    const auto it = ckpt.tensors.find(key);
    if (it == ckpt.tensors.end()) fail(ckpt.path, "missing tensor '" + key + "'");
    if (it->second.sizes() != target.sizes())
      fail(ckpt.path, "tensor '" + key + "' has shape " + shape_string(it->second.sizes()) + ", expected " +
                          shape_string(target.sizes()));
    target.copy_(it->second);
    used.insert(key);
  };
  for (auto& p : model->named_parameters(/*recurse=*/true)) copy_into(p.key(), p.value());
  for (const auto& [key, tensor] : ckpt.tensors)
    if (!used.count(key)) fail(ckpt.path, "unexpected tensor '" + key + "' (not part of a ViT CLIP)");
  model->eval();
  return model;
}

ClipModel load_clip_model(const std::string& path, const std::string& hf_config) {
  return build_clip_model(read_clip_checkpoint(path, hf_config));
}

}  // namespace medsad::clip
