// Reader and writer for the safetensors format (Hugging Face): an 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {}},
// then the raw little-endian tensor bytes. Small enough to do directly; no library needed.
#pragma once
#include <map>
#include <string>

#include <torch/torch.h>

namespace medsad {

using TensorMap = std::map<std::string, torch::Tensor>;

// True if `bytes` begins like a safetensors file (plausible header length, then '{').
bool looks_like_safetensors(const char* bytes, size_t size);

// Reads every tensor (in its stored dtype, CPU, contiguous). Throws Error(path, ...) on a
// truncated file, a malformed header, an unknown dtype or offsets outside the data.
TensorMap read_safetensors(const std::string& path);

// The "__metadata__" string map of a safetensors file (empty if none).
std::map<std::string, std::string> read_safetensors_metadata(const std::string& path);

// Writes `tensors` atomically; `metadata` goes to "__metadata__".
void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace medsad
