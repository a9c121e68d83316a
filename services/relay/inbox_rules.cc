#include "services/relay/inbox_rules.h"

#include <algorithm>
#include <map>
#include <optional>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "services/relay/delivery_retry.h"

namespace mailgrid::relay {
namespace {

bool IsAtomChar(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  if (u <= 0x20 || u >= 0x7F) return false;
  return std::string_view("(){%*\"\\]").find(c) == std::string_view::npos;
}

// The stored copy starts with our Return-Path; a redirected copy must not
// carry it (RFC 5321 §4.4: added at final delivery only).
std::string WithoutReturnPath(const std::string& message) {
  if (!absl::StartsWithIgnoreCase(message, "Return-Path:")) return message;
  size_t end = message.find('\n');
  return end == std::string::npos ? message : message.substr(end + 1);
}

std::string RandomHex(size_t bytes) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < bytes; ++i) {
    unsigned v = static_cast<unsigned>(rng() & 0xFF);
    out.push_back(kHex[v >> 4]);
    out.push_back(kHex[v & 0xF]);
  }
  return out;
}

int CountReceived(const sieve::MessageContext& context) {
  int n = 0;
  for (const sieve::HeaderField& f : context.headers) {
    if (absl::EqualsIgnoreCase(f.name, "Received")) ++n;
  }
  return n;
}

}  // namespace

std::vector<std::string> StorableFlags(const std::vector<std::string>& flags) {
  static constexpr std::string_view kSystem[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                                 "\\Draft"};
  std::vector<std::string> out;
  for (const std::string& f : flags) {
    std::string keep;
    if (!f.empty() && f[0] == '\\') {
      for (std::string_view s : kSystem) {
        if (absl::EqualsIgnoreCase(f, std::string(s))) keep = std::string(s);
      }
    } else if (!f.empty() && f.size() <= 64 && std::all_of(f.begin(), f.end(), IsAtomChar)) {
      keep = f;
    }
    if (keep.empty()) {
      log::Info("inbox rules: flag not storable, dropped", {{"flag", f.substr(0, 80)}});
      continue;
    }
    bool dup = std::any_of(out.begin(), out.end(),
                           [&](const std::string& o) { return absl::EqualsIgnoreCase(o, keep); });
    if (!dup) out.push_back(std::move(keep));
  }
  return out;
}

InboxRules::InboxRules(Backend* backend, OutboundSubmitter* submitter, InboxRulesOptions options,
                       prometheus::Registry* registry)
    : backend_(backend), submitter_(submitter), options_(std::move(options)) {
  if (registry != nullptr) {
    actions_ = &prometheus::BuildCounter()
                    .Name("mailgrid_relay_inbox_rules_total")
                    .Help(
                        "Inbox rule (Sieve) outcomes per recipient copy: keep, fileinto, "
                        "discard, reject, redirect, vacation, vacation_suppressed, error")
                    .Register(*registry);
  }
}

void InboxRules::Count(const char* action) {
  if (actions_ != nullptr) actions_->Add({{"action", action}}).Increment();
}

std::shared_ptr<const sieve::Script> InboxRules::ScriptFor(const InboxRecipient& r) {
  if (r.user_id.empty() || r.sieve_version == 0) return nullptr;
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(r.user_id);
    if (it != cache_.end() && it->second.version >= r.sieve_version &&
        now - it->second.fetched < options_.cache_ttl) {
      return it->second.script;
    }
  }
  CacheEntry entry;
  entry.fetched = now;
  entry.version = r.sieve_version;
  absl::StatusOr<tenant::v1::SieveScript> got = backend_->GetSieveScript(r.user_id);
  if (got.ok()) {
    entry.version = std::max(entry.version, got->version());
    if (!got->script().empty()) {
      absl::StatusOr<sieve::Script> compiled = sieve::Compile(got->script());
      if (compiled.ok()) {
        entry.script = std::make_shared<const sieve::Script>(*std::move(compiled));
      } else {
        // tenantd validates on SetSieveScript; an older or newer grammar
        // can still disagree. The user's mail must keep flowing.
        log::Warn("inbox rules: stored script does not compile, ignored",
                  {{"user_id", r.user_id}, {"status", compiled.status()}});
        Count("error");
      }
    }
  } else if (got.status().code() != absl::StatusCode::kNotFound &&
             got.status().code() != absl::StatusCode::kUnimplemented) {
    log::Warn("inbox rules: GetSieveScript failed, delivering without rules",
              {{"user_id", r.user_id}, {"status", got.status()}});
    Count("error");
    // Not cached: the next message asks again.
    return nullptr;
  }
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= options_.cache_max_entries) cache_.clear();
  cache_[r.user_id] = entry;
  return entry.script;
}

