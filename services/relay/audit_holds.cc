#include "services/relay/audit_holds.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/errors.h"
#include "services/relay/headers.h"

namespace mailgrid::relay {
namespace {

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}
void ToProto(absl::Time t, google::protobuf::Timestamp* out) {
  out->set_seconds(absl::ToUnixSeconds(t));
}

absl::Duration HoldExpiry(const tenant::v1::AuditPolicy& p) {
  if (!p.has_hold_expiry()) return kDefaultHoldExpiry;
  absl::Duration d = absl::Seconds(p.hold_expiry().seconds()) + absl::Nanoseconds(p.hold_expiry().nanos());
  return d > absl::ZeroDuration() ? d : kDefaultHoldExpiry;
}

constexpr absl::Duration kKeepDecided = absl::Hours(24 * 30);

}  // namespace

AuditHolds::AuditHolds(Outbound* outbound, Backend* backend, PolicyCache* policies,
                       std::string hostname, absl::Duration sweep_every)
    : outbound_(outbound),
      backend_(backend),
      policies_(policies),
      hostname_(std::move(hostname)),
      sweep_every_(sweep_every),
      keys_(backend) {}

AuditHolds::~AuditHolds() { Stop(); }

void AuditHolds::Start() {
  if (started_ || outbound_ == nullptr || outbound_->queue() == nullptr) return;
  started_ = true;
  sweeper_ = std::thread([this] {
    while (!stop_.WaitForNotificationWithTimeout(sweep_every_)) {
      if (outbound_->available()) (void)Sweep(absl::Now());
    }
  });
}

void AuditHolds::Stop() {
  if (!started_) return;
  started_ = false;
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (sweeper_.joinable()) sweeper_.join();
}

absl::StatusOr<std::string> AuditHolds::Hold(const Request& req) {
  if (outbound_ == nullptr || outbound_->queue() == nullptr)
    return absl::UnavailableError("no queue store configured");
  absl::Time now = absl::Now();
  // Signed now, like any submission: an approved message leaves as it came.
  absl::StatusOr<std::string> body = SignOutgoing(req.message, keys_, now);
  if (!body.ok()) {
    if (!absl::IsInvalidArgument(body.status()))
      return absl::UnavailableError(absl::StrCat("DKIM keys unavailable: ", body.status().message()));
    body = req.message;  // nothing DKIM can sign: as is
  }
  outbound::NewMessage m;
  m.tenant_id = req.tenant_id;
  m.envelope_from = req.envelope_from;
  m.recipients = req.recipients;
  m.body = *std::move(body);
  m.hold_reason = "audit";
  absl::StatusOr<std::string> id = outbound_->queue()->Enqueue(m, now);
  if (!id.ok()) return absl::UnavailableError(absl::StrCat("queue store: ", id.status().message()));

  HeldRecord r;
  relay::v1::HeldMessage& h = r.held;
  h.set_held_id(*id);
  h.set_queue_id(*id);
  h.set_tenant_id(req.tenant_id);
  h.set_kind(relay::v1::HOLD_KIND_AUDIT);
  h.set_state(relay::v1::HELD_STATE_HELD);
  h.mutable_sender()->set_address(req.envelope_from);
  for (const std::string& rc : req.recipients) h.add_recipients(rc);
  MessageFeatures f = ExtractFeatures(req.message);
  std::vector<std::string> subject = HeaderValues(req.message, "Subject");
  h.set_subject(f.subject.empty() && !subject.empty()
                    ? std::string(absl::StripAsciiWhitespace(subject.front())).substr(0, 998)
                    : f.subject.substr(0, 998));
  h.set_size_bytes(req.message.size());
  for (const std::string& n : f.attachment_names) h.add_attachment_names(n);
  for (const tenant::v1::AuditRule& rule : req.matched) {
    auto* mr = h.add_matched_rules();
    mr->set_rule_id(rule.rule_id());
    mr->set_rule_name(rule.name());
  }
  ToProto(now, h.mutable_held_at());
  ToProto(now + HoldExpiry(req.policy), h.mutable_expires_at());
  absl::Status st = outbound_->held()->Put(r);
  if (!st.ok()) {
    // Without its record nobody could decide: take the entry back out.
    relay::v1::DeleteQueueEntryRequest del;
    del.set_queue_id(*id);
    del.set_reason("audit record not written");
    (void)outbound_->queue()->DeleteQueueEntry(del, "", now);
    return absl::UnavailableError(absl::StrCat("queue store: ", st.message()));
  }
  std::vector<std::string> rule_ids;
  for (const auto& rule : req.matched) rule_ids.push_back(rule.rule_id());
  log::Info("message held for audit", {{"held_id", *id},
                                        {"tenant_id", req.tenant_id},
                                        {"rules", absl::StrJoin(rule_ids, ",")},
                                        {"policy_version", static_cast<long long>(req.policy.version())}});
  common::v1::Actor by;
  by.set_service("relayd");
  by.set_tenant_id(req.tenant_id);
  Record(h, by, "mail.held.hold",
         absl::StrCat("message from ", req.envelope_from, " held for audit (",
                      absl::StrJoin(rule_ids, ","), ")"),
         "");
  return *id;
}

