#include "libs/kv/client_seqs.h"

#include "libs/kv/state_machine.h"  // kMaxSessionOutcomes

namespace mailgrid::kv {

ClientSeqs::Taken ClientSeqs::TakeSessionSeq() {
  absl::MutexLock lock(&mu_);
  Taken t;
  t.seq = NextSeq();
  const uint64_t lowest = awaited_.empty() ? t.seq : *awaited_.begin();
  if (t.seq - lowest >= static_cast<uint64_t>(kMaxSessionOutcomes)) return t;  // own record
  awaited_.insert(t.seq);
  t.first_unacked = lowest;
  return t;
}

void ClientSeqs::Answered(uint64_t seq) {
  absl::MutexLock lock(&mu_);
  awaited_.erase(seq);
}

}  // namespace mailgrid::kv
