// Append, delivery, fetch, flags, copy/move, expunge, changes.
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/mail/decode.h"
#include "libs/mail/imap_format.h"
#include "services/mailstore/sections.h"
#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {
namespace {

bool OverLimit(const common::v1::Limit& l, uint64_t value) {
  return !l.unlimited() && l.value() >= 0 && value > static_cast<uint64_t>(l.value()) &&
         !(l.value() == 0 && !l.unlimited() && false);
}

// A limit with neither unlimited nor a value (all defaults) means "not set": unlimited.
bool IsSet(const common::v1::Limit& l) { return !l.unlimited() && l.value() > 0; }

absl::Status QuotaError(const char* name, const common::v1::Limit& limit, uint64_t usage,
                        uint64_t add) {
  common::v1::LimitDetail d;
  d.set_limit(name);
  *d.mutable_value() = limit;
  d.set_usage(static_cast<int64_t>(usage));
  d.set_requested(static_cast<int64_t>(add));
  return WithLimits(absl::StatusCode::kResourceExhausted, "QUOTA_EXCEEDED",
                    absl::StrCat("over quota: ", name, " is ", limit.value(), ", usage ", usage,
                                 ", this adds ", add),
                    {d});
}

absl::Status CheckMailboxQuota(const storage::MailboxRecord& rec, uint64_t add_bytes,
                               uint64_t add_messages) {
  const auto& q = rec.quota();
  if (IsSet(q.bytes()) && OverLimit(q.bytes(), rec.usage_bytes() + add_bytes))
    return QuotaError("mailbox.quota_bytes", q.bytes(), rec.usage_bytes(), add_bytes);
  if (IsSet(q.messages()) && OverLimit(q.messages(), rec.usage_messages() + add_messages))
    return QuotaError("mailbox.quota_messages", q.messages(), rec.usage_messages(), add_messages);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> CanonicalFlags(
    const google::protobuf::RepeatedPtrField<std::string>& flags) {
  std::vector<std::string> out;
  for (int i = 0; i < flags.size(); ++i) {
    ASSIGN_OR_RETURN(std::string f, CanonicalFlag(flags[i], i));
    bool dup = false;
    for (const auto& g : out) dup |= absl::EqualsIgnoreCase(g, f);
    if (!dup) out.push_back(std::move(f));
  }
  return out;
}

// Writes chunks of a big new body ahead of the commit (a commit is one
// Raft entry and must stay under the entry limit). Content-addressed, so
// a repeat or an orphan after a failed commit is harmless.
absl::Status PrewriteChunks(store::Store* store, const std::string& tenant, Ingested* ing,
                            absl::Duration timeout) {
  uint64_t total = 0;
  for (const auto& c : ing->chunks) total += c.size();
  if (total < (6u << 20)) return absl::OkStatus();
  for (size_t i = 0; i < ing->chunks.size(); i += 4) {
    kv::v1::WriteRequest w;
    for (size_t j = i; j < std::min(ing->chunks.size(), i + 4); ++j) {
      auto* p = w.add_ops()->mutable_put();
      p->set_key(keys::BodyChunk(tenant, ing->sha_hex, static_cast<uint32_t>(j)));
      p->set_value(ing->chunks[j]);
    }
    auto r = store->Write(w, absl::Now() + timeout);
    if (!r.ok()) return Unavailable(r.status());
  }
  ing->chunks_prewritten = true;
  return absl::OkStatus();
}

// The bytes one append adds to a combined write: the body's chunks (unless
// written ahead), its postings and records.
size_t CombinedCost(const Ingested& ing, size_t prepend) {
  size_t bytes = 2048 + prepend + ing.terms.size() * 128;
  if (!ing.chunks_prewritten)
    for (const auto& c : ing.chunks) bytes += c.size();
  return bytes;
}

v1::MessageFlags FlagsOf(uint32_t uid, const storage::MessageRecord& m) {
  v1::MessageFlags out;
  out.set_uid(uid);
  *out.mutable_flags() = m.flags();
  out.set_modseq(m.modseq());
  return out;
}

void AddedEvent(Mutation& mut, const storage::FolderRecord& f,
                const std::vector<std::pair<uint32_t, storage::MessageRecord>>& added,
                uint64_t modseq) {
  v1::WatchEvent e;
  e.set_kind(v1::WATCH_EVENT_KIND_MESSAGES_ADDED);
  e.set_folder_id(f.folder_id());
  e.set_folder_name(f.name());
  std::vector<uint32_t> uids;
  for (const auto& [uid, m] : added) {
    uids.push_back(uid);
    *e.add_messages() = FlagsOf(uid, m);
  }
  ToIdSet(uids, e.mutable_uids());
  e.set_modseq(modseq);
  e.set_uidvalidity(f.uidvalidity());
  e.set_messages_count(f.messages());
  mut.Event(std::move(e));
}

void ExpungedEvent(Mutation& mut, const storage::FolderRecord& f, const std::vector<uint32_t>& uids,
                   uint64_t modseq) {
  v1::WatchEvent e;
  e.set_kind(v1::WATCH_EVENT_KIND_MESSAGES_EXPUNGED);
  e.set_folder_id(f.folder_id());
  e.set_folder_name(f.name());
  ToIdSet(uids, e.mutable_uids());
  e.set_modseq(modseq);
  e.set_uidvalidity(f.uidvalidity());
  e.set_messages_count(f.messages());
  mut.Event(std::move(e));
}

}  // namespace

// The pooled tenant limit, against the tenant's usage on this shard.
absl::Status CheckTenantQuota(MailStore* store, const std::string& tenant, uint64_t add_bytes);

absl::StatusOr<v1::AppendResponse> MailStore::Append(const v1::AppendRequest& r) {
  if (r.idempotency_key().size() > 128)
    return InvalidField("idempotency_key", "TOO_LONG", "at most 128 bytes");
  ASSIGN_OR_RETURN(auto flags, CanonicalFlags(r.flags()));
  ASSIGN_OR_RETURN(std::string tenant, TenantOf(r.mailbox_id()));
  ASSIGN_OR_RETURN(Ingested ing, Ingest(r.message(), options_.limits));
  RETURN_IF_ERROR(PrewriteChunks(store_, tenant, &ing, options_.timeout));
  RETURN_IF_ERROR(CheckTenantQuota(this, tenant, ing.raw.size()));
  int64_t internal = r.has_internal_date() ? TsToMicros(r.internal_date()) : NowMicros();
  std::string idem_key = r.idempotency_key().empty() ? "" : "a:" + r.idempotency_key();
  v1::AppendResponse out;
  auto plan = [&](Mutation& mut) -> absl::Status {
    out.Clear();
    if (!idem_key.empty()) {
      ASSIGN_OR_RETURN(std::optional<storage::IdemRecord> first,
                       mut.FindIdem(keys::Idem(mut.tenant(), mut.mailbox(), idem_key),
                                    options_.idempotency_window));
      if (first) {
        const storage::IdemRecord& rec = *first;
        out.set_folder_id(rec.folder_id());
        out.set_uid(rec.uid());
        out.set_uidvalidity(rec.uidvalidity());
        out.set_modseq(rec.modseq());
        out.set_size(rec.size());
        return absl::OkStatus();  // no ops: nothing written
      }
    }
    const storage::FolderRecord* found = FindFolder(mut.mbx(), r.folder());
    if (found == nullptr || found->noselect()) return FolderNotFound();
    RETURN_IF_ERROR(CheckMailboxQuota(mut.mbx().rec, ing.raw.size(), 1));
    storage::FolderRecord* f = mut.MutableFolder(found->folder_id());
    uint32_t uid = f->uidnext();
    if (uid == UINT32_MAX) return absl::ResourceExhaustedError("folder UID space exhausted");
    f->set_uidnext(uid + 1);
    uint64_t modseq = mut.NextModseq();
    storage::MessageRecord msg;
    for (const auto& fl : flags) msg.add_flags(fl);
    msg.set_modseq(modseq);
    msg.set_internal_micros(internal);
    msg.set_size(ing.raw.size());
    msg.set_body_sha(ing.sha_hex);
    msg.set_sent_micros(ing.sent_micros);
    RETURN_IF_ERROR(mut.RefBody(ing.sha_hex, 1, &ing));  // first: InsertMessage reads its terms
    RETURN_IF_ERROR(mut.InsertMessage(f, uid, msg));
    AddedEvent(mut, *f, {{uid, msg}}, modseq);
    out.set_folder_id(f->folder_id());
    out.set_uid(uid);
    out.set_uidvalidity(f->uidvalidity());
    out.set_modseq(modseq);
    out.set_size(msg.size());
    if (!idem_key.empty()) {
      storage::IdemRecord rec;
      rec.set_folder_id(f->folder_id());
      rec.set_uid(uid);
      rec.set_uidvalidity(f->uidvalidity());
      rec.set_modseq(modseq);
      rec.set_size(msg.size());
      rec.set_at_micros(NowMicros());
      mut.PutIdem(keys::Idem(mut.tenant(), mut.mailbox(), idem_key), rec);
    }
    return absl::OkStatus();
  };
  // Concurrent appends to this mailbox share one write (group UID allocation).
  RETURN_IF_ERROR(RunCombined(this, r.mailbox_id(), plan, CombinedCost(ing, 0), 12 + ing.terms.size()));
  return out;
}

namespace {

// How many mailboxes one delivery write may carry: per mailbox the write
// holds ~10 records plus, for the mailbox's first copy of the body, one
// posting per term, and 2-3 conditions; kv caps a write at 10,000 ops, 1,000
// conditions and 16 MiB (of which up to 6 MiB may be the new body's chunks).
size_t DeliveryBatchSize(const Ingested& ing, size_t max_prepend) {
  size_t ops = 12 + ing.terms.size();
  size_t bytes = 2048 + max_prepend + ing.terms.size() * 256;
  size_t n = std::min<size_t>({128, 8000 / ops, (6u << 20) / bytes, 900 / 4});
  return std::max<size_t>(n, 1);
}

}  // namespace

absl::StatusOr<v1::DeliverBatchResponse> MailStore::DeliverBatch(const v1::DeliverBatchRequest& r) {
  if (r.recipients().empty()) return InvalidField("recipients", "EMPTY", "no recipient");
  if (r.recipients_size() > 1000) return InvalidField("recipients", "TOO_MANY", "over 1000");
  if (r.delivery_id().size() > 200) return InvalidField("delivery_id", "TOO_LONG", "over 200 bytes");
  ASSIGN_OR_RETURN(Ingested ing, Ingest(r.message(), options_.limits));
  v1::DeliverBatchResponse out;
  out.set_body_sha256(ing.sha_hex);
  int64_t internal = r.has_internal_date() ? TsToMicros(r.internal_date()) : NowMicros();
  std::string idem_key = r.delivery_id().empty() ? "" : "d:" + r.delivery_id();

  // Per recipient: checks that need no mailbox lock. Those that pass wait,
  // grouped by tenant (a body record is per tenant), for a batched write.
  std::vector<std::vector<std::string>> flags(r.recipients_size());
  std::map<std::string, std::vector<int>> pending;  // tenant -> recipient indexes, in order
  std::map<std::string, absl::Status> prewritten;
  size_t max_prepend = 0;
  bool any_prewritten = false;  // a big body's chunks went ahead of the commits
  for (int i = 0; i < r.recipients_size(); ++i) {
    const v1::DeliveryTarget& t = r.recipients(i);
    v1::DeliveryResult* res = out.add_results();
    res->set_mailbox_id(t.mailbox_id());
    auto tenant = TenantOf(t.mailbox_id());
    if (!tenant.ok()) {
      res->set_status(tenant.status().code() == absl::StatusCode::kNotFound
                          ? v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND
                          : v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
      res->set_detail(std::string(tenant.status().message()));
      continue;
    }
    ASSIGN_OR_RETURN(flags[i], CanonicalFlags(t.flags()));
    if (!prewritten.count(*tenant)) {
      ing.chunks_prewritten = false;
      prewritten[*tenant] = PrewriteChunks(store_, *tenant, &ing, options_.timeout);
      any_prewritten |= ing.chunks_prewritten;
    }
    if (const absl::Status& s = prewritten[*tenant]; !s.ok()) {
      res->set_status(v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
      res->set_detail(std::string(s.message()));
      continue;
    }
    if (absl::Status s = CheckTenantQuota(this, *tenant, ing.raw.size() + t.prepend_headers().size());
        !s.ok()) {
      res->set_status(s.code() == absl::StatusCode::kResourceExhausted
                          ? v1::DELIVERY_STATUS_QUOTA_EXCEEDED
                          : v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
      res->set_detail(std::string(s.message()));
      continue;
    }
    max_prepend = std::max(max_prepend, t.prepend_headers().size());
    pending[*tenant].push_back(i);
  }

  // Whether a big body's chunks were prewritten depends on its size only,
  // so it holds for every tenant whose prewrite succeeded (the others wait
  // for nothing): the commits must not carry the chunks again.
  ing.chunks_prewritten = any_prewritten;

  // One recipient's copy, planned into its mailbox's mutation (nothing
  // planned = nothing to write: duplicate, over quota, wrong shard).
  auto plan_one = [&](int i, Mutation& mut) -> absl::Status {
    const v1::DeliveryTarget& t = r.recipients(i);
    v1::DeliveryResult* res = out.mutable_results(i);
    res->Clear();
    res->set_mailbox_id(t.mailbox_id());
    if (mut.mbx().rec.shard() != options_.shard) {
      res->set_status(v1::DELIVERY_STATUS_WRONG_SHARD);
      return absl::OkStatus();
    }
    if (!idem_key.empty()) {
      ASSIGN_OR_RETURN(std::optional<storage::IdemRecord> first,
                       mut.FindIdem(keys::Idem(mut.tenant(), mut.mailbox(), idem_key),
                                    options_.delivery_dedupe_window));
      if (first) {
        const storage::IdemRecord& rec = *first;
        res->set_status(v1::DELIVERY_STATUS_DUPLICATE);
        res->set_folder_id(rec.folder_id());
        res->set_uid(rec.uid());
        res->set_uidvalidity(rec.uidvalidity());
        res->set_modseq(rec.modseq());
        res->set_fell_back_to_inbox(rec.fell_back_to_inbox());
        return absl::OkStatus();
      }
    }
    std::string prepend = mail::ToCrlf(t.prepend_headers());
    uint64_t size = ing.raw.size() + prepend.size();
    if (absl::Status q = CheckMailboxQuota(mut.mbx().rec, size, 1); !q.ok()) {
      res->set_status(v1::DELIVERY_STATUS_QUOTA_EXCEEDED);
      res->set_detail(std::string(q.message()));
      return absl::OkStatus();
    }
    const storage::FolderRecord* found = nullptr;
    if (t.has_folder()) found = FindFolder(mut.mbx(), t.folder());
    if (found != nullptr && found->noselect()) found = nullptr;
    if (found == nullptr && t.has_folder() && t.create_folder() &&
        t.folder().key_case() == v1::FolderRef::kName &&
        ValidateFolderName(t.folder().name(), "folder").ok()) {
      auto created = CreateFolderIn(mut, t.folder().name(), 0, options_.max_folders);
      if (created.ok()) found = *created;
    }
    bool fell_back = false;
    if (found == nullptr) {
      v1::FolderRef inbox;
      inbox.set_special_use(v1::SPECIAL_USE_INBOX);
      found = FindFolder(mut.mbx(), inbox);
      fell_back = t.has_folder();
      if (found == nullptr) return absl::DataLossError("mailbox without INBOX");
    }
    storage::FolderRecord* f = mut.MutableFolder(found->folder_id());
    uint32_t uid = f->uidnext();
    if (uid == UINT32_MAX) return absl::ResourceExhaustedError("folder UID space exhausted");
    f->set_uidnext(uid + 1);
    uint64_t modseq = mut.NextModseq();
    storage::MessageRecord msg;
    for (const auto& fl : flags[i]) msg.add_flags(fl);
    msg.set_modseq(modseq);
    msg.set_internal_micros(internal);
    msg.set_body_sha(ing.sha_hex);
    msg.set_prepend(std::move(prepend));
    msg.set_size(size);
    msg.set_sent_micros(ing.sent_micros);
    RETURN_IF_ERROR(mut.RefBody(ing.sha_hex, 1, &ing));  // first: InsertMessage reads its terms
    RETURN_IF_ERROR(mut.InsertMessage(f, uid, msg));
    AddedEvent(mut, *f, {{uid, msg}}, modseq);
    res->set_status(v1::DELIVERY_STATUS_DELIVERED);
    res->set_folder_id(f->folder_id());
    res->set_fell_back_to_inbox(fell_back);
    res->set_uid(uid);
    res->set_uidvalidity(f->uidvalidity());
    res->set_modseq(modseq);
    if (!idem_key.empty()) {
      storage::IdemRecord rec;
      rec.set_folder_id(f->folder_id());
      rec.set_uid(uid);
      rec.set_uidvalidity(f->uidvalidity());
      rec.set_modseq(modseq);
      rec.set_size(msg.size());
      rec.set_at_micros(NowMicros());
      rec.set_fell_back_to_inbox(fell_back);
      mut.PutIdem(keys::Idem(mut.tenant(), mut.mailbox(), idem_key), rec);
    }
    return absl::OkStatus();
  };

  // Batches of up to n distinct mailboxes, each ONE conditional write (its
  // own retries on a lost race). A mailbox named twice waits for the next
  // batch, so the second copy sees the first (DUPLICATE with a delivery id).
  const size_t n = DeliveryBatchSize(ing, max_prepend);
  for (auto& [tenant, queue] : pending) {
    std::vector<int> rest = std::move(queue);
    while (!rest.empty()) {
      std::vector<int> batch, later;
      std::set<std::string> in_batch;
      for (int i : rest) {
        const std::string& id = r.recipients(i).mailbox_id();
        if (batch.size() < n && in_batch.insert(id).second) {
          batch.push_back(i);
        } else {
          later.push_back(i);
        }
      }
      std::vector<std::string> ids;
      for (int i : batch) ids.push_back(r.recipients(i).mailbox_id());
      if (ids.size() == 1) {
        // One mailbox (the common delivery): concurrent deliveries to it
        // share one write (RunCombined), as appends do.
        int i = batch.front();
        absl::Status s = RunCombined(
            this, ids.front(), [&](Mutation& mut) { return plan_one(i, mut); },
            CombinedCost(ing, r.recipients(i).prepend_headers().size()), 12 + ing.terms.size());
        if (!s.ok()) {
          v1::DeliveryResult* res = out.mutable_results(i);
          res->Clear();
          res->set_mailbox_id(ids.front());
          res->set_status(s.code() == absl::StatusCode::kNotFound
                              ? v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND
                              : v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
          res->set_detail(std::string(s.message()));
        }
        rest = std::move(later);
        continue;
      }
      RETURN_IF_ERROR(RunMutationBatch(
          this, ids, [&](size_t k, Mutation& mut) { return plan_one(batch[k], mut); },
          [&](size_t k, const absl::Status& s) {
            v1::DeliveryResult* res = out.mutable_results(batch[k]);
            res->Clear();
            res->set_mailbox_id(ids[k]);
            res->set_status(s.code() == absl::StatusCode::kNotFound
                                ? v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND
                                : v1::DELIVERY_STATUS_TEMPORARY_FAILURE);
            res->set_detail(std::string(s.message()));
          }));
      rest = std::move(later);
    }
  }
  return out;
}

// ---------------------------------------------------------------- fetch

namespace {

absl::StatusOr<mail::SectionSpec> ToSpec(const v1::BodySection& s, size_t index) {
  mail::SectionSpec spec;
  std::string field = absl::StrCat("items.sections[", index, "].part");
  if (!s.part().empty()) {
    for (absl::string_view piece : absl::StrSplit(s.part(), '.')) {
      uint32_t n = 0;
      if (!absl::SimpleAtoi(piece, &n) || n == 0) return InvalidField(field, "BAD_PART", "not a part number");
      spec.part.push_back(n);
    }
  }
  switch (s.text()) {
    case v1::SECTION_TEXT_HEADER: spec.text = mail::SectionSpec::Text::kHeader; break;
    case v1::SECTION_TEXT_HEADER_FIELDS: spec.text = mail::SectionSpec::Text::kHeaderFields; break;
    case v1::SECTION_TEXT_HEADER_FIELDS_NOT: spec.text = mail::SectionSpec::Text::kHeaderFieldsNot; break;
    case v1::SECTION_TEXT_TEXT: spec.text = mail::SectionSpec::Text::kText; break;
    case v1::SECTION_TEXT_MIME: spec.text = mail::SectionSpec::Text::kMime; break;
    default: break;
  }
  for (const auto& h : s.header_fields()) spec.fields.push_back(h);
  return spec;
}

}  // namespace

absl::Status MailStore::Fetch(const v1::FetchRequest& r,
                              const std::function<bool(v1::FetchResponse&&)>& emit) {
  const v1::FetchItems& items = r.items();
  if (!items.flags() && !items.envelope() && !items.bodystructure() && !items.rfc822_size() &&
      !items.internal_date() && !items.modseq() && !items.raw() && items.sections().empty() &&
      !r.set_seen())
    return InvalidField("items", "EMPTY", "nothing to fetch");
  std::vector<mail::SectionSpec> specs;
  for (int i = 0; i < items.sections_size(); ++i) {
    ASSIGN_OR_RETURN(auto spec, ToSpec(items.sections(i), i));
    specs.push_back(std::move(spec));
  }
  std::set<uint32_t> flags_changed;
  if (r.set_seen()) {
    RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
      flags_changed.clear();
      const auto* found = FindFolder(mut.mbx(), r.folder());
      if (found == nullptr || found->noselect()) return FolderNotFound();
      ASSIGN_OR_RETURN(auto list, SelectMessages(this, mut.mbx(), *found, r.messages()));
      uint64_t modseq = 0;
      storage::FolderRecord* f = nullptr;
      v1::WatchEvent e;
      for (auto& [uid, msg] : list) {
        if (r.changed_since() != 0 && msg.modseq() <= r.changed_since()) continue;
        if (HasFlag(msg.flags(), "\\Seen")) continue;
        if (modseq == 0) {
          modseq = mut.NextModseq();
          f = mut.MutableFolder(found->folder_id());
        }
        storage::MessageRecord before = msg;
        msg.add_flags("\\Seen");
        msg.set_modseq(modseq);
        mut.UpdateMessage(*f, uid, before, msg);
        mut.FlagsChanged(f, uid, false, true);
        f->set_highest_modseq(modseq);
        *e.add_messages() = FlagsOf(uid, msg);
        flags_changed.insert(uid);
      }
      if (modseq != 0) {
        e.set_kind(v1::WATCH_EVENT_KIND_FLAGS_CHANGED);
        e.set_folder_id(f->folder_id());
        e.set_folder_name(f->name());
        e.set_modseq(modseq);
        e.set_uidvalidity(f->uidvalidity());
        e.set_messages_count(f->messages());
        mut.Event(std::move(e));
      }
      return absl::OkStatus();
    }));
  }
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  const auto* f = FindFolder(m, r.folder());
  if (f == nullptr || f->noselect()) return FolderNotFound();
  std::vector<uint32_t> all_uids;
  ASSIGN_OR_RETURN(auto list, SelectMessages(this, m, *f, r.messages(), &all_uids));
  // Sequence numbers: from the UIDs at and after the first selected one
  // (a reverse keys-only scan, so fetching the newest messages of a huge
  // folder stays cheap): seq(u) = messages - |tail| + position in tail + 1.
  std::vector<uint32_t> tail;
  uint32_t tail_base = 0;
  if (all_uids.empty() && !list.empty() && f->uid_map() &&
      f->uidnext() - list.front().first > 2 * uidmap::kBlockUids) {
    // Far from the end: count from the UID map (a key per 4,096 UIDs).
    uint32_t first = list.front().first;
    RETURN_IF_ERROR(ForEachUidRange(this, m, *f, [&](uint32_t a, uint32_t b) {
      if (b < first) {
        tail_base += b - a + 1;
        return;
      }
      for (uint64_t u = std::max(a, first); u <= b; ++u) tail.push_back(static_cast<uint32_t>(u));
    }));
  } else if (all_uids.empty() && !list.empty()) {
    std::string p = keys::MessagePrefix(m.tenant, m.id, f->folder_id());
    RETURN_IF_ERROR(ScanRange(keys::Message(m.tenant, m.id, f->folder_id(), list.front().first),
                              keys::PrefixEnd(p), true, SIZE_MAX, true,
                              [&](const kv::v1::KeyValue& kv) {
                                tail.push_back(keys::ReadBe32(kv.key()));
                                return true;
                              }));
    std::reverse(tail.begin(), tail.end());
    tail_base = f->messages() >= tail.size() ? f->messages() - static_cast<uint32_t>(tail.size()) : 0;
  } else {
    tail = std::move(all_uids);
  }
  std::map<std::string, storage::BodyRecord> bodies;
  bool need_body_record = items.envelope() || items.bodystructure() || !specs.empty();
  bool need_bytes = items.raw() || !specs.empty();
  for (auto& [uid, msg] : list) {
    if (r.changed_since() != 0 && msg.modseq() <= r.changed_since()) continue;
    v1::FetchResponse resp;
    resp.set_uid(uid);
    if (!tail.empty()) {
      auto it = std::lower_bound(tail.begin(), tail.end(), uid);
      if (it != tail.end() && *it == uid)
        resp.set_sequence_number(tail_base + static_cast<uint32_t>(it - tail.begin() + 1));
    }
    if (items.flags() || r.set_seen()) *resp.mutable_flags() = msg.flags();
    if (items.modseq() || items.flags()) resp.set_modseq(msg.modseq());
    if (items.internal_date()) *resp.mutable_internal_date() = MicrosToTs(msg.internal_micros());
    if (items.rfc822_size()) resp.set_rfc822_size(msg.size());
    resp.set_flags_changed(flags_changed.count(uid) > 0);
    const storage::BodyRecord* body = nullptr;
    if (need_body_record || need_bytes) {
      auto it = bodies.find(msg.body_sha());
      if (it == bodies.end()) {
        ASSIGN_OR_RETURN(auto b, LoadBody(m.tenant, msg.body_sha()));
        it = bodies.emplace(msg.body_sha(), std::move(b)).first;
        if (bodies.size() > 64) {  // bounded cache
          auto keep = *it;
          bodies.clear();
          it = bodies.insert(std::move(keep)).first;
        }
      }
      body = &it->second;
    }
    if (items.envelope()) *resp.mutable_envelope() = body->envelope();
    if (items.bodystructure()) *resp.mutable_bodystructure() = body->structure();
    // Sections from the stored part offsets (bodies stored before the
    // offsets existed take the re-parse path below).
    const bool ranged = !specs.empty() && body != nullptr && body->parts_size() > 0;
    if (ranged) {
      StoredMessage stored(this, m.tenant, msg.body_sha(), *body, msg.prepend());
      for (size_t i = 0; i < specs.size(); ++i) {
        const v1::BodySection& s = items.sections(static_cast<int>(i));
        v1::SectionData* sd = resp.add_sections();
        *sd->mutable_section() = s;
        std::optional<std::pair<uint64_t, uint64_t>> partial;
        if (s.has_partial()) {
          partial.emplace(s.partial_offset(), s.partial_length());
          sd->set_origin(s.partial_offset());
        }
        auto data = stored.Section(specs[i], s.decode(), partial);
        if (!data.ok()) {
          if (data.status().code() == absl::StatusCode::kInvalidArgument)
            return InvalidField(absl::StrCat("items.sections[", i, "].part"), "BAD_PART",
                                std::string(data.status().message()));
          if (data.status().code() == absl::StatusCode::kNotFound) continue;  // NIL
          return data.status();
        }
        sd->set_data(*std::move(data));
      }
    }
    if (items.raw() || (need_bytes && !ranged && !specs.empty())) {
      ASSIGN_OR_RETURN(std::string bytes, LoadBodyBytes(m.tenant, msg.body_sha(), *body));
      if (!msg.prepend().empty()) bytes = msg.prepend() + bytes;
      if (!specs.empty() && !ranged) {
        mail::Limits limits;
        limits.max_message_bytes = bytes.size() + 1;
        ASSIGN_OR_RETURN(mail::Message parsed, mail::ParseMessage(bytes, limits));
        for (size_t i = 0; i < specs.size(); ++i) {
          const v1::BodySection& s = items.sections(static_cast<int>(i));
          v1::SectionData* sd = resp.add_sections();
          *sd->mutable_section() = s;
          auto data = mail::ResolveSection(bytes, parsed, specs[i]);
          if (!data.ok()) {
            if (data.status().code() == absl::StatusCode::kInvalidArgument)
              return InvalidField(absl::StrCat("items.sections[", i, "].part"), "BAD_PART",
                                  std::string(data.status().message()));
            continue;  // a missing part: data unset (NIL)
          }
          std::string section(data->Bytes(bytes));
          if (s.decode() && specs[i].text == mail::SectionSpec::Text::kNone) {
            auto idx = mail::ResolvePart(parsed, specs[i].part);
            if (idx.ok()) {
              auto decoded = mail::DecodedBody(bytes, parsed.parts[*idx]);
              if (decoded.has_value()) section = std::move(*decoded);
            }
          }
          if (s.has_partial()) {
            sd->set_origin(s.partial_offset());
            section = std::string(mail::ApplyPartial(section, s.partial_offset(),
                                                     s.partial_length()));
          }
          sd->set_data(std::move(section));
        }
      }
      if (items.raw()) resp.set_raw(std::move(bytes));
    }
    if (!emit(std::move(resp))) return absl::OkStatus();
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- flags

absl::StatusOr<v1::StoreFlagsResponse> MailStore::StoreFlags(const v1::StoreFlagsRequest& r) {
  ASSIGN_OR_RETURN(auto flags, CanonicalFlags(r.flags()));
  if (r.mode() == v1::STORE_MODE_UNSPECIFIED)
    return InvalidField("mode", "EMPTY", "add, remove or replace");
  v1::StoreFlagsResponse out;
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
    out.Clear();
    const auto* found = FindFolder(mut.mbx(), r.folder());
    if (found == nullptr || found->noselect()) return FolderNotFound();
    ASSIGN_OR_RETURN(auto list, SelectMessages(this, mut.mbx(), *found, r.messages()));
    uint64_t modseq = 0;
    storage::FolderRecord* f = nullptr;
    std::vector<uint32_t> modified;
    v1::WatchEvent e;
    for (auto& [uid, msg] : list) {
      if (r.has_unchanged_since() && msg.modseq() > r.unchanged_since()) {
        modified.push_back(uid);
        continue;
      }
      std::vector<std::string> now(msg.flags().begin(), msg.flags().end());
      auto has = [&](const std::string& x) {
        for (const auto& y : now)
          if (absl::EqualsIgnoreCase(x, y)) return true;
        return false;
      };
      std::vector<std::string> next;
      if (r.mode() == v1::STORE_MODE_REPLACE) {
        next = flags;
      } else if (r.mode() == v1::STORE_MODE_ADD) {
        next = now;
        for (const auto& x : flags)
          if (!has(x)) next.push_back(x);
      } else {
        for (const auto& y : now) {
          bool drop = false;
          for (const auto& x : flags) drop |= absl::EqualsIgnoreCase(x, y);
          if (!drop) next.push_back(y);
        }
      }
      auto same = [](std::vector<std::string> a, std::vector<std::string> b) {
        for (auto& s : a) s = absl::AsciiStrToLower(s);
        for (auto& s : b) s = absl::AsciiStrToLower(s);
        std::sort(a.begin(), a.end());
        std::sort(b.begin(), b.end());
        return a == b;
      };
      if (same(now, next)) continue;
      if (modseq == 0) {
        modseq = mut.NextModseq();
        f = mut.MutableFolder(found->folder_id());
      }
      bool was_seen = HasFlag(msg.flags(), "\\Seen");
      storage::MessageRecord before = msg;
      msg.clear_flags();
      for (const auto& x : next) msg.add_flags(x);
      msg.set_modseq(modseq);
      mut.UpdateMessage(*f, uid, before, msg);
      mut.FlagsChanged(f, uid, was_seen, HasFlag(msg.flags(), "\\Seen"));
      f->set_highest_modseq(modseq);
      *out.add_updated() = FlagsOf(uid, msg);
      *e.add_messages() = FlagsOf(uid, msg);
    }
    ToIdSet(modified, out.mutable_modified());
    if (modseq != 0) {
      e.set_kind(v1::WATCH_EVENT_KIND_FLAGS_CHANGED);
      e.set_folder_id(f->folder_id());
      e.set_folder_name(f->name());
      e.set_modseq(modseq);
      e.set_uidvalidity(f->uidvalidity());
      e.set_messages_count(f->messages());
      mut.Event(std::move(e));
      out.set_highest_modseq(modseq);
    } else {
      out.set_highest_modseq(found->highest_modseq());
    }
    return absl::OkStatus();
  }));
  return out;
}

// ---------------------------------------------------------------- copy / move

namespace {

struct Transfer {
  uint32_t dst_uidvalidity = 0;
  std::string dst_folder;
  std::vector<uint32_t> src_uids, dst_uids;
  uint64_t dst_modseq = 0, src_modseq = 0;
};

absl::Status PlanTransfer(MailStore* store, Mutation& mut, const v1::FolderRef& src_ref,
                          const v1::MessageSelector& sel, const v1::FolderRef& dst_ref, bool move,
                          Transfer* t) {
  *t = Transfer();
  const auto* src = FindFolder(mut.mbx(), src_ref);
  const auto* dst = FindFolder(mut.mbx(), dst_ref);
  if (src == nullptr || dst == nullptr || src->noselect() || dst->noselect()) return FolderNotFound();
  ASSIGN_OR_RETURN(auto list, SelectMessages(store, mut.mbx(), *src, sel));
  t->dst_uidvalidity = dst->uidvalidity();
  t->dst_folder = dst->folder_id();
  if (list.empty()) return absl::OkStatus();
  if (!move) {
    uint64_t bytes = 0;
    for (const auto& [uid, m] : list) bytes += m.size();
    RETURN_IF_ERROR(CheckMailboxQuota(mut.mbx().rec, bytes, list.size()));
  }
  bool same = src->folder_id() == dst->folder_id();
  std::string src_id = src->folder_id(), dst_id = dst->folder_id();
  storage::FolderRecord* d = mut.MutableFolder(dst_id);
  t->dst_modseq = mut.NextModseq();
  std::vector<std::pair<uint32_t, storage::MessageRecord>> added;
  for (const auto& [uid, m] : list) {
    storage::MessageRecord copy = m;
    copy.set_modseq(t->dst_modseq);
    uint32_t nuid = d->uidnext();
    d->set_uidnext(nuid + 1);
    RETURN_IF_ERROR(mut.InsertMessage(d, nuid, copy));
    RETURN_IF_ERROR(mut.RefBody(m.body_sha(), 1));
    t->src_uids.push_back(uid);
    t->dst_uids.push_back(nuid);
    added.emplace_back(nuid, copy);
  }
  if (move) {
    t->src_modseq = mut.NextModseq();
    storage::FolderRecord* s = mut.MutableFolder(src_id);
    for (const auto& [uid, m] : list) RETURN_IF_ERROR(mut.RemoveMessage(s, uid, m, t->src_modseq));
    if (!same) {
      AddedEvent(mut, *mut.MutableFolder(dst_id), added, t->dst_modseq);
      ExpungedEvent(mut, *s, t->src_uids, t->src_modseq);
    } else {
      AddedEvent(mut, *s, added, t->dst_modseq);
      ExpungedEvent(mut, *s, t->src_uids, t->src_modseq);
    }
  } else {
    AddedEvent(mut, *d, added, t->dst_modseq);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::CopyResponse> MailStore::Copy(const v1::CopyRequest& r) {
  Transfer t;
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) {
    return PlanTransfer(this, mut, r.source(), r.messages(), r.destination(), false, &t);
  }));
  v1::CopyResponse out;
  out.set_destination_uidvalidity(t.dst_uidvalidity);
  out.set_destination_folder_id(t.dst_folder);
  out.set_destination_modseq(t.dst_modseq);
  for (uint32_t u : t.src_uids) out.add_source_uids(u);
  for (uint32_t u : t.dst_uids) out.add_destination_uids(u);
  return out;
}

absl::StatusOr<v1::MoveResponse> MailStore::Move(const v1::MoveRequest& r) {
  Transfer t;
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) {
    return PlanTransfer(this, mut, r.source(), r.messages(), r.destination(), true, &t);
  }));
  v1::MoveResponse out;
  out.set_destination_uidvalidity(t.dst_uidvalidity);
  out.set_destination_folder_id(t.dst_folder);
  out.set_source_modseq(t.src_modseq);
  for (uint32_t u : t.src_uids) out.add_source_uids(u);
  for (uint32_t u : t.dst_uids) out.add_destination_uids(u);
  return out;
}