absl::StatusOr<bool> AuditHolds::MayDecide(const std::string& tenant_id,
                                           const std::string& user_id) {
  ASSIGN_OR_RETURN(tenant::v1::AuditPolicy p, policies_->Audit(tenant_id));
  if (p.auditor_user_ids_size() == 0) return true;
  return std::find(p.auditor_user_ids().begin(), p.auditor_user_ids().end(), user_id) !=
         p.auditor_user_ids().end();
}

absl::StatusOr<relay::v1::HeldMessage> AuditHolds::Decide(const std::string& held_id, bool approve,
                                                          const std::string& reason,
                                                          const common::v1::Actor& by) {
  return Finish(held_id, approve, reason, by, false);
}

absl::StatusOr<relay::v1::HeldMessage> AuditHolds::Finish(const std::string& held_id, bool approve,
                                                          const std::string& reason,
                                                          const common::v1::Actor& by,
                                                          bool expired) {
  if (outbound_ == nullptr || outbound_->queue() == nullptr)
    return absl::UnavailableError("no queue store configured");
  ASSIGN_OR_RETURN(HeldRecord r, outbound_->held()->Get(held_id));
  if (r.held.kind() != relay::v1::HOLD_KIND_AUDIT) return rpc::NotFound("held message", held_id);
  if (r.held.state() != relay::v1::HELD_STATE_HELD)
    return rpc::Precondition("ALREADY_DECIDED", "this message was already decided");
  absl::Time now = absl::Now();
  if (!expired && now >= FromProto(r.held.expires_at()))
    return rpc::Precondition("EXPIRED", "the hold expired; the audit policy decides");
  absl::StatusOr<outbound::QueueEntry> e =
      outbound_->queue()->DecideHold(r.held.queue_id(), "audit", approve, "", now);
  if (!e.ok()) {
    if (absl::IsFailedPrecondition(e.status()) || absl::IsNotFound(e.status()))
      return rpc::Precondition("ALREADY_DECIDED", "this message was already decided");
    return e.status();
  }
  r.held.set_state(expired   ? relay::v1::HELD_STATE_EXPIRED
                   : approve ? relay::v1::HELD_STATE_APPROVED
                             : relay::v1::HELD_STATE_REJECTED);
  *r.held.mutable_decided_by() = by;
  ToProto(now, r.held.mutable_decided_at());
  r.held.set_decision_reason(reason);
  // The queue already carries the decision; a lost record write leaves a
  // HELD record whose entry is gone, which the next decision reports as
  // ALREADY_DECIDED: retried once here.
  absl::Status put = outbound_->held()->Put(r);
  if (!put.ok()) put = outbound_->held()->Put(r);
  if (!put.ok()) log::Warn("audit decision record not written", {{"held_id", held_id}, {"status", put}});
  std::string action = expired ? "mail.held.expire" : approve ? "mail.held.approve" : "mail.held.reject";
  Record(r.held, by, action,
         absl::StrCat("held message from ", r.held.sender().address(), " \"", r.held.subject(), "\" ",
                      approve ? "released" : "rejected", expired ? " on expiry" : ""),
         reason);
  log::Info("audit hold decided", {{"held_id", held_id},
                                   {"approved", approve},
                                   {"expired", expired},
                                   {"by", by.user_id().empty() ? by.service() : by.user_id()}});
  if (!approve) Notify(r.held, reason, expired);
  return r.held;
}

