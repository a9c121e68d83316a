// Encodings and pure helpers over the Raft vocabulary (see types.h).
#include "libs/raft/types.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mailgrid::raft {
namespace {

constexpr size_t kConfChangeSize = 9;

void EraseId(std::vector<NodeId>& ids, NodeId id) {
  ids.erase(std::remove(ids.begin(), ids.end(), id), ids.end());
}

void InsertSorted(std::vector<NodeId>& ids, NodeId id) {
  auto it = std::lower_bound(ids.begin(), ids.end(), id);
  if (it == ids.end() || *it != id) ids.insert(it, id);
}

bool Contains(const std::vector<NodeId>& ids, NodeId id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

std::string EncodeConfChange(const ConfChange& cc) {
  std::string out(kConfChangeSize, '\0');
  out[0] = static_cast<char>(cc.type);
  for (int i = 0; i < 8; ++i) out[1 + i] = static_cast<char>((cc.node >> (8 * i)) & 0xff);
  return out;
}

absl::StatusOr<ConfChange> DecodeConfChange(const std::string& data) {
  if (data.size() != kConfChangeSize) {
    return absl::InvalidArgumentError(absl::StrCat("conf change: bad size ", data.size()));
  }
  const auto type = static_cast<uint8_t>(data[0]);
  if (type > static_cast<uint8_t>(ConfChange::Type::kRemoveNode)) {
    return absl::InvalidArgumentError(absl::StrCat("conf change: bad type ", type));
  }
  ConfChange cc;
  cc.type = static_cast<ConfChange::Type>(type);
  for (int i = 0; i < 8; ++i) {
    cc.node |= static_cast<uint64_t>(static_cast<uint8_t>(data[1 + i])) << (8 * i);
  }
  if (cc.node == kNoNode) return absl::InvalidArgumentError("conf change: node id 0");
  return cc;
}

ConfState ApplyConfChange(ConfState conf, const ConfChange& cc) {
  switch (cc.type) {
    case ConfChange::Type::kAddVoter:
      EraseId(conf.learners, cc.node);
      InsertSorted(conf.voters, cc.node);
      break;
    case ConfChange::Type::kAddLearner:
      // Demotion is refused at proposal time; re-applying an add of a node
      // that is already a voter (restart replay) must not demote it.
      if (!Contains(conf.voters, cc.node)) InsertSorted(conf.learners, cc.node);
      break;
    case ConfChange::Type::kRemoveNode:
      EraseId(conf.voters, cc.node);
      EraseId(conf.learners, cc.node);
      break;
  }
  return conf;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

bool Ready::empty() const {
  return !soft_state && !hard_state && entries.empty() && !snapshot && committed.empty() &&
         messages.empty() && read_states.empty();
}

bool MaySendBeforePersist(const Message& m, Term durable_term) {
  return (m.type == Message::Type::kAppend || m.type == Message::Type::kHeartbeat) &&
         m.term <= durable_term;
}

}  // namespace mailgrid::raft
