#include "services/tenant/peers.h"

#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "libs/auth/service_token.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/client.h"
#include "libs/rpc/status.h"
#include "libs/mailstore_client/mailstore_client.h"
#include "mailgrid/identity/v1/auth.grpc.pb.h"
#include "mailgrid/identity/v1/credential.grpc.pb.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"

namespace mailgrid::tenant {

namespace {

// Replicas of one Raft group; calls follow the leader.
class Group {
 public:
  // `tls`: the TLS fields every channel uses (empty CA: plain text).
  Group(std::vector<std::string> addresses, rpc::ClientOptions tls)
      : addresses_(std::move(addresses)), tls_(std::move(tls)) {}

  // Runs `call` on a channel, following `mailgrid-leader` hints and moving
  // on from unreachable replicas, for up to `budget`.
  absl::Status Call(absl::Duration budget,
                    const std::function<grpc::Status(const std::shared_ptr<grpc::Channel>&,
                                                     grpc::ClientContext*)>& call,
                    auth::ServiceTokenSource* tokens) {
    absl::Time deadline = absl::Now() + budget;
    std::string target = Preferred();
    absl::Status last = absl::UnavailableError("no replica reachable");
    for (int attempt = 0; absl::Now() < deadline && attempt < 12; ++attempt) {
      ASSIGN_OR_RETURN(auto channel, Channel(target));
      grpc::ClientContext ctx;
      // An unreachable replica costs at most 5 s, but a slow call (a large
      // import's password hashing) gets half the budget per attempt.
      const absl::Duration per_attempt = std::max(absl::Seconds(5), budget / 2);
      ctx.set_deadline(absl::ToChronoTime(std::min(deadline, absl::Now() + per_attempt)));
      if (tokens != nullptr) {
        ASSIGN_OR_RETURN(std::string header, tokens->AuthorizationHeader());
        ctx.AddMetadata("authorization", header);
      }
      grpc::Status s = call(channel, &ctx);
      if (s.ok()) {
        Remember(target);
        return absl::OkStatus();
      }
      last = rpc::FromGrpc(s);
      // Keep the callee's ErrorDetail (field, reason) for errors.h.
      if (!s.error_details().empty())
        last.SetPayload("type.googleapis.com/mailgrid.common.v1.RpcStatus",
                        absl::Cord(s.error_details()));
      const auto& md = ctx.GetServerTrailingMetadata();
      auto hint = md.find("mailgrid-leader");
      bool redirect = hint != md.end() && !hint->second.empty();
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED && !redirect) {
        return last;
      }
      if (redirect) {
        target.assign(hint->second.data(), hint->second.size());
      } else {
        target = Next(target);
        std::this_thread::sleep_for(std::chrono::milliseconds(50 << std::min(attempt, 4)));
      }
    }
    return last;
  }

