// replicad: one replica of a replicated key-value group as a daemon, on the
// common bootstrap (rpc::RunService). It serves KvService and RaftService
// on --listen; gRPC health is SERVING once the replica is ready (a leader
// is known and this replica has caught up). It is what the real-process tests and the benchmark run, and
// the template tenantd / identityd / mailstored follow: their main.cc adds
// AddRaftFlags and serves ReplicaServer::Services() beside their own.
//
//   replicad --raft-id=1 --raft-peers=1=127.0.0.1:7101,2=...,3=...
//            --listen=127.0.0.1:7101 --data-dir=/var/lib/mailgrid/r1
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/replica/replica_flags.h"
#include "libs/rpc/service_main.h"

namespace {

using mailgrid::replica::RaftFlags;
using mailgrid::replica::ReplicaServer;

RaftFlags g_raft;

class ReplicaApp : public mailgrid::rpc::ServiceApp {
 public:
  explicit ReplicaApp(std::unique_ptr<ReplicaServer> server) : server_(std::move(server)) {}
  std::vector<grpc::Service*> Services() override { return server_->Services(); }
  absl::Status Start(const mailgrid::rpc::RunContext&) override { return server_->Start(); }
  bool Ready(std::string* reason) override { return server_->replica().Ready(reason); }
  void Drain() override { server_->Drain(); }
  void Stop() override { server_->Stop(); }

 private:
  std::unique_ptr<ReplicaServer> server_;
};

}  // namespace

int main(int argc, char** argv) {
  mailgrid::rpc::ServiceDef def;
  def.name = "replicad";
  def.add_flags = [](mailgrid::config::Flags& flags) {
    mailgrid::replica::AddRaftFlags(flags, &g_raft);
  };
  def.create = [](const mailgrid::rpc::CommonConfig& common,
                  std::shared_ptr<prometheus::Registry> registry)
      -> absl::StatusOr<std::unique_ptr<mailgrid::rpc::ServiceApp>> {
    ASSIGN_OR_RETURN(auto options, mailgrid::replica::MakeReplicaOptions(g_raft, common, registry));
    ASSIGN_OR_RETURN(auto server, ReplicaServer::Open(std::move(options)));
    return std::make_unique<ReplicaApp>(std::move(server));
  };
  return mailgrid::rpc::RunService(def, argc, argv);
}
