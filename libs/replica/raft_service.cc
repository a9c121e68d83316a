#include "libs/replica/raft_service.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/replica/codec.h"
#include "libs/replica/kv_service.h"
#include "libs/rpc/status.h"

namespace mailgrid::replica {

absl::Time AdminDeadline(const grpc::ServerContextBase* ctx, absl::Duration cap) {
  absl::Time capped = absl::Now() + cap;
  absl::Time client = absl::FromChrono(ctx->deadline());
  return std::min(client, capped);
}

absl::Status RaftServiceImpl::CheckAddressee(const std::string& group, uint64_t to,
                                             bool admin) const {
  if (!admin) return replica_->CheckAddressee(group, to);
  if (group.empty() || group == replica_->group_id()) return absl::OkStatus();
  return replica_->CheckAddressee(group, replica_->id());  // says which group this is
}

grpc::ServerUnaryReactor* RaftServiceImpl::Send(grpc::CallbackServerContext* ctx,
                                                const raft::v1::MessageBatch* req,
                                                raft::v1::SendAck*) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  raft::v1::MessageBatch batch = *req;  // the unary fallback: gRPC owns *req
  reactor->Finish(HandleSend(&batch));
  return reactor;
}

// One peer's SendStream: each batch is handled like a Send, in order.
class RaftServiceImpl::StreamReactor final
    : public grpc::ServerReadReactor<raft::v1::MessageBatch> {
 public:
  StreamReactor(RaftServiceImpl* service, bool serve) : service_(service) {
    if (!serve) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "SendStream is not served here"));
      return;
    }
    StartRead(&batch_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the sender closed or cancelled the stream, or we shut down
      Finish(grpc::Status::OK);
      return;
    }
    grpc::Status s = service_->HandleSend(&batch_);
    if (!s.ok()) {
      Finish(s);
      return;
    }
    StartRead(&batch_);
  }

  void OnDone() override { delete this; }

 private:
  RaftServiceImpl* const service_;
  raft::v1::MessageBatch batch_;  // reused (its entries' bytes are moved out when stepped)
};

grpc::ServerReadReactor<raft::v1::MessageBatch>* RaftServiceImpl::SendStream(
    grpc::CallbackServerContext*, raft::v1::SendAck*) {
  return new StreamReactor(this, serve_streams_);
}

grpc::Status RaftServiceImpl::HandleSend(raft::v1::MessageBatch* req) {
  return rpc::ToGrpc(replica_->DeliverBatch(req));
}

grpc::Status RaftServiceImpl::OfferSnapshot(grpc::ServerContext*,
                                            const raft::v1::SnapshotOffer* req,
                                            raft::v1::SnapshotOfferReply* resp) {
  if (absl::Status s = CheckAddressee(req->group_id(), req->to(), false); !s.ok()) {
    return rpc::ToGrpc(s);
  }
  if (replica_->test_hooks().Dropped(req->from())) {
    return rpc::ToGrpc(absl::UnavailableError("partitioned (test hook)"));
  }
  *resp = replica_->snapshot_receiver().Offer(*req);
  log::Info("raft: snapshot offered", {{"from", req->from()},
                                       {"index", req->meta().index()},
                                       {"files", req->files_size()},
                                       {"already_have", resp->have_files_size()}});
  return grpc::Status::OK;
}

grpc::Status RaftServiceImpl::InstallSnapshot(grpc::ServerContext*,
                                              grpc::ServerReader<raft::v1::SnapshotChunk>* reader,
                                              raft::v1::InstallSnapshotReply* resp) {
  auto stream = replica_->snapshot_receiver().StartStream();
  raft::v1::SnapshotChunk chunk;
  while (reader->Read(&chunk)) {
    if (absl::Status s = CheckAddressee(chunk.group_id(), chunk.to(), false); !s.ok()) {
      return rpc::ToGrpc(s);
    }
    if (replica_->test_hooks().Dropped(chunk.from())) {
      return rpc::ToGrpc(absl::UnavailableError("partitioned (test hook)"));
    }
    absl::StatusOr<std::optional<raft::Message>> done = stream->Add(chunk);
    if (!done.ok()) return rpc::ToGrpc(done.status());
    if (done->has_value()) {
      raft::NodeId from = chunk.from();
      replica_->Deliver({std::move(**done)}, from, "");
      resp->set_installed(true);
      return grpc::Status::OK;
    }
  }
  return rpc::ToGrpc(absl::FailedPreconditionError("snapshot stream ended before its message"));
}

