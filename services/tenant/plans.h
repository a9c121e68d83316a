// The plan catalog's rules, as pure functions (plans.cc holds the RPCs).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "mailgrid/common/v1/common.pb.h"
#include "mailgrid/tenant/v1/tenant.pb.h"

namespace mailgrid::tenant {

// Checks and normalises a plan from CreatePlan/UpdatePlan: name 1..100
// characters, limits non-negative, storage model consistent, features
// known and not repeated. An unset Limit means unlimited.
absl::StatusOr<tenant::v1::Plan> ValidatePlan(const tenant::v1::Plan& plan);

// Is `usage` within `limit`?
bool Within(const common::v1::Limit& limit, int64_t usage);

// One LimitDetail per limit of `plan` that `usage` exceeds ("plan.mailboxes",
// "plan.domains", "plan.shared_mailbox_seats", "plan.storage_bytes").
std::vector<common::v1::LimitDetail> LimitsBelowUsage(const tenant::v1::Plan& plan,
                                                      const tenant::v1::TenantUsage& usage);

// "plan \"small\" allows 5 mailboxes but the tenant uses 12; ..." for the
// exceeded limits.
std::string DescribeExceeded(const tenant::v1::Plan& plan,
                             const std::vector<common::v1::LimitDetail>& exceeded);

std::string LimitText(const common::v1::Limit& limit);

}  // namespace mailgrid::tenant
