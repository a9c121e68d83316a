// Authentication-Results rendering (RFC 8601) and the inbound check.
#include "libs/mailauth/auth_results.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"

namespace mailgrid::mailauth {
namespace {

bool IsTokenChar(char c) {
  auto u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7f) return false;
  return std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

bool IsAtext(char c) {
  auto u = static_cast<unsigned char>(c);
  return absl::ascii_isalnum(u) ||
         std::string_view("!#$%&'*+-/=?^_`{|}~.").find(c) != std::string_view::npos;
}

// RFC 8601 pvalue: a token, an addr-spec of atext@token, or a quoted string.
// Controls (CR, LF, NUL...) and 8-bit bytes are dropped, never passed on.
std::string Value(std::string_view v) {
  std::string clean;
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) clean.push_back(c);
  }
  if (clean.empty()) return "\"\"";
  bool token = true;
  for (char c : clean) token &= IsTokenChar(c);
  if (token) return clean;
  size_t at = clean.rfind('@');
  if (at != std::string::npos && at > 0 && at + 1 < clean.size()) {
    bool ok = true;
    for (size_t i = 0; i < at; ++i) ok &= IsAtext(clean[i]);
    for (size_t i = at + 1; i < clean.size(); ++i) ok &= IsTokenChar(clean[i]);
    if (ok) return clean;
  }
  std::string out = "\"";
  for (char c : clean) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// A comment "(...)": printable ASCII, parentheses and backslashes escaped.
std::string Comment(std::string_view text) {
  if (text.empty()) return "";
  std::string out = " (";
  for (char c : text.substr(0, 200)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) continue;
    if (c == '(' || c == ')' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back(')');
  return out;
}

}  // namespace

std::string RenderAuthenticationResults(std::string_view authserv_id, const AuthVerdicts& v) {
  std::string out = absl::StrCat("Authentication-Results: ", Value(authserv_id), ";");
  // spf
  std::string spf = absl::StrCat("spf=", ToAbsl(SpfResultName(v.spf.result)));
  if (v.spf.result == SpfResult::kTempError || v.spf.result == SpfResult::kPermError ||
      v.spf.result == SpfResult::kNone) {
    spf += Comment(v.spf.reason);
  } else if (!v.spf.mechanism.empty()) {
    spf += Comment(absl::StrCat("matched ", v.spf.mechanism));
  }
  bool helo_identity = v.spf.sender.empty() || v.spf.sender == absl::StrCat("postmaster@", v.helo);
  if (!v.spf.sender.empty() && !helo_identity) {
    absl::StrAppend(&spf, " smtp.mailfrom=", Value(v.spf.sender));
  } else if (!v.helo.empty()) {
    absl::StrAppend(&spf, " smtp.helo=", Value(v.helo));
  }
  absl::StrAppend(&out, "\r\n\t", spf, ";");
  // dkim, one result per signature
  if (v.dkim.empty()) absl::StrAppend(&out, "\r\n\tdkim=none;");
  for (const DkimVerdict& d : v.dkim) {
    std::string s = absl::StrCat("dkim=", ToAbsl(DkimResultName(d.result)));
    if (d.result != DkimResult::kPass) s += Comment(d.reason);
    if (d.testing) s += Comment("test mode");
    if (!d.domain.empty()) absl::StrAppend(&s, " header.d=", Value(d.domain));
    if (!d.selector.empty()) absl::StrAppend(&s, " header.s=", Value(d.selector));
    if (!d.algorithm.empty()) absl::StrAppend(&s, " header.a=", Value(d.algorithm));
    if (!d.b_prefix.empty()) absl::StrAppend(&s, " header.b=", Value(d.b_prefix));
    absl::StrAppend(&out, "\r\n\t", s, ";");
  }
  // dmarc
  std::string dm = absl::StrCat("dmarc=", ToAbsl(DmarcResultName(v.dmarc.result)));
  if (!v.dmarc.record_domain.empty()) {
    dm += Comment(
        absl::StrCat("p=", ToAbsl(DmarcPolicyName(v.dmarc.policy)),
                     " dis=", absl::AsciiStrToUpper(ToAbsl(DmarcPolicyName(v.dmarc.disposition)))));
  } else if (!v.dmarc.reason.empty()) {
    dm += Comment(v.dmarc.reason);
  }
  if (!v.dmarc.from_domain.empty())
    absl::StrAppend(&dm, " header.from=", Value(v.dmarc.from_domain));
  absl::StrAppend(&out, "\r\n\t", dm, "\r\n");
  return out;
}

bool AuthResultsClaims(std::string_view value, std::string_view authserv_id) {
  // authserv-id is the first token after optional CFWS; comments are skipped.
  size_t i = 0;
  int depth = 0;
  while (i < value.size()) {
    char c = value[i];
    if (depth > 0) {
      if (c == '\\')
        ++i;
      else if (c == '(')
        ++depth;
      else if (c == ')')
        --depth;
      ++i;
      continue;
    }
    if (c == '(') {
      ++depth;
      ++i;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
      ++i;
      continue;
    }
    break;
  }
  size_t start = i;
  if (i < value.size() && value[i] == '"') {
    size_t end = value.find('"', i + 1);
    if (end == std::string_view::npos) return false;
    return absl::EqualsIgnoreCase(ToAbsl(value.substr(i + 1, end - i - 1)), ToAbsl(authserv_id));
  }
  while (i < value.size() && IsTokenChar(value[i])) ++i;
  return i > start &&
         absl::EqualsIgnoreCase(ToAbsl(value.substr(start, i - start)), ToAbsl(authserv_id));
}

InboundResult CheckInbound(const InboundRequest& r, Resolver& dns, const InboundOptions& o) {
  InboundResult out;
  AuthVerdicts& v = out.verdicts;
  SpfRequest spf;
  spf.ip = r.client_ip;
  spf.sender = r.mail_from;
  spf.helo = r.helo;
  spf.receiver = r.receiver.empty() ? "unknown" : r.receiver;
  v.spf = SpfCheck(spf, dns, o.spf);
  v.helo = r.helo;
  v.dkim = DkimVerifyAll(r.message, dns, o.dkim);
  auto from = FromDomain(r.message);
  if (!from.ok()) {
    // §6.6.1: no single From domain, no DMARC evaluation possible; we say
    // permerror and let the caller decide (relayd may reject such mail).
    v.dmarc.result = DmarcResult::kPermError;
    v.dmarc.reason = std::string(from.status().message());
  } else {
    DmarcInput in;
    in.from_domain = *from;
    in.spf = v.spf.result;
    in.spf_domain = v.spf.domain;
    in.dkim = v.dkim;
    v.dmarc = DmarcCheck(in, dns, o.dmarc);
  }
  out.disposition = v.dmarc.disposition;
  std::string id = o.authserv_id.empty() ? r.receiver : o.authserv_id;
  out.header = RenderAuthenticationResults(id.empty() ? "localhost" : id, v);
  return out;
}

}  // namespace mailgrid::mailauth
