#include "libs/kv/keys.h"

#include "absl/status/status.h"

namespace mailgrid::kv {

void AppendString(std::string* out, std::string_view s) {
  for (char c : s) {
    out->push_back(c);
    if (c == '\0') out->push_back('\xFF');
  }
  out->push_back('\0');
  out->push_back('\x01');
}

void AppendUint64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xFF));
  }
}

void AppendInt64(std::string* out, int64_t v) {
  // Flipping the sign bit maps INT64_MIN..INT64_MAX onto 0..UINT64_MAX in order.
  AppendUint64(out, static_cast<uint64_t>(v) ^ (uint64_t{1} << 63));
}

std::string EncodeUint64(uint64_t v) {
  std::string out;
  AppendUint64(&out, v);
  return out;
}

std::string TenantPrefix(std::string_view tenant_id) {
  std::string out(1, kTenantTag);
  AppendString(&out, tenant_id);
  return out;
}

std::string GlobalPrefix(std::string_view space) {
  std::string out(1, kGlobalTag);
  AppendString(&out, space);
  return out;
}

absl::StatusOr<std::string> KeyReader::Str() {
  std::string out;
  for (size_t i = 0; i < rest_.size(); ++i) {
    if (rest_[i] != '\0') {
      out.push_back(rest_[i]);
      continue;
    }
    if (i + 1 >= rest_.size()) break;
    if (rest_[i + 1] == '\x01') {
      rest_.remove_prefix(i + 2);
      return out;
    }
    if (rest_[i + 1] != '\xFF') {
      return absl::InvalidArgumentError("key: bad escape in string component");
    }
    out.push_back('\0');
    ++i;
  }
  return absl::InvalidArgumentError("key: unterminated string component");
}

absl::StatusOr<uint64_t> KeyReader::U64() {
  if (rest_.size() < 8) return absl::InvalidArgumentError("key: short uint64 component");
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(rest_[i]);
  rest_.remove_prefix(8);
  return v;
}

absl::StatusOr<int64_t> KeyReader::I64() {
  absl::StatusOr<uint64_t> u = U64();
  if (!u.ok()) return u.status();
  return static_cast<int64_t>(*u ^ (uint64_t{1} << 63));
}

bool KeyReader::ConsumePrefix(std::string_view prefix) {
  if (rest_.substr(0, prefix.size()) != prefix) return false;
  rest_.remove_prefix(prefix.size());
  return true;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty() && end.back() == '\xFF') end.pop_back();
  if (end.empty()) return end;
  end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
  return end;
}

std::string Successor(std::string_view key) {
  std::string out(key);
  out.push_back('\0');
  return out;
}

KeyRange PrefixRange(std::string_view prefix) {
  return KeyRange{std::string(prefix), PrefixEnd(prefix)};
}

bool InRange(std::string_view key, std::string_view start, std::string_view end) {
  return key >= start && (end.empty() || key < end);
}

}  // namespace mailgrid::kv
