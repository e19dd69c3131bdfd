// OpenAI's released CLIP .pt files are TorchScript archives: the weights are the module's
// parameters and buffers (mostly float16); input_resolution, context_length, vocab_size and
// attn_mask are stored beside them and are not weights (dropped by read_clip_checkpoint).
#include <torch/script.h>

#include "clip/weights.h"
#include "core/error.h"

namespace medsad::clip {

TensorMap read_openai_torchscript(const std::string& path) {
  torch::jit::Module module;
  try {
    module = torch::jit::load(path, torch::kCPU);
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    why = why.substr(0, why.find('\n'));
    fail(path, "corrupt or truncated TorchScript archive (" + why + ")");
  }
  TensorMap tensors;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors[p.name] = p.value.detach();
  for (const auto& b : module.named_buffers(/*recurse=*/true)) tensors[b.name] = b.value.detach();
  for (const auto& a : module.named_attributes(/*recurse=*/true))
    if (a.value.isTensor() && !tensors.count(a.name)) tensors[a.name] = a.value.toTensor().detach();
  return tensors;
}

}  // namespace medsad::clip
