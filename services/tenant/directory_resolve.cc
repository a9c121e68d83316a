// DirectoryService: Resolve (relayd, every RCPT), CanSendAs, and the group
// expansion both use.
//
// The uncached path is a handful of point reads: the domain index, the
// tenant's stamp and record, the domain and its mail settings, the address
// index, then the target (user record; or for a group its record and its
// members; departments are prefix scans of T/deptmember whose values
// already carry each user's mailbox, shard and state). Answers are cached
// (resolve_cache.h); NOT_FOUND answers too, so a dictionary attack costs
// one map lookup per RCPT after the first.
#include <algorithm>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

namespace {

constexpr int kDefaultMaxRecipients = 10000;
// What one cached expansion may hold; a request's max_recipients above it is clamped.
constexpr size_t kHardMaxRecipients = 100000;

absl::Status Reason(absl::StatusCode code, std::string_view reason, std::string_view message) {
  return WithLimits(code, reason, message, {});
}

absl::Status NotHosted(const std::string& domain) {
  return Reason(absl::StatusCode::kNotFound, "DOMAIN_NOT_HOSTED",
                absl::StrCat("domain ", domain, " is not hosted here"));
}

}  // namespace

struct DirectoryServiceImpl::Expansion {
  std::vector<v1::Recipient> recipients;
  absl::flat_hash_set<std::string> mailboxes;  // de-duplication by mailbox
  absl::flat_hash_set<std::string> groups;     // visited: loops end here
  absl::flat_hash_set<std::string> depts;
  size_t max = kHardMaxRecipients;
  // The tenant's whole department tree (parent -> children), read with one
  // scan the first time a subtree is expanded: a subtree of a thousand
  // departments was a thousand child scans (most of a big group's time).
  bool tree_loaded = false;
  absl::flat_hash_map<std::string, std::vector<std::string>> children;
  // When current: departments expand from memory (directory_dept_model.cc).
  std::shared_ptr<const DeptModel> model;

  absl::Status Add(v1::Recipient r) {
    if (r.mailbox_id().empty()) return absl::OkStatus();  // a DELETED user receives nothing
    if (!mailboxes.insert(r.mailbox_id()).second) return absl::OkStatus();
    recipients.push_back(std::move(r));
    if (recipients.size() > max) {
      return Reason(absl::StatusCode::kResourceExhausted, "EXPANSION_TOO_LARGE",
                    absl::StrCat("the address expands to more than ", max, " recipients"));
    }
    return absl::OkStatus();
  }
};

absl::Status DirectoryServiceImpl::AddUserRecipient(TenantStore& s, const std::string& t,
                                                    const std::string& user_id, Expansion& x) {
  ASSIGN_OR_RETURN(auto rec, s.Read<storage::UserRecord>(dkeys::User(t, user_id)));
  if (!rec.found()) return absl::OkStatus();  // purged meanwhile
  return x.Add(RecipientOf(rec.value));
}

absl::Status DirectoryServiceImpl::AddSharedRecipient(TenantStore& s, const std::string& t,
                                                      const std::string& id, Expansion& x) {
  ASSIGN_OR_RETURN(auto rec, s.Read<storage::SharedMailboxRecord>(dkeys::Shared(t, id)));
  if (!rec.found() || rec.value.mailbox().has_purge_after()) return absl::OkStatus();
  const auto& m = rec.value.mailbox();
  v1::Recipient r;
  r.set_mailbox_id(m.mailbox_id());
  r.set_address(m.address());
  r.set_shard(m.shard());
  r.set_kind(common::v1::MAILBOX_KIND_SHARED);
  r.set_tenant_id(t);
  return x.Add(std::move(r));
}