 private:
  std::string Preferred() {
    absl::MutexLock l(&mu_);
    return leader_.empty() ? addresses_.front() : leader_;
  }
  void Remember(const std::string& a) {
    absl::MutexLock l(&mu_);
    leader_ = a;
  }
  std::string Next(const std::string& a) {
    for (size_t i = 0; i < addresses_.size(); ++i)
      if (addresses_[i] == a) return addresses_[(i + 1) % addresses_.size()];
    return addresses_.front();
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> Channel(const std::string& a) {
    absl::MutexLock l(&mu_);
    auto it = channels_.find(a);
    if (it != channels_.end()) return it->second;
    rpc::ClientOptions o = tls_;
    o.target = a;
    ASSIGN_OR_RETURN(auto ch, rpc::MakeChannel(o));
    channels_[a] = ch;
    return ch;
  }

  std::vector<std::string> addresses_;
  const rpc::ClientOptions tls_;
  absl::Mutex mu_;
  std::string leader_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

class GrpcPeers final : public DirectoryPeers {
 public:
  GrpcPeers(std::unique_ptr<Group> identity,
            std::unique_ptr<mailstore_client::MailstoreClient> mailstore,
            std::unique_ptr<Group> relay, uint32_t shard_count,
            std::shared_ptr<auth::ServiceTokenSource> tokens)
      : identity_(std::move(identity)),
        mailstore_(std::move(mailstore)),
        relay_(std::move(relay)),
        shard_count_(shard_count),
        tokens_(std::move(tokens)) {}

  bool identity_configured() const override { return identity_ != nullptr; }
  bool mailstore_configured() const override { return mailstore_ != nullptr; }
  bool relay_configured() const override { return relay_ != nullptr; }
  uint32_t shards() const override { return shard_count_; }

  absl::Status SetInitialPasswords(const identity::v1::SetInitialPasswordRequest& r) override {
    if (!identity_) return absl::UnavailableError("identityd is not configured");
    identity::v1::SetInitialPasswordResponse resp;
    // Large imports hash many passwords: a generous budget.
    return Wrap("identityd", identity_->Call(
                                 absl::Seconds(30 + r.entries_size() / 50),
                                 [&](const auto& ch, grpc::ClientContext* ctx) {
                                   return identity::v1::CredentialService::NewStub(ch)
                                       ->SetInitialPassword(ctx, r, &resp);
                                 },
                                 tokens_.get()));
  }

  absl::Status CreateMailbox(uint32_t shard,
                             const mailstore::v1::CreateMailboxRequest& r) override {
    if (!mailstore_) return absl::UnavailableError("mailstored is not configured");
    return Wrap("mailstored", mailstore_->CreateMailbox(shard, r).status());
  }

  absl::Status DeleteCredentials(const std::string& user_id) override {
    if (!identity_) return absl::OkStatus();
    identity::v1::DeleteCredentialsRequest r;
    r.set_user_id(user_id);
    identity::v1::DeleteCredentialsResponse resp;
    absl::Status s = identity_->Call(
        absl::Seconds(15),
        [&](const auto& ch, grpc::ClientContext* ctx) {
          return identity::v1::CredentialService::NewStub(ch)->DeleteCredentials(ctx, r, &resp);
        },
        tokens_.get());
    if (absl::IsNotFound(s)) return absl::OkStatus();
    return Wrap("identityd", s);
  }

  absl::Status DeleteMailbox(uint32_t shard, const std::string& mailbox_id) override {
    if (!mailstore_) return absl::UnavailableError("mailstored is not configured");
    mailstore::v1::DeleteMailboxRequest r;
    r.set_mailbox_id(mailbox_id);
    absl::Status s = mailstore_->DeleteMailbox(shard, r).status();
    if (absl::IsNotFound(s)) return absl::OkStatus();  // already gone
    return Wrap("mailstored", s);
  }

  absl::Status SetQuota(uint32_t shard, const mailstore::v1::SetQuotaRequest& r) override {
    if (!mailstore_) return absl::UnavailableError("mailstored is not configured");
    return Wrap("mailstored", mailstore_->SetQuota(shard, r).status());
  }

  absl::StatusOr<int64_t> EndSessions(const std::string& user_id,
                                      const std::string& reason) override {
    if (!identity_) return absl::UnavailableError("identityd is not configured");
    identity::v1::LogoutEverywhereRequest r;
    r.set_user_id(user_id);
    r.set_reason(reason);
    identity::v1::LogoutEverywhereResponse resp;
    absl::Status s = identity_->Call(
        absl::Seconds(15),
        [&](const auto& ch, grpc::ClientContext* ctx) {
          return identity::v1::AuthService::NewStub(ch)->LogoutEverywhere(ctx, r, &resp);
        },
        tokens_.get());
    if (absl::IsNotFound(s)) return 0;  // no credentials, no sessions
    RETURN_IF_ERROR(Wrap("identityd", s));
    return resp.sessions_ended();
  }

  absl::Status NotifyRecoveryEmailChanged(
      const identity::v1::NotifyRecoveryEmailChangedRequest& r) override {
    if (!identity_) return absl::UnavailableError("identityd is not configured");
    identity::v1::NotifyRecoveryEmailChangedResponse resp;
    return Wrap("identityd",
                identity_->Call(
                    absl::Seconds(15),
                    [&](const auto& ch, grpc::ClientContext* ctx) {
                      return identity::v1::CredentialService::NewStub(ch)
                          ->NotifyRecoveryEmailChanged(ctx, r, &resp);
                    },
                    tokens_.get()));
  }

  absl::Status SubmitMessage(const relay::v1::SubmitMessageRequest& r) override {
    if (!relay_) return absl::UnavailableError("relayd is not configured");
    relay::v1::SubmitMessageResponse resp;
    return Wrap("relayd", relay_->Call(
                              absl::Seconds(15),
                              [&](const auto& ch, grpc::ClientContext* ctx) {
                                return relay::v1::RelayService::NewStub(ch)->SubmitMessage(
                                    ctx, r, &resp);
                              },
                              tokens_.get()));
  }

 private:
  // A peer's refusal keeps its code (INVALID_ARGUMENT from a password
  // policy reaches the admin); the message says who refused.
  static absl::Status Wrap(const char* who, absl::Status s) {
    if (s.ok()) return s;
    absl::Status out(s.code(), absl::StrCat(who, ": ", s.message()));
    s.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
      out.SetPayload(url, payload);
    });
    return out;
  }

