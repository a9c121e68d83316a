#include "services/relay/outbound.h"

#include <unistd.h>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/kv/keys.h"
#include "libs/outbound/delivery.h"
#include "libs/outbound/dsn.h"
#include "libs/outbound/mta_sts.h"
#include "libs/rpc/errors.h"
#include "services/relay/headers.h"
#include "services/relay/local_delivery.h"
#include "services/relay/monitor_copies.h"

namespace mailgrid::relay {
namespace {

using outbound::RecipientOutcome;

outbound::SmtpReply Reply(uint32_t code, std::string enhanced, std::string text) {
  outbound::SmtpReply r;
  r.set_code(code);
  r.set_enhanced_code(std::move(enhanced));
  r.set_text(std::move(text));
  r.set_remote_host("local delivery");
  return r;
}

}  // namespace

// ResolveResult.status carries Resolve's code, message and details, so the
// per-address errors are the same as Resolve's.
std::vector<absl::StatusOr<ResolvedRecipient>> ResolveRecipients(
    Backend& backend, const std::vector<std::string>& rcpts,
    const tenant::v1::SenderContext& sender) {
  std::vector<absl::StatusOr<ResolvedRecipient>> out;
  out.reserve(rcpts.size());
  absl::StatusOr<tenant::v1::ResolveManyResponse> many = absl::UnavailableError("not asked");
  if (rcpts.size() > 1) {
    tenant::v1::ResolveManyRequest req;
    for (const std::string& a : rcpts) {
      tenant::v1::ResolveRequest* one = req.add_requests();
      one->set_address(a);
      *one->mutable_sender() = sender;
    }
    many = backend.ResolveMany(req);
  }
  if (!many.ok() || many->results_size() != static_cast<int>(rcpts.size())) {
    for (const std::string& a : rcpts) out.push_back(ResolveRecipient(backend, a, sender));
    return out;
  }
  for (size_t i = 0; i < rcpts.size(); ++i) {
    const tenant::v1::ResolveResult& r = many->results(static_cast<int>(i));
    ResolvedRecipient rr;
    rr.address = rcpts[i];
    if (r.status().code() == 0) {
      rr.response = r.response();
      out.push_back(std::move(rr));
      continue;
    }
    absl::Status st = rpc::WithDetails(
        absl::Status(static_cast<absl::StatusCode>(r.status().code()), r.status().message()),
        r.status());
    if (st.code() == absl::StatusCode::kNotFound && rpc::ReasonOf(st) == "DOMAIN_NOT_HOSTED") {
      rr.remote = true;
      out.push_back(std::move(rr));
      continue;
    }
    out.push_back(std::move(st));
  }
  return out;
}

namespace {

// Queued mail goes out by SMTP, unless its domain is hosted here (a DSN to
// one of our users, internal mail queued while tenantd was down): then it
// is delivered to the mailboxes, like any local mail.
class RelayTransport final : public outbound::Transport {
 public:
  RelayTransport(const Options& o, Backend* backend, mailauth::Resolver* dns, RouteStore* routes,
                 prometheus::Family<prometheus::Counter>* results,
                 const std::atomic<PolicyCache*>* policies,
                 prometheus::Family<prometheus::Counter>* sts_failures)
      : backend_(backend),
        policies_(policies),
        routes_(routes),
        results_(results),
        hostname_(o.hostname),
        mta_sts_(o.mta_sts ? std::make_unique<outbound::MtaSts>(dns, StsOptions(o)) : nullptr),
        smtp_(Delivery(o, mta_sts_.get(), sts_failures), dns, &routes->table()) {
    // The result counters, looked up once (Family::Add hashes the labels
    // each time it is called): [remote, local] x RecipientOutcome::Kind.
    if (results_ == nullptr) return;
    static_assert(static_cast<int>(RecipientOutcome::Kind::kDelivered) == 0 &&
                  static_cast<int>(RecipientOutcome::Kind::kDeferred) == 1 &&
                  static_cast<int>(RecipientOutcome::Kind::kBounced) == 2);
    const char* kinds[] = {"delivered", "deferred", "bounced"};
    const char* paths[] = {"remote", "local"};
    for (int p = 0; p < 2; ++p) {
      for (int k = 0; k < 3; ++k)
        counters_[p][k] = &results_->Add({{"path", paths[p]}, {"result", kinds[k]}});
    }
  }

  std::vector<RecipientOutcome> Deliver(const std::string& domain, const std::string& from,
                                        const std::vector<std::string>& rcpts,
                                        const std::string& message) override {
    bool local = false;
    std::vector<RecipientOutcome> out = DeliverOnce(domain, from, rcpts, message, &local);
    for (const RecipientOutcome& o : out) {
      prometheus::Counter* c = counters_[local ? 1 : 0][static_cast<int>(o.kind)];
      if (c != nullptr) c->Increment();
    }
    return out;
  }

