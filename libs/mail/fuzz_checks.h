// Invariant checks shared by the libs/mail fuzz targets (fuzzing only).
#pragma once

#include <cstdlib>
#include <string_view>

namespace mailgrid::mail::fuzz {

// Aborts, so libFuzzer (and the corpus replay) reports the input.
inline void Check(bool ok) {
  if (!ok) std::abort();
}

// No CR, LF or NUL: text that could reach a header line or an IMAP string.
inline bool Clean(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

}  // namespace mailgrid::mail::fuzz
