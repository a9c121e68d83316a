// The client's half of client sessions (format 2, README "Client sessions"):
// the seqs a client hands out, which session writes it still waits for, and
// so the first_unacked each new session write announces. KvClient keeps one.
//
// The rule that keeps a session from rejecting a write its client still
// waits for: the group keeps at most kMaxSessionOutcomes outcomes per
// session and, beyond that, raises the floor past the lowest (a bound on
// replicated state that a client must not be able to blow up). A write
// whose call is slow (preempted before it was sent, a retried attempt)
// while the client's other writes go on would fall below that raised floor
// and be answered "below its session's floor" although never applied. So a
// session write is only made within kMaxSessionOutcomes of the lowest seq
// still awaited; beyond, the write takes its own idempotency record (the
// format-1 form, always safe) until the slow write is answered. Then every
// session's outcomes span less than the bound and it never drops one.
#pragma once

#include <atomic>
#include <cstdint>
#include <set>

#include "absl/synchronization/mutex.h"

namespace mailgrid::kv {

class ClientSeqs {
 public:
  // A write's seq and, for a session write, the lowest seq its client still
  // awaits (itself included).
  struct Taken {
    uint64_t seq = 0;
    uint64_t first_unacked = 0;  // 0: not a session write (own record)
    bool session() const { return first_unacked != 0; }
  };

  // A seq for a write with its own idempotency record (not awaited here).
  uint64_t NextSeq() { return last_.fetch_add(1) + 1; }

  // A session write's seq, registered as awaited until Answered(); or, when
  // the lowest awaited seq lags too far behind (see above), a plain seq.
  Taken TakeSessionSeq();

  // The caller has its answer (whatever it is): the write is never sent
  // again, so later writes may announce a floor above it.
  void Answered(uint64_t seq);

 private:
  std::atomic<uint64_t> last_{0};
  // A seq is taken and registered under one lock, so no write announces a
  // floor above a seq that another thread has taken but not yet registered.
  absl::Mutex mu_;
  std::set<uint64_t> awaited_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mailgrid::kv
