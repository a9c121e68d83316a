// DirectoryService: aliases, per-domain mail settings (domain alias,
// catch-all, plus-addressing), shared mailboxes with seats, and the admin
// audit log.
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/plans.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

// ---- aliases ------------------------------------------------------------------

grpc::Status DirectoryServiceImpl::AddAlias(Ctx* ctx, const v1::AddAliasRequest* req,
                                            v1::Alias* resp) {
  return Serve(*auth_, ctx, "AddAlias", [&](const Principal& p) -> absl::Status {
    const bool to_user = req->target_case() == v1::AddAliasRequest::kUserId;
    const std::string target = to_user ? req->user_id() : req->shared_mailbox_id();
    if (req->target_case() == v1::AddAliasRequest::TARGET_NOT_SET)
      return InvalidField("target", "EMPTY", "give user_id or shared_mailbox_id");
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, to_user ? "user" : "shared mailbox",
                                                      target, {.tenant_admin = true}));
    RETURN_IF_ERROR(ActiveTenant(tid).status());
    ASSIGN_OR_RETURN(ParsedAddress a, NewAddress(tid, req->address(), "address"));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(a.key)));
      if (taken.has_value()) return AddressTaken("address", a.address);
      Batch batch;
      v1::Alias alias;
      alias.set_address(a.address);
      alias.set_tenant_id(tid);
      alias.set_target_kind(to_user ? v1::ALIAS_TARGET_KIND_USER
                                    : v1::ALIAS_TARGET_KIND_SHARED_MAILBOX);
      alias.set_target_id(target);
      *alias.mutable_created_at() = ToProto(absl::Now());
      if (to_user) {
        ASSIGN_OR_RETURN(auto u, ReadUser(*store_, tid, target));
        if (u.value.user().state() == v1::USER_STATE_DELETED)
          return Precondition("WRONG_STATE", "the user is DELETED");
        u.value.mutable_user()->add_aliases(a.address);
        alias.set_target_address(u.value.user().address());
        batch.ExpectVersion(dkeys::User(tid, target), u.version)
            .Put(dkeys::User(tid, target), u.value);
      } else {
        ASSIGN_OR_RETURN(auto s, ReadShared(*store_, tid, target));
        if (s.value.mailbox().has_purge_after())
          return Precondition("WRONG_STATE", "the shared mailbox is deleted");
        s.value.mutable_mailbox()->add_aliases(a.address);
        alias.set_target_address(s.value.mailbox().address());
        batch.ExpectVersion(dkeys::Shared(tid, target), s.version)
            .Put(dkeys::Shared(tid, target), s.value);
      }
      AddressRecord ar;
      ar.set_tenant_id(tid);
      ar.set_kind(AddressRecord::KIND_ALIAS);
      ar.set_target_id(target);
      ar.set_alias_target_kind(alias.target_kind());
      ar.set_address(a.address);
      batch.ExpectAbsent(dkeys::Address(a.key))
          .Put(dkeys::Address(a.key), ar)
          .Put(dkeys::Alias(tid, a.key), alias);
      Changed(batch, tid, p, "alias.add", to_user ? "user" : "shared_mailbox", target,
              absl::StrCat("alias ", a.address, " -> ", alias.target_address()));
      *resp = alias;
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::RemoveAlias(Ctx* ctx, const v1::RemoveAliasRequest* req,
                                               v1::RemoveAliasResponse*) {
  return Serve(*auth_, ctx, "RemoveAlias", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(ParsedAddress a, ParseAddress(req->address(), "address"));
    absl::Status not_found = NotFound("alias", a.address);
    ASSIGN_OR_RETURN(auto first, store_->Read<AddressRecord>(dkeys::Address(a.key)));
    if (!first.found() || first.value.kind() != AddressRecord::KIND_ALIAS) {
      RETURN_IF_ERROR(CheckAccess(p, "", {.tenant_admin = true}, not_found));
      return not_found;
    }
    const std::string tid = first.value.tenant_id();
    RETURN_IF_ERROR(CheckAccess(p, tid, {.tenant_admin = true}, not_found));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto rec, store_->Read<AddressRecord>(dkeys::Address(a.key)));
      if (!rec.found() || rec.value.kind() != AddressRecord::KIND_ALIAS) return not_found;
      const std::string target = rec.value.target_id();
      Batch batch;
      batch.ExpectVersion(dkeys::Address(a.key), rec.version)
          .Delete(dkeys::Address(a.key))
          .Delete(dkeys::Alias(tid, a.key));
      auto drop = [&](google::protobuf::RepeatedPtrField<std::string>* list) {
        list->erase(std::remove_if(list->begin(), list->end(),
                                   [&](const std::string& x) { return KeyOfAddress(x) == a.key; }),
                    list->end());
      };
      if (rec.value.alias_target_kind() == v1::ALIAS_TARGET_KIND_USER) {
        ASSIGN_OR_RETURN(auto u, store_->Read<storage::UserRecord>(dkeys::User(tid, target)));
        if (u.found()) {
          drop(u.value.mutable_user()->mutable_aliases());
          batch.ExpectVersion(dkeys::User(tid, target), u.version)
              .Put(dkeys::User(tid, target), u.value);
        }
      } else {
        ASSIGN_OR_RETURN(auto s,
                         store_->Read<storage::SharedMailboxRecord>(dkeys::Shared(tid, target)));
        if (s.found()) {
          drop(s.value.mutable_mailbox()->mutable_aliases());
          batch.ExpectVersion(dkeys::Shared(tid, target), s.version)
              .Put(dkeys::Shared(tid, target), s.value);
        }
      }
      Changed(batch, tid, p, "alias.remove", "alias", a.address,
              absl::StrCat("alias ", a.address, " removed"));
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::ListAliases(Ctx* ctx, const v1::ListAliasesRequest* req,
                                               v1::ListAliasesResponse* resp) {
  return Serve(*auth_, ctx, "ListAliases", [&](const Principal& p) -> absl::Status {
    const bool own = !p.anonymous() && !req->target_id().empty() && req->target_id() == p.subject;
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(),
                                     {.any_authenticated = own, .tenant_admin = true,
                                      .auditor = true}));
    if (own && p.tenant_id != tid) return NotFound("tenant", tid);
    ASSIGN_OR_RETURN(auto page, store_->Scan(dkeys::AliasPrefix(tid), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      v1::Alias a;
      if (!a.ParseFromString(e.value())) return absl::DataLossError("stored alias does not parse");
      if (req->target_id().empty() || a.target_id() == req->target_id()) *resp->add_aliases() = a;
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}

// ---- domain mail settings ------------------------------------------------------

absl::StatusOr<std::pair<std::string, std::string>> DirectoryServiceImpl::DomainOfRequest(
    const Principal& p, const std::string& input, const Who& who) {
  ASSIGN_OR_RETURN(DomainName d, NormalizeDomain(input, "domain"));
  absl::Status not_found = NotFound("domain", d.ascii);
  ASSIGN_OR_RETURN(auto owner, store_->GetRaw(keys::DomainIndex(d.ascii)));
  if (!owner.has_value()) {
    RETURN_IF_ERROR(CheckAccess(p, "", who, not_found));
    return not_found;
  }
  RETURN_IF_ERROR(CheckAccess(p, *owner, who, not_found));
  return std::make_pair(*owner, d.ascii);
}

grpc::Status DirectoryServiceImpl::GetDomainMailSettings(Ctx* ctx,
                                                         const v1::GetDomainMailSettingsRequest* req,
                                                         v1::DomainMailSettings* resp) {
  return Serve(*auth_, ctx, "GetDomainMailSettings", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(auto d, DomainOfRequest(p, req->domain(),
                                             {.tenant_admin = true, .auditor = true}));
    ASSIGN_OR_RETURN(auto s,
                     store_->Read<v1::DomainMailSettings>(dkeys::MailSettings(d.first, d.second)));
    *resp = s.value;
    return absl::OkStatus();
  });
}

absl::Status DirectoryServiceImpl::DomainInUse(const std::string& tid, const std::string& domain) {
  ASSIGN_OR_RETURN(DomainUse use, UsesOfDomain(*store_, tid, domain));
  if (use.addresses() > 0)
    return Precondition("IN_USE",
                        absl::StrCat(use.Describe(), " on ", domain,
                                     ": an alias domain has no addresses of its own"),
                        "settings.alias_of");
  return absl::OkStatus();
}

grpc::Status DirectoryServiceImpl::SetDomainMailSettings(Ctx* ctx,
                                                         const v1::SetDomainMailSettingsRequest* req,
                                                         v1::DomainMailSettings* resp) {
  return Serve(*auth_, ctx, "SetDomainMailSettings", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(auto d, DomainOfRequest(p, req->domain(), {.tenant_admin = true}));
    const auto& [tid, domain] = d;
    RETURN_IF_ERROR(ActiveTenant(tid).status());
    v1::DomainMailSettings s;
    const auto& in = req->settings();
    if (!in.alias_of().empty()) {
      ASSIGN_OR_RETURN(DomainName target, NormalizeDomain(in.alias_of(), "settings.alias_of"));
      if (target.ascii == domain)
        return InvalidField("settings.alias_of", "SELF", "a domain cannot be an alias of itself");
      ASSIGN_OR_RETURN(auto owner, store_->GetRaw(keys::DomainIndex(target.ascii)));
      if (!owner.has_value() || *owner != tid)
        return InvalidField("settings.alias_of", "DOMAIN_NOT_IN_TENANT",
                            absl::StrCat("domain ", target.ascii, " is not a domain of this tenant"));
      ASSIGN_OR_RETURN(auto trec,
                       store_->Read<storage::DomainRecord>(keys::Domain(tid, target.ascii)));
      if (!trec.found() || trec.value.domain().state() != v1::DOMAIN_STATE_VERIFIED)
        return Precondition("DOMAIN_NOT_VERIFIED",
                            absl::StrCat("domain ", target.ascii, " is not VERIFIED"),
                            "settings.alias_of");
      ASSIGN_OR_RETURN(auto tset, store_->Read<v1::DomainMailSettings>(
                                      dkeys::MailSettings(tid, target.ascii)));
      if (!tset.value.alias_of().empty())
        return InvalidField("settings.alias_of", "CHAIN",
                            absl::StrCat(target.ascii, " is itself an alias of ",
                                         tset.value.alias_of()));
      // Nothing may alias this domain if it becomes an alias (no chains).
      ASSIGN_OR_RETURN(auto all, store_->ScanAll(dkeys::MailSettingsPrefix(tid)));
      for (const auto& e : all) {
        v1::DomainMailSettings other;
        if (other.ParseFromString(e.value()) && other.alias_of() == domain)
          return InvalidField("settings.alias_of", "CHAIN",
                              absl::StrCat("another domain is an alias of ", domain));
      }
      RETURN_IF_ERROR(DomainInUse(tid, domain));
      s.set_alias_of(target.ascii);
    }
    if (!in.catch_all_address().empty()) {
      ASSIGN_OR_RETURN(ParsedAddress c,
                       ParseAddress(in.catch_all_address(), "settings.catch_all_address"));
      ASSIGN_OR_RETURN(auto rec, store_->Read<AddressRecord>(dkeys::Address(c.key)));
      if (!rec.found() || rec.value.tenant_id() != tid)
        return InvalidField("settings.catch_all_address", "NOT_IN_TENANT",
                            "the catch-all target must be an existing address of this tenant");
      s.set_catch_all_address(c.address);
    }
    s.set_disable_plus_addressing(in.disable_plus_addressing());
    if (!in.plus_separator().empty()) {
      if (in.plus_separator().size() != 1 ||
          std::string("+-_=").find(in.plus_separator()[0]) == std::string::npos)
        return InvalidField("settings.plus_separator", "BAD_SEPARATOR", "one of + - _ =");
      s.set_plus_separator(in.plus_separator());
    }
    Batch batch;
    batch.Put(dkeys::MailSettings(tid, domain), s);
    Changed(batch, tid, p, "domain.mail_settings", "domain", domain,
            absl::StrCat("mail settings of ", domain, ": alias_of=", s.alias_of(),
                         " catch_all=", s.catch_all_address(),
                         " plus=", s.disable_plus_addressing() ? "off" : "on"));
    ASSIGN_OR_RETURN(bool ok, store_->Commit(std::move(batch)));
    if (!ok) return absl::AbortedError("concurrent change; retry");
    *resp = s;
    return absl::OkStatus();
  });
}

// ---- shared mailboxes ------------------------------------------------------------

absl::StatusOr<v1::SharedMailbox> DirectoryServiceImpl::SharedView(
    const std::string& tid, const storage::SharedMailboxRecord& r) {
  v1::SharedMailbox m = r.mailbox();
  ASSIGN_OR_RETURN(auto seats, store_->ScanAll(dkeys::SeatPrefix(tid, m.shared_mailbox_id()), true));
  m.set_seats_used(static_cast<int64_t>(seats.size()));
  return m;
}

grpc::Status DirectoryServiceImpl::CreateSharedMailbox(Ctx* ctx,
                                                       const v1::CreateSharedMailboxRequest* req,
                                                       v1::SharedMailbox* resp) {
  return Serve(*auth_, ctx, "CreateSharedMailbox", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeTenant(p, req->tenant_id(), {.tenant_admin = true}));
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    if (t.has_plan && !PlanHas(t.plan, v1::PLAN_FEATURE_SHARED_MAILBOXES))
      return Precondition("PLAN_FEATURE_MISSING",
                          absl::StrCat("plan \"", t.plan.name(), "\" has no shared mailboxes"));
    ASSIGN_OR_RETURN(ParsedAddress a, NewAddress(tid, req->address(), "address"));
    storage::SharedMailboxRecord rec;
    v1::SharedMailbox& m = *rec.mutable_mailbox();
    m.set_shared_mailbox_id(NewId("s-"));
    m.set_tenant_id(tid);
    m.set_address(a.address);
    ASSIGN_OR_RETURN(*m.mutable_display_name(),
                     ValidateOptionalText(req->display_name(), "display_name", 200));
    if (m.display_name().empty()) m.set_display_name(a.local);
    m.set_mailbox_id(NewId("mb-"));
    ASSIGN_OR_RETURN(*m.mutable_quota(), QuotaFor(t, req->quota(), req->has_quota(), "quota"));
    *m.mutable_created_at() = ToProto(absl::Now());
    std::vector<std::pair<uint64_t, int64_t>> loads;
    ASSIGN_OR_RETURN(auto shards, PickShards(1, &loads));
    m.set_shard(shards[0]);
    const bool mailstore = peers_ != nullptr && peers_->mailstore_configured();
    if (mailstore) {
      mailstore::v1::CreateMailboxRequest cr;
      cr.set_mailbox_id(m.mailbox_id());
      cr.set_tenant_id(tid);
      cr.set_kind(common::v1::MAILBOX_KIND_SHARED);
      cr.set_owner_id(m.shared_mailbox_id());
      *cr.mutable_quota() = m.quota();
      absl::Status s = peers_->CreateMailbox(m.shard(), cr);
      if (!s.ok())
        return absl::UnavailableError(
            absl::StrCat("mailstored could not create the mailbox; nothing was created: ",
                         s.message()));
    } else {
      log::Warn("mailstored not configured: shared mailbox placed but not created (pending)");
      rec.set_mailbox_pending(true);
    }
    absl::Status s = store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(a.key)));
      if (taken.has_value()) return AddressTaken("address", a.address);
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(tid)));
      usage.value.set_tenant_id(tid);
      usage.value.set_shared_mailboxes(usage.value.shared_mailboxes() + 1);
      AddressRecord ar;
      ar.set_tenant_id(tid);
      ar.set_kind(AddressRecord::KIND_SHARED);
      ar.set_target_id(m.shared_mailbox_id());
      ar.set_address(a.address);
      Batch batch;
      batch.ExpectAbsent(dkeys::Address(a.key))
          .Put(dkeys::Address(a.key), ar)
          .PutRaw(dkeys::Object(m.shared_mailbox_id()), tid)
          .Put(dkeys::Shared(tid, m.shared_mailbox_id()), rec)
          .ExpectVersion(keys::Usage(tid), usage.version)
          .Put(keys::Usage(tid), usage.value);
      RETURN_IF_ERROR(CountPlacements({m.shard()}, &batch, +1));
      Changed(batch, tid, p, "shared_mailbox.create", "shared_mailbox", m.shared_mailbox_id(),
              absl::StrCat("shared mailbox ", a.address, " created on shard ", m.shard()));
      return batch;
    });
    if (!s.ok()) {
      if (mailstore) (void)peers_->DeleteMailbox(m.shard(), m.mailbox_id());
      return s;
    }
    ASSIGN_OR_RETURN(*resp, SharedView(tid, rec));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::GetSharedMailbox(Ctx* ctx,
                                                    const v1::GetSharedMailboxRequest* req,
                                                    v1::SharedMailbox* resp) {
  return Serve(*auth_, ctx, "GetSharedMailbox", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->shared_mailbox_id();
    ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "shared mailbox", id,
                                                      {.any_authenticated = true}));
    if (!p.HasRole(auth::kRoleService)) {
      if (p.tenant_id != tid) return NotFound("shared mailbox", id);
      if (!p.HasRole(auth::kRoleTenantAdmin) && !p.HasRole(auth::kRoleAuditor)) {
        ASSIGN_OR_RETURN(auto seat, store_->GetRaw(dkeys::Seat(tid, id, p.subject)));
        if (!seat.has_value()) return NotFound("shared mailbox", id);
      }
    }
    ASSIGN_OR_RETURN(auto rec, ReadShared(*store_, tid, id));
    ASSIGN_OR_RETURN(*resp, SharedView(tid, rec.value));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::ListSharedMailboxes(Ctx* ctx,
                                                       const v1::ListSharedMailboxesRequest* req,
                                                       v1::ListSharedMailboxesResponse* resp) {
  return Serve(*auth_, ctx, "ListSharedMailboxes", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid, AuthorizeTenant(p, req->tenant_id(),
                                                      {.tenant_admin = true, .auditor = true}));
    ASSIGN_OR_RETURN(auto page, store_->Scan(dkeys::SharedPrefix(tid), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      storage::SharedMailboxRecord r;
      if (!r.ParseFromString(e.value())) return absl::DataLossError("shared mailbox does not parse");
      ASSIGN_OR_RETURN(*resp->add_shared_mailboxes(), SharedView(tid, r));
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::DeleteSharedMailbox(Ctx* ctx,
                                                       const v1::DeleteSharedMailboxRequest* req,
                                                       v1::DeleteSharedMailboxResponse*) {
  return Serve(*auth_, ctx, "DeleteSharedMailbox", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->shared_mailbox_id();
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, "shared mailbox", id, {.tenant_admin = true}));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto rec, ReadShared(*store_, tid, id));
      if (rec.value.mailbox().has_purge_after())
        return Precondition("WRONG_STATE", "the shared mailbox is deleted already");
      const absl::Time purge = absl::Now() + options_->user_grace_period;
      *rec.value.mutable_mailbox()->mutable_purge_after() = ToProto(purge);
      ASSIGN_OR_RETURN(auto seats, IdsUnder(*store_, dkeys::SeatPrefix(tid, id)));
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(tid)));
      usage.value.set_shared_mailboxes(std::max<int64_t>(0, usage.value.shared_mailboxes() - 1));
      usage.value.set_shared_mailbox_seats(std::max<int64_t>(
          0, usage.value.shared_mailbox_seats() - static_cast<int64_t>(seats.size())));
      Batch batch;
      batch.ExpectVersion(dkeys::Shared(tid, id), rec.version)
          .Put(dkeys::Shared(tid, id), rec.value)
          .ExpectVersion(keys::Usage(tid), usage.version)
          .Put(keys::Usage(tid), usage.value)
          .PutRaw(dkeys::Purge(purge, tid, id), "");  // directory_purge.cc
      for (const auto& u : seats)
        batch.Delete(dkeys::Seat(tid, id, u)).Delete(dkeys::UserSeat(tid, u, id));
      Changed(batch, tid, p, "shared_mailbox.delete", "shared_mailbox", id,
              absl::StrCat("shared mailbox ", rec.value.mailbox().address(), " deleted (",
                           seats.size(), " seat(s) released)"),
              req->reason());
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::AssignSeat(Ctx* ctx, const v1::AssignSeatRequest* req,
                                              v1::Seat* resp) {
  return Serve(*auth_, ctx, "AssignSeat", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->shared_mailbox_id();
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, "shared mailbox", id, {.tenant_admin = true}));
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto shared, ReadShared(*store_, tid, id));
      if (shared.value.mailbox().has_purge_after()) return NotFound("shared mailbox", id);
      ASSIGN_OR_RETURN(auto user, ReadUser(*store_, tid, req->user_id()));
      if (user.value.user().state() == v1::USER_STATE_DELETED)
        return NotFound("user", req->user_id());
      ASSIGN_OR_RETURN(auto existing, store_->GetRaw(dkeys::Seat(tid, id, req->user_id())));
      if (existing.has_value())
        return AlreadyExists("user_id", "ALREADY_EXISTS",
                             absl::StrCat(user.value.user().address(), " has a seat already"));
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(tid)));
      int64_t want = usage.value.shared_mailbox_seats() + 1;
      if (t.has_plan && !Within(t.plan.shared_mailbox_seats(), want)) {
        common::v1::LimitDetail d;
        d.set_limit("plan.shared_mailbox_seats");
        *d.mutable_value() = t.plan.shared_mailbox_seats();
        d.set_usage(usage.value.shared_mailbox_seats());
        d.set_requested(want);
        return WithLimits(absl::StatusCode::kResourceExhausted, "PLAN_LIMIT",
                          absl::StrCat("plan \"", t.plan.name(), "\" allows ",
                                       LimitText(t.plan.shared_mailbox_seats()),
                                       " shared-mailbox seats, all in use"),
                          {d});
      }
      usage.value.set_tenant_id(tid);
      usage.value.set_shared_mailbox_seats(want);
      v1::Seat seat;
      seat.set_shared_mailbox_id(id);
      seat.set_shared_mailbox_address(shared.value.mailbox().address());
      seat.set_user_id(req->user_id());
      seat.set_user_address(user.value.user().address());
      seat.set_can_send_as(req->can_send_as());
      *seat.mutable_assigned_at() = ToProto(absl::Now());
      Batch batch;
      batch.ExpectAbsent(dkeys::Seat(tid, id, req->user_id()))
          .Put(dkeys::Seat(tid, id, req->user_id()), seat)
          .PutRaw(dkeys::UserSeat(tid, req->user_id(), id), "")
          .ExpectVersion(keys::Usage(tid), usage.version)
          .Put(keys::Usage(tid), usage.value);
      Changed(batch, tid, p, "shared_mailbox.seat.assign", "shared_mailbox", id,
              absl::StrCat(seat.user_address(), " seated at ", seat.shared_mailbox_address(),
                           req->can_send_as() ? " (may send as)" : ""));
      *resp = seat;
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::UnassignSeat(Ctx* ctx, const v1::UnassignSeatRequest* req,
                                                v1::UnassignSeatResponse*) {
  return Serve(*auth_, ctx, "UnassignSeat", [&](const Principal& p) -> absl::Status {
    const std::string& id = req->shared_mailbox_id();
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, "shared mailbox", id, {.tenant_admin = true}));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto seat, store_->Read<v1::Seat>(dkeys::Seat(tid, id, req->user_id())));
      if (!seat.found()) return NotFound("seat of user", req->user_id());
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(tid)));
      usage.value.set_shared_mailbox_seats(
          std::max<int64_t>(0, usage.value.shared_mailbox_seats() - 1));
      Batch batch;
      batch.ExpectVersion(dkeys::Seat(tid, id, req->user_id()), seat.version)
          .Delete(dkeys::Seat(tid, id, req->user_id()))
          .Delete(dkeys::UserSeat(tid, req->user_id(), id))
          .ExpectVersion(keys::Usage(tid), usage.version)
          .Put(keys::Usage(tid), usage.value);
      Changed(batch, tid, p, "shared_mailbox.seat.unassign", "shared_mailbox", id,
              absl::StrCat(seat.value.user_address(), " unseated from ",
                           seat.value.shared_mailbox_address()));
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::ListSeats(Ctx* ctx, const v1::ListSeatsRequest* req,
                                             v1::ListSeatsResponse* resp) {
  return Serve(*auth_, ctx, "ListSeats", [&](const Principal& p) -> absl::Status {
    const bool by_user = req->scope_case() == v1::ListSeatsRequest::kUserId;
    const std::string id = by_user ? req->user_id() : req->shared_mailbox_id();
    const bool own = by_user && !p.anonymous() && p.subject == id;
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, by_user ? "user" : "shared mailbox", id,
                                     {.any_authenticated = own, .tenant_admin = true,
                                      .auditor = true, .service = true}));
    if (own && p.tenant_id != tid) return NotFound("user", id);
    if (by_user) {
      ASSIGN_OR_RETURN(auto shared, IdsUnder(*store_, dkeys::UserSeatPrefix(tid, id)));
      for (const auto& s : shared) {
        ASSIGN_OR_RETURN(auto seat, store_->Read<v1::Seat>(dkeys::Seat(tid, s, id)));
        if (seat.found()) *resp->add_seats() = seat.value;
      }
      return absl::OkStatus();
    }
    ASSIGN_OR_RETURN(auto page, store_->Scan(dkeys::SeatPrefix(tid, id), PageSize(req->page()),
                                             req->page().page_token()));
    for (const auto& e : page.entries) {
      if (!resp->add_seats()->ParseFromString(e.value()))
        return absl::DataLossError("seat does not parse");
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}

// ---- admin audit log -----------------------------------------------------------

grpc::Status DirectoryServiceImpl::ListAdminAuditLog(Ctx* ctx,
                                                     const v1::ListAdminAuditLogRequest* req,
                                                     v1::ListAdminAuditLogResponse* resp) {
  return Serve(*auth_, ctx, "ListAdminAuditLog", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeTenant(p, req->tenant_id(), {.platform_operator = true,
                                                           .tenant_admin = true,
                                                           .auditor = true}));
    ASSIGN_OR_RETURN(auto page, store_->Scan(keys::AuditPrefix(tid), PageSize(req->page()),
                                             req->page().page_token(), false, /*reverse=*/true));
    for (const auto& e : page.entries) {
      v1::AdminAuditEntry a;
      if (!a.ParseFromString(e.value())) return absl::DataLossError("audit entry does not parse");
      if (req->has_since() && FromProto(a.at()) < FromProto(req->since())) continue;
      if (req->has_until() && FromProto(a.at()) >= FromProto(req->until())) continue;
      if (!absl::StartsWith(a.action(), req->action_prefix())) continue;
      if (!req->actor_user_id().empty() && a.actor().user_id() != req->actor_user_id()) continue;
      if (!req->target_id().empty() && a.target_id() != req->target_id()) continue;
      *resp->add_entries() = std::move(a);
    }
    resp->mutable_page_info()->set_next_page_token(page.next_token);
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::AppendAdminAuditLog(Ctx* ctx,
                                                       const v1::AppendAdminAuditLogRequest* req,
                                                       v1::AdminAuditEntry* resp) {
  return Serve(*auth_, ctx, "AppendAdminAuditLog", [&](const Principal& p) -> absl::Status {
    RETURN_IF_ERROR(CheckAccess(p, "", {.service = true}, PermissionDenied("service-internal")));
    v1::AdminAuditEntry e = req->entry();
    if (e.tenant_id().empty()) return InvalidField("entry.tenant_id", "EMPTY", "must not be empty");
    if (e.action().empty()) return InvalidField("entry.action", "EMPTY", "must not be empty");
    RETURN_IF_ERROR(ReadTenant(*store_, e.tenant_id()).status());
    absl::Time now = absl::Now();
    e.set_entry_id(NewId("au-"));
    *e.mutable_at() = ToProto(now);
    (*e.mutable_details())["recorded_by_service"] = p.subject;
    Batch batch;
    batch.Put(keys::Audit(e.tenant_id(), now, e.entry_id()), e);
    ASSIGN_OR_RETURN(bool ok, store_->Commit(std::move(batch)));
    if (!ok) return absl::AbortedError("audit entry not written; retry");
    *resp = e;
    return absl::OkStatus();
  });
}

}  // namespace mailgrid::tenant
