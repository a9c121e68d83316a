#include "libs/redis/flags.h"

namespace mailgrid::redis {

void AddTlsFlags(config::Flags& flags, TlsOptions* tls) {
  flags.String("redis-tls-ca", &tls->ca_file,
               "PEM CA that signs the rediss:// server's certificate (empty: the system CAs)");
  flags.String("redis-tls-cert", &tls->cert_file,
               "PEM client certificate for a Redis that requires one (with --redis-tls-key)");
  flags.String("redis-tls-key", &tls->key_file, "PEM key of --redis-tls-cert");
  flags.String("redis-tls-server-name", &tls->server_name,
               "name the Redis certificate must carry, if not the host of --redis");
}

}  // namespace mailgrid::redis