absl::Status DirectoryServiceImpl::ExpandDept(TenantStore& s, const std::string& t,
                                              const std::string& dept_id, bool direct_only,
                                              Expansion& x) {
  if (!x.depts.insert(dept_id).second) return absl::OkStatus();
  const std::vector<std::string>* children = nullptr;
  if (x.model != nullptr) {
    if (auto m = x.model->members.find(dept_id); m != x.model->members.end()) {
      for (const std::string& packed : *m->second) {
        v1::Recipient r;
        if (!r.ParseFromString(packed)) return absl::DataLossError("dept member does not parse");
        RETURN_IF_ERROR(x.Add(std::move(r)));
      }
    }
    if (direct_only) return absl::OkStatus();
    auto c = x.model->children.find(dept_id);
    if (c != x.model->children.end()) children = c->second.get();
  } else {
    ASSIGN_OR_RETURN(auto members, s.ScanAll(dkeys::DeptMemberPrefix(t, dept_id)));
    for (const auto& e : members) {
      v1::Recipient r;
      if (!r.ParseFromString(e.value())) return absl::DataLossError("dept member does not parse");
      RETURN_IF_ERROR(x.Add(std::move(r)));
    }
    if (direct_only) return absl::OkStatus();
    if (!x.tree_loaded) {
      // Keys: T/deptchild/<parent>/<name key> -> child id.
      const std::string prefix = dkeys::DeptChildAllPrefix(t);
      ASSIGN_OR_RETURN(auto all, s.ScanAll(prefix));
      for (auto& kv : all) {
        x.children[ComponentAfter(kv.key(), prefix)].push_back(std::move(*kv.mutable_value()));
      }
      // By id, as the model keeps them: the same answer either way.
      for (auto& [parent, ids] : x.children) std::sort(ids.begin(), ids.end());
      x.tree_loaded = true;
    }
    auto c = x.children.find(dept_id);
    if (c != x.children.end()) children = &c->second;
  }
  if (children == nullptr) return absl::OkStatus();
  for (const auto& c : *children) RETURN_IF_ERROR(ExpandDept(s, t, c, false, x));
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::ExpandMember(TenantStore& s, const std::string& t,
                                                const v1::GroupMember& m, Expansion& x) {
  switch (m.kind()) {
    case v1::MEMBER_KIND_USER:
      return AddUserRecipient(s, t, m.id(), x);
    case v1::MEMBER_KIND_SHARED_MAILBOX:
      return AddSharedRecipient(s, t, m.id(), x);
    case v1::MEMBER_KIND_GROUP:
      return ExpandGroup(s, t, m.id(), x);
    case v1::MEMBER_KIND_DEPARTMENT:
      return ExpandDept(s, t, m.id(), m.direct_only(), x);
    default:
      return absl::OkStatus();
  }
}

absl::Status DirectoryServiceImpl::ExpandGroup(TenantStore& s, const std::string& t,
                                               const std::string& group_id, Expansion& x) {
  if (!x.groups.insert(group_id).second) return absl::OkStatus();  // a loop: already expanded
  ASSIGN_OR_RETURN(auto rec, s.Read<storage::GroupRecord>(dkeys::Group(t, group_id)));
  if (!rec.found()) return absl::OkStatus();
  for (const auto& m : rec.value.members()) RETURN_IF_ERROR(ExpandMember(s, t, m, x));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::Recipient>> DirectoryServiceImpl::ExpandGroupRecipients(
    const std::string& t, const std::string& group_id, int max) {
  Expansion x;
  if (max > 0) x.max = static_cast<size_t>(max);
  RETURN_IF_ERROR(ExpandGroup(*store_, t, group_id, x));
  return std::move(x.recipients);
}

absl::StatusOr<std::vector<v1::Recipient>> DirectoryServiceImpl::AdminRecipients(
    TenantStore& s, const std::string& t) {
  // A scan of the tenant's users: only postmaster@ misses get here, and the
  // answer is kept in the index like any other.
  ASSIGN_OR_RETURN(auto users, s.ScanAll(dkeys::UserPrefix(t)));
  Expansion x;
  for (const auto& kv : users) {
    storage::UserRecord rec;
    if (!rec.ParseFromString(kv.value())) return absl::DataLossError("user record does not parse");
    const auto& u = rec.user();
    if (u.state() != v1::USER_STATE_ACTIVE) continue;
    if (std::find(u.roles().begin(), u.roles().end(), common::v1::ROLE_TENANT_ADMIN) ==
        u.roles().end())
      continue;
    RETURN_IF_ERROR(x.Add(RecipientOf(rec)));
  }
  return std::move(x.recipients);
}

absl::StatusOr<std::shared_ptr<const ResolveCache::Entry>> DirectoryServiceImpl::ResolveUncached(
    TenantStore& s, const std::string& input, absl::Time as_of) {
  auto e = std::make_shared<ResolveCache::Entry>();
  e->computed_at = as_of;
  ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(input, "address"));
  auto answer = [&](absl::Status s) {
    e->status = std::move(s);
    return std::shared_ptr<const ResolveCache::Entry>(e);
  };
  ASSIGN_OR_RETURN(auto owner, s.GetRaw(keys::DomainIndex(a.domain)));
  if (!owner.has_value()) return answer(NotHosted(a.domain));
  const std::string tid = *owner;
  e->tenant_id = tid;
  // The stamp first: a change after this read makes the answer stale.
  ASSIGN_OR_RETURN(auto dirgen, s.GetRaw(dkeys::DirGen(tid)));
  ASSIGN_OR_RETURN(auto tenant, s.Read<storage::TenantRecord>(keys::Tenant(tid)));
  e->stamp.dirgen = dirgen.value_or("");
  e->stamp.tenant_version = tenant.version;
  if (&s == rs_) cache_.SetStamp(tid, e->stamp, as_of);
  const auto state = tenant.value.tenant().state();
  if (state == v1::TENANT_STATE_SUSPENDED) {
    return answer(Reason(absl::StatusCode::kFailedPrecondition, "TENANT_SUSPENDED",
                         "the tenant of this domain is suspended (try later)"));
  }
  if (state != v1::TENANT_STATE_ACTIVE) return answer(NotHosted(a.domain));

  std::string domain = a.domain;
  ASSIGN_OR_RETURN(auto drec, s.Read<storage::DomainRecord>(keys::Domain(tid, domain)));
  if (!drec.found() || drec.value.domain().state() != v1::DOMAIN_STATE_VERIFIED)
    return answer(NotHosted(a.domain));
  ASSIGN_OR_RETURN(auto settings,
                   s.Read<v1::DomainMailSettings>(dkeys::MailSettings(tid, domain)));
  if (!settings.value.alias_of().empty()) {
    domain = settings.value.alias_of();
    ASSIGN_OR_RETURN(auto target, s.Read<storage::DomainRecord>(keys::Domain(tid, domain)));
    if (!target.found() || target.value.domain().state() != v1::DOMAIN_STATE_VERIFIED)
      return answer(NotHosted(a.domain));
    ASSIGN_OR_RETURN(settings,
                     s.Read<v1::DomainMailSettings>(dkeys::MailSettings(tid, domain)));
  }

  // The local part: as is, then without its +detail, then the catch-all.
  std::string local = a.local;
  std::string detail;
  ASSIGN_OR_RETURN(auto rec, s.Read<AddressRecord>(dkeys::Address(AddressKey(local, domain))));
  const std::string sep =
      settings.value.plus_separator().empty() ? "+" : settings.value.plus_separator();
  if (!rec.found() && !settings.value.disable_plus_addressing()) {
    size_t pos = local.find(sep);
    if (pos != std::string::npos && pos > 0) {
      detail = local.substr(pos + sep.size());
      local = local.substr(0, pos);
      ASSIGN_OR_RETURN(rec,
                       s.Read<AddressRecord>(dkeys::Address(AddressKey(local, domain))));
    }
  }
  if (!rec.found() && absl::EqualsIgnoreCase(local, "postmaster")) {
    // RFC 5321 4.5.1: postmaster@ every hosted domain must be deliverable.
    // Without an address of that name, it reaches the tenant's admins.
    e->response.set_tenant_id(tid);
    e->response.set_canonical_address(absl::StrCat(local, "@", domain));
    e->response.set_detail(detail);
    e->response.set_kind(v1::ADDRESS_KIND_ALIAS);
    ASSIGN_OR_RETURN(std::vector<v1::Recipient> admins, AdminRecipients(s, tid));
    if (admins.empty()) {
      return answer(Reason(absl::StatusCode::kNotFound, "ADDRESS_NOT_FOUND",
                           absl::StrCat("no mailbox here for ", a.address)));
    }
    for (auto& r : admins) *e->response.add_recipients() = std::move(r);
    return answer(absl::OkStatus());
  }
  v1::AddressKind kind = v1::ADDRESS_KIND_UNSPECIFIED;
  e->response.set_canonical_address(absl::StrCat(local, "@", domain));
  if (rec.found()) {
    e->response.set_canonical_address(rec.value.address());
  } else if (!settings.value.catch_all_address().empty()) {
    ASSIGN_OR_RETURN(ParsedAddress c, ParseAddress(settings.value.catch_all_address(), "catch_all"));
    ASSIGN_OR_RETURN(rec, s.Read<AddressRecord>(dkeys::Address(c.key)));
    kind = v1::ADDRESS_KIND_CATCH_ALL;
    detail.clear();
    local = a.local;
    e->response.set_canonical_address(absl::StrCat(a.local, "@", domain));
  }
  if (!rec.found() || rec.value.tenant_id() != tid) {
    return answer(Reason(absl::StatusCode::kNotFound, "ADDRESS_NOT_FOUND",
                         absl::StrCat("no mailbox here for ", a.address)));
  }
  e->response.set_tenant_id(tid);
  e->response.set_detail(detail);
  Expansion x;
  const AddressRecord& r = rec.value;
  auto deleted = [&]() {
    return Reason(absl::StatusCode::kNotFound, "ADDRESS_DELETED",
                  absl::StrCat("the mailbox of ", a.address, " was deleted"));
  };
  bool to_user = r.kind() == AddressRecord::KIND_USER ||
                 (r.kind() == AddressRecord::KIND_ALIAS &&
                  r.alias_target_kind() == v1::ALIAS_TARGET_KIND_USER);
  if (to_user) {
    ASSIGN_OR_RETURN(auto user, s.Read<storage::UserRecord>(dkeys::User(tid, r.target_id())));
    if (!user.found() || user.value.user().state() == v1::USER_STATE_DELETED)
      return answer(deleted());
    RETURN_IF_ERROR(x.Add(RecipientOf(user.value)));
    if (kind == v1::ADDRESS_KIND_UNSPECIFIED)
      kind = r.kind() == AddressRecord::KIND_USER ? v1::ADDRESS_KIND_USER : v1::ADDRESS_KIND_ALIAS;
  } else if (r.kind() == AddressRecord::KIND_SHARED || r.kind() == AddressRecord::KIND_ALIAS) {
    RETURN_IF_ERROR(AddSharedRecipient(s, tid, r.target_id(), x));
    if (x.recipients.empty()) return answer(deleted());
    if (kind == v1::ADDRESS_KIND_UNSPECIFIED)
      kind = r.kind() == AddressRecord::KIND_SHARED ? v1::ADDRESS_KIND_SHARED_MAILBOX
                                                    : v1::ADDRESS_KIND_ALIAS;
  } else if (r.kind() == AddressRecord::KIND_GROUP) {
    ASSIGN_OR_RETURN(auto group, ReadGroup(s, tid, r.target_id()));
    x.model = CurrentDeptModel(s, tid);
    absl::Status st = ExpandGroup(s, tid, r.target_id(), x);
    if (!st.ok()) {
      if (absl::IsResourceExhausted(st)) return answer(st);
      return st;
    }
    const auto& g = group.value.group();
    e->policy = g.posting_policy() == v1::POSTING_POLICY_UNSPECIFIED ? v1::POSTING_POLICY_INTERNAL
                                                                     : g.posting_policy();
    e->response.set_group_id(g.group_id());
    *e->response.mutable_moderator_user_ids() = g.moderator_user_ids();
    if (kind == v1::ADDRESS_KIND_UNSPECIFIED) kind = v1::ADDRESS_KIND_GROUP;
    if (x.recipients.empty()) {
      return answer(Reason(absl::StatusCode::kNotFound, "ADDRESS_NOT_FOUND",
                           absl::StrCat("group ", a.address, " has no members to deliver to")));
    }
  }
  e->response.set_kind(kind);
  for (auto& rcpt : x.recipients) *e->response.add_recipients() = std::move(rcpt);
  return answer(absl::OkStatus());
}

absl::StatusOr<std::shared_ptr<const ResolveCache::Entry>> DirectoryServiceImpl::LookupEntry(
    const std::string& address, const std::string& key, bool index_only) {
  const absl::Time now = absl::Now();
  NoteResolve(now);
  const absl::Time fresh = freshness_->fresh_as_of();
  if (now - fresh > cache_.max_staleness()) {
    if (index_only) return nullptr;
    // This replica cannot show it is current (cut off, lagging, or the
    // index thread not running): answer through the leader, unindexed.
    return ResolveUncached(*store_, address, now);
  }
  ResolveCache::Lookup hit = cache_.Find(key, now);
  if (!hit.validate_tenant.empty()) {
    if (index_only) return nullptr;
    // One read of the tenant's stamp decides for every answer of it.
    ASSIGN_OR_RETURN(ResolveCache::Stamp stamp, ReadStamp(*rs_, hit.validate_tenant));
    cache_.SetStamp(hit.validate_tenant, stamp, fresh);
    if (cache_.Awaiting(hit.validate_tenant)) {
      // A change made through this replica has committed (or is being
      // committed) but is not applied here yet: the leader has it.
      return ResolveUncached(*store_, address, now);
    }
    hit = cache_.Find(key, now);
  }
  if (hit.entry != nullptr || index_only) return hit.entry;
  ASSIGN_OR_RETURN(auto entry, ResolveUncached(*rs_, address, fresh));
  if (!entry->tenant_id.empty() && cache_.Awaiting(entry->tenant_id)) {
    return ResolveUncached(*store_, address, now);  // as above; not indexed
  }
  cache_.Insert(key, entry);
  return entry;
}

absl::StatusOr<v1::ResolveResponse> DirectoryServiceImpl::ResolveAddress(
    const v1::ResolveRequest& req) {
  ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(req.address(), "address"));
  ASSIGN_OR_RETURN(std::shared_ptr<const ResolveCache::Entry> entry,
                   LookupEntry(req.address(), a.key));
  return AnswerFrom(*entry, req);
}

