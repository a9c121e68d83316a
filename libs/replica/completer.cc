#include "libs/replica/completer.h"

#include <utility>

#include "libs/replica/thread_name.h"

namespace mailgrid::replica {

Completer::Completer() : thread_([this] { Run(); }) {}

Completer::~Completer() { Stop(); }

void Completer::Flush() {
  if (pending_.empty()) return;
  if (pending_.size() == 1 && pending_inlinable_) {
    std::function<void()> fn = std::move(pending_.front());
    pending_.clear();
    pending_inlinable_ = false;
    ++ran_inline_;
    fn();
    return;
  }
  pending_inlinable_ = false;
  absl::MutexLock lock(&mu_);
  if (queue_.empty()) {
    queue_.swap(pending_);
  } else {
    for (auto& fn : pending_) queue_.push_back(std::move(fn));
    pending_.clear();
  }
}

void Completer::Stop() {
  Flush();
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Completer::Run() {
  NameThisThread("raft-answer");
  while (true) {
    std::vector<std::function<void()>> batch;
    bool stop = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Completer::HasWork));
      batch.swap(queue_);
      stop = stop_;
    }
    for (auto& fn : batch) fn();
    if (stop) {
      // Whatever was queued after the last swap (Stop flushed before
      // setting stop_, so nothing can still arrive).
      absl::MutexLock lock(&mu_);
      for (auto& fn : queue_) fn();
      queue_.clear();
      return;
    }
  }
}

}  // namespace mailgrid::replica