  // A domain known to be remote: its smart-host route or MX host (one MX
  // lookup at most a minute). Otherwise (ours, or not asked yet) the domain
  // itself, without DNS: local domains need no MX lookup, and a remote
  // domain's first burst is bounded under "domain:<d>" until the first
  // delivery learns its MX (then at most two keys' worth, once).
  outbound::Destination DestinationOf(const std::string& domain) override {
    routes_->Refresh(absl::Seconds(5));  // as Deliver: a new route's limit applies at once
    return smtp_.DestinationOf(domain, KnownRemote(domain));
  }

 private:
  static outbound::MtaStsOptions StsOptions(const Options& o) {
    outbound::MtaStsOptions m;
    m.ca_file = o.mta_sts_ca_file;
    m.port = static_cast<uint16_t>(o.mta_sts_port);
    return m;
  }

  static outbound::DeliveryOptions Delivery(const Options& o, outbound::MtaSts* sts,
                                            prometheus::Family<prometheus::Counter>* failures) {
    outbound::DeliveryOptions d;
    d.mta_sts = sts;
    if (failures != nullptr) {
      d.on_sts_failure = [failures](const char* mode, const char* kind) {
        failures->Add({{"mode", mode}, {"kind", kind}}).Increment();
      };
    }
    d.helo_name = o.hostname;
    d.mx_port = static_cast<uint16_t>(o.outbound_mx_port);
    d.direct_tls =
        o.outbound_starttls ? outbound::TlsPolicy::kOpportunistic : outbound::TlsPolicy::kNone;
    d.ca_file = o.outbound_ca_file;
    d.secrets_dir = o.outbound_secrets_dir;
    return d;
  }

  std::vector<RecipientOutcome> DeliverOnce(const std::string& domain, const std::string& from,
                                            const std::vector<std::string>& rcpts,
                                            const std::string& message, bool* local) {
    tenant::v1::SenderContext sender;
    sender.set_envelope_from(from);
    if (KnownRemote(domain)) {
      routes_->Refresh(absl::Seconds(5));
      return smtp_.Deliver(domain, from, rcpts, message);
    }
    // One domain per call: the first recipient says whether it is ours. All
    // of them are asked in one ResolveMany (one tenantd call, not one per
    // recipient: a DSN or notice to 50 of our users is one round trip).
    std::vector<absl::StatusOr<ResolvedRecipient>> resolved =
        ResolveRecipients(*backend_, rcpts, sender);
    const absl::StatusOr<ResolvedRecipient>& first = resolved.front();
    if (first.ok() && first->remote) {
      RememberRemote(domain);
      routes_->Refresh(absl::Seconds(5));
      return smtp_.Deliver(domain, from, rcpts, message);
    }
    *local = true;
    std::vector<RecipientOutcome> out(rcpts.size());
    std::vector<MailboxTarget> targets;
    std::vector<std::vector<std::string>> mailboxes(rcpts.size());
    // The recipients' users, by tenant: monitoring copies of incoming mail.
    std::vector<std::vector<std::pair<std::string, MonitoredParty>>> users(rcpts.size());
    for (size_t i = 0; i < rcpts.size(); ++i) {
      out[i].address = rcpts[i];
      const absl::StatusOr<ResolvedRecipient>& r = resolved[i];
      if (r.ok() && !r->remote && r->response.recipients_size() > 0) {
        for (const auto& m : r->response.recipients()) {
          targets.push_back({m.shard(), m.mailbox_id()});
          mailboxes[i].push_back(m.mailbox_id());
          const std::string& tenant =
              m.tenant_id().empty() ? r->response.tenant_id() : m.tenant_id();
          if (!m.user_id().empty() && !tenant.empty()) {
            users[i].push_back({tenant, {m.user_id(), m.address(), Direction::kIncoming}});
          }
        }
        continue;
      }
      absl::StatusCode code = r.ok() ? absl::StatusCode::kNotFound : r.status().code();
      if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kInvalidArgument) {
        out[i].kind = RecipientOutcome::Kind::kBounced;
        out[i].reply = Reply(550, "5.1.1", "User unknown (local recipient)");
      } else {
        out[i].kind = RecipientOutcome::Kind::kDeferred;
        out[i].reply = Reply(451, "4.3.0", "Directory temporarily unavailable");
      }
    }
    if (targets.empty()) return out;
    absl::Time now = absl::Now();
    std::string id = DeliveryId(from, rcpts, message);
    std::string stored = LocalTraceFields(hostname_, from, id.substr(0, 16), now) + message;
    auto statuses = DeliverToMailboxes(*backend_, id, stored, now, targets);
    for (size_t i = 0; i < rcpts.size(); ++i) {
      if (mailboxes[i].empty()) continue;
      if (!statuses.ok()) {
        out[i].kind = RecipientOutcome::Kind::kDeferred;
        out[i].reply = Reply(451, "4.3.0", "Mail store temporarily unavailable");
        out[i].reply.set_error(std::string(statuses.status().message()));
        continue;
      }
      int ok = 0, quota = 0, temporary = 0;
      for (const std::string& m : mailboxes[i]) {
        auto it = statuses->find(m);
        auto st =
            it == statuses->end() ? mailstore::v1::DELIVERY_STATUS_TEMPORARY_FAILURE : it->second;
        if (st == mailstore::v1::DELIVERY_STATUS_DELIVERED ||
            st == mailstore::v1::DELIVERY_STATUS_DUPLICATE)
          ++ok;
        else if (st == mailstore::v1::DELIVERY_STATUS_QUOTA_EXCEEDED)
          ++quota;
        else if (st != mailstore::v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND)
          ++temporary;
      }
      if (temporary > 0) {
        out[i].kind = RecipientOutcome::Kind::kDeferred;
        out[i].reply = Reply(451, "4.3.0", "Mail store temporary failure");
      } else if (ok > 0) {
        out[i].kind = RecipientOutcome::Kind::kDelivered;
        out[i].reply = Reply(250, "2.0.0", "Delivered to the mailbox");
      } else {
        out[i].kind = RecipientOutcome::Kind::kBounced;
        out[i].reply = quota > 0 ? Reply(552, "5.2.2", "Mailbox full")
                                 : Reply(550, "5.1.1", "Mailbox unavailable");
      }
    }
    CopyForMonitoring(users, stored, id, now, &out);
    return out;
  }

