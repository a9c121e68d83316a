// Envelope addresses: a strict parser of RFC 5321 §4.1.2 Path / Mailbox,
// with the RFC 6531 (SMTPUTF8) extensions, usable on its own.
//
// SECURITY: the input is hostile. The parser accepts only the grammar; a
// parsed local part or domain never contains CR, LF, NUL or any other control
// byte, and non-ASCII is accepted only as well-formed UTF-8 (flagged in
// Path::utf8 so the caller can demand SMTPUTF8). Source routes are parsed and
// discarded (RFC 5321 §4.1.1.3, Appendix C) but reported in
// Path::source_route, and HasRoutingCharacters() exposes the `%`-hack and
// quoted "user@foreign"@local so a relay can refuse them.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace mailgrid::smtp {

// RFC 5321 §4.5.3.1.1-3.
inline constexpr size_t kMaxLocalPartLength = 64;
inline constexpr size_t kMaxDomainLength = 255;
inline constexpr size_t kMaxPathLength = 256;

enum class DomainKind {
  kNone,  // null path or bare <Postmaster>
  kName,  // dot-separated labels (ASCII LDH or UTF-8 U-labels)
  kIPv4,  // "[192.0.2.1]"
  kIPv6,  // "[IPv6:2001:db8::1]"
};

enum class PathKind {
  kForward,  // RCPT TO: also accepts <Postmaster> (RFC 5321 §4.1.1.3)
  kReverse,  // MAIL FROM: also accepts the null path <>
};

struct Path {
  bool null = false;        // "<>"
  bool postmaster = false;  // "<Postmaster>" without a domain
  // The local part as meant, quotes and backslashes removed: for
  // "<\"a b\"@x>" this is `a b`. Compare it, do not print it raw into a
  // header; Mailbox() re-encodes it.
  std::string local_part;
  bool quoted = false;  // the local part was a quoted-string on the wire
  std::string domain;   // as sent: "Example.COM", "[192.0.2.1]", "[IPv6:...]"
  DomainKind domain_kind = DomainKind::kNone;
  std::vector<std::string> source_route;  // "@a,@b:" domains, discarded
  bool utf8 = false;                      // non-ASCII somewhere: needs SMTPUTF8

  // "local@domain", the local part quoted only when it is not a dot-string;
  // "" for the null path, "Postmaster" for a bare postmaster.
  std::string Mailbox() const;
  // The domain with ASCII letters lower-cased (address literals included).
  std::string NormalizedDomain() const;
  // True when the address tries to route: a source route, or '@', '%' or
  // '!' inside the local part ("user%foreign@local", "\"u@foreign\"@local",
  // "foreign!user@local"). A relay should not deliver such a local part to
  // anything but a local mailbox of exactly that name.
  bool HasRoutingCharacters() const;

  bool operator==(const Path&) const = default;
};

// Parses a whole Path: "<" [ A-d-l ":" ] Mailbox ">", plus "<>" for kReverse
// and "<Postmaster>" for kForward. Errors are InvalidArgument with a short
// reason that never quotes the input.
absl::StatusOr<Path> ParsePath(std::string_view text, PathKind kind = PathKind::kForward);

// Parses a path at the start of `text` and reports its length in
// `*consumed` (the command parser continues with ESMTP parameters there).
absl::StatusOr<Path> ParsePathPrefix(std::string_view text, PathKind kind, size_t* consumed);

// Parses a bare Mailbox: "local@domain" (no angle brackets, no route).
absl::StatusOr<Path> ParseMailbox(std::string_view text);

// RFC 5321 Domain: LDH labels of 1..63 octets, 255 in all; with
// `allow_utf8`, labels may also hold UTF-8 (U-labels, not IDNA-validated).
bool IsValidDomain(std::string_view domain, bool allow_utf8 = true);
// "[1.2.3.4]" or "[IPv6:...]" (RFC 5321 §4.1.3); general literals are refused.
bool IsValidAddressLiteral(std::string_view literal);
// Well-formed UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
bool IsValidUtf8(std::string_view text);
// Lower-cases ASCII letters; leaves UTF-8 as it is.
std::string NormalizeDomain(std::string_view domain);
// True when `local` can be written without quotes (RFC 5321 Dot-string).
bool IsDotString(std::string_view local);

}  // namespace mailgrid::smtp
