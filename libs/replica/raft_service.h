// RaftService (raft.proto) over one Replica: the receiving side of the
// transport (Send, OfferSnapshot, InstallSnapshot) and the admin RPCs.
//
// Trust: callers are the group's other replicas and operators (mTLS in the
// chart). Every request must name this replica's group and id; anything
// else is refused with FAILED_PRECONDITION before it reaches the core.
// Decoding is strict (codec.h); a MSG_SNAPSHOT is accepted only at the end
// of a verified InstallSnapshot stream, never through Send.
#pragma once

#include "grpcpp/server_context.h"
#include "libs/replica/replica.h"
#include "mailgrid/raft/v1/raft.grpc.pb.h"

namespace mailgrid::replica {

// Send is a callback (reactor) method: it only queues into the inbox, so it
// answers inline on gRPC's thread instead of handing every batch to a sync
// server thread (whose pool, under load, made a thread per call).
class RaftServiceImpl final
    : public raft::v1::RaftService::WithCallbackMethod_Send<raft::v1::RaftService::Service> {
 public:
  explicit RaftServiceImpl(Replica* replica) : replica_(replica) {}

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx,
                                 const raft::v1::MessageBatch* req,
                                 raft::v1::SendAck* resp) override;
  grpc::Status OfferSnapshot(grpc::ServerContext* ctx, const raft::v1::SnapshotOffer* req,
                             raft::v1::SnapshotOfferReply* resp) override;
  grpc::Status InstallSnapshot(grpc::ServerContext* ctx,
                               grpc::ServerReader<raft::v1::SnapshotChunk>* reader,
                               raft::v1::InstallSnapshotReply* resp) override;
  grpc::Status GetStatus(grpc::ServerContext* ctx, const raft::v1::GetStatusRequest* req,
                         raft::v1::GetStatusResponse* resp) override;
  grpc::Status TransferLeadership(grpc::ServerContext* ctx,
                                  const raft::v1::TransferLeadershipRequest* req,
                                  raft::v1::TransferLeadershipResponse* resp) override;
  grpc::Status ChangeMembership(grpc::ServerContext* ctx,
                                const raft::v1::ChangeMembershipRequest* req,
                                raft::v1::ChangeMembershipResponse* resp) override;
  grpc::Status SetTestHooks(grpc::ServerContext* ctx, const raft::v1::SetTestHooksRequest* req,
                            raft::v1::SetTestHooksResponse* resp) override;

 private:
  // OK if `group` is ours (empty allowed only for admin calls) and `to` is us.
  absl::Status CheckAddressee(const std::string& group, uint64_t to, bool admin) const;
  grpc::Status HandleSend(const raft::v1::MessageBatch& req);

  Replica* const replica_;
};

// The deadline of an admin call: the client's, capped (a missing deadline
// must not park a handler thread forever).
absl::Time AdminDeadline(const grpc::ServerContextBase* ctx,
                         absl::Duration cap = absl::Seconds(30));

}  // namespace mailgrid::replica
