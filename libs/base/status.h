// Status helpers used everywhere: every fallible call returns absl::Status or
// absl::StatusOr<T>. Debian 12's Abseil (20220623) predates Abseil's own
// RETURN_IF_ERROR/ASSIGN_OR_RETURN, so we define ours here, once.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MG_STATUS_CONCAT_INNER_(a, b) a##b
#define MG_STATUS_CONCAT_(a, b) MG_STATUS_CONCAT_INNER_(a, b)

// RETURN_IF_ERROR(expr): evaluates expr (an absl::Status) and returns it from
// the enclosing function if it is not OK.
#define RETURN_IF_ERROR(expr)                                   \
  do {                                                          \
    ::absl::Status mg_status_ = (expr);                         \
    if (!mg_status_.ok()) return mg_status_;                    \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates expr (an absl::StatusOr<T>); on error
// returns its status, otherwise moves the value into lhs (which may be a
// declaration: ASSIGN_OR_RETURN(auto x, F());).
#define ASSIGN_OR_RETURN(lhs, expr) \
  MG_ASSIGN_OR_RETURN_IMPL_(MG_STATUS_CONCAT_(mg_statusor_, __LINE__), lhs, expr)

#define MG_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()
