// DirectoryService: changes to existing users (update, disable, enable,
// delete, rename) and the background round (pending mailboxes; the purge
// after the grace period is in directory_purge.cc).
#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/errors.h"
#include "services/tenant/tenant_service.h"
#include "services/tenant/validation.h"

namespace mailgrid::tenant {

using storage::AddressRecord;

namespace {

bool IsAdmin(const v1::User& u) {
  return std::find(u.roles().begin(), u.roles().end(), common::v1::ROLE_TENANT_ADMIN) !=
         u.roles().end();
}

// Rewrites the department-member index values of `u` (they carry what
// Resolve needs: address, mailbox, state).
void PutMemberships(Batch& batch, const storage::UserRecord& rec) {
  const v1::User& u = rec.user();
  for (const auto& d : u.department_ids())
    batch.Put(dkeys::DeptMember(u.tenant_id(), d, u.user_id()), RecipientOf(rec));
}

}  // namespace

absl::StatusOr<v1::User> DirectoryServiceImpl::ChangeUserState(const Principal& p,
                                                               const std::string& user_id,
                                                               v1::UserState to,
                                                               const std::string& action,
                                                               const std::string& reason,
                                                               absl::Duration grace) {
  ASSIGN_OR_RETURN(std::string tid, AuthorizeObject(p, "user", user_id, {.tenant_admin = true}));
  ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
  ASSIGN_OR_RETURN(std::string why, ValidateOptionalText(reason, "reason", 2000));
  v1::User out;
  RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
    ASSIGN_OR_RETURN(auto rec, ReadUser(*store_, tid, user_id));
    v1::User& u = *rec.value.mutable_user();
    const v1::UserState from = u.state();
    const std::string from_name = v1::UserState_Name(from);
    Batch batch;
    batch.ExpectVersion(dkeys::User(tid, user_id), rec.version);
    absl::Time now = absl::Now();
    if (to == v1::USER_STATE_DISABLED || to == v1::USER_STATE_DELETED) {
      if (from == to || (to == v1::USER_STATE_DISABLED && from != v1::USER_STATE_ACTIVE)) {
        return Precondition("WRONG_STATE", absl::StrCat("user ", u.address(), " is ", from_name));
      }
      if (from == v1::USER_STATE_ACTIVE && IsAdmin(u)) {
        ASSIGN_OR_RETURN(bool last, LastAdmin(tid, user_id));
        if (last)
          return Precondition("LAST_ADMIN",
                              absl::StrCat(u.address(), " is the tenant's last active admin: make "
                                                        "another user tenant_admin first"));
      }
    } else if (from == v1::USER_STATE_ACTIVE) {
      return Precondition("WRONG_STATE", absl::StrCat("user ", u.address(), " is already ACTIVE"));
    }
    if (to == v1::USER_STATE_DELETED) {
      RETURN_IF_ERROR(MailboxLimit(t, -1, &batch));
      absl::Time purge = now + grace;
      *u.mutable_purge_after() = ToProto(purge);
      batch.PutRaw(dkeys::Purge(purge, tid, user_id), "");
    } else if (from == v1::USER_STATE_DELETED) {
      RETURN_IF_ERROR(MailboxLimit(t, 1, &batch));  // restoring counts again
      batch.Delete(dkeys::Purge(FromProto(u.purge_after()), tid, user_id));
      u.clear_purge_after();
    }
    u.set_state(to);
    *u.mutable_updated_at() = ToProto(now);
    batch.Put(dkeys::User(tid, user_id), rec.value);
    PutMemberships(batch, rec.value);
    Changed(batch, tid, p, action, "user", user_id,
            absl::StrCat("user ", u.address(), ": ", from_name, " -> ", v1::UserState_Name(to)),
            why);
    out = u;
    return batch;
  }));
  // The user may no longer sign in: end what is signed in (identityd).
  if (to == v1::USER_STATE_DISABLED || to == v1::USER_STATE_DELETED) EndSessions(out, why);
  return out;
}