absl::StatusOr<v1::ResolveResponse> DirectoryServiceImpl::AnswerFrom(
    const ResolveCache::Entry& entry, const v1::ResolveRequest& req) {
  if (!entry.status.ok()) return entry.status;
  if (!entry.packed.empty()) {
    // A warmed user's primary address: one recipient, always ALLOWED.
    v1::ResolveResponse out;
    if (!out.ParseFromString(entry.packed)) return absl::DataLossError("index entry does not parse");
    return out;
  }
  const int max = req.max_recipients() > 0 ? req.max_recipients() : kDefaultMaxRecipients;
  if (entry.response.recipients_size() > max) {
    return Reason(absl::StatusCode::kResourceExhausted, "EXPANSION_TOO_LARGE",
                  absl::StrCat("the address expands to ", entry.response.recipients_size(),
                               " recipients, more than ", max));
  }
  v1::ResolveResponse out = entry.response;
  // The posting decision depends on the sender, so it is made per call.
  const auto& s = req.sender();
  const bool internal = s.authenticated() && s.tenant_id() == out.tenant_id();
  out.set_posting_decision(v1::POSTING_DECISION_ALLOWED);
  if (out.kind() == v1::ADDRESS_KIND_GROUP || !out.group_id().empty()) {
    switch (entry.policy) {
      case v1::POSTING_POLICY_ANYONE:
        break;
      case v1::POSTING_POLICY_MEMBERS: {
        bool member = false;
        for (const auto& r : out.recipients()) member |= internal && r.user_id() == s.user_id();
        if (!member) {
          out.set_posting_decision(v1::POSTING_DECISION_DENIED);
          out.set_posting_detail("members only");
        }
        break;
      }
      case v1::POSTING_POLICY_MODERATED: {
        bool moderator = false;
        for (const auto& m : out.moderator_user_ids()) moderator |= internal && m == s.user_id();
        if (!moderator) out.set_posting_decision(v1::POSTING_DECISION_MODERATED);
        break;
      }
      default:  // INTERNAL
        if (!internal) {
          out.set_posting_decision(v1::POSTING_DECISION_DENIED);
          out.set_posting_detail("internal senders only");
        }
    }
  }
  if (out.posting_decision() != v1::POSTING_DECISION_MODERATED) {
    out.clear_moderator_user_ids();
  }
  return out;
}

