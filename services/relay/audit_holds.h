// Mail audit (tenant AuditPolicy, policy.proto; issue 9): a message a
// tenant's user submits (587/465) that matches an enabled rule is not
// delivered or queued but held — ONE queue entry for all its recipients,
// local and remote, DKIM-signed like any outgoing mail, queued HELD with
// hold_reason "audit" (no due key: no runner touches it) — with its
// HeldMessage record in HeldStore (held_id = queue_id). An auditor of the
// tenant (only those the policy names, if it names any) approves it (the
// entry becomes due: local recipients get it in their mailboxes, remote
// ones by SMTP, as if it had just been submitted) or rejects it (the entry
// is removed and the sender gets a notice with the reason). Every decision
// and every download goes to the tenant's admin audit log.
//
// Expiry: the hold lasts the policy's hold_expiry (default 7 days), then
// the policy's on_expiry applies (default REJECT: the sender is told it was
// not approved in time; RELEASE: it is sent), the record's state becoming
// EXPIRED. A sweeper thread on every relayd replica does it (every
// `sweep_every`); two replicas racing are safe (the queue's conditional
// write lets one win). The on_expiry read is the policy at expiry time.
// Moderation holds (outbound.h) past their expires_at are rejected the
// same way (the sender is told). Decided records are purged 30 days after
// their decision.
//
// Threads: the sweeper; everything else runs on the caller's thread
// (blocking: worker pool or gRPC threads, never the SMTP loop).
#pragma once

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "mailgrid/relay/v1/relay.pb.h"
#include "mailgrid/tenant/v1/policy.pb.h"
#include "services/relay/mail_policy.h"
#include "services/relay/outbound.h"

namespace mailgrid::relay {

inline constexpr absl::Duration kDefaultHoldExpiry = absl::Hours(24 * 7);

class AuditHolds {
 public:
  // `outbound` may lack a queue (then Hold is UNAVAILABLE: 451).
  AuditHolds(Outbound* outbound, Backend* backend, PolicyCache* policies, std::string hostname,
             absl::Duration sweep_every);
  ~AuditHolds();

  struct Request {
    std::string tenant_id;
    std::string sender_user_id;
    std::string envelope_from;
    std::vector<std::string> recipients;  // as given at RCPT (local and remote)
    std::string message;                  // with our Received: on top, unsigned
    std::vector<tenant::v1::AuditRule> matched;
    tenant::v1::AuditPolicy policy;
  };
  // Queues the message HELD and writes its record; the held id.
  absl::StatusOr<std::string> Hold(const Request& request);

  // Approve or reject an AUDIT hold (FAILED_PRECONDITION ALREADY_DECIDED;
  // EXPIRED once past expires_at: the policy decides then).
  absl::StatusOr<relay::v1::HeldMessage> Decide(const std::string& held_id, bool approve,
                                                const std::string& reason,
                                                const common::v1::Actor& by);
  // May `user_id` (an auditor of `tenant_id`) decide that tenant's audit
  // holds? Every auditor unless the policy names some.
  absl::StatusOr<bool> MayDecide(const std::string& tenant_id, const std::string& user_id);

  // Applies expiry to every HELD record past its expires_at, purges old
  // decided records; the number of holds expired.
  int Sweep(absl::Time now);

  // An admin audit log entry about a held message ("mail.held.approve", ...).
  void Record(const relay::v1::HeldMessage& held, const common::v1::Actor& by,
              const std::string& action, const std::string& summary, const std::string& reason);

  void Start();
  void Stop();

 private:
  absl::StatusOr<relay::v1::HeldMessage> Finish(const std::string& held_id, bool approve,
                                                const std::string& reason,
                                                const common::v1::Actor& by, bool expired);
  void Notify(const relay::v1::HeldMessage& held, const std::string& reason, bool expired);

  Outbound* outbound_;
  Backend* backend_;
  PolicyCache* policies_;
  std::string hostname_;
  absl::Duration sweep_every_;
  DkimKeyCache keys_;
  std::thread sweeper_;
  absl::Notification stop_;
  bool started_ = false;
};

}  // namespace mailgrid::relay
