// The leader raising the group's state-machine format by itself
// (ReplicaOptions::raise_format; libs/kv README "Formats").
//
// Every member announces the highest format its binary applies on the first
// batch it sends a peer (raft.proto MessageBatch.max_format, beside
// from_address). Once every member of the configuration, learners included,
// has announced at least what this binary applies, the leader proposes a
// SetFormat entry: the check `mailctl raft set-format` makes by asking each
// member, without an operator. A member that never spoke to this leader (down,
// or a binary from before the announcement) holds the format where it is.
// Safety does not rest on the announcements: a binary asked to apply a format
// it does not know stops before the entry (kv::StateMachine), so a member
// replaced by an older binary after the raise stalls instead of misapplying.
#include <vector>

#include "libs/base/log.h"
#include "libs/replica/replica.h"

namespace mailgrid::replica {

void Replica::MaybeRaiseFormat() {
  if (!options_.raise_format || soft_.role != raft::Role::kLeader) return;
  const uint32_t target = max_format();
  if (committed_format() >= target || format_raise_pending_.load()) return;
  std::vector<raft::NodeId> members = conf_.voters;
  members.insert(members.end(), conf_.learners.begin(), conf_.learners.end());
  {
    absl::MutexLock lock(&addr_mu_);
    for (raft::NodeId id : members) {
      if (id == options_.id) continue;
      auto it = announced_formats_.find(id);
      if (it == announced_formats_.end() || it->second < target) return;
    }
  }
  kv::v1::WriteRequest entry;
  entry.set_set_format(target);
  format_raise_pending_.store(true);
  // Answered on this thread (refused at once) or the completer's; a raise
  // lost with the leadership is proposed again by the next leader.
  ProposeAsync(entry, absl::Now() + absl::Seconds(10),
               [this, target, from = committed_format()](absl::StatusOr<kv::v1::WriteResponse> r) {
                 format_raise_pending_.store(false);
                 if (r.ok()) {
                   log::Info("raft: state-machine format raised: every member applies it",
                             {{"from", from}, {"to", target}});
                 } else {
                   log::Warn("raft: raising the state-machine format failed; tried again",
                             {{"to", target}, {"error", r.status()}});
                 }
               });
}

}  // namespace mailgrid::replica
