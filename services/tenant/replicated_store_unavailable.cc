// Built instead of replicated_store.cc when libs/replica is not in the tree.
#include "services/tenant/replicated_store.h"

namespace mailgrid::tenant {

bool ReplicationAvailable() { return false; }

absl::StatusOr<std::unique_ptr<ReplicatedStore>> ReplicatedStore::Open(
    const rpc::CommonConfig&, const Options&, std::shared_ptr<prometheus::Registry>) {
  return absl::UnimplementedError(
      "--store=replicated: this build has no libs/replica; use --store=local");
}

}  // namespace mailgrid::tenant
