#include "libs/redis/options.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/base/strings.h"

namespace mailgrid::redis {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = absl::ascii_tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return absl::InvalidArgumentError("redis url: truncated %-escape");
    }
    int hi = HexValue(s[i + 1]);
    int lo = HexValue(s[i + 2]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("redis url: bad %-escape");
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

// Splits "host[:port]" or "[v6]:port" into opts.
absl::Status ParseHostPort(absl::string_view hp, Options& opts) {
  absl::string_view host = hp;
  absl::string_view port;
  if (absl::StartsWith(hp, "[")) {
    size_t close = hp.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis url: unterminated [ in host");
    }
    host = hp.substr(1, close - 1);
    absl::string_view rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return absl::InvalidArgumentError("redis url: junk after ]");
      port = rest.substr(1);
    }
  } else if (size_t colon = hp.rfind(':'); colon != absl::string_view::npos) {
    host = hp.substr(0, colon);
    port = hp.substr(colon + 1);
  }
  if (host.empty()) return absl::InvalidArgumentError("redis url: empty host");
  opts.host = std::string(host);
  if (!port.empty() || absl::EndsWith(hp, ":")) {
    int p = 0;
    if (!absl::SimpleAtoi(port, &p) || p <= 0 || p > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("redis url: bad port '", port, "'"));
    }
    opts.port = p;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Options> Options::FromUrl(std::string_view std_url) {
  const absl::string_view url = ToAbsl(std_url);
  Options opts;
  constexpr absl::string_view kScheme = "redis://";
  if (absl::StartsWithIgnoreCase(url, "rediss://")) {
    return absl::UnimplementedError("redis url: TLS (rediss://) is not supported");
  }
  if (!absl::StartsWithIgnoreCase(url, kScheme)) {
    return absl::InvalidArgumentError("redis url: must start with redis://");
  }
  absl::string_view rest = url.substr(kScheme.size());

  // The last '@' ends the credentials, so an unescaped '@' or '/' in a
  // password still parses.
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis url: credentials must be [user]:password@");
    }
    auto user = PercentDecode(userinfo.substr(0, colon));
    if (!user.ok()) return user.status();
    auto password = PercentDecode(userinfo.substr(colon + 1));
    if (!password.ok()) return password.status();
    opts.user = *std::move(user);
    opts.password = *std::move(password);
  }

  absl::string_view hostport = rest;
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    hostport = rest.substr(0, slash);
    absl::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(db, &opts.db) || opts.db < 0)) {
      return absl::InvalidArgumentError(absl::StrCat("redis url: bad database '", db, "'"));
    }
  }
  if (absl::Status s = ParseHostPort(hostport, opts); !s.ok()) return s;
  if (absl::Status s = opts.Validate(); !s.ok()) return s;
  return opts;
}

absl::Status Options::Validate() const {
  if (host.empty()) return absl::InvalidArgumentError("redis: host is empty");
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("redis: port ", port, " out of range"));
  }
  if (db < 0) return absl::InvalidArgumentError("redis: db must be >= 0");
  if (pool_size <= 0) return absl::InvalidArgumentError("redis: pool_size must be > 0");
  if (connect_timeout <= absl::ZeroDuration() || command_timeout <= absl::ZeroDuration() ||
      checkout_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("redis: timeouts must be positive");
  }
  if (!user.empty() && password.empty()) {
    return absl::InvalidArgumentError("redis: a user needs a password");
  }
  return absl::OkStatus();
}

std::string Options::Endpoint() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace mailgrid::redis
