// MailStore basics: reads, the mutation builder, mailboxes and folders.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"
#include "services/mailstore/store_internal.h"
#include "services/mailstore/term_block.h"

namespace mailgrid::mailstore {

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }
google::protobuf::Timestamp MicrosToTs(int64_t micros) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(micros / 1000000);
  ts.set_nanos(static_cast<int32_t>((micros % 1000000) * 1000));
  return ts;
}
int64_t TsToMicros(const google::protobuf::Timestamp& ts) {
  return ts.seconds() * 1000000 + ts.nanos() / 1000;
}

absl::Status MailboxNotFound(const std::string& id) { return NotFound("mailbox", id); }
absl::Status FolderNotFound() { return NotFound("folder", "(requested)"); }
absl::Status Unavailable(const absl::Status& from) {
  if (from.code() == absl::StatusCode::kFailedPrecondition ||
      from.code() == absl::StatusCode::kDeadlineExceeded)
    return absl::UnavailableError(absl::StrCat("store: ", from.message()));
  return from;
}

// ---------------------------------------------------------------- flags

absl::StatusOr<std::string> CanonicalFlag(const std::string& flag, size_t index) {
  static const char* system[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"};
  std::string field = absl::StrCat("flags[", index, "]");
  if (flag.empty() || flag.size() > 64) return InvalidField(field, "BAD_FLAG", "empty or over 64 bytes");
  if (flag[0] == '\\') {
    for (const char* s : system)
      if (absl::EqualsIgnoreCase(flag, s)) return std::string(s);
    return InvalidField(field, "BAD_FLAG",
                        absl::EqualsIgnoreCase(flag, "\\Recent") ? "\\Recent is not storable"
                                                                 : "unknown system flag");
  }
  for (unsigned char c : flag) {
    if (c <= 0x20 || c >= 0x7f || c == '(' || c == ')' || c == '{' || c == '%' || c == '*' ||
        c == '"' || c == '\\' || c == ']')
      return InvalidField(field, "BAD_FLAG", "a keyword is an IMAP atom");
  }
  return flag;
}

bool HasFlag(const google::protobuf::RepeatedPtrField<std::string>& flags, std::string_view flag) {
  for (const auto& f : flags)
    if (absl::EqualsIgnoreCase(f, ToAbsl(flag))) return true;
  return false;
}

// ---------------------------------------------------------------- MailStore


absl::StatusOr<kv::v1::GetResponse> MailStore::Get(const std::string& key) {
  kv::v1::GetRequest r;
  r.set_key(key);
  r.set_consistency(options_.reads);
  auto resp = store_->Get(r, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  return resp;
}

absl::Status MailStore::ScanRange(const std::string& start, const std::string& end,
                                  bool keys_only, size_t limit, bool reverse,
                                  const std::function<bool(const kv::v1::KeyValue&)>& each) {
  kv::v1::ScanRequest r;
  r.mutable_key_range()->set_start(start);
  r.mutable_key_range()->set_end(end);
  r.set_keys_only(keys_only);
  r.set_reverse(reverse);
  r.set_consistency(options_.reads);
  size_t seen = 0;
  for (;;) {
    r.set_limit(static_cast<uint32_t>(std::min<size_t>(limit - seen, 1000)));
    auto resp = store_->Scan(r, absl::Now() + options_.timeout);
    if (!resp.ok()) return Unavailable(resp.status());
    for (const auto& kv : resp->entries()) {
      ++seen;
      if (!each(kv)) return absl::OkStatus();
      if (seen >= limit) return absl::OkStatus();
    }
    if (resp->continuation().empty()) return absl::OkStatus();
    r.set_continuation(resp->continuation());
  }
}

absl::StatusOr<std::string> MailStore::TenantOf(const std::string& mailbox_id) {
  if (!keys::ValidId(mailbox_id)) return MailboxNotFound(mailbox_id);
  {
    absl::MutexLock lock(&tenant_mu_);
    if (auto it = tenant_of_.find(mailbox_id); it != tenant_of_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(auto got, Get(keys::MailboxIndex(mailbox_id)));
  if (!got.found()) return MailboxNotFound(mailbox_id);
  absl::MutexLock lock(&tenant_mu_);
  tenant_of_[mailbox_id] = got.value();
  return got.value();
}

absl::StatusOr<MailStore::Mbx> MailStore::LoadMailbox(const std::string& mailbox_id,
                                                      bool with_folders) {
  ASSIGN_OR_RETURN(std::string tenant, TenantOf(mailbox_id));
  Mbx m;
  m.tenant = tenant;
  m.id = mailbox_id;
  ASSIGN_OR_RETURN(auto got, Get(keys::Mailbox(tenant, mailbox_id)));
  if (!got.found()) {
    absl::MutexLock lock(&tenant_mu_);
    tenant_of_.erase(mailbox_id);  // deleted meanwhile
    return MailboxNotFound(mailbox_id);
  }
  if (!m.rec.ParseFromString(got.value())) return absl::DataLossError("mailbox record");
  m.version = got.version();
  if (with_folders) {
    {
      absl::MutexLock lock(&folder_cache_->mu);
      auto it = folder_cache_->by_mailbox.find(mailbox_id);
      if (it != folder_cache_->by_mailbox.end() && it->second.version == m.version) {
        m.folders = it->second.folders;
        return m;
      }
    }
    std::string p = keys::FolderPrefix(tenant, mailbox_id);
    absl::Status bad;
    RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), false, 1u << 20, false,
                              [&](const kv::v1::KeyValue& kv) {
                                storage::FolderRecord f;
                                if (!f.ParseFromString(kv.value())) {
                                  bad = absl::DataLossError("folder record");
                                  return false;
                                }
                                m.folders.emplace_back(std::move(f), kv.version());
                                return true;
                              }));
    RETURN_IF_ERROR(bad);
    std::sort(m.folders.begin(), m.folders.end(),
              [](const auto& a, const auto& b) { return a.first.name() < b.first.name(); });
    // Cached only when no folder was written after the mailbox record was
    // read (the two reads are not one snapshot): a folder written later
    // carries a later version than the record.
    bool consistent = true;
    for (const auto& [f, v] : m.folders) consistent &= v <= m.version;
    if (consistent) {
      absl::MutexLock lock(&folder_cache_->mu);
      if (folder_cache_->by_mailbox.size() >= FolderCache::kMaxMailboxes)
        folder_cache_->by_mailbox.clear();
      folder_cache_->by_mailbox[mailbox_id] = FolderCache::Entry{m.version, m.folders};
    }
  }
  return m;
}

absl::StatusOr<storage::BodyRecord> MailStore::LoadBody(const std::string& tenant,
                                                        const std::string& sha) {
  ASSIGN_OR_RETURN(auto got, Get(keys::Body(tenant, sha)));
  if (!got.found()) return absl::DataLossError(absl::StrCat("body ", sha, " missing"));
  storage::BodyRecord b;
  if (!b.ParseFromString(got.value())) return absl::DataLossError("body record");
  return b;
}

absl::StatusOr<std::string> MailStore::LoadBodyBytes(const std::string& tenant,
                                                     const std::string& sha,
                                                     const storage::BodyRecord& body) {
  std::string out;
  out.reserve(body.size());
  for (uint32_t i = 0; i < body.chunks(); ++i) {
    ASSIGN_OR_RETURN(auto got, Get(keys::BodyChunk(tenant, sha, i)));
    if (!got.found()) return absl::DataLossError(absl::StrCat("body ", sha, " chunk missing"));
    ASSIGN_OR_RETURN(std::string piece, DecompressChunk(got.value()));
    out += piece;
  }
  if (out.size() != body.size()) return absl::DataLossError("body size differs from its record");
  return out;
}

absl::Mutex* MailStore::MailboxLock(const std::string& mailbox_id) {
  absl::MutexLock lock(&locks_mu_);
  auto& slot = locks_[mailbox_id];
  if (!slot) slot = std::make_unique<absl::Mutex>();
  return slot.get();
}

MailStore::Combiner* MailStore::CombinerFor(const std::string& mailbox_id) {
  absl::MutexLock lock(&locks_mu_);
  auto& slot = combiners_[mailbox_id];
  if (!slot) slot = std::make_unique<Combiner>();
  return slot.get();
}

void MailStore::Committed(const std::string& tenant, const std::string& mailbox) {
  if (listener_) listener_(tenant, mailbox);
}

// ---------------------------------------------------------------- Mutation

storage::FolderRecord* Mutation::MutableFolder(const std::string& folder_id) {
  auto it = dirty_folders_.find(folder_id);
  if (it != dirty_folders_.end()) return &it->second;
  for (auto& [f, v] : mbx_->folders) {
    if (f.folder_id() == folder_id) {
      Condition(keys::Folder(tenant(), mailbox(), folder_id), v);
      return &dirty_folders_.emplace(folder_id, f).first->second;
    }
  }
  return nullptr;
}

storage::FolderRecord* Mutation::AddFolder(storage::FolderRecord rec) {
  std::string id = rec.folder_id();
  mbx_->folders.emplace_back(rec, 0);
  Condition(keys::Folder(tenant(), mailbox(), id), 0);
  mbx_->rec.set_folder_count(mbx_->rec.folder_count() + 1);
  return &dirty_folders_.emplace(id, std::move(rec)).first->second;
}

void Mutation::RemoveFolder(const std::string& folder_id) {
  dirty_folders_.erase(folder_id);
  removed_folders_.insert(folder_id);
  mbx_->rec.set_folder_count(mbx_->rec.folder_count() - 1);
}

void Mutation::Put(const std::string& key, const google::protobuf::Message& value) {
  auto* p = req_.add_ops()->mutable_put();
  p->set_key(key);
  p->set_value(value.SerializeAsString());
}
void Mutation::PutRaw(const std::string& key, std::string value) {
  auto* p = req_.add_ops()->mutable_put();
  p->set_key(key);
  p->set_value(std::move(value));
}
void Mutation::Delete(const std::string& key) { req_.add_ops()->mutable_delete_()->set_key(key); }
void Mutation::DeleteRange(const std::string& start, const std::string& end) {
  auto* d = req_.add_ops()->mutable_delete_range();
  d->set_start(start);
  d->set_end(end);
}
void Mutation::Condition(const std::string& key, uint64_t version) {
  auto* c = req_.add_conditions();
  c->set_key(key);
  c->set_kind(kv::v1::Condition::VERSION_EQUALS);
  c->set_version(version);
}

void Mutation::Event(v1::WatchEvent event) {
  event.set_cursor(absl::StrCat(event.modseq()));
  *event.mutable_at() = MicrosToTs(NowMicros());
  storage::ChangeRecord rec;
  *rec.mutable_event() = event;
  Put(keys::Change(tenant(), mailbox(), event.modseq()), rec);
  uint64_t keep = store_->options().feed_keep;
  if (event.modseq() > keep) Delete(keys::Change(tenant(), mailbox(), event.modseq() - keep));
  events_.push_back(std::move(event));
}

absl::Status Mutation::RefBody(const std::string& sha, int64_t delta, const Ingested* fresh) {
  BodyRef& r = bodies_[sha];
  r.delta += delta;
  if (fresh != nullptr) r.fresh = fresh;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Mutation::TermsOf(const std::string& sha) {
  if (auto it = terms_cache_.find(sha); it != terms_cache_.end()) return it->second;
  ASSIGN_OR_RETURN(auto got, store_->Get(keys::BodyTerms(tenant(), sha)));
  std::vector<std::string> v;
  if (!got.found()) {
    // A body this mutation stores (RefBody with `fresh`) has no record yet.
    // A stored body's own terms win over a fresh ingest of the same bytes:
    // expunge removes what the stored record lists (an older mailstored's
    // ingest may have made fewer terms).
    if (auto it = bodies_.find(sha); it != bodies_.end() && it->second.fresh != nullptr) {
      header_terms_cache_[sha] = true;
      return terms_cache_[sha] = it->second.fresh->terms;
    }
  }
  storage::BodyTerms t;
  if (got.found() && !t.ParseFromString(got.value())) return absl::DataLossError("body terms");
  v.assign(t.terms().begin(), t.terms().end());
  terms_cache_[sha] = v;
  header_terms_cache_[sha] = t.header_terms();
  return v;
}

absl::StatusOr<bool> Mutation::HasHeaderTerms(const std::string& sha) {
  RETURN_IF_ERROR(TermsOf(sha).status());
  return header_terms_cache_[sha];
}

absl::StatusOr<std::vector<std::string>> Mutation::MessageTerms(const storage::MessageRecord& msg) {
  ASSIGN_OR_RETURN(std::vector<std::string> terms, TermsOf(msg.body_sha()));
  if (!msg.prepend().empty()) {
    for (auto& t : HeaderBlockTerms(msg.prepend(), store_->options().limits.max_terms))
      terms.push_back(std::move(t));
  }
  std::sort(terms.begin(), terms.end());
  terms.erase(std::unique(terms.begin(), terms.end()), terms.end());
  return terms;
}

void Mutation::EditBlock(const std::string& folder_id, const std::string& term, uint32_t uid,
                         bool add) {
  BlockEdit& e = block_edits_[{folder_id, term, termblock::BlockOf(uid)}];
  (add ? e.add : e.remove).push_back(uid);
}

void Mutation::MarkIndexPending() {
  // Every such write re-queues the mailbox: the indexer, which never
  // writes the mailbox record, drops the key only if no delivery put it
  // since it looked (conditional on its version).
  if (queued_) return;
  queued_ = true;
  PutRaw(keys::IndexQueue(mailbox()), "");
}

absl::StatusOr<IndexWatermark> ReadIndexWatermark(MailStore* store, const MailStore::Mbx& m,
                                                  const storage::FolderRecord& f) {
  IndexWatermark w;
  w.below = f.indexed_below();
  ASSIGN_OR_RETURN(auto got, store->Get(keys::IndexMark(m.tenant, m.id, f.folder_id())));
  if (!got.found()) return w;
  storage::IndexMark mark;
  if (!mark.ParseFromString(got.value())) return absl::DataLossError("index mark");
  w.below = std::max(w.below, mark.indexed_below());
  w.version = got.version();
  return w;
}

absl::StatusOr<Mutation::Mark*> Mutation::LoadMark(const storage::FolderRecord& f) {
  auto it = marks_.find(f.folder_id());
  if (it == marks_.end()) {
    ASSIGN_OR_RETURN(IndexWatermark w, ReadIndexWatermark(store_, *mbx_, f));
    Mark mk;
    mk.read = w;
    mk.below = w.below;
    it = marks_.emplace(f.folder_id(), mk).first;
  }
  return &it->second;
}

absl::StatusOr<uint32_t> Mutation::IndexedBelow(const storage::FolderRecord& f) {
  ASSIGN_OR_RETURN(Mark * mk, LoadMark(f));
  return mk->below;
}

absl::Status Mutation::SetIndexedBelow(const storage::FolderRecord& f, uint32_t below) {
  ASSIGN_OR_RETURN(Mark * mk, LoadMark(f));
  mk->below = std::max(mk->below, below);
  mk->write = true;
  marks_dirty_ = true;
  return absl::OkStatus();
}

void Mutation::StageMarks() {
  for (const auto& [folder, mk] : marks_) {
    if (!mk.write || removed_folders_.count(folder)) continue;
    std::string k = keys::IndexMark(tenant(), mailbox(), folder);
    storage::IndexMark rec;
    rec.set_indexed_below(mk.below);
    Put(k, rec);
    Condition(k, mk.read.version);
  }
}

absl::Status Mutation::StageBlocks() {
  // Reads are covered by the folder's IndexMark condition (StageMarks):
  // every writer of a folder's blocks (a removal of a message, the
  // indexer's round) rewrites that key in the same write.
  for (auto& [key, e] : block_edits_) {
    const auto& [folder, term, block] = key;
    if (removed_folders_.count(folder)) continue;  // its w/ range is deleted
    std::sort(e.add.begin(), e.add.end());
    e.add.erase(std::unique(e.add.begin(), e.add.end()), e.add.end());
    std::sort(e.remove.begin(), e.remove.end());
    e.remove.erase(std::unique(e.remove.begin(), e.remove.end()), e.remove.end());
    std::string k = keys::TermBlock(tenant(), mailbox(), folder, term, block);
    ASSIGN_OR_RETURN(auto got, store_->Get(k));
    std::string before = got.found() ? got.value() : std::string();
    ASSIGN_OR_RETURN(std::string after, termblock::Apply(before, block, e.add, e.remove));
    if (after == before) continue;
    if (after.empty()) Delete(k);
    else PutRaw(k, std::move(after));
  }
  block_edits_.clear();
  return absl::OkStatus();
}

absl::Status Mutation::MarkUid(const std::string& folder_id, uint32_t uid, bool on) {
  auto key = std::make_pair(folder_id, uidmap::BlockOf(uid));
  auto it = uid_blocks_.find(key);
  if (it == uid_blocks_.end()) {
    // The mailbox record's version condition covers this read: every
    // change of the folder's UIDs rewrites that record.
    ASSIGN_OR_RETURN(auto got, store_->Get(keys::UidMapBlock(tenant(), mailbox(), folder_id, key.second)));
    it = uid_blocks_.emplace(key, got.found() ? got.value() : std::string()).first;
  }
  uidmap::Set(&it->second, uid, on);
  return absl::OkStatus();
}

void Mutation::PrependPostings(const storage::FolderRecord& f, uint32_t uid,
                               const storage::MessageRecord& msg, bool add) {
  if (msg.prepend().empty()) return;
  for (const auto& t : HeaderBlockTerms(msg.prepend(), store_->options().limits.max_terms)) {
    std::string k = keys::FolderPosting(tenant(), mailbox(), f.folder_id(), t, uid);
    if (add) PutRaw(k, "");
    else Delete(k);
  }
}

absl::Status Mutation::InsertMessage(storage::FolderRecord* f, uint32_t uid,
                                     const storage::MessageRecord& msg) {
  Put(keys::Message(tenant(), mailbox(), f->folder_id(), uid), msg);
  if (f->uid_map()) RETURN_IF_ERROR(MarkUid(f->folder_id(), uid, true));
  if (f->modseq_index())
    PutRaw(keys::ModseqEntry(tenant(), mailbox(), f->folder_id(), msg.modseq(), uid), "");
  if (f->block_postings()) {
    // No postings in this write: the indexer adds the message to its
    // terms' UID blocks later (uid >= indexed_below until then; search
    // reads its stored terms meanwhile).
    if (f->header_postings()) {
      ASSIGN_OR_RETURN(bool complete, HasHeaderTerms(msg.body_sha()));
      if (!complete) f->set_header_postings(false);
    }
    MarkIndexPending();
  } else if (f->uid_postings()) {
    // One posting per term per message, keyed by UID (the caller called
    // RefBody with `fresh` first when the body is new).
    ASSIGN_OR_RETURN(auto terms, TermsOf(msg.body_sha()));
    for (const auto& t : terms)
      PutRaw(keys::FolderPosting(tenant(), mailbox(), f->folder_id(), t, uid), "");
    if (f->header_postings()) {
      ASSIGN_OR_RETURN(bool complete, HasHeaderTerms(msg.body_sha()));
      // A body stored before header terms existed: the folder's header
      // index would miss this message, so SEARCH HEADER reads headers again.
      if (!complete) f->set_header_postings(false);
    }
    PrependPostings(*f, uid, msg, true);
  } else {
    PutRaw(keys::Location(tenant(), mailbox(), msg.body_sha(), f->folder_id(), uid), "");
    links_[msg.body_sha()].added++;
  }
  if (f->attr_index()) IndexAttrs(*f, uid, msg, true);
  f->set_messages(f->messages() + 1);
  f->set_size_bytes(f->size_bytes() + msg.size());
  if (uid >= f->recent_from()) f->set_recent(f->recent() + 1);
  if (!HasFlag(msg.flags(), "\\Seen")) {
    f->set_unseen(f->unseen() + 1);
    PutRaw(keys::Unseen(tenant(), mailbox(), f->folder_id(), uid), "");
  }
  f->set_highest_modseq(std::max(f->highest_modseq(), msg.modseq()));
  mbx_->rec.set_usage_bytes(mbx_->rec.usage_bytes() + msg.size());
  mbx_->rec.set_usage_messages(mbx_->rec.usage_messages() + 1);
  return absl::OkStatus();
}

absl::Status Mutation::RemoveMessage(storage::FolderRecord* f, uint32_t uid,
                                     const storage::MessageRecord& msg, uint64_t modseq) {
  Delete(keys::Message(tenant(), mailbox(), f->folder_id(), uid));
  if (f->uid_map()) RETURN_IF_ERROR(MarkUid(f->folder_id(), uid, false));
  if (f->modseq_index()) {
    // The live entry becomes the tombstone, at the expunge's MODSEQ.
    Delete(keys::ModseqEntry(tenant(), mailbox(), f->folder_id(), msg.modseq(), uid));
    PutRaw(keys::ModseqEntry(tenant(), mailbox(), f->folder_id(), modseq, uid), "x");
  } else {
    std::string ts;
    keys::AppendBe64(modseq, &ts);
    PutRaw(keys::Tombstone(tenant(), mailbox(), f->folder_id(), uid), ts);
  }
  if (f->attr_index()) IndexAttrs(*f, uid, msg, false);
  f->set_messages(f->messages() - 1);
  f->set_size_bytes(f->size_bytes() - std::min(f->size_bytes(), msg.size()));
  if (uid >= f->recent_from() && f->recent() > 0) f->set_recent(f->recent() - 1);
  if (!HasFlag(msg.flags(), "\\Seen")) {
    if (f->unseen() > 0) f->set_unseen(f->unseen() - 1);
    Delete(keys::Unseen(tenant(), mailbox(), f->folder_id(), uid));
  }
  f->set_highest_modseq(std::max(f->highest_modseq(), modseq));
  if (f->block_postings()) {
    // Only an indexed message is in the blocks; one above the watermark
    // has nothing to remove (a round planned before this write fails its
    // condition, since the watermark is rewritten here unchanged, and
    // re-plans without the message). A folder being migrated still has the
    // "p/" postings of the messages below legacy_postings_below that the
    // indexer has not moved yet.
    ASSIGN_OR_RETURN(uint32_t indexed_below, IndexedBelow(*f));
    RETURN_IF_ERROR(SetIndexedBelow(*f, indexed_below));
    if (uid < indexed_below) {
      ASSIGN_OR_RETURN(auto terms, MessageTerms(msg));
      for (const auto& t : terms) EditBlock(f->folder_id(), t, uid, false);
    } else if (uid < f->legacy_postings_below()) {
      RETURN_IF_ERROR(DeleteUidPostings(*f, uid, msg));
    }
  } else if (f->uid_postings()) {
    RETURN_IF_ERROR(DeleteUidPostings(*f, uid, msg));
  } else {
    std::string loc = keys::Location(tenant(), mailbox(), msg.body_sha(), f->folder_id(), uid);
    Delete(loc);
    links_[msg.body_sha()].removed_keys.insert(loc);
  }
  mbx_->rec.set_usage_bytes(mbx_->rec.usage_bytes() - std::min(mbx_->rec.usage_bytes(), msg.size()));
  if (mbx_->rec.usage_messages() > 0) mbx_->rec.set_usage_messages(mbx_->rec.usage_messages() - 1);
  return RefBody(msg.body_sha(), -1);
}

absl::Status Mutation::DeleteUidPostings(const storage::FolderRecord& f, uint32_t uid,
                                         const storage::MessageRecord& msg) {
  ASSIGN_OR_RETURN(auto terms, TermsOf(msg.body_sha()));
  for (const auto& t : terms) Delete(keys::FolderPosting(tenant(), mailbox(), f.folder_id(), t, uid));
  PrependPostings(f, uid, msg, false);
  return absl::OkStatus();
}

void Mutation::StartBlockMigration(storage::FolderRecord* f) {
  f->set_block_postings(true);
  f->set_indexed_below(1);
  // Every message below UIDNEXT may have "p/" postings; later ones are
  // delivered into the block layout (not indexed yet, like any delivery).
  f->set_legacy_postings_below(std::max<uint32_t>(f->uidnext(), 1));
  MarkIndexPending();
}

void Mutation::UpdateMessage(const storage::FolderRecord& f, uint32_t uid,
                             const storage::MessageRecord& before,
                             const storage::MessageRecord& msg) {
  Put(keys::Message(tenant(), mailbox(), f.folder_id(), uid), msg);
  if (f.modseq_index() && before.modseq() != msg.modseq()) {
    Delete(keys::ModseqEntry(tenant(), mailbox(), f.folder_id(), before.modseq(), uid));
    PutRaw(keys::ModseqEntry(tenant(), mailbox(), f.folder_id(), msg.modseq(), uid), "");
  }
  if (f.attr_index()) {
    // Only the flags can change (dates and size are immutable): the flag
    // keys that went, then those that came (a Delete and Put of one key in
    // one write: the later op wins, so order matters only for a flag in both).
    for (const auto& fl : before.flags())
      if (!HasFlag(msg.flags(), fl) && IndexedFlag(fl))
        Delete(keys::AttrFlag(tenant(), mailbox(), f.folder_id(), fl, uid));
    for (const auto& fl : msg.flags())
      if (!HasFlag(before.flags(), fl) && IndexedFlag(fl))
        PutRaw(keys::AttrFlag(tenant(), mailbox(), f.folder_id(), fl, uid), "");
  }
}

bool IndexedFlag(std::string_view flag) {
  return !absl::EqualsIgnoreCase(ToAbsl(flag), "\\Seen");  // n/ (unseen) answers \Seen
}

void Mutation::IndexAttrs(const storage::FolderRecord& f, uint32_t uid,
                          const storage::MessageRecord& msg, bool add) {
  const std::string& fid = f.folder_id();
  auto op = [&](std::string key) {
    if (add) {
      PutRaw(std::move(key), "");
    } else {
      Delete(key);
    }
  };
  op(keys::AttrValue(tenant(), mailbox(), fid, 'i', keys::OrderedMicros(msg.internal_micros()), uid));
  if (msg.sent_micros() != 0)
    op(keys::AttrValue(tenant(), mailbox(), fid, 'd', keys::OrderedMicros(msg.sent_micros()), uid));
  op(keys::AttrValue(tenant(), mailbox(), fid, 'z', msg.size(), uid));
  for (const auto& fl : msg.flags())
    if (IndexedFlag(fl)) op(keys::AttrFlag(tenant(), mailbox(), fid, fl, uid));
}

void Mutation::PutIdem(const std::string& key, const storage::IdemRecord& rec) {
  Put(key, rec);
  idem_[key] = rec;
}

const storage::IdemRecord* Mutation::PlannedIdem(const std::string& key) const {
  auto it = idem_.find(key);
  return it == idem_.end() ? nullptr : &it->second;
}

absl::StatusOr<std::optional<storage::IdemRecord>> Mutation::FindIdem(const std::string& key,
                                                                      absl::Duration window) {
  if (const storage::IdemRecord* planned = PlannedIdem(key)) return *planned;
  ASSIGN_OR_RETURN(auto got, store_->Get(key));
  storage::IdemRecord rec;
  if (got.found() && rec.ParseFromString(got.value()) &&
      rec.at_micros() + absl::ToInt64Microseconds(window) > NowMicros()) {
    return rec;
  }
  Condition(key, got.found() ? got.version() : 0);
  return std::nullopt;
}

void Mutation::FlagsChanged(storage::FolderRecord* f, uint32_t uid, bool was_seen, bool now_seen) {
  if (was_seen == now_seen) return;
  if (now_seen) {
    if (f->unseen() > 0) f->set_unseen(f->unseen() - 1);
    Delete(keys::Unseen(tenant(), mailbox(), f->folder_id(), uid));
  } else {
    f->set_unseen(f->unseen() + 1);
    PutRaw(keys::Unseen(tenant(), mailbox(), f->folder_id(), uid), "");
  }
}

absl::Status Mutation::UpdatePostings() {
  for (const auto& [sha, l] : links_) {
    if (l.added > 0 && l.removed_keys.empty()) {
      // Only the first copy in the mailbox writes the postings.
      bool any = false;
      std::string p = keys::LocationPrefix(tenant(), mailbox(), sha);
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), true, 1, false,
                                        [&](const kv::v1::KeyValue&) { return !(any = true); }));
      if (any) continue;
    } else {
      // Copies before this change, and whether any other stays.
      size_t before = 0, kept = 0;
      std::string p = keys::LocationPrefix(tenant(), mailbox(), sha);
      RETURN_IF_ERROR(store_->ScanRange(p, keys::PrefixEnd(p), true, l.removed_keys.size() + 1,
                                        false, [&](const kv::v1::KeyValue& kv) {
                                          ++before;
                                          if (!l.removed_keys.count(kv.key())) ++kept;
                                          return true;
                                        }));
      int64_t after = static_cast<int64_t>(kept) + l.added;
      bool had = before > 0;
      if (had == (after > 0)) continue;
      if (had) {
        ASSIGN_OR_RETURN(auto terms, TermsOf(sha));
        for (const auto& t : terms) Delete(keys::Posting(tenant(), mailbox(), t, sha));
        continue;
      }
    }
    std::vector<std::string> terms;
    auto fresh = bodies_.find(sha);
    if (fresh != bodies_.end() && fresh->second.fresh != nullptr) {
      terms = fresh->second.fresh->terms;
    } else {
      ASSIGN_OR_RETURN(terms, TermsOf(sha));
    }
    for (const auto& t : terms) PutRaw(keys::Posting(tenant(), mailbox(), t, sha), "");
  }
  return absl::OkStatus();
}

