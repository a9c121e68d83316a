// LocalStore: kv::StateMachine on a real RocksDB in `dir`, applying each
// write directly as the next log index (no Raft, no replication). For unit
// tests of services and as the unreplicated baseline in benchmarks; never a
// production store.
#pragma once

#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "libs/kv/engine.h"
#include "libs/kv/state_machine.h"
#include "libs/store/store.h"

namespace mailgrid::store {

class LocalStore final : public Store {
 public:
  static absl::StatusOr<std::unique_ptr<LocalStore>> Open(const std::string& dir);
  // The same with the engine's options (e.g. a bigger block cache for a
  // benchmark's fill).
  static absl::StatusOr<std::unique_ptr<LocalStore>> Open(const std::string& dir,
                                                          const kv::EngineOptions& engine);

  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request, absl::Time deadline) override;
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request, absl::Time deadline) override;
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& request, absl::Time deadline) override;

 private:
  LocalStore() = default;
  std::unique_ptr<kv::Engine> engine_;
  std::unique_ptr<kv::StateMachine> machine_;
  absl::Mutex write_mu_;  // serialises Apply, as the single apply thread would
};

}  // namespace mailgrid::store
