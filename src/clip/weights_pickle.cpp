// torch.save zip archives holding a state dict, as training scripts (open_clip among them)
// leave them: the dict itself, or {"state_dict": dict, ...}, keys optionally prefixed "module."
// by DataParallel/DDP.
#include "clip/weights.h"
#include "core/error.h"
#include "core/file_io.h"

namespace medsad::clip {
namespace {

bool is_tensor_dict(const c10::Dict<c10::IValue, c10::IValue>& dict) {
  for (const auto& item : dict)
    if (item.key().isString() && item.value().isTensor()) return true;
  return false;
}

}  // namespace

TensorMap read_torch_pickle(const std::string& path) {
  const std::vector<char> bytes = read_file_bytes(path);
  c10::IValue root;
  try {
    root = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    why = why.substr(0, why.find('\n'));
    fail(path, "corrupt or truncated torch.save archive (" + why + ")");
  }
  if (!root.isGenericDict()) fail(path, "torch.save archive does not hold a dict of tensors");
  auto dict = root.toGenericDict();
  if (!is_tensor_dict(dict)) {
    // Training checkpoints wrap the weights; take the first nested tensor dict under a known key.
    bool found = false;
    for (const char* key : {"state_dict", "model", "module", "model_state_dict"}) {
      auto it = dict.find(c10::IValue(std::string(key)));
      if (it != dict.end() && it->value().isGenericDict() && is_tensor_dict(it->value().toGenericDict())) {
        dict = it->value().toGenericDict();
        found = true;
        break;
      }
    }
    if (!found) fail(path, "torch.save archive holds no state dict (no dict of named tensors found)");
  }
  TensorMap tensors;
  for (const auto& item : dict) {
    if (!item.key().isString() || !item.value().isTensor()) continue;
    std::string name = item.key().toStringRef();
    if (name.rfind("module.", 0) == 0) name = name.substr(7);
    tensors[name] = item.value().toTensor().detach();
  }
  return tensors;
}

}  // namespace medsad::clip
