#include "core/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>

#include <cstring>
#include <map>

#include "core/error.h"

namespace medsad {
namespace {

using Kind = PickleValue::Kind;

PickleRef make(Kind kind) {
  auto v = std::make_shared<PickleValue>();
  v->kind = kind;
  return v;
}

torch::ScalarType storage_dtype(const std::string& path, const std::string& global) {
  static const std::map<std::string, torch::ScalarType> kTypes = {
      {"torch.FloatStorage", torch::kFloat32}, {"torch.HalfStorage", torch::kFloat16},
      {"torch.BFloat16Storage", torch::kBFloat16}, {"torch.DoubleStorage", torch::kFloat64},
      {"torch.LongStorage", torch::kInt64},    {"torch.IntStorage", torch::kInt32},
      {"torch.ShortStorage", torch::kInt16},   {"torch.CharStorage", torch::kInt8},
      {"torch.ByteStorage", torch::kUInt8},    {"torch.BoolStorage", torch::kBool},
  };
  const auto it = kTypes.find(global);
  if (it == kTypes.end()) fail(path, "unsupported tensor storage type " + global);
  return it->second;
}

class Unpickler {
 public:
  Unpickler(std::string path, caffe2::serialize::PyTorchStreamReader& archive, const char* data, size_t size)
      : path_(std::move(path)), archive_(archive), data_(data), size_(size) {}

