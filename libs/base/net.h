// Small network helpers shared by services and tests.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace mailgrid::net {

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;
};

// Parses "host:port", "[v6]:port" or ":port" (host defaults to 127.0.0.1).
absl::StatusOr<HostPort> ParseHostPort(std::string_view s);

// A numeric IPv4 or IPv6 address and a port, ready for connect(2)/bind(2).
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// INVALID_ARGUMENT "bad address IP" unless `ip` is a numeric IPv4 or IPv6
// address (no name lookup).
absl::StatusOr<SocketAddress> ToSocketAddress(const std::string& ip, uint16_t port);

// Binds and releases an ephemeral loopback TCP port. For tests and the local
// launcher only: another process may take it before the caller binds.
absl::StatusOr<int> PickFreePort();

// Tries to bind host:port and releases it at once: lets a service fail at
// start with "port in use" naming the port, before starting threads.
absl::Status CheckPortFree(const HostPort& hp);

}  // namespace mailgrid::net