absl::Status Mutation::StageBody(MailStore* store, const std::string& tenant,
                                 const std::string& sha, const BodyRef& ref,
                                 kv::v1::WriteRequest* req) {
  if (ref.delta == 0) return absl::OkStatus();
  auto put = [&](const std::string& key, std::string value) {
    auto* p = req->add_ops()->mutable_put();
    p->set_key(key);
    p->set_value(std::move(value));
  };
  std::string key = keys::Body(tenant, sha);
  ASSIGN_OR_RETURN(auto got, store->Get(key));
  auto* c = req->add_conditions();
  c->set_key(key);
  c->set_kind(kv::v1::Condition::VERSION_EQUALS);
  c->set_version(got.found() ? got.version() : 0);
  storage::BodyRecord body;
  if (got.found()) {
    if (!body.ParseFromString(got.value())) return absl::DataLossError("body record");
  } else {
    if (ref.fresh == nullptr || ref.delta < 0)
      return absl::DataLossError(absl::StrCat("body ", sha, " missing"));
    body = ref.fresh->body;
    if (!ref.fresh->chunks_prewritten) {
      for (size_t i = 0; i < ref.fresh->chunks.size(); ++i)
        put(keys::BodyChunk(tenant, sha, static_cast<uint32_t>(i)), ref.fresh->chunks[i]);
    }
    storage::BodyTerms terms;
    for (const auto& t : ref.fresh->terms) terms.add_terms(t);
    terms.set_header_terms(true);
    put(keys::BodyTerms(tenant, sha), terms.SerializeAsString());
  }
  int64_t count = static_cast<int64_t>(body.refcount()) + ref.delta;
  if (count <= 0) {
    req->add_ops()->mutable_delete_()->set_key(key);
    auto* d = req->add_ops()->mutable_delete_range();
    d->set_start(key + "/");
    d->set_end(keys::PrefixEnd(key + "/"));
  } else {
    body.set_refcount(static_cast<uint64_t>(count));
    put(key, body.SerializeAsString());
  }
  return absl::OkStatus();
}

