#include "services/identity/throttle.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/base/status.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {
namespace {

std::string FailKey(const std::string& a) { return absl::StrCat("mg:id:fa:", a); }
std::string LastKey(const std::string& a) { return absl::StrCat("mg:id:fl:", a); }
std::string LockKey(const std::string& a) { return absl::StrCat("mg:id:lk:", a); }
std::string IpFailKey(const std::string& ip) { return absl::StrCat("mg:id:fi:", ip); }
std::string IpLockKey(const std::string& ip) { return absl::StrCat("mg:id:li:", ip); }
std::string ListKey(const std::string& t) { return absl::StrCat("mg:id:lo:", t); }
std::string Ms(absl::Duration d) { return std::to_string(absl::ToInt64Milliseconds(d)); }

int64_t AsInt(const redis::Reply& r) {
  int64_t v = 0;
  if (r.is_integer()) return r.as_integer();
  if (r.is_string()) (void)absl::SimpleAtoi(r.as_string(), &v);
  return v;
}

// One lockout-list entry: "failures|last_ms|ip|address|locked_until_ms".
std::string Entry(int64_t failures, int64_t last_ms, const std::string& ip,
                  const std::string& address, int64_t locked_ms) {
  return absl::StrCat(failures, "|", last_ms, "|", ip, "|", address, "|", locked_ms);
}

}  // namespace

std::string ThrottleKeyOf(const std::string& address) { return absl::AsciiStrToLower(address); }

absl::Status Throttler::Check(const std::string& address, const std::string& ip) {
  std::string a = ThrottleKeyOf(address);
  ASSIGN_OR_RETURN(auto r, redis_->Pipeline({{"GET", FailKey(a)},
                                             {"GET", LastKey(a)},
                                             {"PTTL", LockKey(a)},
                                             {"PTTL", IpLockKey(ip)}}));
  for (const auto& reply : r) RETURN_IF_ERROR(redis::StatusFromReply(reply));
  absl::Time now = absl::Now();
  int64_t lock_ms = std::max(AsInt(r[2]), AsInt(r[3]));
  if (lock_ms > 0) return Throttled(now + absl::Milliseconds(lock_ms));
  int64_t failures = AsInt(r[0]);
  if (failures >= options_.delay_after) {
    int shift = static_cast<int>(std::min<int64_t>(failures - options_.delay_after, 20));
    absl::Duration delay = std::min(options_.base_delay * (1 << shift), options_.max_delay);
    absl::Time next = absl::FromUnixMillis(AsInt(r[1])) + delay;
    if (now < next) return Throttled(next);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Throttler::RecordFailure(const std::string& address, const std::string& ip,
                                              const std::string& tenant_id,
                                              const std::string& user_id) {
  std::string a = ThrottleKeyOf(address);
  ASSIGN_OR_RETURN(int64_t failures, redis_->IncrWithTtl(FailKey(a), options_.window));
  int64_t now_ms = absl::ToUnixMillis(absl::Now());
  std::vector<std::vector<std::string>> cmds = {
      {"SET", LastKey(a), std::to_string(now_ms), "PX", Ms(options_.window)}};
  bool locked = failures >= options_.lock_after;
  int64_t locked_ms = 0;
  if (locked) {
    cmds.push_back({"SET", LockKey(a), "1", "PX", Ms(options_.lock_for)});
    locked_ms = now_ms + absl::ToInt64Milliseconds(options_.lock_for);
  }
  if (!user_id.empty()) {
    cmds.push_back(
        {"HSET", ListKey(tenant_id), user_id, Entry(failures, now_ms, ip, address, locked_ms)});
    cmds.push_back({"PEXPIRE", ListKey(tenant_id), Ms(options_.window)});
  }
  if (!ip.empty()) {
    ASSIGN_OR_RETURN(int64_t ip_failures, redis_->IncrWithTtl(IpFailKey(ip), options_.window));
    if (ip_failures >= options_.ip_lock_after)
      cmds.push_back({"SET", IpLockKey(ip), "1", "PX", Ms(options_.lock_for)});
  }
  ASSIGN_OR_RETURN(auto replies, redis_->Pipeline(std::move(cmds)));
  for (const auto& reply : replies) RETURN_IF_ERROR(redis::StatusFromReply(reply));
  return locked;
}

absl::Status Throttler::RecordSuccess(const std::string& address, const std::string& tenant_id,
                                      const std::string& user_id) {
  std::string a = ThrottleKeyOf(address);
  std::vector<std::vector<std::string>> cmds = {{"DEL", FailKey(a), LastKey(a)}};
  if (!user_id.empty()) cmds.push_back({"HDEL", ListKey(tenant_id), user_id});
  ASSIGN_OR_RETURN(auto replies, redis_->Pipeline(std::move(cmds)));
  (void)replies;
  return absl::OkStatus();
}

absl::Status Throttler::Unlock(const std::string& address, const std::string& tenant_id,
                               const std::string& user_id) {
  std::string a = ThrottleKeyOf(address);
  ASSIGN_OR_RETURN(auto replies, redis_->Pipeline({{"DEL", FailKey(a), LastKey(a), LockKey(a)},
                                                   {"HDEL", ListKey(tenant_id), user_id}}));
  for (const auto& reply : replies) RETURN_IF_ERROR(redis::StatusFromReply(reply));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<absl::Time>> Throttler::LockedUntil(const std::string& address) {
  ASSIGN_OR_RETURN(redis::Reply r, redis_->Command({"PTTL", LockKey(ThrottleKeyOf(address))}));
  if (AsInt(r) <= 0) return std::nullopt;
  return absl::Now() + absl::Milliseconds(AsInt(r));
}

absl::StatusOr<std::vector<v1::Lockout>> Throttler::List(const std::string& tenant_id) {
  ASSIGN_OR_RETURN(redis::Reply r, redis_->Command({"HGETALL", ListKey(tenant_id)}));
  std::vector<v1::Lockout> out;
  const auto& e = r.elements();
  int64_t now_ms = absl::ToUnixMillis(absl::Now());
  for (size_t i = 0; i + 1 < e.size(); i += 2) {
    std::vector<std::string> f = absl::StrSplit(e[i + 1].as_string(), absl::MaxSplits('|', 4));
    if (f.size() != 5) continue;
    v1::Lockout l;
    l.set_user_id(e[i].as_string());
    int64_t failures = 0, last_ms = 0, locked_ms = 0;
    (void)absl::SimpleAtoi(f[0], &failures);
    (void)absl::SimpleAtoi(f[1], &last_ms);
    (void)absl::SimpleAtoi(f[4], &locked_ms);
    l.set_failures(static_cast<int32_t>(failures));
    l.mutable_last_failure_at()->set_seconds(last_ms / 1000);
    l.set_last_failure_ip(f[2]);
    l.set_address(f[3]);
    if (locked_ms > now_ms) l.mutable_locked_until()->set_seconds(locked_ms / 1000);
    // Only accounts being delayed or locked now.
    if (failures >= options_.delay_after || locked_ms > now_ms) out.push_back(std::move(l));
  }
  return out;
}

}  // namespace mailgrid::identity