// ---------------------------------------------------------------- expunge

// Removes the listed messages (already selected) in one mutation.
absl::Status ExpungeIn(Mutation& mut, const std::string& folder_id,
                       const std::vector<std::pair<uint32_t, storage::MessageRecord>>& list,
                       std::vector<uint32_t>* uids, uint64_t* modseq_out) {
  if (list.empty()) return absl::OkStatus();
  uint64_t modseq = mut.NextModseq();
  storage::FolderRecord* f = mut.MutableFolder(folder_id);
  for (const auto& [uid, m] : list) {
    RETURN_IF_ERROR(mut.RemoveMessage(f, uid, m, modseq));
    uids->push_back(uid);
  }
  ExpungedEvent(mut, *f, *uids, modseq);
  if (modseq_out) *modseq_out = modseq;
  return absl::OkStatus();
}

absl::StatusOr<v1::ExpungeResponse> MailStore::Expunge(const v1::ExpungeRequest& r) {
  v1::ExpungeResponse out;
  RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
    out.Clear();
    const auto* f = FindFolder(mut.mbx(), r.folder());
    if (f == nullptr || f->noselect()) return FolderNotFound();
    v1::MessageSelector sel;
    if (r.has_uids()) {
      *sel.mutable_uids() = r.uids();
    } else {
      auto* all = sel.mutable_uids()->add_ranges();
      all->set_first(1);
      all->set_to_last(true);
    }
    ASSIGN_OR_RETURN(auto list, SelectMessages(this, mut.mbx(), *f, sel));
    std::vector<std::pair<uint32_t, storage::MessageRecord>> deleted;
    for (auto& x : list)
      if (HasFlag(x.second.flags(), "\\Deleted")) deleted.push_back(std::move(x));
    // Bounded write size: the rest on the next call (clients loop on IMAP EXPUNGE anyway).
    if (deleted.size() > 2000) deleted.resize(2000);
    std::vector<uint32_t> uids;
    uint64_t modseq = f->highest_modseq();
    std::string fid = f->folder_id();
    RETURN_IF_ERROR(ExpungeIn(mut, fid, deleted, &uids, &modseq));
    ToIdSet(uids, out.mutable_expunged());
    out.set_highest_modseq(modseq);
    return absl::OkStatus();
  }));
  return out;
}

