// The Resolve index: relayd resolves every RCPT, so every tenantd replica
// keeps the answers in memory and answers from there (directory_resolve.cc,
// directory_resolve_index.cc).
//
// Each answer (or NOT_FOUND) is kept with the tenant's directory stamp
// (T/"dirgen", rewritten by every directory change, directory_store.h) and
// the tenant record's version (suspension) as read BEFORE the answer was
// computed. For each tenant the index also holds the stamp last read and
// the time `as_of` that read is known to be complete to: this replica's
// state then contained every change committed before `as_of`
// (resolve_freshness.h). An answer is served while its stamp equals the
// tenant's and `as_of` is at most `max_staleness` old; the index thread
// re-reads every tenant's stamp each few tens of milliseconds, and a change
// made through this replica drops its tenant's stamp at once. Answers for
// domains hosted by no tenant carry no stamp and expire `max_staleness`
// after they were computed.
//
// STALENESS BOUND: an answer reflects every directory change committed more
// than `max_staleness` before the call (in practice the index thread's
// period plus replication, tens of ms). A change made through this replica
// is seen by its next Resolve once this replica has applied it.
//
// WARMED ANSWERS (every user's primary address, directory_resolve_index.cc)
// live in their own map and are valid while the tenant's held stamp equals
// the stamp their warm-up was current for (ApplyWarm): a re-warm after a
// change replaces only the users that changed and then moves that stamp,
// instead of re-stamping 100k answers. They are kept serialized (`packed`,
// posting decision included: a user's address is always ALLOWED), a third
// of the memory of a message. Answers computed on use never displace them.
//
// Thread-safe (one reader/writer mutex; entries are immutable shared_ptrs).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

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
    absl::Time computed_at;           // the replica state's as_of when computed
    // Warmed answers only: the whole ResolveResponse, serialized (then
    // `response` is empty and `stamp` unused).
    std::string packed;
  };
  struct Lookup {
    std::shared_ptr<const Entry> entry;  // a valid hit
    // Set when an entry exists but its tenant's stamp must be re-read first.
    std::string validate_tenant;
  };

  ResolveCache(absl::Duration max_staleness, size_t max_entries)
      : max_staleness_(max_staleness), max_entries_(max_entries) {}

  bool enabled() const { return max_entries_ > 0; }
  absl::Duration max_staleness() const { return max_staleness_; }
  Lookup Find(const std::string& key, absl::Time now);
  void Insert(const std::string& key, std::shared_ptr<const Entry> entry);
  // Many at once (the index thread's warm-up of a tenant).
  void InsertAll(std::vector<std::pair<std::string, std::shared_ptr<const Entry>>> entries);
  // A warm-up of `tenant_id` current for `stamp`: its answers replace those
  // held for the same keys, `erase` are dropped, then warmed answers of the
  // tenant are valid while its stamp is `stamp`.
  void ApplyWarm(const std::string& tenant_id, const Stamp& stamp,
                 std::vector<std::pair<std::string, std::shared_ptr<const Entry>>> upserts,
                 const std::vector<std::string>& erase);
  // Every warmed answer of the tenant is void until the next ApplyWarm.
  void DropWarm(const std::string& tenant_id);
  // Every warmed answer of the tenant goes (a warm-up failed part way).
  void ClearWarm(const std::string& tenant_id);
  // The stamp just read for `tenant_id`, complete as of `as_of`. Returns
  // whether it differs from the one held (or none was).
  bool SetStamp(const std::string& tenant_id, const Stamp& stamp, absl::Time as_of);
  // Every held stamp is still current as of `as_of` (nothing was applied
  // since they were read); stamps dropped by Invalidate stay dropped.
  void Revouch(absl::Time as_of);
  // A change to the tenant is being made through this replica; its batch
  // rewrites the tenant's dirgen to `expected` (TouchDirectory). Called
  // BEFORE the commit, so a stamp read before the commit may still arrive
  // (an index round already under way): until `expected` is read (or
  // kPendingFor passes, for a write that never committed) no other dirgen
  // is vouched for, so a Resolve after the commit returned never answers
  // from the old state (read-your-writes on this replica). A dirgen read
  // also settles every change invalidated before it (a retried attempt's
  // batch, an earlier change overwritten since).
  void Invalidate(const std::string& tenant_id, std::string expected);
  // Is a change made through this replica not yet seen here (above)? Then
  // Resolve must read through the leader instead of this replica's state.
  bool Awaiting(const std::string& tenant_id);
  static constexpr absl::Duration kPendingFor = absl::Seconds(10);
  // Tenants whose stamp the index holds (the index thread refreshes them).
  std::vector<std::string> Tenants();
  // The held stamp of a tenant (false: none).
  bool CurrentStamp(const std::string& tenant_id, Stamp* out);

  uint64_t hits() const { return hits_.load(); }
  uint64_t misses() const { return misses_.load(); }
  size_t size();
  size_t warmed_size();

 private:
  struct Pending {
    std::string dirgen;
    absl::Time until;
  };
  struct TenantStamp {
    Stamp stamp;
    absl::Time as_of;
    std::vector<Pending> pending;  // oldest first (Invalidate)
  };
  // Drops expired pending changes; true while some remain.
  static bool Unsettled(TenantStamp& t, absl::Time now);
  const absl::Duration max_staleness_;
  const size_t max_entries_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<const Entry>> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, TenantStamp> stamps_ ABSL_GUARDED_BY(mu_);
  // A warmed answer is held as its bytes and its tenant's number, not as an
  // Entry (a third of the memory at 100k users per replica); Find makes the
  // Entry of a hit.
  struct WarmSlot {
    uint32_t tenant = 0;  // index into warm_tenants_
    std::string packed;
  };
  uint32_t WarmTenantIndex(const std::string& tenant_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::flat_hash_map<std::string, WarmSlot> warm_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> warm_tenants_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Stamp> warm_stamps_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> hits_{0}, misses_{0};
};

}  // namespace mailgrid::tenant
