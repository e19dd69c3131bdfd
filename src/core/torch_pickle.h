// Reader for torch.save zip archives (data.pkl + data/<key> storages), written here because
// LibTorch's own pickle_load turns collections.OrderedDict (what model.state_dict() returns, and
// so what most real checkpoints hold) into None. It runs the pickle opcodes torch.save emits and
// rebuilds tensors from their storages; classes it does not know become opaque objects.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace medsad {

struct PickleValue;
using PickleRef = std::shared_ptr<PickleValue>;

struct PickleValue {
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Tensor, Global, Object };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;                                // String, Bytes, Global ("module.name"), Object (class)
  std::vector<PickleRef> items;                    // List, Tuple
  std::vector<std::pair<PickleRef, PickleRef>> entries;  // Dict, in insertion order
  torch::Tensor tensor;                            // Tensor

  bool is_string() const { return kind == Kind::String; }
};

// Loads the object a torch.save zip archive holds. Throws Error(path, ...) on a corrupt or
// truncated archive, an unsupported opcode, or a storage that is missing or too short.
PickleRef load_torch_archive(const std::string& path);

}  // namespace medsad