// ---------------------------------------------------------------- changes

absl::StatusOr<v1::ChangesSinceResponse> MailStore::ChangesSince(const v1::ChangesSinceRequest& r) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  const auto* f = FindFolder(m, r.folder());
  if (f == nullptr || f->noselect()) return FolderNotFound();
  if (r.uidvalidity() != 0 && r.uidvalidity() != f->uidvalidity())
    return Precondition("UIDVALIDITY_CHANGED", "the folder's UIDVALIDITY changed");
  return ChangesIn(m, *f, r);
}

absl::StatusOr<v1::ChangesSinceResponse> MailStore::ChangesIn(const Mbx& m,
                                                              const storage::FolderRecord& fr,
                                                              const v1::ChangesSinceRequest& r) {
  const storage::FolderRecord* f = &fr;
  v1::ChangesSinceResponse out;
  out.set_highest_modseq(f->highest_modseq());
  out.set_uidvalidity(f->uidvalidity());
  uint32_t max_uid = f->uidnext() > 0 ? f->uidnext() - 1 : 0;
  bool restrict = r.has_uids() && r.uids().ranges_size() > 0;
  auto wanted = [&](uint32_t uid) { return !restrict || InSet(r.uids(), uid, max_uid); };
  if (!f->modseq_index()) return ChangesByScan(m, *f, r, std::move(out));
  // The MODSEQ index from m+1: exactly the UIDs changed or expunged since.
  if (r.modseq() >= f->highest_modseq()) return out;
  std::vector<uint32_t> changed, vanished;
  std::string p = keys::ModseqPrefix(m.tenant, m.id, f->folder_id());
  RETURN_IF_ERROR(ScanRange(keys::ModseqEntry(m.tenant, m.id, f->folder_id(), r.modseq() + 1, 0),
                            keys::PrefixEnd(p), false, SIZE_MAX, false,
                            [&](const kv::v1::KeyValue& kv) {
                              uint32_t uid = keys::ReadBe32(kv.key());
                              if (!wanted(uid)) return true;
                              (kv.value().empty() ? changed : vanished).push_back(uid);
                              return true;
                            }));
  std::sort(changed.begin(), changed.end());
  if (changed.size() > 1000 && changed.size() > f->messages() / 8) {
    // Most of the folder changed: one scan beats a read per message.
    ASSIGN_OR_RETURN(auto list, ScanMessages(this, m, f->folder_id(), changed.front(), changed.back()));
    for (const auto& [uid, msg] : list)
      if (msg.modseq() > r.modseq() && wanted(uid)) *out.add_changed() = FlagsOf(uid, msg);
  } else {
    for (uint32_t uid : changed) {
      ASSIGN_OR_RETURN(auto got, Get(keys::Message(m.tenant, m.id, f->folder_id(), uid)));
      storage::MessageRecord msg;
      if (!got.found()) continue;  // expunged between the two reads
      if (!msg.ParseFromString(got.value())) return absl::DataLossError("message record");
      *out.add_changed() = FlagsOf(uid, msg);
    }
  }
  if (r.include_vanished()) {
    std::sort(vanished.begin(), vanished.end());
    ToIdSet(vanished, out.mutable_vanished());
  }
  return out;
}

