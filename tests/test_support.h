// Shared test helpers: where the fixtures live, scratch folders, running the real binary.
#pragma once
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace medsad::test {

// ../shared (or $MEDSAD_SHARED): clip/bpe_simple_vocab_16e6.txt.gz and fixtures/clip-tiny/.
inline std::string shared_dir() {
  const char* env = std::getenv("MEDSAD_SHARED");
  return env ? env : MEDSAD_SHARED_DIR;
}
inline std::string bpe_path() { return shared_dir() + "/clip/bpe_simple_vocab_16e6.txt.gz"; }
inline std::string fixture(const std::string& name) { return shared_dir() + "/fixtures/clip-tiny/" + name; }

// A fresh empty folder under the system temp dir, removed when the object dies.
class ScratchDir {
 public:
  ScratchDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("medsad_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static int& counter() { static int n = 0; return n; }
  std::filesystem::path path_;
};

// `text` single-quoted for the shell (embedded quotes escaped), for run_medsad's ARGS.
inline std::string quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs `medsad ARGS` (ARGS already shell-quoted) and captures stdout, stderr and the exit code.
CommandResult run_medsad(const std::string& args);

// Runs a shell command line and returns what it wrote on stdout.
std::string run_shell(const std::string& command);

}  // namespace medsad::test
