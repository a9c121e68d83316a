// A fixed pool of threads for blocking work (peer RPCs), so the SMTP event
// loop never blocks. Tasks run in FIFO order; Stop() runs what is queued,
// then joins.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace mailgrid::relay {

class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();
  void Run(std::function<void()> task);
  void Stop();
  size_t queued() const;

 private:
  void Loop();
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// How many of the SMTP loop's threads may run a blocking call themselves
// instead of handing it to the WorkerPool (RelaySession::Async): a session
// whose thread runs the call saves two thread hand-offs (to a worker, and
// the answer back to the connection's strand), which is most of relayd's
// own latency in a one-session transaction (issue 8). Capped below the
// loop's thread count so at least one thread always serves the loop.
// Thread-safe.
class InlineGate {
 public:
  explicit InlineGate(int limit) : limit_(limit) {}
  // True when the caller may block its loop thread; it must Leave() after.
  bool TryEnter() {
    int n = active_.load(std::memory_order_relaxed);
    while (n < limit_) {
      if (active_.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }
  void Leave() { active_.fetch_sub(1, std::memory_order_acq_rel); }
  int limit() const { return limit_; }

 private:
  const int limit_;
  std::atomic<int> active_{0};
};

}  // namespace mailgrid::relay