// Folders created before the MODSEQ index: every message record and every
// x/ tombstone is read (the cost is the folder's size).
absl::StatusOr<v1::ChangesSinceResponse> MailStore::ChangesByScan(const Mbx& m,
                                                                  const storage::FolderRecord& fr,
                                                                  const v1::ChangesSinceRequest& r,
                                                                  v1::ChangesSinceResponse out) {
  const auto* f = &fr;
  uint32_t max_uid = f->uidnext() > 0 ? f->uidnext() - 1 : 0;
  bool restrict = r.has_uids() && r.uids().ranges_size() > 0;
  ASSIGN_OR_RETURN(auto list, ScanMessages(this, m, f->folder_id(), 1, UINT32_MAX));
  for (const auto& [uid, msg] : list) {
    if (msg.modseq() <= r.modseq()) continue;
    if (restrict && !InSet(r.uids(), uid, max_uid)) continue;
    *out.add_changed() = FlagsOf(uid, msg);
  }
  if (r.include_vanished()) {
    std::vector<uint32_t> vanished;
    std::string p = keys::TombstonePrefix(m.tenant, m.id, f->folder_id());
    RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), false, SIZE_MAX, false,
                              [&](const kv::v1::KeyValue& kv) {
                                uint32_t uid = keys::ReadBe32(kv.key());
                                if (keys::ReadBe64(kv.value()) > r.modseq() &&
                                    (!restrict || InSet(r.uids(), uid, max_uid)))
                                  vanished.push_back(uid);
                                return true;
                              }));
    ToIdSet(vanished, out.mutable_vanished());
  }
  return out;
}

