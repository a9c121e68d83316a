// Transfer decoding and charset conversion of part bodies.
#include "libs/mail/decode.h"

#include "libs/mail/ascii.h"
#include "libs/mail/charset.h"

namespace mailgrid::mail {
namespace {

constexpr char kBase64Alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::string DecodeBase64(std::string_view text, bool* garbage) {
  std::string out;
  out.reserve(text.size() / 4 * 3 + 3);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = Base64Value(c);
    if (v < 0) {
      if (c == '=') {  // a pad ends a group; some mailers concatenate padded chunks
        bits = 0;
        continue;
      }
      if (garbage != nullptr && c != ' ' && c != '\t' && c != '\r' && c != '\n') *garbage = true;
      continue;
    }
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

std::string EncodeBase64(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(kBase64Alphabet[(v >> 6) & 63]);
    out.push_back(kBase64Alphabet[v & 63]);
  }
  if (i < bytes.size()) {
    uint32_t v = byte(i) << 16;
    if (i + 1 < bytes.size()) v |= byte(i + 1) << 8;
    out.push_back(kBase64Alphabet[(v >> 18) & 63]);
    out.push_back(kBase64Alphabet[(v >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kBase64Alphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

std::string DecodeQuotedPrintable(std::string_view text, bool* malformed) {
  std::string out;
  out.reserve(text.size());
  size_t line_start = 0;
  while (line_start < text.size()) {
    size_t nl = text.find('\n', line_start);
    size_t line_end = nl == std::string_view::npos ? text.size() : nl;
    size_t content_end = line_end;
    if (content_end > line_start && text[content_end - 1] == '\r') --content_end;
    std::string_view line = text.substr(line_start, content_end - line_start);
    while (!line.empty() && ascii::IsWsp(line.back())) line.remove_suffix(1);  // transport padding
    bool soft_break = false;
    for (size_t i = 0; i < line.size(); ++i) {
      char c = line[i];
      if (c != '=') {
        out.push_back(c);
        continue;
      }
      if (i + 1 == line.size()) {
        soft_break = true;
        break;
      }
      if (int byte = ascii::HexPair(line, i); byte >= 0) {
        out.push_back(static_cast<char>(byte));
        i += 2;
        continue;
      }
      if (malformed != nullptr) *malformed = true;
      out.push_back('=');
    }
    if (nl == std::string_view::npos) break;
    if (!soft_break) out.append(text.substr(content_end, line_end + 1 - content_end));
    line_start = line_end + 1;
  }
  return out;
}

TransferEncoding ParseTransferEncoding(std::string_view encoding) {
  std::string e = ascii::Lower(encoding);
  if (e.empty() || e == "7bit" || e == "8bit" || e == "binary") return TransferEncoding::kIdentity;
  if (e == "base64") return TransferEncoding::kBase64;
  if (e == "quoted-printable") return TransferEncoding::kQuotedPrintable;
  return TransferEncoding::kUnknown;
}

std::optional<std::string> DecodedBody(std::string_view raw, const Part& part) {
  std::string_view body = part.body.In(raw);
  switch (ParseTransferEncoding(part.content.encoding)) {
    case TransferEncoding::kIdentity:
      return std::string(body);
    case TransferEncoding::kBase64:
      if (part.kind != PartKind::kLeaf) return std::nullopt;
      return DecodeBase64(body);
    case TransferEncoding::kQuotedPrintable:
      if (part.kind != PartKind::kLeaf) return std::nullopt;
      return DecodeQuotedPrintable(body);
    case TransferEncoding::kUnknown:
      return std::nullopt;
  }
  return std::nullopt;
}

PartText DecodeTextPart(std::string_view raw, const Part& part, std::string_view fallback_charset) {
  PartText out;
  std::optional<std::string> bytes = DecodedBody(raw, part);
  if (!bytes) bytes = std::string(part.body.In(raw));  // unknown encoding: index what is there
  std::string charset = part.content.charset();
  if (charset.empty()) {
    std::string fallback =
        fallback_charset.empty() ? "windows-1252" : std::string(fallback_charset);
    out.text = BytesToUtf8(*bytes, fallback, &out.lossy);
    return out;
  }
  if (std::optional<std::string> text = ConvertToUtf8(*bytes, charset, &out.lossy)) {
    out.text = *std::move(text);
  } else {
    out.unknown_charset = true;
    out.text = BytesToUtf8(*bytes, fallback_charset, &out.lossy);
  }
  return out;
}

}  // namespace mailgrid::mail
