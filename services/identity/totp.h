// TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30-second steps) over RFC 4226
// HOTP, written on OpenSSL's HMAC (a dozen lines; liboath would add a
// dependency for the same arithmetic). Base32 (RFC 4648, no padding) for
// the secrets users type in, and the otpauth:// URI authenticator apps
// scan (Google Authenticator's Key Uri Format).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailgrid::identity {

inline constexpr int kTotpDigits = 6;
inline constexpr int64_t kTotpPeriodSeconds = 30;
inline constexpr size_t kTotpSecretBytes = 20;  // 160 bits, RFC 4226's recommendation

std::string Base32Encode(std::string_view bytes);
// Case-insensitive; spaces and '=' padding ignored.
absl::StatusOr<std::string> Base32Decode(std::string_view text);

// RFC 4226 HOTP value, zero-padded to `digits` (6..8).
std::string Hotp(std::string_view key, uint64_t counter, int digits = kTotpDigits);
int64_t TotpStep(absl::Time at, int64_t period = kTotpPeriodSeconds);
std::string Totp(std::string_view key, absl::Time at, int digits = kTotpDigits);

// Whether `code` matches a step in [now-1, now+1] that is later than
// `last_used_step` (a code is accepted once: a replay, or an older code
// after a newer one, is refused). Returns the matched step.
std::optional<int64_t> MatchTotp(std::string_view key, std::string_view code, absl::Time now,
                                 int64_t last_used_step);
// Whether `code` matched a step already used (for logging a replay).
bool IsReplay(std::string_view key, std::string_view code, absl::Time now, int64_t last_used_step);

// True when `code` is exactly six ASCII digits.
bool IsSixDigits(std::string_view code);

// otpauth://totp/<issuer>:<account>?secret=..&issuer=..&algorithm=SHA1&digits=6&period=30
std::string OtpauthUri(std::string_view issuer, std::string_view account,
                       std::string_view secret_base32);

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string PercentEncode(std::string_view text);

}  // namespace mailgrid::identity
