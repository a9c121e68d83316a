#include "libs/outbound/runner.h"

#include <algorithm>
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
  renewer_ = std::thread([this] { RenewLoop(); });
}

std::shared_ptr<QueueRunner::Held> QueueRunner::Track(Lease lease) {
  auto held = std::make_shared<Held>();
  {
    absl::MutexLock lock(&held->mu);
    held->lease = std::move(lease);
  }
  absl::MutexLock lock(&mu_);
  held_.push_back(held);
  return held;
}

void QueueRunner::Untrack(const std::shared_ptr<Held>& held) {
  absl::MutexLock lock(&mu_);
  auto it = std::find(held_.begin(), held_.end(), held);
  if (it != held_.end()) {
    *it = std::move(held_.back());
    held_.pop_back();
  }
}

bool QueueRunner::RenewIfDue(Held* held, absl::Time now) {
  // Caller holds held->mu.
  held->mu.AssertHeld();
  if (held->done || held->lost) return !held->lost;
  const absl::Duration lease = queue_->options().lease_duration;
  if (held->lease.expires_at - now > lease / 2) return true;
  absl::Status renewed = queue_->RenewLease(&held->lease, now);
  if (absl::IsAborted(renewed)) {
    held->lost = true;
    return false;
  }
  // Other errors (store briefly unavailable): the next tick retries.
  return true;
}

void QueueRunner::RenewLoop() {
  // Checked often enough that a lease is renewed with a third of it left.
  const absl::Duration tick = std::clamp(queue_->options().lease_duration / 6,
                                         absl::Milliseconds(50), absl::Seconds(30));
  while (!renewer_stop_.WaitForNotificationWithTimeout(tick)) {
    std::vector<std::shared_ptr<Held>> held;
    {
      absl::MutexLock lock(&mu_);
      held = held_;
    }
    for (const auto& h : held) {
      absl::MutexLock lock(&h->mu);
      (void)RenewIfDue(h.get(), absl::Now());
    }
  }
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
  // Only now: deliveries in flight kept renewing while the workers finished.
  if (!renewer_stop_.HasBeenNotified()) renewer_stop_.Notify();
  if (renewer_.joinable()) renewer_.join();
  // Leases nobody started: give them back so another runner (or this one
  // after a restart) takes them now rather than after lease_duration.
  std::deque<Work> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(pending_);
    for (auto& [key, works] : parked_) {
      for (Work& w : works) left.push_back(std::move(w));
    }
    parked_.clear();
    parked_count_ = 0;
  }
  for (const Work& w : left) {
    Lease lease;
    {
      absl::MutexLock lock(&w.held->mu);
      w.held->done = true;
      lease = w.held->lease;
    }
    (void)queue_->Abandon(lease, absl::Now());
    Untrack(w.held);
  }
}

bool QueueRunner::Accepting() const {
  absl::MutexLock lock(&mu_);
  return started_.load() && !stopping_ && pending_.size() < options_.max_pending;
}

bool QueueRunner::Offer(Lease lease, std::string body) {
  absl::MutexLock lock(&mu_);
  if (!started_.load() || stopping_ || pending_.size() >= options_.max_pending) return false;
  auto held = std::make_shared<Held>();
  {
    absl::MutexLock held_lock(&held->mu);
    held->lease = std::move(lease);
  }
  held_.push_back(held);
  pending_.push_back(Work{std::move(held), std::move(body)});
  work_.Signal();
  return true;
}

int QueueRunner::ScanAndLease(absl::Time now, size_t* found) {
  *found = 0;
  auto ids = queue_->DueIds(now, options_.batch);
  if (!ids.ok()) return 0;
  *found = ids->size();
  int leased = 0;
  for (const auto& id : *ids) {
    if (stop_.HasBeenNotified()) break;
    {
      // Entries this process already holds (offered, not started) are due
      // at their lease expiry only: no double work here.
      absl::MutexLock lock(&mu_);
      if (pending_.size() >= options_.max_pending || parked_count_ >= options_.max_parked) break;
    }
    auto lease = queue_->TryLease(id, options_.holder, now);
    if (!lease.ok()) continue;  // another runner won the race: normal
    ++leased;
    std::shared_ptr<Held> held = Track(*std::move(lease));
    absl::MutexLock lock(&mu_);
    pending_.push_back(Work{std::move(held), ""});
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
      const absl::Time now = absl::Now();
      if (!pending_.empty()) {
        work = std::move(pending_.front());
        pending_.pop_front();
      } else if (!scanning_ && now >= next_scan_) {
        scanning_ = scan = true;
      } else {
        // Offered work wakes us; otherwise the next scan is due.
        absl::Duration wait = options_.poll_interval;
        if (!scanning_) wait = std::min(wait, next_scan_ - now);
        work_.WaitWithTimeout(&mu_, std::max(wait, absl::Milliseconds(1)));
        continue;
      }
    }
    if (scan) {
      const absl::Time started = absl::Now();
      size_t found = 0;
      const int leased = ScanAndLease(started, &found);
      absl::MutexLock lock(&mu_);
      scanning_ = false;
      // A worker without offered work scans at most once per poll_interval,
      // unless the last scan came back full and leased something (more may
      // be due; a full scan whose leases all failed, or that stopped at
      // max_pending/max_parked, waits like an empty one). Scanning whenever
      // the list ran dry cost a store round per message or so under a
      // steady stream of offered (already leased) messages, which the scan
      // never finds anyway.
      const bool more = found >= options_.batch && leased > 0;
      next_scan_ = more ? started : started + options_.poll_interval;
      continue;
    }
    if (!work->resolved) ResolveDestinations(&*work);
    {
      absl::MutexLock lock(&mu_);
      std::string full;
      if (!TryAcquireLocked(*work, &full)) {
        // The destination is at its limit: take other work meanwhile. A
        // big body is read again when the entry's turn comes.
        if (work->body.size() > 64 * 1024) std::string().swap(work->body);
        parked_[full].push_back(*std::move(work));
        ++parked_count_;
        continue;
      }
    }
    RunStats s;
    ++s.leased;
    (void)ProcessHeld(work->held, &s, work->body.empty() ? nullptr : &work->body);
    absl::MutexLock lock(&mu_);
    ReleaseLocked(*work);
    Add(&totals_, s);
  }
}