  // Monitoring copies (monitor_copies.h) of what the queue delivered to
  // local mailboxes (approved holds, DSNs, notices, mail queued while the
  // directory was down), as at submission. A copy that cannot be made now
  // turns the delivered recipients back into deferred: the retry's mailbox
  // delivery is a DUPLICATE (same delivery id) and the copy is made then,
  // never twice (`<id>/monitor`).
  void CopyForMonitoring(
      const std::vector<std::vector<std::pair<std::string, MonitoredParty>>>& users,
      const std::string& stored, const std::string& id, absl::Time now,
      std::vector<RecipientOutcome>* out) {
    PolicyCache* policies = policies_ != nullptr ? policies_->load() : nullptr;
    if (policies == nullptr) return;
    std::map<std::string, std::vector<MonitoredParty>> by_tenant;
    for (size_t i = 0; i < out->size(); ++i) {
      if ((*out)[i].kind != RecipientOutcome::Kind::kDelivered) continue;
      for (const auto& [tenant, party] : users[i]) by_tenant[tenant].push_back(party);
    }
    for (const auto& [tenant, parties] : by_tenant) {
      absl::StatusOr<int> copies =
          DeliverMonitorCopies(*policies, tenant, parties, stored, id, hostname_, now);
      if (copies.ok()) continue;
      log::Warn("monitoring copy of queued mail failed: retried",
                {{"status", copies.status()}, {"tenant_id", tenant}});
      for (RecipientOutcome& o : *out) {
        if (o.kind != RecipientOutcome::Kind::kDelivered) continue;
        o.kind = RecipientOutcome::Kind::kDeferred;
        o.reply = Reply(451, "4.3.0", "Monitoring copy temporarily failed");
        o.reply.set_error(std::string(copies.status().message()));
      }
      return;
    }
  }

  // "Not hosted here" verdicts, kept 10 s: a burst to one remote domain
  // costs one Resolve, and a domain onboarded meanwhile is seen soon.
  bool KnownRemote(const std::string& domain) {
    absl::MutexLock lock(&mu_);
    auto it = remote_.find(domain);
    return it != remote_.end() && it->second > absl::Now();
  }
  void RememberRemote(const std::string& domain) {
    absl::MutexLock lock(&mu_);
    if (remote_.size() > 10000) remote_.clear();
    remote_[domain] = absl::Now() + absl::Seconds(10);
  }

  Backend* backend_;
  const std::atomic<PolicyCache*>* policies_;  // Outbound::SetPolicies; null: no copies
  RouteStore* routes_;
  prometheus::Family<prometheus::Counter>* results_;
  prometheus::Counter* counters_[2][3] = {};  // see the constructor
  std::string hostname_;
  std::unique_ptr<outbound::MtaSts> mta_sts_;  // before smtp_, which points to it
  outbound::SmtpTransport smtp_;
  absl::Mutex mu_;
  std::map<std::string, absl::Time> remote_ ABSL_GUARDED_BY(mu_);
};

std::string FromDomain(const std::string& message) {
  std::vector<std::string> from = FromAddresses(message);
  if (from.empty()) return "";
  return outbound::DomainOf(from.front());
}

// An envelope address from another service: a mailbox, nothing that could
// break a header or an SMTP command.
bool SafeAddress(const std::string& a, bool allow_empty) {
  if (a.empty()) return allow_empty;
  if (a.size() > 254 || a.find('@') == std::string::npos) return false;
  for (char c : a) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
        c == ';' || c == '"' || c == '\\')
      return false;
  }
  return true;
}

std::string SubmitKey(const std::string& key) {
  return kv::KeyBuilder(kv::GlobalPrefix("outq_submit")).Str(key).Build();
}

}  // namespace

// ---- DKIM keys --------------------------------------------------------------

