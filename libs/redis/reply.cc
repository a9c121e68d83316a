#include "libs/redis/reply.h"

#include <hiredis/hiredis.h>

#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mailgrid::redis {

Reply Reply::Integer(int64_t v) {
  Reply r;
  r.type_ = Type::kInteger;
  r.integer_ = v;
  return r;
}

Reply Reply::String(std::string bytes) {
  Reply r;
  r.type_ = Type::kString;
  r.str_ = std::move(bytes);
  return r;
}

Reply Reply::Status(std::string text) {
  Reply r;
  r.type_ = Type::kStatus;
  r.str_ = std::move(text);
  return r;
}

Reply Reply::Error(std::string text) {
  Reply r;
  r.type_ = Type::kError;
  r.str_ = std::move(text);
  return r;
}

Reply Reply::Array(std::vector<Reply> elements) {
  Reply r;
  r.type_ = Type::kArray;
  r.elements_ = std::move(elements);
  return r;
}

Reply Reply::FromHiredis(const redisReply& r) {
  switch (r.type) {
    case REDIS_REPLY_INTEGER:
      return Integer(r.integer);
    case REDIS_REPLY_STRING:
      return String(std::string(r.str, r.len));
    case REDIS_REPLY_STATUS:
      return Status(std::string(r.str, r.len));
    case REDIS_REPLY_ERROR:
      return Error(std::string(r.str, r.len));
    case REDIS_REPLY_ARRAY: {
      std::vector<Reply> elements;
      elements.reserve(r.elements);
      for (size_t i = 0; i < r.elements; ++i) elements.push_back(FromHiredis(*r.element[i]));
      return Array(std::move(elements));
    }
    case REDIS_REPLY_NIL:
    default:
      return Nil();
  }
}

std::string Reply::DebugString() const {
  switch (type_) {
    case Type::kNil:
      return "(nil)";
    case Type::kInteger:
      return absl::StrCat(integer_);
    case Type::kString:
      return absl::StrCat("\"", absl::CHexEscape(str_), "\"");
    case Type::kStatus:
      return absl::StrCat("+", absl::CHexEscape(str_));
    case Type::kError:
      return absl::StrCat("-", absl::CHexEscape(str_));
    case Type::kArray:
      return absl::StrCat(
          "[",
          absl::StrJoin(elements_, ", ",
                        [](std::string* out, const Reply& e) { out->append(e.DebugString()); }),
          "]");
  }
  return "?";
}

bool operator==(const Reply& a, const Reply& b) {
  return a.type_ == b.type_ && a.integer_ == b.integer_ && a.str_ == b.str_ &&
         a.elements_ == b.elements_;
}

absl::Status StatusFromReply(const Reply& r) {
  if (!r.is_error()) return absl::OkStatus();
  const std::string& text = r.as_string();
  std::string_view code = std::string_view(text).substr(0, text.find(' '));
  static const auto* const kCodes = new absl::flat_hash_map<std::string_view, absl::StatusCode>{
      {"WRONGTYPE", absl::StatusCode::kFailedPrecondition},
      {"EXECABORT", absl::StatusCode::kFailedPrecondition},
      {"NOSCRIPT", absl::StatusCode::kFailedPrecondition},
      {"BUSYKEY", absl::StatusCode::kFailedPrecondition},
      {"LOADING", absl::StatusCode::kUnavailable},
      {"BUSY", absl::StatusCode::kUnavailable},
      {"MASTERDOWN", absl::StatusCode::kUnavailable},
      {"TRYAGAIN", absl::StatusCode::kUnavailable},
      {"READONLY", absl::StatusCode::kUnavailable},
      {"NOAUTH", absl::StatusCode::kPermissionDenied},
      {"WRONGPASS", absl::StatusCode::kPermissionDenied},
      {"NOPERM", absl::StatusCode::kPermissionDenied},
      {"OOM", absl::StatusCode::kResourceExhausted},
  };
  auto it = kCodes->find(code);
  absl::StatusCode status_code = it == kCodes->end() ? absl::StatusCode::kInternal : it->second;
  return absl::Status(status_code, absl::StrCat("redis: ", text));
}

}  // namespace mailgrid::redis
