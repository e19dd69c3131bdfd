#include "core/safetensors.h"

#include <cstring>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/file_io.h"
#include "core/text.h"

namespace medsad {
namespace {

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};

constexpr DtypeName kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32}, {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64}, {"I32", torch::kInt32},
    {"I16", torch::kInt16},     {"I8", torch::kInt8},   {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},
};

torch::ScalarType dtype_from_name(const std::string& path, const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  fail(path, "unsupported safetensors dtype '" + name + "'");
}

const char* dtype_to_name(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (type == d.type) return d.name;
  throw Error("", std::string("cannot store dtype ") + c10::toString(type) + " in safetensors");
}

uint64_t read_u64_le(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

struct Parsed {
  std::vector<char> bytes;
  nlohmann::json header;
  size_t data_begin = 0;
};

Parsed parse(const std::string& path) {
  Parsed out;
  out.bytes = read_file_bytes(path);
  const auto& bytes = out.bytes;
  if (bytes.size() < 8) fail(path, "too short to be a safetensors file (" + std::to_string(bytes.size()) + " bytes)");
  // The JSON header follows the 8-byte length: anything else is another format altogether.
  if (bytes.size() == 8 || bytes[8] != '{') {
    const bool zip = std::memcmp(bytes.data(), "PK\x03\x04", 4) == 0;
    const bool pickle = static_cast<unsigned char>(bytes[0]) == 0x80 && bytes[1] >= 2 && bytes[1] <= 5;
    fail(path, std::string("not a safetensors file") +
                   (zip ? " (a ZIP archive, as PyTorch .pt / TorchScript files are)"
                    : pickle ? " (a Python pickle, as old PyTorch .pt files are)"
                             : ""));
  }
  const uint64_t header_len = read_u64_le(bytes.data());
  if (header_len > bytes.size() - 8)
    fail(path, "truncated safetensors file: header claims " + std::to_string(header_len) +
                   " bytes but the file has " + std::to_string(bytes.size() - 8) + " after the length");
  try {
    out.header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(header_len));
  } catch (const nlohmann::json::exception&) {
    fail(path, "malformed safetensors header (not JSON)");
  }
  if (!out.header.is_object()) fail(path, "malformed safetensors header (not a JSON object)");
  out.data_begin = 8 + header_len;
  return out;
}

}  // namespace

bool looks_like_safetensors(const char* bytes, size_t size) {
  if (size < 9) return false;
  const uint64_t header_len = read_u64_le(bytes);
  return header_len >= 2 && header_len < (uint64_t(1) << 32) && bytes[8] == '{';
}

TensorMap read_safetensors(const std::string& path) {
  Parsed parsed = parse(path);
  const size_t data_size = parsed.bytes.size() - parsed.data_begin;
  TensorMap tensors;
  for (const auto& [name, info] : parsed.header.items()) {
    if (name == "__metadata__") continue;
    try {
      const auto type = dtype_from_name(path, info.at("dtype").get<std::string>());
      const auto shape = info.at("shape").get<std::vector<int64_t>>();
      const auto offsets = info.at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2 || offsets[0] > offsets[1])
        fail(path, "tensor '" + name + "' has invalid data_offsets");
      if (offsets[1] > data_size)
        fail(path, "truncated safetensors file: tensor '" + name + "' ends at byte " + std::to_string(offsets[1]) +
                       " of a " + std::to_string(data_size) + "-byte data section");
      int64_t numel = 1;
      for (int64_t d : shape) {
        if (d < 0) fail(path, "tensor '" + name + "' has a negative dimension");
        numel *= d;
      }
      const uint64_t expected = static_cast<uint64_t>(numel) * c10::elementSize(type);
      if (offsets[1] - offsets[0] != expected)
        fail(path, "tensor '" + name + "' holds " + std::to_string(offsets[1] - offsets[0]) +
                       " bytes, its shape and dtype need " + std::to_string(expected));
      torch::Tensor t = torch::empty(shape, torch::TensorOptions().dtype(type));
      if (expected > 0) std::memcpy(t.data_ptr(), parsed.bytes.data() + parsed.data_begin + offsets[0], expected);
      tensors.emplace(name, std::move(t));
    } catch (const nlohmann::json::exception&) {
      fail(path, "malformed safetensors header entry for '" + name + "'");
    }
  }
  return tensors;
}

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  Parsed parsed = parse(path);
  std::map<std::string, std::string> meta;
  const auto it = parsed.header.find("__metadata__");
  if (it != parsed.header.end() && it->is_object())
    for (const auto& [k, v] : it->items())
      if (v.is_string()) meta[k] = v.get<std::string>();
  return meta;
}

void write_safetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> ordered;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_to_name(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    ordered.push_back(t);
  }
  std::string header_text = json_text(header);
  while ((8 + header_text.size()) % 8 != 0) header_text.push_back(' ');  // align the data to 8 bytes
  std::string out;
  out.reserve(8 + header_text.size() + offset);
  const uint64_t len = header_text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += header_text;
  for (const auto& t : ordered)
    out.append(static_cast<const char*>(t.data_ptr()), static_cast<size_t>(t.numel()) * t.element_size());
  write_file_atomic(path, out);
}

}  // namespace medsad
