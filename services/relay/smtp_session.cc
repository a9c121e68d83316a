#include "services/relay/smtp_session.h"

#include <algorithm>
#include <map>
#include <set>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/mailauth/auth_results.h"
#include "libs/metrics/metrics.h"
#include "libs/rpc/errors.h"
#include "libs/outbound/dsn.h"
#include "services/relay/audit_holds.h"
#include "services/relay/delivery_retry.h"
#include "services/relay/headers.h"
#include "services/relay/inbox_rules.h"
#include "services/relay/mail_policy.h"
#include "services/relay/monitor_copies.h"
#include "services/relay/outbound.h"
#include "services/relay/rcpt_cache.h"

namespace mailgrid::relay {

using netserver::Output;

std::unique_ptr<RelayMetrics> RelayMetrics::Create(prometheus::Registry& r) {
  auto m = std::make_unique<RelayMetrics>();
  m->replies = &prometheus::BuildCounter()
                    .Name("mailgrid_relay_smtp_replies_total")
                    .Help("SMTP replies sent, by listener and reply class (2xx, 3xx, 4xx, 5xx)")
                    .Register(r);
  m->messages = &prometheus::BuildCounter()
                     .Name("mailgrid_relay_messages_total")
                     .Help("Messages after DATA by result (accepted, or the refusal reason)")
                     .Register(r);
  m->rcpts = &prometheus::BuildCounter()
                  .Name("mailgrid_relay_rcpt_total")
                  .Help("RCPT decisions by result")
                  .Register(r);
  m->bytes_accepted = &prometheus::BuildCounter()
                           .Name("mailgrid_relay_accepted_bytes_total")
                           .Help("Bytes of accepted messages")
                           .Register(r)
                           .Add({});
  m->delivery_seconds = &prometheus::BuildHistogram()
                             .Name("mailgrid_relay_delivery_seconds")
                             .Help("Time from end of DATA to every copy committed (or failed)")
                             .Register(r)
                             .Add({}, metrics::LatencyBuckets());
  m->inbound_auth = &prometheus::BuildCounter()
                         .Name("mailgrid_relay_inbound_auth_total")
                         .Help("SPF/DKIM/DMARC results of MX messages, by method and result "
                               "(dkim: one per signature; dmarc also counts dispositions)")
                         .Register(r);
  auto& stages = prometheus::BuildHistogram()
                     .Name("mailgrid_relay_stage_seconds")
                     .Help("Time per message spent in each stage of relayd's path (hand-offs "
                           "between threads, peer calls, checks)")
                     .Register(r);
  static const char* const kNames[RelayMetrics::kStageCount] = {
      "worker_wait", "strand_wait", "resolve", "sender_check", "inbound_auth",
      "policy",      "store",       "monitor", "queue"};
  for (int i = 0; i < RelayMetrics::kStageCount; ++i)
    m->stages[i] = &stages.Add({{"stage", kNames[i]}}, metrics::LatencyBuckets());
  return m;
}

namespace {

void CountInboundAuth(RelayMetrics* m, const mailauth::InboundResult& r) {
  if (m == nullptr) return;
  auto add = [m](const char* method, std::string_view result) {
    m->inbound_auth->Add({{"method", method}, {"result", std::string(result)}}).Increment();
  };
  add("spf", mailauth::SpfResultName(r.verdicts.spf.result));
  if (r.verdicts.dkim.empty()) add("dkim", "none");
  for (const mailauth::DkimVerdict& d : r.verdicts.dkim)
    add("dkim", mailauth::DkimResultName(d.result));
  add("dmarc", mailauth::DmarcResultName(r.verdicts.dmarc.result));
  if (r.disposition != mailauth::DmarcPolicy::kNone)
    add("dmarc_disposition", mailauth::DmarcPolicyName(r.disposition));
}

// The audit rules a submission matches (empty: deliver as usual), with
// the policy that applied. UNAVAILABLE when tenantd could not tell.
struct AuditMatch {
  tenant::v1::AuditPolicy policy;
  std::vector<tenant::v1::AuditRule> rules;
};
absl::StatusOr<AuditMatch> MatchSubmission(PolicyCache& policies, const std::string& tenant_id,
                                           const std::string& user_id, const std::string& address,
                                           const std::vector<std::string>& from, bool external,
                                           const std::string& message) {
  AuditMatch m;
  absl::StatusOr<tenant::v1::AuditPolicy> p = policies.Audit(tenant_id);
  if (!p.ok()) return absl::UnavailableError(absl::StrCat("audit policy: ", p.status().message()));
  m.policy = *std::move(p);
  if (!m.policy.enabled() || m.policy.rules_size() == 0) return m;
  SenderFacts sender;
  sender.address = address;
  sender.from = from;
  sender.has_external_recipient = external;
  if (AuditNeedsDepartments(m.policy)) {
    absl::StatusOr<std::set<std::string>> d = policies.Departments(user_id);
    if (!d.ok()) return absl::UnavailableError(absl::StrCat("directory: ", d.status().message()));
    sender.departments = *std::move(d);
  }
  m.rules = MatchAudit(m.policy, sender, ExtractFeatures(message));
  return m;
}

// RFC 3464 failure report for the local recipients whose copy could not be
// stored although others' were (issue 8): the message is accepted (250)
// and the sender learns about these from the DSN, as if we had bounced.
std::string PartialFailureDsn(const Options& o, const std::string& from,
                              const std::string& queue_id, absl::Time arrival,
                              const std::vector<outbound::DsnRecipient>& failed,
                              const std::string& stored) {
  outbound::DsnInput in;
  in.kind = outbound::DsnKind::kFailure;
  in.reporting_mta = o.hostname;
  in.envelope_from = from;
  in.queue_id = queue_id;
  in.arrival = arrival;
  in.now = absl::Now();
  in.recipients = failed;
  in.original_message = stored;
  in.boundary = absl::StrCat(queue_id, "/", absl::ToUnixMicros(in.now), "/", o.hostname);
  return outbound::BuildDsn(in);
}

// "type;address" for an RCPT's ORCPT parameter, one header line (the
// decoded xtext may hold anything: controls become '?'), or "".
std::string OriginalRecipient(const smtp::Recipient& r) {
  if (!r.params.orcpt_address || r.params.orcpt_address->empty()) return "";
  std::string type = r.params.orcpt_type.value_or("rfc822");
  return absl::StrCat(Sanitize(type, 32), ";", Sanitize(*r.params.orcpt_address, 500));
}

}  // namespace

smtp::SessionConfig MakeSmtpConfig(ListenerKind kind, const Options& o, bool tls_available) {
  smtp::SessionConfig c = kind == ListenerKind::kMx ? smtp::SessionConfig::Mx(o.hostname)
                                                    : smtp::SessionConfig::Submission(o.hostname);
  c.starttls_offered = tls_available && kind != ListenerKind::kSubmissionTls;
  c.tls_active = kind == ListenerKind::kSubmissionTls;
  c.max_message_size = static_cast<uint64_t>(o.max_message_size);
  c.max_recipients = static_cast<size_t>(o.max_recipients);
  if (kind != ListenerKind::kMx) {
    c.auth_mechanisms = {"PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER"};
  }
  return c;
}

RelaySession::RelaySession(std::shared_ptr<netserver::Connection> conn, const RelayContext* ctx,
                           ListenerKind kind, smtp::SessionConfig config)
    : conn_(conn), info_(conn->info()), ctx_(ctx), smtp_(std::move(config)) {}

Output RelaySession::OnConnect() {
  if (auto c = conn_.lock()) {
    c->SetIdleTimeout(ctx_->options->smtp_timeout);
    tls_ = c->tls();
  }
  return Drive();
}

Output RelaySession::OnBytes(std::string_view data) {
  smtp_.Feed(data);
  return Drive();
}

Output RelaySession::OnTlsEstablished(const netserver::TlsInfo& info) {
  tls_ = info;
  return Drive();
}

Output RelaySession::OnTimeout() {
  smtp_.Timeout();
  CountReplies();
  return Output::Close(smtp_.TakeOutput());
}

Output RelaySession::OnShutdown() {
  if (waiting_) {
    // A decision (maybe a delivery) is in flight: answer it, then 421.
    draining_ = true;
    return Output::Pause();
  }
  smtp_.Shutdown();
  CountReplies();
  return Output::Close(smtp_.TakeOutput());
}

void RelaySession::OnClose(std::string_view reason) {
  CountReplies();
  const smtp::SessionStats& s = smtp_.stats();
  log::Debug("smtp connection closed",
             {{"listener", info_.listener},
              {"ip", info_.remote_ip},
              {"reason", reason},
              {"commands", static_cast<unsigned long long>(s.commands)},
              {"messages", static_cast<unsigned long long>(s.messages)},
              {"discarded_after_starttls",
               static_cast<unsigned long long>(s.discarded_after_starttls)},
              {"bare_newline", s.bare_newline}});
}

void RelaySession::CountReplies() {
  if (ctx_->metrics == nullptr) return;
  const smtp::SessionStats& s = smtp_.stats();
  // Each class's series is looked up once per session (Family::Add builds
  // a label map and takes the family's lock), not at every reply.
  auto add = [&](int i, const char* cls, uint64_t now, uint64_t& before) {
    if (now > before) {
      if (reply_counters_[i] == nullptr)
        reply_counters_[i] =
            &ctx_->metrics->replies->Add({{"listener", info_.listener}, {"class", cls}});
      reply_counters_[i]->Increment(static_cast<double>(now - before));
      before = now;
    }
  };
  add(0, "2xx", s.replies_2xx, counted_.replies_2xx);
  add(1, "3xx", s.replies_3xx, counted_.replies_3xx);
  add(2, "4xx", s.replies_4xx, counted_.replies_4xx);
  add(3, "5xx", s.replies_5xx, counted_.replies_5xx);
}

void RelaySession::Reply(bool accept, int code, std::string_view enhanced, std::string_view text) {
  smtp::Reply r = smtp::Reply::Make(code, enhanced, text);
  absl::Status s = accept ? smtp_.Accept(r) : smtp_.Reject(r);
  if (!s.ok()) log::Error("smtp decision refused by the engine", {{"status", s}});
}

void RelaySession::Async(std::function<std::function<void()>()> work) {
  waiting_ = true;
  std::weak_ptr<netserver::Connection> weak = conn_;
  // `work` runs on a worker and must not touch the session; the closure it
  // returns runs on the strand, only while the connection (and so this
  // session) is alive.
  RelayMetrics* m = ctx_->metrics;
  absl::Time queued = absl::Now();
  InlineGate* gate = ctx_->inline_calls;
  if (gate != nullptr && gate->TryEnter()) {
    // This loop thread makes the call itself, right after the replies so
    // far are written (the Post runs once this handler has returned): no
    // hand-off to a worker and none back to the strand. The gate keeps
    // other loop threads free; a connection closed meanwhile drops the
    // function, and the guard gives the place back.
    std::shared_ptr<void> place(nullptr, [gate](void*) { gate->Leave(); });
    // Handed to netserver by Drive as the Output's `then` (no Post: that
    // wakes the other loop thread).
    inline_call_ = [this, m, queued, place, work = std::move(work)]() mutable {
      if (m) m->Observe(RelayMetrics::kWorkerWait, absl::Now() - queued);
      std::function<void()> finish = work();
      place.reset();
      if (m) m->Observe(RelayMetrics::kStrandWait, absl::ZeroDuration());
      waiting_ = false;
      finish();
      return Drive();
    };
    return;
  }
  ctx_->workers->Run([this, weak, m, queued, work = std::move(work)] {
    if (m) m->Observe(RelayMetrics::kWorkerWait, absl::Now() - queued);
    std::function<void()> finish = work();
    if (auto c = weak.lock()) {
      absl::Time answered = absl::Now();
      c->Post([this, m, answered, finish = std::move(finish)] {
        if (m) m->Observe(RelayMetrics::kStrandWait, absl::Now() - answered);
        waiting_ = false;
        finish();
        return Drive();
      });
    }
  });
}

Output RelaySession::Drive() {
  Output out;
  for (;;) {
    if (waiting_) {
      out.bytes += smtp_.TakeOutput();
      out.pause_reading = true;
      out.then = std::exchange(inline_call_, nullptr);  // Async's inline call, if any
      CountReplies();
      return out;
    }
    smtp::Event ev = smtp_.Next();
    if (std::holds_alternative<smtp::event::NeedInput>(ev)) {
      if (draining_) {
        smtp_.Shutdown();
        continue;
      }
      out.bytes += smtp_.TakeOutput();
      CountReplies();
      return out;
    }
    if (std::holds_alternative<smtp::event::Closed>(ev)) {
      out.bytes += smtp_.TakeOutput();
      out.close = true;
      CountReplies();
      return out;
    }
    if (std::holds_alternative<smtp::event::AwaitingDecision>(ev)) {
      // A decision left unanswered is a bug here; never hang the client.
      log::Error("smtp decision left pending", {{"listener", info_.listener}});
      Reply(false, 451, "4.3.0", "Error: internal error");
      continue;
    }
    if (std::holds_alternative<smtp::event::Greeting>(ev) ||
        std::holds_alternative<smtp::event::Helo>(ev) ||
        std::holds_alternative<smtp::event::DataBegin>(ev) ||
        std::holds_alternative<smtp::event::Vrfy>(ev)) {
      (void)smtp_.Accept();
    } else if (auto* m = std::get_if<smtp::event::MailFrom>(&ev)) {
      OnMail(*m);
    } else if (auto* r = std::get_if<smtp::event::RcptTo>(&ev)) {
      OnRcpt(*r);
    } else if (auto* msg = std::get_if<smtp::event::MessageComplete>(&ev)) {
      OnMessage(*msg);
    } else if (std::holds_alternative<smtp::event::StartTls>(ev)) {
      (void)smtp_.Accept();  // "220 Ready"; the engine dropped buffered input
      targets_.clear();
      target_ids_.clear();
      remote_.clear();
      moderated_.clear();
      user_.reset();
      senders_ok_.clear();
      rate_room_.reset();
      out.bytes += smtp_.TakeOutput();
      out.start_tls = true;
      CountReplies();
      return out;
    } else if (auto* a = std::get_if<smtp::event::Auth>(&ev)) {
      OnAuth(*a);
    } else if (auto* ar = std::get_if<smtp::event::AuthResponse>(&ev)) {
      OnAuthResponse(*ar);
    } else if (std::holds_alternative<smtp::event::AuthCancelled>(ev)) {
      sasl_ = Sasl{};
    }
    // Rset, Noop, Help, Quit: the engine has answered.
  }
}

// ---- MAIL ------------------------------------------------------------------

void RelaySession::OnMail(const smtp::event::MailFrom& e) {
  targets_.clear();
  target_ids_.clear();
  remote_.clear();
  moderated_.clear();
  prefetched_.clear();
  mail_from_ = e.reverse_path.null ? "" : e.reverse_path.Mailbox();
  if (!user_) {
    // Port 25: anyone may send to our users (SPF/DMARC verdicts are recorded
    // at DATA). Submission cannot get here without AUTH (engine).
    (void)smtp_.Accept();
    return;
  }
  std::string from = mail_from_;
  bool sender_known = from.empty() || SenderAllowed(from);
  // The hourly rate limit: counted here when this session is near a limit
  // (or has not counted yet), else at DATA on the delivery's worker
  // (count_at_data_), which saves this command's two thread hand-offs. The
  // count stays exact either way; only the reply that refuses moves.
  bool count_here = ctx_->backend->CountsSubmissions() && !FarFromRateLimit();
  count_at_data_ = ctx_->backend->CountsSubmissions() && !count_here;
  if (!count_here && sender_known) {
    // Nothing to ask anyone: this session's user was allowed this sender
    // a moment ago (a client sending many messages in one session).
    (void)smtp_.Accept();
    return;
  }
  Principal u = *user_;
  Backend* b = ctx_->backend;
  RelayMetrics* metrics = ctx_->metrics;
  Async([this, b, u, from, metrics, sender_known, count_here]() -> std::function<void()> {
    absl::Time start = absl::Now();
    if (!from.empty() && !sender_known) {
      absl::StatusOr<bool> ok = b->CanSendAs(u.user_id, from);
      if (!ok.ok() && ok.status().code() != absl::StatusCode::kNotFound) {
        log::Warn("CanSendAs failed", {{"status", ok.status()}});
        return [this] { Reply(false, 451, "4.3.0", "Temporary failure checking the sender"); };
      }
      if (!ok.ok() || !*ok) {
        return [this] {
          Reply(false, 553, "5.7.1",
                absl::StrCat("Sender address rejected: not owned by the authenticated user"));
        };
      }
    }
    absl::StatusOr<int64_t> room = int64_t{0};
    if (count_here) room = b->CountSubmissionRoom(u.tenant_id, u.user_id);
    if (metrics) metrics->Observe(RelayMetrics::kSenderCheck, absl::Now() - start);
    if (absl::IsResourceExhausted(room.status())) {
      return [this] {
        rate_room_.reset();
        Reply(false, 451, "4.7.1", "Error: sending rate limit exceeded, try again later");
      };
    }
    return [this, from, count_here, room = room.value_or(0)] {
      if (count_here) NoteRateRoom(room);
      if (!from.empty()) RememberSender(from);
      (void)smtp_.Accept();
    };
  });
}

// How close this session's user is to an hourly submission limit, as of
// its last count. Other sessions of the same user or tenant use up the
// room meanwhile, so "far" asks for a wide margin and a recent count; a
// session that has not counted yet (or was refused) counts at MAIL.
namespace {
constexpr int64_t kRateMargin = 50;
constexpr absl::Duration kRateRoomTtl = absl::Seconds(10);
}  // namespace

bool RelaySession::FarFromRateLimit() const {
  return rate_room_.has_value() && rate_room_->first > kRateMargin &&
         absl::Now() - rate_room_->second < kRateRoomTtl;
}

void RelaySession::NoteRateRoom(int64_t room) { rate_room_.emplace(room, absl::Now()); }

// The session's sender authorizations: an address CanSendAs allowed for
// this session's user, trusted for kSenderTtl within the session (like
// the AUTH itself, which holds for the session). Reset by AUTH and
// STARTTLS (user_ changes).
namespace {
constexpr absl::Duration kSenderTtl = absl::Seconds(60);
}  // namespace

bool RelaySession::SenderAllowed(const std::string& address) const {
  auto it = senders_ok_.find(absl::AsciiStrToLower(address));
  return it != senders_ok_.end() && absl::Now() - it->second < kSenderTtl;
}

void RelaySession::RememberSender(const std::string& address) {
  if (senders_ok_.size() >= 16) senders_ok_.clear();
  senders_ok_[absl::AsciiStrToLower(address)] = absl::Now();
}

// ---- RCPT ------------------------------------------------------------------

void RelaySession::OnRcpt(const smtp::event::RcptTo& e) {
  const smtp::Path& p = e.forward_path;
  auto count = [this](const char* result) {
    if (ctx_->metrics) ctx_->metrics->rcpts->Add({{"result", result}}).Increment();
  };
  if (!p.source_route.empty() || p.HasRoutingCharacters()) {
    // Source routes, user%host@us, host!user@us, "user@host"@us: classic
    // open-relay probes. We deliver only to plain local parts.
    count("routing_refused");
    Reply(false, 550, "5.7.1", "Relay access denied");
    return;
  }
  tenant::v1::ResolveRequest req;
  req.set_address(p.Mailbox());
  if (p.postmaster) {  // RFC 5321 4.5.1: <Postmaster> must be accepted
    req.set_address(ctx_->options->postmaster.empty()
                        ? absl::StrCat("postmaster@", ctx_->options->hostname)
                        : ctx_->options->postmaster);
  }
  req.mutable_sender()->set_envelope_from(mail_from_);
  if (user_) {
    req.mutable_sender()->set_authenticated(true);
    req.mutable_sender()->set_tenant_id(user_->tenant_id);
    req.mutable_sender()->set_user_id(user_->user_id);
  }
  req.set_max_recipients(10000);
  Backend* b = ctx_->backend;
  bool authenticated = user_.has_value();
  RcptCache* cache = ctx_->rcpt_cache;
  std::string key = RcptCache::Key(req), domain_key;
  if (auto it = prefetched_.find(key); it != prefetched_.end()) {
    // Asked with an earlier RCPT of this pipelined batch (one ResolveMany).
    RcptCache::Answer answer = std::move(it->second);
    prefetched_.erase(it);
    DecideRcpt(req.address(), authenticated, std::move(answer))();
    return;
  }
  if (cache != nullptr) {
    absl::Time now = absl::Now();
    // A foreign domain first (one answer for all its addresses), then the
    // whole request.
    domain_key = RcptCache::DomainKey(req.address());
    std::shared_ptr<const RcptCache::Answer> hit;
    if (!domain_key.empty()) hit = cache->Get(domain_key, now);
    if (hit == nullptr) hit = cache->Get(key, now);
    if (hit != nullptr) {
      // Answered on the strand: no worker hand-off, no peer call.
      DecideRcpt(req.address(), authenticated, *hit)();
      return;
    }
  }
  RelayMetrics* metrics = ctx_->metrics;
  std::vector<Lookup> ahead = PipelinedLookups(req, key);
  Async([this, b, req, authenticated, metrics, cache, key, domain_key,
         ahead = std::move(ahead)]() -> std::function<void()> {
    absl::Time start = absl::Now();
    auto answers = std::make_shared<std::map<std::string, RcptCache::Answer>>();
    RcptCache::Answer r = ResolveWithAhead(*b, req, ahead, answers.get());
    if (metrics) metrics->Observe(RelayMetrics::kResolve, absl::Now() - start);
    if (cache != nullptr) {
      Keep(*cache, {req, key, domain_key}, r);
      for (const Lookup& l : ahead) {
        auto it = answers->find(l.key);
        if (it != answers->end()) Keep(*cache, l, it->second);
      }
    }
    std::function<void()> decide = DecideRcpt(req.address(), authenticated, std::move(r));
    return [this, answers, decide = std::move(decide)] {
      for (auto& [k, a] : *answers) prefetched_.insert_or_assign(k, std::move(a));
      decide();
    };
  });
}

// RCPTs the client pipelined behind this one (RFC 2920) that the cache
// cannot answer: asked in the same ResolveMany as this one, their answers
// kept for their own RcptTo events (prefetched_), which are then answered
// on the strand with no hand-off and no peer call. Postmaster and routed
// paths are left to their own events.
std::vector<RelaySession::Lookup> RelaySession::PipelinedLookups(
    const tenant::v1::ResolveRequest& req, const std::string& key) {
  std::vector<Lookup> out;
  RcptCache* cache = ctx_->rcpt_cache;
  absl::Time now = absl::Now();
  std::set<std::string> seen = {key};
  for (const smtp::Path& p : smtp_.PipelinedRcpts(kMaxResolveAhead)) {
    if (p.postmaster || !p.source_route.empty() || p.HasRoutingCharacters()) continue;
    Lookup l{req, "", ""};
    l.request.set_address(p.Mailbox());
    l.key = RcptCache::Key(l.request);
    l.domain_key = RcptCache::DomainKey(l.request.address());
    if (!seen.insert(l.key).second || prefetched_.count(l.key) > 0) continue;
    if (cache != nullptr) {
      if (!l.domain_key.empty() && cache->Get(l.domain_key, now) != nullptr) continue;
      if (cache->Get(l.key, now) != nullptr) continue;
    }
    out.push_back(std::move(l));
  }
  return out;
}

RcptCache::Answer RelaySession::ResolveWithAhead(
    Backend& b, const tenant::v1::ResolveRequest& req, const std::vector<Lookup>& ahead,
    std::map<std::string, RcptCache::Answer>* answers) {
  if (ahead.empty()) return b.Resolve(req);
  tenant::v1::ResolveManyRequest many;
  *many.add_requests() = req;
  for (const Lookup& l : ahead) *many.add_requests() = l.request;
  absl::StatusOr<tenant::v1::ResolveManyResponse> resp = b.ResolveMany(many);
  // A tenantd without ResolveMany (or a failed call): this one alone; the
  // others ask for themselves.
  if (!resp.ok() || resp->results_size() != many.requests_size()) return b.Resolve(req);
  for (size_t i = 0; i < ahead.size(); ++i)
    answers->insert_or_assign(ahead[i].key, ResultOf(resp->results(static_cast<int>(i + 1))));
  return ResultOf(resp->results(0));
}

RcptCache::Answer RelaySession::ResultOf(const tenant::v1::ResolveResult& r) {
  if (r.status().code() == 0) return r.response();
  absl::Status st(static_cast<absl::StatusCode>(r.status().code()), r.status().message());
  return rpc::WithDetails(st, r.status());
}

void RelaySession::Keep(RcptCache& cache, const Lookup& l, const RcptCache::Answer& r) {
  if (RcptCache::NotHosted(r) && !l.domain_key.empty()) {
    cache.PutDomain(l.domain_key, r, absl::Now());
  } else {
    cache.Put(l.key, r, absl::Now());
  }
}

std::function<void()> RelaySession::DecideRcpt(const std::string& rcpt, bool authenticated,
                                               absl::StatusOr<tenant::v1::ResolveResponse> r) {
  auto count = [this](const char* result) {
    if (ctx_->metrics) ctx_->metrics->rcpts->Add({{"result", result}}).Increment();
  };
  if (r.ok()) {
    auto resp = std::make_shared<tenant::v1::ResolveResponse>(*std::move(r));
    return [this, resp, count, rcpt] {
      if (resp->posting_decision() == tenant::v1::POSTING_DECISION_DENIED) {
        count("posting_denied");
        Reply(false, 550, "5.7.1",
              resp->posting_detail().empty()
                  ? "Recipient address rejected: posting to this group is not allowed"
                  : absl::StrCat("Recipient address rejected: ", resp->posting_detail()));
        return;
      }
      if (resp->posting_decision() == tenant::v1::POSTING_DECISION_MODERATED) {
        // Held for the group's moderators (issue 9): queued HELD at DATA.
        // Without the queue a temporary refusal keeps it with the sender.
        if (ctx_->outbound == nullptr || !ctx_->outbound->available()) {
          count("moderated_deferred");
          Reply(false, 451, "4.7.1", "Moderated group: message hold not available, try later");
          return;
        }
        std::string group = resp->canonical_address();
        bool seen = false;
        for (const Moderated& m : moderated_) seen |= m.group_address == group;
        if (!seen) {
          moderated_.push_back({resp->tenant_id(), group, resp->group_id(),
                                {resp->moderator_user_ids().begin(),
                                 resp->moderator_user_ids().end()}});
        }
        count("moderated_held");
        (void)smtp_.Accept();
        return;
      }
      if (resp->recipients().empty()) {
        count("unknown");
        Reply(false, 550, "5.1.1", "Recipient address rejected: User unknown");
        return;
      }
      for (const auto& rc : resp->recipients()) {
        if (target_ids_.insert(rc.mailbox_id()).second)
          targets_.push_back({rc.mailbox_id(), rc.address(), rc.shard(), rc.user_id(), rcpt,
                              rc.sieve_version(),
                              rc.tenant_id().empty() ? resp->tenant_id() : rc.tenant_id()});
      }
      count("accepted");
      (void)smtp_.Accept();
    };
  }
  absl::Status st = r.status();
  std::string reason = rpc::ReasonOf(st);
  if (st.code() == absl::StatusCode::kNotFound && reason == "DOMAIN_NOT_HOSTED") {
    if (!authenticated) {
      return [this, count] {
        count("relay_denied");
        Reply(false, 550, "5.7.1", "Relay access denied");
      };
    }
    // Submission to the rest of the world: queued at DATA (issue 9).
    std::string address = rcpt;
    return [this, count, address] {
      if (ctx_->outbound == nullptr || !ctx_->outbound->available()) {
        count("queue_unavailable");
        Reply(false, 451, "4.3.0", "Remote delivery temporarily unavailable, try again later");
        return;
      }
      count("remote");
      if (std::find(remote_.begin(), remote_.end(), address) == remote_.end())
        remote_.push_back(address);
      (void)smtp_.Accept();
    };
  }
  if (st.code() == absl::StatusCode::kNotFound) {
    return [this, count] {
      count("unknown");
      Reply(false, 550, "5.1.1", "Recipient address rejected: User unknown");
    };
  }
  if (st.code() == absl::StatusCode::kInvalidArgument) {
    return [this, count] {
      count("bad_address");
      Reply(false, 501, "5.1.3", "Bad recipient address syntax");
    };
  }
  if (st.code() == absl::StatusCode::kResourceExhausted) {
    return [this, count] {
      count("too_many");
      Reply(false, 452, "4.5.3", "Too many recipients");
    };
  }
  if (st.code() == absl::StatusCode::kFailedPrecondition) {
    return [this, count] {
      count("unavailable");
      Reply(false, 450, "4.2.1", "Recipient temporarily unavailable");
    };
  }
  log::Warn("Resolve failed", {{"status", st}});
  return [this, count] {
    count("lookup_failed");
    Reply(false, 451, "4.3.0", "Temporary failure looking up the recipient");
  };
}

// ---- DATA ------------------------------------------------------------------

void RelaySession::OnMessage(smtp::event::MessageComplete& e) {
  Deliver(std::move(e.envelope), std::move(e.message));
}

void RelaySession::Deliver(smtp::Envelope env, std::string message) {
  const Options& o = *ctx_->options;
  std::vector<std::string> rcpts;
  for (const smtp::Recipient& r : env.recipients) rcpts.push_back(r.path.Mailbox());
  std::string from = env.reverse_path.null ? "" : env.reverse_path.Mailbox();
  std::string id = DeliveryId(from, rcpts, message);

  TraceInfo t;
  t.hostname = o.hostname;
  t.helo = env.helo;
  t.client_ip = info_.remote_ip;
  t.esmtp = env.esmtp;
  t.tls = env.tls;
  t.tls_version = tls_.version;
  t.tls_cipher = tls_.cipher;
  t.authenticated = user_.has_value();
  if (user_) t.auth_user = user_->address;
  t.queue_id = id.substr(0, 16);
  t.envelope_from = from;
  t.recipients = rcpts;
  t.at = absl::Now();
  // Submitted mail is vouched for by AUTH; MX mail gets SPF, DKIM and DMARC
  // (libs/mailauth) on the worker, where DNS may block.
  std::string auth_results;
  std::optional<mailauth::InboundRequest> inbound;
  if (user_) {
    auth_results =
        AuthResultsField(o.hostname, {absl::StrCat("auth=pass smtp.auth=", user_->address)});
  } else if (ctx_->dns != nullptr) {
    inbound.emplace();
    std::optional<mailauth::IpAddress> ip = mailauth::IpAddress::Parse(info_.remote_ip);
    if (!ip) log::Warn("client address not parsable for SPF", {{"ip", info_.remote_ip}});
    inbound->client_ip = ip.value_or(mailauth::IpAddress{});
    inbound->helo = env.helo;
    inbound->mail_from = from;
    inbound->receiver = o.hostname;
  } else {
    auth_results = AuthResultsField(o.hostname, {});  // --inbound-auth=false: "none"
  }
  // The header block we add: Return-Path, Received, then (once known)
  // Authentication-Results.
  auto received = std::make_shared<std::string>(ReceivedField(t));
  auto prefix = std::make_shared<std::string>(ReturnPathField(t) + *received);
  auto body = std::make_shared<std::string>(StripForgedAuthResults(message, o.hostname));
  // DKIM verifies the message as it arrived (a signer may have covered a
  // field we strip).
  std::shared_ptr<const std::string> raw;
  if (inbound) raw = std::make_shared<const std::string>(std::move(message));
  std::vector<std::pair<uint32_t, std::string>> targets;
  for (const Target& tg : targets_) targets.emplace_back(tg.shard, tg.mailbox_id);
  // Inbox rules (inbox_rules.h): whose copies these are.
  InboxRules* rules = ctx_->inbox_rules.get();
  auto rules_msg = std::make_shared<InboxMessage>();
  rules_msg->envelope_from = from;
  rules_msg->other_recipients = remote_.size();
  for (const Target& tg : targets_)
    rules_msg->recipients.push_back(
        {tg.mailbox_id, tg.user_id, tg.address, tg.rcpt, tg.sieve_version});
  absl::Time at = t.at;
  mailauth::Resolver* dns = ctx_->dns;
  std::vector<std::string> from_check;
  if (user_) {
    // From: addresses this session's user was already allowed need no
    // second CanSendAs (the usual From: is the envelope sender).
    for (std::string& a : FromAddresses(*body))
      if (!SenderAllowed(a)) from_check.push_back(std::move(a));
  }
  std::optional<Principal> user = user_;
  Backend* b = ctx_->backend;
  RelayMetrics* metrics = ctx_->metrics;
  std::string listener = info_.listener;
  std::string queue_id = t.queue_id;
  size_t size = body->size();  // what we store, minus our fields
  std::vector<std::string> remote = std::move(remote_);
  std::vector<Moderated> moderated = std::move(moderated_);
  Outbound* outbound = ctx_->outbound;
  // Mail policies: who is monitored here (by tenant), what an audit hold
  // would queue (every RCPT as given, local and remote), who asked for no
  // failure DSN (RFC 3461 NOTIFY without FAILURE).
  PolicyCache* policies = ctx_->policies;
  AuditHolds* audit = ctx_->audit;
  std::map<std::string, std::vector<MonitoredParty>> incoming;
  std::map<std::string, std::pair<std::string, std::string>> by_mailbox;  // -> address, rcpt
  std::vector<std::string> held_rcpts;
  for (const Target& tg : targets_) {
    if (!tg.user_id.empty() && !tg.tenant_id.empty())
      incoming[tg.tenant_id].push_back({tg.user_id, tg.address, Direction::kIncoming});
    by_mailbox[tg.mailbox_id] = {tg.address, tg.rcpt};
    if (std::find(held_rcpts.begin(), held_rcpts.end(), tg.rcpt) == held_rcpts.end())
      held_rcpts.push_back(tg.rcpt);
  }
  for (const std::string& r : remote) held_rcpts.push_back(r);
  std::set<std::string> no_dsn;
  std::map<std::string, std::string> orcpt_by_rcpt;  // RCPT as given -> Original-Recipient
  for (const smtp::Recipient& r : env.recipients) {
    if (r.params.notify_specified && !r.params.notify_failure) no_dsn.insert(r.path.Mailbox());
    std::string orcpt = OriginalRecipient(r);
    if (!orcpt.empty()) orcpt_by_rcpt[r.path.Mailbox()] = orcpt;
  }
  OutboundSubmitter* submitter = ctx_->submitter;
  targets_.clear();
  target_ids_.clear();
  remote_.clear();
  moderated_.clear();
  // The rate-limit count MAIL left to us (OnMail): made first on the
  // worker; its fresh room is noted on the strand with the answer.
  bool count_rate = count_at_data_ && user.has_value();
  count_at_data_ = false;
  auto rate_room = std::make_shared<std::optional<int64_t>>();
  auto work = [this, b, prefix, body, raw, targets, auth_results, inbound, dns, at, id, from_check,
               user, remote, outbound, received, from, moderated, rules, rules_msg, policies, audit,
               incoming, by_mailbox, held_rcpts, no_dsn, orcpt_by_rcpt, submitter,
               opts = ctx_->options, metrics, listener, queue_id, size, count_rate,
               rate_room]() mutable -> std::function<void()> {
    auto count = [metrics, listener](const char* result) {
      if (metrics) metrics->messages->Add({{"listener", listener}, {"result", result}}).Increment();
    };
    const Options& o = *opts;
    auto stage = [metrics, t = absl::Now()](RelayMetrics::Stage st) mutable {
      absl::Time now = absl::Now();
      if (metrics) metrics->Observe(st, now - t);
      t = now;
    };
    for (const std::string& addr : from_check) {
      absl::StatusOr<bool> ok = b->CanSendAs(user->user_id, addr);
      if (ok.ok() && *ok) continue;
      if (!ok.ok() && ok.status().code() != absl::StatusCode::kNotFound) {
        return [this, count] {
          count("sender_check_failed");
          Reply(false, 451, "4.3.0", "Temporary failure checking the From: address");
        };
      }
      return [this, count] {
        count("from_not_owned");
        Reply(false, 550, "5.7.1", "From: address not owned by the authenticated user");
      };
    }
    if (count_rate) {
      absl::StatusOr<int64_t> room = b->CountSubmissionRoom(user->tenant_id, user->user_id);
      if (absl::IsResourceExhausted(room.status())) {
        return [this, count] {
          count("rate_limited");
          rate_room_.reset();
          Reply(false, 451, "4.7.1", "Error: sending rate limit exceeded, try again later");
        };
      }
      *rate_room = room.value_or(0);
    }
    if (!from_check.empty() || count_rate) stage(RelayMetrics::kSenderCheck);
    stage(RelayMetrics::kStageCount);  // restart the clock
    bool junk = false;
    if (inbound) {
      inbound->message = *raw;
      mailauth::InboundResult ar = mailauth::CheckInbound(*inbound, *dns);
      CountInboundAuth(metrics, ar);
      auth_results = std::move(ar.header);
      const mailauth::DmarcVerdict& dm = ar.verdicts.dmarc;
      if (ar.disposition == mailauth::DmarcPolicy::kReject) {
        // RFC 7489 §6.7 (and §10.3: 550 5.7.1 at end of DATA): the domain
        // owner asked for failing mail to be refused; nothing is stored.
        log::Info("message refused by DMARC policy",
                  {{"queue_id", queue_id}, {"from_domain", dm.from_domain}});
        std::string text = absl::StrCat("Email rejected per DMARC policy for ",
                                        Sanitize(dm.from_domain, 255));
        return [this, count, text] {
          count("dmarc_reject");
          Reply(false, 550, "5.7.1", text);
        };
      }
      junk = ar.disposition == mailauth::DmarcPolicy::kQuarantine;
      stage(RelayMetrics::kInboundAuth);
    }
    std::string stored = *prefix + auth_results + *body;
    auto temporary_failure = [this, count](const char* what, const char* text) {
      return [this, count, what, text] {
        count(what);
        Reply(false, 451, "4.3.0", text);
      };
    };
    // The sender's outgoing mail, for monitoring copies.
    std::vector<MonitoredParty> outgoing;
    if (user) outgoing.push_back({user->user_id, user->address, Direction::kOutgoing});
    // Mail audit (audit_holds.h): a submission matching the tenant's policy
    // is held, whole, instead of delivered or queued. Moderated posts in
    // the same message are held for their moderators as usual.
    std::string held_id;
    if (user && policies != nullptr) {
      absl::StatusOr<AuditMatch> match =
          MatchSubmission(*policies, user->tenant_id, user->user_id, user->address, from_check,
                          !remote.empty(), *body);
      if (!match.ok()) {
        log::Warn("audit policy unavailable", {{"status", match.status()}, {"queue_id", queue_id}});
        return temporary_failure("policy_unavailable",
                                 "Temporary failure checking the mail policy, try again");
      }
      stage(RelayMetrics::kPolicy);
      if (!match->rules.empty()) {
        if (audit == nullptr || held_rcpts.empty()) {
          if (audit == nullptr)
            return temporary_failure("hold_failed", "Message must be held but holding is unavailable");
        } else {
          // The copy first: a failed hold is answered 451 and the retry's
          // copy is deduplicated.
          absl::StatusOr<int> copies = DeliverMonitorCopies(*policies, user->tenant_id, outgoing,
                                                            stored, id, o.hostname, at);
          if (!copies.ok()) {
            log::Warn("monitoring copy failed", {{"status", copies.status()}, {"queue_id", queue_id}});
            return temporary_failure("monitor_failed", "Temporary failure, try again");
          }
          AuditHolds::Request hr;
          hr.tenant_id = user->tenant_id;
          hr.sender_user_id = user->user_id;
          hr.envelope_from = from;
          hr.recipients = held_rcpts;
          hr.message = *received + *body;
          hr.matched = match->rules;
          hr.policy = match->policy;
          absl::StatusOr<std::string> h = audit->Hold(hr);
          if (!h.ok()) {
            log::Warn("audit hold failed", {{"status", h.status()}, {"queue_id", queue_id}});
            return temporary_failure("hold_failed", "Temporary failure holding the message, try again");
          }
          held_id = *h;
          targets.clear();
          remote.clear();
        }
      }
    }
    // Local copies first: when queueing the remote ones then fails, the
    // client's retry is deduplicated by mailstored (same delivery id).
    if (!targets.empty()) {
    // One DeliverBatch per shard, all with the same body and delivery id.
    auto reqs = std::make_shared<std::map<uint32_t, mailstore::v1::DeliverBatchRequest>>();
    for (const auto& [shard, mailbox] : targets) {
      auto [it, fresh] = reqs->try_emplace(shard);
      mailstore::v1::DeliverBatchRequest& req = it->second;
      if (fresh) {
        req.set_delivery_id(id);
        req.mutable_internal_date()->set_seconds(absl::ToUnixSeconds(at));
      }
      mailstore::v1::DeliveryTarget* rt = req.add_recipients();
      rt->set_mailbox_id(mailbox);
      // DMARC quarantine: the Junk special-use folder (INBOX if the user
      // deleted it; mailstored says fell_back_to_inbox).
      if (junk) rt->mutable_folder()->set_special_use(mailstore::v1::SPECIAL_USE_JUNK);
    }
    // The first request takes `stored` itself, swapped back after the
    // calls (the DSN and monitoring copies below use it): no second copy of
    // a large body. A message to several shards copies it for the others.
    for (auto it = std::next(reqs->begin()); it != reqs->end(); ++it)
      it->second.set_message(stored);
    std::string* carrier = reqs->begin()->second.mutable_message();
    carrier->swap(stored);
    stage(RelayMetrics::kStageCount);
    absl::Time start = absl::Now();
    mailstore::v1::DeliverBatchResponse all;
    absl::Status st;
    size_t expected = 0;
    uint32_t failed_shard = 0;
    for (const auto& [shard, req] : *reqs) {
      expected += static_cast<size_t>(req.recipients_size());
      absl::StatusOr<mailstore::v1::DeliverBatchResponse> one =
          rules ? rules->Deliver(shard, req, *rules_msg) : DeliverWithRetry(*b, shard, req);
      if (!one.ok()) {
        st = one.status();
        failed_shard = shard;
        break;
      }
      for (auto& res : *one->mutable_results()) *all.add_results() = std::move(res);
    }
    carrier->swap(stored);
    if (metrics) metrics->delivery_seconds->Observe(absl::ToDoubleSeconds(absl::Now() - start));
    stage(RelayMetrics::kStore);
    if (st.code() == absl::StatusCode::kPermissionDenied) {
      // The only recipient's inbox rules reject it (RFC 5429): nothing stored.
      std::string text(st.message());
      return [this, count, text] {
        count("rule_reject");
        Reply(false, 550, "5.7.1", text);
      };
    }
    if (!st.ok()) {
      const auto spent_ms = static_cast<long long>(absl::ToInt64Milliseconds(absl::Now() - start));
      log::Warn("DeliverBatch failed", {{"status", st},
                                        {"queue_id", queue_id},
                                        {"shard", static_cast<unsigned>(failed_shard)},
                                        {"spent_ms", spent_ms}});
      if (st.code() == absl::StatusCode::kInvalidArgument) {
        return [this, count] {
          count("store_refused");
          Reply(false, 554, "5.6.0", "Message refused by the mail store (limits)");
        };
      }
      if (st.code() == absl::StatusCode::kResourceExhausted &&
          rpc::ReasonOf(st) == "QUOTA_EXCEEDED") {
        return [this, count] {
          count("over_quota");
          Reply(false, 552, "5.2.2", "Mailbox full");
        };
      }
      return [this, count] {
        count("store_unavailable");
        Reply(false, 451, "4.3.0", "Temporary failure storing the message, try again");
      };
    }
    int delivered = 0, quota = 0, missing = 0, temporary = 0;
    std::vector<outbound::DsnRecipient> failed;
    for (const auto& res : all.results()) {
      bool over = false;
      switch (res.status()) {
        case mailstore::v1::DELIVERY_STATUS_DELIVERED:
        case mailstore::v1::DELIVERY_STATUS_DUPLICATE:
          ++delivered;
          continue;
        case mailstore::v1::DELIVERY_STATUS_QUOTA_EXCEEDED:
          ++quota;
          over = true;
          break;
        case mailstore::v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND:
          ++missing;
          break;
        default:
          ++temporary;
          continue;
      }
      auto who = by_mailbox.find(res.mailbox_id());
      if (who == by_mailbox.end() || no_dsn.count(who->second.second) > 0) continue;
      outbound::DsnRecipient f;
      f.address = who->second.first;
      if (auto o = orcpt_by_rcpt.find(who->second.second); o != orcpt_by_rcpt.end())
        f.original_recipient = o->second;
      f.status = over ? "5.2.2" : "5.1.1";
      f.diagnostic = over ? "552 5.2.2 Mailbox full" : "550 5.1.1 Mailbox unavailable";
      if (!res.detail().empty()) f.diagnostic += absl::StrCat(" (", Sanitize(res.detail(), 200), ")");
      f.diagnostic_is_smtp = true;
      f.last_attempt = absl::Now();
      failed.push_back(std::move(f));
    }
    if (static_cast<size_t>(all.results_size()) != expected) temporary = 1;
    if (temporary > 0) {
      return [this, count] {
        count("store_temporary");
        Reply(false, 451, "4.3.0", "Temporary failure storing the message, try again");
      };
    }
    if (delivered == 0) {
      return [this, count, quota] {
        count(quota > 0 ? "over_quota" : "mailbox_missing");
        if (quota > 0) {
          Reply(false, 552, "5.2.2", "Mailbox full");
        } else {
          Reply(false, 550, "5.1.1", "Mailbox unavailable");
        }
      };
    }
    if (quota + missing > 0) {
      // Partial (issue 8): the others have it; accepting and reporting the
      // failed ones in a DSN (RFC 3464) is what RFC 5321 §6.1 asks once
      // the 250 covers the message: answering 4xx for everyone would make
      // the client resend to those who have it (deduplicated here, but not
      // by a remote MX after a relay) and never tell the sender which
      // recipient failed. A DSN that cannot be committed → 451, the retry
      // is deduplicated.
      log::Info("partial delivery: failure DSN for some recipients",
                {{"queue_id", queue_id}, {"over_quota", quota}, {"missing", missing}});
      if (!from.empty() && !failed.empty()) {
        absl::Status sent =
            submitter == nullptr
                ? absl::UnavailableError("no submitter")
                : submitter->Submit("", {from},
                                    PartialFailureDsn(o, from, queue_id, at, failed, stored));
        if (!sent.ok()) {
          log::Warn("partial delivery DSN not sent", {{"status", sent}, {"queue_id", queue_id}});
          return temporary_failure("dsn_failed", "Temporary failure storing the message, try again");
        }
      }
    }
    }  // local copies
    // Monitoring copies (monitor_copies.h): incoming mail of monitored
    // recipients and the sender's outgoing mail, before moderation and the
    // queue so that a 451 here is retried without queueing twice.
    stage(RelayMetrics::kStageCount);
    if (policies != nullptr && held_id.empty()) {
      std::map<std::string, std::vector<MonitoredParty>> parties = incoming;
      if (user) {
        auto& v = parties[user->tenant_id];
        v.insert(v.end(), outgoing.begin(), outgoing.end());
      }
      for (const auto& [tenant_id, list] : parties) {
        absl::StatusOr<int> copies =
            DeliverMonitorCopies(*policies, tenant_id, list, stored, id, o.hostname, at);
        if (!copies.ok()) {
          log::Warn("monitoring copy failed", {{"status", copies.status()}, {"queue_id", queue_id}});
          return temporary_failure("monitor_failed", "Temporary failure, try again");
        }
      }
    }
    stage(RelayMetrics::kMonitor);
    std::string reply_id = queue_id;
    // Posts to MODERATED groups: one HELD entry per group, decided with
    // ApproveHeldMessage / RejectHeldMessage.
    for (const Moderated& m : moderated) {
      absl::StatusOr<std::string> h =
          outbound == nullptr
              ? absl::UnavailableError("no outbound queue")
              : outbound->HoldForModeration(
                    {m.tenant_id, m.group_address, m.group_id, m.moderators}, from,
                    *received + auth_results + *body);
      if (!h.ok()) {
        log::Warn("holding for moderation failed", {{"status", h.status()}, {"queue_id", queue_id}});
        return [this, count] {
          count("hold_failed");
          Reply(false, 451, "4.3.0", "Temporary failure holding the message, try again");
        };
      }
      reply_id = *h;
    }
    if (!remote.empty()) {
      // Remote recipients: DKIM-signed with the From: domain's keys and
      // queued in one entry; 250 only once the entry is committed.
      absl::StatusOr<std::string> q = outbound == nullptr
                                          ? absl::UnavailableError("no outbound queue")
                                          : outbound->SignAndEnqueue(user ? user->tenant_id : "",
                                                                     from, remote, *received + *body);
      if (!q.ok()) {
        log::Warn("queueing for remote delivery failed", {{"status", q.status()}, {"queue_id", queue_id}});
        return [this, count] {
          count("queue_failed");
          Reply(false, 451, "4.3.0", "Temporary failure queueing the message, try again");
        };
      }
      reply_id = *q;
      stage(RelayMetrics::kQueue);
    }
    if (metrics) metrics->bytes_accepted->Increment(static_cast<double>(size));
    if (!held_id.empty()) {
      return [this, count, held_id] {
        count("held_for_audit");
        Reply(true, 250, "2.0.0", absl::StrCat("Ok: queued as ", held_id, " (held for review)"));
      };
    }
    return [this, count, reply_id, junk] {
      count(junk ? "accepted_junk" : "accepted");
      Reply(true, 250, "2.0.0", absl::StrCat("Ok: queued as ", reply_id));
    };
  };
  Async([this, rate_room, work = std::move(work)]() mutable -> std::function<void()> {
    std::function<void()> finish = work();
    return [this, rate_room, finish = std::move(finish)] {
      if (rate_room->has_value()) NoteRateRoom(**rate_room);
      finish();
    };
  });
}

// ---- AUTH ------------------------------------------------------------------

void RelaySession::OnAuth(const smtp::event::Auth& e) {
  sasl_ = Sasl{e.mechanism};
  const std::optional<std::string>& ir = e.initial_response;
  if (e.mechanism == "LOGIN") {
    if (ir && !ir->empty()) {
      sasl_.username = *ir;
      sasl_.step = 2;
      (void)smtp_.Challenge("Password:");
    } else {
      sasl_.step = 1;
      (void)smtp_.Challenge("Username:");
    }
    return;
  }
  if (!ir) {
    (void)smtp_.Challenge("");
    return;
  }
  if (e.mechanism == "PLAIN") CheckCredentials(ParsePlain(*ir));
  else if (e.mechanism == "XOAUTH2") CheckCredentials(ParseXoauth2(*ir));
  else CheckCredentials(ParseOauthBearer(*ir));
}

void RelaySession::OnAuthResponse(const smtp::event::AuthResponse& e) {
  if (sasl_.mechanism == "LOGIN") {
    if (sasl_.step == 1) {
      sasl_.username = e.response;
      sasl_.step = 2;
      (void)smtp_.Challenge("Password:");
      return;
    }
    SaslCredentials c;
    c.mechanism = "LOGIN";
    c.authcid = sasl_.username;
    c.password = e.response;
    if (c.authcid.empty() || c.password.empty()) {
      CheckCredentials(absl::InvalidArgumentError("LOGIN: empty field"));
    } else {
      CheckCredentials(c);
    }
    return;
  }
  if (sasl_.mechanism == "PLAIN") CheckCredentials(ParsePlain(e.response));
  else if (sasl_.mechanism == "XOAUTH2") CheckCredentials(ParseXoauth2(e.response));
  else CheckCredentials(ParseOauthBearer(e.response));
}

void RelaySession::CheckCredentials(absl::StatusOr<SaslCredentials> creds) {
  sasl_ = Sasl{};
  if (!creds.ok()) {
    Reply(false, 501, "5.5.2", "Cannot decode AUTH response");
    return;
  }
  identity::v1::CheckSaslRequest req;
  const std::string& m = creds->mechanism;
  req.set_mechanism(m == "PLAIN"     ? identity::v1::SASL_MECHANISM_PLAIN
                    : m == "LOGIN"   ? identity::v1::SASL_MECHANISM_LOGIN
                    : m == "XOAUTH2" ? identity::v1::SASL_MECHANISM_XOAUTH2
                                     : identity::v1::SASL_MECHANISM_OAUTHBEARER);
  req.set_authzid(creds->authzid);
  req.set_authcid(creds->authcid);
  req.set_password(creds->password);
  req.set_bearer_token(creds->bearer_token);
  req.set_protocol(common::v1::PROTOCOL_SMTP);
  req.mutable_client()->set_ip(info_.remote_ip);
  req.mutable_client()->set_protocol(common::v1::PROTOCOL_SMTP);
  Backend* b = ctx_->backend;
  Async([this, b, req]() -> std::function<void()> {
    absl::StatusOr<identity::v1::CheckSaslResponse> r = b->CheckSasl(req);
    if (r.ok()) {
      Principal p{r->tenant_id(), r->user_id(), r->address()};
      return [this, p] {
        user_ = p;
        senders_ok_.clear();
        rate_room_.reset();
        Reply(true, 235, "2.7.0", "Authentication successful");
      };
    }
    absl::StatusCode code = r.status().code();
    if (code == absl::StatusCode::kUnauthenticated || code == absl::StatusCode::kInvalidArgument ||
        code == absl::StatusCode::kNotFound) {
      return [this] { Reply(false, 535, "5.7.8", "Error: authentication failed"); };
    }
    if (code != absl::StatusCode::kResourceExhausted)
      log::Warn("CheckSasl failed", {{"status", r.status()}});
    return [this, code] {
      Reply(false, 454, "4.7.0",
            code == absl::StatusCode::kResourceExhausted
                ? "Temporary authentication failure: too many attempts"
                : "Temporary authentication failure");
    };
  });
}

}  // namespace mailgrid::relay
