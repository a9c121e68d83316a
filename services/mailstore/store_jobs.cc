// Quotas, archive jobs, retention rules and mbox export.
#include <algorithm>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/civil_time.h"
#include "libs/base/log.h"
#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {
namespace {

std::string RandomId() {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x", rng());
}

}  // namespace

// Tenant usage on this shard, cached for a few seconds (the pooled limit
// is enforced against usage "as last aggregated": mailbox.proto SetQuota).
struct MailStore::TenantUsage {
  absl::Mutex mu;
  struct Entry {
    absl::Time at;
    common::v1::QuotaLimit limit;
    uint64_t bytes = 0, messages = 0;
  };
  std::map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
};

MailStore::MailStore(store::Store* store, StoreOptions options)
    : store_(store),
      options_(std::move(options)),
      tenant_usage_(std::make_unique<TenantUsage>()),
      folder_cache_(std::make_unique<FolderCache>()) {}
MailStore::~MailStore() { StopIndexer(); }

namespace {

absl::StatusOr<std::pair<uint64_t, uint64_t>> SumTenant(MailStore* store, const std::string& tenant) {
  uint64_t bytes = 0, messages = 0;
  std::vector<std::string> mailboxes;
  std::string p = keys::TenantMailboxPrefix(tenant);
  RETURN_IF_ERROR(store->ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                                   [&](const kv::v1::KeyValue& kv) {
                                     mailboxes.push_back(kv.key().substr(p.size()));
                                     return true;
                                   }));
  for (const auto& id : mailboxes) {
    ASSIGN_OR_RETURN(auto got, store->Get(keys::Mailbox(tenant, id)));
    storage::MailboxRecord rec;
    if (got.found() && rec.ParseFromString(got.value())) {
      bytes += rec.usage_bytes();
      messages += rec.usage_messages();
    }
  }
  return std::make_pair(bytes, messages);
}

absl::StatusOr<common::v1::QuotaLimit> TenantLimit(MailStore* store, const std::string& tenant) {
  ASSIGN_OR_RETURN(auto got, store->Get(keys::TenantQuota(tenant)));
  common::v1::QuotaLimit limit;
  if (!got.found()) {
    limit.mutable_bytes()->set_unlimited(true);
    limit.mutable_messages()->set_unlimited(true);
  } else if (!limit.ParseFromString(got.value())) {
    return absl::DataLossError("tenant quota");
  }
  return limit;
}

}  // namespace

absl::Status CheckTenantQuota(MailStore* store, const std::string& tenant, uint64_t add_bytes) {
  MailStore::TenantUsage& c = *store->tenant_usage_;
  MailStore::TenantUsage::Entry e;
  bool fresh = false;
  {
    absl::MutexLock lock(&c.mu);
    auto it = c.entries.find(tenant);
    if (it != c.entries.end() && absl::Now() - it->second.at < absl::Seconds(5)) {
      e = it->second;
      fresh = true;
    }
  }
  if (!fresh) {
    ASSIGN_OR_RETURN(e.limit, TenantLimit(store, tenant));
    if (!e.limit.bytes().unlimited() && e.limit.bytes().value() > 0) {
      ASSIGN_OR_RETURN(auto sum, SumTenant(store, tenant));
      e.bytes = sum.first;
      e.messages = sum.second;
    }
    e.at = absl::Now();
    absl::MutexLock lock(&c.mu);
    c.entries[tenant] = e;
  }
  const auto& l = e.limit.bytes();
  if (!l.unlimited() && l.value() > 0 && e.bytes + add_bytes > static_cast<uint64_t>(l.value())) {
    common::v1::LimitDetail d;
    d.set_limit("tenant.quota_bytes");
    *d.mutable_value() = l;
    d.set_usage(static_cast<int64_t>(e.bytes));
    d.set_requested(static_cast<int64_t>(add_bytes));
    return WithLimits(absl::StatusCode::kResourceExhausted, "QUOTA_EXCEEDED",
                      "over the tenant's pooled storage", {d});
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Quota> MailStore::GetQuota(const v1::GetQuotaRequest& r) {
  v1::Quota out;
  if (r.scope_case() == v1::GetQuotaRequest::kMailboxId) {
    ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id(), false));
    out.set_mailbox_id(m.id);
    out.set_usage_bytes(m.rec.usage_bytes());
    out.set_usage_messages(m.rec.usage_messages());
    *out.mutable_limit() = m.rec.quota();
    return out;
  }
  if (r.scope_case() != v1::GetQuotaRequest::kTenantId || !keys::ValidId(r.tenant_id()))
    return InvalidField("scope", "EMPTY", "mailbox_id or tenant_id");
  ASSIGN_OR_RETURN(auto sum, SumTenant(this, r.tenant_id()));
  out.set_tenant_id(r.tenant_id());
  out.set_usage_bytes(sum.first);
  out.set_usage_messages(sum.second);
  ASSIGN_OR_RETURN(*out.mutable_limit(), TenantLimit(this, r.tenant_id()));
  return out;
}

