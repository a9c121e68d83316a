// The queue runner: worker threads that find due entries through the due
// index, lease them (Queue::TryLease: compare-and-set, so runners on every
// relayd replica can run at once), deliver each destination domain's
// recipients through a Transport, record the outcomes (Queue::Complete) and
// enqueue DSNs (failure, and the one-time delay warning) to the sender.
//
// Threads: `threads` workers, each loops RunOnce() then sleeps
// poll_interval. Delivery blocks the worker (blocking sockets): concurrency
// = number of threads. Failure behaviour: a crashed runner's leases expire
// (lease_duration) and are taken over; a lost lease discards the outcomes
// (the other runner redoes them: at-least-once, never lost).
#pragma once

#include <atomic>
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
  size_t batch = 16;  // due ids fetched per RunOnce
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
  // Delivers one leased entry and records the outcomes.
  absl::Status Process(const Lease& lease, RunStats* stats);

  RunStats totals() const;

 private:
  void Loop();

  Queue* queue_;
  Transport* transport_;
  RunnerOptions options_;
  std::vector<std::thread> threads_;
  absl::Notification stop_;
  std::atomic<bool> started_{false};
  mutable absl::Mutex mu_;
  RunStats totals_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::outbound