void QueueRunner::ResolveDestinations(Work* work) {
  work->resolved = true;
  std::vector<std::string> domains;
  {
    absl::MutexLock lock(&work->held->mu);
    const absl::Time now = absl::Now();
    for (const auto& r : work->held->lease.entry.recipients()) {
      if (Due(r, now) &&
          (domains.empty() || domains.back() != r.domain()) &&
          std::find(domains.begin(), domains.end(), r.domain()) == domains.end()) {
        domains.push_back(r.domain());
      }
    }
  }
  for (const std::string& d : domains) {
    Destination dest = transport_->DestinationOf(d);
    auto same = [&](const Destination& x) { return x.key == dest.key; };
    if (std::none_of(work->destinations.begin(), work->destinations.end(), same)) {
      work->destinations.push_back(std::move(dest));
    }
  }
}

bool QueueRunner::TryAcquireLocked(const Work& work, std::string* full) {
  for (const Destination& d : work.destinations) {
    const int limit = d.limit > 0 ? d.limit : options_.destination_concurrency;
    auto it = active_.find(d.key);
    if (limit > 0 && it != active_.end() && it->second >= limit) {
      *full = d.key;
      return false;
    }
  }
  for (const Destination& d : work.destinations) ++active_[d.key];
  return true;
}

void QueueRunner::ReleaseLocked(const Work& work) {
  for (const Destination& d : work.destinations) {
    auto it = active_.find(d.key);
    if (it != active_.end() && --it->second <= 0) active_.erase(it);
    // Every entry waiting on it goes back to the front of the list, in
    // order: one of them takes the slot, the others park again.
    auto p = parked_.find(d.key);
    if (p == parked_.end()) continue;
    parked_count_ -= p->second.size();
    while (!p->second.empty()) {
      pending_.push_front(std::move(p->second.back()));
      p->second.pop_back();
    }
    parked_.erase(p);
    work_.SignalAll();
  }
}

size_t QueueRunner::parked() const {
  absl::MutexLock lock(&mu_);
  return parked_count_;
}

int QueueRunner::active(const std::string& destination_key) const {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(destination_key);
  return it == active_.end() ? 0 : it->second;
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
  return ProcessHeld(Track(lease), stats, known);
}

absl::Status QueueRunner::ProcessHeld(const std::shared_ptr<Held>& held, RunStats* stats,
                                      const std::string* known) {
  QueueEntry entry;
  {
    // A lease that waited in the list may be close to its end: renew it
    // before delivering (or drop it: another runner has it by now).
    absl::MutexLock lock(&held->mu);
    if (!RenewIfDue(held.get(), absl::Now())) {
      held->done = true;
      ++stats->lost_leases;
      Untrack(held);
      return absl::AbortedError("lease lost before delivery");
    }
    entry = held->lease.entry;
  }
  auto finish = [&](std::vector<RecipientOutcome> outcomes, absl::Time now) {
    Lease lease;
    {
      absl::MutexLock lock(&held->mu);
      held->done = true;  // the renewer leaves it alone from here
      lease = held->lease;
    }
    Untrack(held);
    return queue_->Complete(lease, outcomes, now);
  };
  absl::StatusOr<std::string> body =
      known != nullptr ? absl::StatusOr<std::string>(*known) : queue_->ReadBody(entry.queue_id());
  if (!body.ok()) {
    (void)finish({}, absl::Now());
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
    {
      // Taken over meanwhile (we stalled past the lease): the other runner
      // delivers the rest; stop sending.
      absl::MutexLock lock(&held->mu);
      if (held->lost) break;
    }
    auto results = transport_->Deliver(domain, entry.envelope_from(), rcpts, *body);
    outcomes.insert(outcomes.end(), results.begin(), results.end());
  }
  absl::Time now = absl::Now();
  auto report = finish(outcomes, now);
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
