#include "libs/imap/sasl.h"

#include <vector>

#include "absl/status/status.h"

namespace mailgrid::imap {
namespace {

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(std::string("malformed ") + std::string(what));
}

bool HasNul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

// Splits "k=v^Ak=v^A^A" into pairs; the message must end with ^A^A.
absl::StatusOr<std::vector<std::pair<std::string_view, std::string_view>>> SplitKv(
    std::string_view s, std::string_view what) {
  if (s.size() < 1 || s.back() != '\x01') return Malformed(what);
  s.remove_suffix(1);
  std::vector<std::pair<std::string_view, std::string_view>> out;
  while (!s.empty()) {
    size_t end = s.find('\x01');
    if (end == std::string_view::npos) return Malformed(what);
    std::string_view item = s.substr(0, end);
    s.remove_prefix(end + 1);
    size_t eq = item.find('=');
    if (eq == std::string_view::npos || eq == 0) return Malformed(what);
    out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
  }
  return out;
}

absl::Status TakeBearer(std::string_view auth, SaslCredentials* c, std::string_view what) {
  constexpr std::string_view kBearer = "Bearer ";
  if (auth.size() <= kBearer.size()) return Malformed(what);
  for (size_t i = 0; i < kBearer.size(); ++i) {
    char a = auth[i], b = kBearer[i];
    if ((a | 0x20) != (b | 0x20)) return Malformed(what);
  }
  c->bearer_token = std::string(auth.substr(kBearer.size()));
  return absl::OkStatus();
}

}  // namespace

std::optional<SaslMechanism> ParseSaslMechanism(std::string_view upper) {
  if (upper == "PLAIN") return SaslMechanism::kPlain;
  if (upper == "LOGIN") return SaslMechanism::kLogin;
  if (upper == "XOAUTH2") return SaslMechanism::kXoauth2;
  if (upper == "OAUTHBEARER") return SaslMechanism::kOauthBearer;
  return std::nullopt;
}

std::string_view SaslMechanismName(SaslMechanism m) {
  switch (m) {
    case SaslMechanism::kPlain: return "PLAIN";
    case SaslMechanism::kLogin: return "LOGIN";
    case SaslMechanism::kXoauth2: return "XOAUTH2";
    case SaslMechanism::kOauthBearer: return "OAUTHBEARER";
  }
  return "?";
}

absl::StatusOr<SaslCredentials> DecodePlain(std::string_view m) {
  size_t a = m.find('\0');
  if (a == std::string_view::npos) return Malformed("PLAIN message");
  size_t b = m.find('\0', a + 1);
  if (b == std::string_view::npos) return Malformed("PLAIN message");
  SaslCredentials c;
  c.mechanism = SaslMechanism::kPlain;
  c.authzid = std::string(m.substr(0, a));
  c.authcid = std::string(m.substr(a + 1, b - a - 1));
  c.password = std::string(m.substr(b + 1));
  if (c.authcid.empty() || c.password.empty() || HasNul(c.password)) {
    return Malformed("PLAIN message");
  }
  return c;
}

absl::StatusOr<SaslCredentials> DecodeXoauth2(std::string_view m) {
  auto kv = SplitKv(m, "XOAUTH2 message");
  if (!kv.ok()) return kv.status();
  SaslCredentials c;
  c.mechanism = SaslMechanism::kXoauth2;
  bool have_auth = false;
  for (const auto& [k, v] : *kv) {
    if (k == "user") c.authcid = std::string(v);
    if (k == "auth") {
      if (absl::Status st = TakeBearer(v, &c, "XOAUTH2 message"); !st.ok()) return st;
      have_auth = true;
    }
  }
  if (!have_auth || HasNul(c.authcid)) return Malformed("XOAUTH2 message");
  return c;
}

absl::StatusOr<SaslCredentials> DecodeOauthBearer(std::string_view m) {
  // gs2-header: "n," or "y," then ["a=" saslname] ",".
  if (m.size() < 3 || (m[0] != 'n' && m[0] != 'y') || m[1] != ',') {
    return Malformed("OAUTHBEARER message");
  }
  size_t comma = m.find(',', 2);
  if (comma == std::string_view::npos) return Malformed("OAUTHBEARER message");
  std::string_view authz = m.substr(2, comma - 2);
  SaslCredentials c;
  c.mechanism = SaslMechanism::kOauthBearer;
  if (!authz.empty()) {
    if (authz.substr(0, 2) != "a=") return Malformed("OAUTHBEARER message");
    // saslname escapes: =2C is ",", =3D is "=".
    std::string_view n = authz.substr(2);
    for (size_t i = 0; i < n.size(); ++i) {
      if (n[i] == '=') {
        if (n.substr(i, 3) == "=2C") c.authzid.push_back(',');
        else if (n.substr(i, 3) == "=3D") c.authzid.push_back('=');
        else return Malformed("OAUTHBEARER message");
        i += 2;
      } else {
        c.authzid.push_back(n[i]);
      }
    }
  }
  std::string_view rest = m.substr(comma + 1);
  if (rest.empty() || rest[0] != '\x01') return Malformed("OAUTHBEARER message");
  auto kv = SplitKv(rest.substr(1), "OAUTHBEARER message");
  if (!kv.ok()) return kv.status();
  bool have_auth = false;
  for (const auto& [k, v] : *kv) {
    if (k == "auth") {
      if (absl::Status st = TakeBearer(v, &c, "OAUTHBEARER message"); !st.ok()) return st;
      have_auth = true;
    }
  }
  if (!have_auth || HasNul(c.authzid)) return Malformed("OAUTHBEARER message");
  c.authcid = c.authzid;
  return c;
}

absl::StatusOr<SaslCredentials> DecodeSasl(SaslMechanism m, std::string_view message) {
  switch (m) {
    case SaslMechanism::kPlain: return DecodePlain(message);
    case SaslMechanism::kXoauth2: return DecodeXoauth2(message);
    case SaslMechanism::kOauthBearer: return DecodeOauthBearer(message);
    case SaslMechanism::kLogin: break;
  }
  return absl::InvalidArgumentError("LOGIN takes two steps");
}

}  // namespace mailgrid::imap
