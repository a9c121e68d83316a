#include "services/identity/totp.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/str_cat.h"

namespace mailgrid::identity {
namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
}

std::string Base32Encode(std::string_view bytes) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = (buffer << 8) | c;
    bits += 8;
    while (bits >= 5) {
      out.push_back(kAlphabet[(buffer >> (bits - 5)) & 31]);
      bits -= 5;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (5 - bits)) & 31]);
  return out;
}

absl::StatusOr<std::string> Base32Decode(std::string_view text) {
  std::string out;
  uint32_t buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (c == ' ' || c == '=' || c == '-') continue;
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a';
    else if (c >= '2' && c <= '7')
      v = c - '2' + 26;
    else
      return absl::InvalidArgumentError("not base32");
    buffer = (buffer << 5) | static_cast<uint32_t>(v);
    bits += 5;
    if (bits >= 8) {
      out.push_back(static_cast<char>((buffer >> (bits - 8)) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::string Hotp(std::string_view key, uint64_t counter, int digits) {
  unsigned char msg[8];
  for (int i = 7; i >= 0; --i) {
    msg[i] = static_cast<unsigned char>(counter & 0xFF);
    counter >>= 8;
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha1(), key.data(), static_cast<int>(key.size()), msg, sizeof(msg), mac, &mac_len);
  int offset = mac[mac_len - 1] & 0x0F;
  uint32_t binary = (static_cast<uint32_t>(mac[offset] & 0x7F) << 24) |
                    (static_cast<uint32_t>(mac[offset + 1]) << 16) |
                    (static_cast<uint32_t>(mac[offset + 2]) << 8) | mac[offset + 3];
  uint32_t mod = 1;
  for (int i = 0; i < digits; ++i) mod *= 10;
  std::string code = std::to_string(binary % mod);
  return std::string(static_cast<size_t>(digits) - code.size(), '0') + code;
}

int64_t TotpStep(absl::Time at, int64_t period) { return absl::ToUnixSeconds(at) / period; }

std::string Totp(std::string_view key, absl::Time at, int digits) {
  return Hotp(key, static_cast<uint64_t>(TotpStep(at)), digits);
}

bool IsSixDigits(std::string_view code) {
  if (code.size() != 6) return false;
  for (char c : code)
    if (c < '0' || c > '9') return false;
  return true;
}

namespace {
// Constant-time for equal lengths: the codes are short, but timing must
// not tell which digit was wrong.
bool SameCode(const std::string& a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}
}  // namespace

std::optional<int64_t> MatchTotp(std::string_view key, std::string_view code, absl::Time now,
                                 int64_t last_used_step) {
  if (!IsSixDigits(code)) return std::nullopt;
  int64_t step = TotpStep(now);
  for (int64_t s = step - 1; s <= step + 1; ++s) {
    if (s <= last_used_step) continue;
    if (SameCode(Hotp(key, static_cast<uint64_t>(s)), code)) return s;
  }
  return std::nullopt;
}

bool IsReplay(std::string_view key, std::string_view code, absl::Time now, int64_t last_used_step) {
  if (!IsSixDigits(code)) return false;
  int64_t step = TotpStep(now);
  for (int64_t s = step - 1; s <= step + 1 && s <= last_used_step; ++s) {
    if (SameCode(Hotp(key, static_cast<uint64_t>(s)), code)) return true;
  }
  return false;
}

std::string PercentEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      static const char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string OtpauthUri(std::string_view issuer, std::string_view account,
                       std::string_view secret_base32) {
  return absl::StrCat("otpauth://totp/", PercentEncode(issuer), ":", PercentEncode(account),
                      "?secret=", std::string(secret_base32), "&issuer=", PercentEncode(issuer),
                      "&algorithm=SHA1&digits=6&period=30");
}

}  // namespace mailgrid::identity
