#include "services/relay/relay_service.h"

#include <algorithm>
#include <cctype>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/base/log.h"
#include "libs/base/status.h"
#include "libs/rpc/errors.h"
#include "libs/rpc/status.h"
#include "libs/outbound/dsn.h"
#include "services/relay/audit_holds.h"
#include "services/relay/outbound.h"

namespace mailgrid::relay {
namespace {

struct Caller {
  bool operator_ = false;
  bool service = false;
  bool tenant_admin = false;
  bool auditor = false;
  std::string tenant_id;
  std::string service_name;
  std::string subject;
};

absl::StatusOr<Caller> Authenticate(const auth::TokenVerifier* verifier,
                                    const grpc::ServerContext& ctx) {
  if (verifier == nullptr) return rpc::Unauthenticated();
  auto it = ctx.client_metadata().find("authorization");
  if (it == ctx.client_metadata().end()) return rpc::Unauthenticated();
  std::string_view header(it->second.data(), it->second.size());
  if (!header.starts_with("Bearer ") && !header.starts_with("bearer ")) {
    return rpc::Unauthenticated();
  }
  absl::StatusOr<auth::Claims> claims = verifier->Verify(header.substr(7));
  if (!claims.ok()) return rpc::Unauthenticated();
  if (claims->scope == "totp_enrolment") {
    return rpc::PermissionDenied("token only allows TOTP enrolment");
  }
  Caller c;
  c.operator_ = claims->HasRole(auth::kRolePlatformOperator);
  c.service = claims->HasRole(auth::kRoleService);
  c.tenant_admin = claims->HasRole(auth::kRoleTenantAdmin) && !claims->tenant_id.empty();
  c.auditor = claims->HasRole(auth::kRoleAuditor) && !claims->tenant_id.empty();
  c.tenant_id = claims->tenant_id;
  c.subject = claims->subject;
  c.service_name = claims->service;
  return c;
}

enum class Need { kQueue, kRoutes, kService, kAnyone };

// The tenant filter for the queue RPCs: "" for operators and services.
absl::StatusOr<std::string> Authorize(const Caller& c, Need need) {
  switch (need) {
    case Need::kQueue:
      if (c.operator_ || c.service) return std::string();
      if (c.tenant_admin) return c.tenant_id;
      return rpc::PermissionDenied("platform operator or tenant admin only");
    case Need::kRoutes:
      if (c.operator_ || c.service) return std::string();
      return rpc::PermissionDenied("platform operator only");
    case Need::kService:
      if (c.service) return std::string();
      return rpc::PermissionDenied("service-internal call");
    case Need::kAnyone:
      return std::string();
  }
  return rpc::PermissionDenied("no access");
}

// Queue errors of libs/outbound carry "field: REASON" or a bare reason as
// their message; give them relay.proto's shape.
absl::Status Shape(const absl::Status& s) {
  if (rpc::ErrorDetailOf(s).has_value()) return s;  // already shaped
  std::string msg(s.message());
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      return s;
    case absl::StatusCode::kInvalidArgument: {
      size_t colon = msg.find(": ");
      if (colon != std::string::npos) {
        return rpc::InvalidField(msg.substr(0, colon), msg.substr(colon + 2),
                                 msg.substr(colon + 2));
      }
      return s;
    }
    case absl::StatusCode::kFailedPrecondition: {
      std::string reason = msg;
      for (char& ch : reason) ch = ch == ' ' ? '_' : static_cast<char>(std::toupper(ch));
      return rpc::Precondition(reason, msg);
    }
    default:
      return s;
  }
}

bool IsModerator(const Caller& c, const HeldRecord& r) {
  return !c.tenant_id.empty() && c.tenant_id == r.held.tenant_id() &&
         r.held.kind() == v1::HOLD_KIND_MODERATION &&
         std::find(r.moderators.begin(), r.moderators.end(), c.subject) != r.moderators.end();
}

bool MaySee(const Caller& c, const HeldRecord& r) {
  if (c.operator_ || c.service) return true;
  if ((c.tenant_admin || c.auditor) && c.tenant_id == r.held.tenant_id()) return true;
  return IsModerator(c, r);
}

common::v1::Actor ActorOf(const Caller& c) {
  common::v1::Actor a;
  a.set_tenant_id(c.tenant_id);
  if (c.service) a.set_service(c.service_name);
  else a.set_user_id(c.subject);
  return a;
}

// Moderation holds: the group's moderators. Audit holds: the tenant's
// auditors (restricted to the policy's list when it has one).
absl::StatusOr<bool> MayDecide(const Caller& c, const HeldRecord& r, AuditHolds* audit) {
  if (c.operator_ || c.service) return true;
  if (r.held.kind() != v1::HOLD_KIND_AUDIT) return IsModerator(c, r);
  if (!c.auditor || c.tenant_id != r.held.tenant_id() || audit == nullptr) return false;
  return audit->MayDecide(c.tenant_id, c.subject);
}

absl::Status Decide(Outbound* outbound, AuditHolds* audit, const Caller& c, const std::string& id,
                    bool approve, const std::string& reason, v1::HeldMessage* resp) {
  absl::StatusOr<HeldRecord> r = outbound->held()->Get(id);
  if (!r.ok() || !MaySee(c, *r)) return rpc::NotFound("held message", id);
  ASSIGN_OR_RETURN(bool may, MayDecide(c, *r, audit));
  if (!may) {
    return rpc::PermissionDenied(r->held.kind() == v1::HOLD_KIND_AUDIT
                                     ? "the tenant's auditors only"
                                     : "moderators only");
  }
  if (r->held.kind() == v1::HOLD_KIND_AUDIT && audit != nullptr) {
    ASSIGN_OR_RETURN(*resp, audit->Decide(id, approve, reason, ActorOf(c)));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(*resp, outbound->DecideHeld(id, approve, reason, ActorOf(c)));
  if (audit != nullptr) {
    audit->Record(*resp, ActorOf(c), approve ? "mail.held.approve" : "mail.held.reject",
                  absl::StrCat("moderated post to ", resp->group_address(),
                               approve ? " approved" : " rejected"),
                  reason);
  }
  return absl::OkStatus();
}

}  // namespace

#define RELAY_SERVE(ctx, need, body)                                                   \
  do {                                                                                 \
    absl::StatusOr<Caller> caller_ = Authenticate(verifier_.get(), *ctx);              \
    if (!caller_.ok()) return rpc::ToGrpc(caller_.status());                           \
    absl::StatusOr<std::string> tenant_ = Authorize(*caller_, need);                   \
    if (!tenant_.ok()) return rpc::ToGrpc(tenant_.status());                           \
    if (outbound_ == nullptr || outbound_->queue() == nullptr) {                       \
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "relayd has no queue store"); \
    }                                                                                  \
    const std::string& tenant = *tenant_;                                              \
    (void)tenant;                                                                      \
    absl::Status st_ = [&]() -> absl::Status { body }();                               \
    return rpc::ToGrpc(Shape(st_));                                                    \
  } while (0)