  PickleRef run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: skip(1); break;  // PROTO
        case 0x95: skip(8); break;  // FRAME
        case '.': return pop();     // STOP
        case '(': marks_.push_back(stack_.size()); break;
        case '}': stack_.push_back(make(Kind::Dict)); break;
        case ']': stack_.push_back(make(Kind::List)); break;
        case ')': stack_.push_back(make(Kind::Tuple)); break;
        case 'N': stack_.push_back(make(Kind::None)); break;
        case 0x88: case 0x89: {
          auto v = make(Kind::Bool);
          v->boolean = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'J': push_int(static_cast<int32_t>(uint_le(4))); break;
        case 'K': push_int(static_cast<int64_t>(uint_le(1))); break;
        case 'M': push_int(static_cast<int64_t>(uint_le(2))); break;
        case 0x8a: push_int(long1(static_cast<size_t>(uint_le(1)))); break;
        case 'G': {
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | byte();  // big-endian
          auto v = make(Kind::Float);
          std::memcpy(&v->real, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X': push_text(Kind::String, uint_le(4)); break;
        case 0x8c: push_text(Kind::String, uint_le(1)); break;
        case 0x8d: push_text(Kind::String, uint_le(8)); break;
        case 'T': push_text(Kind::String, uint_le(4)); break;
        case 'U': push_text(Kind::String, uint_le(1)); break;
        case 'B': push_text(Kind::Bytes, uint_le(4)); break;
        case 'C': push_text(Kind::Bytes, uint_le(1)); break;
        case 0x8e: push_text(Kind::Bytes, uint_le(8)); break;
        case 'q': memo_[uint_le(1)] = top(); break;
        case 'r': memo_[uint_le(4)] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;
        case 'h': push_memo(uint_le(1)); break;
        case 'j': push_memo(uint_le(4)); break;
        case 'c': {
          const std::string module = line(), name = line();
          push_global(module + "." + name);
          break;
        }
        case 0x93: {
          auto name = pop(), module = pop();
          push_global(module->text + "." + name->text);
          break;
        }
        case 't': case 'l': {
          auto v = make(op == 't' ? Kind::Tuple : Kind::List);
          v->items = pop_to_mark();
          stack_.push_back(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {
          auto v = make(Kind::Tuple);
          v->items.resize(op - 0x84);
          for (size_t i = v->items.size(); i-- > 0;) v->items[i] = pop();
          stack_.push_back(v);
          break;
        }
        case 'd': {
          auto v = make(Kind::Dict);
          auto flat = pop_to_mark();
          for (size_t i = 0; i + 1 < flat.size(); i += 2) v->entries.emplace_back(flat[i], flat[i + 1]);
          stack_.push_back(v);
          break;
        }
        case 'a': {
          auto item = pop();
          top()->items.push_back(item);
          break;
        }
        case 'e': {
          auto items = pop_to_mark();
          auto& list = top()->items;
          list.insert(list.end(), items.begin(), items.end());
          break;
        }
        case 's': {
          auto value = pop(), key = pop();
          top()->entries.emplace_back(key, value);
          break;
        }
        case 'u': {
          auto flat = pop_to_mark();
          auto& entries = top()->entries;
          for (size_t i = 0; i + 1 < flat.size(); i += 2) entries.emplace_back(flat[i], flat[i + 1]);
          break;
        }
        case 'R': case 0x81: {  // REDUCE, NEWOBJ
          auto args = pop(), callable = pop();
          stack_.push_back(apply(callable, args));
          break;
        }
        case 'b': pop(); break;  // BUILD: object state is not needed for weights
        case 'Q': stack_.push_back(persistent_load(pop())); break;
        case '0': pop(); break;
        case '1': pop_to_mark(); break;
        case '2': stack_.push_back(top()); break;
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(path_, std::string("unsupported pickle opcode ") + hex + " in data.pkl");
        }
      }
    }
  }

 private:
  uint8_t byte() {
    if (pos_ >= size_) fail(path_, "truncated pickle data in data.pkl");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  void skip(size_t n) {
    if (size_ - pos_ < n) fail(path_, "truncated pickle data in data.pkl");
    pos_ += n;
  }
  uint64_t uint_le(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    return v;
  }
  int64_t long1(size_t n) {
    if (n > 8) fail(path_, "integer too large in data.pkl");
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(byte()) << (8 * i);
    if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  std::string line() {
    std::string s;
    for (char c; (c = static_cast<char>(byte())) != '\n';) s.push_back(c);
    return s;
  }
  void push_int(int64_t i) {
    auto v = make(Kind::Int);
    v->integer = i;
    stack_.push_back(v);
  }
  void push_text(Kind kind, uint64_t n) {
    if (n > size_ - pos_) fail(path_, "truncated pickle data in data.pkl");
    auto v = make(kind);
    v->text.assign(data_ + pos_, n);
    pos_ += n;
    stack_.push_back(v);
  }
  void push_global(const std::string& name) {
    auto v = make(Kind::Global);
    v->text = name;
    stack_.push_back(v);
  }
  void push_memo(uint64_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail(path_, "corrupt pickle data in data.pkl (unknown memo entry)");
    stack_.push_back(it->second);
  }
  PickleRef top() {
    if (stack_.empty()) fail(path_, "corrupt pickle data in data.pkl (stack underflow)");
    return stack_.back();
  }
  PickleRef pop() {
    auto v = top();
    stack_.pop_back();
    return v;
  }
  std::vector<PickleRef> pop_to_mark() {
    if (marks_.empty() || marks_.back() > stack_.size()) fail(path_, "corrupt pickle data in data.pkl (no mark)");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }

  const std::vector<PickleRef>& tuple_items(const PickleRef& args, size_t at_least, const std::string& what) {
    if (args->kind != Kind::Tuple || args->items.size() < at_least)
      fail(path_, "malformed arguments to " + what + " in data.pkl");
    return args->items;
  }

  std::vector<int64_t> int_list(const PickleRef& v) {
    std::vector<int64_t> out;
    for (const auto& item : v->items) {
      if (item->kind != Kind::Int) fail(path_, "malformed tensor size or stride in data.pkl");
      out.push_back(item->integer);
    }
    return out;
  }

  PickleRef apply(const PickleRef& callable, const PickleRef& args) {
    const std::string name = callable->kind == Kind::Global ? callable->text : "";
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      const auto& a = tuple_items(args, 4, name);
      if (a[0]->kind != Kind::Tensor || a[1]->kind != Kind::Int) fail(path_, "malformed tensor record in data.pkl");
      const auto sizes = int_list(a[2]), strides = int_list(a[3]);
      if (sizes.size() != strides.size()) fail(path_, "tensor size and stride disagree in data.pkl");
      int64_t last = a[1]->integer;  // highest element index the view touches must lie in the storage
      for (size_t i = 0; i < sizes.size(); ++i) {
        if (sizes[i] < 0 || strides[i] < 0) fail(path_, "negative tensor size or stride in data.pkl");
        if (sizes[i] == 0) last = -1;
        if (last >= 0) last += (sizes[i] - 1) * strides[i];
      }
      if (last >= a[0]->tensor.numel()) fail(path_, "tensor extends past its storage (truncated or corrupt archive)");
      auto v = make(Kind::Tensor);
      v->tensor = a[0]->tensor.as_strided(sizes, strides, a[1]->integer);
      return v;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
      const auto& a = tuple_items(args, 1, name);
      return a[0];
    }
    if (name == "torch._tensor._rebuild_from_type_v2") {  // (func, type, args, state)
      const auto& a = tuple_items(args, 3, name);
      return apply(a[0], a[2]);
    }
    if (name == "collections.OrderedDict") return make(Kind::Dict);
    auto v = make(Kind::Object);
    v->text = name;
    return v;
  }

  // ('storage', storage_type, key, location, numel) -> the storage as a flat tensor.
  PickleRef persistent_load(const PickleRef& pid) {
    const auto& a = tuple_items(pid, 5, "a persistent id");
    if (!a[0]->is_string() || a[0]->text != "storage" || a[1]->kind != Kind::Global || !a[2]->is_string() ||
        a[4]->kind != Kind::Int)
      fail(path_, "unsupported persistent id in data.pkl (not a tensor storage)");
    const std::string& key = a[2]->text;
    auto& cached = storages_[key];
    if (!cached) {
      const auto dtype = storage_dtype(path_, a[1]->text);
      const std::string record = "data/" + key;
      if (!archive_.hasRecord(record)) fail(path_, "archive lacks tensor storage " + record + " (truncated?)");
      auto [ptr, bytes] = archive_.getRecord(record);
      const int64_t numel = a[4]->integer;
      const size_t need = static_cast<size_t>(numel) * c10::elementSize(dtype);
      if (numel < 0 || bytes < need) fail(path_, "tensor storage " + record + " is shorter than its tensor (truncated?)");
      cached = make(Kind::Tensor);
      cached->tensor = torch::empty({numel}, torch::TensorOptions().dtype(dtype));
      if (need > 0) std::memcpy(cached->tensor.data_ptr(), ptr.get(), need);
    }
    return cached;
  }

  std::string path_;
  caffe2::serialize::PyTorchStreamReader& archive_;
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, PickleRef> memo_;
  std::map<std::string, PickleRef> storages_;
};

}  // namespace

PickleRef load_torch_archive(const std::string& path) {
  try {
    caffe2::serialize::PyTorchStreamReader archive(path);
    if (!archive.hasRecord("data.pkl")) fail(path, "zip archive is not a torch.save file (no data.pkl)");
    auto [ptr, size] = archive.getRecord("data.pkl");
    Unpickler unpickler(path, archive, static_cast<const char*>(ptr.get()), size);
    return unpickler.run();
  } catch (const c10::Error& e) {
    std::string why = e.what_without_backtrace();
    fail(path, "corrupt or truncated torch.save archive (" + why.substr(0, why.find('\n')) + ")");
  }
}

}  // namespace medsad
