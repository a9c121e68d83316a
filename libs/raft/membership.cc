// Single-server membership changes (dissertation §4.1) and leadership
// transfer (§3.10). A change takes effect on each replica when its entry is
// applied (etcd's approach); safety then rests on allowing one unapplied
// change at a time and none before the leader's own no-op is applied.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/raft/raft.h"

namespace mailgrid::raft {
namespace {

absl::Status ValidateConfChange(const ConfState& conf, const ConfChange& cc) {
  auto has = [](const std::vector<NodeId>& ids, NodeId id) {
    return std::find(ids.begin(), ids.end(), id) != ids.end();
  };
  if (cc.node == kNoNode) return absl::InvalidArgumentError("raft: conf change for node 0");
  const bool voter = has(conf.voters, cc.node);
  const bool learner = has(conf.learners, cc.node);
  switch (cc.type) {
    case ConfChange::Type::kAddVoter:
      if (voter) return absl::AlreadyExistsError(absl::StrCat("raft: ", cc.node, " is a voter"));
      break;
    case ConfChange::Type::kAddLearner:
      if (voter) {
        return absl::FailedPreconditionError(
            absl::StrCat("raft: ", cc.node, " is a voter; demotion is not supported"));
      }
      if (learner) {
        return absl::AlreadyExistsError(absl::StrCat("raft: ", cc.node, " is a learner"));
      }
      break;
    case ConfChange::Type::kRemoveNode:
      if (!voter && !learner) {
        return absl::NotFoundError(absl::StrCat("raft: ", cc.node, " is not a member"));
      }
      if (voter && conf.voters.size() == 1) {
        return absl::FailedPreconditionError("raft: cannot remove the last voter");
      }
      break;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LogPosition> Raft::ProposeConfChange(const ConfChange& cc) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft: not leader (leader hint: ", lead_, ")"));
  }
  if (lead_transferee_ != kNoNode) {
    return absl::FailedPreconditionError("raft: leadership transfer in progress");
  }
  if (pending_conf_index_ > log_.applied()) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft: previous membership change (or this leader's first entry) at ",
                     pending_conf_index_, " not applied yet"));
  }
  if (auto s = ValidateConfChange(tracker_.conf(), cc); !s.ok()) return s;
  Entry e;
  e.type = Entry::Type::kConfChange;
  e.data = EncodeConfChange(cc);
  AppendEntries({std::move(e)});
  pending_conf_index_ = log_.LastIndex();
  return LogPosition{term_, log_.LastIndex()};
}

void Raft::ApplyConfChangeEntry(const Entry& e) {
  auto cc = DecodeConfChange(e.data);
  // Every replica decodes the same bytes, so skipping a malformed change is
  // deterministic across the group.
  if (!cc.ok()) {
    conf_index_ = e.index;
    return;
  }
  tracker_.SetConf(ApplyConfChange(tracker_.conf(), *cc), log_.LastIndex() + 1);
  conf_index_ = e.index;
  if (role_ != Role::kLeader) return;
  if (!tracker_.IsVoter(id_)) {
    // We removed ourselves: stop leading; the others elect a new leader
    // after their election timeout (transfer leadership first to avoid it).
    BecomeFollower(term_, kNoNode);
    return;
  }
  if (lead_transferee_ != kNoNode && !tracker_.IsVoter(lead_transferee_)) AbortLeaderTransfer();
  // The quorum changed: commit may advance; new members need the log.
  MaybeCommit();
  append_pending_ = true;
}

absl::Status Raft::TransferLeadership(NodeId target) {
  if (role_ != Role::kLeader) {
    return absl::FailedPreconditionError(
        absl::StrCat("raft: not leader (leader hint: ", lead_, ")"));
  }
  if (target == id_) return absl::OkStatus();
  if (!tracker_.IsVoter(target)) {
    return absl::FailedPreconditionError(absl::StrCat("raft: ", target, " is not a voter"));
  }
  if (lead_transferee_ == target) return absl::OkStatus();
  lead_transferee_ = target;
  // The transfer must finish within one election timeout (TickHeartbeat
  // aborts it); proposals are refused meanwhile so the target can catch up.
  election_elapsed_ = 0;
  const Progress* pr = tracker_.Get(target);
  if (pr->match == log_.LastIndex()) {
    SendTimeoutNow(target);
  } else {
    MaybeSendAppend(target, true);
  }
  return absl::OkStatus();
}

void Raft::SendTimeoutNow(NodeId to) {
  Message m;
  m.type = Message::Type::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

}  // namespace mailgrid::raft