absl::StatusOr<std::vector<outbound::SigningKey>> DkimKeyCache::KeysFor(const std::string& domain) {
  absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(domain);
    if (it != cache_.end() && it->second.expires > now) return it->second.keys;
  }
  Entry e;
  absl::StatusOr<tenant::v1::GetDkimSigningKeyResponse> r = backend_->GetDkimSigningKey(domain);
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kNotFound) return r.status();
    e.expires = now + absl::Seconds(60);
  } else {
    for (const auto& k : r->keys()) {
      absl::StatusOr<mailauth::DkimPrivateKey> key =
          mailauth::DkimPrivateKey::FromPem(k.private_key_pem());
      if (!key.ok()) {
        log::Warn("DKIM key unusable",
                  {{"domain", domain}, {"selector", k.selector()}, {"status", key.status()}});
        continue;
      }
      e.keys.push_back({k.domain(), k.selector(), *std::move(key)});
    }
    uint32_t ttl = r->cache_ttl_seconds() > 0 ? r->cache_ttl_seconds() : 300;
    e.expires = now + absl::Seconds(ttl);
  }
  absl::MutexLock lock(&mu_);
  if (cache_.size() > 10000) cache_.clear();
  cache_[domain] = e;
  return e.keys;
}

absl::StatusOr<std::string> SignOutgoing(const std::string& message, DkimKeyCache& keys,
                                         absl::Time now) {
  std::string domain = FromDomain(message);
  if (domain.empty()) return message;
  ASSIGN_OR_RETURN(std::vector<outbound::SigningKey> ks, keys.KeysFor(domain));
  // Each signature covers the message without the others (DKIM-Signature
  // fields are not in the signed header list): prepend them all.
  // One signing call for every key (the body hashed once), and the message
  // copied once.
  ASSIGN_OR_RETURN(std::string out, outbound::SignatureFields(message, ks, now));
  out += message;
  return out;
}

// ---- Outbound ---------------------------------------------------------------

std::unique_ptr<Outbound> Outbound::Create(const Options& options, Backend* backend,
                                           std::unique_ptr<store::Store> store,
                                           std::unique_ptr<mailauth::Resolver> mx_dns,
                                           prometheus::Registry* registry) {
  std::unique_ptr<Outbound> o(new Outbound());
  o->options_ = options;
  o->backend_ = backend;
  o->keys_ = std::make_unique<DkimKeyCache>(backend);
  prometheus::Family<prometheus::Counter>* results = nullptr;
  prometheus::Family<prometheus::Counter>* sts_failures = nullptr;
  if (registry != nullptr) {
    sts_failures = &prometheus::BuildCounter()
                        .Name("mailgrid_relay_mta_sts_failures_total")
                        .Help(
                            "MTA-STS (RFC 8461) failures on direct MX delivery, by mode (testing: "
                            "delivered and reported; enforce: not sent to that MX) and kind "
                            "(mx_mismatch, starttls, certificate)")
                        .Register(*registry);
    auto& gauges = prometheus::BuildGauge()
                       .Name("mailgrid_relay_queue")
                       .Help(
                           "Outbound queue: depth (entries, recounted every 5 min), oldest_age_"
                           "seconds, store_up (1 when the queue store answered the last probe)")
                       .Register(*registry);
    o->depth_ = &gauges.Add({{"what", "depth"}});
    o->oldest_age_ = &gauges.Add({{"what", "oldest_age_seconds"}});
    o->store_up_ = &gauges.Add({{"what", "store_up"}});
    results = &prometheus::BuildCounter()
                   .Name("mailgrid_relay_deliveries_total")
                   .Help(
                       "Queued recipients attempted, by path (remote SMTP, local mailbox) and "
                       "result (delivered, deferred, bounced)")
                   .Register(*registry);
    o->submissions_ = &prometheus::BuildCounter()
                           .Name("mailgrid_relay_queued_total")
                           .Help("Messages queued for remote delivery, by source and result")
                           .Register(*registry);
  }
  if (!store) {
    log::Warn("no queue store (--queue-store, --tenantd): remote recipients get 451 4.3.0");
    return o;
  }
  o->store_ = std::move(store);
  outbound::QueueOptions qo;
  qo.retry.initial_backoff = options.queue_initial_backoff;
  qo.retry.max_backoff = options.queue_max_backoff;
  qo.retry.lifetime = options.queue_lifetime;
  qo.retry.delay_warning_after = options.queue_delay_warning;
  qo.lease_duration = options.queue_lease;
  qo.completion_ride_wait = options.queue_removal_ride_wait;
  if (registry != nullptr) {
    auto& writes = prometheus::BuildCounter()
                       .Name("mailgrid_relay_queue_writes_total")
                       .Help(
                           "Write requests the outbound queue sent to its store, by kind "
                           "(enqueue, update: any other change sent alone), and removals "
                           "carried by an enqueue's request (carried)")
                       .Register(*registry);
    prometheus::Counter* enqueue = &writes.Add({{"kind", "enqueue"}});
    prometheus::Counter* update = &writes.Add({{"kind", "update"}});
    prometheus::Counter* carried = &writes.Add({{"kind", "carried"}});
    qo.on_write = [enqueue, update, carried](const char* kind) {
      std::string_view k(kind);
      (k == "enqueue" ? enqueue : k == "update" ? update : carried)->Increment();
    };
  }
  o->queue_ = std::make_unique<outbound::Queue>(o->store_.get(), qo);
  o->routes_ = std::make_unique<RouteStore>(o->store_.get());
  o->held_ = std::make_unique<HeldStore>(o->store_.get());
  o->mx_dns_ = std::move(mx_dns);
  if (!options.route_regions.empty()) {
    auto regions = outbound::RouteTable::ParseRegionMap(options.route_regions);
    if (regions.ok()) {
      o->routes_->SetRegionMap(*std::move(regions));
    } else {
      log::Warn("--route-regions ignored", {{"status", regions.status()}});
    }
  }
  o->transport_ = std::make_unique<RelayTransport>(o->options_, backend, o->mx_dns_.get(),
                                                   o->routes_.get(), results, &o->policies_,
                                                   sts_failures);
  outbound::RunnerOptions ro;
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  ro.holder = absl::StrCat(host, "/", getpid());
  o->runner_holder_ = ro.holder;
  ro.reporting_mta = options.hostname;
  ro.threads = options.queue_threads;
  ro.poll_interval = options.queue_poll_interval;
  ro.destination_concurrency = options.destination_concurrency;
  o->runner_ = std::make_unique<outbound::QueueRunner>(o->queue_.get(), o->transport_.get(), ro);
  return o;
}

