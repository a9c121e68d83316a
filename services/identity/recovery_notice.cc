// CredentialService.NotifyRecoveryEmailChanged: tenantd owns a user's
// recovery address (DirectoryService.UpdateUser) and tells identityd after a
// change commits, so the user and the OLD address hear of it like of every
// other factor change (README "Security notices").
//
// Idempotency: tenantd retries a call until it is accepted (its durable
// "peerwork" key), so the same event may arrive twice (an answer lost on
// the way back). The first call claims mg:id:rn:<event_id> in Redis (SET NX,
// 24 h) and queues the notice; a repeat finds the claim and queues nothing.
// Should Redis have lost the claim, relayd still delivers each message once:
// its idempotency key is "notice:<event_id>:<n>" (notices.cc).
#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"

namespace mailgrid::identity {

namespace {

constexpr size_t kMaxEventId = 128;
constexpr absl::Duration kRememberEvent = absl::Hours(24);  // as relayd's idempotency records

bool PrintableAscii(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// The fields are tenantd's (validated there); checked again because they
// end up in mail headers and Redis keys.
absl::Status CheckRecoveryNoticeRequest(const v1::NotifyRecoveryEmailChangedRequest& r) {
  if (r.tenant_id().empty()) return InvalidField("tenant_id", "EMPTY", "tenant_id is required");
  if (r.user_id().empty()) return InvalidField("user_id", "EMPTY", "user_id is required");
  if (r.event_id().empty() || r.event_id().size() > kMaxEventId || !PrintableAscii(r.event_id()))
    return InvalidField("event_id", "INVALID",
                        "event_id must be 1-128 printable ASCII characters without spaces");
  for (const auto& [field, value] : {std::pair{"old_recovery_email", &r.old_recovery_email()},
                                     std::pair{"new_recovery_email", &r.new_recovery_email()}})
    if (value->find_first_of("\r\n") != std::string::npos || value->find('\0') != std::string::npos)
      return InvalidField(field, "NOT_HEADER_SAFE", "an address must not contain CR, LF or NUL");
  if (r.old_recovery_email() == r.new_recovery_email())
    return InvalidField("new_recovery_email", "SAME_AS_OLD",
                        "new_recovery_email equals old_recovery_email: nothing changed");
  return absl::OkStatus();
}

absl::Time ChangedAt(const v1::NotifyRecoveryEmailChangedRequest& r) {
  if (!r.has_changed_at()) return absl::Now();
  return absl::FromUnixSeconds(r.changed_at().seconds()) +
         absl::Nanoseconds(r.changed_at().nanos());
}

}  // namespace

absl::StatusOr<v1::NotifyRecoveryEmailChangedResponse> Core::NotifyRecoveryEmailChanged(
    const Caller& c, const v1::NotifyRecoveryEmailChangedRequest& r) {
  if (!c.service()) return c.anonymous() ? Unauthenticated() : PermissionDenied("service-internal");
  RETURN_IF_ERROR(CheckRecoveryNoticeRequest(r));
  v1::NotifyRecoveryEmailChangedResponse out;
  if (options_.notices == nullptr) return out;  // no relayd: nothing is sent (README)
  const std::string claim = absl::StrCat("mg:id:rn:", r.event_id());
  ASSIGN_OR_RETURN(bool first, redis_->Set(claim, "1", {.ttl = kRememberEvent, .if_absent = true}));
  if (!first) return out;  // a retry of an event already queued
  SecurityNotice n;
  n.event = SecurityEvent::kRecoveryEmailChanged;
  n.tenant_id = r.tenant_id();
  n.user_id = r.user_id();
  n.at = ChangedAt(r);
  n.client = r.client();
  n.by_admin = r.by_admin();
  n.old_recovery_email = r.old_recovery_email();
  n.id = r.event_id();
  if (absl::Status s = QueueNotice(std::move(n)); !s.ok()) {
    (void)redis_->Del(claim);  // not queued: the caller's retry must queue it
    return s;
  }
  out.set_queued(true);
  return out;
}

}  // namespace mailgrid::identity
