// The --redis-tls-* options a daemon that talks to Redis declares beside its
// --redis address (also MAILGRID_REDIS_TLS_* in the environment):
//
//   redis::AddTlsFlags(flags, &cfg.redis_tls);
//   ...
//   ASSIGN_OR_RETURN(redis::Options ro, redis::Options::FromAddress(cfg.redis, cfg.redis_tls));
//
// TLS itself is switched on by the address: "rediss://host:port".
#pragma once

#include "libs/base/config.h"
#include "libs/redis/options.h"

namespace mailgrid::redis {

void AddTlsFlags(config::Flags& flags, TlsOptions* tls);

}  // namespace mailgrid::redis