grpc::Status RelayServiceImpl::ListQueue(Ctx* ctx, const v1::ListQueueRequest* req,
                                         v1::ListQueueResponse* resp) {
  RELAY_SERVE(ctx, Need::kQueue, {
    ASSIGN_OR_RETURN(*resp, outbound_->queue()->ListQueue(*req, tenant, absl::Now()));
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::GetQueueEntry(Ctx* ctx, const v1::GetQueueEntryRequest* req,
                                             v1::QueueEntry* resp) {
  RELAY_SERVE(ctx, Need::kQueue, {
    ASSIGN_OR_RETURN(*resp,
                     outbound_->queue()->GetQueueEntry(req->queue_id(), tenant, absl::Now()));
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::RetryNow(Ctx* ctx, const v1::RetryNowRequest* req,
                                        v1::QueueEntry* resp) {
  RELAY_SERVE(ctx, Need::kQueue, {
    ASSIGN_OR_RETURN(*resp, outbound_->queue()->RetryNow(*req, tenant, absl::Now()));
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::Hold(Ctx* ctx, const v1::HoldRequest* req, v1::QueueEntry* resp) {
  RELAY_SERVE(ctx, Need::kQueue, {
    v1::HoldRequest r = *req;
    if (r.reason().empty()) r.set_reason("held by an operator");
    ASSIGN_OR_RETURN(*resp, outbound_->queue()->Hold(r, tenant, absl::Now()));
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::Release(Ctx* ctx, const v1::ReleaseRequest* req,
                                       v1::QueueEntry* resp) {
  RELAY_SERVE(ctx, Need::kQueue, {
    ASSIGN_OR_RETURN(*resp, outbound_->queue()->Release(*req, tenant, absl::Now()));
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::DeleteQueueEntry(Ctx* ctx, const v1::DeleteQueueEntryRequest* req,
                                                v1::DeleteQueueEntryResponse*) {
  RELAY_SERVE(ctx, Need::kQueue, {
    RETURN_IF_ERROR(outbound_->queue()->DeleteQueueEntry(*req, tenant, absl::Now()));
    log::Info("queue entry deleted",
              {{"queue_id", req->queue_id()}, {"reason", req->reason()}, {"by", caller_->subject}});
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::BounceQueueEntry(Ctx* ctx, const v1::BounceQueueEntryRequest* req,
                                                v1::QueueEntry* resp) {
  RELAY_SERVE(ctx, Need::kQueue, {
    ASSIGN_OR_RETURN(outbound::CompletionReport report,
                     outbound_->queue()->BounceQueueEntry(*req, tenant, absl::Now()));
    outbound_->SendBounceDsn(report);
    log::Info("queue entry bounced",
              {{"queue_id", req->queue_id()}, {"reason", req->reason()}, {"by", caller_->subject}});
    *resp = report.entry;
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::ListRoutes(Ctx* ctx, const v1::ListRoutesRequest*,
                                          v1::ListRoutesResponse* resp) {
  RELAY_SERVE(ctx, Need::kRoutes, {
    ASSIGN_OR_RETURN(std::vector<v1::Route> routes, outbound_->routes()->List());
    for (v1::Route& r : routes) *resp->add_routes() = std::move(r);
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::SetRoute(Ctx* ctx, const v1::SetRouteRequest* req, v1::Route* resp) {
  RELAY_SERVE(ctx, Need::kRoutes, {
    ASSIGN_OR_RETURN(*resp, outbound_->routes()->Set(req->route(), absl::Now()));
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::DeleteRoute(Ctx* ctx, const v1::DeleteRouteRequest* req,
                                           v1::DeleteRouteResponse*) {
  RELAY_SERVE(ctx, Need::kRoutes, { return outbound_->routes()->Delete(req->route_id()); });
}

// Held mail: any authenticated caller gets in; visibility per record.
grpc::Status RelayServiceImpl::ListHeldMessages(Ctx* ctx, const v1::ListHeldMessagesRequest* req,
                                                v1::ListHeldMessagesResponse* resp) {
  RELAY_SERVE(ctx, Need::kAnyone, {
    ASSIGN_OR_RETURN(std::vector<HeldRecord> all, outbound_->held()->List());
    for (const HeldRecord& r : all) {
      if (!MaySee(*caller_, r)) continue;
      if (!req->tenant_id().empty() && r.held.tenant_id() != req->tenant_id()) continue;
      if (req->states_size() > 0 &&
          std::find(req->states().begin(), req->states().end(), r.held.state()) == req->states().end())
        continue;
      if (req->kind() != v1::HOLD_KIND_UNSPECIFIED && r.held.kind() != req->kind()) continue;
      if (!req->sender().empty() && !absl::EqualsIgnoreCase(r.held.sender().address(), req->sender()))
        continue;
      *resp->add_messages() = r.held;
    }
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::GetHeldMessage(Ctx* ctx, const v1::GetHeldMessageRequest* req,
                                              v1::HeldMessage* resp) {
  RELAY_SERVE(ctx, Need::kAnyone, {
    absl::StatusOr<HeldRecord> r = outbound_->held()->Get(req->held_id());
    if (!r.ok() || !MaySee(*caller_, *r)) return rpc::NotFound("held message", req->held_id());
    *resp = r->held;
    absl::StatusOr<std::string> body = outbound_->queue()->ReadBody(r->held.queue_id());
    if (body.ok()) {
      std::string headers = outbound::OriginalHeaders(*body);
      size_t start = body->find("\r\n\r\n");
      resp->set_preview_headers(headers);
      if (start != std::string::npos) resp->set_preview_text(body->substr(start + 4, 4096));
    }
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::DownloadHeldMessage(
    Ctx* ctx, const v1::DownloadHeldMessageRequest* req,
    grpc::ServerWriter<v1::DownloadHeldMessageResponse>* writer) {
  RELAY_SERVE(ctx, Need::kAnyone, {
    absl::StatusOr<HeldRecord> r = outbound_->held()->Get(req->held_id());
    if (!r.ok() || !MaySee(*caller_, *r)) return rpc::NotFound("held message", req->held_id());
    // The bytes live with the queue entry: gone once delivered or rejected.
    absl::StatusOr<std::string> body = outbound_->queue()->ReadBody(r->held.queue_id());
    if (!body.ok()) {
      if (absl::IsNotFound(body.status()))
        return rpc::NotFound("held message content", req->held_id());
      return body.status();
    }
    if (audit_ != nullptr) {
      audit_->Record(r->held, ActorOf(*caller_), "mail.held.download",
                     absl::StrCat("held message \"", r->held.subject(), "\" from ",
                                  r->held.sender().address(), " downloaded"),
                     "");
    }
    v1::DownloadHeldMessageResponse part;
    *part.mutable_metadata() = r->held;
    if (!writer->Write(part)) return absl::CancelledError("client went away");
    constexpr size_t kChunk = 64 * 1024;
    for (size_t off = 0; off < body->size(); off += kChunk) {
      part.Clear();
      part.set_chunk(body->substr(off, kChunk));
      if (!writer->Write(part)) return absl::CancelledError("client went away");
    }
    return absl::OkStatus();
  });
}

grpc::Status RelayServiceImpl::ApproveHeldMessage(Ctx* ctx,
                                                  const v1::ApproveHeldMessageRequest* req,
                                                  v1::HeldMessage* resp) {
  RELAY_SERVE(ctx, Need::kAnyone, {
    return Decide(outbound_, audit_, *caller_, req->held_id(), true, req->note(), resp);
  });
}

grpc::Status RelayServiceImpl::RejectHeldMessage(Ctx* ctx, const v1::RejectHeldMessageRequest* req,
                                                 v1::HeldMessage* resp) {
  RELAY_SERVE(ctx, Need::kAnyone, {
    if (req->reason().empty()) return rpc::InvalidField("reason", "EMPTY", "a reason is required");
    return Decide(outbound_, audit_, *caller_, req->held_id(), false, req->reason(), resp);
  });
}

grpc::Status RelayServiceImpl::SubmitMessage(Ctx* ctx, const v1::SubmitMessageRequest* req,
                                             v1::SubmitMessageResponse* resp) {
  // Local-only submissions work without a queue store: checked inside.
  absl::StatusOr<Caller> caller = Authenticate(verifier_.get(), *ctx);
  if (!caller.ok()) return rpc::ToGrpc(caller.status());
  absl::StatusOr<std::string> ok = Authorize(*caller, Need::kService);
  if (!ok.ok()) return rpc::ToGrpc(ok.status());
  if (outbound_ == nullptr) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no outbound");
  absl::StatusOr<v1::SubmitMessageResponse> r = outbound_->SubmitInternal(*req);
  if (!r.ok()) return rpc::ToGrpc(r.status());
  *resp = *std::move(r);
  return grpc::Status::OK;
}

}  // namespace mailgrid::relay
