#include "libs/testing/transcript.h"

#include <fstream>
#include <sstream>

namespace mailgrid::testing {

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string UnescapeTranscript(std::string_view s, bool* no_crlf, UnknownEscape unknown) {
  std::string out;
  *no_crlf = false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    const char c = s[++i];
    switch (c) {
      case 'r': out.push_back('\r'); break;
      case 'n': out.push_back('\n'); break;
      case 't': out.push_back('\t'); break;
      case '0': out.push_back('\0'); break;
      case 'c': *no_crlf = true; break;
      case 'x':
        out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
        break;
      default:
        if (unknown == UnknownEscape::kKeep) out.push_back('\\');
        out.push_back(c);
        break;
    }
  }
  return out;
}

}  // namespace mailgrid::testing
