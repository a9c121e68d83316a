// Channels to replicas (peer to peer, and KvClient to a group).
//
// Why not rpc::MakeChannel: a replica that is killed and restarted must be
// reachable again within a heartbeat or two, so these channels cap gRPC's
// reconnect backoff at one second (gRPC's default grows to two minutes, which
// would keep a restarted follower out of the group, or a client away from
// the new leader, for that long). Plain text only for now: TLS between
// replicas follows rpc::ClientOptions once it can carry channel arguments.
#pragma once

#include <memory>
#include <string>

#include "grpcpp/channel.h"

namespace mailgrid::replica {

std::shared_ptr<grpc::Channel> MakeReplicaChannel(const std::string& address);

}  // namespace mailgrid::replica