Outbound::~Outbound() { Stop(); }

void Outbound::Start() {
  if (started_ || !queue_) return;
  started_ = true;
  probe_ = std::thread([this] { ProbeLoop(); });
  if (options_.queue_threads > 0) runner_->Start();
}

void Outbound::Stop() {
  if (!started_) return;
  started_ = false;
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (runner_) runner_->Stop();
  if (probe_.joinable()) probe_.join();
}

void Outbound::ProbeLoop() {
  while (!stop_.HasBeenNotified()) {
    Probe();
    stop_.WaitForNotificationWithTimeout(available_.load() ? absl::Seconds(10) : absl::Seconds(2));
  }
}

void Outbound::Probe() {
  // Oldest entry: the first record key (queue ids start with the creation
  // micros, so key order is age order): a one-key scan, also the liveness
  // probe of the store.
  kv::v1::ScanRequest scan;
  scan.set_prefix(kv::GlobalPrefix("outq"));
  scan.set_keys_only(true);
  scan.set_limit(1);
  absl::StatusOr<kv::v1::ScanResponse> r = store_->Scan(scan, absl::Now() + absl::Seconds(5));
  bool was = available_.exchange(r.ok());
  if (was != r.ok()) {
    if (r.ok())
      log::Info("queue store reachable: remote delivery on");
    else
      log::Warn("queue store unreachable: remote recipients get 451", {{"status", r.status()}});
  }
  if (store_up_) store_up_->Set(r.ok() ? 1 : 0);
  if (!r.ok()) return;
  absl::Time now = absl::Now();
  if (oldest_age_ != nullptr) {
    double age = 0;
    if (r->entries_size() > 0) {
      kv::KeyReader reader(std::string_view(r->entries(0).key()));
      uint64_t micros = 0;
      if (reader.ConsumePrefix(kv::GlobalPrefix("outq"))) {
        absl::StatusOr<std::string> id = reader.Str();
        if (id.ok() && id->size() >= 16 && absl::SimpleHexAtoi(id->substr(0, 16), &micros)) {
          age = absl::ToDoubleSeconds(now - absl::FromUnixMicros(static_cast<int64_t>(micros)));
        }
      }
    }
    oldest_age_->Set(age);
  }
  // The depth is a full count of the record keys: paged, and at most every
  // kDepthRecount per replica (a 1M-entry queue is 1M keys: not every 10 s).
  if (depth_ != nullptr && now - depth_counted_at_ >= kDepthRecount) {
    depth_counted_at_ = now;
    absl::StatusOr<uint64_t> n = CountRecords();
    if (n.ok()) depth_->Set(static_cast<double>(*n));
  }
  if (now - purged_at_ >= kPurgeInterval) {
    purged_at_ = now;
    PurgeSubmitRecords(now);
  }
}

absl::StatusOr<uint64_t> Outbound::CountRecords() {
  kv::v1::ScanRequest scan;
  scan.set_prefix(kv::GlobalPrefix("outq"));
  scan.set_keys_only(true);
  scan.set_limit(10000);
  scan.set_consistency(kv::v1::STALE);  // a count, not a decision: any replica may answer
  uint64_t n = 0;
  do {
    if (stop_.HasBeenNotified()) return absl::CancelledError("stopping");
    ASSIGN_OR_RETURN(kv::v1::ScanResponse page, store_->Scan(scan, absl::Now() + absl::Seconds(30)));
    n += static_cast<uint64_t>(page.entries_size());
    scan.set_continuation(page.continuation());
  } while (!scan.continuation().empty());
  return n;
}