  std::unique_ptr<Group> identity_;
  std::unique_ptr<mailstore_client::MailstoreClient> mailstore_;
  std::unique_ptr<Group> relay_;
  uint32_t shard_count_;
  std::shared_ptr<auth::ServiceTokenSource> tokens_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DirectoryPeers>> MakeGrpcPeers(const Options& o,
                                                               const rpc::ClientOptions& tls) {
  std::shared_ptr<auth::ServiceTokenSource> tokens;
  if (!o.token_signing_key.empty()) {
    ASSIGN_OR_RETURN(tokens, auth::ServiceTokenSource::FromPemFile(o.token_signing_key, "tenantd",
                                                                   o.token_issuer));
  }
  std::unique_ptr<Group> identity;
  if (!o.identityd.empty()) {
    identity = std::make_unique<Group>(o.identityd, tls);
  } else {
    log::Warn("no --identityd: users are created without credentials (pending; set them with an "
              "admin password reset once identityd runs), and disabling a user cannot end "
              "their sessions");
  }
  std::unique_ptr<mailstore_client::MailstoreClient> mailstore;
  std::string joined = absl::StrJoin(o.mailstored, ",");
  if (!joined.empty()) {
    mailstore_client::ClientOptions mo;
    ASSIGN_OR_RETURN(mo.shards, mailstore_client::ShardMap::Parse(joined));
    mo.service_tokens = tokens;
    mo.tls_ca_file = tls.tls_ca_file;
    mo.tls_cert_file = tls.tls_cert_file;
    mo.tls_key_file = tls.tls_key_file;
    ASSIGN_OR_RETURN(mailstore, mailstore_client::MailstoreClient::Create(std::move(mo)));
    for (uint32_t i = 0; i < static_cast<uint32_t>(o.mailstore_shards); ++i) {
      if (!mailstore->shards().shards.count(i))
        return absl::InvalidArgumentError(
            absl::StrCat("--mailstore-shards=", o.mailstore_shards, " but --mailstored names no "
                         "replicas for shard ", i));
    }
  } else {
    log::Warn("no --mailstored: mailboxes are placed but not created (pending; the background "
              "loop creates them once mailstored is configured)");
  }
  std::unique_ptr<Group> relay;
  if (!o.relayd.empty()) {
    relay = std::make_unique<Group>(o.relayd, tls);
  } else {
    log::Warn("no --relayd: welcome notices wait (welcome pending) until relayd is configured");
  }
  if ((identity || mailstore || relay) && !tokens)
    log::Warn("no --token-signing-key: calls to identityd/mailstored/relayd carry no service token");
  return std::unique_ptr<DirectoryPeers>(new GrpcPeers(std::move(identity), std::move(mailstore),
                                                       std::move(relay),
                                                       static_cast<uint32_t>(o.mailstore_shards),
                                                       std::move(tokens)));
}

}  // namespace mailgrid::tenant
