#include "services/relay/mail_policy.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/mail/ascii.h"
#include "libs/mail/decode.h"
#include "libs/mail/mime.h"

namespace mailgrid::relay {
namespace {

bool IsWordChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

// Errors that mean "no policy here", not "we could not tell".
bool MeansNoPolicy(const absl::Status& s) {
  return absl::IsNotFound(s) || absl::IsUnimplemented(s) || absl::IsPermissionDenied(s) ||
         absl::IsFailedPrecondition(s);
}

bool AnyOf(const google::protobuf::RepeatedPtrField<std::string>& wanted,
           const std::set<std::string>& have) {
  for (const std::string& w : wanted)
    if (have.count(w) > 0) return true;
  return false;
}

}  // namespace

MessageFeatures ExtractFeatures(std::string_view message) {
  MessageFeatures f;
  f.size = message.size();
  absl::StatusOr<mail::Message> m = mail::ParseMessage(message);
  if (!m.ok()) return f;  // only the size condition can match
  mail::SearchText text = mail::ExtractSearchText(message, *m);
  f.subject = std::move(text.subject);
  f.text = std::move(text.body);
  for (size_t i = 0; i < m->parts.size(); ++i) {
    const mail::Part& p = m->parts[i];
    if (p.kind != mail::PartKind::kLeaf) continue;
    std::string name = p.content.filename();
    if (p.content.disposition == "attachment" || !name.empty()) {
      f.has_attachment = true;
      if (!name.empty() && f.attachment_names.size() < 100) f.attachment_names.push_back(name);
    }
  }
  return f;
}

bool ContainsKeyword(std::string_view text, std::string_view keyword) {
  if (keyword.empty()) return false;
  std::string hay = mail::ascii::Lower(text);
  std::string needle = mail::ascii::Lower(keyword);
  bool word_start = IsWordChar(needle.front());
  bool word_end = IsWordChar(needle.back());
  for (size_t pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) {
    if (word_start && pos > 0 && IsWordChar(hay[pos - 1])) continue;
    size_t after = pos + needle.size();
    if (word_end && after < hay.size() && IsWordChar(hay[after])) continue;
    return true;
  }
  return false;
}

bool AuditNeedsDepartments(const tenant::v1::AuditPolicy& policy) {
  for (const auto& r : policy.rules())
    if (r.enabled() && r.sender_department_ids_size() > 0) return true;
  return false;
}

std::vector<tenant::v1::AuditRule> MatchAudit(const tenant::v1::AuditPolicy& policy,
                                              const SenderFacts& sender,
                                              const MessageFeatures& message) {
  std::vector<tenant::v1::AuditRule> out;
  if (!policy.enabled()) return out;
  for (const tenant::v1::AuditRule& r : policy.rules()) {
    if (!r.enabled()) continue;
    if (r.sender_addresses_size() > 0) {
      bool hit = false;
      for (const std::string& a : r.sender_addresses()) {
        std::string want = mail::ascii::Lower(a);
        hit |= mail::ascii::Lower(sender.address) == want;
        for (const std::string& f : sender.from) hit |= mail::ascii::Lower(f) == want;
      }
      if (!hit) continue;
    }
    if (r.sender_department_ids_size() > 0 && !AnyOf(r.sender_department_ids(), sender.departments))
      continue;
    if (r.has_external_recipient() && !sender.has_external_recipient) continue;
    if (r.has_attachment() && !message.has_attachment) continue;
    if (r.keywords_size() > 0) {
      bool hit = false;
      for (const std::string& k : r.keywords())
        hit = hit || ContainsKeyword(message.subject, k) || ContainsKeyword(message.text, k);
      if (!hit) continue;
    }
    if (r.larger_than_bytes() > 0 && message.size <= static_cast<uint64_t>(r.larger_than_bytes()))
      continue;
    out.push_back(r);
  }
  return out;
}

bool MonitoringNeedsDepartments(const tenant::v1::MonitoringPolicy& policy) {
  for (const auto& r : policy.rules())
    if (r.enabled() && r.monitored_department_ids_size() > 0) return true;
  return false;
}

std::vector<tenant::v1::MonitoringRule> MatchMonitoring(const tenant::v1::MonitoringPolicy& policy,
                                                        const std::string& user_id,
                                                        const std::set<std::string>& departments,
                                                        Direction direction) {
  std::vector<tenant::v1::MonitoringRule> out;
  if (user_id.empty()) return out;
  for (const tenant::v1::MonitoringRule& r : policy.rules()) {
    if (!r.enabled() || r.supervisor_address().empty()) continue;
    tenant::v1::MonitorDirection d = r.direction();
    if (direction == Direction::kIncoming && d == tenant::v1::MONITOR_DIRECTION_OUTGOING) continue;
    if (direction == Direction::kOutgoing && d == tenant::v1::MONITOR_DIRECTION_INCOMING) continue;
    bool covered = std::find(r.monitored_user_ids().begin(), r.monitored_user_ids().end(),
                             user_id) != r.monitored_user_ids().end() ||
                   AnyOf(r.monitored_department_ids(), departments);
    if (covered) out.push_back(r);
  }
  return out;
}

// ---- PolicyCache ----------------------------------------------------------------

absl::StatusOr<tenant::v1::AuditPolicy> PolicyCache::Audit(const std::string& tenant_id) {
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = audit_.find(tenant_id);
    if (it != audit_.end() && it->second.expires > now) return it->second.value;
  }
  tenant::v1::AuditPolicy p;
  absl::StatusOr<tenant::v1::AuditPolicy> r = backend_->GetAuditPolicy(tenant_id);
  if (r.ok()) {
    p = *std::move(r);
  } else if (!MeansNoPolicy(r.status())) {
    return r.status();
  }
  absl::MutexLock lock(&mu_);
  if (audit_.size() > 10000) audit_.clear();
  audit_[tenant_id] = {p, now + ttl_};
  return p;
}