grpc::ServerUnaryReactor* DirectoryServiceImpl::Resolve(grpc::CallbackServerContext* ctx,
                                                        const v1::ResolveRequest* req,
                                                        v1::ResolveResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // An index hit is answered inline on gRPC's callback thread (a map
  // lookup); anything that reads the store goes to the Resolve workers.
  if (std::optional<grpc::Status> done = ResolveFromIndex(*ctx, *req, resp)) {
    reactor->Finish(*done);
    return reactor;
  }
  RunResolveWork([this, ctx, req, resp, reactor] {
    reactor->Finish(ResolveWithStore(ctx, *req, resp));
  });
  return reactor;
}

bool DirectoryServiceImpl::IndexCaller(const grpc::CallbackServerContext& ctx) const {
  const auto& md = ctx.client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) return false;
  // Onboarding tokens are checked against the store: the workers do that.
  if (absl::StrContains(absl::string_view(it->second.data(), it->second.size()), kOnboardingPrefix))
    return false;
  absl::StatusOr<Principal> p = auth_->Authenticate(ctx);
  // Only relayd's case here; refusals and admins take the full path.
  return p.ok() && p->HasRole(auth::kRoleService) && p->tenant_id.empty();
}

std::optional<absl::StatusOr<v1::ResolveResponse>> DirectoryServiceImpl::IndexAnswer(
    const v1::ResolveRequest& req) {
  std::string key;
  if (!AsciiAddressKey(req.address(), &key)) {
    absl::StatusOr<ParsedAddress> a = ParseAddress(req.address(), "address");
    if (!a.ok()) return std::nullopt;
    key = std::move(a->key);
  }
  absl::StatusOr<std::shared_ptr<const ResolveCache::Entry>> entry =
      LookupEntry(req.address(), key, /*index_only=*/true);
  if (!entry.ok() || *entry == nullptr) return std::nullopt;
  return AnswerFrom(**entry, req);  // NOT_FOUND and the like are indexed too
}