absl::Status Mutation::StageRecords() {
  if (index_only_) {
    if (!dirty_folders_.empty() || !removed_folders_.empty() || !uid_blocks_.empty() || !links_.empty())
      return absl::InternalError("an index-only mutation changed records");
    RETURN_IF_ERROR(StageBlocks());
    StageMarks();
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(UpdatePostings());
  RETURN_IF_ERROR(StageBlocks());
  StageMarks();
  for (const auto& [key, bits] : uid_blocks_) {
    if (removed_folders_.count(key.first)) continue;  // its k/ range is deleted
    std::string k = keys::UidMapBlock(tenant(), mailbox(), key.first, key.second);
    if (bits.empty()) Delete(k);
    else PutRaw(k, bits);
  }
  for (const auto& [id, f] : dirty_folders_) Put(keys::Folder(tenant(), mailbox(), id), f);
  for (const auto& id : removed_folders_) Delete(keys::Folder(tenant(), mailbox(), id));
  // The mailbox record last, for clarity only (one write is atomic).
  Put(keys::Mailbox(tenant(), mailbox()), mbx_->rec);
  Condition(keys::Mailbox(tenant(), mailbox()), mbx_->version);
  return absl::OkStatus();
}

namespace {

absl::StatusOr<bool> WriteStaged(MailStore* store, store::Store* kv,
                                 const kv::v1::WriteRequest& req) {
  auto resp = kv->Write(req, absl::Now() + store->options().timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  if (resp->has_rejected()) return absl::InvalidArgumentError(resp->rejected().reason());
  if (resp->has_condition_failed()) return false;
  return true;
}

}  // namespace

absl::StatusOr<bool> Mutation::Commit() {
  // Bodies: refcounts, created with their chunks, or freed.
  for (const auto& [sha, ref] : bodies_) RETURN_IF_ERROR(StageBody(store_, tenant(), sha, ref, &req_));
  RETURN_IF_ERROR(StageRecords());
  return WriteStaged(store_, store_->store_, req_);
}

absl::StatusOr<bool> Mutation::CommitBatch(MailStore* store, const std::vector<Mutation*>& muts) {
  kv::v1::WriteRequest req;
  std::map<std::pair<std::string, std::string>, BodyRef> bodies;  // (tenant, sha)
  for (Mutation* m : muts) {
    for (const auto& [sha, ref] : m->bodies_) {
      BodyRef& sum = bodies[{m->tenant(), sha}];
      sum.delta += ref.delta;
      if (ref.fresh != nullptr) sum.fresh = ref.fresh;
    }
  }
  for (const auto& [key, ref] : bodies) RETURN_IF_ERROR(StageBody(store, key.first, key.second, ref, &req));
  for (Mutation* m : muts) {
    RETURN_IF_ERROR(m->StageRecords());
    for (auto& c : *m->req_.mutable_conditions()) *req.add_conditions() = std::move(c);
    for (auto& op : *m->req_.mutable_ops()) *req.add_ops() = std::move(op);
    m->req_.Clear();
  }
  return WriteStaged(store, store->store_, req);
}

absl::Status RunMutation(MailStore* store, const std::string& mailbox_id,
                         const std::function<absl::Status(Mutation&)>& plan,
                         std::vector<v1::WatchEvent>* events) {
  absl::Mutex* mu = store->MailboxLock(mailbox_id);
  absl::MutexLock lock(mu);
  for (int attempt = 0; attempt < 50; ++attempt) {
    ASSIGN_OR_RETURN(MailStore::Mbx m, store->LoadMailbox(mailbox_id));
    Mutation mut(store, &m);
    RETURN_IF_ERROR(plan(mut));
    if (mut.Empty()) return absl::OkStatus();  // nothing to change
    ASSIGN_OR_RETURN(bool committed, mut.Commit());
    if (committed) {
      if (events != nullptr) *events = mut.events();
      store->Committed(m.tenant, m.id);
      return absl::OkStatus();
    }
  }
  return absl::AbortedError("mailbox changed concurrently too often; retry");
}

namespace {

using CombinedItem = MailStore::Combiner::Item;

// One group of RunCombined under the mailbox's lock: plans every item into
// one Mutation and commits it. Sets each item's result (not `done`).
void CommitGroup(MailStore* store, const std::string& mailbox_id, std::vector<CombinedItem*> live) {
  int lost = 0;
  while (!live.empty()) {
    auto m = store->LoadMailbox(mailbox_id);
    if (!m.ok()) {
      for (CombinedItem* it : live) it->result = m.status();
      return;
    }
    Mutation mut(store, &*m);
    bool replan = false;
    for (size_t i = 0; i < live.size(); ++i) {
      absl::Status s = (*live[i]->plan)(mut);
      if (s.ok()) continue;
      // Its partial plan may be in `mut`: leave it out and plan the rest afresh.
      live[i]->result = s;
      live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
      replan = true;
      break;
    }
    if (replan) continue;
    if (mut.Empty()) {
      for (CombinedItem* it : live) it->result = absl::OkStatus();
      return;
    }
    absl::StatusOr<bool> committed = mut.Commit();
    if (!committed.ok()) {
      if (committed.status().code() == absl::StatusCode::kInvalidArgument && live.size() > 1) {
        // Over a kv write limit: halves, each re-planned from fresh reads.
        size_t half = live.size() / 2;
        CommitGroup(store, mailbox_id, std::vector<CombinedItem*>(live.begin(), live.begin() + half));
        CommitGroup(store, mailbox_id, std::vector<CombinedItem*>(live.begin() + half, live.end()));
        return;
      }
      for (CombinedItem* it : live) it->result = committed.status();
      return;
    }
    if (*committed) {
      for (CombinedItem* it : live) it->result = absl::OkStatus();
      store->Committed(m->tenant, m->id);
      return;
    }
    if (++lost >= 50) break;
  }
  for (CombinedItem* it : live)
    it->result = absl::AbortedError("mailbox changed concurrently too often; retry");
}

// How much of the queue one write takes (kv: 10,000 ops, 1,000
// conditions, 16 MiB per write; one condition per distinct body).
constexpr size_t kGroupItems = 256, kGroupOps = 8000, kGroupBytes = 8u << 20;

}  // namespace

absl::Status RunCombined(MailStore* store, const std::string& mailbox_id,
                         const std::function<absl::Status(Mutation&)>& plan, size_t cost_bytes,
                         size_t cost_ops) {
  MailStore::Combiner* c = store->CombinerFor(mailbox_id);
  CombinedItem me;
  me.plan = &plan;
  me.bytes = cost_bytes;
  me.ops = cost_ops;
  absl::MutexLock lock(&c->mu);
  c->queue.push_back(&me);
  while (!me.done) {
    if (c->draining) {
      // Someone is committing: wait for it (our item may be in its group).
      auto free_or_done = [&]() { return me.done || !c->draining; };
      c->mu.Await(absl::Condition(&free_or_done));
      continue;
    }
    // Drain: take the head of the queue (at least one item; ours is in it
    // or was taken by an earlier group), commit it, repeat until ours is done.
    c->draining = true;
    std::vector<CombinedItem*> group;
    size_t bytes = 0, ops = 0;
    const size_t max_items = store->options().combine_appends ? kGroupItems : 1;
    while (!c->queue.empty() && group.size() < max_items) {
      CombinedItem* it = c->queue.front();
      if (!group.empty() && (bytes + it->bytes > kGroupBytes || ops + it->ops > kGroupOps)) break;
      bytes += it->bytes;
      ops += it->ops;
      group.push_back(it);
      c->queue.pop_front();
    }
    c->mu.Unlock();
    {
      absl::MutexLock mbx_lock(store->MailboxLock(mailbox_id));
      CommitGroup(store, mailbox_id, group);
    }
    c->mu.Lock();
    for (CombinedItem* it : group) it->done = true;
    c->draining = false;
  }
  return me.result;
}

namespace {

// RunMutationBatch without the locks (held by the caller); recursive on split.
absl::Status BatchAttempts(MailStore* store, const std::vector<std::string>& ids,
                           const std::vector<size_t>& which,
                           const std::function<absl::Status(size_t, Mutation&)>& plan,
                           const std::function<void(size_t, const absl::Status&)>& failed) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    std::vector<std::unique_ptr<MailStore::Mbx>> mbxs;
    std::vector<std::unique_ptr<Mutation>> muts;
    std::vector<Mutation*> live;
    std::vector<size_t> live_idx;
    for (size_t i : which) {
      auto m = store->LoadMailbox(ids[i]);
      if (!m.ok()) {
        failed(i, m.status());
        continue;
      }
      mbxs.push_back(std::make_unique<MailStore::Mbx>(*std::move(m)));
      muts.push_back(std::make_unique<Mutation>(store, mbxs.back().get()));
      if (absl::Status s = plan(i, *muts.back()); !s.ok()) {
        failed(i, s);
        continue;
      }
      if (muts.back()->Empty()) continue;
      live.push_back(muts.back().get());
      live_idx.push_back(i);
    }
    if (live.empty()) return absl::OkStatus();
    auto committed = Mutation::CommitBatch(store, live);
    if (!committed.ok()) {
      if (committed.status().code() == absl::StatusCode::kInvalidArgument && live_idx.size() > 1) {
        // Over a write limit: halve (plans are re-run from fresh reads).
        size_t half = live_idx.size() / 2;
        std::vector<size_t> a(live_idx.begin(), live_idx.begin() + half);
        std::vector<size_t> b(live_idx.begin() + half, live_idx.end());
        RETURN_IF_ERROR(BatchAttempts(store, ids, a, plan, failed));
        return BatchAttempts(store, ids, b, plan, failed);
      }
      for (size_t i : live_idx) failed(i, committed.status());
      return absl::OkStatus();
    }
    if (*committed) {
      for (Mutation* m : live)
        if (!m->quiet()) store->Committed(m->tenant(), m->mailbox());
      return absl::OkStatus();
    }
  }
  for (size_t i : which) failed(i, absl::AbortedError("mailbox changed concurrently too often; retry"));
  return absl::OkStatus();
}

}  // namespace