absl::StatusOr<tenant::v1::MonitoringPolicy> PolicyCache::Monitoring(const std::string& tenant_id) {
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = monitoring_.find(tenant_id);
    if (it != monitoring_.end() && it->second.expires > now) return it->second.value;
  }
  tenant::v1::MonitoringPolicy p;
  absl::StatusOr<tenant::v1::MonitoringPolicy> r = backend_->GetMonitoringPolicy(tenant_id);
  if (r.ok()) {
    p = *std::move(r);
  } else if (!MeansNoPolicy(r.status())) {
    return r.status();
  }
  absl::MutexLock lock(&mu_);
  if (monitoring_.size() > 10000) monitoring_.clear();
  monitoring_[tenant_id] = {p, now + ttl_};
  return p;
}

absl::StatusOr<std::set<std::string>> PolicyCache::Departments(const std::string& user_id) {
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = departments_.find(user_id);
    if (it != departments_.end() && it->second.expires > now) return it->second.value;
  }
  std::set<std::string> closure;
  absl::StatusOr<tenant::v1::User> user = backend_->GetUser(user_id);
  if (!user.ok() && !MeansNoPolicy(user.status())) return user.status();
  std::vector<std::string> todo;
  if (user.ok()) todo.assign(user->department_ids().begin(), user->department_ids().end());
  // Walk up to the top; the depth of a department tree is small, and the
  // parents are cached like the rest.
  while (!todo.empty() && closure.size() < 1000) {
    std::string d = todo.back();
    todo.pop_back();
    if (d.empty() || !closure.insert(d).second) continue;
    std::string parent;
    bool cached = false;
    {
      absl::MutexLock lock(&mu_);
      auto it = parents_.find(d);
      if (it != parents_.end() && it->second.expires > now) {
        parent = it->second.value;
        cached = true;
      }
    }
    if (!cached) {
      absl::StatusOr<tenant::v1::Department> dept = backend_->GetDepartment(d);
      if (!dept.ok()) {
        if (!MeansNoPolicy(dept.status())) return dept.status();
      } else {
        parent = dept->parent_id();
      }
      absl::MutexLock lock(&mu_);
      if (parents_.size() > 100000) parents_.clear();
      parents_[d] = {parent, now + ttl_};
    }
    if (!parent.empty()) todo.push_back(parent);
  }
  absl::MutexLock lock(&mu_);
  if (departments_.size() > 100000) departments_.clear();
  departments_[user_id] = {closure, now + ttl_};
  return closure;
}

}  // namespace mailgrid::relay
