// Shared by the golden-transcript tests of the protocol engines (libs/smtp,
// libs/imap): reading files byte-exact and the C-like escapes of *.in files.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mailgrid::testing {

// The whole file, byte-exact ("" if unreadable; the comparison then fails).
std::string ReadFile(const std::filesystem::path& path);

enum class UnknownEscape {
  kDropBackslash,  // "\q" -> "q"
  kKeep,           // "\q" -> "\q" (IMAP's own \" and \\ stay as written)
};

// Decodes \r \n \t \0 \xHH; a \c sets *no_crlf (the line is sent without
// its CRLF).
std::string UnescapeTranscript(std::string_view s, bool* no_crlf, UnknownEscape unknown);

}  // namespace mailgrid::testing
