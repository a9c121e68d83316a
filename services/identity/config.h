// identityd's options (beyond rpc::CommonConfig and the --raft-* flags),
// each also MAILGRID_<NAME> in the environment (config::Flags).
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "libs/base/config.h"
#include "libs/redis/options.h"
#include "libs/replica/replica_flags.h"
#include "services/identity/throttle.h"

namespace mailgrid::identity {

struct Options {
  // "replicated" (this process hosts a replica of identityd's Raft group)
  // or "local" (one unreplicated RocksDB: unit tests and trials only).
  std::string store = "replicated";
  replica::RaftFlags raft;

  std::string redis = "127.0.0.1:6379";  // host:port, redis:// or rediss:// URL
  redis::TlsOptions redis_tls;           // --redis-tls-* (files for rediss://)
  std::vector<std::string> tenantd;      // DirectoryService addresses
  std::vector<std::string> relayd;       // RelayService addresses (reset mail)
  std::string tls_ca;                    // CA for client channels (tenantd)

  std::string token_signing_key;               // Ed25519 PKCS#8 PEM file
  // Signs identityd's own service tokens (to tenantd, relayd) when set, so
  // the user-token key can be "user:" (never a service token) everywhere.
  std::string service_token_key;
  std::vector<std::string> token_public_keys;  // extra verifying keys (rotation)
  std::string token_issuer = "mailgrid";
  absl::Duration access_token_ttl = absl::Minutes(15);
  absl::Duration refresh_token_ttl = absl::Hours(24 * 30);

  int64_t argon2_ops = 2;
  int64_t argon2_mem_kib = 19 * 1024;
  int hash_concurrency = 0;  // 0: the number of cores

  ThrottleOptions throttle;
  std::string common_passwords_file;
  std::string totp_issuer = "mailgrid";
  std::string qr_host = "mailgrid";

  // MAILGRID_TEST_HOOKS builds only: reset tokens are written here as
  // <address>.token for tests, besides the mail.
  std::string test_hook_dir;
};

void AddFlags(config::Flags& flags, Options& options);

}  // namespace mailgrid::identity
