#include "services/mailstore/app.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "libs/auth/key_id.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/replica/client_store.h"
#include "libs/store/local_store.h"

namespace mailgrid::mailstore {
namespace {

// store::Store over the replica this process hosts (no network hop).
class ReplicaStore final : public store::Store {
 public:
  explicit ReplicaStore(replica::Replica* r) : r_(r) {}
  absl::StatusOr<kv::v1::GetResponse> Get(const kv::v1::GetRequest& q, absl::Time d) override {
    return r_->Get(q, d);
  }
  absl::StatusOr<kv::v1::ScanResponse> Scan(const kv::v1::ScanRequest& q, absl::Time d) override {
    return r_->Scan(q, d);
  }
  absl::StatusOr<kv::v1::WriteResponse> Write(const kv::v1::WriteRequest& q, absl::Time d) override {
    return r_->Write(q, d);
  }

 private:
  replica::Replica* r_;
};

Options g_options;

}  // namespace

absl::StatusOr<std::unique_ptr<MailstoreApp>> MailstoreApp::Create(
    const rpc::CommonConfig& common, Options options,
    std::shared_ptr<prometheus::Registry> registry) {
  RETURN_IF_ERROR(Finish(options));
  if (common.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: required");
  std::error_code ec;
  std::filesystem::create_directories(common.data_dir, ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("--data-dir: ", ec.message()));
  std::unique_ptr<MailstoreApp> app(new MailstoreApp());
  app->options_ = std::move(options);
  const Options& o = app->options_;
  if (o.store == "replicated") {
    rpc::CommonConfig c = common;
    c.data_dir = common.data_dir + "/replica";
    replica::RaftFlags raft = o.raft;
    if (raft.tls_ca.empty() && !common.tls_cert.empty()) raft.tls_ca = o.tls_ca;
    ASSIGN_OR_RETURN(auto ro, replica::MakeReplicaOptions(raft, c, registry));
    if (o.block_cache_mb > 0)
      ro.engine.block_cache_bytes = static_cast<size_t>(o.block_cache_mb) << 20;
    app->peer_tls_ = ro.peer_tls;
    ASSIGN_OR_RETURN(app->replica_, replica::ReplicaServer::Open(std::move(ro)));
    app->store_ = std::make_unique<ReplicaStore>(&app->replica_->replica());
    log::Info("store is REPLICATED", {{"shard", o.shard}, {"group", o.raft.group},
                                      {"peers", o.raft.peers}});
  } else {
    ASSIGN_OR_RETURN(auto local, store::LocalStore::Open(common.data_dir + "/kv"));
    app->store_ = std::move(local);
    log::Warn("store is LOCAL: one unreplicated RocksDB in --data-dir (not for production)");
  }
  StoreOptions so;
  so.shard = static_cast<uint32_t>(o.shard);
  so.limits.max_message_bytes = static_cast<size_t>(o.max_message_bytes);
  so.limits.max_parts = static_cast<uint32_t>(o.max_parts);
  so.limits.max_depth = static_cast<uint32_t>(o.max_depth);
  so.limits.max_header_line_bytes = static_cast<size_t>(o.max_header_line_bytes);
  so.feed_keep = static_cast<uint64_t>(o.feed_keep);
  so.combine_appends = o.combine_appends;
  so.deferred_index = o.deferred_index;
  so.index_interval = o.index_interval;  // --index-interval
  // Replicas may run different binaries during an upgrade: blocks wait for
  // the group's layout record (StepLayoutGate). One local store: no wait.
  so.gate_block_layout = o.store == "replicated";
  so.reads = o.reads == "linearizable" ? kv::v1::LINEARIZABLE : kv::v1::STALE;
  app->mail_ = std::make_unique<MailStore>(app->store_.get(), so);
  MailstoreApp* self = app.get();
  app->mail_->SetCommitListener(
      [self](const std::string&, const std::string& mailbox) { self->hub_.Notify(mailbox); });
  ASSIGN_OR_RETURN(auto verifier, auth::VerifierFromPemFiles(o.token_issuer, o.token_public_keys));
  if (!verifier) log::Warn("no --token-public-key: every call is refused (UNAUTHENTICATED)");
  app->authz_ = std::make_unique<Authorizer>(std::move(verifier), app->mail_.get());
  ServiceOptions svc;
  svc.heartbeat = o.heartbeat_interval;
  svc.serving = [self](std::string* leader) { return self->Serving(leader); };
  app->service_ = std::make_unique<MailboxServiceImpl>(app->mail_.get(), app->authz_.get(),
                                                       &app->hub_, std::move(svc));
  return app;
}

MailstoreApp::~MailstoreApp() { Stop(); }

bool MailstoreApp::Serving(std::string* leader) const {
  if (!replica_) return true;
  replica::Replica& r = replica_->replica();
  if (r.IsLeader() && r.Ready(nullptr)) return true;
  if (!r.IsLeader()) *leader = r.LeaderAddress();
  return false;
}

std::vector<grpc::Service*> MailstoreApp::Services() {
  std::vector<grpc::Service*> out = {service_.get()};
  if (replica_)
    for (grpc::Service* s : replica_->Services()) out.push_back(s);
  return out;
}

absl::Status MailstoreApp::Start(const rpc::RunContext&) {
  if (replica_) RETURN_IF_ERROR(replica_->Start());
  loop_ = std::thread([this] { Loop(); });
  // The search indexer runs on the leader only (no-op unless --deferred-index).
  mail_->StartIndexer([this] {
    std::string leader;
    return Serving(&leader);
  });
  return absl::OkStatus();
}

bool MailstoreApp::Ready(std::string* reason) {
  return replica_ == nullptr || replica_->replica().Ready(reason);
}

void MailstoreApp::Loop() {
  absl::Time next_retention = absl::Now() + absl::Minutes(1);
  absl::Time next_archive = absl::Now() + options_.archive_interval;
  // While the search layout gate is closed, step it often: a fresh
  // cluster opens it within a second or two of electing a leader, so its
  // first mailboxes already get blocks.
  absl::Duration pause = absl::Milliseconds(500);
  absl::MutexLock lock(&mu_);
  for (;;) {
    auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping), std::min(pause, options_.archive_interval));
    if (stopping_) return;
    mu_.Unlock();
    std::string leader;
    StepLayoutGate();
    if (mail_->BlockLayoutAllowed()) pause = options_.archive_interval;
    if (absl::Now() >= next_archive && Serving(&leader)) {
      next_archive = absl::Now() + options_.archive_interval;
      // Jobs are persisted; whichever replica leads continues them.
      if (auto n = mail_->RunArchiveJobs(); !n.ok())
        log::Warn("archive round failed", {{"status", n.status()}});
      if (absl::Now() >= next_retention) {
        next_retention = absl::Now() + options_.retention_interval;
        auto n = mail_->RunRetention(absl::Now());
        if (!n.ok()) log::Warn("retention round failed", {{"status", n.status()}});
        else if (*n > 0) log::Info("retention applied", {{"messages", static_cast<unsigned long long>(*n)}});
      }
    }
    mu_.Lock();
  }
}

