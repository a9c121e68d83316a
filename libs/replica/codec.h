// Conversions between the Raft core's types (libs/raft/types.h) and their
// wire form (mailgrid.raft.v1). Decoding faces the network: an unknown enum
// value is an error, never a silently different message.
#pragma once

#include "absl/status/statusor.h"
#include "libs/raft/types.h"
#include "mailgrid/kv/v1/kv.pb.h"
#include "mailgrid/raft/v1/raft.pb.h"

namespace mailgrid::replica {

void ToProto(const raft::Entry& in, raft::v1::Entry* out);
absl::StatusOr<raft::Entry> FromProto(const raft::v1::Entry& in);

void ToProto(const raft::ConfState& in, kv::v1::ConfState* out);
raft::ConfState FromProto(const kv::v1::ConfState& in);

void ToProto(const raft::SnapshotMeta& in, raft::v1::SnapshotMeta* out);
raft::SnapshotMeta FromProto(const raft::v1::SnapshotMeta& in);

void ToProto(const raft::Message& in, raft::v1::Message* out);
absl::StatusOr<raft::Message> FromProto(const raft::v1::Message& in);
// The same, moving the entries' data and the context instead of copying
// them (the transport's own copies: a batch being encoded, one just read).
void ToProto(raft::Message&& in, raft::v1::Message* out);
absl::StatusOr<raft::Message> FromProto(raft::v1::Message&& in);

raft::v1::Role ToProto(raft::Role role);

}  // namespace mailgrid::replica
