// DirectoryService: purging what was deleted once its grace period is over —
// users (DeleteUser) and shared mailboxes (DeleteSharedMailbox). Both leave a
// G("purge")/<time>/<tenant>/<id> key in the write that deletes them; the
// background round takes the due keys in time order. Until the purge the
// record stays (hidden from Resolve and listings) so a user can be restored
// and the mail is kept; the purge removes the mailbox at mailstored first,
// then every key that names the object, so its addresses can be taken again.
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "services/tenant/directory_service.h"
#include "services/tenant/tenant_service.h"

namespace mailgrid::tenant {

namespace {

// Shared mailbox ids are made with NewId("s-"), user ids with NewId("u-"):
// the purge key does not say which kind it names, the id does.
bool IsSharedMailboxId(const std::string& id) { return absl::StartsWith(id, "s-"); }

// The primary address and the aliases of a purged mailbox become free.
void FreeAddresses(Batch& b, const std::string& tid, const std::string& address,
                   const google::protobuf::RepeatedPtrField<std::string>& aliases) {
  b.Delete(dkeys::Address(KeyOfAddress(address)));
  for (const auto& a : aliases)
    b.Delete(dkeys::Address(KeyOfAddress(a))).Delete(dkeys::Alias(tid, KeyOfAddress(a)));
}

}  // namespace

absl::Status DirectoryServiceImpl::PurgeDue(absl::Time now) {
  const std::string prefix = dkeys::PurgePrefix();
  ASSIGN_OR_RETURN(auto due, store_->ScanAll(prefix, true));
  for (const auto& e : due) {
    kv::KeyReader r(e.key());
    r.ConsumePrefix(prefix);
    auto micros = r.I64();
    auto tid = r.Str();
    auto id = r.Str();
    if (!micros.ok() || !tid.ok() || !id.ok()) continue;
    if (absl::FromUnixMicros(*micros) > now) break;  // keys are in time order
    RETURN_IF_ERROR(IsSharedMailboxId(*id) ? PurgeSharedMailbox(*tid, *id, e.key())
                                           : PurgeUser(*tid, *id, e.key()));
  }
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::PurgeUser(const std::string& tid, const std::string& uid,
                                             const std::string& purge_key) {
  auto rec = ReadUser(*store_, tid, uid);
  if (absl::IsNotFound(rec.status()) ||
      (rec.ok() && rec->value.user().state() != v1::USER_STATE_DELETED)) {
    return store_->Commit(Batch().Delete(purge_key)).status();  // restored, or gone already
  }
  RETURN_IF_ERROR(rec.status());
  const v1::User& u = rec->value.user();
  if (peers_ != nullptr && peers_->mailstore_configured() && !rec->value.mailbox_pending()) {
    if (absl::Status s = peers_->DeleteMailbox(u.shard(), u.mailbox_id()); !s.ok()) {
      log::Warn("purge: mailbox not deleted, retried next round", {{"user", uid}, {"status", s}});
      return absl::OkStatus();
    }
  }
  if (peers_ != nullptr) {
    if (absl::Status s = peers_->DeleteCredentials(u.user_id()); !s.ok()) {
      log::Warn("purge: credentials not deleted, retried next round",
                {{"user", uid}, {"status", s}});
      return absl::OkStatus();
    }
  }
  RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
    Batch b;
    b.Delete(dkeys::User(tid, uid)).Delete(dkeys::Object(uid)).Delete(purge_key);
    b.Delete(dkeys::Sieve(tid, uid));
    for (const char* kind : {"welcome", "quota", "sessions"})
      b.Delete(dkeys::PeerWork(kind, tid, uid));
    FreeAddresses(b, tid, u.address(), u.aliases());
    for (const auto& d : u.department_ids()) b.Delete(dkeys::DeptMember(tid, d, uid));
    RETURN_IF_ERROR(DropFromGroups(b, tid, v1::MEMBER_KIND_USER, uid));
    // A deleted user keeps its seats through the grace period (a restore
    // gets them back); the purge gives them to the plan again.
    ASSIGN_OR_RETURN(auto seats, IdsUnder(*store_, dkeys::UserSeatPrefix(tid, uid)));
    for (const auto& s : seats)
      b.Delete(dkeys::Seat(tid, s, uid)).Delete(dkeys::UserSeat(tid, uid, s));
    if (!seats.empty()) {
      ASSIGN_OR_RETURN(auto usage, store_->Read<v1::TenantUsage>(keys::Usage(tid)));
      usage.value.set_shared_mailbox_seats(std::max<int64_t>(
          0, usage.value.shared_mailbox_seats() - static_cast<int64_t>(seats.size())));
      b.ExpectVersion(keys::Usage(tid), usage.version).Put(keys::Usage(tid), usage.value);
    }
    RETURN_IF_ERROR(CountPlacements({u.shard()}, &b, -1));
    Changed(b, tid, Principal::Tenantd(), "user.purge", "user", uid,
            absl::StrCat("user ", u.address(), " purged after the grace period"));
    return b;
  }));
  log::Info("user purged", {{"tenant", tid}, {"user", uid}});
  return absl::OkStatus();
}

absl::Status DirectoryServiceImpl::PurgeSharedMailbox(const std::string& tid,
                                                      const std::string& id,
                                                      const std::string& purge_key) {
  auto rec = ReadShared(*store_, tid, id);
  if (absl::IsNotFound(rec.status()) ||
      (rec.ok() && !rec->value.mailbox().has_purge_after())) {
    return store_->Commit(Batch().Delete(purge_key)).status();
  }
  RETURN_IF_ERROR(rec.status());
  const v1::SharedMailbox& m = rec->value.mailbox();
  if (peers_ != nullptr && peers_->mailstore_configured() && !rec->value.mailbox_pending()) {
    if (absl::Status s = peers_->DeleteMailbox(m.shard(), m.mailbox_id()); !s.ok()) {
      log::Warn("purge: shared mailbox not deleted, retried next round",
                {{"shared_mailbox", id}, {"status", s}});
      return absl::OkStatus();
    }
  }
  RETURN_IF_ERROR(store_->Transact([&]() -> absl::StatusOr<Batch> {
    Batch b;
    b.Delete(dkeys::Shared(tid, id)).Delete(dkeys::Object(id)).Delete(purge_key);
    FreeAddresses(b, tid, m.address(), m.aliases());
    RETURN_IF_ERROR(DropFromGroups(b, tid, v1::MEMBER_KIND_SHARED_MAILBOX, id));
    RETURN_IF_ERROR(CountPlacements({m.shard()}, &b, -1));
    Changed(b, tid, Principal::Tenantd(), "shared_mailbox.purge", "shared_mailbox", id,
            absl::StrCat("shared mailbox ", m.address(), " purged after the grace period"));
    return b;
  }));
  log::Info("shared mailbox purged", {{"tenant", tid}, {"shared_mailbox", id}});
  return absl::OkStatus();
}

}  // namespace mailgrid::tenant
