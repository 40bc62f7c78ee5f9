// Unit tests of the access policy: parsing, pattern matching and decisions.
#include "service/security/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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

class PolicyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/policyXXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    path_ = dir_ + "/policy.yaml";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& text) {
    // A different size each time, so the change is seen whatever the clock.
    std::ofstream(path_, std::ios::trunc) << text << std::string(++writes_, '\n');
  }
  std::string Read() const {
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static absl::Status AcceptAll(const Policy&) { return absl::OkStatus(); }

  std::string dir_;
  std::string path_;
  int writes_ = 0;
};

TEST_F(PolicyFileTest, VersionComesFromTheFileAndNeverGoesBackwards) {
  Write(std::string("version: 7\n") + kPolicy);
  auto authz = Authorizer::Open({.enabled = true, .policy_file = path_});
  ASSERT_TRUE(authz.ok()) << authz.status();
  EXPECT_EQ((*authz)->current()->version(), 7);
  // A hand edit that forgets the version, or lowers it, still moves forward.
  Write(kPolicy);
  ASSERT_THAT((*authz)->ReloadIfChanged(), IsOk());
  EXPECT_EQ((*authz)->current()->version(), 8);
  Write(std::string("version: 3\n") + kPolicy);
  ASSERT_THAT((*authz)->ReloadIfChanged(), IsOk());
  EXPECT_EQ((*authz)->current()->version(), 9);
  Write(std::string("version: 20\n") + kPolicy);
  ASSERT_THAT((*authz)->ReloadIfChanged(), IsOk());
  EXPECT_EQ((*authz)->current()->version(), 20);
  Write("version: -1\n");
  EXPECT_THAT((*authz)->ReloadIfChanged(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ((*authz)->current()->version(), 20);
}

TEST_F(PolicyFileTest, ReplaceWritesTheFileAndPutsItInForce) {
  Write(kPolicy);
  auto authz = Authorizer::Open({.enabled = true, .policy_file = path_});
  ASSERT_TRUE(authz.ok()) << authz.status();
  const int64_t v1 = (*authz)->current()->version();
  EXPECT_FALSE((*authz)->Check("team/bob", Permission::kWrite, "hr/x").ok());
  std::vector<Policy::Role> roles = (*authz)->current()->roles();
  roles.push_back({.name = "hr", .patterns = {"hr/*"}, .permission = Permission::kWrite});
  std::vector<Policy::Binding> bindings = (*authz)->current()->bindings();
  bindings.push_back({.identity = "team/bob", .roles = {"hr"}});
  absl::StatusOr<const Policy*> next = (*authz)->Replace(roles, bindings, v1, AcceptAll);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*next)->version(), v1 + 1);
  EXPECT_TRUE((*authz)->Check("team/bob", Permission::kWrite, "hr/x").ok());
  // The file says the same, with its version, and is private.
  absl::StatusOr<Policy> reread = Policy::Parse(Read());
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_EQ(reread->version(), v1 + 1);
  EXPECT_EQ(reread->Granted("team/bob", "hr/x"), Permission::kWrite);
  EXPECT_EQ(reread->Granted("ci/root", "any"), Permission::kAdmin);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Nothing changes on the periodic reload: the file is what is in force.
  ASSERT_THAT((*authz)->ReloadIfChanged(), IsOk());
  EXPECT_EQ((*authz)->current()->version(), v1 + 1);
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);
}

TEST_F(PolicyFileTest, ReplaceRefusesStaleVersionsInvalidPoliciesAndVetoes) {
  Write(kPolicy);
  auto authz = Authorizer::Open({.enabled = true, .policy_file = path_});
  ASSERT_TRUE(authz.ok()) << authz.status();
  const std::string before = Read();
  const int64_t v = (*authz)->current()->version();
  const auto roles = (*authz)->current()->roles();
  const auto bindings = (*authz)->current()->bindings();
  EXPECT_THAT((*authz)->Replace(roles, bindings, v - 1, AcceptAll).status(),
              StatusIs(absl::StatusCode::kAborted));
  auto bad_roles = roles;
  bad_roles.push_back({.name = "broken", .patterns = {"a*b"}, .permission = Permission::kRead});
  EXPECT_THAT((*authz)->Replace(bad_roles, bindings, v, AcceptAll).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("role broken")));
  auto bad_bindings = bindings;
  bad_bindings.push_back({.identity = "x", .roles = {"no-such-role"}});
  EXPECT_THAT((*authz)->Replace(roles, bad_bindings, v, AcceptAll).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no-such-role")));
  auto unspecified = roles;
  unspecified.push_back({.name = "none", .patterns = {"x"}, .permission = Permission::kNone});
  EXPECT_THAT((*authz)->Replace(unspecified, bindings, v, AcceptAll).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("role none")));
  EXPECT_THAT((*authz)
                  ->Replace(roles, {}, v,
                            [](const Policy&) { return absl::FailedPreconditionError("vetoed"); })
                  .status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(Read(), before);
  EXPECT_EQ((*authz)->current()->version(), v);
}

TEST_F(PolicyFileTest, ReplaceSeesAHandEditFirst) {
  Write(kPolicy);
  auto authz = Authorizer::Open({.enabled = true, .policy_file = path_});
  ASSERT_TRUE(authz.ok()) << authz.status();
  const int64_t v = (*authz)->current()->version();
  const auto roles = (*authz)->current()->roles();
  const auto bindings = (*authz)->current()->bindings();
  Write(std::string(kPolicy) + "  - {identity: team/new, roles: [operator]}\n");
  // Based on the version before the edit: refused, the edit survives.
  EXPECT_THAT((*authz)->Replace(roles, bindings, v, AcceptAll).status(),
              StatusIs(absl::StatusCode::kAborted));
  EXPECT_TRUE((*authz)->Check("team/new", Permission::kAdmin, "x").ok());
}

TEST(AuthorizerReplaceTest, NeedsAPolicyFile) {
  auto authz = Authorizer::Open({.enabled = false});
  ASSERT_TRUE(authz.ok());
  EXPECT_THAT((*authz)->Replace({}, {}, 0, [](const Policy&) { return absl::OkStatus(); }).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("--policy-file")));
}

}  // namespace
}  // namespace snapconf