std::optional<grpc::Status> DirectoryServiceImpl::ResolveFromIndex(
    const grpc::CallbackServerContext& ctx, const v1::ResolveRequest& req,
    v1::ResolveResponse* resp) {
  if (!IndexCaller(ctx)) return std::nullopt;
  std::optional<absl::StatusOr<v1::ResolveResponse>> out = IndexAnswer(req);
  if (!out.has_value()) return std::nullopt;
  if (!out->ok()) return ToGrpcStatus(out->status());
  *resp = std::move(**out);
  return grpc::Status::OK;
}

absl::Status DirectoryServiceImpl::MayResolve(const Principal& p, bool* service) const {
  if (p.anonymous()) return Unauthenticated();
  *service = p.HasRole(auth::kRoleService) && p.tenant_id.empty();
  if (!*service && !(p.HasRole(auth::kRoleTenantAdmin) && !p.tenant_id.empty()))
    return PermissionDenied("Resolve is for relayd (service) and tenant admins");
  return absl::OkStatus();
}

absl::StatusOr<v1::ResolveResponse> DirectoryServiceImpl::ResolveFor(
    const Principal& p, bool service, const v1::ResolveRequest& req) {
  auto out = ResolveAddress(req);
  if (service) return out;
  // An admin sees only its own tenant's answers; anything else is "not hosted".
  if (!out.ok()) {
    auto parsed = ParseAddress(req.address(), "address");
    if (!parsed.ok()) return parsed.status();
    ASSIGN_OR_RETURN(auto o, store_->GetRaw(keys::DomainIndex(parsed->domain)));
    if (o.value_or("") != p.tenant_id) return NotHosted(parsed->domain);
    return out.status();
  }
  if (out->tenant_id() != p.tenant_id)
    return NotHosted(req.address().substr(req.address().rfind('@') + 1));
  return out;
}

