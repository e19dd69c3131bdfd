// Whole-file reads with clear errors, and atomic writes (temp file + rename) so that an
// interrupted run never leaves a half-written checkpoint or report behind.
#pragma once
#include <string>
#include <vector>

namespace medsad {

// Reads a whole file; throws Error(path, ...) if it is missing, unreadable or a directory.
std::vector<char> read_file_bytes(const std::string& path);

// Reads a whole file as text (same errors as read_file_bytes).
std::string read_file_text(const std::string& path);

// Creates the folder `path` and any missing parents; throws Error(path, ...) if it cannot.
void make_folders(const std::string& path);

// Writes `data` to `path` through "<path>.tmp.<pid>" + fsync + rename. Creates no directories.
void write_file_atomic(const std::string& path, const void* data, size_t size);
void write_file_atomic(const std::string& path, const std::string& data);

}  // namespace medsad
