// A Resolver over c-ares: every Lookup is one query on its own short-lived
// channel, driven with poll() on the calling thread until it answers or the
// timeout passes. Thread-safe (no shared state besides the library init).
//
// The server is configurable ("127.0.0.1:5353", or "" for /etc/resolv.conf)
// so tests point it at a local dnsmasq. No cache: callers that ask the same
// question twice within one message should keep the answer (SPF and DMARC
// do not repeat questions in practice).
#pragma once

#include <string>

#include "absl/time/time.h"
#include "libs/mailauth/dns.h"

namespace mailgrid::mailauth {

class CaresResolver final : public Resolver {
 public:
  // `servers`: c-ares CSV form, "host:port[,host:port]" (IPv6 as "[::1]:53"),
  // or "" for the system configuration.
  explicit CaresResolver(std::string servers = "", absl::Duration timeout = absl::Seconds(5));
  DnsResult Lookup(std::string_view name, RrType type) override;

 private:
  std::string servers_;
  absl::Duration timeout_;
};

}  // namespace mailgrid::mailauth