absl::Status RunIndexBatch(MailStore* store, const std::vector<std::string>& mailbox_ids,
                           const std::function<absl::Status(size_t, Mutation&)>& plan,
                           const std::function<void(size_t, const absl::Status&)>& failed) {
  std::vector<size_t> all(mailbox_ids.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  return BatchAttempts(store, mailbox_ids, all, plan, failed);
}

absl::Status RunMutationBatch(MailStore* store, const std::vector<std::string>& mailbox_ids,
                              const std::function<absl::Status(size_t, Mutation&)>& plan,
                              const std::function<void(size_t, const absl::Status&)>& failed) {
  std::vector<size_t> order(mailbox_ids.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return mailbox_ids[a] < mailbox_ids[b]; });
  std::vector<absl::Mutex*> held;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i > 0 && mailbox_ids[order[i]] == mailbox_ids[order[i - 1]])
      return absl::InternalError("RunMutationBatch: mailbox twice in one batch");
  }
  for (size_t i : order) {
    held.push_back(store->MailboxLock(mailbox_ids[i]));
    held.back()->Lock();
  }
  std::vector<size_t> all(mailbox_ids.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  absl::Status s = BatchAttempts(store, mailbox_ids, all, plan, failed);
  for (auto it = held.rbegin(); it != held.rend(); ++it) (*it)->Unlock();
  return s;
}

