// tenantd's persistence, coded against store::Store (kv.proto semantics) so
// the same code runs on the replicated store and on LocalStore in tests.
//
// KEY LAYOUT (libs/kv/keys.h tuple encoding; T = TenantPrefix(tenant_id),
// G(x) = GlobalPrefix(x); values are serialized protos of tenant_storage.proto
// or of the published API):
//
//   G("tenant")   / tenant_id                  -> ""  registry of every tenant (ListTenants)
//   G("tenant_unique") / name_key / kind / contact -> tenant_id
//                                               kind "email" or "phone": one key each, so the
//                                               same company with the same email OR phone is
//                                               a duplicate (RegisterTenant ALREADY_EXISTS)
//   G("onboarding") / sha256(token)            -> tenant_id  (onboarding token lookup)
//   G("document") / document_id                -> tenant_id  (DownloadDocument by id)
//   G("domain")   / a-label                    -> tenant_id  (one domain, one tenant)
//   G("plan")     / plan_id                    -> tenant.v1.Plan
//   G("plan_name") / NameKey(name)             -> plan_id
//   T / "tenant"                               -> TenantRecord
//   T / "event" / i64 micros / event_id        -> tenant.v1.TenantEvent (oldest first)
//   T / "audit" / i64 micros / entry_id        -> tenant.v1.AdminAuditEntry (shared with the
//                                               directory, issue 5)
//   T / "doc" / document_id                    -> DocumentRecord
//   T / "docdata" / document_id / u64 index    -> raw bytes, each chunk <= 512 KiB
//   T / "docpending" / document_id             -> PendingUpload (an upload in progress)
//   T / "usage"                                -> tenant.v1.TenantUsage (the directory keeps
//                                               mailboxes/storage/seats current; domains here)
//   T / "domain" / a-label                     -> DomainRecord
//
// Every tenant-scoped key starts with T, so a tenant's data is one range:
// the purge after the grace period is one DeleteRange.
//
// Concurrency: every change is read -> decide -> Write with a VERSION_EQUALS
// (or MUST_NOT_EXIST) condition on each key it read; a failed condition
// means someone else changed it first, and Transact() re-reads and decides
// again. Writes carry a request id (client id random per process), and a
// write that ends UNAVAILABLE/DEADLINE_EXCEEDED is retried with the same id,
// so a retry never applies twice.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "libs/store/store.h"

namespace mailgrid::tenant {

// Keys (see the layout above).
namespace keys {
std::string TenantRegistry(std::string_view tenant_id);
std::string TenantRegistryPrefix();
std::string TenantUnique(std::string_view name_key, std::string_view kind,
                         std::string_view contact);
std::string Onboarding(std::string_view token_sha256);
std::string DocumentIndex(std::string_view document_id);
std::string DomainIndex(std::string_view domain);
std::string DomainIndexPrefix();
std::string Plan(std::string_view plan_id);
std::string PlanPrefix();
std::string PlanName(std::string_view name_key);
std::string Tenant(std::string_view tenant_id);
std::string TenantRange(std::string_view tenant_id);  // T: everything of the tenant
std::string Event(std::string_view tenant_id, absl::Time at, std::string_view event_id);
std::string EventPrefix(std::string_view tenant_id);
std::string Audit(std::string_view tenant_id, absl::Time at, std::string_view entry_id);
std::string AuditPrefix(std::string_view tenant_id);
std::string Document(std::string_view tenant_id, std::string_view document_id);
std::string DocumentPrefix(std::string_view tenant_id);
std::string DocumentChunk(std::string_view tenant_id, std::string_view document_id, uint64_t index);
std::string DocumentChunkPrefix(std::string_view tenant_id, std::string_view document_id);
std::string PendingUpload(std::string_view tenant_id, std::string_view document_id);
std::string PendingUploadPrefix(std::string_view tenant_id);
std::string Usage(std::string_view tenant_id);
std::string Domain(std::string_view tenant_id, std::string_view domain);
std::string DomainPrefix(std::string_view tenant_id);
}  // namespace keys

// A value read with its version (0 = absent).
template <typename M>
struct Versioned {
  M value;
  uint64_t version = 0;
  bool found() const { return version != 0; }
};

// One atomic write: conditions first, then ops (kv.proto WriteRequest).
class Batch {
 public:
  Batch& Put(std::string key, const google::protobuf::Message& value);
  Batch& PutRaw(std::string key, std::string value);
  Batch& Delete(std::string key);
  Batch& DeleteRange(std::string start, std::string end);
  Batch& DeletePrefix(std::string_view prefix);
  // The key must still have `version` (0: must still be absent).
  Batch& ExpectVersion(std::string key, uint64_t version);
  Batch& ExpectAbsent(std::string key);
  bool empty() const { return request_.ops_size() == 0; }
  size_t bytes() const { return request_.ByteSizeLong(); }
  kv::v1::WriteRequest& request() { return request_; }

 private:
  kv::v1::WriteRequest request_;
};

class TenantStore {
 public:
  explicit TenantStore(store::Store* store, absl::Duration timeout = absl::Seconds(10),
                       kv::v1::ReadConsistency consistency = kv::v1::LINEARIZABLE);

  // Reads `key` into `out`; version 0 when absent. DATA_LOSS if unparsable.
  absl::StatusOr<uint64_t> Get(std::string_view key, google::protobuf::Message* out);
  absl::StatusOr<std::optional<std::string>> GetRaw(std::string_view key,
                                                    uint64_t* version = nullptr);

  template <typename M>
  absl::StatusOr<Versioned<M>> Read(std::string_view key) {
    Versioned<M> v;
    auto version = Get(key, &v.value);
    if (!version.ok()) return version.status();
    v.version = *version;
    return v;
  }

  struct Page {
    std::vector<kv::v1::KeyValue> entries;
    std::string next_token;  // opaque page token; empty at the end
  };
  // One page of keys under `prefix` (page_token from a previous Page).
  absl::StatusOr<Page> Scan(std::string_view prefix, uint32_t limit, std::string_view page_token,
                            bool keys_only = false, bool reverse = false);
  // Every entry under `prefix` (for bounded sets: a tenant's domains).
  absl::StatusOr<std::vector<kv::v1::KeyValue>> ScanAll(std::string_view prefix,
                                                        bool keys_only = false);

  // Applies `batch`. Returns true when committed, false when a condition
  // failed (a concurrent change). Store errors pass through.
  absl::StatusOr<bool> Commit(Batch batch);

  // Runs `attempt` (read, decide, return a Batch) until its batch commits;
  // after `max_attempts` lost races, ABORTED. An error from `attempt` is
  // returned as is (nothing written).
  absl::Status Transact(const std::function<absl::StatusOr<Batch>()>& attempt,
                        int max_attempts = 16);

  store::Store* raw() { return store_; }

 private:
  absl::Time Deadline() const { return absl::Now() + timeout_; }

  store::Store* store_;
  absl::Duration timeout_;
  kv::v1::ReadConsistency consistency_;
  std::string client_id_;
  std::atomic<uint64_t> seq_{0};
};

// Random URL-safe ids: prefix + 20 characters of base32 (100 bits).
std::string NewId(std::string_view prefix);
// Random bytes from libsodium.
std::string RandomBytes(size_t n);
std::string Sha256(std::string_view data);
std::string Hex(std::string_view bytes);

google::protobuf::Timestamp ToProto(absl::Time t);
absl::Time FromProto(const google::protobuf::Timestamp& ts);

}  // namespace mailgrid::tenant
