// A mailstored client for the benchmark binaries, signing as a daemon.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "libs/auth/service_token.h"
#include "libs/mailstore_client/mailstore_client.h"

namespace mailgrid::bench {

// A mailstored client signing its calls as daemon `svc` with the cluster's
// service key at `key_path`; prints the error and returns null on failure.
inline std::unique_ptr<mailstore_client::MailstoreClient> ConnectMailstore(
    const std::string& addresses, const std::string& key_path, const char* svc) {
  auto tokens = auth::ServiceTokenSource::FromPemFile(key_path, svc);
  if (!tokens.ok()) {
    std::fprintf(stderr, "%s\n", tokens.status().ToString().c_str());
    return nullptr;
  }
  auto client = mailstore_client::MailstoreClient::FromFlag(addresses, std::move(*tokens));
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return nullptr;
  }
  return std::move(*client);
}

}  // namespace mailgrid::bench
