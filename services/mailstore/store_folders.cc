// Folder rename/delete and mailbox deletion: the changes that may touch
// many messages run as several bounded writes (each atomic on its own).
#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {
namespace {

constexpr size_t kBatch = 500;

// Removes every message of a folder, kBatch per write. Returns the count.
absl::StatusOr<int64_t> EmptyFolder(MailStore* store, const std::string& mailbox_id,
                                    const std::string& folder_id) {
  int64_t total = 0;
  for (;;) {
    size_t removed = 0;
    RETURN_IF_ERROR(RunMutation(store, mailbox_id, [&](Mutation& mut) -> absl::Status {
      removed = 0;
      std::vector<std::pair<uint32_t, storage::MessageRecord>> list;
      std::string p = keys::MessagePrefix(mut.tenant(), mut.mailbox(), folder_id);
      absl::Status bad;
      RETURN_IF_ERROR(store->ScanRange(p, keys::PrefixEnd(p), false, kBatch, false,
                                       [&](const kv::v1::KeyValue& kv) {
                                         storage::MessageRecord m;
                                         if (!m.ParseFromString(kv.value())) {
                                           bad = absl::DataLossError("message record");
                                           return false;
                                         }
                                         list.emplace_back(keys::ReadBe32(kv.key()), std::move(m));
                                         return true;
                                       }));
      RETURN_IF_ERROR(bad);
      std::vector<uint32_t> uids;
      RETURN_IF_ERROR(ExpungeIn(mut, folder_id, list, &uids, nullptr));
      removed = uids.size();
      return absl::OkStatus();
    }));
    total += static_cast<int64_t>(removed);
    if (removed < kBatch) return total;
  }
}

}  // namespace

