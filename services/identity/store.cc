#include "services/identity/store.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {
namespace {

kv::KeyBuilder T(std::string_view tenant_id) { return kv::KeyBuilder(kv::TenantPrefix(tenant_id)); }
std::string CredKey(const std::string& t, const std::string& u) {
  return T(t).Str("cred").Str(u).Build();
}
std::string UserIndexKey(const std::string& u) {
  return kv::KeyBuilder(kv::GlobalPrefix("identity_user")).Str(u).Build();
}
std::string PolicyKey(const std::string& t) { return T(t).Str("policy").Build(); }
std::string OidcKey(const std::string& t) { return T(t).Str("oidc").Build(); }
std::string EventPrefix(const std::string& t) { return T(t).Str("event").Build(); }

absl::Time Deadline() { return absl::Now() + absl::Seconds(10); }

}  // namespace

absl::StatusOr<std::optional<std::pair<std::string, uint64_t>>> IdentityStore::GetRaw(
    const std::string& key, uint64_t at_least, uint64_t* observed) {
  kv::v1::GetRequest req;
  req.set_key(key);
  kv::v1::GetResponse resp;
  bool fresh = false;
  if (at_least > 0) {
    req.set_consistency(kv::v1::STALE);
    auto stale = store_->Get(req, Deadline());
    fresh = stale.ok() && stale->applied_index() >= at_least;
    if (fresh) resp = *std::move(stale);
  }
  if (!fresh) {
    req.set_consistency(kv::v1::LINEARIZABLE);
    ASSIGN_OR_RETURN(resp, store_->Get(req, Deadline()));
  }
  if (observed != nullptr) *observed = resp.applied_index();
  if (!resp.found()) return std::nullopt;
  return std::make_pair(resp.value(), resp.version());
}

absl::StatusOr<bool> IdentityStore::WriteIfVersion(
    const std::string& key, uint64_t version, std::vector<std::pair<std::string, std::string>> puts,
    std::vector<std::string> deletes) {
  kv::v1::WriteRequest req;
  auto* c = req.add_conditions();
  c->set_key(key);
  c->set_kind(kv::v1::Condition::VERSION_EQUALS);
  c->set_version(version);
  for (auto& [k, v] : puts) {
    auto* put = req.add_ops()->mutable_put();
    put->set_key(k);
    put->set_value(v);
  }
  for (auto& k : deletes) req.add_ops()->mutable_delete_()->set_key(k);
  ASSIGN_OR_RETURN(kv::v1::WriteResponse resp, store_->Write(req, Deadline()));
  if (resp.has_rejected()) return absl::InternalError(resp.rejected().reason());
  return resp.has_ok();
}

absl::StatusOr<storage::Credential> IdentityStore::GetCredential(const std::string& tenant_id,
                                                                 const std::string& user_id,
                                                                 uint64_t* observed) {
  ASSIGN_OR_RETURN(auto raw, GetRaw(CredKey(tenant_id, user_id), 0, observed));
  storage::Credential cred;
  if (!raw.has_value() || !cred.ParseFromString(raw->first)) return NotFound("user");
  return cred;
}

absl::StatusOr<std::string> IdentityStore::TenantOfUser(const std::string& user_id) {
  if (user_id.empty()) return NotFound("user");
  ASSIGN_OR_RETURN(auto raw, GetRaw(UserIndexKey(user_id)));
  storage::UserIndex index;
  if (!raw.has_value() || !index.ParseFromString(raw->first)) return NotFound("user");
  return index.tenant_id();
}

absl::Status IdentityStore::Mutate(
    const std::string& tenant_id, const std::string& user_id,
    const std::function<absl::Status(storage::Credential&, bool)>& change) {
  const std::string key = CredKey(tenant_id, user_id);
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto raw, GetRaw(key));
    storage::Credential cred;
    uint64_t version = 0;
    if (raw.has_value()) {
      if (!cred.ParseFromString(raw->first)) return absl::DataLossError("credential record");
      version = raw->second;
    }
    RETURN_IF_ERROR(change(cred, raw.has_value()));
    cred.set_user_id(user_id);
    cred.set_tenant_id(tenant_id);
    std::vector<std::pair<std::string, std::string>> puts = {{key, cred.SerializeAsString()}};
    if (!raw.has_value()) {
      storage::UserIndex index;
      index.set_tenant_id(tenant_id);
      puts.emplace_back(UserIndexKey(user_id), index.SerializeAsString());
    }
    ASSIGN_OR_RETURN(bool ok, WriteIfVersion(key, version, std::move(puts)));
    if (ok) return absl::OkStatus();
  }
  return absl::AbortedError("credential record kept changing; retry");
}

absl::Status IdentityStore::DeleteCredential(const std::string& tenant_id,
                                             const std::string& user_id) {
  kv::v1::WriteRequest req;
  req.add_ops()->mutable_delete_()->set_key(CredKey(tenant_id, user_id));
  req.add_ops()->mutable_delete_()->set_key(UserIndexKey(user_id));
  ASSIGN_OR_RETURN(kv::v1::WriteResponse resp, store_->Write(req, Deadline()));
  (void)resp;
  return absl::OkStatus();
}