// ---------------------------------------------------------------- folders

const storage::FolderRecord* FindFolderByName(const MailStore::Mbx& m, const std::string& name) {
  bool inbox = absl::EqualsIgnoreCase(name, "INBOX");
  for (const auto& [f, v] : m.folders) {
    if (inbox ? f.special_use() == v1::SPECIAL_USE_INBOX : f.name() == name) return &f;
  }
  return nullptr;
}

const storage::FolderRecord* FindFolder(const MailStore::Mbx& m, const v1::FolderRef& ref) {
  switch (ref.key_case()) {
    case v1::FolderRef::kFolderId:
      for (const auto& [f, v] : m.folders)
        if (f.folder_id() == ref.folder_id()) return &f;
      return nullptr;
    case v1::FolderRef::kName:
      return FindFolderByName(m, ref.name());
    case v1::FolderRef::kSpecialUse:
      for (const auto& [f, v] : m.folders)
        if (f.special_use() == ref.special_use() && ref.special_use() != 0) return &f;
      return nullptr;
    default:
      return nullptr;
  }
}

absl::Status ValidateFolderName(const std::string& name, const std::string& field) {
  if (name.empty()) return InvalidField(field, "EMPTY", "folder name is empty");
  if (name.size() > 255) return InvalidField(field, "BAD_NAME", "over 255 bytes");
  if (name.front() == '/' || name.back() == '/' || absl::StrContains(name, "//"))
    return InvalidField(field, "BAD_NAME", "empty hierarchy component");
  int levels = 1;
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return InvalidField(field, "BAD_NAME", "control character");
    if (c == '/') ++levels;
  }
  if (levels > 16) return InvalidField(field, "BAD_NAME", "over 16 levels");
  return absl::OkStatus();
}

