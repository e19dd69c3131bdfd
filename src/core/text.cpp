#include "core/text.h"

#include <cctype>

#include <nlohmann/json.hpp>

namespace medsad {

std::string ascii_lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();  // strict: throws at the first invalid byte
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

std::string json_text(const nlohmann::json& value, int indent) {
  return value.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace medsad
