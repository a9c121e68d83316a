#include "services/tenant/lifecycle.h"

#include "absl/strings/str_cat.h"
#include "libs/base/strings.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {
namespace {

using tenant::v1::TenantState;

absl::Status Refuse(std::string_view tenant_id, TenantState from, std::string_view what,
                    std::string_view hint) {
  std::string msg =
      absl::StrCat("tenant ", ToAbsl(tenant_id), " is ", StateName(from), ": ", ToAbsl(what));
  if (!hint.empty()) absl::StrAppend(&msg, " (", ToAbsl(hint), ")");
  return Precondition("WRONG_STATE", msg);
}

}  // namespace

std::string StateName(TenantState state) {
  std::string name = tenant::v1::TenantState_Name(state);
  constexpr std::string_view kPrefix = "TENANT_STATE_";
  if (name.rfind(kPrefix, 0) == 0) name.erase(0, kPrefix.size());
  return name;
}

absl::StatusOr<Transition> NextState(std::string_view id, TenantState from, Action action,
                                     absl::Time now, absl::Time purge_after) {
  using S = TenantState;
  switch (action) {
    case Action::kUploadDocument:
      if (from == S::TENANT_STATE_PENDING_DOCUMENTS || from == S::TENANT_STATE_REJECTED ||
          from == S::TENANT_STATE_UNDER_REVIEW) {
        return Transition{from, S::TENANT_STATE_UNDER_REVIEW, "document_uploaded"};
      }
      return Refuse(id, from, "documents can be uploaded only before approval or after a rejection",
                    "");
    case Action::kApprove:
    case Action::kReject: {
      bool approve = action == Action::kApprove;
      if (from == S::TENANT_STATE_UNDER_REVIEW) {
        return Transition{from, approve ? S::TENANT_STATE_ACTIVE : S::TENANT_STATE_REJECTED,
                          approve ? "approved" : "rejected"};
      }
      std::string_view hint =
          from == S::TENANT_STATE_PENDING_DOCUMENTS || from == S::TENANT_STATE_REJECTED
              ? "no documents to review yet: the company must upload them first"
              : "";
      return Refuse(id, from, absl::StrCat(approve ? "approve" : "reject", " needs UNDER_REVIEW"),
                    hint);
    }
    case Action::kSuspend:
      if (from == S::TENANT_STATE_ACTIVE)
        return Transition{from, S::TENANT_STATE_SUSPENDED, "suspended"};
      return Refuse(id, from, "only an ACTIVE tenant can be suspended", "");
    case Action::kResume:
      if (from == S::TENANT_STATE_SUSPENDED)
        return Transition{from, S::TENANT_STATE_ACTIVE, "resumed"};
      if (from == S::TENANT_STATE_DELETED) {
        if (now < purge_after) return Transition{from, S::TENANT_STATE_SUSPENDED, "resumed"};
        return Refuse(id, from, "the grace period is over and its data is being purged", "");
      }
      return Refuse(id, from,
                    "only a SUSPENDED tenant, or a DELETED one before its purge, can be resumed",
                    "");
    case Action::kDelete:
      if (from == S::TENANT_STATE_DELETED) return Refuse(id, from, "it is already deleted", "");
      if (from == S::TENANT_STATE_UNSPECIFIED) return Refuse(id, from, "no such state", "");
      return Transition{from, S::TENANT_STATE_DELETED, "deleted"};
    case Action::kPurge:
      if (from != S::TENANT_STATE_DELETED)
        return Refuse(id, from, "only a DELETED tenant can be purged", "");
      if (now < purge_after) return Refuse(id, from, "its grace period is not over", "");
      return Transition{from, S::TENANT_STATE_UNSPECIFIED, "purged"};
  }
  return absl::InternalError("unknown lifecycle action");
}

}  // namespace mailgrid::tenant
