// The password policy checks that need no stored state: UTF-8, length (in
// code points, as NIST SP 800-63B counts), and the common-password list.
// History (no reuse of the last N) needs the stored hashes and is checked
// by the credential code with the hasher.
//
// Rotation: PasswordPolicy.max_password_age_days is off (0) by default.
// NIST SP 800-63B §5.1.1.2 and OWASP ASVS 2.1.10 advise against forced
// periodic rotation (users move to predictable patterns); many enterprise
// rules still demand 90-180 days, so tenants may turn it on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "mailgrid/identity/v1/credential.pb.h"

namespace mailgrid::identity {

inline constexpr uint32_t kDefaultMinLength = 12;
inline constexpr size_t kMaxPasswordBytes = 1024;
inline constexpr size_t kMaxAddressBytes = 320;

class CommonPasswords {
 public:
  // The list shipped in data/common_passwords.txt (compiled in).
  static CommonPasswords Builtin();
  // Adds the entries of a text file (one per line, '#' comments).
  absl::Status LoadFile(const std::string& path);
  void AddText(std::string_view text);

  // Case-insensitive; also matches when trailing digits and symbols are
  // stripped ("Password2026!" is "password").
  bool Contains(std::string_view password) const;
  size_t size() const { return words_.size(); }

 private:
  absl::flat_hash_set<std::string> words_;
};

bool IsUtf8(std::string_view text);
size_t CodePoints(std::string_view utf8);

// Structural checks every presented password passes first (Login,
// CheckSasl): at most 1024 bytes, valid UTF-8. INVALID_ARGUMENT naming
// `field` (TOO_LONG, NOT_UTF8).
absl::Status CheckPresentedPassword(std::string_view password, std::string_view field);

uint32_t EffectiveMinLength(const v1::PasswordPolicy& policy);

// A new password against the policy: NOT_UTF8, TOO_LONG, TOO_SHORT,
// TOO_COMMON (INVALID_ARGUMENT naming `field`).
absl::Status CheckNewPassword(const v1::PasswordPolicy& policy, std::string_view password,
                              const CommonPasswords& common, std::string_view field);

// Validates a policy an admin sets (credential.proto SetPasswordPolicy).
absl::Status ValidatePolicy(const v1::PasswordPolicy& policy);

}  // namespace mailgrid::identity