absl::StatusOr<v1::Quota> MailStore::SetQuota(const v1::SetQuotaRequest& r) {
  if (r.scope_case() == v1::SetQuotaRequest::kMailboxId) {
    RETURN_IF_ERROR(RunMutation(this, r.mailbox_id(), [&](Mutation& mut) -> absl::Status {
      *mut.mbx().rec.mutable_quota() = r.limit();
      v1::WatchEvent e;
      e.set_kind(v1::WATCH_EVENT_KIND_QUOTA_CHANGED);
      e.set_modseq(mut.NextModseq());
      mut.Event(std::move(e));
      return absl::OkStatus();
    }));
    v1::GetQuotaRequest g;
    g.set_mailbox_id(r.mailbox_id());
    return GetQuota(g);
  }
  if (r.scope_case() != v1::SetQuotaRequest::kTenantId || !keys::ValidId(r.tenant_id()))
    return InvalidField("scope", "EMPTY", "mailbox_id or tenant_id");
  kv::v1::WriteRequest w;
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::TenantQuota(r.tenant_id()));
  p->set_value(r.limit().SerializeAsString());
  auto resp = store_->Write(w, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  {
    absl::MutexLock lock(&tenant_usage_->mu);
    tenant_usage_->entries.erase(r.tenant_id());
  }
  v1::GetQuotaRequest g;
  g.set_tenant_id(r.tenant_id());
  return GetQuota(g);
}

// ---------------------------------------------------------------- archive

namespace {

bool DefaultArchiveSource(const storage::FolderRecord& f) {
  switch (f.special_use()) {
    case v1::SPECIAL_USE_ARCHIVE:
    case v1::SPECIAL_USE_TRASH:
    case v1::SPECIAL_USE_JUNK:
    case v1::SPECIAL_USE_DRAFTS:
      return false;
    default:
      return !f.noselect() && !absl::StartsWith(f.name(), "Archive/");
  }
}

absl::Status PutJob(store::Store* store, const storage::JobRecord& job, absl::Duration timeout) {
  kv::v1::WriteRequest w;
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::Job(job.tenant_id(), job.job().mailbox_id(), job.job().job_id()));
  p->set_value(job.SerializeAsString());
  auto resp = store->Write(w, absl::Now() + timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::ArchiveJob> MailStore::StartArchive(const v1::StartArchiveRequest& r,
                                                       const std::string& subject) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  for (const auto& ref : r.folders())
    if (FindFolder(m, ref) == nullptr) return FolderNotFound();
  if (r.which_case() == v1::StartArchiveRequest::WHICH_NOT_SET)
    return InvalidField("which", "EMPTY", "older_than or all");
  // One running job per mailbox.
  std::string p = keys::MailboxRange(m.tenant, m.id) + "j/";
  bool running = false;
  RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), false, SIZE_MAX, false,
                            [&](const kv::v1::KeyValue& kv) {
                              storage::JobRecord j;
                              if (j.ParseFromString(kv.value()) &&
                                  (j.job().state() == v1::JOB_STATE_QUEUED ||
                                   j.job().state() == v1::JOB_STATE_RUNNING))
                                running = true;
                              return !running;
                            }));
  if (running) return Precondition("ALREADY_RUNNING", "an archive job runs for this mailbox");
  storage::JobRecord job;
  job.mutable_job()->set_job_id(RandomId());
  job.mutable_job()->set_mailbox_id(m.id);
  job.mutable_job()->set_state(v1::JOB_STATE_QUEUED);
  *job.mutable_job()->mutable_created_at() = MicrosToTs(NowMicros());
  *job.mutable_request() = r;
  job.set_tenant_id(m.tenant);
  job.set_owner_subject(subject);
  kv::v1::WriteRequest w;
  auto* a = w.add_ops()->mutable_put();
  a->set_key(keys::Job(m.tenant, m.id, job.job().job_id()));
  a->set_value(job.SerializeAsString());
  storage::JobIndex idx;
  idx.set_tenant_id(m.tenant);
  idx.set_mailbox_id(m.id);
  auto* b = w.add_ops()->mutable_put();
  b->set_key(keys::JobIndex(job.job().job_id()));
  b->set_value(idx.SerializeAsString());
  auto resp = store_->Write(w, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  return job.job();
}

