#include "services/relay/headers.h"

#include <openssl/evp.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/mail/address.h"
#include "libs/mailauth/auth_results.h"

namespace mailgrid::relay {

std::string Sanitize(std::string_view in, size_t max) {
  std::string out;
  out.reserve(std::min(in.size(), max));
  for (char c : in.substr(0, max)) {
    unsigned char u = static_cast<unsigned char>(c);
    bool ok = u > 0x20 && u < 0x7f && c != '(' && c != ')' && c != ';' && c != '\\' && c != '"';
    out.push_back(ok ? c : '?');
  }
  return out;
}

std::string Rfc5322Date(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", t, absl::UTCTimeZone());
}

std::string ReturnPathField(const TraceInfo& t) {
  return absl::StrCat("Return-Path: <", t.envelope_from, ">\r\n");
}

std::string ReceivedField(const TraceInfo& t) {
  // RFC 3848: ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both).
  std::string proto = t.esmtp ? "ESMTP" : "SMTP";
  if (t.esmtp && t.tls) proto += "S";
  if (t.esmtp && t.authenticated) proto += "A";
  std::string out = absl::StrCat("Received: from ", Sanitize(t.helo.empty() ? "unknown" : t.helo),
                                 " ([", Sanitize(t.client_ip, 64), "])\r\n\tby ",
                                 Sanitize(t.hostname), " (mailgrid relayd)");
  if (t.tls) {
    absl::StrAppend(&out, " (using ", Sanitize(t.tls_version, 32), " with cipher ",
                    Sanitize(t.tls_cipher, 64), ")");
  }
  absl::StrAppend(&out, "\r\n\twith ", proto, " id ", Sanitize(t.queue_id, 64));
  if (t.recipients.size() == 1) absl::StrAppend(&out, "\r\n\tfor <", t.recipients[0], ">");
  absl::StrAppend(&out, "; ", Rfc5322Date(t.at), "\r\n");
  return out;
}

std::string AuthResultsField(std::string_view hostname_view,
                             const std::vector<std::string>& results) {
  std::string hostname(hostname_view);
  if (results.empty()) return absl::StrCat("Authentication-Results: ", hostname, "; none\r\n");
  return absl::StrCat("Authentication-Results: ", hostname, ";\r\n\t",
                      absl::StrJoin(results, ";\r\n\t"), "\r\n");
}

namespace {

// Calls fn(name, raw_field_with_crlf, begin, end) for each field of the
// header block.
template <typename Fn>
void ForEachField(std::string_view msg, Fn fn) {
  size_t pos = 0;
  while (pos < msg.size()) {
    if (msg.substr(pos, 2) == "\r\n" || msg[pos] == '\n') return;  // end of header
    size_t end = pos;
    do {  // a field runs until a line that does not start with WSP
      size_t lf = msg.find('\n', end);
      end = lf == std::string_view::npos ? msg.size() : lf + 1;
    } while (end < msg.size() && (msg[end] == ' ' || msg[end] == '\t'));
    std::string_view field = msg.substr(pos, end - pos);
    size_t colon = field.find(':');
    if (colon == std::string_view::npos) return;  // not a header any more (body)
    fn(field.substr(0, colon), field, pos, end);
    pos = end;
  }
}

std::string Unfold(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\r' || c == '\n') continue;
    out.push_back(c);
  }
  return std::string(absl::StripAsciiWhitespace(out));
}

}  // namespace

std::string StripForgedAuthResults(std::string_view message, std::string_view hostname) {
  std::string out;
  size_t copied = 0;
  ForEachField(message, [&](std::string_view name, std::string_view field, size_t b, size_t e) {
    if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(absl::string_view(name.data(), name.size())),
                                "Authentication-Results"))
      return;
    // libs/mailauth reads the authserv-id past comments and quoting, so
    // "(x) our.host; dkim=pass" cannot slip through.
    if (!mailauth::AuthResultsClaims(Unfold(field.substr(name.size() + 1)), hostname)) return;
    out.append(message.substr(copied, b - copied));
    copied = e;
  });
  out.append(message.substr(copied));
  return out;
}

std::vector<std::string> HeaderValues(std::string_view message, std::string_view name) {
  std::vector<std::string> out;
  ForEachField(message, [&](std::string_view n, std::string_view field, size_t, size_t) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(absl::string_view(n.data(), n.size())),
                               absl::string_view(name.data(), name.size())))
      out.push_back(Unfold(field.substr(n.size() + 1)));
  });
  return out;
}

std::vector<std::string> FromAddresses(std::string_view message) {
  std::vector<std::string> out;
  for (const std::string& v : HeaderValues(message, "From")) {
    mail::AddressList list = mail::ParseAddressList(v);
    for (const mail::Address* a : list.Mailboxes()) {
      if (a->domain.empty()) continue;
      out.push_back(absl::StrCat(a->local_part, "@", a->NormalizedDomain()));
    }
  }
  return out;
}

std::string DeliveryId(std::string_view envelope_from, const std::vector<std::string>& rcpts,
                       std::string_view message) {
  // Fetched from the provider once, not at every message (EVP_sha256()
  // makes EVP_DigestInit_ex look the implementation up each time).
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, kSha256 != nullptr ? kSha256 : EVP_sha256(), nullptr);
  auto add = [&](std::string_view s) {
    std::string len = absl::StrCat(s.size(), ":");
    EVP_DigestUpdate(ctx, len.data(), len.size());
    EVP_DigestUpdate(ctx, s.data(), s.size());
  };
  add(envelope_from);
  for (const std::string& r : rcpts) add(r);
  add(message);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, digest, &n);
  EVP_MD_CTX_free(ctx);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    unsigned char c = digest[i];
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

}  // namespace mailgrid::relay
