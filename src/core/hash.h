// SHA-256 (OpenSSL), to tie a trained checkpoint to the exact backbone it was trained on and to
// notice a checkpoint damaged after it was written.
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace medsad {

// Incremental SHA-256: update() any number of times, then hex() once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  void update(const void* data, size_t size);
  std::string hex();  // lower-case hex digest; ends the hashing

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

// Lower-case hex SHA-256 of the file's bytes, read in chunks. Throws Error(path, ...) if unreadable.
std::string sha256_file(const std::string& path);

// Standard base64 (RFC 4648, with padding) of `bytes`.
std::string base64(const std::string& bytes);

}  // namespace medsad