grpc::Status DirectoryServiceImpl::DisableUser(Ctx* ctx, const v1::DisableUserRequest* req,
                                               v1::User* resp) {
  return Serve(*auth_, ctx, "DisableUser", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(*resp, ChangeUserState(p, req->user_id(), v1::USER_STATE_DISABLED,
                                            "user.disable", req->reason(), absl::ZeroDuration()));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::EnableUser(Ctx* ctx, const v1::EnableUserRequest* req,
                                              v1::User* resp) {
  return Serve(*auth_, ctx, "EnableUser", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(*resp, ChangeUserState(p, req->user_id(), v1::USER_STATE_ACTIVE,
                                            "user.enable", req->reason(), absl::ZeroDuration()));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::DeleteUser(Ctx* ctx, const v1::DeleteUserRequest* req,
                                              v1::User* resp) {
  return Serve(*auth_, ctx, "DeleteUser", [&](const Principal& p) -> absl::Status {
    absl::Duration grace = options_->user_grace_period;
    if (req->has_grace_period()) {
      grace = absl::Seconds(req->grace_period().seconds()) +
              absl::Nanoseconds(req->grace_period().nanos());
      if (grace < absl::ZeroDuration() || grace > absl::Hours(24 * 365))
        return InvalidField("grace_period", "OUT_OF_RANGE", "0 to 365 days");
    }
    ASSIGN_OR_RETURN(*resp, ChangeUserState(p, req->user_id(), v1::USER_STATE_DELETED,
                                            "user.delete", req->reason(), grace));
    return absl::OkStatus();
  });
}

grpc::Status DirectoryServiceImpl::RenameUser(Ctx* ctx, const v1::RenameUserRequest* req,
                                              v1::User* resp) {
  return Serve(*auth_, ctx, "RenameUser", [&](const Principal& p) -> absl::Status {
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, "user", req->user_id(), {.tenant_admin = true}));
    RETURN_IF_ERROR(ActiveTenant(tid).status());
    ASSIGN_OR_RETURN(ParsedAddress next, NewAddress(tid, req->new_address(), "new_address"));
    return store_->Transact([&]() -> absl::StatusOr<Batch> {
      ASSIGN_OR_RETURN(auto rec, ReadUser(*store_, tid, req->user_id()));
      v1::User& u = *rec.value.mutable_user();
      if (u.state() == v1::USER_STATE_DELETED)
        return Precondition("WRONG_STATE", "a DELETED user cannot be renamed");
      ASSIGN_OR_RETURN(auto taken, store_->GetRaw(dkeys::Address(next.key)));
      if (taken.has_value()) return AddressTaken("new_address", next.address);
      const std::string old = u.address();
      const std::string old_key = KeyOfAddress(old);
      Batch batch;
      batch.ExpectVersion(dkeys::User(tid, u.user_id()), rec.version);
      AddressRecord a;
      a.set_tenant_id(tid);
      a.set_kind(AddressRecord::KIND_USER);
      a.set_target_id(u.user_id());
      a.set_address(next.address);
      batch.ExpectAbsent(dkeys::Address(next.key)).Put(dkeys::Address(next.key), a);
      if (req->drop_old_address()) {
        batch.Delete(dkeys::Address(old_key));
      } else {
        AddressRecord alias = a;
        alias.set_kind(AddressRecord::KIND_ALIAS);
        alias.set_alias_target_kind(v1::ALIAS_TARGET_KIND_USER);
        alias.set_address(old);
        batch.Put(dkeys::Address(old_key), alias);
        v1::Alias view;
        view.set_address(old);
        view.set_tenant_id(tid);
        view.set_target_kind(v1::ALIAS_TARGET_KIND_USER);
        view.set_target_id(u.user_id());
        view.set_target_address(next.address);
        *view.mutable_created_at() = ToProto(absl::Now());
        batch.Put(dkeys::Alias(tid, old_key), view);
        u.add_aliases(old);
      }
      u.set_address(next.address);
      *u.mutable_updated_at() = ToProto(absl::Now());
      batch.Put(dkeys::User(tid, u.user_id()), rec.value);
      PutMemberships(batch, rec.value);
      Changed(batch, tid, p, "user.rename", "user", u.user_id(),
              absl::StrCat("user ", old, " renamed to ", next.address,
                           req->drop_old_address() ? " (old address dropped)"
                                                   : " (old address kept as alias)"));
      *resp = u;
      return batch;
    });
  });
}

grpc::Status DirectoryServiceImpl::UpdateUser(Ctx* ctx, const v1::UpdateUserRequest* req,
                                              v1::User* resp) {
  return Serve(*auth_, ctx, "UpdateUser", [&](const Principal& p) -> absl::Status {
    const std::string user_id = req->user().user_id();
    static const std::set<std::string> kSelf = {"display_name", "phone", "recovery_email",
                                                "locale"};
    static const std::set<std::string> kAll = {"display_name",   "title", "phone",
                                               "department_ids", "roles", "quota",
                                               "recovery_email", "locale"};
    bool self_only = true;
    for (int i = 0; i < req->update_mask().paths_size(); ++i) {
      const std::string& path = req->update_mask().paths(i);
      if (!kAll.count(path))
        return InvalidField(absl::StrCat("update_mask.paths[", i, "]"), "UNKNOWN_PATH",
                            absl::StrCat("\"", path, "\" cannot be updated"));
      if (!kSelf.count(path)) self_only = false;
    }
    // The user may change their own contact fields; the rest is the admin's.
    bool self = !p.anonymous() && p.subject == user_id && self_only;
    ASSIGN_OR_RETURN(std::string tid,
                     AuthorizeObject(p, "user", user_id, {.any_authenticated = self,
                                                          .tenant_admin = true}));
    if (self && p.tenant_id != tid) return NotFound("user", user_id);
    ASSIGN_OR_RETURN(TenantCtx t, ActiveTenant(tid));
    const v1::User& in = req->user();
    bool quota_changed = false;
    storage::UserRecord after;
    std::optional<identity::v1::NotifyRecoveryEmailChangedRequest> recovery_notice;
    RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
      quota_changed = false;
      ASSIGN_OR_RETURN(auto rec, ReadUser(*store_, tid, user_id));
      v1::User& u = *rec.value.mutable_user();
      const std::string old_recovery = u.recovery_email();
      Batch batch;
      batch.ExpectVersion(dkeys::User(tid, user_id), rec.version);
      std::vector<std::string> changed;
      bool was_admin = IsAdmin(u);
      for (const std::string& path : req->update_mask().paths()) {
        changed.push_back(path);
        if (path == "display_name") {
          ASSIGN_OR_RETURN(*u.mutable_display_name(),
                           ValidateName(in.display_name(), "user.display_name", 200));
        } else if (path == "title") {
          ASSIGN_OR_RETURN(*u.mutable_title(), ValidateOptionalText(in.title(), "user.title", 200));
        } else if (path == "phone") {
          if (in.phone().empty()) {
            u.clear_phone();
          } else {
            ASSIGN_OR_RETURN(*u.mutable_phone(), NormalizePhone(in.phone(), "user.phone"));
          }
        } else if (path == "recovery_email") {
          if (in.recovery_email().empty()) {
            u.clear_recovery_email();
          } else {
            ASSIGN_OR_RETURN(ParsedAddress r,
                             ParseAddress(in.recovery_email(), "user.recovery_email"));
            if (r.key == KeyOfAddress(u.address()))
              return InvalidField("user.recovery_email", "OWN_MAILBOX",
                                  "the recovery address must not be the user's own mailbox");
            u.set_recovery_email(r.address);
          }
        } else if (path == "locale") {
          u.set_locale(in.locale());
        } else if (path == "roles") {
          u.clear_roles();
          u.add_roles(common::v1::ROLE_USER);
          for (int i = 0; i < in.roles_size(); ++i) {
            auto r = in.roles(i);
            if (r == common::v1::ROLE_USER) continue;
            if (r != common::v1::ROLE_TENANT_ADMIN && r != common::v1::ROLE_AUDITOR)
              return InvalidField(absl::StrCat("user.roles[", i, "]"), "NOT_ALLOWED",
                                  "a tenant user may hold user, tenant_admin and auditor only");
            if (std::find(u.roles().begin(), u.roles().end(), r) == u.roles().end())
              u.add_roles(r);
          }
          if (was_admin && !IsAdmin(u) && u.state() == v1::USER_STATE_ACTIVE) {
            ASSIGN_OR_RETURN(bool last, LastAdmin(tid, user_id));
            if (last)
              return Precondition("LAST_ADMIN", "this is the tenant's last active admin");
          }
        } else if (path == "quota") {
          // Pushed to mailstored after the write (PushQuota).
          ASSIGN_OR_RETURN(*u.mutable_quota(), QuotaFor(t, in.quota(), in.has_quota(), "user.quota"));
          quota_changed = true;
        } else if (path == "department_ids") {
          for (const auto& d : u.department_ids()) batch.Delete(dkeys::DeptMember(tid, d, user_id));
          u.clear_department_ids();
          for (int i = 0; i < in.department_ids_size(); ++i) {
            const std::string& d = in.department_ids(i);
            ASSIGN_OR_RETURN(auto dept, store_->Read<v1::Department>(dkeys::Dept(tid, d)));
            if (!dept.found())
              return InvalidField(absl::StrCat("user.department_ids[", i, "]"), "NOT_FOUND",
                                  absl::StrCat("department ", d, " not found"));
            batch.ExpectVersion(dkeys::Dept(tid, d), dept.version);
            if (std::find(u.department_ids().begin(), u.department_ids().end(), d) ==
                u.department_ids().end())
              u.add_department_ids(d);
          }
        }
      }
      *u.mutable_updated_at() = ToProto(absl::Now());
      batch.Put(dkeys::User(tid, user_id), rec.value);
      PutMemberships(batch, rec.value);
      Changed(batch, tid, p, "user.update", "user", user_id,
              absl::StrCat("user ", u.address(), " updated: ", absl::StrJoin(changed, ", ")));
      // Told after the commit; its pending record commits with the change.
      recovery_notice = QueueRecoveryNotice(batch, p, old_recovery, u);
      *resp = u;
      after = rec.value;
      return batch;
    }));
    if (quota_changed) PushQuota(after);
    if (recovery_notice) RecoveryNoticeNow(*recovery_notice);
    return absl::OkStatus();
  });
}

