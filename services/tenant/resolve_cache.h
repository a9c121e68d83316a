// The Resolve cache: relayd resolves every RCPT, and most answers repeat.
// (In replicated mode Resolve reads this process's own replica, STALE: the
// cache then saves the expansion work, and the stamp is re-read on every
// call by default, --resolve-cache-ttl=0.)
//
// Each answer (or NOT_FOUND) is cached with the tenant's directory stamp
// (T/"dirgen", rewritten by every directory change, directory_store.h) and
// the tenant record's version (suspension) as they were read BEFORE the
// answer was computed. A cached answer is served while the stamp the cache
// last read for its tenant is the same; that stamp is re-read (one point
// read, two keys) at most once per `ttl` per tenant, and dropped at once
// when a change goes through this replica. So an answer is never staler
// than `ttl` after a change made through another replica, and never stale
// after a change made through this one. Answers for domains hosted by no
// tenant carry no stamp and simply expire after `ttl`.
//
// Thread-safe (one mutex; entries are immutable shared_ptrs).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/directory.pb.h"

namespace mailgrid::tenant {

class ResolveCache {
 public:
  struct Stamp {
    std::string dirgen;
    uint64_t tenant_version = 0;
    bool operator==(const Stamp& o) const {
      return dirgen == o.dirgen && tenant_version == o.tenant_version;
    }
  };
  struct Entry {
    absl::Status status;              // the answer when not OK
    tenant::v1::ResolveResponse response;  // posting_decision left unset
    tenant::v1::PostingPolicy policy = tenant::v1::POSTING_POLICY_ANYONE;
    std::string tenant_id;            // "" for DOMAIN_NOT_HOSTED
    Stamp stamp;
    absl::Time computed_at;
  };
  struct Lookup {
    std::shared_ptr<const Entry> entry;  // a valid hit
    // Set when an entry exists but its tenant's stamp must be re-read first.
    std::string validate_tenant;
  };

  ResolveCache(absl::Duration ttl, size_t max_entries) : ttl_(ttl), max_entries_(max_entries) {}

  // ttl 0: the stamp is re-read on every lookup (cheap when Resolve reads
  // the local replica).
  bool enabled() const { return max_entries_ > 0; }
  Lookup Find(const std::string& key, absl::Time now);
  void Insert(const std::string& key, std::shared_ptr<const Entry> entry);
  // The stamp just read for `tenant_id`.
  void SetStamp(const std::string& tenant_id, const Stamp& stamp, absl::Time now);
  // A change to the tenant went through this replica.
  void Invalidate(const std::string& tenant_id);

  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }

 private:
  struct TenantStamp {
    Stamp stamp;
    absl::Time checked_at;
  };
  const absl::Duration ttl_;
  const size_t max_entries_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TenantStamp> stamps_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace mailgrid::tenant
