#include "services/relay/monitor_copies.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "libs/base/log.h"
#include "libs/mail/ascii.h"
#include "services/relay/headers.h"
#include "services/relay/local_delivery.h"

namespace mailgrid::relay {
namespace {

// A rule name in a header comment: printable ASCII and spaces; nothing
// that could end the comment or the field.
std::string CommentText(const std::string& in) {
  std::string out;
  for (char c : in.substr(0, 200)) {
    bool ok = c >= 0x20 && c < 0x7f && c != '(' && c != ')' && c != '\\' && c != ';' && c != '"';
    out.push_back(ok ? c : '?');
  }
  return out;
}

struct Match {
  tenant::v1::MonitoringRule rule;
  MonitoredParty party;
};

std::string MonitorField(const Match& m) {
  return absl::StrCat("X-Mailgrid-Monitor: rule=", Sanitize(m.rule.rule_id(), 64),
                      "; user=", Sanitize(m.party.address, 254),
                      "; direction=", m.party.direction == Direction::kIncoming ? "incoming" : "outgoing",
                      m.rule.name().empty() ? "" : absl::StrCat(" (", CommentText(m.rule.name()), ")"),
                      "\r\n");
}

void RecordCopy(Backend& backend, const std::string& tenant_id, const std::string& supervisor,
                const std::vector<Match>& matches, const std::string& delivery_id) {
  for (const Match& m : matches) {
    tenant::v1::AdminAuditEntry e;
    e.set_tenant_id(tenant_id);
    e.mutable_actor()->set_service("relayd");
    e.mutable_actor()->set_tenant_id(tenant_id);
    e.set_action("mail.monitor.copy");
    e.set_target_kind("message");
    e.set_target_id(delivery_id.substr(0, 16));
    e.set_summary(absl::StrCat(m.party.direction == Direction::kIncoming ? "incoming" : "outgoing",
                               " mail of ", m.party.address, " copied to ", supervisor));
    (*e.mutable_details())["rule_id"] = m.rule.rule_id();
    (*e.mutable_details())["user_id"] = m.party.user_id;
    (*e.mutable_details())["supervisor"] = supervisor;
    e.set_reason(m.rule.justification());
    absl::Status st = backend.AppendAdminAuditLog(e);
    if (!st.ok()) log::Warn("monitoring copy not recorded in the audit log", {{"status", st}});
  }
}

}  // namespace

absl::StatusOr<int> DeliverMonitorCopies(PolicyCache& policies, const std::string& tenant_id,
                                         const std::vector<MonitoredParty>& parties,
                                         const std::string& message,
                                         const std::string& delivery_id,
                                         const std::string& hostname, absl::Time at) {
  (void)hostname;
  if (tenant_id.empty() || parties.empty()) return 0;
  absl::StatusOr<tenant::v1::MonitoringPolicy> policy = policies.Monitoring(tenant_id);
  if (!policy.ok()) return absl::UnavailableError(absl::StrCat("monitoring policy: ", policy.status().message()));
  if (policy->rules_size() == 0) return 0;
  bool need_depts = MonitoringNeedsDepartments(*policy);
  // supervisor address (lower-cased) -> what to copy for
  std::map<std::string, std::vector<Match>> by_supervisor;
  for (const MonitoredParty& p : parties) {
    std::set<std::string> depts;
    if (need_depts) {
      absl::StatusOr<std::set<std::string>> d = policies.Departments(p.user_id);
      if (!d.ok()) return absl::UnavailableError(absl::StrCat("directory: ", d.status().message()));
      depts = *std::move(d);
    }
    for (tenant::v1::MonitoringRule& r : MatchMonitoring(*policy, p.user_id, depts, p.direction)) {
      std::string sup = mail::ascii::Lower(r.supervisor_address());
      if (sup == mail::ascii::Lower(p.address)) continue;  // never a copy of one's own mail
      by_supervisor[sup].push_back({std::move(r), p});
    }
  }
  int copies = 0;
  Backend& backend = *policies.backend();
  for (const auto& [supervisor, matches] : by_supervisor) {
    tenant::v1::SenderContext sender;  // null sender: a copy, not a post
    absl::StatusOr<ResolvedRecipient> r = ResolveRecipient(backend, supervisor, sender);
    if (!r.ok() && !absl::IsNotFound(r.status()) && !absl::IsInvalidArgument(r.status()))
      return absl::UnavailableError(absl::StrCat("directory: ", r.status().message()));
    if (!r.ok() || r->remote || r->response.recipients_size() == 0) {
      log::Warn("monitoring copy skipped: supervisor is not a mailbox here",
                {{"supervisor", supervisor}, {"tenant_id", tenant_id}});
      continue;
    }
    std::vector<MailboxTarget> targets;
    for (const auto& m : r->response.recipients()) targets.push_back({m.shard(), m.mailbox_id()});
    std::string fields;
    for (const Match& m : matches) fields += MonitorField(m);
    auto statuses = DeliverToMailboxes(backend, delivery_id + "/monitor", fields + message, at, targets);
    if (!statuses.ok()) return absl::UnavailableError(absl::StrCat("mail store: ", statuses.status().message()));
    bool stored = false;
    for (const auto& [mailbox, st] : *statuses) {
      switch (st) {
        case mailstore::v1::DELIVERY_STATUS_DELIVERED:
        case mailstore::v1::DELIVERY_STATUS_DUPLICATE:
          stored = true;
          break;
        case mailstore::v1::DELIVERY_STATUS_QUOTA_EXCEEDED:
        case mailstore::v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND:
          log::Warn("monitoring copy not stored", {{"supervisor", supervisor},
                                                    {"mailbox_id", mailbox},
                                                    {"status", static_cast<int>(st)}});
          break;
        default:
          return absl::UnavailableError("mail store temporary failure (monitoring copy)");
      }
    }
    if (!stored) continue;
    ++copies;
    RecordCopy(backend, tenant_id, supervisor, matches, delivery_id);
  }
  return copies;
}

}  // namespace mailgrid::relay
