// tests/cli/exit_codes_test.cc
#include "client/cli/exit_codes.h"

#include <gtest/gtest.h>

#include "absl/strings/cord.h"
#include "client/admin_client.h"

namespace snapconf::cli {
namespace {

TEST(ExitCodeForTest, MapsEveryDocumentedCode) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::UnknownError("x")), 1);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("x")), 1);
  EXPECT_EQ(ExitCodeFor(absl::ResourceExhaustedError("x")), 1);
  EXPECT_EQ(ExitCodeFor(absl::CancelledError("x")), 1);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("x")), 2);
  EXPECT_EQ(ExitCodeFor(absl::OutOfRangeError("x")), 2);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("x")), 3);
  EXPECT_EQ(ExitCodeFor(absl::AbortedError("x")), 4);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("x")), 4);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("x")), 5);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("x")), 5);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("x")), 6);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("x")), 6);
}

TEST(ExitCodeForTest, OutcomeUnknownIsSeven) {
  absl::Status s = absl::UnavailableError("outcome unknown: connection reset");
  s.SetPayload("type.snapconf.dev/snapconf.client.OutcomeUnknown", absl::Cord("1"));
  ASSERT_TRUE(client::IsOutcomeUnknown(s));
  EXPECT_EQ(ExitCodeFor(s), 7);
}

TEST(ErrorLineTest, SpellsTheCodeAndKeepsTheServerMessage) {
  EXPECT_EQ(ErrorLine(absl::AbortedError("mod_revision of a is 7, expected 5")),
            "snapconfctl: aborted: mod_revision of a is 7, expected 5");
  EXPECT_EQ(ErrorLine(absl::DeadlineExceededError("")), "snapconfctl: deadline exceeded");
  EXPECT_EQ(ErrorLine(absl::InternalError("two\nlines")), "snapconfctl: internal: two lines");
}

TEST(ErrorLineTest, NotFoundNamesTheSubject) {
  EXPECT_EQ(ErrorLine(absl::NotFoundError("key not found"), "payments/prod db.pool.max"),
            "snapconfctl: not found: payments/prod db.pool.max");
  EXPECT_EQ(ErrorLine(absl::NotFoundError("key not found")),
            "snapconfctl: not found: key not found");
}

}  // namespace
}  // namespace snapconf::cli