absl::StatusOr<storage::JobRecord> MailStore::GetJob(const std::string& job_id) {
  if (!keys::ValidId(job_id)) return NotFound("job", job_id);
  ASSIGN_OR_RETURN(auto got, Get(keys::JobIndex(job_id)));
  storage::JobIndex idx;
  if (!got.found() || !idx.ParseFromString(got.value())) return NotFound("job", job_id);
  ASSIGN_OR_RETURN(auto rec, Get(keys::Job(idx.tenant_id(), idx.mailbox_id(), job_id)));
  storage::JobRecord job;
  if (!rec.found() || !job.ParseFromString(rec.value())) return NotFound("job", job_id);
  return job;
}

absl::StatusOr<v1::ArchiveJob> MailStore::CancelArchiveJob(const std::string& job_id) {
  ASSIGN_OR_RETURN(storage::JobRecord job, GetJob(job_id));
  if (job.job().state() != v1::JOB_STATE_QUEUED && job.job().state() != v1::JOB_STATE_RUNNING)
    return Precondition("NOT_RUNNING", "the job has finished");
  job.set_cancel_requested(true);
  job.mutable_job()->set_state(v1::JOB_STATE_CANCELLED);
  *job.mutable_job()->mutable_finished_at() = MicrosToTs(NowMicros());
  RETURN_IF_ERROR(PutJob(store_, job, options_.timeout));
  return job.job();
}