// ---- background -------------------------------------------------------------

absl::StatusOr<int> DirectoryServiceImpl::SweepOrphanDeptGens() {
  ASSIGN_OR_RETURN(auto registry,
                   store_->ScanAll(keys::TenantRegistryPrefix(), /*keys_only=*/true));
  int removed = 0;
  for (const auto& e : registry) {
    kv::KeyReader r(e.key());
    r.ConsumePrefix(keys::TenantRegistryPrefix());
    ASSIGN_OR_RETURN(std::string tid, r.Str());
    const std::string gprefix = dkeys::DeptGenPrefix(tid);
    ASSIGN_OR_RETURN(auto gens, store_->ScanAll(gprefix, /*keys_only=*/true));
    if (gens.empty()) continue;
    const std::string dprefix = dkeys::DeptRecordPrefix(tid);
    ASSIGN_OR_RETURN(auto depts, store_->ScanAll(dprefix, /*keys_only=*/true));
    std::set<std::string> live;
    for (const auto& d : depts) live.insert(ComponentAfter(d.key(), dprefix));
    Batch batch;
    int in_batch = 0;
    auto commit = [&]() -> absl::Status {
      if (in_batch == 0) return absl::OkStatus();
      // False: a department appeared under one of these ids meanwhile
      // (ids are never reused, so this does not happen); next process.
      ASSIGN_OR_RETURN(bool done, store_->Commit(std::move(batch)));
      if (done) removed += in_batch;
      batch = Batch();
      in_batch = 0;
      return absl::OkStatus();
    };
    for (const auto& g : gens) {
      const std::string id = ComponentAfter(g.key(), gprefix);
      // "" is the top-level list's key (the parent of root departments).
      if (id.empty() || live.contains(id)) continue;
      batch.ExpectAbsent(dkeys::Dept(tid, id));
      batch.Delete(g.key());
      if (++in_batch == 256) RETURN_IF_ERROR(commit());
    }
    RETURN_IF_ERROR(commit());
  }
  return removed;
}

