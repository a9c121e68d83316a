#include "libs/outbound/runner.h"

#include <map>
#include <optional>

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
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    work_.SignalAll();
  }
  if (!stop_.HasBeenNotified()) stop_.Notify();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  // Leases nobody started: give them back so another runner (or this one
  // after a restart) takes them now rather than after lease_duration.
  std::deque<Work> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(pending_);
  }
  for (const Work& w : left) (void)queue_->Abandon(w.lease, absl::Now());
}

bool QueueRunner::Accepting() const {
  absl::MutexLock lock(&mu_);
  return started_.load() && !stopping_ && pending_.size() < options_.max_pending;
}

bool QueueRunner::Offer(Lease lease, std::string body) {
  absl::MutexLock lock(&mu_);
  if (!started_.load() || stopping_ || pending_.size() >= options_.max_pending) return false;
  pending_.push_back(Work{std::move(lease), std::move(body)});
  work_.Signal();
  return true;
}

int QueueRunner::ScanAndLease(absl::Time now) {
  auto ids = queue_->DueIds(now, options_.batch);
  if (!ids.ok()) return 0;
  int leased = 0;
  for (const auto& id : *ids) {
    if (stop_.HasBeenNotified()) break;
    {
      // Entries this process already holds (offered, not started) are due
      // at their lease expiry only: no double work here.
      absl::MutexLock lock(&mu_);
      if (pending_.size() >= options_.max_pending) break;
    }
    auto lease = queue_->TryLease(id, options_.holder, now);
    if (!lease.ok()) continue;  // another runner won the race: normal
    ++leased;
    absl::MutexLock lock(&mu_);
    pending_.push_back(Work{*std::move(lease), ""});
    work_.Signal();
  }
  return leased;
}

void QueueRunner::Loop() {
  while (true) {
    std::optional<Work> work;
    bool scan = false;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (!pending_.empty()) {
        work = std::move(pending_.front());
        pending_.pop_front();
      } else if (!scanning_) {
        scanning_ = scan = true;
      } else {
        work_.WaitWithTimeout(&mu_, options_.poll_interval);
        continue;
      }
    }
    if (scan) {
      int leased = ScanAndLease(absl::Now());
      absl::MutexLock lock(&mu_);
      scanning_ = false;
      // Nothing due: sleep, unless an Offer arrives.
      if (leased == 0 && pending_.empty() && !stopping_) {
        work_.WaitWithTimeout(&mu_, options_.poll_interval);
      }
      continue;
    }
    RunStats s;
    ++s.leased;
    (void)Process(work->lease, &s, work->body.empty() ? nullptr : &work->body);
    absl::MutexLock lock(&mu_);
    Add(&totals_, s);
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

absl::Status QueueRunner::Process(const Lease& lease, RunStats* stats, const std::string* known) {
  const QueueEntry& entry = lease.entry;
  absl::StatusOr<std::string> body =
      known != nullptr ? absl::StatusOr<std::string>(*known) : queue_->ReadBody(entry.queue_id());
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
