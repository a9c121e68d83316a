#include "services/tenant/replicated_store.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "libs/base/log.h"
#include "libs/base/net.h"
#include "libs/base/status.h"
#include "libs/replica/client_store.h"
#include "libs/replica/kv_service.h"
#include "libs/replica/replica_flags.h"
#include "libs/replica/raft_service.h"
#include "libs/replica/replica.h"

namespace mailgrid::tenant {
namespace {

// The in-process replica as a read-only store::Store.
class LocalReads final : public store::Store {
 public:
  explicit LocalReads(replica::Replica* r) : replica_(r) {}
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& request,
                                          absl::Time deadline) override {
    return replica_->Get(request, deadline);
  }
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& request,
                                            absl::Time deadline) override {
    return replica_->Scan(request, deadline);
  }
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest&, absl::Time) override {
    return absl::FailedPreconditionError("local reads only");
  }

 private:
  replica::Replica* replica_;
};

class Impl final : public ReplicatedStore {
 public:
  store::Store* store() override { return store_.get(); }
  store::Store* local_reads() override { return local_.get(); }
  std::vector<grpc::Service*> Services() override { return {kv_.get(), raft_.get()}; }
  absl::Status Start() override { return replica_->Start(); }
  void Stop() override {
    if (replica_) replica_->Stop();
  }
  bool IsLeader() const override { return replica_->IsLeader(); }
  bool Ready(std::string* reason) const override { return replica_->Ready(reason); }

  std::unique_ptr<replica::Replica> replica_;
  std::unique_ptr<replica::KvServiceImpl> kv_;
  std::unique_ptr<replica::RaftServiceImpl> raft_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<store::Store> local_;
};

// "1=host:port,2=host:port" -> {1: host:port, ...}
absl::StatusOr<std::map<raft::NodeId, std::string>> ParsePeers(const std::string& text) {
  std::map<raft::NodeId, std::string> out;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    uint64_t id = 0;
    if (!absl::SimpleAtoi(kv.first, &id) || id == 0 || kv.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--raft-peers: \"", item, "\" is not id=host:port"));
    }
    out[id] = std::string(kv.second);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ReplicatedStore>> ReplicatedStore::Open(
    const rpc::CommonConfig& common, const Options& o,
    std::shared_ptr<prometheus::Registry> registry) {
  if (common.data_dir.empty())
    return absl::InvalidArgumentError("--data-dir is required with --store=replicated");
  replica::ReplicaOptions ro;
  ro.group_id = "tenantd";
  ro.id = o.raft_id;
  ASSIGN_OR_RETURN(ro.peers, ParsePeers(o.raft_peers));
  if (ro.peers.empty()) {
    // A group of one: this process, at its --listen address.
    if (absl::EndsWith(common.listen, ":0")) {
      return absl::InvalidArgumentError(
          "--store=replicated needs --raft-peers, or a fixed --listen port");
    }
    if (ro.id == 0) ro.id = 1;
    ro.peers[ro.id] = common.listen;
  }
  if (ro.id == 0 || ro.peers.count(ro.id) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--raft-id ", ro.id, " is not among --raft-peers"));
  }
  ro.advertise_address = ro.peers[ro.id];
  ro.data_dir = common.data_dir + "/replica";
  ro.join = o.raft_join;
  ro.registry = std::move(registry);
  if (o.store_cache_mb > 0) {
    const size_t cache = static_cast<size_t>(o.store_cache_mb) << 20;
    ro.engine.block_cache_bytes = cache;
    ro.engine.write_buffer_bytes = std::min(ro.engine.write_buffer_bytes, cache / 2);
    ro.engine.family_write_buffer_bytes =
        std::min(ro.engine.family_write_buffer_bytes, ro.engine.write_buffer_bytes / 2);
  }
  // Replicas and the store's KV client reach the peers' gRPC listeners: TLS
  // exactly when those are (the chart's mTLS mode), with our certificate.
  ASSIGN_OR_RETURN(ro.peer_tls,
                   replica::PeerTls(common, common.tls_cert.empty() ? "" : o.tls_ca, ""));
  ASSIGN_OR_RETURN(net::HostPort listen, net::ParseHostPort(common.listen));
  ro.wire = o.raft_wire && !ro.peer_tls.enabled();
  ro.wire_host = listen.host;
  auto impl = std::make_unique<Impl>();
  ASSIGN_OR_RETURN(impl->replica_, replica::Replica::Open(ro));
  impl->kv_ = std::make_unique<replica::KvServiceImpl>(impl->replica_.get());
  impl->local_ = std::make_unique<LocalReads>(impl->replica_.get());
  impl->raft_ = std::make_unique<replica::RaftServiceImpl>(impl->replica_.get());
  std::vector<std::string> addresses;
  for (const auto& [id, address] : ro.peers) addresses.push_back(address);
  ASSIGN_OR_RETURN(impl->store_, replica::ClientStore::Connect(addresses, ro.peer_tls));
  log::Info("store is REPLICATED", {{"raft_id", static_cast<unsigned long long>(ro.id)},
                                    {"peers", absl::StrJoin(addresses, ",")},
                                    {"dir", ro.data_dir}});
  return std::unique_ptr<ReplicatedStore>(std::move(impl));
}

}  // namespace mailgrid::tenant