absl::StatusOr<std::vector<v1::WatchEvent>> MailStore::ChangesAfter(const std::string& mailbox_id,
                                                                    uint64_t after, size_t limit,
                                                                    uint64_t* current) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(mailbox_id, false));
  *current = m.rec.modseq();
  if (after > m.rec.modseq())
    return absl::OutOfRangeError("cursor is ahead of the mailbox (resynchronise)");
  if (m.rec.modseq() > options_.feed_keep && after + options_.feed_keep < m.rec.modseq())
    return absl::OutOfRangeError("cursor too old (resynchronise with FolderStatus/ChangesSince)");
  std::vector<v1::WatchEvent> out;
  if (after == m.rec.modseq()) return out;
  std::string p = keys::ChangePrefix(m.tenant, m.id);
  absl::Status bad;
  RETURN_IF_ERROR(ScanRange(keys::Change(m.tenant, m.id, after + 1), keys::PrefixEnd(p), false,
                            limit, false, [&](const kv::v1::KeyValue& kv) {
                              storage::ChangeRecord rec;
                              if (!rec.ParseFromString(kv.value())) {
                                bad = absl::DataLossError("change record");
                                return false;
                              }
                              out.push_back(rec.event());
                              return true;
                            }));
  RETURN_IF_ERROR(bad);
  return out;
}

}  // namespace mailgrid::mailstore