// One recipient's copies and follow-ups.
struct InboxRules::Plan {
  std::vector<mailstore::v1::DeliveryTarget> copies;  // [0] in the main request
  std::vector<std::string> redirects;
  std::optional<sieve::Vacation> vacation;
  const InboxRecipient* recipient = nullptr;
  std::optional<std::string> reject;  // the only recipient refused the message
};

absl::StatusOr<mailstore::v1::DeliverBatchResponse> InboxRules::Deliver(
    uint32_t shard, const mailstore::v1::DeliverBatchRequest& request,
    const InboxMessage& message) {
  std::map<std::string, const InboxRecipient*> by_mailbox;
  for (const InboxRecipient& r : message.recipients) by_mailbox.emplace(r.mailbox_id, &r);

  // The message as Sieve sees it, parsed once for every recipient.
  std::optional<sieve::MessageContext> base;
  std::vector<Plan> plans(static_cast<size_t>(request.recipients_size()));
  std::vector<sieve::MessageContext> contexts(plans.size());
  bool any_rules = false;
  for (int i = 0; i < request.recipients_size(); ++i) {
    const mailstore::v1::DeliveryTarget& t = request.recipients(i);
    Plan& plan = plans[static_cast<size_t>(i)];
    auto found = by_mailbox.find(t.mailbox_id());
    std::shared_ptr<const sieve::Script> script;
    if (found != by_mailbox.end()) {
      plan.recipient = found->second;
      script = ScriptFor(*found->second);
    }
    if (!script) {
      plan.copies.push_back(t);
      continue;
    }
    any_rules = true;
    if (!base) base = sieve::MessageContextFromRaw(request.message(), message.envelope_from, "");
    sieve::MessageContext& context = contexts[static_cast<size_t>(i)];
    context = *base;
    context.envelope_to =
        plan.recipient->rcpt.empty() ? plan.recipient->address : plan.recipient->rcpt;
    sieve::Actions actions = sieve::Evaluate(*script, context);
    if (!actions.error.empty()) {
      log::Warn("inbox rules: runtime error, kept in INBOX",
                {{"user_id", plan.recipient->user_id}, {"error", actions.error}});
      Count("error");
    }
    bool can_send =
        submitter_ != nullptr && CountReceived(context) <= options_.max_received_for_redirect;
    for (const sieve::Action& a : actions.actions) {
      switch (a.kind) {
        case sieve::ActionKind::kKeep: {
          // A DMARC-quarantined copy stays in Junk on keep; fileinto wins.
          mailstore::v1::DeliveryTarget copy = t;
          for (const std::string& f : StorableFlags(a.flags)) copy.add_flags(f);
          plan.copies.push_back(std::move(copy));
          Count("keep");
          break;
        }
        case sieve::ActionKind::kFileInto: {
          mailstore::v1::DeliveryTarget copy = t;
          copy.mutable_folder()->set_name(a.folder);
          copy.set_create_folder(options_.create_folders);
          for (const std::string& f : StorableFlags(a.flags)) copy.add_flags(f);
          plan.copies.push_back(std::move(copy));
          Count("fileinto");
          break;
        }
        case sieve::ActionKind::kDiscard:
          Count("discard");
          break;
        case sieve::ActionKind::kRedirect:
          if (can_send) {
            plan.redirects.push_back(a.address);
          } else {
            // Nowhere to send it (no outbound path, or a forwarding loop):
            // the user keeps it rather than losing it.
            log::Warn("inbox rules: redirect not possible, kept",
                      {{"user_id", plan.recipient->user_id}});
            plan.copies.push_back(t);
          }
          break;
        case sieve::ActionKind::kReject:
          if (message.recipients.size() == 1 && message.other_recipients == 0 &&
              request.recipients_size() == 1) {
            plan.reject = a.reason;
          } else {
            // RFC 5429 §2.1.1 lets us refuse only in the SMTP dialogue; the
            // other recipients want the message, so this one keeps it.
            mailstore::v1::DeliveryTarget copy = t;
            copy.mutable_prepend_headers()->append(
                "X-Mailgrid-Sieve: reject not applied (the message had other recipients)\r\n");
            plan.copies.push_back(std::move(copy));
          }
          Count("reject");
          break;
        case sieve::ActionKind::kVacation:
          if (submitter_ != nullptr) plan.vacation = a.vacation;
          break;
      }
    }
    if (plan.reject) {
      // It becomes an SMTP reply line: printable ASCII only.
      std::string reason;
      for (char c : *plan.reject) {
        unsigned char u = static_cast<unsigned char>(c);
        reason.push_back(u < 0x20 || u == 0x7F ? ' ' : u > 0x7F ? '?' : c);
      }
      absl::RemoveExtraAsciiWhitespace(&reason);
      if (reason.empty()) reason = "Message rejected by the recipient's rules";
      return absl::PermissionDeniedError(reason.substr(0, 400));
    }
  }
  if (!any_rules) return DeliverWithRetry(*backend_, shard, request);

  // The first copy of every recipient in one request with the caller's
  // delivery id; a second copy of the same mailbox needs its own id
  // (mailstored deduplicates per delivery id and mailbox).
  std::vector<mailstore::v1::DeliverBatchRequest> requests;
  std::vector<std::vector<int>> origin;  // request → recipient index per target
  for (size_t i = 0; i < plans.size(); ++i) {
    for (size_t k = 0; k < plans[i].copies.size(); ++k) {
      if (requests.size() <= k) {
        mailstore::v1::DeliverBatchRequest r;
        r.set_delivery_id(k == 0 ? request.delivery_id()
                                 : absl::StrCat(request.delivery_id(), "/sieve", k));
        *r.mutable_internal_date() = request.internal_date();
        requests.push_back(std::move(r));
        origin.emplace_back();
      }
      *requests[k].add_recipients() = plans[i].copies[k];
      origin[k].push_back(static_cast<int>(i));
    }
  }
  mailstore::v1::DeliverBatchResponse out;
  for (size_t i = 0; i < plans.size(); ++i) {
    mailstore::v1::DeliveryResult* res = out.add_results();
    res->set_mailbox_id(request.recipients(static_cast<int>(i)).mailbox_id());
    // No copy at all (discard, redirect): nothing to store, done.
    res->set_status(mailstore::v1::DELIVERY_STATUS_DELIVERED);
    res->set_detail("no copy kept (inbox rules)");
  }
  std::vector<bool> fresh(plans.size(), true);  // not a DUPLICATE: follow-ups not sent yet
  for (size_t k = 0; k < requests.size(); ++k) {
    if (requests[k].recipients_size() == 0) continue;
    requests[k].set_message(request.message());
    ASSIGN_OR_RETURN(mailstore::v1::DeliverBatchResponse got,
                     DeliverWithRetry(*backend_, shard, requests[k]));
    for (int j = 0; j < got.results_size() && j < static_cast<int>(origin[k].size()); ++j) {
      size_t i = static_cast<size_t>(origin[k][static_cast<size_t>(j)]);
      const mailstore::v1::DeliveryResult& g = got.results(j);
      mailstore::v1::DeliveryResult* res = out.mutable_results(static_cast<int>(i));
      bool ok = g.status() == mailstore::v1::DELIVERY_STATUS_DELIVERED ||
                g.status() == mailstore::v1::DELIVERY_STATUS_DUPLICATE;
      if (k == 0 || !ok) *res = g;  // a failed extra copy decides the outcome
      if (k == 0) out.set_body_sha256(got.body_sha256());
      if (k == 0 && g.status() == mailstore::v1::DELIVERY_STATUS_DUPLICATE) fresh[i] = false;
    }
    if (got.results_size() != requests[k].recipients_size()) {
      return absl::UnavailableError("mailstored answered for fewer recipients than asked");
    }
  }

  // Follow-ups, only for copies committed now (a retried message whose
  // copy was a DUPLICATE has had them already).
  for (size_t i = 0; i < plans.size(); ++i) {
    const Plan& plan = plans[i];
    if (!fresh[i] || plan.recipient == nullptr) continue;
    const mailstore::v1::DeliveryResult& res = out.results(static_cast<int>(i));
    if (res.status() != mailstore::v1::DELIVERY_STATUS_DELIVERED) continue;
    std::string failed;
    for (const std::string& address : plan.redirects) {
      absl::Status st = SendRedirect(request.delivery_id(), *plan.recipient, message.envelope_from,
                                     request.message(), address);
      if (st.code() == absl::StatusCode::kUnavailable) return st;
      if (!st.ok()) failed = address;
    }
    if (!failed.empty() && plan.copies.empty()) {
      // The redirect can never succeed (no such local address, a bad
      // address): the user keeps the message rather than nobody getting it.
      mailstore::v1::DeliverBatchRequest fallback;
      fallback.set_delivery_id(absl::StrCat(request.delivery_id(), "/sieve-fallback"));
      fallback.set_message(request.message());
      *fallback.mutable_internal_date() = request.internal_date();
      mailstore::v1::DeliveryTarget* t = fallback.add_recipients();
      *t = request.recipients(static_cast<int>(i));
      t->mutable_prepend_headers()->append(
          absl::StrCat("X-Mailgrid-Sieve: redirect to ", failed, " failed, kept\r\n"));
      ASSIGN_OR_RETURN(mailstore::v1::DeliverBatchResponse kept,
                       DeliverWithRetry(*backend_, shard, fallback));
      if (kept.results_size() != 1) return absl::UnavailableError("fallback copy not stored");
      *out.mutable_results(static_cast<int>(i)) = kept.results(0);
    }
    if (plan.vacation) SendVacation(*plan.recipient, contexts[i], *plan.vacation);
  }
  return out;
}

