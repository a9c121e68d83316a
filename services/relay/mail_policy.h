// The tenant mail policies relayd enforces (tenant/v1/policy.proto): which
// audit rules a submitted message matches (audit_holds.h holds it), and
// which monitoring rules ask for a copy to a supervisor (monitor copies,
// monitor_copies.h). The matching is pure; PolicyCache fetches the policies
// and the directory facts the conditions need from tenantd.
//
// Caching: a policy per tenant for `ttl` (default 30 s: a changed policy
// applies within that, the proto's version tells the logs which one
// applied); a user's department closure (their departments and every
// ancestor) for the same TTL. NOT_FOUND, UNIMPLEMENTED and PERMISSION_DENIED
// from tenantd read as an empty policy (no plan feature, an old tenantd);
// UNAVAILABLE and the rest are returned (the SMTP side answers 451).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/policy.pb.h"
#include "services/relay/backend.h"

namespace mailgrid::relay {

// What the audit conditions look at in the message itself.
struct MessageFeatures {
  std::string subject;  // decoded
  std::string text;     // the text parts, decoded to UTF-8 (html stripped)
  std::vector<std::string> attachment_names;
  bool has_attachment = false;
  uint64_t size = 0;
};
MessageFeatures ExtractFeatures(std::string_view message);

// Case-insensitive (ASCII) occurrence of `keyword` in `text`; a keyword
// that starts or ends with an ASCII letter or digit must start or end a
// word there ("class" does not match "classic"); other text (CJK) matches
// as a substring.
bool ContainsKeyword(std::string_view text, std::string_view keyword);

// The sender of a submitted message, as the audit conditions see it.
struct SenderFacts {
  std::string address;               // the authenticated user's canonical address
  std::vector<std::string> from;     // From: addresses of the message (lower-cased)
  std::set<std::string> departments; // the user's departments and all their ancestors
  bool has_external_recipient = false;
};

// The enabled rules of an enabled policy that match (every set condition
// holds); empty: not held.
std::vector<tenant::v1::AuditRule> MatchAudit(const tenant::v1::AuditPolicy& policy,
                                              const SenderFacts& sender,
                                              const MessageFeatures& message);
// Whether any enabled rule has a department condition (then the sender's
// departments must be fetched).
bool AuditNeedsDepartments(const tenant::v1::AuditPolicy& policy);

enum class Direction { kIncoming, kOutgoing };

// The enabled monitoring rules that cover `user_id` (directly or by one of
// `departments`) in `direction`.
std::vector<tenant::v1::MonitoringRule> MatchMonitoring(const tenant::v1::MonitoringPolicy& policy,
                                                        const std::string& user_id,
                                                        const std::set<std::string>& departments,
                                                        Direction direction);
bool MonitoringNeedsDepartments(const tenant::v1::MonitoringPolicy& policy);

class PolicyCache {
 public:
  explicit PolicyCache(Backend* backend, absl::Duration ttl = absl::Seconds(30))
      : backend_(backend), ttl_(ttl) {}

  absl::StatusOr<tenant::v1::AuditPolicy> Audit(const std::string& tenant_id);
  absl::StatusOr<tenant::v1::MonitoringPolicy> Monitoring(const std::string& tenant_id);
  // The user's departments and their ancestors (empty for an unknown user).
  absl::StatusOr<std::set<std::string>> Departments(const std::string& user_id);

  Backend* backend() { return backend_; }

 private:
  template <typename T>
  struct Entry {
    T value;
    absl::Time expires;
  };
  Backend* backend_;
  absl::Duration ttl_;
  absl::Mutex mu_;
  std::map<std::string, Entry<tenant::v1::AuditPolicy>> audit_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry<tenant::v1::MonitoringPolicy>> monitoring_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry<std::set<std::string>>> departments_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Entry<std::string>> parents_ ABSL_GUARDED_BY(mu_);  // dept -> parent
};

}  // namespace mailgrid::relay
