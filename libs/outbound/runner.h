// The queue runner: worker threads that find due entries through the due
// index, lease them (Queue::TryLease: compare-and-set, so runners on every
// relayd replica can run at once), deliver each destination domain's
// recipients through a Transport, record the outcomes (Queue::Complete) and
// enqueue DSNs (failure, and the one-time delay warning) to the sender.
//
// Threads: `threads` workers share an in-memory list of leased entries.
// Entries arrive there two ways: Offer() (a message this relayd just
// enqueued already leased, Queue::EnqueueLeased: delivered at once) and the
// scan of the due index, which one idle worker at a time runs at most once
// per poll_interval (unless a scan came back full and leased something;
// others wait for work) and whose leases it shares out. Delivery blocks the
// worker (blocking sockets): concurrency = number of threads, bounded per
// destination (Transport::DestinationOf: a smart-host route or
// an MX host): at most `destination_concurrency` deliveries to one
// destination at once (a route's concurrency_limit overrides it). A worker
// that picks an entry whose destination is full does not wait: the entry
// is parked on that destination (lease kept and renewed) and the worker
// takes the next entry; a finished delivery hands the destination's parked
// entries back to the list. An entry with several destination domains
// takes a slot on each for its whole delivery (all or none: no deadlock).
// Sessions to a destination are reused across entries by the transport's
// ConnectionCache, so open connections per destination stay within the
// limit too (a delivery takes an idle session before opening one).
// Lease renewal: one more thread renews every lease this runner holds
// (waiting in the list or in delivery) once less than half of it is left,
// so a delivery slower than lease_duration (a slow peer, a big message) is
// not taken over and sent twice by another runner; a lease found lost stops
// the delivery before its next destination domain.
// Failure behaviour: a crashed runner's leases expire (lease_duration) and
// are taken over; a lost lease discards the outcomes (the other runner
// redoes them: at-least-once, never lost). Stop() gives back (Abandon) the
// leases not started yet, so a restart does not wait out their leases.
#pragma once

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "libs/outbound/delivery.h"
#include "libs/outbound/queue.h"

namespace mailgrid::outbound {

struct RunnerOptions {
  std::string holder = "relayd";            // lease holder name (pod name)
  std::string reporting_mta = "localhost";  // DSN Reporting-MTA / From domain
  int threads = 2;
  absl::Duration poll_interval = absl::Seconds(1);
  size_t batch = 16;  // due ids fetched per RunOnce / scan
  size_t max_pending = 256;  // Offer() refuses beyond this many waiting leases
  // Simultaneous deliveries per destination (Postfix's
  // default_destination_concurrency_limit is 20); 0: no limit.
  int destination_concurrency = 20;
  // Entries waiting on full destinations, beyond which the scan leases no
  // more (other runners still do); their bodies are not kept in memory.
  size_t max_parked = 4096;
};

struct RunStats {
  int leased = 0;
  int delivered = 0;  // recipients
  int deferred = 0;
  int bounced = 0;
  int dsns = 0;  // DSNs enqueued
  int lost_leases = 0;
};

class QueueRunner {
 public:
  QueueRunner(Queue* queue, Transport* transport, RunnerOptions options)
      : queue_(queue), transport_(transport), options_(std::move(options)) {}
  ~QueueRunner() { Stop(); }

  void Start();
  void Stop();  // waits for in-flight deliveries to finish

  // One pass: lease up to `batch` due entries and process them in turn.
  RunStats RunOnce(absl::Time now);
  // Hands a lease this process holds (with the body, when known) to the
  // workers. False when stopped or `max_pending` leases wait already: the
  // caller then gives the lease back (Queue::Abandon) or lets it expire.
  bool Offer(Lease lease, std::string body);
  // Whether Offer would take one more now (a hint: no reservation).
  bool Accepting() const;
  // Delivers one leased entry and records the outcomes. `body`: the
  // message when the caller has it (else read from the queue).
  absl::Status Process(const Lease& lease, RunStats* stats, const std::string* body = nullptr);

  RunStats totals() const;
  // Entries parked on full destinations, and deliveries now running to
  // `destination_key` (for tests and metrics).
  size_t parked() const;
  int active(const std::string& destination_key) const;

 private:
  // A lease this runner holds, shared by its worker and the renewer.
  struct Held {
    absl::Mutex mu;
    Lease lease ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;  // Complete started: no more renewals
    bool lost ABSL_GUARDED_BY(mu) = false;  // a renewal found it taken over
  };
  struct Work {
    std::shared_ptr<Held> held;
    std::string body;  // empty: read it
    bool resolved = false;  // destinations below computed
    std::vector<Destination> destinations;  // distinct keys of the due domains
  };
  // Transport::DestinationOf for the entry's due domains (no lock held).
  void ResolveDestinations(Work* work);
  // A slot on every destination of `work`, or none: false with the full one.
  bool TryAcquireLocked(const Work& work, std::string* full) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseLocked(const Work& work) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Held> Track(Lease lease);
  void Untrack(const std::shared_ptr<Held>& held);
  absl::Status ProcessHeld(const std::shared_ptr<Held>& held, RunStats* stats,
                           const std::string* body);
  // Renews `held` if less than half of the lease is left. False when lost.
  bool RenewIfDue(Held* held, absl::Time now);
  void RenewLoop();
  void Loop();
  // Scans the due index and leases what it finds onto pending_. Returns the
  // number leased; *found = the due ids the scan returned.
  int ScanAndLease(absl::Time now, size_t* found);

  Queue* queue_;
  Transport* transport_;
  RunnerOptions options_;
  std::vector<std::thread> threads_;
  std::thread renewer_;
  absl::Notification stop_;
  absl::Notification renewer_stop_;  // after the workers finished
  std::atomic<bool> started_{false};
  mutable absl::Mutex mu_;
  RunStats totals_ ABSL_GUARDED_BY(mu_);
  std::deque<Work> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Held>> held_ ABSL_GUARDED_BY(mu_);  // pending or in delivery
  // Deliveries running per destination key, and entries waiting on each.
  std::map<std::string, int> active_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::deque<Work>> parked_ ABSL_GUARDED_BY(mu_);
  size_t parked_count_ ABSL_GUARDED_BY(mu_) = 0;
  bool scanning_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_scan_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::CondVar work_;
};

}  // namespace mailgrid::outbound