absl::StatusOr<int> MailStore::RunArchiveJobs(size_t batch) {
  std::vector<std::string> ids;
  std::string p = "job/";
  RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                            [&](const kv::v1::KeyValue& kv) {
                              ids.push_back(kv.key().substr(p.size()));
                              return true;
                            }));
  int progressed = 0;
  for (const auto& id : ids) {
    auto loaded = GetJob(id);
    if (!loaded.ok()) continue;
    storage::JobRecord job = *loaded;
    v1::ArchiveJob& j = *job.mutable_job();
    if (j.state() != v1::JOB_STATE_QUEUED && j.state() != v1::JOB_STATE_RUNNING) continue;
    const v1::StartArchiveRequest& r = job.request();
    auto m = LoadMailbox(j.mailbox_id());
    if (!m.ok()) {
      j.set_state(v1::JOB_STATE_FAILED);
      j.set_error(std::string(m.status().message()));
      RETURN_IF_ERROR(PutJob(store_, job, options_.timeout));
      continue;
    }
    std::vector<std::string> sources;
    if (r.folders().empty()) {
      for (const auto& [f, v] : m->folders)
        if (DefaultArchiveSource(f)) sources.push_back(f.folder_id());
    } else {
      for (const auto& ref : r.folders())
        if (const auto* f = FindFolder(*m, ref); f != nullptr && f->special_use() != v1::SPECIAL_USE_ARCHIVE)
          sources.push_back(f->folder_id());
    }
    int64_t cutoff = r.has_older_than() ? TsToMicros(r.older_than()) : INT64_MAX;
    if (j.state() == v1::JOB_STATE_QUEUED) {
      j.set_state(v1::JOB_STATE_RUNNING);
      *j.mutable_started_at() = MicrosToTs(NowMicros());
      uint64_t total = 0;
      for (const auto& fid : sources) {
        ASSIGN_OR_RETURN(auto list, ScanMessages(this, *m, fid, 1, UINT32_MAX));
        for (const auto& [uid, msg] : list) total += msg.internal_micros() < cutoff;
      }
      j.set_total(total);
    }
    // One batch: the first `batch` candidates of the first folder that has any.
    size_t moved = 0;
    for (const auto& fid : sources) {
      ASSIGN_OR_RETURN(auto list, ScanMessages(this, *m, fid, 1, UINT32_MAX));
      std::map<std::string, std::vector<uint32_t>> by_dest;
      size_t picked = 0;
      for (const auto& [uid, msg] : list) {
        if (msg.internal_micros() >= cutoff) continue;
        std::string dest = "Archive";
        if (r.by_year()) {
          absl::CivilSecond cs = absl::ToCivilSecond(absl::FromUnixMicros(msg.internal_micros()),
                                                     absl::UTCTimeZone());
          dest = absl::StrCat("Archive/", cs.year());
        }
        by_dest[dest].push_back(uid);
        if (++picked >= batch) break;
      }
      for (const auto& [dest, uids] : by_dest) {
        v1::MoveRequest mv;
        mv.set_mailbox_id(j.mailbox_id());
        mv.mutable_source()->set_folder_id(fid);
        ToIdSet(uids, mv.mutable_messages()->mutable_uids());
        if (dest == "Archive") {
          mv.mutable_destination()->set_special_use(v1::SPECIAL_USE_ARCHIVE);
        } else {
          v1::CreateFolderRequest c;
          c.set_mailbox_id(j.mailbox_id());
          c.set_name(dest);
          auto created = CreateFolder(c);
          if (!created.ok() && created.status().code() != absl::StatusCode::kAlreadyExists)
            return created.status();
          mv.mutable_destination()->set_name(dest);
        }
        ASSIGN_OR_RETURN(auto res, Move(mv));
        moved += res.source_uids_size();
      }
      if (moved > 0) break;
    }
    // Re-read: a cancel may have landed meanwhile (what moved stays moved).
    ASSIGN_OR_RETURN(storage::JobRecord latest, GetJob(id));
    if (latest.cancel_requested()) continue;
    j.set_moved(j.moved() + moved);
    if (moved == 0) {
      j.set_state(v1::JOB_STATE_SUCCEEDED);
      j.set_total(std::max(j.total(), j.moved()));
      *j.mutable_finished_at() = MicrosToTs(NowMicros());
    }
    RETURN_IF_ERROR(PutJob(store_, job, options_.timeout));
    ++progressed;
  }
  return progressed;
}

// ---------------------------------------------------------------- retention

absl::StatusOr<v1::RetentionRules> MailStore::SetRetentionRules(const v1::SetRetentionRulesRequest& r) {
  if (!keys::ValidId(r.tenant_id())) return InvalidField("tenant_id", "BAD_ID", "not an id");
  v1::RetentionRules rules;
  for (int i = 0; i < r.rules_size(); ++i) {
    v1::RetentionRule rule = r.rules(i);
    std::string field = absl::StrCat("rules[", i, "]");
    if (rule.folder().key_case() == v1::FolderRef::KEY_NOT_SET)
      return InvalidField(field + ".folder", "EMPTY", "which folder");
    if (rule.older_than().seconds() <= 0)
      return InvalidField(field + ".older_than", "EMPTY", "a positive duration");
    if (rule.action() == v1::RETENTION_ACTION_UNSPECIFIED)
      return InvalidField(field + ".action", "EMPTY", "delete or archive");
    if (rule.rule_id().empty()) rule.set_rule_id(RandomId());
    *rules.add_rules() = std::move(rule);
  }
  ASSIGN_OR_RETURN(auto got, Get(keys::Retention(r.tenant_id())));
  v1::RetentionRules current;
  if (got.found() && !current.ParseFromString(got.value())) return absl::DataLossError("rules");
  if (r.expected_version() != 0 && r.expected_version() != current.version())
    return absl::AbortedError("retention rules changed (expected_version is stale)");
  rules.set_tenant_id(r.tenant_id());
  rules.set_version(current.version() + 1);
  kv::v1::WriteRequest w;
  auto* c = w.add_conditions();
  c->set_key(keys::Retention(r.tenant_id()));
  c->set_kind(kv::v1::Condition::VERSION_EQUALS);
  c->set_version(got.found() ? got.version() : 0);
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::Retention(r.tenant_id()));
  p->set_value(rules.SerializeAsString());
  auto* q = w.add_ops()->mutable_put();
  q->set_key(keys::RetentionIndex(r.tenant_id()));
  auto resp = store_->Write(w, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  if (resp->has_condition_failed()) return absl::AbortedError("retention rules changed concurrently");
  return rules;
}

