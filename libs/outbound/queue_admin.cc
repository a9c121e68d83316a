// The RelayService queue RPCs over Queue (queue.h): each is one
// read-modify-write of the record, version-checked and retried on conflict,
// so they are safe against a runner completing at the same moment.
#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "libs/outbound/queue.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;

bool Pending(const QueueRecipient& r) {
  return r.state() == relay::v1::RECIPIENT_STATE_PENDING ||
         r.state() == relay::v1::RECIPIENT_STATE_DEFERRED;
}

bool Matches(const QueueEntry& e, const relay::v1::ListQueueRequest& req) {
  if (!req.tenant_id().empty() && e.tenant_id() != req.tenant_id()) return false;
  if (!req.sender().empty() && !absl::EqualsIgnoreCase(e.envelope_from(), req.sender())) {
    return false;
  }
  if (!req.domain().empty() &&
      std::none_of(e.recipients().begin(), e.recipients().end(),
                   [&](const QueueRecipient& r) { return r.domain() == req.domain(); })) {
    return false;
  }
  if (req.states_size() > 0 &&
      std::find(req.states().begin(), req.states().end(), e.state()) == req.states().end()) {
    return false;
  }
  if (req.has_created_before() && FromProto(e.created_at()) >= FromProto(req.created_before())) {
    return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<QueueEntry> Queue::Mutate(
    std::string_view queue_id, std::string_view tenant_filter,
    const std::function<absl::Status(QueueEntry*, bool* remove)>& mutate) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    ASSIGN_OR_RETURN(Record record, Load(queue_id));
    if (!tenant_filter.empty() && record.entry.tenant_id() != tenant_filter) {
      return absl::NotFoundError("queue entry not found");
    }
    QueueEntry updated = record.entry;
    bool remove = false;
    RETURN_IF_ERROR(mutate(&updated, &remove));
    ASSIGN_OR_RETURN(bool stored, Store(record, updated, remove, nullptr));
    if (stored) return updated;
  }
  return absl::UnavailableError("queue entry kept changing; retry");
}

absl::StatusOr<relay::v1::ListQueueResponse> Queue::ListQueue(
    const relay::v1::ListQueueRequest& request, std::string_view tenant_filter, absl::Time now) {
  int page_size = request.page().page_size();
  if (page_size < 0) return absl::InvalidArgumentError("page.page_size: NEGATIVE");
  if (page_size == 0) page_size = kDefaultPageSize;
  page_size = std::min(page_size, kMaxPageSize);
  relay::v1::ListQueueRequest effective = request;
  if (!tenant_filter.empty()) effective.set_tenant_id(std::string(tenant_filter));

  const std::string prefix = kv::GlobalPrefix("outq");
  kv::v1::ScanRequest scan;
  // page_token = the last queue id returned; ids sort by age.
  scan.mutable_key_range()->set_start(
      request.page().page_token().empty()
          ? prefix
          : kv::Successor(kv::KeyBuilder(prefix).Str(request.page().page_token()).Build()));
  scan.mutable_key_range()->set_end(kv::PrefixEnd(prefix));
  scan.set_limit(256);
  relay::v1::ListQueueResponse response;
  // Filtering is a scan over the queue in age order; fine for an admin
  // listing (the delivery path never scans, it uses the due index).
  while (true) {
    ASSIGN_OR_RETURN(auto page, store_->Scan(scan, Deadline()));
    for (const auto& kv_pair : page.entries()) {
      QueueEntry entry;
      if (!entry.ParseFromString(kv_pair.value())) continue;
      DeriveState(&entry, now);
      if (!Matches(entry, effective)) continue;
      *response.add_entries() = std::move(entry);
      if (response.entries_size() == page_size) {
        response.mutable_page_info()->set_next_page_token(
            response.entries(page_size - 1).queue_id());
        response.mutable_page_info()->set_total_size(-1);
        return response;
      }
    }
    if (page.continuation().empty()) break;
    scan.set_continuation(page.continuation());
  }
  response.mutable_page_info()->set_total_size(-1);
  return response;
}

absl::StatusOr<QueueEntry> Queue::GetQueueEntry(std::string_view queue_id,
                                                std::string_view tenant_filter, absl::Time now) {
  ASSIGN_OR_RETURN(Record record, Load(queue_id));
  if (!tenant_filter.empty() && record.entry.tenant_id() != tenant_filter) {
    return absl::NotFoundError("queue entry not found");
  }
  DeriveState(&record.entry, now);
  return record.entry;
}

absl::StatusOr<QueueEntry> Queue::RetryNow(const relay::v1::RetryNowRequest& request,
                                           std::string_view tenant_filter, absl::Time now) {
  ASSIGN_OR_RETURN(QueueEntry entry,
                   Mutate(request.queue_id(), tenant_filter, [&](QueueEntry* e, bool*) {
                     if (!e->hold_reason().empty()) return absl::FailedPreconditionError("HELD");
                     int touched = 0;
                     for (auto& r : *e->mutable_recipients()) {
                       if (!Pending(r)) continue;
                       if (!request.recipient().empty() &&
                           !absl::EqualsIgnoreCase(r.address(), request.recipient())) {
                         continue;
                       }
                       ToProto(now, r.mutable_next_attempt_at());
                       ++touched;
                     }
                     if (touched == 0) return absl::FailedPreconditionError("nothing pending");
                     return absl::OkStatus();
                   }));
  DeriveState(&entry, now);
  return entry;
}

