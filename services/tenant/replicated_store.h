// Replicated mode (--store=replicated): this tenantd process hosts one
// replica of tenantd's Raft group (libs/replica) and serves its KvService
// and RaftService on the daemon's own gRPC port.
//
// Which store the API uses: a replica::KvClient pointed at the whole group
// (every replica's address, this one included). So any tenantd replica can
// serve any API call: reads and writes go to the current leader, NOT_LEADER
// redirects and elections are followed by the client, and writes carry
// request ids so a retry never applies twice. The cost is one extra hop on
// followers; the gain is that the service code is the same as on LocalStore.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/impl/codegen/service_type.h"
#include "libs/rpc/service_main.h"
#include "libs/store/store.h"
#include "prometheus/registry.h"
#include "services/tenant/config.h"

namespace mailgrid::tenant {

class ReplicatedStore {
 public:
  static absl::StatusOr<std::unique_ptr<ReplicatedStore>> Open(
      const rpc::CommonConfig& common, const Options& options,
      std::shared_ptr<prometheus::Registry> registry);
  virtual ~ReplicatedStore() = default;

  virtual store::Store* store() = 0;
  // Reads served by this process's own replica (STALE reads only: as fresh
  // as this replica's applied state, no network). Writes are refused.
  // Resolve reads here (directory_resolve.cc).
  virtual store::Store* local_reads() = 0;
  // KvService and RaftService, to serve beside tenantd's own.
  virtual std::vector<grpc::Service*> Services() = 0;
  // Starts the raft loop (the gRPC server must listen already).
  virtual absl::Status Start() = 0;
  virtual void Stop() = 0;
  // Whether this replica currently leads (the background loop runs there).
  virtual bool IsLeader() const = 0;
  // Whether the replica can serve: a leader is known and it has caught up.
  virtual bool Ready(std::string* reason) const = 0;
};

}  // namespace mailgrid::tenant