v1::Folder FolderToProto(const MailStore::Mbx& m, const storage::FolderRecord& f) {
  v1::Folder out;
  out.set_folder_id(f.folder_id());
  out.set_name(f.name());
  out.set_special_use(static_cast<v1::SpecialUse>(f.special_use()));
  out.set_noselect(f.noselect());
  std::string child_prefix = f.name() + "/";
  for (const auto& [g, v] : m.folders)
    if (absl::StartsWith(g.name(), child_prefix)) out.set_has_children(true);
  out.set_uidvalidity(f.uidvalidity());
  out.set_uidnext(f.uidnext());
  out.set_messages(f.messages());
  out.set_unseen(f.unseen());
  out.set_recent(f.recent());
  out.set_highest_modseq(f.highest_modseq());
  out.set_size_bytes(f.size_bytes());
  return out;
}

namespace {

uint32_t NewUidValidity(const MailStore::Mbx& m) {
  // Seconds since 2020 plus the folder counter: a recreated folder never
  // gets its old value back.
  int64_t s = absl::ToUnixSeconds(absl::Now()) - 1577836800;
  return static_cast<uint32_t>(std::max<int64_t>(1, s) + m.rec.next_folder());
}

storage::FolderRecord NewFolder(Mutation& mut, const std::string& name, int special_use) {
  MailStore::Mbx& m = mut.mbx();
  storage::FolderRecord f;
  f.set_folder_id(keys::FolderId(m.rec.next_folder() + 1));
  m.rec.set_next_folder(m.rec.next_folder() + 1);
  f.set_name(name);
  f.set_special_use(special_use);
  f.set_uidvalidity(NewUidValidity(m));
  f.set_uidnext(1);
  f.set_recent_from(1);
  f.set_modseq_index(true);
  f.set_uid_postings(true);
  f.set_attr_index(true);
  f.set_uid_map(true);
  f.set_header_postings(true);
  // Blocks only once every replica of the group reads them (layout_gate.cc).
  if (mut.store()->options().deferred_index && mut.store()->BlockLayoutAllowed()) {
    f.set_block_postings(true);
    f.set_indexed_below(1);
  }
  return f;
}

void FolderEvent(Mutation& mut, v1::WatchEventKind kind, const storage::FolderRecord& f,
                 const std::string& old_name = "") {
  v1::WatchEvent e;
  e.set_kind(kind);
  e.set_folder_id(f.folder_id());
  e.set_folder_name(f.name());
  e.set_old_folder_name(old_name);
  e.set_modseq(mut.NextModseq());
  e.set_uidvalidity(f.uidvalidity());
  e.set_messages_count(f.messages());
  mut.Event(std::move(e));
}

const std::pair<const char*, v1::SpecialUse> kSpecialFolders[] = {
    {"INBOX", v1::SPECIAL_USE_INBOX}, {"Sent", v1::SPECIAL_USE_SENT},
    {"Drafts", v1::SPECIAL_USE_DRAFTS}, {"Trash", v1::SPECIAL_USE_TRASH},
    {"Junk", v1::SPECIAL_USE_JUNK}, {"Archive", v1::SPECIAL_USE_ARCHIVE}};

}  // namespace

