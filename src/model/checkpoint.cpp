#include "model/checkpoint.h"

#include <set>

#include "clip/weights.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/text.h"

namespace medsad::model {
namespace {

constexpr const char* kFormat = "medsad-checkpoint-1";

// SHA-256 over every tensor's name, shape, dtype and bytes in name order: what the file's data
// should hold, recorded at writing and compared at reading, so that a checkpoint damaged on disk
// or in transfer is refused instead of scoring with garbage weights. Independent of the file's
// layout (a recalibrated copy keeps it).
std::string tensors_sha256(const TensorMap& tensors) {
  Sha256 hash;
  for (const auto& [name, tensor] : tensors) {  // std::map: sorted by name
    const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    std::string head = name + '\0' + c10::toString(t.scalar_type());
    for (const int64_t size : t.sizes()) head += ',' + std::to_string(size);
    head += '\0';
    hash.update(head.data(), head.size());
    hash.update(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  }
  return hash.hex();
}

}  // namespace

nlohmann::json Calibration::to_json() const {
  return {{"calibrated", calibrated}, {"image_threshold", image_threshold}, {"image_rule", image_rule},
          {"pixel_threshold", pixel_threshold}};
}

Calibration Calibration::from_json(const nlohmann::json& j) {
  Calibration c;
  c.calibrated = j.at("calibrated").get<bool>();
  c.image_threshold = j.at("image_threshold").get<double>();
  c.pixel_threshold = j.at("pixel_threshold").get<double>();
  c.image_rule = j.value("image_rule", "f1");  // checkpoints from before the rule was recorded: F1-max
  // Scores and maps lie in [0, 1]: a threshold outside would call every image abnormal, or none.
  for (const auto& [name, value] : {std::pair{"image", c.image_threshold}, std::pair{"pixel", c.pixel_threshold}})
    if (!(value >= 0 && value <= 1))
      fail("", std::string(name) + " threshold " + std::to_string(value) + " is outside [0, 1]");
  return c;
}

void save_checkpoint(const std::string& path, MedSadClipImpl& model, const CheckpointInfo& info,
                     const TensorMap& extra) {
  TensorMap tensors = extra;
  for (const auto& p : model.named_parameters(/*recurse=*/true)) tensors["model." + p.key()] = p.value().detach();
  const nlohmann::json meta = {{"format", kFormat},
                               {"tensors_sha256", tensors_sha256(tensors)},
                               {"config", info.config.to_json()},
                               {"calibration", info.calibration.to_json()},
                               {"backbone_path", info.backbone_path},
                               {"backbone_sha256", info.backbone_sha256},
                               {"backbone_config", info.backbone_config},
                               {"bpe_path", info.bpe_path},
                               {"training", info.training}};
  write_safetensors(path, tensors, {{"medsad", json_text(meta)}});
}

void write_recalibrated_checkpoint(const std::string& path, const std::string& out, const Calibration& calibration) {
  (void)read_checkpoint_info(path);  // a medsad checkpoint of this format, or an Error naming it
  auto meta = read_safetensors_metadata(path);
  auto j = nlohmann::json::parse(meta.at("medsad"));
  j["calibration"] = calibration.to_json();
  meta["medsad"] = json_text(j);
  write_safetensors(out, read_checkpoint_tensors(path), meta);
}

TensorMap read_checkpoint_tensors(const std::string& path) {
  TensorMap tensors = read_safetensors(path);
  const auto meta = read_safetensors_metadata(path);
  std::string recorded;
  try {
    recorded = nlohmann::json::parse(meta.at("medsad")).value("tensors_sha256", "");
  } catch (const std::exception&) {
    fail(path, "not a medsad checkpoint (no readable medsad metadata)");
  }
  // Checkpoints written before the digest was recorded carry none; they load unchecked.
  if (!recorded.empty() && tensors_sha256(tensors) != recorded)
    fail(path, "damaged checkpoint: its tensors do not match the SHA-256 recorded when it was written");
  for (const auto& [name, tensor] : tensors)
    if (name.rfind("model.", 0) == 0 && tensor.is_floating_point() && !torch::isfinite(tensor).all().item<bool>())
      fail(path, "tensor '" + name + "' holds NaN or infinite values (a diverged training run?)");
  return tensors;
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  const auto meta = read_safetensors_metadata(path);
  const auto it = meta.find("medsad");
  if (it == meta.end()) fail(path, "not a medsad checkpoint (no medsad metadata)");
  try {
    const auto j = nlohmann::json::parse(it->second);
    if (j.at("format").get<std::string>() != kFormat)
      fail(path, "unsupported checkpoint format '" + j.at("format").get<std::string>() + "'");
    CheckpointInfo info;
    info.config = MedSadConfig::from_json(j.at("config"));
    info.calibration = Calibration::from_json(j.at("calibration"));
    info.backbone_path = j.at("backbone_path").get<std::string>();
    info.backbone_sha256 = j.at("backbone_sha256").get<std::string>();
    info.backbone_config = j.value("backbone_config", nlohmann::json());
    if (info.config.train_backbone && !info.backbone_config.is_object())
      fail(path, "a checkpoint with a trained backbone lacks the backbone's config");
    info.bpe_path = j.at("bpe_path").get<std::string>();
    info.training = j.value("training", nlohmann::json::object());
    return info;
  } catch (const nlohmann::json::exception& e) {
    fail(path, "corrupt checkpoint metadata (" + json_error_text(e) + ")");
  } catch (const Error& e) {
    fail(path, "invalid checkpoint config: " + e.problem());
  }
}

void load_checkpoint_weights(const std::string& path, const TensorMap& tensors, MedSadClipImpl& model) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& p : model.named_parameters(/*recurse=*/true)) {
    const std::string key = "model." + p.key();
    const auto it = tensors.find(key);
    if (it == tensors.end()) fail(path, "checkpoint lacks tensor '" + key + "'");
    if (it->second.sizes() != p.value().sizes())
      fail(path, "tensor '" + key + "' has the wrong shape for this backbone/config");
    p.value().copy_(it->second);
    used.insert(key);
  }
  for (const auto& [key, value] : tensors)
    if (key.rfind("model.", 0) == 0 && !used.count(key))
      fail(path, "unexpected tensor '" + key + "' (checkpoint from another configuration?)");
}

