#include "libs/kv/requests.h"

#include <algorithm>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "libs/kv/keys.h"

namespace mailgrid::kv {
namespace {

// A field's name, e.g. "ops[3]" + ".put.key", built only for an error
// message: validation runs on every write on the leader and every replica.
struct Field {
  std::string_view list;
  int i;
  std::string_view sub = "";
  Field Sub(std::string_view s) const { return Field{list, i, s}; }
  std::string str() const {
    return absl::StrCat(absl::string_view(list.data(), list.size()), "[", i, "]",
                        absl::string_view(sub.data(), sub.size()));
  }
};

absl::Status CheckKey(std::string_view key, const Field& field) {
  if (key.empty()) return absl::InvalidArgumentError(absl::StrCat(field.str(), ": empty key"));
  if (key.size() > kMaxKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": key of ", key.size(), " bytes exceeds ", kMaxKeyBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckValue(std::string_view value, const Field& field) {
  if (value.size() > kMaxValueBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field.str(), ": value of ", value.size(), " bytes exceeds ", kMaxValueBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckCondition(const v1::Condition& c, const Field& field) {
  absl::Status s = CheckKey(c.key(), field.Sub(".key"));
  if (!s.ok()) return s;
  switch (c.kind()) {
    case v1::Condition::MUST_EXIST:
    case v1::Condition::MUST_NOT_EXIST:
    case v1::Condition::VERSION_EQUALS:
      return absl::OkStatus();
    case v1::Condition::VALUE_EQUALS:
      return CheckValue(c.value(), field.Sub(".value"));
    default:
      return absl::InvalidArgumentError(absl::StrCat(field.str(), ".kind: unspecified or unknown"));
  }
}

absl::Status CheckOp(const v1::Op& op, const Field& field) {
  switch (op.op_case()) {
    case v1::Op::kPut: {
      absl::Status s = CheckKey(op.put().key(), field.Sub(".put.key"));
      if (!s.ok()) return s;
      return CheckValue(op.put().value(), field.Sub(".put.value"));
    }
    case v1::Op::kDelete:
      return CheckKey(op.delete_().key(), field.Sub(".delete.key"));
    case v1::Op::kDeleteRange: {
      const v1::DeleteRange& r = op.delete_range();
      if (r.start().size() > kMaxKeyBytes || r.end().size() > kMaxKeyBytes) {
        return absl::InvalidArgumentError(absl::StrCat(field.str(), ".delete_range: key too long"));
      }
      if (r.end().empty() || r.start() >= r.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(field.str(), ".delete_range: needs start < end (end may not be empty)"));
      }
      return absl::OkStatus();
    }
    case v1::Op::OP_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat(field.str(), ": no op set"));
}

}  // namespace

absl::Status ValidateBatchShape(const v1::WriteRequest& request) {
  if (!request.request_id().client_id().empty() || request.request_id().seq() != 0) {
    return absl::InvalidArgumentError("batch: the entry itself takes no request_id");
  }
  if (request.conditions_size() != 0 || request.ops_size() != 0 || request.set_format() != 0) {
    return absl::InvalidArgumentError(
        "batch: the entry itself takes no conditions, ops or set_format");
  }
  if (static_cast<size_t>(request.batch_size()) > kMaxWritesPerCall) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch: ", request.batch_size(), " writes exceed ", kMaxWritesPerCall));
  }
  return absl::OkStatus();
}

absl::Status ValidateBatchedWrite(const v1::WriteRequest& write) {
  if (IsBatch(write)) return absl::InvalidArgumentError("batch: a batch may not nest a batch");
  if (write.set_format() != 0) return absl::InvalidArgumentError("set_format: not in a batch");
  for (int i = 0; i < write.ops_size(); ++i) {
    if (write.ops(i).has_delete_range()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ops[", i, "].delete_range: not allowed in a batch; send it to Write"));
    }
  }
  return ValidateWriteRequest(write);
}

absl::Status ValidateWriteRequest(const v1::WriteRequest& request) {
  if (IsBatch(request)) {
    absl::Status s = ValidateBatchShape(request);
    if (!s.ok()) return s;
    for (int i = 0; i < request.batch_size(); ++i) {
      s = ValidateBatchedWrite(request.batch(i));
      if (!s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("batch[", i, "].", s.message()));
      }
    }
    return absl::OkStatus();
  }
  if (request.request_id().client_id().size() > kMaxClientIdBytes) {
    return absl::InvalidArgumentError("request_id.client_id: too long");
  }
  if (request.request_id().first_unacked() != 0) {
    // A session write (format 2): without min_format a format-1 replica
    // would apply it as a plain write and keep a different record.
    if (request.request_id().client_id().empty()) {
      return absl::InvalidArgumentError("request_id.first_unacked: needs a client_id");
    }
    if (request.min_format() < kSessionFormat) {
      return absl::InvalidArgumentError(
          absl::StrCat("request_id.first_unacked: needs min_format >= ", kSessionFormat));
    }
  }
  if (request.set_format() != 0) {
    // The group's format, raised alone (no record: repeating it is harmless).
    if (!request.request_id().client_id().empty() || request.conditions_size() != 0 ||
        request.ops_size() != 0) {
      return absl::InvalidArgumentError(
          "set_format: only alone (no request_id, conditions, ops or batch)");
    }
    return absl::OkStatus();
  }
  if (request.conditions_size() == 0 && request.ops_size() == 0) {
    return absl::InvalidArgumentError("write: no conditions and no ops");
  }
  if (static_cast<size_t>(request.conditions_size()) > kMaxConditionsPerWrite) {
    return absl::InvalidArgumentError("conditions: too many");
  }
  if (static_cast<size_t>(request.ops_size()) > kMaxOpsPerWrite) {
    return absl::InvalidArgumentError("ops: too many");
  }
  for (int i = 0; i < request.conditions_size(); ++i) {
    absl::Status s = CheckCondition(request.conditions(i), Field{"conditions", i});
    if (!s.ok()) return s;
  }
  for (int i = 0; i < request.ops_size(); ++i) {
    absl::Status s = CheckOp(request.ops(i), Field{"ops", i});
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<ScanOptions> ResolveScan(const v1::ScanRequest& request, const ScanLimits& limits) {
  ScanOptions out;
  switch (request.range_case()) {
    case v1::ScanRequest::kPrefix: {
      KeyRange r = PrefixRange(request.prefix());
      out.start = std::move(r.start);
      out.end = std::move(r.end);
      break;
    }
    case v1::ScanRequest::kKeyRange:
      out.start = request.key_range().start();
      out.end = request.key_range().end();
      if (!out.end.empty() && out.start >= out.end) {
        return absl::InvalidArgumentError("key_range: needs start < end (or an empty end)");
      }
      break;
    case v1::ScanRequest::RANGE_NOT_SET:
      return absl::InvalidArgumentError("range: set prefix or key_range");
  }
  const std::string& c = request.continuation();
  // +1: a continuation is at most the successor of a maximal key.
  if (out.start.size() > kMaxKeyBytes + 1 || out.end.size() > kMaxKeyBytes + 1 ||
      c.size() > kMaxKeyBytes + 1) {
    return absl::InvalidArgumentError("range: key too long");
  }
  if (!c.empty()) {
    // Forward pages resume at `c` (inclusive); reverse pages below `c`.
    if (request.reverse()) {
      if (out.end.empty() || c < out.end) out.end = c;
    } else {
      out.start = std::max(out.start, c);
    }
  }
  out.limit = request.limit() == 0 ? limits.default_limit
                                   : std::min<size_t>(request.limit(), limits.max_limit);
  out.max_bytes = limits.max_bytes;
  out.reverse = request.reverse();
  out.keys_only = request.keys_only();
  return out;
}

}  // namespace mailgrid::kv
