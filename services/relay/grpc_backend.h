// Backend over the real peers: tenantd (DirectoryService), identityd
// (AuthService), mailstored (MailboxService) by gRPC with relayd's service
// token, and Redis for submission rate limits.
//
// Failure behaviour: an unconfigured peer fails its calls with UNAVAILABLE
// (the SMTP side answers 4xx); Redis down means no rate limiting (logged),
// never refused mail: Redis holds only what may be lost.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/auth/service_token.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "libs/redis/client.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "mailgrid/mailstore/v1/mailbox.grpc.pb.h"
#include "mailgrid/tenant/v1/directory.grpc.pb.h"
#include "mailgrid/tenant/v1/domain.grpc.pb.h"
#include "services/relay/backend.h"
#include "services/relay/config.h"

namespace mailgrid::relay {

// How ResolveStreams spreads its requests.
struct ResolveStreamsOptions {
  // Streams, used round robin. One by default: every request then shares
  // one stream, so those that queue behind the write in flight go out in
  // one message and tenantd answers them in one (batches, below): per
  // request a fraction of a read, a write and a wake-up on each side.
  // Measured (session 24, 3 replicas and the load on 2 cores, 8 in
  // flight, same runs): one stream 2.4-2.9 requests per message and
  // 0.017-0.036 ms of server CPU per request; one stream per replica
  // 1.06-1.08 and 0.077-0.14 ms, a third of the requests/s.
  size_t streams = 1;
  // The replica stream i opens on first: (first_replica + i) % replicas
  // (relayd picks it at random, so several relayds spread over the group).
  size_t first_replica = 0;
  // Batched requests and answers (directory.proto's ResolveStream); off:
  // one request per message and per answer, as before session 23 (for
  // A/B runs).
  bool batches = true;
};

// Resolve over one (or a few) long-lived DirectoryService.ResolveStream streams
// (relayd's RCPT-cache misses): gRPC's per-call cost, which capped unary
// Resolve near 20k/s on two cores, is paid once per stream. Each request
// goes on one stream (round robin) under an id of its own and its caller
// gets its own answer; many callers share each stream.
//
// A stream that fails (tenantd restarted, a replica down, an older tenantd
// without the RPC: UNIMPLEMENTED) fails the requests waiting on it with
// UNAVAILABLE, so their callers fall back to unary Resolve; it is opened
// again by the first request after a pause (kReopenAfter; longer after
// UNIMPLEMENTED), on the next replica. A stream opened with a service token
// that has since been refreshed is half-closed (its answers still arrive)
// and a new one opened, so tenantd never sees an expired token on it.
// Thread-safe; the destructor cancels the streams and waits for them.
class ResolveStreams {
 public:
  // The channel to replica `i` of the group, and the `authorization`
  // header value to open a stream with ("" none).
  using ChannelFn = std::function<absl::StatusOr<std::shared_ptr<grpc::Channel>>(size_t replica)>;
  using AuthFn = std::function<absl::StatusOr<std::string>()>;
  // The answer (its result: a response, or the address's error), or the
  // stream's failure (UNAVAILABLE ...): then ask unary Resolve.
  using Done = std::function<void(absl::StatusOr<tenant::v1::ResolveResult>)>;

  // `options.streams` streams over `replicas` replicas.
  ResolveStreams(ChannelFn channel, AuthFn authorization, size_t replicas,
                 const ResolveStreamsOptions& options);
  ~ResolveStreams();
  ResolveStreams(const ResolveStreams&) = delete;
  ResolveStreams& operator=(const ResolveStreams&) = delete;

  // Sends `request`; `done` runs exactly once, on a gRPC thread (or inline
  // when no stream can be used now).
  void Start(const tenant::v1::ResolveRequest& request, Done done);
  // Start and wait until `deadline` (DEADLINE_EXCEEDED after it).
  absl::StatusOr<tenant::v1::ResolveResult> Resolve(const tenant::v1::ResolveRequest& request,
                                                    absl::Time deadline);

  // How many requests went out on a stream, and how many streams were opened
  // (tests, metrics).
  int64_t sent() const { return sent_.load(); }
  int64_t opened() const { return opened_.load(); }
  // Request messages written (sent() / messages(): requests per message,
  // above 1 once tenantd takes batches and requests queue behind writes).
  int64_t messages() const { return messages_.load(); }

  static constexpr absl::Duration kReopenAfter = absl::Seconds(1);
  static constexpr absl::Duration kReopenUnimplementedAfter = absl::Minutes(1);

