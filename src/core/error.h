// The one error type of medsad: a user-facing problem with a file or an option.
// what() renders "PATH: problem" (or just "problem" when no path applies), the gcc/ninja shape.
#pragma once
#include <stdexcept>
#include <string>

namespace medsad {

class Error : public std::runtime_error {
 public:
  Error(std::string path, std::string problem);
  const std::string& path() const { return path_; }
  const std::string& problem() const { return problem_; }

 private:
  std::string path_;
  std::string problem_;
};

// Throws Error(path, problem). The single way src/ reports bad input.
[[noreturn]] void fail(const std::string& path, const std::string& problem);

// Throws Error("", "WHAT VALUE is out of range (expected LO to HI)") unless lo <= value <= hi
// (NaN is out of range); numbers are printed with up to 10 significant digits. For options.
void check_range(const std::string& what, double value, double lo, double hi);

// The text of a JSON library exception (nlohmann::json's) without its "[json.exception.KIND.ID] "
// prefix, for messages that quote it.
std::string json_error_text(const std::exception& e);

// Re-throws `e` with "context: " prefixed to its problem, keeping the path.
[[noreturn]] void fail_with_context(const Error& e, const std::string& context);

}  // namespace medsad
