// client/cli/exit_codes.cc
#include "client/cli/exit_codes.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/admin_client.h"

namespace snapconf::cli {

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return kExitUsage;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return kExitCompareFailed;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return client::IsOutcomeUnknown(status) ? kExitOutcomeUnknown : kExitUnavailable;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitPermission;
    default:
      return kExitError;
  }
}

std::string ErrorLine(const absl::Status& status, std::string_view subject) {
  // "NOT_FOUND" -> "not found".
  std::string code = absl::AsciiStrToLower(
      absl::StrReplaceAll(absl::StatusCodeToString(status.code()), {{"_", " "}}));
  std::string message(status.message());
  if (status.code() == absl::StatusCode::kNotFound && !subject.empty()) {
    message = std::string(subject);
  }
  // One line, whatever the server sent.
  for (char& c : message) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  if (message.empty()) return absl::StrCat("snapconfctl: ", code);
  return absl::StrCat("snapconfctl: ", code, ": ", message);
}

}  // namespace snapconf::cli