// SubmitMessage idempotency records: G("outq_submit")/key -> the response,
// and the time index G("outq_submit_at")/I64(micros)/key -> "" so that the
// records older than kSubmitRecordTtl (relay.proto: 24 h) are found by one
// range scan. Every replica purges; deletes are idempotent.
void Outbound::PurgeSubmitRecords(absl::Time now) {
  const std::string prefix = kv::GlobalPrefix("outq_submit_at");
  for (int round = 0; round < 100 && !stop_.HasBeenNotified(); ++round) {
    kv::v1::ScanRequest scan;
    scan.mutable_key_range()->set_start(prefix);
    scan.mutable_key_range()->set_end(
        kv::KeyBuilder(prefix).I64(absl::ToUnixMicros(now - kSubmitRecordTtl)).Build());
    scan.set_keys_only(true);
    scan.set_limit(500);
    absl::StatusOr<kv::v1::ScanResponse> page = store_->Scan(scan, absl::Now() + absl::Seconds(10));
    if (!page.ok() || page->entries_size() == 0) return;
    kv::v1::WriteRequest w;
    for (const auto& e : page->entries()) {
      kv::KeyReader reader(std::string_view(e.key()));
      if (!reader.ConsumePrefix(prefix) || !reader.I64().ok()) continue;
      absl::StatusOr<std::string> key = reader.Str();
      if (key.ok()) w.add_ops()->mutable_delete_()->set_key(SubmitKey(*key));
      w.add_ops()->mutable_delete_()->set_key(e.key());
    }
    absl::StatusOr<kv::v1::WriteResponse> done = store_->Write(w, absl::Now() + absl::Seconds(10));
    if (!done.ok()) {
      log::Warn("idempotency records not purged", {{"status", done.status()}});
      return;
    }
    purged_total_ += static_cast<uint64_t>(page->entries_size());
    if (page->entries_size() < 500) return;
  }
}

absl::StatusOr<std::string> Outbound::SignAndEnqueue(const std::string& tenant_id,
                                                     const std::string& envelope_from,
                                                     const std::vector<std::string>& rcpts,
                                                     const std::string& message) {
  if (!queue_) return absl::UnavailableError("no queue store configured");
  absl::Time now = absl::Now();
  auto count = [this](const char* result) {
    if (submissions_) submissions_->Add({{"result", result}}).Increment();
  };
  absl::StatusOr<std::string> signed_message = SignOutgoing(message, *keys_, now);
  if (!signed_message.ok()) {
    count("sign_failed");
    if (signed_message.status().code() == absl::StatusCode::kInvalidArgument) {
      // A message DKIM cannot sign (no From:, malformed header): sent as is.
      log::Warn("message not DKIM-signed", {{"status", signed_message.status()}});
      signed_message = message;
    } else {
      return absl::UnavailableError(
          absl::StrCat("DKIM keys unavailable: ", signed_message.status().message()));
    }
  }
  outbound::NewMessage m;
  m.tenant_id = tenant_id;
  m.envelope_from = envelope_from;
  m.recipients = rcpts;
  m.body = *std::move(signed_message);
  absl::StatusOr<std::string> id;
  if (options_.queue_threads > 0 && runner_->Accepting()) {
    // Queued already leased to this relayd's runner and handed over in
    // memory: delivery starts now, with no scan, lease write or body read.
    absl::StatusOr<outbound::Lease> lease = queue_->EnqueueLeased(m, runner_holder_, now);
    if (lease.ok()) {
      id = lease->queue_id;
      if (!runner_->Offer(*lease, std::move(m.body))) (void)queue_->Abandon(*lease, absl::Now());
    } else {
      id = lease.status();
    }
  } else {
    id = queue_->Enqueue(m, now);
  }
  count(id.ok() ? "queued" : "store_failed");
  if (!id.ok() && id.status().code() != absl::StatusCode::kInvalidArgument) {
    available_.store(false);  // the probe turns it back on
    return absl::UnavailableError(absl::StrCat("queue store: ", id.status().message()));
  }
  return id;
}

void Outbound::SendBounceDsn(const outbound::CompletionReport& report) {
  if (!queue_) return;
  absl::Time now = absl::Now();
  auto dsn = outbound::MakeDsn(report.entry, report.newly_bounced, report.body,
                               outbound::DsnKind::kFailure, options_.hostname, now);
  if (!dsn) return;
  auto id = queue_->Enqueue(*dsn, now);
  if (!id.ok()) log::Warn("bounce DSN not queued", {{"status", id.status()}});
}