absl::StatusOr<v1::RetentionRules> MailStore::ListRetentionRules(const std::string& tenant_id) {
  if (!keys::ValidId(tenant_id)) return InvalidField("tenant_id", "BAD_ID", "not an id");
  ASSIGN_OR_RETURN(auto got, Get(keys::Retention(tenant_id)));
  v1::RetentionRules rules;
  rules.set_tenant_id(tenant_id);
  if (got.found() && !rules.ParseFromString(got.value())) return absl::DataLossError("rules");
  return rules;
}

absl::StatusOr<uint64_t> MailStore::RunRetention(absl::Time now) {
  std::vector<std::string> tenants;
  RETURN_IF_ERROR(ScanRange("ret/", keys::PrefixEnd("ret/"), true, SIZE_MAX, false,
                            [&](const kv::v1::KeyValue& kv) {
                              tenants.push_back(kv.key().substr(4));
                              return true;
                            }));
  uint64_t affected = 0;
  for (const auto& tenant : tenants) {
    ASSIGN_OR_RETURN(v1::RetentionRules rules, ListRetentionRules(tenant));
    std::vector<std::string> mailboxes;
    std::string p = keys::TenantMailboxPrefix(tenant);
    RETURN_IF_ERROR(ScanRange(p, keys::PrefixEnd(p), true, SIZE_MAX, false,
                              [&](const kv::v1::KeyValue& kv) {
                                mailboxes.push_back(kv.key().substr(p.size()));
                                return true;
                              }));
    for (const auto& rule : rules.rules()) {
      if (!rule.enabled()) continue;
      int64_t cutoff = absl::ToUnixMicros(now - absl::Seconds(rule.older_than().seconds()));
      for (const auto& mbx : mailboxes) {
        for (;;) {
          size_t done = 0;
          absl::Status s = RunMutation(this, mbx, [&](Mutation& mut) -> absl::Status {
            done = 0;
            const auto* f = FindFolder(mut.mbx(), rule.folder());
            if (f == nullptr || f->noselect()) return absl::OkStatus();
            ASSIGN_OR_RETURN(auto list, ScanMessages(this, mut.mbx(), f->folder_id(), 1, UINT32_MAX));
            std::vector<std::pair<uint32_t, storage::MessageRecord>> old;
            for (auto& x : list)
              if (x.second.internal_micros() < cutoff && old.size() < 500) old.push_back(std::move(x));
            if (old.empty()) return absl::OkStatus();
            if (rule.action() == v1::RETENTION_ACTION_DELETE) {
              std::vector<uint32_t> uids;
              RETURN_IF_ERROR(ExpungeIn(mut, f->folder_id(), old, &uids, nullptr));
              done = uids.size();
              return absl::OkStatus();
            }
            return absl::OkStatus();  // ARCHIVE: done below through Move
          });
          if (!s.ok()) {
            log::Warn("retention failed", {{"tenant", tenant}, {"mailbox", mbx}, {"status", s}});
            break;
          }
          if (rule.action() == v1::RETENTION_ACTION_ARCHIVE) {
            auto m = LoadMailbox(mbx);
            if (!m.ok()) break;
            const auto* f = FindFolder(*m, rule.folder());
            if (f == nullptr || f->special_use() == v1::SPECIAL_USE_ARCHIVE) break;
            auto list = ScanMessages(this, *m, f->folder_id(), 1, UINT32_MAX);
            if (!list.ok()) break;
            std::vector<uint32_t> uids;
            for (const auto& [uid, msg] : *list)
              if (msg.internal_micros() < cutoff && uids.size() < 500) uids.push_back(uid);
            if (uids.empty()) break;
            v1::MoveRequest mv;
            mv.set_mailbox_id(mbx);
            mv.mutable_source()->set_folder_id(f->folder_id());
            ToIdSet(uids, mv.mutable_messages()->mutable_uids());
            mv.mutable_destination()->set_special_use(v1::SPECIAL_USE_ARCHIVE);
            auto moved = Move(mv);
            if (!moved.ok()) break;
            done = moved->source_uids_size();
          }
          affected += done;
          if (done < 500) break;
        }
      }
    }
  }
  return affected;
}

