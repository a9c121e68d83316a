// FolderStatus and SelectFolder (IMAP SELECT/EXAMINE/STATUS): one read of
// the mailbox record and its folders, the first-unseen key, the UID list,
// and for SelectFolder the changes since a MODSEQ from the same read. The
// mailbox's write lock and a replicated write are taken only to claim
// \Recent messages when the folder has some, so a SELECT does not wait
// behind a delivery's commit.
#include <algorithm>

#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {
namespace {

// Takes the folder's \Recent messages (RFC 3501: exactly one session gets
// each). Returns the claimed UIDs (empty when another caller was first).
absl::StatusOr<std::vector<uint32_t>> ClaimRecent(MailStore* store, const std::string& mailbox_id,
                                                  const v1::FolderRef& ref) {
  std::vector<uint32_t> uids;
  RETURN_IF_ERROR(RunMutation(store, mailbox_id, [&](Mutation& mut) -> absl::Status {
    uids.clear();
    const storage::FolderRecord* f = FindFolder(mut.mbx(), ref);
    if (f == nullptr || f->noselect()) return FolderNotFound();
    if (f->recent() == 0) return absl::OkStatus();
    if (f->uid_map()) {
      // The UIDs from the map (a key per 4,096 UIDs), not every \Recent
      // message's record: a folder filled by an import claims a million.
      uint32_t from = f->recent_from();
      RETURN_IF_ERROR(ForEachUidRange(store, mut.mbx(), *f, [&](uint32_t a, uint32_t b) {
        for (uint64_t u = std::max(a, from); u <= b; ++u) uids.push_back(static_cast<uint32_t>(u));
      }));
    } else {
      ASSIGN_OR_RETURN(auto recent,
                       ScanMessages(store, mut.mbx(), f->folder_id(), f->recent_from(), f->uidnext()));
      for (const auto& [uid, m] : recent) uids.push_back(uid);
    }
    storage::FolderRecord* w = mut.MutableFolder(f->folder_id());
    w->set_recent_from(w->uidnext());
    w->set_recent(0);
    return absl::OkStatus();
  }));
  return uids;
}

}  // namespace

absl::StatusOr<v1::SelectFolderResponse> MailStore::SelectFolder(const v1::SelectFolderRequest& r) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  const storage::FolderRecord* f = FindFolder(m, r.folder());
  if (f == nullptr || f->noselect()) return FolderNotFound();
  v1::SelectFolderResponse out;
  v1::FolderStatusResponse* st = out.mutable_status();
  uint32_t claimed = 0;
  if (r.claim_recent() && f->recent() > 0) {
    ASSIGN_OR_RETURN(std::vector<uint32_t> uids, ClaimRecent(this, r.mailbox_id(), r.folder()));
    claimed = static_cast<uint32_t>(uids.size());
    ToIdSet(uids, st->mutable_recent_uids());
    // Everything else from the state after the claim.
    ASSIGN_OR_RETURN(m, LoadMailbox(r.mailbox_id()));
    f = FindFolder(m, r.folder());
    if (f == nullptr || f->noselect()) return FolderNotFound();
  }
  *st->mutable_folder() = FolderToProto(m, *f);
  // RECENT as this caller sees it: what it claimed, and any that came since.
  if (claimed > 0) st->mutable_folder()->set_recent(f->recent() + claimed);
  if (f->unseen() > 0) {
    std::string p = keys::UnseenPrefix(m.tenant, m.id, f->folder_id());
    RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), true, 1, false, [&](const kv::v1::KeyValue& kv) {
      st->set_first_unseen_uid(keys::ReadBe32(kv.key()));
      return false;
    }));
  }
  if (r.include_uids()) {
    // Ranges straight from the UID map: no per-UID vector for a large folder.
    v1::IdSet* set = st->mutable_uids();
    RETURN_IF_ERROR(ForEachUidRange(this, m, *f, [&](uint32_t a, uint32_t b) {
      auto* r = set->add_ranges();
      r->set_first(a);
      r->set_last(b);
    }));
  }
  if (r.has_changes() &&
      (r.changes().uidvalidity() == 0 || r.changes().uidvalidity() == f->uidvalidity())) {
    ASSIGN_OR_RETURN(*out.mutable_changes(), ChangesIn(m, *f, r.changes()));
  }
  return out;
}

absl::StatusOr<v1::FolderStatusResponse> MailStore::FolderStatus(const v1::FolderStatusRequest& r) {
  v1::SelectFolderRequest s;
  s.set_mailbox_id(r.mailbox_id());
  *s.mutable_folder() = r.folder();
  s.set_claim_recent(r.claim_recent());
  s.set_include_uids(r.include_uids());
  ASSIGN_OR_RETURN(v1::SelectFolderResponse out, SelectFolder(s));
  return std::move(*out.mutable_status());
}

}  // namespace mailgrid::mailstore
