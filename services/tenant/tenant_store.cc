#include "services/tenant/tenant_store.h"

#include <openssl/sha.h>
#include <sodium.h>

#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/base/strings.h"
#include "libs/kv/keys.h"

namespace mailgrid::tenant {

namespace keys {
namespace {
std::string G(std::string_view space) { return kv::GlobalPrefix(space); }
kv::KeyBuilder T(std::string_view tenant_id) { return kv::KeyBuilder(kv::TenantPrefix(tenant_id)); }
}  // namespace

std::string TenantRegistry(std::string_view t) {
  return kv::KeyBuilder(G("tenant")).Str(t).Build();
}
std::string TenantRegistryPrefix() { return G("tenant"); }
std::string TenantUnique(std::string_view name_key, std::string_view kind,
                         std::string_view contact) {
  return kv::KeyBuilder(G("tenant_unique")).Str(name_key).Str(kind).Str(contact).Build();
}
std::string Onboarding(std::string_view token_sha256) {
  return kv::KeyBuilder(G("onboarding")).Str(token_sha256).Build();
}
std::string DocumentIndex(std::string_view d) {
  return kv::KeyBuilder(G("document")).Str(d).Build();
}
std::string DomainIndex(std::string_view d) { return kv::KeyBuilder(G("domain")).Str(d).Build(); }
std::string DomainIndexPrefix() { return G("domain"); }
std::string Plan(std::string_view p) { return kv::KeyBuilder(G("plan")).Str(p).Build(); }
std::string PlanPrefix() { return G("plan"); }
std::string PlanName(std::string_view n) { return kv::KeyBuilder(G("plan_name")).Str(n).Build(); }
std::string Tenant(std::string_view t) { return T(t).Str("tenant").Build(); }
std::string TenantRange(std::string_view t) { return kv::TenantPrefix(t); }
std::string Event(std::string_view t, absl::Time at, std::string_view id) {
  return T(t).Str("event").I64(absl::ToUnixMicros(at)).Str(id).Build();
}
std::string EventPrefix(std::string_view t) { return T(t).Str("event").Build(); }
std::string Audit(std::string_view t, absl::Time at, std::string_view id) {
  return T(t).Str("audit").I64(absl::ToUnixMicros(at)).Str(id).Build();
}
std::string AuditPrefix(std::string_view t) { return T(t).Str("audit").Build(); }
std::string Document(std::string_view t, std::string_view d) {
  return T(t).Str("doc").Str(d).Build();
}
std::string DocumentPrefix(std::string_view t) { return T(t).Str("doc").Build(); }
std::string DocumentChunk(std::string_view t, std::string_view d, uint64_t i) {
  return T(t).Str("docdata").Str(d).U64(i).Build();
}
std::string DocumentChunkPrefix(std::string_view t, std::string_view d) {
  return T(t).Str("docdata").Str(d).Build();
}
std::string PendingUpload(std::string_view t, std::string_view d) {
  return T(t).Str("docpending").Str(d).Build();
}
std::string PendingUploadPrefix(std::string_view t) { return T(t).Str("docpending").Build(); }
std::string Usage(std::string_view t) { return T(t).Str("usage").Build(); }
std::string Domain(std::string_view t, std::string_view d) {
  return T(t).Str("domain").Str(d).Build();
}
std::string DomainPrefix(std::string_view t) { return T(t).Str("domain").Build(); }
}  // namespace keys

Batch& Batch::Put(std::string key, const google::protobuf::Message& value) {
  return PutRaw(std::move(key), value.SerializeAsString());
}

Batch& Batch::PutRaw(std::string key, std::string value) {
  auto* put = request_.add_ops()->mutable_put();
  put->set_key(std::move(key));
  put->set_value(std::move(value));
  return *this;
}

Batch& Batch::Delete(std::string key) {
  request_.add_ops()->mutable_delete_()->set_key(std::move(key));
  return *this;
}

Batch& Batch::DeleteRange(std::string start, std::string end) {
  auto* r = request_.add_ops()->mutable_delete_range();
  r->set_start(std::move(start));
  r->set_end(std::move(end));
  return *this;
}

Batch& Batch::DeletePrefix(std::string_view prefix) {
  kv::KeyRange r = kv::PrefixRange(prefix);
  return DeleteRange(std::move(r.start), std::move(r.end));
}

Batch& Batch::ExpectVersion(std::string key, uint64_t version) {
  auto* c = request_.add_conditions();
  c->set_key(std::move(key));
  c->set_kind(kv::v1::Condition::VERSION_EQUALS);
  c->set_version(version);
  return *this;
}

Batch& Batch::ExpectAbsent(std::string key) {
  auto* c = request_.add_conditions();
  c->set_key(std::move(key));
  c->set_kind(kv::v1::Condition::MUST_NOT_EXIST);
  return *this;
}

TenantStore::TenantStore(store::Store* store, absl::Duration timeout,
                         kv::v1::ReadConsistency consistency)
    : store_(store),
      timeout_(timeout),
      consistency_(consistency),
      client_id_(absl::StrCat("tenantd-", Hex(RandomBytes(12)))) {}

absl::StatusOr<std::optional<std::string>> TenantStore::GetRaw(std::string_view key,
                                                               uint64_t* version) {
  kv::v1::GetRequest req;
  req.set_key(std::string(key));
  req.set_consistency(consistency_);
  ASSIGN_OR_RETURN(kv::v1::GetResponse resp, store_->Get(req, Deadline()));
  if (version != nullptr) *version = resp.found() ? resp.version() : 0;
  if (!resp.found()) return std::nullopt;
  return std::move(*resp.mutable_value());
}

absl::StatusOr<uint64_t> TenantStore::Get(std::string_view key, google::protobuf::Message* out) {
  uint64_t version = 0;
  ASSIGN_OR_RETURN(std::optional<std::string> raw, GetRaw(key, &version));
  if (!raw.has_value()) return 0;
  if (!out->ParseFromString(*raw)) {
    return absl::DataLossError(absl::StrCat("stored ", out->GetTypeName(), " does not parse"));
  }
  return version;
}

absl::StatusOr<TenantStore::Page> TenantStore::Scan(std::string_view prefix, uint32_t limit,
                                                    std::string_view page_token, bool keys_only,
                                                    bool reverse) {
  kv::v1::ScanRequest req;
  req.set_prefix(std::string(prefix));
  req.set_limit(limit);
  req.set_reverse(reverse);
  req.set_keys_only(keys_only);
  req.set_consistency(consistency_);
  if (!page_token.empty()) {
    std::string continuation;
    if (!absl::WebSafeBase64Unescape(ToAbsl(page_token), &continuation)) {
      return absl::InvalidArgumentError("page.page_token: not a token this server issued");
    }
    req.set_continuation(continuation);
  }
  auto resp = store_->Scan(req, Deadline());
  if (absl::IsInvalidArgument(resp.status()) && !page_token.empty()) {
    return absl::InvalidArgumentError("page.page_token: not a token this server issued");
  }
  if (!resp.ok()) return resp.status();
  Page page;
  page.entries.assign(resp->entries().begin(), resp->entries().end());
  if (!resp->continuation().empty())
    page.next_token = absl::WebSafeBase64Escape(resp->continuation());
  return page;
}

absl::StatusOr<std::vector<kv::v1::KeyValue>> TenantStore::ScanAll(std::string_view prefix,
                                                                   bool keys_only) {
  std::vector<kv::v1::KeyValue> out;
  std::string token;
  do {
    ASSIGN_OR_RETURN(Page page, Scan(prefix, 1000, token, keys_only));
    for (auto& e : page.entries) out.push_back(std::move(e));
    token = std::move(page.next_token);
  } while (!token.empty());
  return out;
}

absl::StatusOr<bool> TenantStore::Commit(Batch batch) {
  kv::v1::WriteRequest& req = batch.request();
  req.mutable_request_id()->set_client_id(client_id_);
  req.mutable_request_id()->set_seq(++seq_);
  absl::Status last;
  // The same request id on every attempt: a retry after an unknown outcome
  // returns the recorded outcome instead of applying twice.
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto resp = store_->Write(req, Deadline());
    if (resp.ok()) {
      if (resp->has_ok()) return true;
      if (resp->has_condition_failed()) return false;
      return absl::InternalError(
          absl::StrCat("store rejected a write: ", resp->rejected().reason()));
    }
    last = resp.status();
    if (!absl::IsUnavailable(last) && !absl::IsDeadlineExceeded(last)) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
  }
  return last;
}

