// RelaySession: one SMTP connection — libs/smtp's pure engine driven over a
// libs/netserver connection, with the decisions that need other services
// (RCPT → tenantd Resolve, AUTH → identityd CheckSasl, sender ownership →
// CanSendAs, DATA → mailstored DeliverBatch) run on the worker pool while
// the connection is paused, then applied back on the connection's strand.
//
// SECURITY (the policy side; the protocol side is libs/smtp's):
//  - No open relay: a recipient is accepted only if tenantd resolves it to
//    mailboxes here. A foreign domain is refused (550 5.7.1) without AUTH;
//    with AUTH it is queued for remote delivery (issue 9).
//    Source routes, %-hack, bang paths and quoted "a@b"@local are refused.
//  - Submission: AUTH only after TLS (engine), and the envelope sender and
//    every From: address must be the user's (CanSendAs), else 553 5.7.1.
//  - 250 after DATA only once mailstored has committed every copy; any
//    doubt is 451 and the client retries (deduplicated by delivery id).
//  - MX mail: SPF, DKIM and DMARC by libs/mailauth on the worker pool (its
//    DNS blocks); DMARC reject → 550 5.7.1 with nothing stored, quarantine
//    → Junk; forged Authentication-Results under our name are removed.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "libs/mailauth/dns.h"
#include "libs/netserver/server.h"
#include "libs/smtp/session.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "services/relay/backend.h"
#include "services/relay/config.h"
#include "services/relay/sasl.h"
#include "services/relay/worker_pool.h"

namespace mailgrid::relay {

class AuditHolds;
class InboxRules;
class Outbound;
class PolicyCache;
class RcptCache;
class OutboundSubmitter;

struct RelayMetrics {
  prometheus::Family<prometheus::Counter>* replies = nullptr;   // {listener, class}
  prometheus::Family<prometheus::Counter>* messages = nullptr;  // {listener, result}
  prometheus::Family<prometheus::Counter>* rcpts = nullptr;     // {result}
  prometheus::Counter* bytes_accepted = nullptr;
  prometheus::Histogram* delivery_seconds = nullptr;
  prometheus::Family<prometheus::Counter>* inbound_auth = nullptr;  // {method, result}
  // Where a message's time goes (issue 8's per-message breakdown): one
  // histogram per stage, mailgrid_relay_stage_seconds{stage}.
  enum Stage {
    kWorkerWait,    // Async: queued until a worker runs it
    kStrandWait,    // Async: the worker's answer until the connection's strand runs it
    kResolve,       // RCPT: tenantd Resolve (or its cache)
    kSenderCheck,   // MAIL/DATA: CanSendAs + rate limit
    kInboundAuth,   // DATA (MX): SPF, DKIM, DMARC
    kPolicy,        // DATA (submission): audit policy match
    kStore,         // DATA: DeliverBatch to mailstored, inbox rules included
    kMonitor,       // DATA: monitoring copies (policy lookup included)
    kQueue,         // DATA: DKIM signing + outbound queue commit
    kStageCount
  };
  prometheus::Histogram* stages[kStageCount] = {};
  void Observe(Stage stage, absl::Duration d) const {
    if (stage < kStageCount && stages[stage] != nullptr)
      stages[stage]->Observe(absl::ToDoubleSeconds(d));
  }
  static std::unique_ptr<RelayMetrics> Create(prometheus::Registry& registry);
};

// Shared by every session; outlives the netserver.
struct RelayContext {
  const Options* options = nullptr;
  Backend* backend = nullptr;
  WorkerPool* workers = nullptr;
  RelayMetrics* metrics = nullptr;  // may be null
  // SPF/DKIM/DMARC lookups (thread-safe, blocking: worker pool only);
  // null: --inbound-auth=false, no checks.
  mailauth::Resolver* dns = nullptr;
  // Remote delivery (issue 9): the queue; null or !available(): an
  // authenticated RCPT to a foreign domain gets 451 4.3.0.
  Outbound* outbound = nullptr;
  // Sending a message from inside relayd (Sieve redirect/vacation): see
  // submitter.h and README "Sending from inside relayd". May be null.
  OutboundSubmitter* submitter = nullptr;
  // Inbox rules (Sieve) at local delivery (inbox_rules.h); null: none.
  std::shared_ptr<InboxRules> inbox_rules;
  // Tenant mail policies (mail_policy.h): audit holds of submissions
  // (audit_holds.h) and monitoring copies (monitor_copies.h); null: none.
  PolicyCache* policies = nullptr;
  AuditHolds* audit = nullptr;
  // Resolve answers kept --rcpt-cache-ttl (rcpt_cache.h); null: none.
  RcptCache* rcpt_cache = nullptr;
  // Loop threads that may make a blocking call themselves (--smtp-inline-
  // calls, worker_pool.h); null: every call goes to `workers`.
  InlineGate* inline_calls = nullptr;
};

enum class ListenerKind { kMx, kSubmission, kSubmissionTls };

// The engine configuration for a listener.
smtp::SessionConfig MakeSmtpConfig(ListenerKind kind, const Options& options, bool tls_available);

class RelaySession final : public netserver::Session {
 public:
  RelaySession(std::shared_ptr<netserver::Connection> conn, const RelayContext* ctx,
               ListenerKind kind, smtp::SessionConfig config);

