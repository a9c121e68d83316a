// The replicated state machine of the simulation: a map of string keys to
// values, fed by committed log entries. It also keeps a running hash of
// every entry it applied, so replicas can be compared by (index, hash): two
// replicas with equal hashes at an index applied identical sequences.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "libs/raft/types.h"

namespace mailgrid::raft::sim {

struct PutCommand {
  std::string key;
  std::string value;
};

std::string EncodePut(const PutCommand& put);
std::optional<PutCommand> DecodePut(const std::string& data);

// Also what a snapshot holds: the state as of `applied`.
struct KvState {
  std::map<std::string, std::string> data;
  Index applied = 0;
  uint64_t hash = 0;
  ConfState conf;

  // Applies the next entry; the caller checks it is applied + 1.
  void Apply(const Entry& e);
  std::optional<std::string> Get(const std::string& key) const;
};

// Folds an entry into a running hash (FNV-1a style; collisions would only
// hide a divergence, never invent one).
uint64_t ChainHash(uint64_t prev, const Entry& e);

}  // namespace mailgrid::raft::sim
