// Input validation for tenantd: everything a company types at registration
// and every domain name, checked and put in canonical form before anything
// is stored. Each failure is INVALID_ARGUMENT naming the field, with an
// ErrorDetail reason (errors.h):
//   EMPTY, TOO_LONG, BAD_UTF8, BAD_CHARACTER (names and free text),
//   NOT_E164 (phones), BAD_ADDRESS (email), NOT_A_DOMAIN (domains),
//   BAD_COUNTRY (ISO 3166-1 alpha-2).
// Pure functions, no I/O: unit-tested in validation_test.cc.
//
// Unicode: text is kept as NFC UTF-8 (libunistring), so a Chinese company
// name round-trips byte-exact when it was sent in NFC and is stored in NFC
// when it was not. Domains go to A-labels through libidn2 (IDNA2008 with
// UTS #46 mapping), the form DNS and every other service use.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::tenant {

// Free text of a person or company: valid UTF-8, NFC, surrounding white
// space trimmed, no control characters, 1..max_chars code points.
absl::StatusOr<std::string> ValidateName(std::string_view input, std::string_view field,
                                         size_t max_chars);

// Like ValidateName but an empty value is allowed (optional fields).
absl::StatusOr<std::string> ValidateOptionalText(std::string_view input, std::string_view field,
                                                 size_t max_chars);

// The key two names are compared by for uniqueness: NFC, case-folded,
// inner white space collapsed to one space. "ACME  Ltd" == "acme ltd".
std::string NameKey(std::string_view validated_name);

// A phone number in any common international notation ("+86 138-0013-8000",
// "0086 (138) 0013 8000", "+1.415.555.0100") to E.164 ("+8613800138000").
// A number without a country code is refused: we cannot guess the country.
absl::StatusOr<std::string> NormalizePhone(std::string_view input, std::string_view field);

// An RFC 5322 addr-spec (dot-atom or quoted-string local part; RFC 6531
// UTF-8 allowed) with a DNS domain. Returns the canonical form: the local
// part as given, the domain in lower-case A-labels.
absl::StatusOr<std::string> NormalizeEmail(std::string_view input, std::string_view field);

struct DomainName {
  std::string ascii;    // A-labels, lower case, no trailing dot
  std::string unicode;  // U-labels (== ascii for an ASCII domain)
};

// A registrable mail domain: at least two labels, LDH labels of 1..63
// octets, at most 253 octets, not an IP literal, not a bare TLD. U-labels
// ("中国.cn", "BÜCHER.de") are mapped (UTS #46) and converted to A-labels.
absl::StatusOr<DomainName> NormalizeDomain(std::string_view input, std::string_view field);

// ISO 3166-1 alpha-2, returned upper case.
absl::StatusOr<std::string> NormalizeCountryCode(std::string_view input, std::string_view field);

// A document's original file name: UTF-8, at most 255 bytes, no path
// separators or control characters. Empty becomes "document".
absl::StatusOr<std::string> ValidateFilename(std::string_view input, std::string_view field);

}  // namespace mailgrid::tenant