absl::StatusOr<std::pair<v1::PasswordPolicy, uint64_t>> IdentityStore::GetPolicy(
    const std::string& tenant_id, uint64_t at_least) {
  ASSIGN_OR_RETURN(auto raw, GetRaw(PolicyKey(tenant_id), at_least));
  v1::PasswordPolicy policy;
  uint64_t version = 0;
  if (raw.has_value()) {
    policy.ParseFromString(raw->first);
    version = raw->second;
  }
  policy.set_tenant_id(tenant_id);
  policy.set_version(static_cast<int64_t>(version));
  return std::make_pair(policy, version);
}

absl::StatusOr<v1::PasswordPolicy> IdentityStore::PutPolicy(v1::PasswordPolicy policy,
                                                            int64_t expected_version) {
  ASSIGN_OR_RETURN(auto current, GetPolicy(policy.tenant_id()));
  if (expected_version != 0 && static_cast<uint64_t>(expected_version) != current.second)
    return absl::AbortedError("policy changed meanwhile (expected_version is stale)");
  policy.set_sso_mandatory(current.first.sso_mandatory());
  *policy.mutable_updated_at() = google::protobuf::util::TimeUtil::GetCurrentTime();
  ASSIGN_OR_RETURN(bool ok,
                   WriteIfVersion(PolicyKey(policy.tenant_id()), current.second,
                                  {{PolicyKey(policy.tenant_id()), policy.SerializeAsString()}}));
  if (!ok) return absl::AbortedError("policy changed meanwhile; re-read and retry");
  return GetPolicy(policy.tenant_id()).value().first;
}

absl::StatusOr<std::optional<v1::OidcConfig>> IdentityStore::GetOidc(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(auto raw, GetRaw(OidcKey(tenant_id)));
  if (!raw.has_value()) return std::nullopt;
  v1::OidcConfig config;
  if (!config.ParseFromString(raw->first)) return absl::DataLossError("oidc record");
  return config;
}

absl::Status IdentityStore::PutOidc(const v1::OidcConfig& config) {
  // The policy mirrors `mandatory` (PasswordPolicy.sso_mandatory): both in
  // one write so they never disagree.
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto policy, GetPolicy(config.tenant_id()));
    policy.first.set_sso_mandatory(config.mandatory());
    ASSIGN_OR_RETURN(
        bool ok, WriteIfVersion(PolicyKey(config.tenant_id()), policy.second,
                                {{PolicyKey(config.tenant_id()), policy.first.SerializeAsString()},
                                 {OidcKey(config.tenant_id()), config.SerializeAsString()}}));
    if (ok) return absl::OkStatus();
  }
  return absl::AbortedError("policy kept changing; retry");
}

absl::StatusOr<bool> IdentityStore::DeleteOidc(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(auto existing, GetOidc(tenant_id));
  if (!existing.has_value()) return false;
  for (int attempt = 0; attempt < 20; ++attempt) {
    ASSIGN_OR_RETURN(auto policy, GetPolicy(tenant_id));
    policy.first.set_sso_mandatory(false);
    ASSIGN_OR_RETURN(bool ok,
                     WriteIfVersion(PolicyKey(tenant_id), policy.second,
                                    {{PolicyKey(tenant_id), policy.first.SerializeAsString()}},
                                    {OidcKey(tenant_id)}));
    if (ok) return true;
  }
  return absl::AbortedError("policy kept changing; retry");
}

absl::Status IdentityStore::AppendEvent(const v1::AuthEvent& event) {
  int64_t micros = google::protobuf::util::TimeUtil::TimestampToMicroseconds(event.at());
  std::string key = T(event.tenant_id()).Str("event").I64(-micros).Str(event.event_id()).Build();
  kv::v1::WriteRequest req;
  auto* put = req.add_ops()->mutable_put();
  put->set_key(key);
  put->set_value(event.SerializeAsString());
  ASSIGN_OR_RETURN(kv::v1::WriteResponse resp, store_->Write(req, Deadline()));
  (void)resp;
  return absl::OkStatus();
}

absl::StatusOr<IdentityStore::EventPage> IdentityStore::ListEvents(
    const std::string& tenant_id, int page_size, const std::string& page_token,
    const std::function<bool(const v1::AuthEvent&)>& keep) {
  if (page_size <= 0) page_size = 50;
  if (page_size > 1000) page_size = 1000;
  EventPage page;
  std::string continuation = page_token;
  // Scan pages of the store until the filtered page is full or the range ends.
  for (int round = 0; round < 50; ++round) {
    kv::v1::ScanRequest req;
    req.set_prefix(EventPrefix(tenant_id));
    req.set_limit(static_cast<uint32_t>(page_size));
    req.set_continuation(continuation);
    req.set_consistency(kv::v1::LINEARIZABLE);
    ASSIGN_OR_RETURN(kv::v1::ScanResponse resp, store_->Scan(req, Deadline()));
    for (const auto& kv : resp.entries()) {
      v1::AuthEvent event;
      if (event.ParseFromString(kv.value()) && keep(event)) page.events.push_back(std::move(event));
    }
    continuation = resp.continuation();
    if (continuation.empty() || static_cast<int>(page.events.size()) >= page_size) break;
  }
  page.next_page_token = continuation;
  return page;
}

}  // namespace mailgrid::identity
