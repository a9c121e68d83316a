#include "services/relay/held_store.h"

#include <map>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "libs/rpc/errors.h"

namespace mailgrid::relay {
namespace {

std::string Key(const std::string& id) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq_held")).Str(id).Build();
}
std::string ModKey(const std::string& id) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq_held_mod")).Str(id).Build();
}
absl::Time Deadline() { return absl::Now() + absl::Seconds(10); }

std::vector<std::string> Split(const std::string& v) {
  std::vector<std::string> out;
  for (absl::string_view p : absl::StrSplit(v, ',', absl::SkipEmpty())) out.emplace_back(p);
  return out;
}

}  // namespace

absl::Status HeldStore::Put(const HeldRecord& r) {
  kv::v1::WriteRequest w;
  auto* put = w.add_ops()->mutable_put();
  put->set_key(Key(r.held.held_id()));
  put->set_value(r.held.SerializeAsString());
  auto* mod = w.add_ops()->mutable_put();
  mod->set_key(ModKey(r.held.held_id()));
  mod->set_value(absl::StrJoin(r.moderators, ","));
  ASSIGN_OR_RETURN(auto resp, store_->Write(w, Deadline()));
  (void)resp;
  return absl::OkStatus();
}

absl::StatusOr<HeldRecord> HeldStore::Get(const std::string& held_id) {
  kv::v1::GetRequest get;
  get.set_key(Key(held_id));
  ASSIGN_OR_RETURN(kv::v1::GetResponse g, store_->Get(get, Deadline()));
  HeldRecord r;
  if (!g.found() || !r.held.ParseFromString(g.value())) return rpc::NotFound("held message", held_id);
  get.set_key(ModKey(held_id));
  ASSIGN_OR_RETURN(kv::v1::GetResponse m, store_->Get(get, Deadline()));
  if (m.found()) r.moderators = Split(m.value());
  return r;
}

absl::Status HeldStore::Remove(const std::string& held_id) {
  kv::v1::WriteRequest w;
  w.add_ops()->mutable_delete_()->set_key(Key(held_id));
  w.add_ops()->mutable_delete_()->set_key(ModKey(held_id));
  ASSIGN_OR_RETURN(auto resp, store_->Write(w, Deadline()));
  (void)resp;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<HeldRecord>> HeldStore::List() {
  kv::v1::ScanRequest scan;
  scan.set_prefix(kv::GlobalPrefix("outq_held"));
  scan.set_limit(10000);
  ASSIGN_OR_RETURN(kv::v1::ScanResponse resp, store_->Scan(scan, Deadline()));
  std::vector<HeldRecord> out;
  for (const auto& e : resp.entries()) {
    HeldRecord r;
    if (!r.held.ParseFromString(e.value())) continue;
    out.push_back(std::move(r));
  }
  scan.set_prefix(kv::GlobalPrefix("outq_held_mod"));
  ASSIGN_OR_RETURN(kv::v1::ScanResponse mods, store_->Scan(scan, Deadline()));
  std::map<std::string, std::string> by_id;
  for (const auto& e : mods.entries()) {
    kv::KeyReader reader(std::string_view(e.key()));
    if (!reader.ConsumePrefix(kv::GlobalPrefix("outq_held_mod"))) continue;
    auto id = reader.Str();
    if (id.ok()) by_id[*id] = e.value();
  }
  for (HeldRecord& r : out) r.moderators = Split(by_id[r.held.held_id()]);
  return out;
}

}  // namespace mailgrid::relay
