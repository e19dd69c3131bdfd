// Loading CLIP weights from the formats real checkpoints ship in, under OpenAI's key names, and building a ClipModel whose shapes are inferred from those tensors.
//   1. OpenAI TorchScript archives (.pt; mostly float16; non-weight entries ignored)
//   2. torch.save zip pickles of a state dict (optionally {"state_dict": ...}, "module." prefixes)
//   3. Hugging Face CLIPModel safetensors + config.json (q/k/v split, projections transposed)
//   4. safetensors state dicts under OpenAI's key names (open_clip's open_clip_model.safetensors)
// Safetensors split into shards are read through their index (model.safetensors.index.json).
// Tensors keep the file's floating dtype until they are copied into the model (an fp16 file is
// not doubled in memory on the way).
// The format is detected from the file's content, never its name.
#pragma once
#include <string>

#include "clip/clip_model.h"
#include "clip/config.h"
#include "core/safetensors.h"

namespace medsad::clip {

enum class WeightFormat { OpenAiTorchScript, TorchPickle, HuggingFace, SafetensorsStateDict };
const char* to_string(WeightFormat format);

struct ClipCheckpoint {
  std::string path;
  WeightFormat format = WeightFormat::TorchPickle;
  ClipConfig config;
  ImagePreprocess preprocess;
  TensorMap tensors;  // OpenAI key names ("visual.conv1.weight", "token_embedding.weight", ...), file dtype
};

// Reads and validates a checkpoint. `hf_config` names the Hugging Face config.json; when empty it
// is looked for beside the weights. `activation` ("auto", "quick_gelu" or "gelu") sets the MLP
// activation, which a state dict does not record: "auto" takes a Hugging Face config's hidden_act,
// else QuickGELU, as OpenAI's weights use (open_clip's LAION- and DataComp-trained weights need
// "gelu"). Throws Error(path, ...) on anything that is not a ViT CLIP.
ClipCheckpoint read_clip_checkpoint(const std::string& path, const std::string& hf_config = "",
                                    const std::string& activation = "auto");

// The files holding a checkpoint's weights: `path` itself, or for a sharded safetensors index
// (a .json file with a "weight_map") the shards it names, beside it, sorted. Throws Error(path,
// ...) for an index that is not valid JSON or has no weight_map, and Error(shard, ...) for a
// missing shard.
std::vector<std::string> weight_files(const std::string& path);

// SHA-256 pinning a backbone: of the file, or for a sharded index, of the index's bytes followed
// by each shard's digest, so that a changed shard changes it too.
std::string weights_sha256(const std::string& path);

// Infers the architecture from tensor shapes. Heads: width / 64, as OpenAI's and open_clip's
// towers use, except open_clip's ViT-H, ViT-g and ViT-bigG image towers (widths 1280, 1408 and
// 1664), which have 16 heads of 80, 88 and 104.
ClipConfig infer_clip_config(const TensorMap& tensors, const std::string& path);

// Builds the model for checkpoint.config and copies every tensor in, strictly: a missing,
// unexpected or misshapen tensor is an Error naming it. Parameters are fp32, except the
// matrix_parameters() with matrix_dtype = bf16: those are then allocated in bf16 from the start
// (a frozen backbone for inference), so that peak memory is the file's tensors plus a bf16 model,
// not plus an fp32 one (ViT-L/14: 0.9 GB less).
ClipModel build_clip_model(const ClipCheckpoint& checkpoint, torch::Dtype matrix_dtype = torch::kFloat32);

// read_clip_checkpoint + build_clip_model, in eval mode.
ClipModel load_clip_model(const std::string& path, const std::string& hf_config = "");

// Format readers (weights_openai.cpp, weights_pickle.cpp, weights_hf.cpp): raw tensors, any dtype.
TensorMap read_openai_torchscript(const std::string& path);
TensorMap read_torch_pickle(const std::string& path);
struct HfClipWeights {
  TensorMap tensors;  // already renamed to OpenAI keys
  ClipConfig config;  // activation, heads and eps from config.json; widths filled in later from shapes
  bool has_config = false;
  ImagePreprocess preprocess;
};
// Renames a Hugging Face CLIPModel state dict (read from safetensors or a torch.save pickle of
// `path`) to OpenAI keys, reading config.json (`config_path`, or found beside `path`).
HfClipWeights convert_hf_checkpoint(TensorMap raw, const std::string& path, const std::string& config_path);

}  // namespace medsad::clip
