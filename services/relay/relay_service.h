// RelayService (relay.proto) over relayd's Outbound (libs/outbound's queue,
// the route store, internal submission).
//
// Who may call (from the access token, never from a request field):
//   queue RPCs: platform operator (everything), tenant admin (own tenant:
//     another tenant's entry is NOT_FOUND), service (everything);
//   routes: platform operator (and service);
//   SubmitMessage: service-internal only.
//   held mail: operator and service (all), tenant admin and auditor (own
//     tenant, read-only), a moderated group's moderators (its holds: list,
//     get, download, approve, reject); audit holds are decided by the
//     tenant's auditors (only those the policy names, if it names any).
//     DownloadHeldMessage streams the stored message while it is in the
//     queue (held, or approved and not yet delivered); each download is
//     recorded in the admin audit log.
#pragma once

#include <memory>
#include <string>

#include "libs/auth/token.h"
#include "mailgrid/relay/v1/relay.grpc.pb.h"

namespace mailgrid::relay {

class AuditHolds;
class Outbound;

class RelayServiceImpl final : public v1::RelayService::Service {
 public:
  // Both may be null (no queue store: UNAVAILABLE; no verifier: every call
  // UNAUTHENTICATED).
  void Bind(Outbound* outbound, std::shared_ptr<auth::TokenVerifier> verifier) {
    outbound_ = outbound;
    verifier_ = std::move(verifier);
  }
  // Audit holds (audit_holds.h); null: audit holds are decided like
  // moderation holds by operators and services only.
  void BindAudit(AuditHolds* audit) { audit_ = audit; }

  using Ctx = grpc::ServerContext;
  grpc::Status ListQueue(Ctx*, const v1::ListQueueRequest*, v1::ListQueueResponse*) override;
  grpc::Status GetQueueEntry(Ctx*, const v1::GetQueueEntryRequest*, v1::QueueEntry*) override;
  grpc::Status RetryNow(Ctx*, const v1::RetryNowRequest*, v1::QueueEntry*) override;
  grpc::Status Hold(Ctx*, const v1::HoldRequest*, v1::QueueEntry*) override;
  grpc::Status Release(Ctx*, const v1::ReleaseRequest*, v1::QueueEntry*) override;
  grpc::Status DeleteQueueEntry(Ctx*, const v1::DeleteQueueEntryRequest*,
                                v1::DeleteQueueEntryResponse*) override;
  grpc::Status BounceQueueEntry(Ctx*, const v1::BounceQueueEntryRequest*, v1::QueueEntry*) override;
  grpc::Status ListRoutes(Ctx*, const v1::ListRoutesRequest*, v1::ListRoutesResponse*) override;
  grpc::Status SetRoute(Ctx*, const v1::SetRouteRequest*, v1::Route*) override;
  grpc::Status DeleteRoute(Ctx*, const v1::DeleteRouteRequest*, v1::DeleteRouteResponse*) override;
  grpc::Status SubmitMessage(Ctx*, const v1::SubmitMessageRequest*,
                             v1::SubmitMessageResponse*) override;
  // Held mail: moderation and audit holds.
  grpc::Status ListHeldMessages(Ctx*, const v1::ListHeldMessagesRequest*,
                                v1::ListHeldMessagesResponse*) override;
  grpc::Status GetHeldMessage(Ctx*, const v1::GetHeldMessageRequest*, v1::HeldMessage*) override;
  grpc::Status DownloadHeldMessage(Ctx*, const v1::DownloadHeldMessageRequest*,
                                   grpc::ServerWriter<v1::DownloadHeldMessageResponse>*) override;
  grpc::Status ApproveHeldMessage(Ctx*, const v1::ApproveHeldMessageRequest*,
                                  v1::HeldMessage*) override;
  grpc::Status RejectHeldMessage(Ctx*, const v1::RejectHeldMessageRequest*,
                                 v1::HeldMessage*) override;

 private:
  Outbound* outbound_ = nullptr;
  AuditHolds* audit_ = nullptr;
  std::shared_ptr<auth::TokenVerifier> verifier_;
};

}  // namespace mailgrid::relay
