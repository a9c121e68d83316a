#include "services/tenant/resolve_freshness.h"

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::tenant {
namespace {
// Any key does; this one is never written.
constexpr char kProbeKey[] = "freshness-probe";
}  // namespace

absl::StatusOr<uint64_t> ReplicaFreshness::AppliedIndex(store::Store* s,
                                                        kv::v1::ReadConsistency c,
                                                        absl::Time deadline) {
  kv::v1::GetRequest req;
  req.set_key(kProbeKey);
  req.set_consistency(c);
  ASSIGN_OR_RETURN(kv::v1::GetResponse resp, s->Get(req, deadline));
  return resp.applied_index();
}

absl::StatusOr<uint64_t> ReplicaFreshness::Probe(absl::Duration wait) {
  const absl::Time t0 = absl::Now();
  if (local_ == nullptr) {
    fresh_as_of_us_.store(absl::ToUnixMicros(t0));
    return 0;
  }
  const absl::Time deadline = t0 + wait;
  ASSIGN_OR_RETURN(uint64_t leader, AppliedIndex(group_, kv::v1::LINEARIZABLE, deadline));
  uint64_t mine = 0;
  for (;;) {
    ASSIGN_OR_RETURN(mine, AppliedIndex(local_, kv::v1::STALE, deadline));
    if (mine >= leader) break;
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("this replica applied ", mine, ", the leader ", leader));
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
  int64_t us = absl::ToUnixMicros(t0);
  int64_t prev = fresh_as_of_us_.load();
  while (us > prev && !fresh_as_of_us_.compare_exchange_weak(prev, us)) {
  }
  return mine;
}

absl::Time ReplicaFreshness::fresh_as_of() const {
  if (local_ == nullptr) return absl::Now();
  return absl::FromUnixMicros(fresh_as_of_us_.load());
}

}  // namespace mailgrid::tenant
