// mailstored's wiring: the shard's replica (or a local store), the token
// verifier, MailStore, the gRPC service and the background loop (archive
// jobs, retention rules; leader only).
//
// Threads: gRPC's handler threads (sync methods) and callback threads
// (Watch: an open stream holds none); two Watch feed readers
// (mailbox_service.h); the replica's own threads; one background thread;
// the search indexer's thread (MailStore::StartIndexer, leader only).
// Failure behaviour: a follower refuses calls with the
// leader hint; losing leadership ends Watch streams (clients resume at the
// new leader); SIGTERM hands leadership over (Drain) before stopping.
#pragma once

#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "libs/replica/channel.h"
#include "libs/replica/replica_flags.h"
#include "libs/rpc/service_main.h"
#include "libs/store/store.h"
#include "services/mailstore/authz.h"
#include "services/mailstore/config.h"
#include "services/mailstore/mail_store.h"
#include "services/mailstore/mailbox_service.h"

namespace mailgrid::mailstore {

class MailstoreApp final : public rpc::ServiceApp {
 public:
  static absl::StatusOr<std::unique_ptr<MailstoreApp>> Create(
      const rpc::CommonConfig& common, Options options,
      std::shared_ptr<prometheus::Registry> registry);
  ~MailstoreApp() override;

  std::vector<grpc::Service*> Services() override;
  absl::Status Start(const rpc::RunContext& ctx) override;
  bool Ready(std::string* reason) override;
  void Drain() override;
  void Stop() override;

 private:
  MailstoreApp() = default;
  bool Serving(std::string* leader) const;
  void Loop();
  // The search layout gate (layout_gate.cc), from the background loop:
  // while it is closed, reports every kLayoutReportInterval that this
  // member reads blocks and, on the leader, opens it once every member's
  // report is younger than kLayoutReportFresh.
  void StepLayoutGate();
  static constexpr absl::Duration kLayoutReportInterval = absl::Seconds(10);
  static constexpr absl::Duration kLayoutReportFresh = absl::Seconds(60);

  Options options_;
  std::unique_ptr<replica::ReplicaServer> replica_;
  std::unique_ptr<store::Store> store_;
  replica::ReplicaTls peer_tls_;
  std::unique_ptr<store::Store> layout_client_;  // StepLayoutGate's writes (loop thread only)
  absl::Time next_layout_report_;                // loop thread only
  std::unique_ptr<MailStore> mail_;
  std::unique_ptr<Authorizer> authz_;
  WatchHub hub_;
  std::unique_ptr<MailboxServiceImpl> service_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread loop_;
};

rpc::ServiceDef ServiceDefinition();

}  // namespace mailgrid::mailstore
