// Login throttling in Redis, counted per address string (so unknown
// addresses are throttled exactly like real ones) and per client IP:
//   * failures in a sliding hour (a fixed window that starts at the first
//     failure) are counted;
//   * from the `delay_after`-th failure on, the next attempt must wait
//     base_delay * 2^(failures - delay_after), at most max_delay;
//   * at `lock_after` failures the address is locked for `lock_for`; each
//     further failure after the lock expires locks it again. With the
//     defaults (delays from 3, lock at 10 for 15 min) an attacker gets far
//     fewer than 100 guesses per account per hour, and the real user gets
//     in as soon as the attacker stops and the lock runs out (a success
//     clears the address's counters);
//   * an IP with `ip_lock_after` failures in the window is locked too.
// A locked or delayed attempt is answered RESOURCE_EXHAUSTED THROTTLED
// with the time to retry, before any password is checked.
// Lockouts of known users are listed per tenant for admins and can be
// cleared (Unlock).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/redis/client.h"
#include "mailgrid/identity/v1/credential.pb.h"

namespace mailgrid::identity {

struct ThrottleOptions {
  int delay_after = 3;
  absl::Duration base_delay = absl::Seconds(1);
  absl::Duration max_delay = absl::Seconds(60);
  int lock_after = 10;
  absl::Duration lock_for = absl::Minutes(15);
  int ip_lock_after = 50;
  absl::Duration window = absl::Hours(1);
};

class Throttler {
 public:
  Throttler(redis::Client* redis, ThrottleOptions options) : redis_(redis), options_(options) {}

  // OK, or THROTTLED with the instant to retry.
  absl::Status Check(const std::string& address, const std::string& ip);
  // After a failed attempt. `tenant_id`/`user_id` are set when the address
  // is a known user (for the admins' lockout list). Returns true when the
  // address is now locked.
  absl::StatusOr<bool> RecordFailure(const std::string& address, const std::string& ip,
                                     const std::string& tenant_id, const std::string& user_id);
  // After a success: the address starts afresh.
  absl::Status RecordSuccess(const std::string& address, const std::string& tenant_id,
                             const std::string& user_id);
  absl::Status Unlock(const std::string& address, const std::string& tenant_id,
                      const std::string& user_id);
  absl::StatusOr<std::optional<absl::Time>> LockedUntil(const std::string& address);
  absl::StatusOr<std::vector<v1::Lockout>> List(const std::string& tenant_id);

  const ThrottleOptions& options() const { return options_; }

 private:
  redis::Client* redis_;
  ThrottleOptions options_;
};

// Case-insensitive addresses count as one.
std::string ThrottleKeyOf(const std::string& address);

}  // namespace mailgrid::identity
