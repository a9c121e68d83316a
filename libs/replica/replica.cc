// Replica: opening the store, bootstrap, and the public API. The raft loop
// is in replica_loop.cc, applying in replica_apply.cc, reads in
// replica_reads.cc.
#include "libs/replica/replica.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "libs/kv/requests.h"
#include "libs/replica/codec.h"

namespace mailgrid::replica {

namespace fs = std::filesystem;

// ------------------------------------------------------------- helpers ---

absl::Status NotLeaderError(const kv::v1::NotLeader& hint) {
  std::string msg = "not the leader";
  if (hint.leader_id() != raft::kNoNode) {
    absl::StrAppend(&msg, "; leader is ", hint.leader_id());
    // Empty when this replica still counts itself the leader (a stalled one
    // refusing) or has not learned the leader's address yet.
    if (!hint.leader_address().empty()) absl::StrAppend(&msg, " at ", hint.leader_address());
  } else {
    absl::StrAppend(&msg, "; no leader known");
  }
  absl::Status s = absl::FailedPreconditionError(msg);
  s.SetPayload(kNotLeaderPayloadUrl, absl::Cord(hint.SerializeAsString()));
  return s;
}

std::optional<kv::v1::NotLeader> GetNotLeader(const absl::Status& status) {
  if (!absl::IsFailedPrecondition(status)) return std::nullopt;
  absl::optional<absl::Cord> payload = status.GetPayload(kNotLeaderPayloadUrl);
  if (!payload.has_value()) return std::nullopt;
  kv::v1::NotLeader hint;
  if (!hint.ParseFromString(std::string(*payload))) return std::nullopt;
  return hint;
}

std::string PeerAddressKey(raft::NodeId id) {
  std::string key(kSystemPrefix, kSystemPrefixLen);
  key += "peer/";
  kv::AppendUint64(&key, id);
  return key;
}

absl::Status CheckNoReservedKeys(const kv::v1::WriteRequest& request) {
  // Every key that starts with '\0' sorts below "\x01".
  auto reserved = [](const std::string& key) { return !key.empty() && key[0] == '\0'; };
  for (int i = 0; i < request.ops_size(); ++i) {
    const kv::v1::Op& op = request.ops(i);
    std::string field;
    if (op.has_put() && reserved(op.put().key())) field = ".put.key";
    if (op.has_delete_() && reserved(op.delete_().key())) field = ".delete.key";
    if (op.has_delete_range() && op.delete_range().start() < std::string("\x01", 1)) {
      field = ".delete_range.start";
    }
    if (!field.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops[", i, "]", field, ": keys starting with \\0 are reserved"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- open ---

Replica::Replica(ReplicaOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Replica>> Replica::Open(ReplicaOptions options) {
  if (options.id == raft::kNoNode) return absl::InvalidArgumentError("raft id: must not be 0");
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data dir: required");
  if (options.group_id.empty()) return absl::InvalidArgumentError("raft group: required");
  if (options.advertise_address.empty()) {
    auto it = options.peers.find(options.id);
    if (it == options.peers.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("raft peers: must list this replica (", options.id, ") with its address"));
    }
    options.advertise_address = it->second;
  }
  if (!options.join && options.peers.count(options.id) == 0) {
    return absl::InvalidArgumentError("raft peers: an initial member must be one of the voters");
  }
  if (options.compact_keep_entries >= options.compact_log_entries) {
    return absl::InvalidArgumentError("compaction: keep must be below the threshold");
  }
  std::unique_ptr<Replica> r(new Replica(std::move(options)));
  RETURN_IF_ERROR(r->OpenStore());
  return r;
}

absl::Status Replica::OpenStore() {
  registry_ = options_.registry ? options_.registry : std::make_shared<prometheus::Registry>();
  metrics_ = std::make_unique<ReplicaMetrics>(*registry_);
  std::error_code ec;
  fs::create_directories(options_.data_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("data dir ", options_.data_dir, ": ", ec.message()));

  ASSIGN_OR_RETURN(engine_, kv::Engine::Open(options_.data_dir + "/db", options_.engine));
  ASSIGN_OR_RETURN(sm_, kv::StateMachine::Open(engine_.get(), options_.state_machine));
  ASSIGN_OR_RETURN(log_, kv::RaftLogStore::Open(engine_.get()));

  const bool empty = log_->LastIndex() == 0 && sm_->applied_index() == 0 &&
                     log_->hard_state() == raft::HardState{};
  if (empty && !options_.join) {
    std::vector<raft::NodeId> voters;
    for (const auto& [id, address] : options_.peers) voters.push_back(id);
    RETURN_IF_ERROR(log_->Bootstrap(voters));
    log::Info("raft: bootstrapped a new group",
              {{"group", options_.group_id}, {"voters", static_cast<int>(voters.size())}});
  } else if (empty) {
    started_empty_ = true;
    log::Info("raft: starting empty, waiting to be added", {{"group", options_.group_id}});
  }

  conf_ = FromProto(sm_->applied().conf);
  raft::Config config;
  config.id = options_.id;
  config.election_tick = options_.election_tick;
  config.heartbeat_tick = options_.heartbeat_tick;
  config.pre_vote = true;
  config.check_quorum = true;
  config.defer_commit_broadcast = options_.commit_broadcast_delay > absl::ZeroDuration();
  config.applied = sm_->applied_index();
  ASSIGN_OR_RETURN(node_, raft::RawNode::Create(config, log_.get()));
  catch_up_target_ = log_->hard_state().commit;
  campaign_term_ = log_->hard_state().term;
  latest_hard_state_ = saved_hard_state_ = log_->hard_state();

  receiver_ = std::make_unique<SnapshotReceiver>(options_.data_dir + "/snapshots/incoming");
  receiver_->Cleanup(sm_->applied_index());
  TransportOptions t;
  t.group_id = options_.group_id;
  t.self = options_.id;
  t.self_address = options_.advertise_address;
  t.self_max_format = max_format();
  t.snapshot_dir = options_.data_dir + "/snapshots/outgoing";
  t.snapshot_chunk_bytes = options_.snapshot_chunk_bytes;
  t.tls = options_.peer_tls;
  t.stream = options_.send_stream;
  if (options_.wire && !options_.peer_tls.enabled()) {
    ASSIGN_OR_RETURN(wire_listener_,
                     WireListener::Listen(options_.wire_host, options_.wire_port));
    t.self_wire_port = wire_listener_->port();
    t.wire = true;
  }
  transport_ =
      std::make_unique<Transport>(t, static_cast<TransportHost*>(this), metrics_.get(), &hooks_);
  // Batches only queue in the inbox until the loop starts.
  if (wire_listener_ != nullptr) {
    wire_listener_->Start([this](raft::v1::MessageBatch* b) { return DeliverBatch(b); });
  }
  Publish();
  log::Info("raft: replica opened", {{"group", options_.group_id},
                                     {"id", options_.id},
                                     {"address", options_.advertise_address},
                                     {"wire_port", t.self_wire_port},
                                     {"applied", sm_->applied_index()},
                                     {"last_index", log_->LastIndex()},
                                     {"term", log_->hard_state().term}});
  return absl::OkStatus();
}

Replica::~Replica() { Stop(); }

absl::Status Replica::Start() {
  absl::MutexLock lock(&inbox_mu_);
  if (started_) return absl::FailedPreconditionError("replica already started");
  started_ = true;
  loop_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void Replica::Stop() {
  {
    absl::MutexLock lock(&inbox_mu_);
    if (stop_) return;
    stop_ = true;
  }
  if (loop_.joinable()) loop_.join();
  completer_.Stop();  // answers queued by the loop's last turn
  if (wire_listener_ != nullptr) wire_listener_->Stop();
  if (transport_ != nullptr) transport_->Stop();
  // Callers still waiting (the loop never ran, or left them behind).
  absl::Status stopping = absl::UnavailableError("replica stopping");
  FailAllWaiters(stopping);
  Inbox left;
  {
    absl::MutexLock lock(&inbox_mu_);
    std::swap(left, inbox_);
  }
  for (auto& p : left.proposals) p.done(stopping);
  for (auto& c : left.conf_changes) c.done->Set(stopping);
  for (auto& r : left.reads) r.done(stopping);
  for (auto& t : left.transfers) t.done->Set(stopping);
}

// ------------------------------------------------------ transport host ---

std::string Replica::PeerAddress(raft::NodeId id) { return AddressOf(id); }

std::string Replica::AddressOf(raft::NodeId id) const {
  if (id == options_.id) return options_.advertise_address;
  // The replicated record wins: it is what the group agreed on last.
  absl::StatusOr<kv::VersionedValue> v = sm_->Get(PeerAddressKey(id));
  if (v.ok() && !v->value.empty()) return v->value;
  auto it = options_.peers.find(id);
  if (it != options_.peers.end()) return it->second;
  absl::MutexLock lock(&addr_mu_);
  auto learned = learned_addresses_.find(id);
  return learned != learned_addresses_.end() ? learned->second : std::string();
}

bool Replica::Enqueue(const std::function<void(Inbox&)>& add) {
  absl::MutexLock lock(&inbox_mu_);
  if (stop_) return false;
  add(inbox_);
  return true;
}

void Replica::ReportUnreachable(raft::NodeId id) {
  Enqueue([&](Inbox& in) { in.reports.push_back({Report::Kind::kUnreachable, id}); });
}

void Replica::ReportSnapshot(raft::NodeId id, bool ok) {
  Enqueue([&](Inbox& in) {
    in.reports.push_back({ok ? Report::Kind::kSnapshotOk : Report::Kind::kSnapshotFailed, id});
  });
}

absl::StatusOr<kv::SnapshotInfo> Replica::CreateSnapshot(const std::string& dir) {
  return sm_->CreateSnapshot(dir);
}

void Replica::Deliver(std::vector<raft::Message> messages, raft::NodeId from,
                      const std::string& from_address, uint32_t from_max_format) {
  if ((!from_address.empty() || from_max_format > 0) && from != raft::kNoNode) {
    absl::MutexLock lock(&addr_mu_);
    if (!from_address.empty()) learned_addresses_[from] = from_address;
    if (from_max_format > 0) announced_formats_[from] = from_max_format;
  }
  absl::MutexLock lock(&inbox_mu_);
  if (stop_) return;
  // Bounded: while the loop is stalled (disk full) peers keep sending; what
  // is dropped here Raft sends again.
  constexpr size_t kMaxQueuedMessages = 20000;
  for (raft::Message& m : messages) {
    if (inbox_.messages.size() >= kMaxQueuedMessages) {
      metrics_->messages_dropped->Increment();
      continue;
    }
    inbox_.messages.push_back(std::move(m));
  }
}

absl::Status Replica::CheckAddressee(const std::string& group, raft::NodeId to) const {
  if (group != options_.group_id) {
    return absl::FailedPreconditionError(
        absl::StrCat("wrong raft group '", group, "': this is '", options_.group_id, "'"));
  }
  if (to != options_.id) {
    return absl::FailedPreconditionError(
        absl::StrCat("message for node ", to, " reached node ", options_.id));
  }
  return absl::OkStatus();
}

absl::Status Replica::DeliverBatch(raft::v1::MessageBatch* batch) {
  RETURN_IF_ERROR(CheckAddressee(batch->group_id(), batch->to()));
  if (hooks_.Dropped(batch->from())) return absl::OkStatus();  // partitioned (test hook)
  std::vector<raft::Message> msgs;
  msgs.reserve(batch->messages_size());
  for (raft::v1::Message& wire : *batch->mutable_messages()) {
    absl::StatusOr<raft::Message> m = FromProto(std::move(wire));  // entries moved, not copied
    if (!m.ok()) return m.status();
    if (m->from != batch->from() || m->to != batch->to()) {
      return absl::InvalidArgumentError("messages[].from/to: differ from the batch's");
    }
    if (m->type == raft::Message::Type::kSnapshot) {
      return absl::InvalidArgumentError(
          "messages[].type: MSG_SNAPSHOT travels only in InstallSnapshot");
    }
    msgs.push_back(std::move(*m));
  }
  if (batch->wire_port() > 0 && batch->wire_port() <= 0xffff && batch->from() != raft::kNoNode) {
    transport_->NoteWirePort(batch->from(), static_cast<uint16_t>(batch->wire_port()));
  }
  Deliver(std::move(msgs), batch->from(), batch->from_address(), batch->max_format());
  return absl::OkStatus();
}

// ------------------------------------------------------------ client API ---

uint32_t Replica::committed_format() const { return sm_->committed_format(); }

absl::Status Replica::NotLeader() const {
  kv::v1::NotLeader hint;
  raft::NodeId leader = leader_.load();
  hint.set_leader_id(leader);
  hint.set_term(term_.load());
  if (leader != raft::kNoNode && leader != options_.id) {
    hint.set_leader_address(AddressOf(leader));
  }
  return NotLeaderError(hint);
}

std::string Replica::LeaderAddress() const {
  raft::NodeId leader = leader_.load();
  if (leader == raft::kNoNode) return "";
  return AddressOf(leader);
}

absl::StatusOr<kv::v1::WriteResponse> Replica::Write(const kv::v1::WriteRequest& request,
                                                     absl::Time deadline) {
  RETURN_IF_ERROR(kv::ValidateWriteRequest(request));
  RETURN_IF_ERROR(CheckNoReservedKeys(request));
  return Propose(request, deadline);
}

void Replica::WriteAsync(const kv::v1::WriteRequest& request, absl::Time deadline,
                         WriteCallback done) {
  absl::Status s = kv::ValidateWriteRequest(request);
  if (s.ok()) s = CheckNoReservedKeys(request);
  if (!s.ok()) return done(s);
  ProposeAsync(request, deadline, std::move(done));
}

absl::StatusOr<kv::v1::WriteResponse> Replica::Propose(const kv::v1::WriteRequest& request,
                                                       absl::Time deadline) {
  auto result = std::make_shared<Completion<kv::v1::WriteResponse>>();
  ProposeAsync(request, deadline,
               [result](absl::StatusOr<kv::v1::WriteResponse> r) { result->Set(std::move(r)); });
  return result->Wait(deadline,
                      "write outcome unknown: deadline exceeded before the entry applied; retry "
                      "with the same request_id to learn it");
}

void Replica::ProposeAsync(const kv::v1::WriteRequest& request, absl::Time deadline,
                           WriteCallback done) {
  if (disk_full_.load()) {
    metrics_->proposals_refused->Increment();
    return done(absl::ResourceExhaustedError(
        "disk full: this replica refuses writes until space is freed"));
  }
  if (!IsLeader()) {
    metrics_->proposals_refused->Increment();
    return done(NotLeader());
  }
  if (!request.request_id().client_id().empty()) {
    // A retry of a write that already applied: answer without a new entry.
    // (One that is still in flight is caught when applied: the state
    // machine records each id once and replays the outcome.)
    absl::StatusOr<std::optional<kv::v1::WriteResponse>> recorded =
        sm_->FindRecordedOutcome(request.request_id());
    if (recorded.ok() && recorded->has_value()) {
      kv::v1::WriteResponse resp = **recorded;
      resp.set_replayed(true);
      return done(std::move(resp));
    }
  }
  std::string data = request.SerializeAsString();
  bool queued = false;
  Enqueue([&](Inbox& in) {
    in.proposals.push_back({std::move(data), std::move(done), deadline, absl::Now()});
    queued = true;
  });
  if (!queued) done(absl::UnavailableError("replica stopping"));
}

absl::StatusOr<raft::Index> Replica::WaitReadIndex(absl::Time deadline) {
  auto done = std::make_shared<Completion<raft::Index>>();
  ReadIndexAsync(deadline, [done](absl::StatusOr<raft::Index> r) { done->Set(std::move(r)); });
  return done->Wait(deadline, "linearizable read: leadership not confirmed before the deadline");
}

void Replica::ReadIndexAsync(absl::Time deadline, ReadCallback done) {
  if (!IsLeader()) return done(NotLeader());
  // `done` moves into the inbox only when it is queued.
  if (!Enqueue([&](Inbox& in) { in.reads.push_back({std::move(done), deadline}); })) {
    return done(absl::UnavailableError("replica stopping"));
  }
}

namespace {

absl::Status ValidateGet(const kv::v1::GetRequest& request) {
  if (request.key().empty()) return absl::InvalidArgumentError("key: empty");
  if (request.key().size() > kv::kMaxKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("key: longer than ", kv::kMaxKeyBytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<kv::v1::GetResponse> Replica::ReadLocal(const kv::v1::GetRequest& request) const {
  kv::v1::GetResponse resp;
  resp.set_applied_index(sm_->applied_index());
  absl::StatusOr<kv::VersionedValue> v = sm_->Get(request.key());
  if (absl::IsNotFound(v.status())) return resp;
  RETURN_IF_ERROR(v.status());
  resp.set_found(true);
  resp.set_value(std::move(v->value));
  resp.set_version(v->version);
  return resp;
}

absl::StatusOr<kv::v1::ScanResponse> Replica::ScanLocal(const kv::ScanOptions& options) const {
  ASSIGN_OR_RETURN(kv::ScanResult result, sm_->Scan(options));
  kv::v1::ScanResponse resp;
  for (kv::v1::KeyValue& kv : result.entries) *resp.add_entries() = std::move(kv);
  resp.set_continuation(std::move(result.continuation));
  resp.set_applied_index(result.applied_index);
  return resp;
}

absl::StatusOr<kv::v1::GetResponse> Replica::Get(const kv::v1::GetRequest& request,
                                                 absl::Time deadline) {
  RETURN_IF_ERROR(ValidateGet(request));
  if (request.consistency() == kv::v1::LINEARIZABLE) {
    ASSIGN_OR_RETURN(raft::Index read_index, WaitReadIndex(deadline));
    (void)read_index;  // the loop answered only once applied >= read_index
  }
  return ReadLocal(request);
}

absl::StatusOr<kv::v1::ScanResponse> Replica::Scan(const kv::v1::ScanRequest& request,
                                                   absl::Time deadline) {
  ASSIGN_OR_RETURN(kv::ScanOptions options, kv::ResolveScan(request));
  if (request.consistency() == kv::v1::LINEARIZABLE) {
    ASSIGN_OR_RETURN(raft::Index read_index, WaitReadIndex(deadline));
    (void)read_index;
  }
  return ScanLocal(options);
}

void Replica::GetAsync(const kv::v1::GetRequest& request, absl::Time deadline, GetCallback done) {
  absl::Status valid = ValidateGet(request);
  if (!valid.ok()) return done(valid);
  if (request.consistency() != kv::v1::LINEARIZABLE) return done(ReadLocal(request));
  ReadIndexAsync(
      deadline, [this, request, done = std::move(done)](absl::StatusOr<raft::Index> r) mutable {
        if (!r.ok()) return done(r.status());
        done(ReadLocal(request));  // the loop answered only once applied >= the read index
      });
}

void Replica::ScanAsync(const kv::v1::ScanRequest& request, absl::Time deadline,
                        ScanCallback done) {
  absl::StatusOr<kv::ScanOptions> options = kv::ResolveScan(request);
  if (!options.ok()) return done(options.status());
  if (request.consistency() != kv::v1::LINEARIZABLE) return done(ScanLocal(*options));
  ReadIndexAsync(deadline, [this, options = *std::move(options),
                            done = std::move(done)](absl::StatusOr<raft::Index> r) mutable {
    if (!r.ok()) return done(r.status());
    done(ScanLocal(options));
  });
}

// -------------------------------------------------------- administration ---

ReplicaStatus Replica::Status() const {
  ReplicaStatus s;
  {
    absl::MutexLock lock(&status_mu_);
    s = published_;
  }
  s.applied = sm_->applied_index();
  s.ready = Ready(&s.not_ready_reason);
  s.disk_full = disk_full_.load();
  s.leader_address = LeaderAddress();
  for (raft::NodeId id : s.conf.voters) s.addresses[id] = AddressOf(id);
  for (raft::NodeId id : s.conf.learners) {
    s.addresses[id] = AddressOf(id);
  }
  s.snapshots_installed = snapshots_installed_.load();
  s.snapshot_chunks_refused = receiver_->refused();
  s.snapshot_files_reused = receiver_->files_reused();
  return s;
}

bool Replica::Ready(std::string* reason) const {
  std::string why;
  if (disk_full_.load()) {
    why = "disk full: writes refused";
  } else if (leader_.load() == raft::kNoNode) {
    why = "no leader known";
  } else if (!ready_.load()) {
    why = "catching up with the log";
  } else {
    absl::MutexLock lock(&status_mu_);
    why = storage_error_;
  }
  if (reason != nullptr) *reason = why;
  return why.empty();
}

absl::Status Replica::TransferLeadership(raft::NodeId target, absl::Time deadline) {
  if (!IsLeader()) return NotLeader();
  if (target == options_.id) return absl::OkStatus();
  auto done = std::make_shared<Completion<bool>>();
  if (!Enqueue([&](Inbox& in) { in.transfers.push_back({target, done}); })) {
    return absl::UnavailableError("replica stopping");
  }
  RETURN_IF_ERROR(done->Wait(deadline, "leadership transfer not started").status());
  // The core hands over once the target's log is caught up; we see it when
  // the new leader's first message arrives.
  while (absl::Now() < deadline) {
    if (leader_.load() == target) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("leadership transfer to ", target, " not finished before the deadline"));
}

absl::StatusOr<raft::Index> Replica::AddVoter(raft::NodeId id, const std::string& address,
                                              absl::Time deadline) {
  return ChangeMembership({raft::ConfChange::Type::kAddVoter, id}, address, deadline);
}

absl::StatusOr<raft::Index> Replica::AddLearner(raft::NodeId id, const std::string& address,
                                                absl::Time deadline) {
  return ChangeMembership({raft::ConfChange::Type::kAddLearner, id}, address, deadline);
}

absl::StatusOr<raft::Index> Replica::RemoveNode(raft::NodeId id, absl::Time deadline) {
  return ChangeMembership({raft::ConfChange::Type::kRemoveNode, id}, "", deadline);
}

absl::StatusOr<raft::Index> Replica::ChangeMembership(raft::ConfChange change,
                                                      const std::string& address,
                                                      absl::Time deadline) {
  if (change.node == raft::kNoNode) return absl::InvalidArgumentError("node: must not be 0");
  if (!IsLeader()) return NotLeader();
  if (change.type != raft::ConfChange::Type::kRemoveNode) {
    // A promotion may omit the address: the learner's record is there.
    if (address.empty() && PeerAddress(change.node).empty()) {
      return absl::InvalidArgumentError("address: required for a new member");
    }
    if (!address.empty()) {
      // The address first, so that every replica can reach the member by
      // the time the change applies.
      kv::v1::WriteRequest record;
      kv::v1::Put* put = record.add_ops()->mutable_put();
      put->set_key(PeerAddressKey(change.node));
      put->set_value(address);
      ASSIGN_OR_RETURN(kv::v1::WriteResponse written, Propose(record, deadline));
      (void)written;
    }
  }
  auto done = std::make_shared<Completion<raft::Index>>();
  if (!Enqueue([&](Inbox& in) { in.conf_changes.push_back({change, done}); })) {
    return absl::UnavailableError("replica stopping");
  }
  return done->Wait(deadline, "membership change outcome unknown: deadline exceeded");
}

}  // namespace mailgrid::replica
