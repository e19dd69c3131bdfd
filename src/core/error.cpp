#include "core/error.h"

#include <cstdio>

namespace medsad {

static std::string render(const std::string& path, const std::string& problem) {
  return path.empty() ? problem : path + ": " + problem;
}

Error::Error(std::string path, std::string problem)
    : std::runtime_error(render(path, problem)), path_(std::move(path)), problem_(std::move(problem)) {}

void fail(const std::string& path, const std::string& problem) { throw Error(path, problem); }

void check_range(const std::string& what, double value, double lo, double hi) {
  if (value >= lo && value <= hi) return;
  char text[256];
  std::snprintf(text, sizeof text, "%s %.10g is out of range (expected %.10g to %.10g)", what.c_str(), value, lo, hi);
  fail("", text);
}

std::string json_error_text(const std::exception& e) {
  const std::string text = e.what();
  const size_t end = text.rfind("[json.exception.", 0) == 0 ? text.find("] ") : std::string::npos;
  return end == std::string::npos ? text : text.substr(end + 2);
}

void fail_with_context(const Error& e, const std::string& context) {
  throw Error(e.path(), context + ": " + e.problem());
}

}  // namespace medsad
