#include "services/tenant/lifecycle.h"

#include "gtest/gtest.h"
#include "services/tenant/errors.h"

namespace mailgrid::tenant {
namespace {

using S = tenant::v1::TenantState;

constexpr S kAll[] = {
    S::TENANT_STATE_PENDING_DOCUMENTS, S::TENANT_STATE_UNDER_REVIEW, S::TENANT_STATE_ACTIVE,
    S::TENANT_STATE_REJECTED,          S::TENANT_STATE_SUSPENDED,    S::TENANT_STATE_DELETED};

// The whole table: (from, action) -> to, or refused.
struct Row {
  S from;
  Action action;
  S to;  // UNSPECIFIED: refused
};

TEST(LifecycleTest, EveryStateAndAction) {
  const absl::Time now = absl::FromUnixSeconds(1000000);
  const absl::Time later = now + absl::Hours(1);
  std::vector<Row> allowed = {
      {S::TENANT_STATE_PENDING_DOCUMENTS, Action::kUploadDocument, S::TENANT_STATE_UNDER_REVIEW},
      {S::TENANT_STATE_REJECTED, Action::kUploadDocument, S::TENANT_STATE_UNDER_REVIEW},
      {S::TENANT_STATE_UNDER_REVIEW, Action::kUploadDocument, S::TENANT_STATE_UNDER_REVIEW},
      {S::TENANT_STATE_UNDER_REVIEW, Action::kApprove, S::TENANT_STATE_ACTIVE},
      {S::TENANT_STATE_UNDER_REVIEW, Action::kReject, S::TENANT_STATE_REJECTED},
      {S::TENANT_STATE_ACTIVE, Action::kSuspend, S::TENANT_STATE_SUSPENDED},
      {S::TENANT_STATE_SUSPENDED, Action::kResume, S::TENANT_STATE_ACTIVE},
      {S::TENANT_STATE_DELETED, Action::kResume, S::TENANT_STATE_SUSPENDED},
  };
  for (S s : kAll) {
    if (s != S::TENANT_STATE_DELETED)
      allowed.push_back({s, Action::kDelete, S::TENANT_STATE_DELETED});
  }
  for (S from : kAll) {
    for (Action a : {Action::kUploadDocument, Action::kApprove, Action::kReject, Action::kSuspend,
                     Action::kResume, Action::kDelete}) {
      S expected = S::TENANT_STATE_UNSPECIFIED;
      for (const Row& r : allowed) {
        if (r.from == from && r.action == a) expected = r.to;
      }
      auto got = NextState("t-1", from, a, now, later);
      if (expected == S::TENANT_STATE_UNSPECIFIED) {
        ASSERT_FALSE(got.ok()) << StateName(from) << " action " << static_cast<int>(a);
        EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
        EXPECT_EQ(ErrorDetailOf(got.status())->reason(), "WRONG_STATE");
        // The message names the tenant and its state.
        EXPECT_NE(std::string(got.status().message()).find("tenant t-1 is " + StateName(from)),
                  std::string::npos)
            << got.status();
      } else {
        ASSERT_TRUE(got.ok()) << StateName(from) << " action " << static_cast<int>(a) << ": "
                              << got.status();
        EXPECT_EQ(got->to, expected);
        EXPECT_EQ(got->from, from);
      }
    }
  }
}

TEST(LifecycleTest, ApproveWithoutDocumentsSaysWhy) {
  auto got = NextState("t-9", S::TENANT_STATE_PENDING_DOCUMENTS, Action::kApprove);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(),
            "tenant t-9 is PENDING_DOCUMENTS: approve needs UNDER_REVIEW (no documents to review "
            "yet: the company "
            "must upload them first)");
}

TEST(LifecycleTest, ResumeOfDeletedOnlyBeforePurge) {
  absl::Time purge = absl::FromUnixSeconds(5000);
  EXPECT_TRUE(
      NextState("t", S::TENANT_STATE_DELETED, Action::kResume, purge - absl::Seconds(1), purge)
          .ok());
  EXPECT_FALSE(NextState("t", S::TENANT_STATE_DELETED, Action::kResume, purge, purge).ok());
  EXPECT_FALSE(
      NextState("t", S::TENANT_STATE_DELETED, Action::kPurge, purge - absl::Seconds(1), purge)
          .ok());
  auto purged = NextState("t", S::TENANT_STATE_DELETED, Action::kPurge, purge, purge);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(purged->action, "purged");
  EXPECT_FALSE(NextState("t", S::TENANT_STATE_ACTIVE, Action::kPurge, purge, purge).ok());
}

TEST(LifecycleTest, ActionNames) {
  EXPECT_EQ(NextState("t", S::TENANT_STATE_UNDER_REVIEW, Action::kApprove)->action, "approved");
  EXPECT_EQ(NextState("t", S::TENANT_STATE_UNDER_REVIEW, Action::kReject)->action, "rejected");
  EXPECT_EQ(NextState("t", S::TENANT_STATE_ACTIVE, Action::kDelete)->action, "deleted");
  EXPECT_EQ(StateName(S::TENANT_STATE_UNDER_REVIEW), "UNDER_REVIEW");
}

}  // namespace
}  // namespace mailgrid::tenant
