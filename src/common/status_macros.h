// Error propagation for absl::Status / absl::StatusOr<T>.
//
// RETURN_IF_ERROR(expr) returns the status of `expr` from the enclosing function when it is
// not OK. ASSIGN_OR_RETURN(lhs, expr) evaluates a StatusOr, returns its status on error and
// otherwise moves the value into `lhs` (which may be a declaration: `auto x`).
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define EMPORIUM_STATUS_CONCAT_INNER(a, b) a##b
#define EMPORIUM_STATUS_CONCAT(a, b) EMPORIUM_STATUS_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                                               \
  do {                                                                      \
    if (::absl::Status emporium_status_ = (expr); !emporium_status_.ok()) { \
      return emporium_status_;                                              \
    }                                                                       \
  } while (false)

#define EMPORIUM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = std::move(tmp).value()

#define ASSIGN_OR_RETURN(lhs, expr) \
  EMPORIUM_ASSIGN_OR_RETURN_IMPL(EMPORIUM_STATUS_CONCAT(emporium_statusor_, __LINE__), lhs, expr)