absl::StatusOr<v1::SubmitMessageResponse> Outbound::SubmitInternal(
    const v1::SubmitMessageRequest& req) {
  if (req.recipients_size() == 0) {
    return rpc::InvalidField("recipients", "EMPTY", "at least one recipient");
  }
  if (!SafeAddress(req.envelope_from(), true)) {
    return rpc::InvalidField("envelope_from", "BAD_ADDRESS", "not a mailbox address");
  }
  for (int i = 0; i < req.recipients_size(); ++i) {
    if (!SafeAddress(req.recipients(i), false)) {
      return rpc::InvalidField(absl::StrCat("recipients[", i, "]"), "BAD_ADDRESS",
                               "not a mailbox address");
    }
  }
  if (req.message().empty()) return rpc::InvalidField("message", "EMPTY", "the message is empty");
  if (req.message().size() > static_cast<size_t>(options_.max_message_size)) {
    return rpc::InvalidField("message", "TOO_LARGE", "over the message size limit");
  }
  if (req.idempotency_key().size() > 128) {
    return rpc::InvalidField("idempotency_key", "TOO_LONG", "at most 128 bytes");
  }
  absl::Time now = absl::Now();
  // A repeated key answers the first result (recorded in the queue store).
  if (!req.idempotency_key().empty() && store_) {
    kv::v1::GetRequest get;
    get.set_key(SubmitKey(req.idempotency_key()));
    auto g = store_->Get(get, now + absl::Seconds(10));
    if (!g.ok()) return absl::UnavailableError("queue store unavailable");
    v1::SubmitMessageResponse first;
    if (g->found() && first.ParseFromString(g->value())) return first;
  }
  tenant::v1::SenderContext sender;
  sender.set_envelope_from(req.envelope_from());
  std::vector<std::string> remote;
  std::vector<std::string> local;
  std::vector<MailboxTarget> targets;
  for (int i = 0; i < req.recipients_size(); ++i) {
    absl::StatusOr<ResolvedRecipient> r = ResolveRecipient(*backend_, req.recipients(i), sender);
    if (!r.ok()) {
      absl::StatusCode c = r.status().code();
      if (c == absl::StatusCode::kNotFound || c == absl::StatusCode::kInvalidArgument) {
        return rpc::InvalidField(absl::StrCat("recipients[", i, "]"), "BAD_ADDRESS",
                                 "no such local recipient");
      }
      return absl::UnavailableError(absl::StrCat("tenantd: ", r.status().message()));
    }
    if (r->remote) {
      remote.push_back(req.recipients(i));
      continue;
    }
    local.push_back(req.recipients(i));
    for (const auto& m : r->response.recipients()) targets.push_back({m.shard(), m.mailbox_id()});
  }
  if (!remote.empty() && !available()) {
    return absl::UnavailableError("outbound queue unavailable");
  }
  v1::SubmitMessageResponse resp;
  std::string id = req.idempotency_key().empty()
                       ? DeliveryId(req.envelope_from(), local, req.message())
                       : DeliveryId("submit", {req.idempotency_key()}, "");
  if (!targets.empty()) {
    std::string stored =
        LocalTraceFields(options_.hostname, req.envelope_from(), id.substr(0, 16), now) +
        req.message();
    ASSIGN_OR_RETURN(auto statuses, DeliverToMailboxes(*backend_, id, stored, now, targets));
    for (const auto& [mailbox, st] : statuses) {
      if (st == mailstore::v1::DELIVERY_STATUS_TEMPORARY_FAILURE ||
          st == mailstore::v1::DELIVERY_STATUS_WRONG_SHARD ||
          st == mailstore::v1::DELIVERY_STATUS_UNSPECIFIED) {
        return absl::UnavailableError("mail store temporary failure; retry");
      }
      if (st == mailstore::v1::DELIVERY_STATUS_QUOTA_EXCEEDED ||
          st == mailstore::v1::DELIVERY_STATUS_MAILBOX_NOT_FOUND) {
        log::Warn("internal submission not stored for a mailbox",
                  {{"mailbox_id", mailbox}, {"status", static_cast<int>(st)}});
      }
    }
    for (const std::string& a : local) resp.add_delivered_locally(a);
  }
  if (!remote.empty()) {
    TraceInfo t;
    t.hostname = options_.hostname;
    t.helo = options_.hostname;
    t.client_ip = "127.0.0.1";
    t.queue_id = id.substr(0, 16);
    t.envelope_from = req.envelope_from();
    t.recipients = remote;
    t.at = now;
    ASSIGN_OR_RETURN(std::string qid, SignAndEnqueue(req.tenant_id(), req.envelope_from(), remote,
                                                     ReceivedField(t) + req.message()));
    resp.set_queue_id(qid);
    for (const std::string& a : remote) resp.add_queued(a);
  }
  if (!req.idempotency_key().empty() && store_) {
    kv::v1::WriteRequest w;
    auto* put = w.add_ops()->mutable_put();
    put->set_key(SubmitKey(req.idempotency_key()));
    put->set_value(resp.SerializeAsString());
    // Its time index, for the purge after 24 h (PurgeSubmitRecords).
    auto* at = w.add_ops()->mutable_put();
    at->set_key(kv::KeyBuilder(kv::GlobalPrefix("outq_submit_at"))
                    .I64(absl::ToUnixMicros(now))
                    .Str(req.idempotency_key())
                    .Build());
    auto written = store_->Write(w, absl::Now() + absl::Seconds(10));
    if (!written.ok()) log::Warn("idempotency record not written", {{"status", written.status()}});
  }
  return resp;
}