absl::Status InboxRules::SendRedirect(const std::string& delivery_id, const InboxRecipient& r,
                                      const std::string& envelope_from, const std::string& message,
                                      const std::string& address) {
  // Once per delivery: a client retrying after a 451 must not make the
  // target get it twice. Redis down: send anyway (a duplicate beats a loss).
  sieve::Vacation once;  // only its handle: the key's hash input
  once.handle = delivery_id;
  std::string key = absl::StrCat("relay:sieve:redirect:",
                                 sieve::VacationMemoryKey(once, r.mailbox_id + "/" + address));
  absl::StatusOr<bool> first = backend_->SetOnce(key, absl::Hours(24 * 7));
  if (first.ok() && !*first) return absl::OkStatus();
  absl::Status st = submitter_->Submit(envelope_from, {address}, WithoutReturnPath(message));
  if (!st.ok()) {
    log::Warn("inbox rules: redirect failed", {{"user_id", r.user_id}, {"status", st}});
    // Not remembered: a retried message tries again (or keeps again,
    // deduplicated by the fallback copy's delivery id).
    if (first.ok()) backend_->Forget(key);
    if (st.code() != absl::StatusCode::kUnavailable &&
        st.code() != absl::StatusCode::kDeadlineExceeded) {
      Count("error");
      return st;  // permanent: the caller keeps the message instead
    }
    return absl::UnavailableError(absl::StrCat("redirect failed: ", st.message()));
  }
  Count("redirect");
  return absl::OkStatus();
}

