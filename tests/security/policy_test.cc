// Unit tests of the access policy: parsing, pattern matching and decisions.
#include "service/security/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(
roles:
  - name: payments-reader
    namespaces: ["payments/*"]
    permission: read
  - name: flags-writer
    namespaces: [shared/flags]
    permission: write
  - name: operator
    namespaces: "*"
    permission: admin
bindings:
  - identity: CN=alice,O=payments
    roles: [payments-reader, flags-writer]
  - identity: ci/root
    roles: [operator]
)";

TEST(PatternTest, StarSuffixCoversDescendantsOnly) {
  EXPECT_TRUE(PatternMatches("*", "anything/at/all"));
  EXPECT_TRUE(PatternMatches("team/*", "team/a"));
  EXPECT_TRUE(PatternMatches("team/*", "team/a/b"));
  EXPECT_FALSE(PatternMatches("team/*", "team"));
  EXPECT_FALSE(PatternMatches("team/*", "teamx/a"));
  EXPECT_TRUE(PatternMatches("team/a", "team/a"));
  EXPECT_FALSE(PatternMatches("team/a", "team/ab"));
}

TEST(PolicyTest, GrantsTheHighestMatchingPermission) {
  ASSERT_OK_AND_ASSIGN(Policy policy, Policy::Parse(kPolicy));
  EXPECT_EQ(policy.Granted("CN=alice,O=payments", "payments/prod"), Permission::kRead);
  EXPECT_EQ(policy.Granted("CN=alice,O=payments", "shared/flags"), Permission::kWrite);
  EXPECT_EQ(policy.Granted("CN=alice,O=payments", "shared/flagsx"), Permission::kNone);
  EXPECT_EQ(policy.Granted("CN=alice,O=payments", "payments"), Permission::kNone);
  EXPECT_EQ(policy.Granted("ci/root", "payments/prod"), Permission::kAdmin);
  EXPECT_EQ(policy.Granted("someone-else", "payments/prod"), Permission::kNone);
  EXPECT_EQ(policy.GrantedEverywhere("ci/root"), Permission::kAdmin);
  EXPECT_EQ(policy.GrantedEverywhere("CN=alice,O=payments"), Permission::kNone);
}

TEST(PolicyTest, RejectsMistakesNamingWhere) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"roles: [{name: r, namespaces: [a], permission: owner}]", "permission"},
           Case{"roles: [{name: r, namespaces: [a*], permission: read}]", "pattern"},
           Case{"roles: [{name: r, namespaces: [], permission: read}]", "lists no namespaces"},
           Case{"roles: [{namespaces: [a], permission: read}]", "no name"},
           Case{"roles: [{name: r, namespaces: [a], permission: read},"
                " {name: r, namespaces: [b], permission: read}]",
                "twice"},
           Case{"bindings: [{identity: x, roles: [missing]}]", "unknown role"},
           Case{"bindings: [{roles: []}]", "no identity"},
           Case{"rolez: []", "unknown policy field"},
           Case{"[1, 2]", "must be a map"},
           Case{"roles: [", "YAML"},
       }) {
    EXPECT_THAT(Policy::Parse(c.text).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

TEST(AuthorizerTest, DisabledAllowsEverythingEnabledDeniesByDefault) {
  ASSERT_OK_AND_ASSIGN(auto open, Authorizer::Open({.enabled = false}));
  EXPECT_THAT(open->Check("anonymous", Permission::kAdmin, "x"), IsOk());
  ASSERT_OK_AND_ASSIGN(auto closed, Authorizer::Open({.enabled = true}));
  EXPECT_THAT(closed->Check("ci/root", Permission::kRead, "x"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(closed->CheckGlobal("ci/root", Permission::kRead),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

TEST(AuthorizerTest, DenialDoesNotDependOnWhetherTheNamespaceExists) {
  const std::string path = ::testing::TempDir() + "/policy-" + std::to_string(::getpid());
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs(kPolicy, f);
  std::fclose(f);
  ASSERT_OK_AND_ASSIGN(auto authz, Authorizer::Open({.enabled = true, .policy_file = path}));
  std::remove(path.c_str());
  EXPECT_THAT(authz->Check("CN=alice,O=payments", Permission::kWrite, "payments/prod"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(authz->Check("CN=alice,O=payments", Permission::kRead, "payments/prod"), IsOk());
  EXPECT_THAT(authz->CheckGlobal("ci/root", Permission::kAdmin), IsOk());
  EXPECT_FALSE(authz->CanRead("CN=alice,O=payments", "hr/salaries"));
}

}  // namespace
}  // namespace snapconf
