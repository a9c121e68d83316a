#include "services/identity/config.h"

#include "libs/redis/flags.h"

namespace mailgrid::identity {

void AddFlags(config::Flags& f, Options& o) {
  f.String("store", &o.store,
           "where identityd keeps credentials: replicated (a Raft replica in --data-dir) or local "
           "(one unreplicated RocksDB, for tests)");
  replica::AddRaftFlags(f, &o.raft);
  f.String("redis", &o.redis,
           "Redis for sessions, counters and tickets: host:port, redis:// or rediss:// (TLS) URL");
  redis::AddTlsFlags(f, &o.redis_tls);
  f.StringList("tenantd", &o.tenantd, "tenantd gRPC addresses (comma list) for GetPrincipal");
  f.StringList("relayd", &o.relayd,
               "relayd gRPC addresses (comma list) that send password-reset mail (SubmitMessage)");
  f.String("tls-ca", &o.tls_ca,
           "PEM CA to verify tenantd's and relayd's TLS certificates (empty: plain text)");
  f.String(
      "token-signing-key", &o.token_signing_key,
      "Ed25519 private key PEM that signs access and service tokens (empty: an ephemeral key)");
  f.String("service-token-key", &o.service_token_key,
           "Ed25519 private key PEM that signs identityd's own service tokens (the cluster's "
           "service key; empty: --token-signing-key signs them too, and this key verifies as "
           "both user and service key)");
  f.StringList("token-public-key", &o.token_public_keys,
               "extra Ed25519 public key PEM files accepted (PATH, user:PATH or service:PATH; "
               "service keys verify only service tokens and are not published)");
  f.String("token-issuer", &o.token_issuer, "the issuer (iss) of access tokens");
  f.Duration("access-token-ttl", &o.access_token_ttl, "lifetime of an access token");
  f.Duration("refresh-token-ttl", &o.refresh_token_ttl, "lifetime of a session's refresh token");
  f.Int64("argon2-ops", &o.argon2_ops, "argon2id passes (t) for new hashes");
  f.Int64("argon2-mem-kib", &o.argon2_mem_kib, "argon2id memory (m, KiB) for new hashes");
  f.Int("hash-concurrency", &o.hash_concurrency,
        "most password hashes computed at once (memory = this x argon2-mem-kib; 0: cores)");
  f.Int("throttle-delay-after", &o.throttle.delay_after, "failures before delays begin");
  f.Duration("throttle-base-delay", &o.throttle.base_delay, "first delay; doubles per failure");
  f.Duration("throttle-max-delay", &o.throttle.max_delay, "longest delay between attempts");
  f.Int("throttle-lock-after", &o.throttle.lock_after,
        "failures in the window that lock an address");
  f.Duration("throttle-lock-for", &o.throttle.lock_for, "how long a lock lasts");
  f.Int("throttle-ip-lock-after", &o.throttle.ip_lock_after,
        "failures in the window that lock an IP");
  f.Duration("throttle-window", &o.throttle.window, "window in which failures are counted");
  f.String("common-passwords-file", &o.common_passwords_file,
           "extra common/breached passwords (one per line), added to the built-in list");
  f.String("totp-issuer", &o.totp_issuer, "issuer name shown by authenticator apps");
  f.String("qr-host", &o.qr_host, "host named in QR login URIs");
#ifdef MAILGRID_TEST_HOOKS
  f.String("test-hook-dir", &o.test_hook_dir,
           "TEST BUILDS ONLY: write password-reset tokens to DIR/<address>.token");
#endif
}

}  // namespace mailgrid::identity
