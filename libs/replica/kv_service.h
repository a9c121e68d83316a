// KvService (kv.proto) over one Replica, as tenantd, identityd and
// mailstored serve it on their gRPC port.
//
// Errors exactly as kv.proto documents them: NOT_LEADER is
// FAILED_PRECONDITION with trailing metadata `mailgrid-leader` (the leader's
// address) and `mailgrid-not-leader-bin` (a serialized kv.v1.NotLeader);
// when no leader is known it is UNAVAILABLE (with the same metadata, leader
// empty); INVALID_ARGUMENT names the offending field.
//
// Trust: requests come from the group's own services (mTLS in the chart);
// every field is validated before anything is proposed.
//
// Write is a callback (reactor) method: a write waits tens of milliseconds
// for its entry to commit and apply, and a blocking handler per write made
// gRPC's sync server create and destroy a thread per write under load
// (its pool keeps at most two idle threads); the answer now goes out from
// the completer thread (Replica::WriteAsync). Get and Scan are callback
// methods too: a STALE read answers inline on gRPC's thread, a LINEARIZABLE
// one from the completer thread once its ReadIndex is confirmed and applied,
// so a read never holds a sync-server thread either.
//
// WriteMany (KvClient's coalesced writes) is one Raft entry per call: one
// proposal, one append, one apply for many writes; see kv.proto.
#pragma once

#include "grpcpp/server_context.h"
#include "libs/replica/replica.h"
#include "mailgrid/kv/v1/kv.grpc.pb.h"

namespace mailgrid::replica {

inline constexpr char kLeaderMetadata[] = "mailgrid-leader";
inline constexpr char kNotLeaderMetadata[] = "mailgrid-not-leader-bin";

class KvServiceImpl final : public kv::v1::KvService::CallbackService {
 public:
  explicit KvServiceImpl(Replica* replica) : replica_(replica) {}

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const kv::v1::GetRequest* req,
                                kv::v1::GetResponse* resp) override;
  grpc::ServerUnaryReactor* Scan(grpc::CallbackServerContext* ctx, const kv::v1::ScanRequest* req,
                                 kv::v1::ScanResponse* resp) override;
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext* ctx, const kv::v1::WriteRequest* req,
                                  kv::v1::WriteResponse* resp) override;
  // Checks each write alone (scope, fields, reserved keys: a failure is that
  // write's result), then proposes the rest as ONE batch entry and answers
  // each write with its own outcome from the entry's WriteResponse.batch.
  grpc::ServerUnaryReactor* WriteMany(grpc::CallbackServerContext* ctx,
                                      const kv::v1::WriteManyRequest* req,
                                      kv::v1::WriteManyResponse* resp) override;
  // Format versions (libs/kv README "Formats"): what this binary applies and
  // what the group committed, from this replica's applied state (any
  // replica); SetFormat proposes the raise (leader; admin: refused to a
  // caller with a --kv-scope).
  grpc::ServerUnaryReactor* GetFormat(grpc::CallbackServerContext* ctx,
                                      const kv::v1::GetFormatRequest* req,
                                      kv::v1::GetFormatResponse* resp) override;
  grpc::ServerUnaryReactor* SetFormat(grpc::CallbackServerContext* ctx,
                                      const kv::v1::SetFormatRequest* req,
                                      kv::v1::WriteResponse* resp) override;

 private:
  Replica* const replica_;
};

// Converts a Replica status to gRPC, turning a NotLeader payload into the
// trailing metadata above.
grpc::Status ToGrpcWithLeaderHint(grpc::ServerContextBase* ctx, const absl::Status& status);

}  // namespace mailgrid::replica