// ---------------------------------------------------------------- export

absl::Status MailStore::ExportMbox(const v1::ExportMboxRequest& r,
                                   const std::function<bool(const v1::ExportMboxResponse&)>& emit) {
  ASSIGN_OR_RETURN(Mbx m, LoadMailbox(r.mailbox_id()));
  const auto* f = FindFolder(m, r.folder());
  if (f == nullptr || f->noselect()) return FolderNotFound();
  uint32_t max_uid = f->uidnext() > 0 ? f->uidnext() - 1 : 0;
  std::string fid = f->folder_id();
  v1::ExportMboxResponse chunk;
  uint64_t count = 0;
  // Page through the folder so memory stays bounded.
  uint32_t next = 1;
  for (;;) {
    std::vector<std::pair<uint32_t, storage::MessageRecord>> page;
    std::string start = keys::Message(m.tenant, m.id, fid, next);
    std::string p = keys::MessagePrefix(m.tenant, m.id, fid);
    absl::Status bad;
    RETURN_IF_ERROR(ScanRange(start, keys::PrefixEnd(p), false, 200, false,
                              [&](const kv::v1::KeyValue& kv) {
                                storage::MessageRecord rec;
                                if (!rec.ParseFromString(kv.value())) {
                                  bad = absl::DataLossError("message record");
                                  return false;
                                }
                                page.emplace_back(keys::ReadBe32(kv.key()), std::move(rec));
                                return true;
                              }));
    RETURN_IF_ERROR(bad);
    if (page.empty()) break;
    for (const auto& [uid, msg] : page) {
      if (r.has_uids() && !InSet(r.uids(), uid, max_uid)) continue;
      ASSIGN_OR_RETURN(auto body, LoadBody(m.tenant, msg.body_sha()));
      ASSIGN_OR_RETURN(std::string bytes, LoadBodyBytes(m.tenant, msg.body_sha(), body));
      bytes = msg.prepend() + bytes;
      std::string out = absl::StrCat(
          "From MAILER-DAEMON ",
          absl::FormatTime("%a %b %e %H:%M:%S %Y", absl::FromUnixMicros(msg.internal_micros()),
                           absl::UTCTimeZone()),
          "\n");
      // mboxrd: LF line ends; ">*From " lines get one more '>'.
      size_t pos = 0;
      while (pos < bytes.size()) {
        size_t eol = bytes.find('\n', pos);
        size_t end = eol == std::string::npos ? bytes.size() : eol;
        std::string_view line(bytes.data() + pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        size_t gt = 0;
        while (gt < line.size() && line[gt] == '>') ++gt;
        if (line.substr(gt).starts_with("From ")) out.push_back('>');
        out.append(line.data(), line.size());
        out.push_back('\n');
        pos = end + 1;
      }
      out.push_back('\n');
      chunk.mutable_chunk()->append(out);
      ++count;
      if (chunk.chunk().size() >= (256u << 10)) {
        chunk.set_messages(count);
        if (!emit(chunk)) return absl::OkStatus();
        chunk.clear_chunk();
      }
    }
    next = page.back().first + 1;
    if (page.back().first == UINT32_MAX) break;
  }
  chunk.set_messages(count);
  emit(chunk);
  return absl::OkStatus();
}

}  // namespace mailgrid::mailstore
