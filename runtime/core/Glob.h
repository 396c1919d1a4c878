// Glob matching (`*` any run, `?` one character) shared by the runtime's taps
// and the compiler's recipe patterns. Header-only: the compiler's passes do not
// link the runtime.
#pragma once

#include <string>

namespace lathe::core {

inline bool glob(const std::string &pattern, const std::string &text) {
  size_t p = 0, t = 0, star = std::string::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) { ++p; ++t; }
    else if (p < pattern.size() && pattern[p] == '*') { star = p++; mark = t; }
    else if (star != std::string::npos) { p = star + 1; t = ++mark; }
    else return false;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

} // namespace lathe::core
