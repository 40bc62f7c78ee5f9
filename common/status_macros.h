// common/status_macros.h
//
// Early-return helpers for absl::Status and absl::StatusOr. Debian's Abseil
// (20220623) ships neither, so the project keeps one definition here.
//
//   absl::Status Save(const Config& c) {
//     RETURN_IF_ERROR(Validate(c));
//     ASSIGN_OR_RETURN(auto file, OpenFile(c.path()));
//     ...
//   }
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SNAPCONF_STATUS_CONCAT_INNER(a, b) a##b
#define SNAPCONF_STATUS_CONCAT(a, b) SNAPCONF_STATUS_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    ::absl::Status _snapconf_status = (expr);  \
    if (!_snapconf_status.ok()) {              \
      return _snapconf_status;                 \
    }                                          \
  } while (false)

// Evaluates a StatusOr expression; on error returns its status, otherwise
// moves the value into `lhs` (which may be a declaration).
#define ASSIGN_OR_RETURN(lhs, expr) \
  SNAPCONF_ASSIGN_OR_RETURN_IMPL(SNAPCONF_STATUS_CONCAT(_snapconf_statusor_, __LINE__), lhs, expr)

#define SNAPCONF_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) {                                     \
    return tmp.status();                               \
  }                                                    \
  lhs = std::move(tmp).value()
