// How fresh is this replica's own state? Resolve answers from it (no
// network hop), so a follower cut off from the leader, or lagging, must
// stop answering from it after a bound (resolve_cache.h, STALENESS BOUND).
//
// Probe(): note t0, read any key LINEARIZABLY through the group (the
// leader confirms its leadership and answers at its applied index L, which
// covers everything committed before t0), then wait until this replica has
// applied L. Once it has, this replica's state contains every change
// committed before t0: fresh_as_of() = t0. The index thread probes every
// few tens of ms; Resolve serves from the local state only while
// fresh_as_of() is within the bound, else it reads through the leader.
//
// With one store (--store=local, unit tests) the state is always current.
// Thread-safe.
#pragma once

#include <atomic>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/store/store.h"

namespace mailgrid::tenant {

class ReplicaFreshness {
 public:
  // `group`: reads through the leader; `local`: this replica (STALE).
  // local == nullptr: a single store, always fresh.
  ReplicaFreshness(store::Store* group, store::Store* local) : group_(group), local_(local) {}

  // One probe, waiting at most `wait` for this replica to catch up.
  // Returns the index this replica had applied (0 with a single store:
  // unknown, so callers must assume anything may have changed).
  absl::StatusOr<uint64_t> Probe(absl::Duration wait);
  // Every change committed before this time is in the local state.
  absl::Time fresh_as_of() const;

 private:
  absl::StatusOr<uint64_t> AppliedIndex(store::Store* s, kv::v1::ReadConsistency c,
                                        absl::Time deadline);
  store::Store* group_;
  store::Store* local_;
  std::atomic<int64_t> fresh_as_of_us_{0};
};

}  // namespace mailgrid::tenant
