#include "services/relay/config.h"

#include "absl/strings/str_cat.h"
#include "libs/redis/flags.h"

namespace mailgrid::relay {

void AddFlags(config::Flags& f, Options& o) {
  f.String("smtp-listen", &o.smtp_listen, "MX listener host:port (port 25); empty: off");
  f.String("submission-listen", &o.submission_listen,
           "submission listener host:port (587, STARTTLS then AUTH); empty: off");
  f.String("submission-tls-listen", &o.submission_tls_listen,
           "submission listener host:port with implicit TLS (465); empty: off");
  f.String("public-tls-cert", &o.public_tls_cert, "PEM certificate chain for SMTP TLS");
  f.String("public-tls-key", &o.public_tls_key, "PEM private key for SMTP TLS");
  f.String("cluster-hostname", &o.hostname,
           "this MTA's public name (the tenants' MX host): banner, Received, "
           "Authentication-Results");
  f.String("postmaster", &o.postmaster,
           "the hosted address that RCPT TO:<Postmaster> (no domain, RFC 5321 4.5.1) delivers "
           "to; empty: postmaster@--cluster-hostname");
  f.StringList("tenantd", &o.tenantd, "tenantd replicas (DirectoryService), comma list");
  f.StringList("identityd", &o.identityd, "identityd replicas (AuthService), comma list");
  f.String("mailstored", &o.mailstored,
           "mailstored shard map: h:p,h:p (shard 0) or 0=h:p,...;1=h:p,... (libs/mailstore_client)");
  f.String("tls-ca", &o.tls_ca, "CA that verifies peer services over gRPC TLS, used only when this daemon has "
           "--tls-cert too (mTLS mode); otherwise peers are plain");
  f.String("token-signing-key", &o.token_signing_key,
           "PEM Ed25519 private key that signs relayd's service tokens");
  f.String("redis", &o.redis, "Redis host:port, redis:// or rediss:// URL for rate limits; empty: none");
  redis::AddTlsFlags(f, &o.redis_tls);
  f.Duration("rpc-timeout", &o.rpc_timeout, "deadline of one call to a peer service");
  f.Duration("delivery-retry-budget", &o.delivery_retry.budget,
             "how long a local delivery's recipients that mailstored answered TEMPORARY_FAILURE "
             "(a shard changing leader) are sent again before the SMTP client gets 451 / the "
             "queue defers them; 0: never again");
  f.Duration("delivery-retry-first-pause", &o.delivery_retry.first_pause,
             "pause before the first such retry; doubled per retry up to "
             "--delivery-retry-max-pause, jittered by 25%");
  f.Duration("delivery-retry-max-pause", &o.delivery_retry.max_pause,
             "longest pause between such retries");
  f.Bool("inbound-auth", &o.inbound_auth,
         "check SPF, DKIM and DMARC on MX mail (libs/mailauth): record them in "
         "Authentication-Results, refuse DMARC p=reject failures, file quarantine into Junk");
  f.String("dns-resolver", &o.dns_resolver,
           "host:port of the DNS server for SPF/DKIM/DMARC lookups (default: system resolv.conf)");
  f.Duration("dns-timeout", &o.dns_timeout, "time allowed for one DNS query");
  f.Int64("max-message-size", &o.max_message_size, "SIZE limit in bytes (552 5.3.4 above)");
  f.Int("max-recipients", &o.max_recipients, "recipients per message (452 above)");
  f.Int("max-connections", &o.max_connections, "open SMTP connections in all");
  f.Int("max-connections-per-ip", &o.max_connections_per_ip, "open SMTP connections per IP");
  f.Duration("smtp-timeout", &o.smtp_timeout, "idle time before 421 4.4.2 and close");
  f.Int("smtp-threads", &o.smtp_threads, "threads running the SMTP event loop");
  f.Int("worker-threads", &o.worker_threads, "threads for blocking calls to peer services");
  f.Int("smtp-inline-calls", &o.smtp_inline_calls,
        "SMTP loop threads that may make a session's blocking peer call themselves instead of "
        "handing it to a worker (-1: smtp-threads - 1; 0: always a worker)");
  f.Int("rate-user-per-hour", &o.rate_user_per_hour,
        "messages an authenticated user may submit per hour (0: no limit)");
  f.Int("rate-tenant-per-hour", &o.rate_tenant_per_hour,
        "messages a tenant's users may submit per hour (0: no limit)");
  f.StringList("queue-store", &o.queue_store,
                "replica gRPC addresses of the KV group holding the outbound queue (comma "
                "list); empty: the --tenantd group (key space G(\"outq*\"), see README)");
  f.Int("queue-threads", &o.queue_threads, "queue runner threads (0: no runner on this replica)");
  f.Duration("queue-poll-interval", &o.queue_poll_interval, "idle queue runner poll period");
  f.Duration("queue-lease", &o.queue_lease,
             "lease a runner takes on an entry (keep above the SMTP timeouts)");
  f.Duration("queue-lifetime", &o.queue_lifetime, "time a message may stay queued before it bounces");
  f.Duration("queue-initial-backoff", &o.queue_initial_backoff, "first retry delay (doubles)");
  f.Duration("queue-max-backoff", &o.queue_max_backoff, "longest retry delay");
  f.Duration("queue-delay-warning", &o.queue_delay_warning, "delay warning DSN after this long");
  f.Duration("queue-removal-ride-wait", &o.queue_removal_ride_wait,
             "how long a delivered message's removal waits to ride the next enqueue's write "
             "(one replicated write instead of two; 0: always written alone)");
  f.String("dns-server", &o.dns_server,
           "host:port of the DNS server for outbound MX lookups (default: --dns-resolver)");
  f.Int("outbound-mx-port", &o.outbound_mx_port, "TCP port of remote MXes (25; tests: a sink)");
  f.Bool("outbound-starttls", &o.outbound_starttls, "opportunistic STARTTLS to remote MXes");
  f.String("outbound-ca-file", &o.outbound_ca_file,
           "CA bundle for verified TLS to smart hosts (default: the system's)");
  // Outbound delivery details (issue 9).
  f.String("outbound-secrets-dir", &o.outbound_secrets_dir,
           "directory of smart-host credentials (a route's credentials_ref names a file there "
           "holding username:password)");
  f.Bool("mta-sts", &o.mta_sts, "enforce MTA-STS (RFC 8461) policies on direct MX delivery");
  f.String("mta-sts-ca-file", &o.mta_sts_ca_file,
           "CA bundle verifying MTA-STS policy hosts and enforced MXes (default: the system's)");
  f.Int("mta-sts-port", &o.mta_sts_port, "HTTPS port of mta-sts.<domain> (443; tests: a local server)");
  f.String("route-regions", &o.route_regions,
           "destination regions for region routes: pattern=CC,... (default: the ccTLD)");
  f.Int("destination-concurrency", &o.destination_concurrency,
        "simultaneous deliveries per destination (MX host or smart-host route; 20 like "
        "Postfix; a route's concurrency_limit overrides it; 0: no limit)");
  f.StringList("token-public-key", &o.token_public_keys,
               "PEM files of the Ed25519 public keys that verify access tokens (RelayService)");
  f.String("token-issuer", &o.token_issuer, "the issuer (iss) access tokens must carry");
  f.Duration("policy-cache-ttl", &o.policy_cache_ttl,
             "how long a tenant's audit and monitoring policies are cached");
  f.Duration("held-sweep-interval", &o.held_sweep_interval,
             "how often held mail is checked for expiry");
  f.Duration("rcpt-cache-ttl", &o.rcpt_cache_ttl,
             "how long a recipient's Resolve answer is reused at RCPT (0: never)");
  f.Duration("rcpt-cache-foreign-ttl", &o.rcpt_cache_foreign_ttl,
             "how long a foreign domain's not-hosted answer is reused for all its addresses");
#ifdef MAILGRID_TEST_HOOKS
  f.String("bench-null-backend", &o.bench_null_backend,
           "BENCHMARK ONLY: accept every recipient @DOMAIN and discard the mail");
#endif
}

absl::Status Validate(const Options& o) {
  if (o.max_message_size < 1024) return absl::InvalidArgumentError("--max-message-size: too small");
  if (o.max_recipients < 1) return absl::InvalidArgumentError("--max-recipients: must be >= 1");
  if (o.smtp_threads < 1 || o.worker_threads < 1)
    return absl::InvalidArgumentError("--smtp-threads/--worker-threads: must be >= 1");
  if (o.public_tls_cert.empty() != o.public_tls_key.empty())
    return absl::InvalidArgumentError("--public-tls-cert and --public-tls-key go together");
  if (!o.submission_tls_listen.empty() && o.public_tls_cert.empty())
    return absl::InvalidArgumentError("--submission-tls-listen needs --public-tls-cert/key");
  if (o.smtp_inline_calls < -1 || o.smtp_inline_calls >= o.smtp_threads)
    return absl::InvalidArgumentError("--smtp-inline-calls: -1, or 0 to smtp-threads - 1");
  if (o.queue_threads < 0) return absl::InvalidArgumentError("--queue-threads: must be >= 0");
  if (o.queue_removal_ride_wait < absl::ZeroDuration() ||
      o.queue_removal_ride_wait > absl::Seconds(1))
    return absl::InvalidArgumentError("--queue-removal-ride-wait: 0 to 1s");
  if (o.delivery_retry.budget < absl::ZeroDuration())
    return absl::InvalidArgumentError("--delivery-retry-budget: must be >= 0");
  if (o.delivery_retry.first_pause <= absl::ZeroDuration() ||
      o.delivery_retry.max_pause < o.delivery_retry.first_pause)
    return absl::InvalidArgumentError(
        "--delivery-retry-first-pause/--delivery-retry-max-pause: 0 < first <= max");
  if (o.destination_concurrency < 0)
    return absl::InvalidArgumentError("--destination-concurrency: must be >= 0");
  if (o.mta_sts_port < 1 || o.mta_sts_port > 65535)
    return absl::InvalidArgumentError("--mta-sts-port: out of range");
  if (o.outbound_mx_port < 1 || o.outbound_mx_port > 65535)
    return absl::InvalidArgumentError("--outbound-mx-port: out of range");
  return absl::OkStatus();
}

}  // namespace mailgrid::relay
