// Where a Redis is and how patiently to talk to it.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailgrid::redis {

// TLS to Redis ("rediss://"). Verification of the server is always on: a
// certificate that does not chain to `ca_file` (or, without it, to the
// system's CAs) or does not name the host is refused at dial.
struct TlsOptions {
  bool enabled = false;
  // PEM CA bundle; empty: the system default CAs (managed Redis with a
  // public certificate).
  std::string ca_file;
  // Client certificate chain and its key (PEM), for a Redis started with
  // --tls-auth-clients yes. Both or neither.
  std::string cert_file;
  std::string key_file;
  // The name the certificate must carry (and the SNI sent); empty: host.
  // An IP address is checked against the certificate's IP SANs.
  std::string server_name;
};

struct Options {
  std::string host = "127.0.0.1";
  int port = 6379;
  // Redis 6 ACL user; empty means the legacy single-password AUTH.
  std::string user;
  // Empty: no AUTH.
  std::string password;
  // Logical database selected on every new connection.
  int db = 0;
  // Dialing a new connection (TCP connect). InfiniteDuration disables it.
  absl::Duration connect_timeout = absl::Seconds(2);
  // Sending a command and reading its reply. InfiniteDuration disables it.
  absl::Duration command_timeout = absl::Seconds(2);
  // How long a call waits for a free pooled connection when all are busy.
  absl::Duration checkout_timeout = absl::Seconds(2);
  // Upper bound on open connections per Client.
  int pool_size = 4;

  TlsOptions tls;

  // Parses "redis[s]://[[user]:password@]host[:port][/db][?query]". The
  // password may be percent-encoded. Fields the URL does not carry keep their
  // defaults. "rediss://" turns TLS on (default port 6379 all the same); its
  // query may name the files: ?ca=PATH&cert=PATH&key=PATH&server_name=NAME
  // (percent-encoded). Query keys other than these are an error.
  static absl::StatusOr<Options> FromUrl(std::string_view url);

  // What a daemon's --redis flag holds: "host:port" (plain) or a redis:// or
  // rediss:// URL. `tls` supplies the TLS files a rediss:// URL does not name
  // (the daemon's --redis-tls-* flags); naming files there for a plain
  // redis:// endpoint is an error, so a TLS setup is never silently dropped.
  static absl::StatusOr<Options> FromAddress(std::string_view address,
                                             const TlsOptions& tls = {});

  // INVALID_ARGUMENT naming the bad field, so a service stops at start.
  absl::Status Validate() const;

  // "host:port" (IPv6 hosts bracketed), for messages.
  std::string Endpoint() const;
};

}  // namespace mailgrid::redis
