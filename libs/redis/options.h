// Where a Redis is and how patiently to talk to it.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mailgrid::redis {

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

  // Parses "redis://[[user]:password@]host[:port][/db]". The password may be
  // percent-encoded. Fields the URL does not carry keep their defaults.
  // "rediss://" (TLS) is UNIMPLEMENTED: hiredis 0.14 has no TLS.
  static absl::StatusOr<Options> FromUrl(std::string_view url);

  // INVALID_ARGUMENT naming the bad field, so a service stops at start.
  absl::Status Validate() const;

  // "host:port" (IPv6 hosts bracketed), for messages.
  std::string Endpoint() const;
};

}  // namespace mailgrid::redis
