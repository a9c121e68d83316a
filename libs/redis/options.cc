#include "libs/redis/options.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "libs/base/status.h"
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

// "ca=PATH&cert=PATH&key=PATH&server_name=NAME" of a rediss:// URL.
absl::Status ParseQuery(absl::string_view query, Options& opts) {
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    size_t eq = pair.find('=');
    absl::string_view key = pair.substr(0, eq);
    absl::string_view raw = eq == absl::string_view::npos ? "" : pair.substr(eq + 1);
    ASSIGN_OR_RETURN(std::string value, PercentDecode(raw));
    std::string* field = nullptr;
    if (key == "ca") field = &opts.tls.ca_file;
    if (key == "cert") field = &opts.tls.cert_file;
    if (key == "key") field = &opts.tls.key_file;
    if (key == "server_name") field = &opts.tls.server_name;
    if (field == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis url: unknown query key '", key, "' (ca, cert, key, server_name)"));
    }
    if (!opts.tls.enabled) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis url: '", key, "' needs TLS: write rediss://"));
    }
    *field = std::move(value);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Options> Options::FromUrl(std::string_view std_url) {
  const absl::string_view url = ToAbsl(std_url);
  Options opts;
  absl::string_view rest;
  if (absl::StartsWithIgnoreCase(url, "rediss://")) {
    opts.tls.enabled = true;
    rest = url.substr(9);
  } else if (absl::StartsWithIgnoreCase(url, "redis://")) {
    rest = url.substr(8);
  } else {
    return absl::InvalidArgumentError("redis url: must start with redis:// or rediss://");
  }
  if (size_t q = rest.find('?'); q != absl::string_view::npos) {
    RETURN_IF_ERROR(ParseQuery(rest.substr(q + 1), opts));
    rest = rest.substr(0, q);
  }

  // The last '@' ends the credentials, so an unescaped '@' or '/' in a
  // password still parses.
  if (size_t at = rest.rfind('@'); at != absl::string_view::npos) {
    absl::string_view userinfo = rest.substr(0, at);
    rest = rest.substr(at + 1);
    size_t colon = userinfo.find(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError("redis url: credentials must be [user]:password@");
    }
    ASSIGN_OR_RETURN(opts.user, PercentDecode(userinfo.substr(0, colon)));
    ASSIGN_OR_RETURN(opts.password, PercentDecode(userinfo.substr(colon + 1)));
  }

  absl::string_view hostport = rest;
  if (size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    hostport = rest.substr(0, slash);
    absl::string_view db = rest.substr(slash + 1);
    if (!db.empty() && (!absl::SimpleAtoi(db, &opts.db) || opts.db < 0)) {
      return absl::InvalidArgumentError(absl::StrCat("redis url: bad database '", db, "'"));
    }
  }
  RETURN_IF_ERROR(ParseHostPort(hostport, opts));
  RETURN_IF_ERROR(opts.Validate());
  return opts;
}

absl::StatusOr<Options> Options::FromAddress(std::string_view std_address,
                                             const TlsOptions& tls) {
  const absl::string_view address = ToAbsl(std_address);
  const bool has_scheme = absl::StrContains(address, "://");
  ASSIGN_OR_RETURN(Options opts,
                   FromUrl(has_scheme ? std::string(address) : absl::StrCat("redis://", address)));
  const bool tls_files = !tls.ca_file.empty() || !tls.cert_file.empty() ||
                         !tls.key_file.empty() || !tls.server_name.empty();
  if (!opts.tls.enabled) {
    if (tls_files) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis: TLS files are configured but '", opts.Endpoint(),
          "' is plain text; write it as rediss://", opts.Endpoint(), " to use TLS"));
    }
    return opts;
  }
  // The URL's own query wins over the flags, field by field.
  if (opts.tls.ca_file.empty()) opts.tls.ca_file = tls.ca_file;
  if (opts.tls.cert_file.empty() && opts.tls.key_file.empty()) {
    opts.tls.cert_file = tls.cert_file;
    opts.tls.key_file = tls.key_file;
  }
  if (opts.tls.server_name.empty()) opts.tls.server_name = tls.server_name;
  RETURN_IF_ERROR(opts.Validate());
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
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError("redis: a TLS client certificate needs its key, and back");
  }
  if (tls.enabled) {
    // Checked here, at start, so a typo stops the daemon instead of making
    // every later dial fail.
    for (const std::string* file : {&tls.ca_file, &tls.cert_file, &tls.key_file}) {
      if (!file->empty() && ::access(file->c_str(), R_OK) != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("redis: TLS file '", *file, "': ", std::strerror(errno)));
      }
    }
  }
  return absl::OkStatus();
}

std::string Options::Endpoint() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

}  // namespace mailgrid::redis
