#include "libs/replica/codec.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"

namespace mailgrid::replica {
namespace {

// The wire enums mirror the core's numerically; these checks keep it so.
static_assert(static_cast<int>(raft::Message::Type::kReadIndexResp) ==
              raft::v1::MSG_READ_INDEX_RESP);
static_assert(static_cast<int>(raft::Message::Type::kSnapshot) == raft::v1::MSG_SNAPSHOT);
static_assert(static_cast<int>(raft::Entry::Type::kNoop) == raft::v1::ENTRY_NOOP);
static_assert(static_cast<int>(raft::Entry::Type::kConfChange) == raft::v1::ENTRY_CONF_CHANGE);

std::vector<raft::NodeId> Sorted(const google::protobuf::RepeatedField<uint64_t>& ids) {
  std::vector<raft::NodeId> out(ids.begin(), ids.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

void ToProto(const raft::Entry& in, raft::v1::Entry* out) {
  out->set_term(in.term);
  out->set_index(in.index);
  out->set_type(static_cast<raft::v1::EntryType>(in.type));
  out->set_data(in.data);
}

absl::StatusOr<raft::Entry> FromProto(const raft::v1::Entry& in) {
  if (in.type() < raft::v1::ENTRY_NORMAL || in.type() > raft::v1::ENTRY_NOOP) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry ", in.index(), ": unknown type ", static_cast<int>(in.type())));
  }
  raft::Entry e;
  e.term = in.term();
  e.index = in.index();
  e.type = static_cast<raft::Entry::Type>(in.type());
  e.data = in.data();
  return e;
}

void ToProto(const raft::ConfState& in, kv::v1::ConfState* out) {
  out->Clear();
  for (raft::NodeId id : in.voters) out->add_voters(id);
  for (raft::NodeId id : in.learners) out->add_learners(id);
}

raft::ConfState FromProto(const kv::v1::ConfState& in) {
  return raft::ConfState{Sorted(in.voters()), Sorted(in.learners())};
}

void ToProto(const raft::SnapshotMeta& in, raft::v1::SnapshotMeta* out) {
  out->set_index(in.index);
  out->set_term(in.term);
  ToProto(in.conf, out->mutable_conf());
}

raft::SnapshotMeta FromProto(const raft::v1::SnapshotMeta& in) {
  return raft::SnapshotMeta{in.index(), in.term(), FromProto(in.conf())};
}

namespace {

// Everything of a message but its entries and context.
void HeaderToProto(const raft::Message& in, raft::v1::Message* out) {
  out->set_type(static_cast<raft::v1::MessageType>(in.type));
  out->set_from(in.from);
  out->set_to(in.to);
  out->set_term(in.term);
  out->set_log_term(in.log_term);
  out->set_index(in.index);
  out->set_commit(in.commit);
  out->set_reject(in.reject);
  out->set_reject_hint(in.reject_hint);
  if (in.type == raft::Message::Type::kSnapshot) ToProto(in.snapshot, out->mutable_snapshot());
}

absl::StatusOr<raft::Message> HeaderFromProto(const raft::v1::Message& in) {
  if (in.type() < raft::v1::MSG_VOTE || in.type() > raft::v1::MSG_READ_INDEX_RESP) {
    return absl::InvalidArgumentError(
        absl::StrCat("raft message: unknown type ", static_cast<int>(in.type())));
  }
  raft::Message m;
  m.type = static_cast<raft::Message::Type>(in.type());
  m.from = in.from();
  m.to = in.to();
  m.term = in.term();
  m.log_term = in.log_term();
  m.index = in.index();
  m.commit = in.commit();
  m.reject = in.reject();
  m.reject_hint = in.reject_hint();
  if (in.has_snapshot()) m.snapshot = FromProto(in.snapshot());
  return m;
}

}  // namespace

void ToProto(const raft::Message& in, raft::v1::Message* out) {
  HeaderToProto(in, out);
  out->mutable_entries()->Reserve(static_cast<int>(in.entries.size()));
  for (const raft::Entry& e : in.entries) ToProto(e, out->add_entries());
  out->set_context(in.context);
}

void ToProto(raft::Message&& in, raft::v1::Message* out) {
  HeaderToProto(in, out);
  out->mutable_entries()->Reserve(static_cast<int>(in.entries.size()));
  for (raft::Entry& e : in.entries) {
    raft::v1::Entry* w = out->add_entries();
    w->set_term(e.term);
    w->set_index(e.index);
    w->set_type(static_cast<raft::v1::EntryType>(e.type));
    w->set_data(std::move(e.data));
  }
  out->set_context(std::move(in.context));
}

absl::StatusOr<raft::Message> FromProto(const raft::v1::Message& in) {
  ASSIGN_OR_RETURN(raft::Message m, HeaderFromProto(in));
  m.entries.reserve(in.entries_size());
  for (const raft::v1::Entry& e : in.entries()) {
    ASSIGN_OR_RETURN(raft::Entry entry, FromProto(e));
    m.entries.push_back(std::move(entry));
  }
  m.context = in.context();
  return m;
}

absl::StatusOr<raft::Message> FromProto(raft::v1::Message&& in) {
  ASSIGN_OR_RETURN(raft::Message m, HeaderFromProto(in));
  m.entries.reserve(in.entries_size());
  for (raft::v1::Entry& e : *in.mutable_entries()) {
    // Checked like a copied entry (type), then its bytes moved, not copied.
    std::string data = std::move(*e.mutable_data());
    ASSIGN_OR_RETURN(raft::Entry entry, FromProto(e));
    entry.data = std::move(data);
    m.entries.push_back(std::move(entry));
  }
  m.context = std::move(*in.mutable_context());
  return m;
}

raft::v1::Role ToProto(raft::Role role) {
  switch (role) {
    case raft::Role::kLeader:
      return raft::v1::ROLE_LEADER;
    case raft::Role::kCandidate:
      return raft::v1::ROLE_CANDIDATE;
    case raft::Role::kPreCandidate:
      return raft::v1::ROLE_PRE_CANDIDATE;
    case raft::Role::kFollower:
      break;
  }
  return raft::v1::ROLE_FOLLOWER;
}

}  // namespace mailgrid::replica