// Creates `name` and missing parents (as \Noselect-free plain folders).
absl::StatusOr<storage::FolderRecord*> CreateFolderIn(Mutation& mut, const std::string& name,
                                                      int special_use, uint32_t max_folders) {
  std::vector<std::string> chain;
  for (size_t i = 0; i < name.size(); ++i)
    if (name[i] == '/') chain.push_back(name.substr(0, i));
  chain.push_back(name);
  storage::FolderRecord* last = nullptr;
  for (const std::string& n : chain) {
    if (const auto* existing = FindFolderByName(mut.mbx(), n)) {
      if (n == name) return AlreadyExists("name", "ALREADY_EXISTS", "folder exists");
      (void)existing;
      continue;
    }
    if (mut.mbx().rec.folder_count() >= max_folders)
      return WithLimits(absl::StatusCode::kResourceExhausted, "TOO_MANY_FOLDERS",
                        "over the folder limit", {});
    last = mut.AddFolder(NewFolder(mut, n, n == name ? special_use : 0));
    FolderEvent(mut, v1::WATCH_EVENT_KIND_FOLDER_CREATED, *last);
  }
  return last;
}

absl::StatusOr<v1::MailboxInfo> MailStore::CreateMailbox(const v1::CreateMailboxRequest& r) {
  if (!keys::ValidId(r.mailbox_id())) return InvalidField("mailbox_id", "BAD_ID", "not an id");
  if (!keys::ValidId(r.tenant_id())) return InvalidField("tenant_id", "BAD_ID", "not an id");
  auto info = [&](const storage::MailboxRecord& rec) {
    v1::MailboxInfo out;
    out.set_mailbox_id(rec.mailbox_id());
    out.set_tenant_id(rec.tenant_id());
    out.set_kind(static_cast<common::v1::MailboxKind>(rec.kind()));
    out.set_owner_id(rec.owner_id());
    out.set_shard(rec.shard());
    out.mutable_quota()->set_mailbox_id(rec.mailbox_id());
    out.mutable_quota()->set_usage_bytes(rec.usage_bytes());
    out.mutable_quota()->set_usage_messages(rec.usage_messages());
    *out.mutable_quota()->mutable_limit() = rec.quota();
    *out.mutable_created_at() = MicrosToTs(rec.created_micros());
    return out;
  };
  absl::Mutex* mu = MailboxLock(r.mailbox_id());
  absl::MutexLock lock(mu);
  for (int attempt = 0; attempt < 10; ++attempt) {
    ASSIGN_OR_RETURN(auto idx, Get(keys::MailboxIndex(r.mailbox_id())));
    if (idx.found()) {
      if (idx.value() != r.tenant_id())
        return AlreadyExists("mailbox_id", "ALREADY_EXISTS", "mailbox id in use");
      ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id(), false));
      if (m.rec.owner_id() != r.owner_id() || m.rec.kind() != r.kind())
        return AlreadyExists("mailbox_id", "ALREADY_EXISTS", "mailbox id in use");
      return info(m.rec);
    }
    Mbx m;
    m.tenant = r.tenant_id();
    m.id = r.mailbox_id();
    m.rec.set_mailbox_id(r.mailbox_id());
    m.rec.set_tenant_id(r.tenant_id());
    m.rec.set_kind(r.kind());
    m.rec.set_owner_id(r.owner_id());
    m.rec.set_shard(options_.shard);
    *m.rec.mutable_quota() = r.quota();
    if (!r.has_quota()) {
      m.rec.mutable_quota()->mutable_bytes()->set_unlimited(true);
      m.rec.mutable_quota()->mutable_messages()->set_unlimited(true);
    }
    m.rec.set_created_micros(NowMicros());
    Mutation mut(this, &m);
    for (const auto& [name, use] : kSpecialFolders) {
      storage::FolderRecord* f = mut.AddFolder(NewFolder(mut, name, use));
      mut.PutRaw(keys::Subscription(m.tenant, m.id, f->name()), "");
    }
    mut.PutRaw(keys::MailboxIndex(m.id), m.tenant);
    mut.PutRaw(keys::TenantMailbox(m.tenant, m.id), "");
    mut.Condition(keys::MailboxIndex(m.id), 0);
    ASSIGN_OR_RETURN(bool ok, mut.Commit());
    if (ok) return info(m.rec);
  }
  return absl::AbortedError("CreateMailbox raced; retry");
}

