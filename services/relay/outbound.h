// relayd's outbound side (issue 9) over libs/outbound: the queue on the
// replicated store (replica::ClientStore over --queue-store, default the
// tenantd group), DKIM signing with the From: domain's ACTIVE keys from
// tenantd (GetDkimSigningKey, cached), the queue runner (every relayd
// replica runs --queue-threads workers; leases make that safe), delivery
// by MX through c-ares (--dns-server) or smart-host routes from the store,
// local delivery of queued mail whose domain is hosted (DSNs to our users),
// and internal submission (OutboundSubmitter, SubmitMessage).
//
// Threads: the runner's workers; one probe thread that checks the store
// every few seconds (available(), the oldest entry's age: one-key scans),
// recounts the queue depth every 5 min (a paged keys-only scan: exact but
// O(n), so not every 10 s; the deliveries/queued counters give the flow in
// between) and purges SubmitMessage idempotency records older than 24 h
// every 10 min (a time index, so O(purged)). Submission enqueues already
// leased to this relayd's runner and hands the message over in memory.
// Failure behaviour: store unreachable → available() false: remote RCPTs
// get 451 4.3.0, local mail flows. tenantd down at signing time → the
// message is refused with 451 rather than sent unsigned.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "libs/mailauth/dns.h"
#include "libs/outbound/queue.h"
#include "libs/outbound/runner.h"
#include "libs/outbound/signer.h"
#include "libs/store/store.h"
#include "mailgrid/relay/v1/relay.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "services/relay/backend.h"
#include "services/relay/config.h"
#include "services/relay/held_store.h"
#include "services/relay/local_delivery.h"
#include "services/relay/route_store.h"
#include "services/relay/submitter.h"

namespace mailgrid::relay {

class PolicyCache;  // mail_policy.h

// The ACTIVE DKIM keys of From: domains, from tenantd, cached per
// cache_ttl_seconds (NOT_FOUND: 60 s, unsigned).
class DkimKeyCache {
 public:
  explicit DkimKeyCache(Backend* backend) : backend_(backend) {}
  // Empty: the domain is not ours or has no active key (send unsigned).
  absl::StatusOr<std::vector<outbound::SigningKey>> KeysFor(const std::string& domain);

 private:
  struct Entry {
    std::vector<outbound::SigningKey> keys;
    absl::Time expires;
  };
  Backend* backend_;
  absl::Mutex mu_;
  std::map<std::string, Entry> cache_ ABSL_GUARDED_BY(mu_);
};

// The message with one DKIM-Signature per key prepended (the From: domain
// of the message chooses the keys); unchanged when there are none.
absl::StatusOr<std::string> SignOutgoing(const std::string& message, DkimKeyCache& keys,
                                         absl::Time now);

// ResolveRecipient (local_delivery.h) for each of `rcpts`, in order, with
// ONE Backend::ResolveMany call when there are several (queued local
// delivery: a DSN or notice to many of our users is one tenantd round
// trip). A failed or short ResolveMany (an older tenantd) falls back to
// Resolve one by one; per-address results are the same either way.
std::vector<absl::StatusOr<ResolvedRecipient>> ResolveRecipients(
    Backend& backend, const std::vector<std::string>& rcpts,
    const tenant::v1::SenderContext& sender);

class Outbound final : public OutboundSubmitter {
 public:
  // `store` null: no queue (remote recipients refused with 451).
  static std::unique_ptr<Outbound> Create(const Options& options, Backend* backend,
                                          std::unique_ptr<store::Store> store,
                                          std::unique_ptr<mailauth::Resolver> mx_dns,
                                          prometheus::Registry* registry);
  ~Outbound() override;

  void Start();  // runner and probe threads
  void Stop();
  // Tenant policies for monitoring copies of mail the queue delivers to
  // local mailboxes (set once, before Start; null: no copies).
  void SetPolicies(PolicyCache* policies) { policies_.store(policies); }

  // The queue is configured and answered the last probe.
  bool available() const { return queue_ != nullptr && available_.load(); }

  // DKIM-signs `message` and queues it for `rcpts`; the queue id once
  // committed.
  absl::StatusOr<std::string> SignAndEnqueue(const std::string& tenant_id,
                                             const std::string& envelope_from,
                                             const std::vector<std::string>& rcpts,
                                             const std::string& message);

  // SubmitMessage: validation, idempotency, local now + remote queued.
  absl::StatusOr<v1::SubmitMessageResponse> SubmitInternal(const v1::SubmitMessageRequest& req);
  // Removes idempotency records older than 24 h (the probe thread calls it
  // every 10 min; public for tests). Returns how many were removed so far.
  uint64_t PurgeSubmitRecordsNow(absl::Time now) {
    PurgeSubmitRecords(now);
    return purged_total_;
  }
  absl::Status Submit(std::string mail_from, std::vector<std::string> rcpts,
                      std::string message) override;

  // Queues the failure DSN of a BounceQueueEntry.
  void SendBounceDsn(const outbound::CompletionReport& report);

  // A message posted to a MODERATED group: queued HELD ("moderation") for
  // the group address, with its HeldMessage record; the held id.
  struct ModerationHold {
    std::string tenant_id, group_address, group_id;
    std::vector<std::string> moderators;
  };
  absl::StatusOr<std::string> HoldForModeration(const ModerationHold& hold,
                                                const std::string& envelope_from,
                                                const std::string& message);
  // Approve (released for delivery) or reject (dropped; the sender gets a
  // notice with `reason`). FAILED_PRECONDITION ALREADY_DECIDED.
  absl::StatusOr<v1::HeldMessage> DecideHeld(const std::string& held_id, bool approve,
                                             const std::string& reason,
                                             const common::v1::Actor& by);
  HeldStore* held() { return held_.get(); }

  outbound::Queue* queue() { return queue_.get(); }
  RouteStore* routes() { return routes_.get(); }

 private:
  Outbound() = default;
  void Probe();
  void ProbeLoop();
  absl::StatusOr<uint64_t> CountRecords();
  void PurgeSubmitRecords(absl::Time now);

  static constexpr absl::Duration kDepthRecount = absl::Minutes(5);
  static constexpr absl::Duration kPurgeInterval = absl::Minutes(10);
  static constexpr absl::Duration kSubmitRecordTtl = absl::Hours(24);

  Options options_;
  Backend* backend_ = nullptr;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<outbound::Queue> queue_;
  std::unique_ptr<RouteStore> routes_;
  std::unique_ptr<HeldStore> held_;
  std::unique_ptr<mailauth::Resolver> mx_dns_;
  std::unique_ptr<DkimKeyCache> keys_;
  std::unique_ptr<outbound::Transport> transport_;
  std::unique_ptr<outbound::QueueRunner> runner_;
  std::string runner_holder_;  // this process's lease holder name
  std::atomic<PolicyCache*> policies_{nullptr};
  // Probe thread only.
  absl::Time depth_counted_at_ = absl::InfinitePast();
  absl::Time purged_at_ = absl::InfinitePast();
  uint64_t purged_total_ = 0;
  std::atomic<bool> available_{false};
  std::thread probe_;
  absl::Notification stop_;
  bool started_ = false;
  prometheus::Gauge* depth_ = nullptr;
  prometheus::Gauge* oldest_age_ = nullptr;
  prometheus::Gauge* store_up_ = nullptr;
  prometheus::Family<prometheus::Counter>* submissions_ = nullptr;  // {kind, result}
};

}  // namespace mailgrid::relay
