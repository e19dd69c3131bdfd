// torch.save zip archives holding a state dict, as training scripts (open_clip among them)
// leave them: the dict itself, or {"state_dict": dict, ...}, keys optionally prefixed "module."
// by DataParallel/DDP.
#include "clip/weights.h"
#include "core/error.h"
#include "core/torch_pickle.h"

namespace medsad::clip {
namespace {

bool is_tensor_dict(const PickleRef& v) {
  if (v->kind != PickleValue::Kind::Dict) return false;
  for (const auto& [key, value] : v->entries)
    if (key->is_string() && value->kind == PickleValue::Kind::Tensor) return true;
  return false;
}

}  // namespace

TensorMap read_torch_pickle(const std::string& path) {
  PickleRef dict = load_torch_archive(path);
  if (dict->kind != PickleValue::Kind::Dict) fail(path, "torch.save archive does not hold a dict of tensors");
  if (!is_tensor_dict(dict)) {
    // Training checkpoints wrap the weights; take the tensor dict under a known key.
    PickleRef inner;
    for (const char* wanted : {"state_dict", "model", "module", "model_state_dict"})
      for (const auto& [key, value] : dict->entries)
        if (!inner && key->is_string() && key->text == wanted && is_tensor_dict(value)) inner = value;
    if (!inner) fail(path, "torch.save archive holds no state dict (no dict of named tensors found)");
    dict = inner;
  }
  TensorMap tensors;
  for (const auto& [key, value] : dict->entries) {
    if (!key->is_string() || value->kind != PickleValue::Kind::Tensor) continue;
    std::string name = key->text;
    if (name.rfind("module.", 0) == 0) name = name.substr(7);
    tensors[name] = value->tensor;
  }
  return tensors;
}

}  // namespace medsad::clip