void AuditHolds::Notify(const relay::v1::HeldMessage& held, const std::string& reason,
                        bool expired) {
  if (held.sender().address().empty()) return;  // null sender: never answered
  absl::Time now = absl::Now();
  std::string why = expired ? "it was not approved before the hold expired"
                            : "it was rejected by an auditor of your organisation";
  std::string text = absl::StrCat(
      "From: Mail Delivery System <postmaster@", hostname_, ">\r\n",
      "To: <", held.sender().address(), ">\r\n",
      "Subject: Your message was not sent: ", Sanitize(held.subject(), 200), "\r\n",
      "Date: ", Rfc5322Date(now), "\r\n",
      "Message-ID: <audit-", held.held_id(), "@", hostname_, ">\r\n",
      "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n",
      "Content-Type: text/plain; charset=utf-8\r\n\r\n",
      "Your message \"", held.subject(), "\" to ", absl::StrJoin(held.recipients(), ", "),
      " was held for review under your organisation's mail audit policy and was not sent:\r\n",
      why, ".\r\n", reason.empty() ? "" : absl::StrCat("Reason: ", reason, "\r\n"));
  absl::Status sent = outbound_->Submit("", {held.sender().address()}, text);
  if (!sent.ok()) log::Warn("audit rejection notice not sent", {{"status", sent}});
}

void AuditHolds::Record(const relay::v1::HeldMessage& held, const common::v1::Actor& by,
                        const std::string& action, const std::string& summary,
                        const std::string& reason) {
  tenant::v1::AdminAuditEntry e;
  e.set_tenant_id(held.tenant_id());
  *e.mutable_actor() = by;
  e.set_action(action);
  e.set_target_kind("message");
  e.set_target_id(held.held_id());
  e.set_summary(summary);
  e.set_reason(reason);
  (*e.mutable_details())["kind"] = held.kind() == relay::v1::HOLD_KIND_AUDIT ? "audit" : "moderation";
  (*e.mutable_details())["sender"] = held.sender().address();
  absl::Status st = backend_->AppendAdminAuditLog(e);
  if (!st.ok()) log::Warn("admin audit log entry not written", {{"action", action}, {"status", st}});
}

int AuditHolds::Sweep(absl::Time now) {
  if (outbound_ == nullptr || outbound_->held() == nullptr) return 0;
  absl::StatusOr<std::vector<HeldRecord>> all = outbound_->held()->List();
  if (!all.ok()) return 0;
  int expired = 0;
  common::v1::Actor by;
  by.set_service("relayd");
  for (const HeldRecord& r : *all) {
    const relay::v1::HeldMessage& h = r.held;
    if (h.state() != relay::v1::HELD_STATE_HELD) {
      if (h.has_decided_at() && FromProto(h.decided_at()) + kKeepDecided < now)
        (void)outbound_->held()->Remove(h.held_id());
      continue;
    }
    if (!h.has_expires_at() || FromProto(h.expires_at()) > now) continue;
    by.set_tenant_id(h.tenant_id());
    if (h.kind() == relay::v1::HOLD_KIND_MODERATION) {
      // Moderation holds have no policy of their own: not approved in time
      // means not sent (the sender is told), then the record says EXPIRED.
      auto d = outbound_->DecideHeld(h.held_id(), false, "not approved by a moderator in time", by);
      if (!d.ok()) continue;
      HeldRecord done{*d, r.moderators};
      done.held.set_state(relay::v1::HELD_STATE_EXPIRED);
      (void)outbound_->held()->Put(done);
      Record(done.held, by, "mail.held.expire", "moderation hold expired: rejected", "");
      ++expired;
      continue;
    }
    absl::StatusOr<tenant::v1::AuditPolicy> p = policies_->Audit(h.tenant_id());
    if (!p.ok()) continue;  // tenantd down: the next sweep decides
    bool release = p->on_expiry() == tenant::v1::HELD_EXPIRY_ACTION_RELEASE;
    auto d = Finish(h.held_id(), release, release ? "hold expired: released per policy"
                                                  : "hold expired: rejected per policy",
                    by, true);
    if (d.ok()) ++expired;
  }
  return expired;
}

}  // namespace mailgrid::relay
