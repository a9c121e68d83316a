// store::Store over a KvClient: what a service that embeds a replica (or
// just knows the group's addresses) hands to its own storage code, so that
// the code is the same on LocalStore in unit tests and on the replicated
// group in production. The call's deadline becomes the client's timeout;
// leader-following, retries and idempotent write ids are KvClient's.
#pragma once

#include <memory>

#include "libs/replica/kv_client.h"
#include "libs/store/store.h"

namespace mailgrid::replica {

class ClientStore final : public store::Store {
 public:
  explicit ClientStore(std::unique_ptr<KvClient> client) : client_(std::move(client)) {}

  // A store over the group at these addresses ("host:port,...").
  static absl::StatusOr<std::unique_ptr<store::Store>> Connect(std::vector<std::string> addresses);
  // The same over TLS (or mTLS) towards the replicas, as KvClientOptions::tls
  // (a daemon whose listener has TLS passes what MakeReplicaOptions built
  // for its peers, so its client presents the same certificate).
  static absl::StatusOr<std::unique_ptr<store::Store>> Connect(std::vector<std::string> addresses,
                                                               const ReplicaTls& tls);

  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request,
                                          absl::Time deadline) override;
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request,
                                            absl::Time deadline) override;
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& request,
                                              absl::Time deadline) override;

  KvClient& client() { return *client_; }

 private:
  std::unique_ptr<KvClient> client_;
};

}  // namespace mailgrid::replica
