// SHA-256 of files (OpenSSL), to tie a trained checkpoint to the exact backbone it was trained on.
#pragma once
#include <string>

namespace medsad {

// Lower-case hex SHA-256 of the file's bytes, read in chunks. Throws Error(path, ...) if unreadable.
std::string sha256_file(const std::string& path);

// Standard base64 (RFC 4648, with padding) of `bytes`.
std::string base64(const std::string& bytes);

}  // namespace medsad
