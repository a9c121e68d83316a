// AuthService QR-code login. A desktop creates a ticket (its id goes in the
// QR code; the redeem secret stays on the desktop); a phone signed in as
// the user approves it; the desktop redeems it once for a session of the
// approving user. Tickets live in Redis for qr_ttl (2 minutes):
//   mg:id:qr:<id>   QrTicketRecord (kept a little past expiry to answer EXPIRED)
//   mg:id:qrr:<id>  the approved LoginResult, taken with GETDEL (once)
//   mg:id:qra:<id>  SET NX: the one decision (approve or deny)
#include <openssl/crypto.h>

#include "absl/strings/str_cat.h"
#include "libs/base/status.h"
#include "services/identity/core.h"
#include "services/identity/errors.h"
#include "services/identity/qr_png.h"

namespace mailgrid::identity {
namespace {

std::string TicketKey(const std::string& id) { return absl::StrCat("mg:id:qr:", id); }
std::string ResultKey(const std::string& id) { return absl::StrCat("mg:id:qrr:", id); }
std::string DecisionKey(const std::string& id) { return absl::StrCat("mg:id:qra:", id); }
constexpr absl::Duration kGrace = absl::Minutes(5);

bool ValidId(const std::string& id) { return !id.empty() && id.size() <= 64; }

}  // namespace

absl::StatusOr<v1::QrLoginTicket> Core::CreateQrLoginTicket(
    const Caller& c, const v1::CreateQrLoginTicketRequest& r) {
  common::v1::ClientInfo client = ClientOf(c, r.client());
  ASSIGN_OR_RETURN(int64_t n,
                   redis_->IncrWithTtl(absl::StrCat("mg:id:qrip:", client.ip()), absl::Minutes(1)));
  if (n > 30) return Throttled(absl::Now() + absl::Minutes(1));
  storage::QrTicketRecord rec;
  rec.set_ticket_id(RandomToken(16));
  std::string secret = RandomToken(32);
  rec.set_redeem_secret_hash(Sha256(secret));
  rec.set_client(client.SerializeAsString());
  absl::Time now = absl::Now();
  rec.set_created_at(absl::ToUnixSeconds(now));
  rec.set_expires_at(absl::ToUnixSeconds(now + options_.qr_ttl));
  rec.set_state(v1::QR_TICKET_STATE_PENDING);
  RETURN_IF_ERROR(PutPending(TicketKey(rec.ticket_id()), rec, options_.qr_ttl + kGrace));
  v1::QrLoginTicket out;
  out.set_ticket_id(rec.ticket_id());
  out.set_redeem_secret(secret);
  out.set_uri(absl::StrCat("mailgrid://qr-login?t=", rec.ticket_id(), "&h=", options_.qr_host));
  ASSIGN_OR_RETURN(*out.mutable_qr_png(), QrPng(out.uri()));
  out.mutable_expires_at()->set_seconds(rec.expires_at());
  return out;
}

absl::StatusOr<v1::QrLoginTicketInfo> Core::GetQrLoginTicket(const Caller& c,
                                                             const v1::GetQrLoginTicketRequest& r) {
  if (!c.full_user())
    return c.user() ? PermissionDenied("token scope does not allow this") : Unauthenticated();
  if (!ValidId(r.ticket_id())) return NotFound("ticket");
  storage::QrTicketRecord rec;
  ASSIGN_OR_RETURN(bool found, GetPending(TicketKey(r.ticket_id()), &rec));
  if (!found || absl::FromUnixSeconds(rec.expires_at()) < absl::Now()) return NotFound("ticket");
  v1::QrLoginTicketInfo out;
  out.set_ticket_id(rec.ticket_id());
  out.mutable_client()->ParseFromString(rec.client());
  out.mutable_created_at()->set_seconds(rec.created_at());
  out.mutable_expires_at()->set_seconds(rec.expires_at());
  return out;
}

absl::StatusOr<v1::ApproveQrLoginTicketResponse> Core::ApproveQrLoginTicket(
    const Caller& c, const v1::ApproveQrLoginTicketRequest& r) {
  if (!c.full_user())
    return c.user() ? PermissionDenied("token scope does not allow this") : Unauthenticated();
  if (!ValidId(r.ticket_id())) return NotFound("ticket");
  if (r.decision() != v1::QR_DECISION_APPROVE && r.decision() != v1::QR_DECISION_DENY)
    return InvalidField("decision", "UNSPECIFIED", "APPROVE or DENY");
  storage::QrTicketRecord rec;
  ASSIGN_OR_RETURN(bool found, GetPending(TicketKey(r.ticket_id()), &rec));
  absl::Time expires = absl::FromUnixSeconds(rec.expires_at());
  if (!found || expires < absl::Now()) return NotFound("ticket");
  ASSIGN_OR_RETURN(bool first, redis_->Set(DecisionKey(rec.ticket_id()), c.claims.subject,
                                           {.ttl = options_.qr_ttl + kGrace, .if_absent = true}));
  if (!first || rec.state() != v1::QR_TICKET_STATE_PENDING)
    return Precondition("ALREADY_USED", "this ticket was already used");
  common::v1::ClientInfo desktop;
  desktop.ParseFromString(rec.client());
  rec.set_tenant_id(c.claims.tenant_id);
  rec.set_user_id(c.claims.subject);
  absl::Duration keep = expires - absl::Now() + kGrace;
  if (r.decision() == v1::QR_DECISION_DENY) {
    rec.set_state(v1::QR_TICKET_STATE_DENIED);
    RETURN_IF_ERROR(PutPending(TicketKey(rec.ticket_id()), rec, keep));
    Event(rec.tenant_id(), rec.user_id(), c.claims.address, v1::AUTH_EVENT_KIND_QR_LOGIN,
          v1::AUTH_OUTCOME_FAILURE, "qr", desktop, "denied on the phone");
    return v1::ApproveQrLoginTicketResponse();
  }
  auto principal = directory_->ByUserId(c.claims.subject);
  if (!principal.ok()) return principal.status();
  if (!Usable(*principal)) return InvalidCredentials();
  ASSIGN_OR_RETURN(auto cred, store_->GetCredential(c.claims.tenant_id, c.claims.subject));
  // QR login skips the second factor (the phone's session had it).
  ASSIGN_OR_RETURN(v1::LoginResult result,
                   Continue(*principal, cred, {"qr"}, desktop, Step::kPasswordChange));
  ASSIGN_OR_RETURN(bool stored, redis_->Set(ResultKey(rec.ticket_id()), result.SerializeAsString(),
                                            {.ttl = keep}));
  (void)stored;
  rec.set_state(v1::QR_TICKET_STATE_APPROVED);
  RETURN_IF_ERROR(PutPending(TicketKey(rec.ticket_id()), rec, keep));
  Event(rec.tenant_id(), rec.user_id(), c.claims.address, v1::AUTH_EVENT_KIND_QR_LOGIN,
        v1::AUTH_OUTCOME_SUCCESS, "qr", desktop, "");
  return v1::ApproveQrLoginTicketResponse();
}

absl::StatusOr<v1::RedeemQrLoginTicketResponse> Core::RedeemQrLoginTicketOnce(
    const Caller&, const v1::RedeemQrLoginTicketRequest& r) {
  if (!ValidId(r.ticket_id())) return NotFound("ticket");
  storage::QrTicketRecord rec;
  ASSIGN_OR_RETURN(bool found, GetPending(TicketKey(r.ticket_id()), &rec));
  std::string hash = Sha256(r.redeem_secret());
  if (!found || hash.size() != rec.redeem_secret_hash().size() ||
      CRYPTO_memcmp(hash.data(), rec.redeem_secret_hash().data(), hash.size()) != 0)
    return NotFound("ticket");
  v1::RedeemQrLoginTicketResponse out;
  switch (rec.state()) {
    case v1::QR_TICKET_STATE_APPROVED: {
      ASSIGN_OR_RETURN(auto result, redis_->GetDel(ResultKey(rec.ticket_id())));
      if (!result.has_value()) {
        out.set_state(v1::QR_TICKET_STATE_REDEEMED);
        return out;
      }
      rec.set_state(v1::QR_TICKET_STATE_REDEEMED);
      (void)PutPending(TicketKey(rec.ticket_id()), rec, kGrace);
      out.set_state(v1::QR_TICKET_STATE_APPROVED);
      out.mutable_result()->ParseFromString(*result);
      return out;
    }
    case v1::QR_TICKET_STATE_PENDING:
      out.set_state(absl::FromUnixSeconds(rec.expires_at()) < absl::Now()
                        ? v1::QR_TICKET_STATE_EXPIRED
                        : v1::QR_TICKET_STATE_PENDING);
      return out;
    default:
      out.set_state(static_cast<v1::QrTicketState>(rec.state()));
      return out;
  }
}

}  // namespace mailgrid::identity