absl::StatusOr<std::string> Outbound::HoldForModeration(const ModerationHold& hold,
                                                        const std::string& envelope_from,
                                                        const std::string& message) {
  if (!queue_) return absl::UnavailableError("no queue store configured");
  absl::Time now = absl::Now();
  outbound::NewMessage m;
  m.tenant_id = hold.tenant_id;
  m.envelope_from = envelope_from;
  m.recipients = {hold.group_address};
  m.body = message;
  m.hold_reason = "moderation";
  absl::StatusOr<std::string> id = queue_->Enqueue(m, now);
  if (!id.ok()) return absl::UnavailableError(absl::StrCat("queue store: ", id.status().message()));
  HeldRecord r;
  v1::HeldMessage& h = r.held;
  h.set_held_id(*id);
  h.set_queue_id(*id);
  h.set_tenant_id(hold.tenant_id);
  h.set_kind(v1::HOLD_KIND_MODERATION);
  h.set_state(v1::HELD_STATE_HELD);
  std::vector<std::string> from = FromAddresses(message);
  h.mutable_sender()->set_address(from.empty() ? envelope_from : from.front());
  h.add_recipients(hold.group_address);
  std::vector<std::string> subject = HeaderValues(message, "Subject");
  if (!subject.empty()) h.set_subject(std::string(absl::StripAsciiWhitespace(subject.front())).substr(0, 998));
  h.set_size_bytes(message.size());
  h.set_group_address(hold.group_address);
  h.mutable_held_at()->set_seconds(absl::ToUnixSeconds(now));
  h.mutable_expires_at()->set_seconds(absl::ToUnixSeconds(now + options_.queue_lifetime));
  r.moderators = hold.moderators;
  absl::Status st = held_->Put(r);
  if (!st.ok()) {
    // Without its record nobody could decide: take the entry back out.
    v1::DeleteQueueEntryRequest del;
    del.set_queue_id(*id);
    del.set_reason("moderation record not written");
    (void)queue_->DeleteQueueEntry(del, "", now);
    return absl::UnavailableError(absl::StrCat("queue store: ", st.message()));
  }
  log::Info("message held for moderation", {{"held_id", *id}, {"group", hold.group_address}});
  return *id;
}

absl::StatusOr<v1::HeldMessage> Outbound::DecideHeld(const std::string& held_id, bool approve,
                                                     const std::string& reason,
                                                     const common::v1::Actor& by) {
  if (!queue_) return absl::UnavailableError("no queue store configured");
  ASSIGN_OR_RETURN(HeldRecord r, held_->Get(held_id));
  if (r.held.state() != v1::HELD_STATE_HELD) {
    return rpc::Precondition("ALREADY_DECIDED", "this message was already decided");
  }
  absl::Time now = absl::Now();
  std::string kind = r.held.kind() == v1::HOLD_KIND_AUDIT ? "audit" : "moderation";
  std::string body;
  if (!approve) {
    absl::StatusOr<std::string> b = queue_->ReadBody(r.held.queue_id());
    if (b.ok()) body = *std::move(b);
  }
  absl::StatusOr<outbound::QueueEntry> e = queue_->DecideHold(r.held.queue_id(), kind, approve, "", now);
  if (!e.ok()) {
    if (absl::IsFailedPrecondition(e.status()))
      return rpc::Precondition("ALREADY_DECIDED", "this message was already decided");
    return e.status();
  }
  r.held.set_state(approve ? v1::HELD_STATE_APPROVED : v1::HELD_STATE_REJECTED);
  *r.held.mutable_decided_by() = by;
  r.held.mutable_decided_at()->set_seconds(absl::ToUnixSeconds(now));
  r.held.set_decision_reason(reason);
  RETURN_IF_ERROR(held_->Put(r));
  log::Info("held message decided", {{"held_id", held_id}, {"approved", approve},
                                     {"by", by.user_id().empty() ? by.service() : by.user_id()}});
  if (!approve && !r.held.sender().address().empty()) {
    // The sender is told (null sender: never bounced back).
    std::string text = absl::StrCat(
        "From: Mail Delivery System <postmaster@", options_.hostname, ">\r\n",
        "To: <", r.held.sender().address(), ">\r\n",
        "Subject: Your message to ", r.held.group_address(), " was not approved\r\n",
        "Date: ", Rfc5322Date(now), "\r\n",
        "Message-ID: <held-", held_id, "@", options_.hostname, ">\r\n",
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n\r\n",
        "Your message \"", r.held.subject(), "\" to ", r.held.group_address(),
        " was rejected by a moderator.\r\nReason: ", reason, "\r\n");
    absl::Status sent = Submit("", {r.held.sender().address()}, text);
    if (!sent.ok()) log::Warn("rejection notice not sent", {{"status", sent}});
  }
  return r.held;
}

absl::Status Outbound::Submit(std::string mail_from, std::vector<std::string> rcpts,
                              std::string message) {
  v1::SubmitMessageRequest req;
  req.set_envelope_from(std::move(mail_from));
  for (std::string& r : rcpts) req.add_recipients(std::move(r));
  req.set_message(std::move(message));
  req.set_kind(v1::SUBMISSION_KIND_OTHER);
  return SubmitInternal(req).status();
}

}  // namespace mailgrid::relay
