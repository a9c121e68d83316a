// Completer: answers blocked callers from its own thread, not the raft loop's.
//
// Why: setting a Completion wakes the caller's thread (a futex wake), and
// Linux lets a freshly woken thread preempt the waker. On a busy machine the
// raft loop, waking a dozen writers per turn, was preempted at each wake and
// then waited for a CPU again: profiled, that was more than a third of the
// leader loop's time at 64 clients. The loop now queues the answers (Add) and
// hands the whole turn's worth over with one wake (Flush); this thread takes
// the preemptions instead.
//
// Except for a single answer: when a flush has only one, and it was added as
// inlinable (a writer's answer, a few microseconds: gRPC's Finish or one
// futex wake), it runs on the owner's thread at once. With one writer the
// hand-off was a thread wake on every write's path (measured 0.23-0.66 ms
// of a 3 ms write at one client) and there is no storm of wakes to shield
// the loop from.
#pragma once

#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mailgrid::replica {

class Completer {
 public:
  Completer();
  ~Completer();  // runs everything still queued, then joins
  Completer(const Completer&) = delete;
  Completer& operator=(const Completer&) = delete;

  // Queues `fn` (owner thread only; nothing runs until Flush). `inlinable`:
  // short and safe to run on the owner's thread (see above).
  void Add(std::function<void()> fn, bool inlinable = false) {
    pending_inlinable_ = pending_.empty() ? inlinable : false;
    pending_.push_back(std::move(fn));
  }
  // Hands everything Added so far to the completer thread (owner thread),
  // or runs it here if it is one inlinable function.
  void Flush();
  // What Flush ran on the owner's thread so far (tests, metrics).
  uint64_t ran_inline() const { return ran_inline_; }
  // Flushes, runs what is queued and stops the thread. Idempotent.
  void Stop();

 private:
  void Run();
  bool HasWork() const ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); }

  std::vector<std::function<void()>> pending_;  // owner thread only
  bool pending_inlinable_ = false;              // pending_ is one inlinable fn
  uint64_t ran_inline_ = 0;                     // owner thread only
  absl::Mutex mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mailgrid::replica