absl::StatusOr<v1::Folder> MailStore::RenameFolder(const v1::RenameFolderRequest& r) {
  RETURN_IF_ERROR(ValidateFolderName(r.new_name(), "new_name"));
  ASSIGN_OR_RETURN(Mbx before, LoadMailbox(r.mailbox_id()));
  const auto* src = FindFolder(before, r.folder());
  if (src == nullptr) return FolderNotFound();
  if (src->special_use() == v1::SPECIAL_USE_INBOX) {
    // RFC 3501: INBOX's messages move to a new folder; INBOX stays, empty.
    v1::CreateFolderRequest c;
    c.set_mailbox_id(r.mailbox_id());
    c.set_name(r.new_name());
    ASSIGN_OR_RETURN(v1::Folder created, CreateFolder(c));
    for (;;) {
      v1::MoveRequest mv;
      mv.set_mailbox_id(r.mailbox_id());
      mv.mutable_source()->set_special_use(v1::SPECIAL_USE_INBOX);
      mv.mutable_destination()->set_folder_id(created.folder_id());
      auto* range = mv.mutable_messages()->mutable_sequence_numbers()->add_ranges();
      range->set_first(1);
      range->set_last(kBatch);
      ASSIGN_OR_RETURN(v1::MoveResponse moved, Move(mv));
      if (moved.source_uids_size() == 0) break;
    }
    v1::FolderStatusRequest st;
    st.set_mailbox_id(r.mailbox_id());
    st.mutable_folder()->set_folder_id(created.folder_id());
    ASSIGN_OR_RETURN(auto status, FolderStatus(st));
    return status.folder();
  }
  v1::Folder out;
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
    const auto* f = FindFolder(mut.mbx(), r.folder());
    if (f == nullptr) return FolderNotFound();
    std::string old_name = f->name(), id = f->folder_id();
    if (r.new_name() == old_name) {
      out = FolderToProto(mut.mbx(), *f);
      return absl::OkStatus();
    }
    if (absl::StartsWith(r.new_name(), old_name + "/"))
      return InvalidField("new_name", "CYCLE", "cannot move a folder under itself");
    if (FindFolderByName(mut.mbx(), r.new_name()) != nullptr ||
        absl::EqualsIgnoreCase(r.new_name(), "INBOX"))
      return AlreadyExists("new_name", "ALREADY_EXISTS", "folder exists");
    // Missing parents of the new name.
    size_t slash = r.new_name().rfind('/');
    if (slash != std::string::npos) {
      std::string parent = r.new_name().substr(0, slash);
      if (FindFolderByName(mut.mbx(), parent) == nullptr)
        RETURN_IF_ERROR(CreateFolderIn(mut, parent, 0, options_.max_folders).status());
    }
    std::vector<std::string> ids;
    for (const auto& [g, v] : mut.mbx().folders)
      if (g.folder_id() == id || absl::StartsWith(g.name(), old_name + "/")) ids.push_back(g.folder_id());
    for (const std::string& gid : ids) {
      storage::FolderRecord* g = mut.MutableFolder(gid);
      std::string was = g->name();
      g->set_name(r.new_name() + was.substr(old_name.size()));
      v1::WatchEvent e;
      e.set_kind(v1::WATCH_EVENT_KIND_FOLDER_RENAMED);
      e.set_folder_id(gid);
      e.set_folder_name(g->name());
      e.set_old_folder_name(was);
      e.set_modseq(mut.NextModseq());
      e.set_uidvalidity(g->uidvalidity());
      e.set_messages_count(g->messages());
      mut.Event(std::move(e));
    }
    // The in-memory view for FolderToProto.
    for (auto& [g, v] : mut.mbx().folders)
      if (g.folder_id() == id || absl::StartsWith(g.name(), old_name + "/"))
        g.set_name(r.new_name() + g.name().substr(old_name.size()));
    out = FolderToProto(mut.mbx(), *mut.MutableFolder(id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<v1::DeleteFolderResponse> MailStore::DeleteFolder(const v1::DeleteFolderRequest& r) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  const auto* f = FindFolder(m, r.folder());
  if (f == nullptr) return FolderNotFound();
  if (f->special_use() == v1::SPECIAL_USE_INBOX) return Precondition("INBOX", "INBOX cannot be deleted");
  bool children = false;
  for (const auto& [g, v] : m.folders) children |= absl::StartsWith(g.name(), f->name() + "/");
  if (children && f->noselect())
    return Precondition("ALREADY_NOSELECT", "the folder is \\Noselect and has children");
  std::string id = f->folder_id();
  v1::DeleteFolderResponse out;
  ASSIGN_OR_RETURN(int64_t n, EmptyFolder(this, r.mailbox_id(), id));
  out.set_messages_deleted(n);
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
    storage::FolderRecord* g = mut.MutableFolder(id);
    if (g == nullptr) return FolderNotFound();
    v1::WatchEvent e;
    e.set_kind(v1::WATCH_EVENT_KIND_FOLDER_DELETED);
    e.set_folder_id(id);
    e.set_folder_name(g->name());
    e.set_modseq(mut.NextModseq());
    e.set_uidvalidity(g->uidvalidity());
    if (children) {
      g->set_noselect(true);  // RFC 3501: stays as the parent of others
    } else {
      mut.RemoveFolder(id);
      std::string t = keys::TombstonePrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(t, keys::PrefixEnd(t));
      std::string q = keys::ModseqPrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(q, keys::PrefixEnd(q));
      std::string p = keys::FolderPostingsPrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(p, keys::PrefixEnd(p));
      std::string w = keys::TermBlocksPrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(w, keys::PrefixEnd(w));
      mut.Delete(keys::IndexMark(mut.tenant(), mut.mailbox(), id));  // fails a round in flight
      std::string a = keys::AttrPrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(a, keys::PrefixEnd(a));
      std::string k = keys::UidMapPrefix(mut.tenant(), mut.mailbox(), id);
      mut.DeleteRange(k, keys::PrefixEnd(k));
    }
    mut.Event(std::move(e));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<v1::DeleteMailboxResponse> MailStore::DeleteMailbox(const std::string& mailbox_id) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(mailbox_id));
  v1::DeleteMailboxResponse out;
  uint64_t bytes = m.rec.usage_bytes();
  for (const auto& [f, v] : m.folders) {
    ASSIGN_OR_RETURN(int64_t n, EmptyFolder(this, mailbox_id, f.folder_id()));
    out.set_messages_deleted(out.messages_deleted() + n);
  }
  out.set_bytes_freed(static_cast<int64_t>(bytes));
  absl::Mutex* mu = MailboxLock(mailbox_id);
  absl::MutexLock lock(mu);
  kv::v1::WriteRequest w;
  std::string range = keys::MailboxRange(m.tenant, mailbox_id);
  auto* d = w.add_ops()->mutable_delete_range();
  d->set_start(range);
  d->set_end(keys::PrefixEnd(range));
  w.add_ops()->mutable_delete_()->set_key(keys::Mailbox(m.tenant, mailbox_id));
  w.add_ops()->mutable_delete_()->set_key(keys::MailboxIndex(mailbox_id));
  w.add_ops()->mutable_delete_()->set_key(keys::TenantMailbox(m.tenant, mailbox_id));
  w.add_ops()->mutable_delete_()->set_key(keys::IndexQueue(mailbox_id));
  auto resp = store_->Write(w, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  {
    absl::MutexLock tl(&tenant_mu_);
    tenant_of_.erase(mailbox_id);
  }
  {
    absl::MutexLock fl(&folder_cache_->mu);
    folder_cache_->by_mailbox.erase(mailbox_id);
  }
  Committed(m.tenant, mailbox_id);
  return out;
}

}  // namespace mailgrid::mailstore
