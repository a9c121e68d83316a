// Small extension commands: ENABLE (RFC 5161), ID (RFC 2971), COMPRESS
// (RFC 4978), and the QUOTA commands (RFC 9208).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/imap/commands/cursor.h"

namespace mailgrid::imap {

struct EnableArgs {
  std::vector<std::string> capabilities;  // upper-cased
};

// RFC 2971 §3.3 limits, enforced: at most 30 pairs, names up to 30 bytes,
// values up to 1024 bytes.
struct IdArgs {
  std::vector<std::pair<std::string, std::optional<std::string>>> fields;  // empty for NIL
};

struct CompressArgs {
  std::string mechanism;  // "DEFLATE", the only one defined
};

struct QuotaRootArgs {  // GETQUOTA
  std::string root;     // quota root name as sent (not a mailbox name)
};

struct SetQuotaArgs {  // parsed so SETQUOTA gets a precise answer; refused by policy
  std::string root;
  std::vector<std::pair<std::string, uint64_t>> limits;  // resource (upper-cased), limit
};

absl::StatusOr<EnableArgs> ParseEnable(ArgCursor& in, bool uid);
absl::StatusOr<IdArgs> ParseId(ArgCursor& in, bool uid);
absl::StatusOr<CompressArgs> ParseCompress(ArgCursor& in, bool uid);
absl::StatusOr<QuotaRootArgs> ParseGetQuota(ArgCursor& in, bool uid);
absl::StatusOr<SetQuotaArgs> ParseSetQuota(ArgCursor& in, bool uid);
void AppendDebug(const EnableArgs& a, std::string* out);
void AppendDebug(const IdArgs& a, std::string* out);
void AppendDebug(const CompressArgs& a, std::string* out);
void AppendDebug(const QuotaRootArgs& a, std::string* out);
void AppendDebug(const SetQuotaArgs& a, std::string* out);

}  // namespace mailgrid::imap
