// relayd's own options (beyond rpc::CommonConfig). Every flag is also
// MAILGRID_<NAME>: smtp-listen <-> MAILGRID_SMTP_LISTEN, tenantd <->
// MAILGRID_TENANTD, public-tls-cert <-> MAILGRID_PUBLIC_TLS_CERT, ...
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "libs/base/config.h"
#include "libs/redis/options.h"
#include "services/relay/delivery_retry_settings.h"

namespace mailgrid::relay {

struct Options {
  // SMTP listeners; empty: that listener is off.
  std::string smtp_listen;             // MX, port 25 (STARTTLS offered)
  std::string submission_listen;       // 587: STARTTLS, then AUTH
  std::string submission_tls_listen;   // 465: implicit TLS, then AUTH
  std::string public_tls_cert;         // PEM chain for the SMTP listeners
  std::string public_tls_key;
  std::string hostname = "mail.mailgrid.test";  // banner, Received, Authentication-Results
  std::string postmaster;  // where <Postmaster> goes; empty: postmaster@hostname

  // Peers (comma lists of every replica's gRPC address).
  std::vector<std::string> tenantd;
  std::vector<std::string> identityd;
  std::string mailstored;  // shard map: "h:p,h:p" or "0=h:p,...;1=h:p,..."
  std::string tls_ca;             // gRPC client TLS: verify peers with this CA (empty: plain)
  std::string token_signing_key;  // PEM Ed25519 key: relayd's service tokens
  std::string redis;              // host:port, redis:// or rediss:// URL; empty: no rate limits
  redis::TlsOptions redis_tls;    // --redis-tls-*: CA, client certificate, server name for rediss://
  absl::Duration rpc_timeout = absl::Seconds(15);
  // Local deliveries whose recipients mailstored answers TEMPORARY_FAILURE
  // (a shard's leader lost mid-call) are sent again for this long.
  DeliveryRetry delivery_retry;
  // SPF, DKIM and DMARC on MX traffic (libs/mailauth CheckInbound); DNS
  // through libs/mailauth's CaresResolver behind relayd's answer cache.
  bool inbound_auth = true;
  std::string dns_resolver;  // host:port; empty: the system's resolv.conf
  absl::Duration dns_timeout = absl::Seconds(2);

  // Limits.
  int64_t max_message_size = 25 << 20;
  int max_recipients = 100;
  int max_connections = 20000;
  int max_connections_per_ip = 100;
  absl::Duration smtp_timeout = absl::Minutes(5);  // RFC 5321 §4.5.3.2.7
  int smtp_threads = 2;
  int worker_threads = 32;  // blocking peer calls (Resolve, CheckSasl, DeliverBatch)
  // SMTP loop threads that may run a session's blocking call themselves
  // (no hand-off to a worker and back; worker_pool.h InlineGate); -1:
  // smtp_threads - 1, so one thread always serves the loop; 0: never.
  int smtp_inline_calls = -1;
  // Sending limits for authenticated submission (messages per hour); 0 = none.
  int rate_user_per_hour = 1000;
  int rate_tenant_per_hour = 20000;
  // Test hook (MAILGRID_TEST_HOOKS builds): accept every recipient of this
  // domain and discard messages, to benchmark the SMTP edge alone.
  std::string bench_null_backend;

  // ---- Outbound (issue 9): the queue, its runner, RelayService. ----
  // Replica gRPC addresses of the KV group holding the queue; empty: the
  // tenantd group (--tenantd). No addresses at all: no remote delivery.
  std::vector<std::string> queue_store;
  // Queue runner workers (every relayd replica runs them). Each blocks on
  // one SMTP transaction: 16 keeps a burst moving (bench/relay/outbound)
  // and stays under Postfix's per-destination default of 20 connections.
  int queue_threads = 16;
  absl::Duration queue_poll_interval = absl::Seconds(1);
  absl::Duration queue_lease = absl::Minutes(15);
  absl::Duration queue_lifetime = absl::Hours(24 * 5);
  absl::Duration queue_initial_backoff = absl::Minutes(5);
  absl::Duration queue_max_backoff = absl::Hours(4);
  absl::Duration queue_delay_warning = absl::Hours(4);
  // How long a delivered message's removal waits for the next enqueue to
  // carry it in the same replicated write (libs/outbound QueueOptions::
  // completion_ride_wait); 0: every removal is written alone. The window in
  // which a crash leads to a second delivery grows by at most this.
  absl::Duration queue_removal_ride_wait = absl::Milliseconds(10);
  // DNS server for MX lookups of outbound delivery (host:port); empty:
  // --dns-resolver (itself empty: the system's resolv.conf).
  std::string dns_server;
  int outbound_mx_port = 25;  // tests point it at a sink's port
  bool outbound_starttls = true;  // opportunistic STARTTLS to MXes
  std::string outbound_ca_file;   // CA for verified TLS to smart hosts ("" = system)
  // ---- Outbound delivery details (issue 9, owned with outbound.cc) ----
  // Directory of smart-host credentials: a route's credentials_ref names a
  // file here holding "username:password" (a mounted Kubernetes Secret).
  std::string outbound_secrets_dir;
  // MTA-STS (RFC 8461) for direct MX delivery: policy fetched over HTTPS
  // (verified with mta_sts_ca_file, "" = system CAs) from
  // mta-sts.<domain>:mta_sts_port (443; tests use a local server).
  bool mta_sts = true;
  std::string mta_sts_ca_file;
  int mta_sts_port = 443;
  // Destination-region map for region routes: "pattern=CC,..." (e.g.
  // "*.corp-jp.com=JP"); a domain not in it has its ccTLD's region.
  std::string route_regions;
  // Simultaneous deliveries to one destination (an MX host or a smart-host
  // route) per relayd; a route's concurrency_limit overrides it; 0: none.
  int destination_concurrency = 20;
  // Access tokens for RelayService (identityd's public keys).
  std::vector<std::string> token_public_keys;
  std::string token_issuer = "mailgrid";

  // ---- Tenant mail policies (audit holds, monitoring copies). ----
  // How long a tenant's audit/monitoring policy is cached.
  absl::Duration policy_cache_ttl = absl::Seconds(30);
  // How often held mail is checked for expiry (audit_holds.h).
  absl::Duration held_sweep_interval = absl::Minutes(1);

  // ---- Speed (issue 8) ----
  // How long tenantd's Resolve answers are reused at RCPT (rcpt_cache.h);
  // 0: ask tenantd for every RCPT.
  absl::Duration rcpt_cache_ttl = absl::Milliseconds(200);
  // How long a foreign domain's DOMAIN_NOT_HOSTED is reused for every
  // address of that domain (issue 9: a burst of submissions to many remote
  // addresses). A domain verified meanwhile is treated as foreign this much
  // longer (remote RCPTs are queued to its MX, which then points at us).
  // Used only when rcpt_cache_ttl > 0.
  absl::Duration rcpt_cache_foreign_ttl = absl::Seconds(2);
};

void AddFlags(config::Flags& flags, Options& options);
absl::Status Validate(const Options& options);

}  // namespace mailgrid::relay