TrainedModel load_trained_model(const std::string& checkpoint_path, const std::string& weights_override,
                                const std::string& bpe_override, torch::Dtype precision, torch::Device device) {
  TrainedModel out;
  out.info = read_checkpoint_info(checkpoint_path);
  const TensorMap tensors = read_checkpoint_tensors(checkpoint_path);
  const std::string bpe = bpe_override.empty() ? out.info.bpe_path : bpe_override;
  const auto tokenizer = bpe.empty() ? clip::Tokenizer::byte_level() : clip::Tokenizer::from_bpe_file(bpe);
  clip::ClipModel backbone{nullptr};
  if (out.info.config.train_backbone) {  // weights are in the checkpoint: any initialisation will do
    try {
      backbone = clip::ClipModel(clip::ClipConfig::from_json(out.info.backbone_config));
    } catch (const Error& e) {
      fail(checkpoint_path, "invalid backbone config: " + e.problem());
    }
  } else {
    const std::string weights = weights_override.empty() ? out.info.backbone_path : weights_override;
    const std::string sha = clip::weights_sha256(weights);
    if (sha != out.info.backbone_sha256)
      fail(weights, "this backbone is not the one " + checkpoint_path + " was trained on (SHA-256 " +
                        sha.substr(0, 12) + "..., expected " + out.info.backbone_sha256.substr(0, 12) + "...)");
    auto checkpoint = clip::read_clip_checkpoint(weights);
    // Training's record of the architecture holds: what tensor shapes cannot tell (heads,
    // activation, LayerNorm eps: a --hf-config or --clip-activation given there) applies here too.
    // Checkpoints from before the record re-infer it from the weights.
    if (out.info.backbone_config.is_object()) {
      try {
        checkpoint.config = clip::ClipConfig::from_json(out.info.backbone_config);
      } catch (const Error& e) {
        fail(checkpoint_path, "invalid backbone config: " + e.problem());
      }
    }
    out.preprocess = checkpoint.preprocess;
    backbone = clip::build_clip_model(checkpoint, precision);
  }
  if (tokenizer.vocab_size() > backbone->config.text.vocab_size)
    fail(bpe.empty() ? checkpoint_path : bpe, "the tokenizer's vocabulary (" + std::to_string(tokenizer.vocab_size()) +
                                                  " ids) is larger than the text tower's (" +
                                                  std::to_string(backbone->config.text.vocab_size) + ")");
  try {  // a config edited by hand, or meant for another backbone
    auto config = out.info.config;
    config.resolve(backbone->config.vision.layers, backbone->config.vision.image_size,
                   backbone->config.vision.patch_size);
  } catch (const Error& e) {
    fail(checkpoint_path, "invalid checkpoint config: " + e.problem());
  }
  out.model = MedSadClip(backbone, tokenizer, out.info.config);
  load_checkpoint_weights(checkpoint_path, tensors, *out.model);
  out.model->to(device);  // first: prepare_for_inference makes its bf16 copies where the model runs
  out.model->prepare_for_inference(precision);
  return out;
}

}  // namespace medsad::model