absl::StatusOr<QueueEntry> Queue::Hold(const relay::v1::HoldRequest& request,
                                       std::string_view tenant_filter, absl::Time now) {
  ASSIGN_OR_RETURN(
      QueueEntry entry, Mutate(request.queue_id(), tenant_filter, [&](QueueEntry* e, bool*) {
        if (!e->hold_reason().empty()) {
          return absl::FailedPreconditionError("already HELD");
        }
        if (std::none_of(e->recipients().begin(), e->recipients().end(), Pending)) {
          return absl::FailedPreconditionError("finished");
        }
        e->set_hold_reason(request.reason().empty() ? "operator hold" : request.reason());
        return absl::OkStatus();
      }));
  DeriveState(&entry, now);
  return entry;
}

absl::StatusOr<QueueEntry> Queue::Release(const relay::v1::ReleaseRequest& request,
                                          std::string_view tenant_filter, absl::Time now) {
  ASSIGN_OR_RETURN(QueueEntry entry,
                   Mutate(request.queue_id(), tenant_filter, [&](QueueEntry* e, bool*) {
                     // Audit and moderation holds are decided through the
                     // held-mail RPCs, never released here.
                     if (e->hold_reason().empty() || e->hold_reason() == "audit" ||
                         e->hold_reason() == "moderation") {
                       return absl::FailedPreconditionError("not HELD by an operator");
                     }
                     e->clear_hold_reason();
                     ClampDue(e, now);  // due now, not at its old next attempt
                     return absl::OkStatus();
                   }));
  DeriveState(&entry, now);
  return entry;
}

absl::StatusOr<QueueEntry> Queue::DecideHold(std::string_view queue_id, std::string_view kind,
                                             bool approve, std::string_view tenant_filter,
                                             absl::Time now) {
  ASSIGN_OR_RETURN(QueueEntry entry,
                   Mutate(queue_id, tenant_filter, [&](QueueEntry* e, bool* remove) {
                     if (kind.empty() || e->hold_reason() != kind) {
                       return absl::FailedPreconditionError("ALREADY_DECIDED");
                     }
                     e->clear_hold_reason();
                     if (!approve) {
                       for (auto& r : *e->mutable_recipients()) {
                         if (Pending(r)) r.set_state(relay::v1::RECIPIENT_STATE_DROPPED);
                       }
                       *remove = true;
                       return absl::OkStatus();
                     }
                     for (auto& r : *e->mutable_recipients()) {
                       if (Pending(r)) ToProto(now, r.mutable_next_attempt_at());
                     }
                     return absl::OkStatus();
                   }));
  DeriveState(&entry, now);
  return entry;
}

absl::Status Queue::DeleteQueueEntry(const relay::v1::DeleteQueueEntryRequest& request,
                                     std::string_view tenant_filter, absl::Time) {
  if (request.reason().empty()) return absl::InvalidArgumentError("reason: EMPTY");
  return Mutate(request.queue_id(), tenant_filter,
                [](QueueEntry*, bool* remove) {
                  *remove = true;
                  return absl::OkStatus();
                })
      .status();
}

absl::StatusOr<CompletionReport> Queue::BounceQueueEntry(
    const relay::v1::BounceQueueEntryRequest& request, std::string_view tenant_filter,
    absl::Time now) {
  if (request.reason().empty()) return absl::InvalidArgumentError("reason: EMPTY");
  CompletionReport report;
  // Read before the entry (and its body) is removed: the DSN quotes its headers.
  ASSIGN_OR_RETURN(QueueEntry before, GetQueueEntry(request.queue_id(), tenant_filter, now));
  ASSIGN_OR_RETURN(report.body, ReadBody(before.queue_id()));
  ASSIGN_OR_RETURN(QueueEntry entry,
                   Mutate(request.queue_id(), tenant_filter, [&](QueueEntry* e, bool* remove) {
                     report.newly_bounced.clear();
                     for (auto& r : *e->mutable_recipients()) {
                       if (!Pending(r)) continue;
                       r.set_state(relay::v1::RECIPIENT_STATE_BOUNCED);
                       r.mutable_last_reply()->set_error(
                           absl::StrCat("bounced by operator: ", request.reason()));
                       report.newly_bounced.push_back(r);
                     }
                     if (report.newly_bounced.empty()) {
                       return absl::FailedPreconditionError("nothing pending");
                     }
                     // A runner holding a lease loses it (Complete sees the
                     // entry gone); nothing more to deliver.
                     *remove = true;
                     return absl::OkStatus();
                   }));
  DeriveState(&entry, now);
  report.entry = std::move(entry);
  report.finished = true;
  return report;
}

}  // namespace mailgrid::outbound
