// The tenant state machine (tenant.proto, "Lifecycle"), as a pure function
// so that every rule is in one table and unit-tested on its own:
//
//   register                        -> PENDING_DOCUMENTS
//   upload   PENDING_DOCUMENTS|REJECTED -> UNDER_REVIEW   (UNDER_REVIEW stays)
//   approve  UNDER_REVIEW           -> ACTIVE
//   reject   UNDER_REVIEW           -> REJECTED
//   suspend  ACTIVE                 -> SUSPENDED
//   resume   SUSPENDED              -> ACTIVE
//   resume   DELETED (before purge) -> SUSPENDED
//   delete   any but DELETED        -> DELETED
//   purge    DELETED (after purge)  -> (record removed)
//
// A refused action is FAILED_PRECONDITION, reason WRONG_STATE, with a
// message that says the state, what the action needs and what to do.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mailgrid/tenant/v1/tenant.pb.h"

namespace mailgrid::tenant {

enum class Action { kUploadDocument, kApprove, kReject, kSuspend, kResume, kDelete, kPurge };

struct Transition {
  tenant::v1::TenantState from;
  tenant::v1::TenantState to;
  std::string action;  // TenantEvent.action: "document_uploaded", "approved", ...
};

// The state `action` leads to from `from`, or FAILED_PRECONDITION.
// `now` and `purge_after` matter only for kResume/kPurge of a DELETED tenant.
absl::StatusOr<Transition> NextState(std::string_view tenant_id, tenant::v1::TenantState from,
                                     Action action, absl::Time now = absl::Now(),
                                     absl::Time purge_after = absl::InfiniteFuture());

// "PENDING_DOCUMENTS" for TENANT_STATE_PENDING_DOCUMENTS.
std::string StateName(tenant::v1::TenantState state);

// Default grace period before a deleted tenant's data is purged, and the
// most an operator may ask for.
inline constexpr absl::Duration kDefaultGracePeriod = absl::Hours(24 * 30);
inline constexpr absl::Duration kMaxGracePeriod = absl::Hours(24 * 365);

}  // namespace mailgrid::tenant