grpc::Status DirectoryServiceImpl::ResolveWithStore(grpc::CallbackServerContext* ctx,
                                                    const v1::ResolveRequest& req,
                                                    v1::ResolveResponse* resp) {
  return Serve(*auth_, ctx, "Resolve", [&](const Principal& p) -> absl::Status {
    bool service = false;
    RETURN_IF_ERROR(MayResolve(p, &service));
    ASSIGN_OR_RETURN(*resp, ResolveFor(p, service, req));
    return absl::OkStatus();
  });
}

namespace {
constexpr int kMaxResolveMany = 1000;
}  // namespace

void SetResolveResult(absl::StatusOr<v1::ResolveResponse> out, v1::ResolveResult* r) {
  if (out.ok()) {
    *r->mutable_response() = std::move(*out);
    return;
  }
  common::v1::RpcStatus st = rpc::DetailsOf(out.status()).value_or(common::v1::RpcStatus());
  st.set_code(static_cast<int32_t>(out.status().code()));  // absl codes are gRPC's
  st.set_message(std::string(out.status().message()));
  *r->mutable_status() = std::move(st);
}

grpc::ServerUnaryReactor* DirectoryServiceImpl::ResolveMany(grpc::CallbackServerContext* ctx,
                                                            const v1::ResolveManyRequest* req,
                                                            v1::ResolveManyResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // Every answer in the index: inline, as Resolve. Else the whole call goes
  // to the workers (answers already found are simply looked up again).
  if (req->requests_size() <= kMaxResolveMany && IndexCaller(*ctx)) {
    bool all = true;
    for (const auto& r : req->requests()) {
      std::optional<absl::StatusOr<v1::ResolveResponse>> out = IndexAnswer(r);
      if (!out.has_value()) {
        all = false;
        break;
      }
      SetResolveResult(std::move(*out), resp->add_results());
    }
    if (all) {
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    resp->Clear();
  }
  RunResolveWork([this, ctx, req, resp, reactor] {
    reactor->Finish(ResolveManyWithStore(ctx, *req, resp));
  });
  return reactor;
}

grpc::Status DirectoryServiceImpl::ResolveManyWithStore(grpc::CallbackServerContext* ctx,
                                                        const v1::ResolveManyRequest& req,
                                                        v1::ResolveManyResponse* resp) {
  return Serve(*auth_, ctx, "ResolveMany", [&](const Principal& p) -> absl::Status {
    bool service = false;
    RETURN_IF_ERROR(MayResolve(p, &service));
    if (req.requests_size() > kMaxResolveMany) {
      return InvalidField("requests", "TOO_MANY",
                          absl::StrCat(req.requests_size(), " requests; at most ",
                                       kMaxResolveMany, " per call"));
    }
    resp->Clear();
    for (const auto& r : req.requests()) SetResolveResult(ResolveFor(p, service, r), resp->add_results());
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::CanSendAs(Ctx* ctx, const v1::CanSendAsRequest* req,
                                             v1::CanSendAsResponse* resp) {
  return Serve(*auth_, ctx, "CanSendAs", [&](const Principal& p) -> absl::Status {
    const std::string& uid = req->user_id();
    const bool self = !p.anonymous() && p.subject == uid && !p.HasRole(auth::kRoleService);
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "user", uid,
                                                      {.any_authenticated = self, .service = true}));
    if (self && p.tenant_id != tid) return NotFound("user", uid);
    ASSIGN_OR_RETURN(auto user, ReadUser(*store_, tid, uid));
    if (user.value.user().state() == v1::USER_STATE_DELETED) return NotFound("user", uid);
    resp->set_allowed(false);
    auto a = ParseAddress(req->address(), "address");
    if (!a.ok()) return absl::OkStatus();  // not an address: simply "no"
    std::string key = a->key;
    ASSIGN_OR_RETURN(auto settings,
                     store_->Read<v1::DomainMailSettings>(dkeys::MailSettings(tid, a->domain)));
    if (!settings.value.alias_of().empty()) key = AddressKey(a->local, settings.value.alias_of());
    ASSIGN_OR_RETURN(auto rec, store_->Read<AddressRecord>(dkeys::Address(key)));
    if (!rec.found() || rec.value.tenant_id() != tid) return absl::OkStatus();
    const AddressRecord& r = rec.value;
    auto grant = [&](v1::SendAsGrant g) {
      resp->set_allowed(true);
      resp->set_grant(g);
    };
    if (r.kind() == AddressRecord::KIND_USER && r.target_id() == uid) {
      grant(v1::SEND_AS_GRANT_OWN_ADDRESS);
    } else if (r.kind() == AddressRecord::KIND_ALIAS &&
               r.alias_target_kind() == v1::ALIAS_TARGET_KIND_USER && r.target_id() == uid) {
      grant(v1::SEND_AS_GRANT_ALIAS);
    } else if (r.kind() == AddressRecord::KIND_SHARED || r.kind() == AddressRecord::KIND_ALIAS) {
      ASSIGN_OR_RETURN(auto seat, store_->Read<v1::Seat>(dkeys::Seat(tid, r.target_id(), uid)));
      if (seat.found() && seat.value.can_send_as()) grant(v1::SEND_AS_GRANT_SHARED_MAILBOX_SEAT);
    } else if (r.kind() == AddressRecord::KIND_GROUP) {
      ASSIGN_OR_RETURN(auto group, ReadGroup(*store_, tid, r.target_id()));
      if (group.value.group().members_can_send_as()) {
        auto members = ExpandGroupRecipients(tid, r.target_id(), 0);
        if (members.ok()) {
          for (const auto& m : *members)
            if (m.user_id() == uid) grant(v1::SEND_AS_GRANT_GROUP_MEMBER);
        }
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
