// A fixed pool of threads for blocking work (peer RPCs), so the SMTP event
// loop never blocks. Tasks run in FIFO order; Stop() runs what is queued,
// then joins.
#pragma once

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

}  // namespace mailgrid::relay