absl::StatusOr<v1::ListFoldersResponse> MailStore::ListFolders(const v1::ListFoldersRequest& r) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  std::set<std::string> subscribed;
  std::string p = keys::SubscriptionPrefix(m.tenant, m.id);
  RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), true, 100000, false,
                            [&](const kv::v1::KeyValue& kv) {
                              subscribed.insert(kv.key().substr(p.size()));
                              return true;
                            }));
  v1::ListFoldersResponse out;
  // INBOX first, then by name (hierarchy order: parents before children).
  std::vector<const storage::FolderRecord*> order;
  for (const auto& [f, v] : m.folders) order.push_back(&f);
  std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    bool ai = a->special_use() == v1::SPECIAL_USE_INBOX, bi = b->special_use() == v1::SPECIAL_USE_INBOX;
    if (ai != bi) return ai;
    return a->name() < b->name();
  });
  for (const auto* f : order) {
    bool sub = subscribed.erase(f->name()) > 0;
    if (r.subscribed_only() && !sub) continue;
    v1::Folder folder = FolderToProto(m, *f);
    folder.set_subscribed(sub);
    if (!r.with_status()) {
      folder.clear_messages();
      folder.clear_unseen();
      folder.clear_recent();
      folder.clear_size_bytes();
    }
    *out.add_folders() = std::move(folder);
  }
  for (const auto& s : subscribed) out.add_dangling_subscriptions(s);
  return out;
}

absl::StatusOr<v1::Folder> MailStore::CreateFolder(const v1::CreateFolderRequest& r) {
  RETURN_IF_ERROR(ValidateFolderName(r.name(), "name"));
  if (absl::EqualsIgnoreCase(r.name(), "INBOX"))
    return AlreadyExists("name", "ALREADY_EXISTS", "folder exists");
  v1::Folder out;
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
    ASSIGN_OR_RETURN(storage::FolderRecord * f,
                     CreateFolderIn(mut, r.name(), r.special_use(), options_.max_folders));
    if (r.special_use() != v1::SPECIAL_USE_UNSPECIFIED && r.special_use() != v1::SPECIAL_USE_INBOX) {
      for (auto& [g, v] : mut.mbx().folders)
        if (g.special_use() == r.special_use() && g.folder_id() != f->folder_id())
          mut.MutableFolder(g.folder_id())->set_special_use(0);
    } else if (r.special_use() == v1::SPECIAL_USE_INBOX) {
      return InvalidField("special_use", "BAD_SPECIAL_USE", "INBOX exists already");
    }
    out = FolderToProto(mut.mbx(), *f);
    return absl::OkStatus();
  }));
  return out;
}

absl::Status MailStore::SubscribeFolder(const v1::SubscribeFolderRequest& r) {
  RETURN_IF_ERROR(ValidateFolderName(r.name(), "name"));
  ASSIGN_OR_RETURN(std::string tenant, TenantOf(r.mailbox_id()));
  std::string name = absl::EqualsIgnoreCase(r.name(), "INBOX") ? "INBOX" : r.name();
  kv::v1::WriteRequest w;
  auto* op = w.add_ops();
  if (r.subscribe()) {
    op->mutable_put()->set_key(keys::Subscription(tenant, r.mailbox_id(), name));
  } else {
    op->mutable_delete_()->set_key(keys::Subscription(tenant, r.mailbox_id(), name));
  }
  auto resp = store_->Write(w, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  return absl::OkStatus();
}

}  // namespace mailgrid::mailstore
