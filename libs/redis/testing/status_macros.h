// GoogleTest helpers for absl::Status / absl::StatusOr (Debian's Abseil has
// no status matchers). Test-only.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace mailgrid::redis::testing {

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

}  // namespace mailgrid::redis::testing

// Both evaluate expr once.
#define MG_EXPECT_OK(expr)                                                       \
  do {                                                                           \
    const auto& mg_expect_ok_ = (expr);                                          \
    EXPECT_TRUE(::mailgrid::redis::testing::StatusOf(mg_expect_ok_).ok())        \
        << #expr << ": " << ::mailgrid::redis::testing::StatusOf(mg_expect_ok_); \
  } while (0)

#define MG_ASSERT_OK(expr)                                                       \
  do {                                                                           \
    const auto& mg_assert_ok_ = (expr);                                          \
    ASSERT_TRUE(::mailgrid::redis::testing::StatusOf(mg_assert_ok_).ok())        \
        << #expr << ": " << ::mailgrid::redis::testing::StatusOf(mg_assert_ok_); \
  } while (0)

#define MG_TEST_CONCAT_INNER_(a, b) a##b
#define MG_TEST_CONCAT_(a, b) MG_TEST_CONCAT_INNER_(a, b)

// MG_ASSERT_OK_AND_ASSIGN(auto x, F()); fails the test on a non-OK status.
#define MG_ASSERT_OK_AND_ASSIGN(lhs, expr) \
  MG_ASSERT_OK_AND_ASSIGN_IMPL_(MG_TEST_CONCAT_(mg_statusor_, __LINE__), lhs, expr)
#define MG_ASSERT_OK_AND_ASSIGN_IMPL_(tmp, lhs, expr)     \
  auto tmp = (expr);                                      \
  ASSERT_TRUE(tmp.ok()) << #expr << ": " << tmp.status(); \
  lhs = std::move(tmp).value()
