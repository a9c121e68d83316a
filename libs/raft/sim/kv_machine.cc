#include "libs/raft/sim/kv_machine.h"

namespace mailgrid::raft::sim {
namespace {

uint64_t Mix(uint64_t h, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

std::string EncodePut(const PutCommand& put) { return put.key + '\t' + put.value; }

std::optional<PutCommand> DecodePut(const std::string& data) {
  const auto tab = data.find('\t');
  if (tab == std::string::npos) return std::nullopt;
  return PutCommand{data.substr(0, tab), data.substr(tab + 1)};
}

uint64_t ChainHash(uint64_t prev, const Entry& e) {
  uint64_t h = Mix(prev ^ 0xcbf29ce484222325ULL, e.term);
  h = Mix(h, e.index);
  h = Mix(h, static_cast<uint64_t>(e.type));
  for (unsigned char c : e.data) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

void KvState::Apply(const Entry& e) {
  hash = ChainHash(hash, e);
  applied = e.index;
  if (e.type == Entry::Type::kConfChange) {
    if (auto cc = DecodeConfChange(e.data); cc.ok()) conf = ApplyConfChange(conf, *cc);
    return;
  }
  if (e.type != Entry::Type::kNormal) return;
  if (auto put = DecodePut(e.data)) data[put->key] = put->value;
}

std::optional<std::string> KvState::Get(const std::string& key) const {
  auto it = data.find(key);
  if (it == data.end()) return std::nullopt;
  return it->second;
}

}  // namespace mailgrid::raft::sim
