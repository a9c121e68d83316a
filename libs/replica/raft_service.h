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

// Send and SendStream are callback (reactor) methods: they only queue into
// the inbox, so they run inline on gRPC's thread instead of handing every
// batch to a sync server thread (whose pool, under load, made a thread per
// call). A SendStream reactor steps each batch as it is read and reads the
// next; it ends when the sender closes or cancels it (a server shutdown
// cancels it too), or with the error of a refused batch.
class RaftServiceImpl final
    : public raft::v1::RaftService::WithCallbackMethod_SendStream<
          raft::v1::RaftService::WithCallbackMethod_Send<raft::v1::RaftService::Service>> {
 public:
  // serve_streams = false answers SendStream UNIMPLEMENTED, as a replica
  // from before it did (tests of the sender's fallback to Send).
  explicit RaftServiceImpl(Replica* replica, bool serve_streams = true)
      : replica_(replica), serve_streams_(serve_streams) {}

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx,
                                 const raft::v1::MessageBatch* req,
                                 raft::v1::SendAck* resp) override;
  grpc::ServerReadReactor<raft::v1::MessageBatch>* SendStream(grpc::CallbackServerContext* ctx,
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
  // Checks and steps a batch; its entries' bytes are moved out of it.
  grpc::Status HandleSend(raft::v1::MessageBatch* batch);
  class StreamReactor;

  Replica* const replica_;
  const bool serve_streams_;
};

// The deadline of an admin call: the client's, capped (a missing deadline
// must not park a handler thread forever).
absl::Time AdminDeadline(const grpc::ServerContextBase* ctx,
                         absl::Duration cap = absl::Seconds(30));

}  // namespace mailgrid::replica
