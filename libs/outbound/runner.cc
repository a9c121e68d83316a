#include "libs/outbound/runner.h"

#include <map>

#include "libs/base/status.h"
#include "libs/outbound/dsn.h"
#include "libs/outbound/time_util.h"

namespace mailgrid::outbound {
namespace {

void Add(RunStats* into, const RunStats& s) {
  into->leased += s.leased;
  into->delivered += s.delivered;
  into->deferred += s.deferred;
  into->bounced += s.bounced;
  into->dsns += s.dsns;
  into->lost_leases += s.lost_leases;
}

bool Due(const QueueRecipient& r, absl::Time now) {
  return (r.state() == relay::v1::RECIPIENT_STATE_PENDING ||
          r.state() == relay::v1::RECIPIENT_STATE_DEFERRED) &&
         FromProto(r.next_attempt_at()) <= now;
}

}  // namespace

void QueueRunner::Start() {
  if (started_.exchange(true)) return;
  for (int i = 0; i < options_.threads; ++i) threads_.emplace_back([this] { Loop(); });
}

void QueueRunner::Stop() {
  if (!started_.load()) return;
  if (!stop_.HasBeenNotified()) stop_.Notify();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void QueueRunner::Loop() {
  while (!stop_.HasBeenNotified()) {
    RunStats s = RunOnce(absl::Now());
    {
      absl::MutexLock lock(&mu_);
      Add(&totals_, s);
    }
    if (s.leased == 0) stop_.WaitForNotificationWithTimeout(options_.poll_interval);
  }
}

RunStats QueueRunner::totals() const {
  absl::MutexLock lock(&mu_);
  return totals_;
}

RunStats QueueRunner::RunOnce(absl::Time now) {
  RunStats stats;
  auto ids = queue_->DueIds(now, options_.batch);
  if (!ids.ok()) return stats;
  for (const auto& id : *ids) {
    if (stop_.HasBeenNotified()) break;
    // Losing the race to another runner is normal: skip.
    auto lease = queue_->TryLease(id, options_.holder, now);
    if (!lease.ok()) continue;
    ++stats.leased;
    (void)Process(*lease, &stats);
    now = std::max(now, absl::Now());
  }
  return stats;
}

absl::Status QueueRunner::Process(const Lease& lease, RunStats* stats) {
  const QueueEntry& entry = lease.entry;
  auto body = queue_->ReadBody(entry.queue_id());
  if (!body.ok()) {
    (void)queue_->Abandon(lease, absl::Now());
    return body.status();
  }
  absl::Time started = absl::Now();
  std::vector<RecipientOutcome> outcomes;
  // Past its lifetime: no more attempts; Complete bounces what is deferred.
  bool expired = started >= FromProto(entry.expires_at());
  // Recipients grouped by domain (the queue stores them sorted that way).
  std::map<std::string, std::vector<std::string>> by_domain;
  for (const auto& r : entry.recipients()) {
    if (!Due(r, started)) continue;
    if (expired) {
      RecipientOutcome o{r.address(), RecipientOutcome::Kind::kDeferred, r.last_reply()};
      if (o.reply.code() == 0 && o.reply.error().empty())
        o.reply.set_error("delivery time expired");
      outcomes.push_back(std::move(o));
    } else {
      by_domain[r.domain()].push_back(r.address());
    }
  }
  for (const auto& [domain, rcpts] : by_domain) {
    auto results = transport_->Deliver(domain, entry.envelope_from(), rcpts, *body);
    outcomes.insert(outcomes.end(), results.begin(), results.end());
  }
  absl::Time now = absl::Now();
  auto report = queue_->Complete(lease, outcomes, now);
  if (!report.ok()) {
    if (absl::IsAborted(report.status())) ++stats->lost_leases;
    return report.status();
  }
  for (const auto& o : outcomes) {
    switch (o.kind) {
      case RecipientOutcome::Kind::kDelivered:
        ++stats->delivered;
        break;
      case RecipientOutcome::Kind::kDeferred:
        ++stats->deferred;
        break;
      case RecipientOutcome::Kind::kBounced:
        ++stats->bounced;
        break;
    }
  }
  // DSNs are enqueued after the outcome is committed: a crash in between
  // loses the notice but never sends it twice (see README).
  auto send = [&](const std::vector<QueueRecipient>& rcpts, DsnKind kind) {
    auto dsn = MakeDsn(report->entry, rcpts, *body, kind, options_.reporting_mta, now);
    if (dsn && queue_->Enqueue(*dsn, now).ok()) ++stats->dsns;
  };
  if (!report->newly_bounced.empty()) send(report->newly_bounced, DsnKind::kFailure);
  if (report->delay_warning_due) send(report->delayed, DsnKind::kDelay);
  return absl::OkStatus();
}

}  // namespace mailgrid::outbound