grpc::Status RaftServiceImpl::GetStatus(grpc::ServerContext*, const raft::v1::GetStatusRequest* req,
                                        raft::v1::GetStatusResponse* resp) {
  if (absl::Status s = CheckAddressee(req->group_id(), 0, true); !s.ok()) return rpc::ToGrpc(s);
  ReplicaStatus st = replica_->Status();
  resp->set_group_id(st.group_id);
  resp->set_id(st.id);
  resp->set_term(st.term);
  resp->set_role(ToProto(st.role));
  resp->set_leader_id(st.leader);
  resp->set_leader_address(st.leader_address);
  resp->set_commit(st.commit);
  resp->set_applied(st.applied);
  resp->set_first_index(st.first_index);
  resp->set_last_index(st.last_index);
  std::set<raft::NodeId> learners(st.conf.learners.begin(), st.conf.learners.end());
  for (const auto& [id, address] : st.addresses) {
    raft::v1::Member* m = resp->add_members();
    m->set_id(id);
    m->set_address(address);
    m->set_learner(learners.count(id) > 0);
  }
  for (const raft::PeerProgress& p : st.progress) {
    raft::v1::PeerProgress* out = resp->add_progress();
    out->set_id(p.id);
    out->set_match(p.match);
    out->set_next(p.next);
    out->set_state(p.state == raft::PeerProgress::State::kReplicate  ? "replicate"
                   : p.state == raft::PeerProgress::State::kSnapshot ? "snapshot"
                                                                     : "probe");
    out->set_learner(p.learner);
    out->set_recent_active(p.recent_active);
    auto it = st.addresses.find(p.id);
    if (it != st.addresses.end()) out->set_address(it->second);
  }
  resp->set_ready(st.ready);
  resp->set_not_ready_reason(st.not_ready_reason);
  resp->set_snapshots_installed(st.snapshots_installed);
  resp->set_snapshot_chunks_refused(st.snapshot_chunks_refused);
  resp->set_snapshot_files_reused(st.snapshot_files_reused);
  return grpc::Status::OK;
}

grpc::Status RaftServiceImpl::TransferLeadership(grpc::ServerContext* ctx,
                                                 const raft::v1::TransferLeadershipRequest* req,
                                                 raft::v1::TransferLeadershipResponse* resp) {
  if (absl::Status s = CheckAddressee(req->group_id(), 0, true); !s.ok()) return rpc::ToGrpc(s);
  if (req->target() == raft::kNoNode) {
    return rpc::ToGrpc(absl::InvalidArgumentError("target: must not be 0"));
  }
  absl::Status s = replica_->TransferLeadership(req->target(), AdminDeadline(ctx));
  if (!s.ok()) return ToGrpcWithLeaderHint(ctx, s);
  resp->set_leader_id(replica_->LeaderId());
  return grpc::Status::OK;
}

grpc::Status RaftServiceImpl::ChangeMembership(grpc::ServerContext* ctx,
                                               const raft::v1::ChangeMembershipRequest* req,
                                               raft::v1::ChangeMembershipResponse* resp) {
  if (absl::Status s = CheckAddressee(req->group_id(), 0, true); !s.ok()) return rpc::ToGrpc(s);
  if (req->node() == raft::kNoNode) {
    return rpc::ToGrpc(absl::InvalidArgumentError("node: must not be 0"));
  }
  absl::Time deadline = AdminDeadline(ctx, absl::Minutes(2));
  absl::StatusOr<raft::Index> index;
  switch (req->kind()) {
    case raft::v1::ChangeMembershipRequest::ADD_VOTER:
      index = replica_->AddVoter(req->node(), req->address(), deadline);
      break;
    case raft::v1::ChangeMembershipRequest::ADD_LEARNER:
      index = replica_->AddLearner(req->node(), req->address(), deadline);
      break;
    case raft::v1::ChangeMembershipRequest::REMOVE:
      index = replica_->RemoveNode(req->node(), deadline);
      break;
    default:
      return rpc::ToGrpc(
          absl::InvalidArgumentError("kind: must be ADD_VOTER, ADD_LEARNER or REMOVE"));
  }
  if (!index.ok()) return ToGrpcWithLeaderHint(ctx, index.status());
  resp->set_index(*index);
  ReplicaStatus st = replica_->Status();
  std::set<raft::NodeId> learners(st.conf.learners.begin(), st.conf.learners.end());
  for (const auto& [id, address] : st.addresses) {
    raft::v1::Member* m = resp->add_members();
    m->set_id(id);
    m->set_address(address);
    m->set_learner(learners.count(id) > 0);
  }
  return grpc::Status::OK;
}

grpc::Status RaftServiceImpl::SetTestHooks(grpc::ServerContext*,
                                           const raft::v1::SetTestHooksRequest* req,
                                           raft::v1::SetTestHooksResponse*) {
#ifdef MAILGRID_TEST_HOOKS
  if (absl::Status s = CheckAddressee(req->group_id(), 0, true); !s.ok()) return rpc::ToGrpc(s);
  std::set<raft::NodeId> drop(req->drop_peers().begin(), req->drop_peers().end());
  replica_->test_hooks().SetDroppedPeers(drop);
  replica_->test_hooks().CorruptSnapshotChunks(req->corrupt_snapshot_chunks(),
                                               req->corrupt_snapshot_files());
  log::Warn("raft: TEST HOOKS set", {{"drop_peers", static_cast<int>(drop.size())},
                                     {"corrupt_chunks", req->corrupt_snapshot_chunks()},
                                     {"corrupt_files", req->corrupt_snapshot_files()}});
  return grpc::Status::OK;
#else
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "test hooks are not built in");
#endif
}

}  // namespace mailgrid::replica
