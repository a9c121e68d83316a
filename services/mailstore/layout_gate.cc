// The search layout gate. Per-term UID blocks (FolderRecord.block_postings)
// are invisible to a mailstored from before them: its text searches in a
// block folder find nothing. So in a group that may still hold such a
// replica (a rolling upgrade, or a rollback of one), no folder may get
// blocks. Each member's mailstored reports what it reads
// ("ms/member/<raft id>", refreshed while the gate is closed, written
// through the leader), and the leader opens the gate ("ms/layout" = 2) once
// every member of the configuration reported blocks recently: one write
// conditional on those reports and on the gate's absence. Until then new
// folders keep per-message postings and no folder is migrated; a member
// rolled back to an older binary stops reporting and its report goes
// stale, so the gate stays closed. The gate never closes again (blocks, once
// written, must stay readable): a rollback after it opened needs a binary
// that reads blocks (every binary since session 8 does).
#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "services/mailstore/store_internal.h"

namespace mailgrid::mailstore {

bool MailStore::BlockLayoutAllowed() {
  if (!options_.gate_block_layout || block_layout_open_.load()) return true;
  auto got = Get(keys::SearchLayout());
  if (!got.ok()) {
    log::Warn("search layout record unreadable; new folders use per-message postings",
              {{"status", got.status()}});
    return false;
  }
  storage::SearchLayoutRecord rec;
  if (!got->found() || !rec.ParseFromString(got->value()) || rec.version() < kBlockLayout)
    return false;
  block_layout_open_.store(true);
  return true;
}

absl::Status MailStore::ReportLayoutSupport(store::Store* via, uint64_t member,
                                            uint32_t reads_layout, absl::Duration timeout) {
  storage::LayoutSupportRecord rec;
  rec.set_reads_layout(reads_layout);
  rec.set_at_micros(NowMicros());
  kv::v1::WriteRequest w;
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::LayoutSupport(member));
  p->set_value(rec.SerializeAsString());
  auto resp = via->Write(w, absl::Now() + timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  if (resp->has_rejected()) return absl::InvalidArgumentError(resp->rejected().reason());
  return absl::OkStatus();
}

absl::StatusOr<bool> MailStore::OpenBlockLayoutIfSupported(const std::vector<uint64_t>& members,
                                                           absl::Duration fresh) {
  if (BlockLayoutAllowed()) return true;
  if (members.empty()) return false;
  const int64_t oldest = NowMicros() - absl::ToInt64Microseconds(fresh);
  kv::v1::WriteRequest w;
  for (uint64_t id : members) {
    ASSIGN_OR_RETURN(auto got, Get(keys::LayoutSupport(id)));
    storage::LayoutSupportRecord rec;
    if (!got.found() || !rec.ParseFromString(got.value()) || rec.reads_layout() < kBlockLayout ||
        rec.at_micros() < oldest)
      return false;  // not reported, an older binary, or not heard from lately
    auto* c = w.add_conditions();
    c->set_key(keys::LayoutSupport(id));
    c->set_kind(kv::v1::Condition::VERSION_EQUALS);
    c->set_version(got.version());
  }
  storage::SearchLayoutRecord layout;
  layout.set_version(kBlockLayout);
  layout.set_opened_micros(NowMicros());
  for (uint64_t id : members) layout.add_members(id);
  auto* c = w.add_conditions();
  c->set_key(keys::SearchLayout());
  c->set_kind(kv::v1::Condition::VERSION_EQUALS);
  c->set_version(0);
  auto* p = w.add_ops()->mutable_put();
  p->set_key(keys::SearchLayout());
  p->set_value(layout.SerializeAsString());
  auto resp = store_->Write(w, absl::Now() + options_.timeout);
  if (!resp.ok()) return Unavailable(resp.status());
  if (resp->has_rejected()) return absl::InvalidArgumentError(resp->rejected().reason());
  if (resp->has_condition_failed()) return BlockLayoutAllowed();  // re-checked next time
  log::Info("search layout: every member reads per-term UID blocks; new folders use them",
            {{"members", static_cast<unsigned long long>(members.size())}});
  block_layout_open_.store(true);
  return true;
}

}  // namespace mailgrid::mailstore
