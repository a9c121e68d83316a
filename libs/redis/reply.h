// An owned, immutable copy of a hiredis reply, so no hiredis memory ever
// escapes this library and a Reply outlives the connection it came from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

struct redisReply;  // hiredis; only reply.cc sees its definition

namespace mailgrid::redis {

class Reply {
 public:
  // RESP2 types. kStatus is a simple string ("+OK"), kError a "-ERR ..." line.
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };

  Reply() = default;  // nil
  static Reply Nil() { return Reply(); }
  static Reply Integer(int64_t v);
  static Reply String(std::string bytes);
  static Reply Status(std::string text);
  static Reply Error(std::string text);
  static Reply Array(std::vector<Reply> elements);
  // Deep copy; hiredis bounds the nesting depth, so the recursion is bounded.
  static Reply FromHiredis(const redisReply& r);

  Type type() const { return type_; }
  bool is_nil() const { return type_ == Type::kNil; }
  bool is_integer() const { return type_ == Type::kInteger; }
  // A bulk string or a status line: both carry text in as_string().
  bool is_string() const { return type_ == Type::kString || type_ == Type::kStatus; }
  bool is_status() const { return type_ == Type::kStatus; }
  bool is_error() const { return type_ == Type::kError; }
  bool is_array() const { return type_ == Type::kArray; }

  // The bytes of a string, status or error reply (binary-safe); empty for
  // other types. Check the type first when it matters.
  const std::string& as_string() const { return str_; }
  // The value of an integer reply; 0 for other types.
  int64_t as_integer() const { return integer_; }
  // The elements of an array reply; empty for other types.
  const std::vector<Reply>& elements() const { return elements_; }

  // Human-readable, e.g. ["message", "ch", 3]; bytes outside printable ASCII
  // are escaped. For logs and test failures.
  std::string DebugString() const;

  friend bool operator==(const Reply& a, const Reply& b);

 private:
  Type type_ = Type::kNil;
  int64_t integer_ = 0;
  std::string str_;
  std::vector<Reply> elements_;
};

bool operator==(const Reply& a, const Reply& b);
inline bool operator!=(const Reply& a, const Reply& b) { return !(a == b); }

// OK unless `r` is an error reply. An error maps by its leading code word:
//   WRONGTYPE, EXECABORT, NOSCRIPT, BUSYKEY      -> FAILED_PRECONDITION
//   LOADING, BUSY, MASTERDOWN, TRYAGAIN, READONLY -> UNAVAILABLE (transient)
//   NOAUTH, WRONGPASS, NOPERM                     -> PERMISSION_DENIED
//   OOM                                           -> RESOURCE_EXHAUSTED
//   anything else (ERR ...)                       -> INTERNAL
// The message is "redis: " followed by Redis's own text.
absl::Status StatusFromReply(const Reply& r);

}  // namespace mailgrid::redis