  netserver::Output OnConnect() override;
  netserver::Output OnBytes(std::string_view data) override;
  netserver::Output OnTlsEstablished(const netserver::TlsInfo& info) override;
  netserver::Output OnTimeout() override;
  netserver::Output OnShutdown() override;
  void OnClose(std::string_view reason) override;

 private:
  struct Principal {
    std::string tenant_id, user_id, address;
  };
  struct Target {
    std::string mailbox_id, address;
    uint32_t shard = 0;
    std::string user_id, rcpt;  // for inbox rules: the user, RCPT TO as given
    int64_t sieve_version = 0;
    std::string tenant_id;  // monitoring copies
  };
  struct Sasl {
    std::string mechanism;
    int step = 0;  // LOGIN: 1 = username asked, 2 = password asked
    std::string username;
  };

  // Runs the engine until it needs input, closes, or waits on an async
  // decision; returns what to write.
  netserver::Output Drive();
  // Runs `work` on the worker pool (it must not touch the session), then
  // the closure it returns on the strand, then Drive().
  void Async(std::function<std::function<void()>()> work);

  void OnMail(const smtp::event::MailFrom& e);
  void OnRcpt(const smtp::event::RcptTo& e);
  // The RCPT answer for tenantd's `r` (on a worker or the strand; it only
  // builds the closure, which runs on the strand).
  std::function<void()> DecideRcpt(const std::string& rcpt, bool authenticated,
                                   absl::StatusOr<tenant::v1::ResolveResponse> r);
  // RCPT lookups batched into one ResolveMany (smtp_session.cc OnRcpt):
  // a request with its RcptCache keys.
  struct Lookup {
    tenant::v1::ResolveRequest request;
    std::string key, domain_key;
  };
  // At most this many pipelined RCPTs ride along with one (tenantd takes
  // up to 1,000 per call).
  static constexpr size_t kMaxResolveAhead = 99;
  std::vector<Lookup> PipelinedLookups(const tenant::v1::ResolveRequest& req,
                                       const std::string& key);
  // On a worker: `req`'s answer; the `ahead` ones, asked in the same call,
  // into `answers` by key. Resolve alone when there are none or ResolveMany
  // fails.
  static absl::StatusOr<tenant::v1::ResolveResponse> ResolveWithAhead(
      Backend& b, const tenant::v1::ResolveRequest& req, const std::vector<Lookup>& ahead,
      std::map<std::string, absl::StatusOr<tenant::v1::ResolveResponse>>* answers);
  static absl::StatusOr<tenant::v1::ResolveResponse> ResultOf(const tenant::v1::ResolveResult& r);
  static void Keep(RcptCache& cache, const Lookup& l,
                   const absl::StatusOr<tenant::v1::ResolveResponse>& r);
  bool SenderAllowed(const std::string& address) const;
  // Rate limit (OnMail): whether this session may leave its next count to
  // DATA, and the room its last count reported.
  bool FarFromRateLimit() const;
  void NoteRateRoom(int64_t room);
  void RememberSender(const std::string& address);
  void OnMessage(smtp::event::MessageComplete& e);
  void OnAuth(const smtp::event::Auth& e);
  void OnAuthResponse(const smtp::event::AuthResponse& e);
  void CheckCredentials(absl::StatusOr<SaslCredentials> creds);
  void Deliver(smtp::Envelope envelope, std::string message);
  void Reply(bool accept, int code, std::string_view enhanced, std::string_view text);
  void CountReplies();

  std::weak_ptr<netserver::Connection> conn_;
  netserver::ConnectionInfo info_;
  netserver::TlsInfo tls_;
  const RelayContext* ctx_;
  smtp::ServerSession smtp_;
  bool waiting_ = false;   // an async decision is in flight
  // Async's call made on this loop thread (InlineGate), handed to netserver
  // by Drive as the Output's `then`: it runs once the replies are out.
  std::function<netserver::Output()> inline_call_;
  bool draining_ = false;  // shutdown asked while waiting: 421 after it
  std::optional<Principal> user_;
  Sasl sasl_;
  // Sender addresses CanSendAs allowed user_ in this session (lower-cased)
  // and when; see SenderAllowed.
  std::map<std::string, absl::Time> senders_ok_;
  // The hourly submission room its last count reported, and when (see
  // FarFromRateLimit); count_at_data_: this transaction's count is left to
  // DATA.
  std::optional<std::pair<int64_t, absl::Time>> rate_room_;
  bool count_at_data_ = false;
  // The transaction (reset at each MAIL).
  std::string mail_from_;  // "" for <>
  std::vector<Target> targets_;
  std::set<std::string> target_ids_;
  std::vector<std::string> remote_;  // authenticated RCPTs to foreign domains (queued)
  struct Moderated {  // a MODERATED group posted to: held at DATA
    std::string tenant_id, group_address, group_id;
    std::vector<std::string> moderators;
  };
  std::vector<Moderated> moderated_;
  // Answers for RCPTs of this transaction asked ahead in one ResolveMany
  // (PipelinedLookups), by RcptCache::Key; each used once.
  std::map<std::string, absl::StatusOr<tenant::v1::ResolveResponse>> prefetched_;
  smtp::SessionStats counted_;  // stats already exported to metrics
  prometheus::Counter* reply_counters_[4] = {};  // 2xx..5xx of this listener, once used
};

}  // namespace mailgrid::relay
