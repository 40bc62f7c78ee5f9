// client/cli/exit_codes.h
//
// snapconfctl's exit codes and the one-line error message it prints. Pure
// functions of an absl::Status; thread-safe.
//
//   absl::Status s = client.Get(ns, key).status();
//   std::cerr << ErrorLine(s, absl::StrCat(ns, " ", key)) << "\n";
//   return ExitCodeFor(s);   // 3 for NOT_FOUND
#pragma once

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace snapconf::cli {

// Stable contract for scripts; documented in `snapconfctl --help`.
enum ExitCode : int {
  kExitOk = 0,
  // Anything not listed below, including a declined confirmation.
  kExitError = 1,
  // Bad usage or input: local checks, INVALID_ARGUMENT, OUT_OF_RANGE (a
  // revision outside retained history), a refused unconfirmed rollback.
  kExitUsage = 2,
  // NOT_FOUND.
  kExitNotFound = 3,
  // A compare failed: ABORTED, FAILED_PRECONDITION, ALREADY_EXISTS.
  kExitCompareFailed = 4,
  // The server could not be reached or did not answer in time (UNAVAILABLE,
  // DEADLINE_EXCEEDED); nothing was written.
  kExitUnavailable = 5,
  // UNAUTHENTICATED, PERMISSION_DENIED.
  kExitPermission = 6,
  // A write was sent but its outcome is unknown (the connection broke or the
  // deadline passed after sending): it may or may not have been committed.
  // Kept apart from 5 because a script may retry after 5 but must check the
  // current state before retrying after 7.
  kExitOutcomeUnknown = 7,
};

int ExitCodeFor(const absl::Status& status);

// "snapconfctl: not found: payments/prod db.pool.max". The code is spelled in
// words; `subject` (when not empty) replaces the server's message for
// NOT_FOUND, where the CLI knows exactly what was missing.
std::string ErrorLine(const absl::Status& status, std::string_view subject = {});

}  // namespace snapconf::cli
