// Small string helpers for names, extensions and option values (ASCII only: file extensions,
// layout and option names; the tokenizer does its own Unicode case folding), and JSON text.
#pragma once
#include <string>

#include <nlohmann/json_fwd.hpp>

namespace medsad {

// `text` with A-Z turned to a-z; every other byte as it is.
[[nodiscard]] std::string ascii_lower(std::string text);

// Whether `text` ends with `suffix` (case-sensitive).
[[nodiscard]] bool ends_with(const std::string& text, const std::string& suffix);

// Whether `text` is valid UTF-8.
[[nodiscard]] bool is_utf8(const std::string& text);

// `value` as JSON text (indented by `indent` spaces per level; -1: one line). Strings that are not
// UTF-8 (a file name in another encoding) have their invalid bytes written as U+FFFD, where
// nlohmann::json's own dump() throws.
[[nodiscard]] std::string json_text(const nlohmann::json& value, int indent = -1);

}  // namespace medsad
