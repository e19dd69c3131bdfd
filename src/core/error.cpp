#include "core/error.h"

namespace medsad {

static std::string render(const std::string& path, const std::string& problem) {
  return path.empty() ? problem : path + ": " + problem;
}

Error::Error(std::string path, std::string problem)
    : std::runtime_error(render(path, problem)), path_(std::move(path)), problem_(std::move(problem)) {}

void fail(const std::string& path, const std::string& problem) { throw Error(path, problem); }

void fail_with_context(const Error& e, const std::string& context) {
  throw Error(e.path(), context + ": " + e.problem());
}

}  // namespace medsad
