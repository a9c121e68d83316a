#include "libs/replica/client_store.h"

#include <algorithm>

#include "libs/base/status.h"

namespace mailgrid::replica {
namespace {

// What is left of the caller's deadline (at least 1 ms, so an already
// expired deadline still produces DEADLINE_EXCEEDED from the client rather
// than a zero timeout's undefined behaviour).
absl::Duration Left(absl::Time deadline) {
  return std::max(deadline - absl::Now(), absl::Milliseconds(1));
}

}  // namespace

absl::StatusOr<std::unique_ptr<store::Store>> ClientStore::Connect(
    std::vector<std::string> addresses) {
  return Connect(std::move(addresses), ReplicaTls());
}

absl::StatusOr<std::unique_ptr<store::Store>> ClientStore::Connect(
    std::vector<std::string> addresses, const ReplicaTls& tls) {
  KvClientOptions options;
  options.addresses = std::move(addresses);
  options.tls = tls;
  ASSIGN_OR_RETURN(auto client, KvClient::Create(std::move(options)));
  return std::unique_ptr<store::Store>(std::make_unique<ClientStore>(std::move(client)));
}

absl::StatusOr<kv::v1::GetResponse> ClientStore::Get(const kv::v1::GetRequest& request,
                                                     absl::Time deadline) {
  return client_->Get(request, Left(deadline));
}

absl::StatusOr<kv::v1::ScanResponse> ClientStore::Scan(const kv::v1::ScanRequest& request,
                                                       absl::Time deadline) {
  return client_->Scan(request, Left(deadline));
}

absl::StatusOr<kv::v1::WriteResponse> ClientStore::Write(const kv::v1::WriteRequest& request,
                                                         absl::Time deadline) {
  return client_->Write(request, Left(deadline));
}

}  // namespace mailgrid::replica