absl::Status TenantStore::Transact(const std::function<absl::StatusOr<Batch>()>& attempt,
                                   int max_attempts) {
  for (int i = 0; i < max_attempts; ++i) {
    ASSIGN_OR_RETURN(Batch batch, attempt());
    if (batch.empty() && batch.request().conditions_size() == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(bool committed, Commit(std::move(batch)));
    if (committed) return absl::OkStatus();
  }
  return absl::AbortedError("too many concurrent changes to the same object; retry");
}

std::string RandomBytes(size_t n) {
  static const int init = sodium_init();
  (void)init;
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

std::string NewId(std::string_view prefix) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string bytes = RandomBytes(20);
  std::string out(prefix);
  for (char b : bytes) out.push_back(kAlphabet[static_cast<unsigned char>(b) % 32]);
  return out;
}

std::string Sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

std::string Hex(std::string_view bytes) { return absl::BytesToHexString(ToAbsl(bytes)); }

google::protobuf::Timestamp ToProto(absl::Time t) {
  google::protobuf::Timestamp ts;
  const int64_t micros = absl::ToUnixMicros(t);
  ts.set_seconds(micros / 1000000);
  ts.set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
  if (ts.nanos() < 0) {
    ts.set_seconds(ts.seconds() - 1);
    ts.set_nanos(ts.nanos() + 1000000000);
  }
  return ts;
}

absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

}  // namespace mailgrid::tenant
