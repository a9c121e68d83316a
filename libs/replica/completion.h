// Completion<T>: a one-shot result handed from the raft-loop thread to a
// caller blocked in Replica::Write/Get/... The caller may give up at its
// deadline; a result set later is simply dropped with the last reference.
#pragma once

#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mailgrid::replica {

template <typename T>
class Completion {
 public:
  // The first result wins; later ones are ignored.
  void Set(absl::StatusOr<T> result) {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    result_ = std::move(result);
    done_ = true;
  }

  // The result, or DEADLINE_EXCEEDED with `timeout_message` at `deadline`.
  absl::StatusOr<T> Wait(absl::Time deadline, const std::string& timeout_message) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithDeadline(absl::Condition(&done_), deadline);
    if (!done_) return absl::DeadlineExceededError(timeout_message);
    return result_;
  }

  bool done() const {
    absl::MutexLock lock(&mu_);
    return done_;
  }

 private:
  mutable absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<T> result_ ABSL_GUARDED_BY(mu_) = absl::UnknownError("not completed");
};

}  // namespace mailgrid::replica
