// What a valid request is, in one place: the leader checks a WriteRequest
// before proposing it (and answers INVALID_ARGUMENT), and every replica checks
// the same rules again when applying the entry, so a bad entry that got into
// the log anyway is rejected identically everywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mailgrid/kv/v1/kv.pb.h"

namespace mailgrid::kv {

inline constexpr size_t kMaxKeyBytes = 4 << 10;
inline constexpr size_t kMaxValueBytes = 1 << 20;
inline constexpr size_t kMaxOpsPerWrite = 10000;
inline constexpr size_t kMaxConditionsPerWrite = 1000;
inline constexpr size_t kMaxClientIdBytes = 256;
// Also the largest Raft entry the store proposes.
inline constexpr size_t kMaxWriteRequestBytes = 16 << 20;
// Writes of one KvService.WriteMany call (one batch entry).
inline constexpr size_t kMaxWritesPerCall = 1000;
// The state-machine format that introduced client sessions
// (RequestId.first_unacked, kv.proto).
inline constexpr uint32_t kSessionFormat = 2;

// Keys are non-empty and at most kMaxKeyBytes; values at most kMaxValueBytes;
// a write has at least one condition or op; DELETE_RANGE has start < end.
// The message names the offending field, e.g. "ops[3].put.key: empty".
//
// A batch entry (WriteRequest.batch non-empty, the Raft entry of one
// WriteMany call) is valid when its own request_id, conditions and ops are
// empty, it has at most kMaxWritesPerCall writes, and every write passes
// ValidateBatchedWrite (the message then names it: "batch[2].ops[0]...").
absl::Status ValidateWriteRequest(const v1::WriteRequest& request);

// The shape of a batch entry alone (not its writes): what every replica
// checks before applying the writes one by one.
absl::Status ValidateBatchShape(const v1::WriteRequest& request);

// One write of a batch: a valid plain write with no nested batch and no
// DeleteRange (a range deletion cannot be read back by the writes after it
// in the same entry; such a write goes alone through Write).
absl::Status ValidateBatchedWrite(const v1::WriteRequest& write);

inline bool IsBatch(const v1::WriteRequest& request) { return request.batch_size() > 0; }

// A resolved scan: [start, end) with end "" = unbounded.
struct ScanOptions {
  std::string start;
  std::string end;
  size_t limit = 100;
  // Soft cap on the bytes of keys+values of one page (at least one entry is
  // always returned, so a scan always makes progress).
  size_t max_bytes = 2 << 20;
  bool reverse = false;
  bool keys_only = false;
};

struct ScanLimits {
  size_t default_limit = 100;
  size_t max_limit = 1000;
  size_t max_bytes = 2 << 20;
};

// Resolves prefix / key_range / continuation / limit. The continuation only
// ever narrows the requested range, so a forged continuation cannot read
// outside it (a tenant-prefix scan stays inside the tenant).
absl::StatusOr<ScanOptions> ResolveScan(const v1::ScanRequest& request,
                                        const ScanLimits& limits = {});

}  // namespace mailgrid::kv