absl::Status DirectoryServiceImpl::BackgroundRound(absl::Time now) {
  if (!deptgens_swept_) {
    absl::StatusOr<int> swept = SweepOrphanDeptGens();
    if (swept.ok()) {
      deptgens_swept_ = true;
      if (*swept > 0) log::Info("orphan department generation keys deleted", {{"count", *swept}});
    } else {
      log::Warn("deptgen sweep failed", {{"status", swept.status()}});
    }
  }
  // Welcome notices, quota pushes, session ends still to do.
  if (absl::Status s = PeerWorkRound(); !s.ok())
    log::Warn("peer work round failed", {{"status", s}});
  // Mailboxes that could not be created at CreateUser time.
  if (peers_ != nullptr && peers_->mailstore_configured()) {
    const std::string prefix = dkeys::PendingMailboxPrefix();
    ASSIGN_OR_RETURN(auto pending, store_->ScanAll(prefix, true));
    for (const auto& e : pending) {
      kv::KeyReader r(e.key());
      r.ConsumePrefix(prefix);
      auto tid = r.Str();
      auto uid = r.Str();
      if (!tid.ok() || !uid.ok()) continue;
      auto rec = ReadUser(*store_, *tid, *uid);
      if (!rec.ok()) {
        if (absl::IsNotFound(rec.status())) (void)store_->Commit(Batch().Delete(e.key()));
        continue;
      }
      const v1::User& u = rec->value.user();
      mailstore::v1::CreateMailboxRequest req;
      req.set_mailbox_id(u.mailbox_id());
      req.set_tenant_id(u.tenant_id());
      req.set_kind(common::v1::MAILBOX_KIND_USER);
      req.set_owner_id(u.user_id());
      *req.mutable_quota() = u.quota();
      absl::Status s = peers_->CreateMailbox(u.shard(), req);
      if (!s.ok()) {
        log::Warn("pending mailbox still not created", {{"user", u.user_id()}, {"status", s}});
        continue;
      }
      RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
        ASSIGN_OR_RETURN(auto again, ReadUser(*store_, *tid, *uid));
        again.value.set_mailbox_pending(false);
        Batch b;
        b.ExpectVersion(dkeys::User(*tid, *uid), again.version)
            .Put(dkeys::User(*tid, *uid), again.value)
            .Delete(e.key());
        return b;
      }));
      log::Info("pending mailbox created", {{"user", u.user_id()}, {"mailbox", u.mailbox_id()}});
    }
  }
  // Users and shared mailboxes whose grace period is over (directory_purge.cc).
  return PurgeDue(now);
}

}  // namespace mailgrid::tenant