void InboxRules::SendVacation(const InboxRecipient& r, const sieve::MessageContext& context,
                              const sieve::Vacation& vacation) {
  std::string why;
  if (!sieve::ShouldSendVacation(context, vacation, {r.address, r.rcpt}, &why)) {
    log::Info("inbox rules: no vacation reply", {{"user_id", r.user_id}, {"why", why}});
    Count("vacation_suppressed");
    return;
  }
  std::string key = absl::StrCat("relay:sieve:vacation:", r.user_id, ":",
                                 sieve::VacationMemoryKey(vacation, context.envelope_from));
  absl::StatusOr<bool> first = backend_->SetOnce(key, absl::Hours(24) * vacation.days);
  if (!first.ok()) {
    // Without the memory every message would be answered: none is.
    log::Warn("inbox rules: no vacation memory (Redis), reply not sent",
              {{"user_id", r.user_id}, {"status", first.status()}});
    Count("vacation_suppressed");
    return;
  }
  if (!*first) {
    Count("vacation_suppressed");
    return;
  }
  absl::Time now = absl::Now();
  std::string date = absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", now, absl::UTCTimeZone());
  std::string id = absl::StrCat("<vacation.", RandomHex(12), "@", options_.hostname, ">");
  std::string reply = sieve::BuildVacationReply(context, vacation, r.address, date, id);
  std::string to = context.envelope_from;
  absl::Status st = submitter_->Submit("", {to}, std::move(reply));
  if (!st.ok()) {
    backend_->Forget(key);
    log::Warn("inbox rules: vacation reply not sent", {{"user_id", r.user_id}, {"status", st}});
    Count("error");
    return;
  }
  Count("vacation");
}

}  // namespace mailgrid::relay