 private:
  class Stream;
  struct Slot {
    std::shared_ptr<Stream> stream;
    size_t replica = 0;
    absl::Time reopen_at = absl::InfinitePast();
  };
  // The slot's stream, (re)opened as needed; null when it may not be now.
  // A stream opened with an older token is handed back in `retired`, for
  // the caller to Retire once mu_ is released.
  std::shared_ptr<Stream> StreamFor(Slot& slot, const std::string& header,
                                    std::shared_ptr<Stream>* retired)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ChannelFn channel_;
  const AuthFn authorization_;
  const size_t replicas_;
  const bool batches_;
  std::atomic<uint64_t> next_{0};
  // The streams count into messages_ (the destructor waits until every
  // stream has ended, so none uses it after).
  std::atomic<int64_t> sent_{0}, opened_{0}, messages_{0};
  absl::Mutex mu_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  // Every stream not yet known ended (the destructor waits for them).
  std::vector<std::shared_ptr<Stream>> live_ ABSL_GUARDED_BY(mu_);
};

class GrpcBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<GrpcBackend>> Create(const Options& options,
                                                             const std::string& tls_cert,
                                                             const std::string& tls_key);

  // Over a ResolveStream (ResolveStreams above); unary Resolve when no
  // stream can carry it.
  absl::StatusOr<tenant::v1::ResolveResponse> Resolve(
      const tenant::v1::ResolveRequest& request) override;
  absl::StatusOr<tenant::v1::ResolveManyResponse> ResolveMany(
      const tenant::v1::ResolveManyRequest& request) override;
  absl::StatusOr<bool> CanSendAs(const std::string& user_id, const std::string& address) override;
  absl::StatusOr<identity::v1::CheckSaslResponse> CheckSasl(
      const identity::v1::CheckSaslRequest& request) override;
  absl::StatusOr<mailstore::v1::DeliverBatchResponse> Deliver(
      uint32_t shard, const mailstore::v1::DeliverBatchRequest& request) override;
  DeliveryRetry delivery_retry() const override { return options_.delivery_retry; }
  absl::Status CountSubmission(const std::string& tenant_id, const std::string& user_id) override;
  absl::StatusOr<int64_t> CountSubmissionRoom(const std::string& tenant_id,
                                              const std::string& user_id) override;
  bool CountsSubmissions() const override {
    return redis_ != nullptr &&
           (options_.rate_user_per_hour > 0 || options_.rate_tenant_per_hour > 0);
  }
  absl::StatusOr<tenant::v1::GetDkimSigningKeyResponse> GetDkimSigningKey(
      const std::string& domain) override;
  absl::StatusOr<tenant::v1::SieveScript> GetSieveScript(const std::string& user_id) override;
  absl::StatusOr<bool> SetOnce(const std::string& key, absl::Duration ttl) override;
  void Forget(const std::string& key) override;
  absl::StatusOr<tenant::v1::AuditPolicy> GetAuditPolicy(const std::string& tenant_id) override;
  absl::StatusOr<tenant::v1::MonitoringPolicy> GetMonitoringPolicy(
      const std::string& tenant_id) override;
  absl::StatusOr<tenant::v1::User> GetUser(const std::string& user_id) override;
  absl::StatusOr<tenant::v1::Department> GetDepartment(const std::string& department_id) override;
  absl::Status AppendAdminAuditLog(const tenant::v1::AdminAuditEntry& entry) override;

 private:
  // One peer group: a channel per replica address (created on first use)
  // and the index of the replica that last answered (the leader, usually).
  struct Group {
    std::string service;  // "mailgrid.tenant.v1.DirectoryService"
    std::vector<std::string> addresses;
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    size_t preferred = 0;
  };
  GrpcBackend() = default;
  absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelFor(Group& g, size_t i);
  // Runs `call` against the group's replicas: the preferred one first, then
  // a `mailgrid-leader` redirect or the next replica on UNAVAILABLE.
  template <typename Fn>
  absl::Status CallGroup(Group& g, Fn call);
  absl::Status Authorize(grpc::ClientContext* ctx);
  absl::StatusOr<tenant::v1::ResolveResponse> UnaryResolve(
      const tenant::v1::ResolveRequest& request);
  // One stream, first on a random replica; the unary fallback follows
  // CallGroup.
  void StartResolveStreams();

  Options options_;
  std::string tls_cert_, tls_key_;
  std::shared_ptr<auth::ServiceTokenSource> tokens_;
  std::unique_ptr<mailstore_client::MailstoreClient> mailstore_;
  std::unique_ptr<redis::Client> redis_;
  absl::Mutex mu_;  // guards the groups' channels and preferred index
  Group tenantd_ ABSL_GUARDED_BY(mu_), identityd_ ABSL_GUARDED_BY(mu_);
  Group domains_ ABSL_GUARDED_BY(mu_);  // tenantd's DomainService (DKIM keys)
  // Last: destroyed first (its channel function uses the groups above).
  std::unique_ptr<ResolveStreams> resolve_streams_;  // null: tenantd not configured
};

}  // namespace mailgrid::relay
