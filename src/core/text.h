// Small string helpers for names, extensions and option values (ASCII only: file extensions,
// layout and option names; the tokenizer does its own Unicode case folding).
#pragma once
#include <string>

namespace medsad {

// `text` with A-Z turned to a-z; every other byte as it is.
[[nodiscard]] std::string ascii_lower(std::string text);

// Whether `text` ends with `suffix` (case-sensitive).
[[nodiscard]] bool ends_with(const std::string& text, const std::string& suffix);

}  // namespace medsad
