// The trace and result header fields relayd adds to each accepted message,
// and the few header reads it needs. Pure functions.
//
// SECURITY: everything that goes into a field we write comes from the
// client (HELO, MAIL FROM, RCPT TO, AUTH identity); the SMTP engine already
// refuses CR, LF, NUL and controls there, and Sanitize() below reduces the
// free-text parts to a safe charset, so no envelope value can inject a
// header line. Authentication-Results fields in the message that claim to
// come from us (our authserv-id) are removed (RFC 8601 §5): only we may
// vouch under our name.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace mailgrid::relay {

struct TraceInfo {
  std::string hostname;   // ours
  std::string helo;       // client's HELO/EHLO argument
  std::string client_ip;  // "192.0.2.1"
  bool esmtp = true;
  bool tls = false;
  std::string tls_version, tls_cipher;
  bool authenticated = false;
  std::string auth_user;       // authenticated address
  std::string queue_id;        // our id of the message
  std::string envelope_from;   // "" for <>
  std::vector<std::string> recipients;  // envelope, for "for <x>" with one
  absl::Time at = absl::UnixEpoch();
};

// Keeps printable ASCII except '(' ')' ';' '\\' '"', replacing others with
// '?', and cuts at `max` (a HELO argument in a comment, a TLS cipher name).
std::string Sanitize(std::string_view in, size_t max = 255);

// RFC 5322 date-time in UTC: "Fri, 27 Nov 2026 04:30:00 +0000".
std::string Rfc5322Date(absl::Time t);

// "Return-Path: <a@b>\r\n"
std::string ReturnPathField(const TraceInfo& t);
// "Received: from ... by ... with ESMTPSA id ...; date\r\n" (RFC 5321
// §4.4, with RFC 3848 protocol names).
std::string ReceivedField(const TraceInfo& t);
// "Authentication-Results: host; ...\r\n" with the given method results
// ("spf=pass smtp.mailfrom=x", "auth=pass smtp.auth=u"), or "none".
std::string AuthResultsField(std::string_view hostname, const std::vector<std::string>& results);

// The message with every Authentication-Results field whose authserv-id is
// `hostname` (case-insensitive) removed from the header block.
std::string StripForgedAuthResults(std::string_view message, std::string_view hostname);

// The raw (unfolded) values of every header field named `name` in the
// header block of `message`.
std::vector<std::string> HeaderValues(std::string_view message, std::string_view name);

// The addr-specs of the From: field(s) ("a@b"), lower-cased domains.
std::vector<std::string> FromAddresses(std::string_view message);

// The idempotency key of a delivery: the hex SHA-256 of the envelope and the
// message as received, so a client's retry of the very same message after a
// 451 is deduplicated by mailstored instead of stored twice.
std::string DeliveryId(std::string_view envelope_from, const std::vector<std::string>& rcpts,
                       std::string_view message);

}  // namespace mailgrid::relay
