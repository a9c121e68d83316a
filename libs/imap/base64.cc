#include "libs/imap/base64.h"

#include <cstdint>

#include "absl/status/status.h"

namespace mailgrid::imap {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

absl::StatusOr<std::string> DecodeBase64(std::string_view in) {
  if (in.size() % 4 != 0) return absl::InvalidArgumentError("base64 length is not a multiple of 4");
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int pad = 0;
    uint32_t group = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = in[i + k];
      if (c == '=' && last && k >= 2) {
        ++pad;
        group <<= 6;
        continue;
      }
      const int v = Value(c);
      if (v < 0 || pad > 0) return absl::InvalidArgumentError("invalid base64");
      group = (group << 6) | static_cast<uint32_t>(v);
    }
    // Padding bits must be zero, so each byte string has one encoding.
    if ((pad == 1 && (group & 0xFF) != 0) || (pad == 2 && (group & 0xFFFF) != 0)) {
      return absl::InvalidArgumentError("invalid base64 padding");
    }
    out.push_back(static_cast<char>(group >> 16));
    if (pad < 2) out.push_back(static_cast<char>((group >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(group & 0xFF));
  }
  return out;
}

std::string EncodeBase64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t g = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    out.push_back(kAlphabet[g >> 18]);
    out.push_back(kAlphabet[(g >> 12) & 0x3F]);
    out.push_back(kAlphabet[(g >> 6) & 0x3F]);
    out.push_back(kAlphabet[g & 0x3F]);
  }
  const size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t g = static_cast<unsigned char>(in[i]) << 16;
    if (rest == 2) g |= static_cast<unsigned char>(in[i + 1]) << 8;
    out.push_back(kAlphabet[g >> 18]);
    out.push_back(kAlphabet[(g >> 12) & 0x3F]);
    out.push_back(rest == 2 ? kAlphabet[(g >> 6) & 0x3F] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace mailgrid::imap
