// The storage interface every stateful service codes against: the
// replicated key-value store's Get / Scan / Write (kv.proto), nothing more.
//
// Implementations:
//  * replica::Replica (in-process, the replica this daemon hosts) and
//    replica::KvClient (remote replicas, following the leader) in production;
//  * store::LocalStore: the same StateMachine on a real RocksDB with no
//    replication, for unit tests of a service's logic and for benchmarks
//    that want the unreplicated baseline.
// All return the semantics of kv.proto: conditions, versions, idempotent
// request ids, LINEARIZABLE vs STALE reads.
#pragma once

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailgrid/kv/v1/kv.pb.h"

namespace mailgrid::store {

class Store {
 public:
  virtual ~Store() = default;
  virtual absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request, absl::Time deadline) = 0;
  virtual absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request, absl::Time deadline) = 0;
  virtual absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& request, absl::Time deadline) = 0;
};

}  // namespace mailgrid::store