void MailstoreApp::StepLayoutGate() {
  if (!replica_ || mail_->BlockLayoutAllowed()) return;
  replica::Replica& r = replica_->replica();
  const replica::ReplicaStatus status = r.Status();
  absl::Time now = absl::Now();
  if (now >= next_layout_report_) {
    next_layout_report_ = now + kLayoutReportInterval;
    if (!layout_client_) {
      // Writes reach the leader whichever member it is (this one included).
      std::vector<std::string> addresses;
      for (const auto& [id, address] : status.addresses) addresses.push_back(address);
      auto client = replica::ClientStore::Connect(addresses, peer_tls_);
      if (client.ok()) layout_client_ = std::move(*client);
      else log::Warn("search layout: no client to report through", {{"status", client.status()}});
    }
    if (layout_client_) {
      absl::Status s = MailStore::ReportLayoutSupport(layout_client_.get(), r.id(), kBlockLayout,
                                                      absl::Seconds(5));
      if (!s.ok()) {
        log::Warn("search layout: report failed", {{"status", s}});
        next_layout_report_ = absl::Now() + absl::Seconds(1);  // no leader yet, most likely
      }
    }
  }
  if (!r.IsLeader()) return;
  std::vector<uint64_t> members(status.conf.voters.begin(), status.conf.voters.end());
  members.insert(members.end(), status.conf.learners.begin(), status.conf.learners.end());
  auto open = mail_->OpenBlockLayoutIfSupported(members, kLayoutReportFresh);
  if (!open.ok()) log::Warn("search layout: opening failed", {{"status", open.status()}});
}

void MailstoreApp::Drain() {
  if (service_) service_->Drain();
  if (replica_) replica_->Drain();
  absl::MutexLock lock(&mu_);
  stopping_ = true;
}

void MailstoreApp::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (loop_.joinable()) loop_.join();
  if (mail_) mail_->StopIndexer();  // before the replica it writes to
  if (replica_) replica_->Stop();
}

rpc::ServiceDef ServiceDefinition() {
  rpc::ServiceDef def;
  def.name = "mailstored";
  def.add_flags = [](config::Flags& flags) { AddFlags(flags, g_options); };
  def.create = [](const rpc::CommonConfig& common, std::shared_ptr<prometheus::Registry> registry)
      -> absl::StatusOr<std::unique_ptr<rpc::ServiceApp>> {
    ASSIGN_OR_RETURN(auto app, MailstoreApp::Create(common, g_options, std::move(registry)));
    return std::unique_ptr<rpc::ServiceApp>(std::move(app));
  };
  return def;
}

}  // namespace mailgrid::mailstore
