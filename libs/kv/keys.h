// Key encoding for the replicated store, in ONE place.
//
// Keys are ordered byte strings. Every key a service writes is a tuple of
// components encoded so that byte order == tuple order:
//   * string/bytes: each 0x00 becomes 0x00 0xFF, then the terminator 0x00 0x01.
//     Prefix-free, so tuples compose by concatenation and "a" < "a\0" < "ab".
//   * uint64: 8 bytes big-endian.
//   * int64: 8 bytes big-endian with the sign bit flipped.
// The first component says whose key it is:
//   * TenantPrefix(tenant) = 0x02 + string(tenant): every tenant-scoped key
//     starts with it, so a tenant is ONE key range (export, delete, count)
//     and isolation is visible in the key itself.
//   * GlobalPrefix(space) = 0x01 + string(space): keys that are unique across
//     tenants (domain -> tenant, address -> user, the tenant registry).
//
// Example: KeyBuilder(TenantPrefix(t)).Str("user").Str(user_id).Build()
// and all users of t: PrefixRange(KeyBuilder(TenantPrefix(t)).Str("user").Build()).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace mailgrid::kv {

// Appends one component to *out.
void AppendString(std::string* out, std::string_view s);
void AppendUint64(std::string* out, uint64_t v);
void AppendInt64(std::string* out, int64_t v);

// Encodes one uint64 alone (the raft_log key, the version field).
std::string EncodeUint64(uint64_t v);

inline constexpr char kGlobalTag = 0x01;
inline constexpr char kTenantTag = 0x02;

std::string TenantPrefix(std::string_view tenant_id);
std::string GlobalPrefix(std::string_view space);

// Builds a tuple key: KeyBuilder(prefix).Str(a).U64(b).Build().
class KeyBuilder {
 public:
  KeyBuilder() = default;
  explicit KeyBuilder(std::string prefix) : key_(std::move(prefix)) {}

  KeyBuilder& Str(std::string_view s) {
    AppendString(&key_, s);
    return *this;
  }
  KeyBuilder& U64(uint64_t v) {
    AppendUint64(&key_, v);
    return *this;
  }
  KeyBuilder& I64(int64_t v) {
    AppendInt64(&key_, v);
    return *this;
  }
  const std::string& key() const { return key_; }
  std::string Build() && { return std::move(key_); }
  std::string Build() const& { return key_; }

 private:
  std::string key_;
};

// Reads a tuple key back, component by component. Each Read fails with
// InvalidArgument (and leaves the reader unchanged) on malformed input.
class KeyReader {
 public:
  explicit KeyReader(std::string_view key) : rest_(key) {}
  // The reader points into the key: a temporary would dangle.
  explicit KeyReader(std::string&&) = delete;
  explicit KeyReader(const char* key) : rest_(key) {}

  absl::StatusOr<std::string> Str();
  absl::StatusOr<uint64_t> U64();
  absl::StatusOr<int64_t> I64();
  // Consumes `prefix` if the remaining key starts with it.
  bool ConsumePrefix(std::string_view prefix);

  std::string_view rest() const { return rest_; }
  bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// The smallest key greater than every key that starts with `prefix`, or ""
// (meaning unbounded) when there is none (prefix empty or all 0xFF).
std::string PrefixEnd(std::string_view prefix);

// The smallest key greater than `key` (key + 0x00).
std::string Successor(std::string_view key);

// [start, end) covering exactly the keys with `prefix`; end "" = unbounded.
struct KeyRange {
  std::string start;
  std::string end;
};
KeyRange PrefixRange(std::string_view prefix);

// Is `key` inside [start, end) with end "" meaning unbounded?
bool InRange(std::string_view key, std::string_view start, std::string_view end);

}  // namespace mailgrid::kv
