// snapconfctl's policy and audit documents: what `policy get` prints is what
// `policy set` reads, and bad files are refused naming what is wrong.
#include "client/cli/policy_doc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/time/time.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::cli {
namespace {

using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

client::AccessPolicy Sample() {
  client::AccessPolicy p;
  p.version = 7;
  p.roles = {{"operator", {"*"}, "admin"}, {"payments-reader", {"payments/*", "007"}, "read"}};
  p.bindings = {{"CN=alice,O=payments", {"payments-reader"}}, {"ops/root", {"operator"}}};
  return p;
}

void ExpectSame(const client::AccessPolicy& a, const client::AccessPolicy& b) {
  EXPECT_EQ(a.version, b.version);
  ASSERT_EQ(a.roles.size(), b.roles.size());
  for (size_t i = 0; i < a.roles.size(); ++i) {
    EXPECT_EQ(a.roles[i].name, b.roles[i].name);
    EXPECT_EQ(a.roles[i].namespaces, b.roles[i].namespaces);
    EXPECT_EQ(a.roles[i].permission, b.roles[i].permission);
  }
  ASSERT_EQ(a.bindings.size(), b.bindings.size());
  for (size_t i = 0; i < a.bindings.size(); ++i) {
    EXPECT_EQ(a.bindings[i].identity, b.bindings[i].identity);
    EXPECT_EQ(a.bindings[i].roles, b.bindings[i].roles);
  }
}

TEST(PolicyDocTest, GetOutputRoundTripsThroughSetInYamlAndJson) {
  for (OutputFormat format : {OutputFormat::kTable, OutputFormat::kYaml, OutputFormat::kJson}) {
    const std::string text = FormatPolicy(Sample(), format);
    absl::StatusOr<client::AccessPolicy> back = ParsePolicyDocument(text, "p");
    ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
    ExpectSame(*back, Sample());
  }
  EXPECT_THAT(FormatPolicy(Sample(), OutputFormat::kTable), HasSubstr("version: 7\n"));
}

TEST(PolicyDocTest, ReadsTheServersFileShape) {
  absl::StatusOr<client::AccessPolicy> p = ParsePolicyDocument(R"(
version: 3
roles:
  - {name: w, namespaces: "team/*", permission: write}
bindings:
  - {identity: ci/deployer, roles: w}
)",
                                                               "f.yaml");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->version, 3);
  ASSERT_EQ(p->roles.size(), 1u);
  EXPECT_EQ(p->roles[0].namespaces, std::vector<std::string>{"team/*"});
  ASSERT_EQ(p->bindings.size(), 1u);
  EXPECT_EQ(p->bindings[0].roles, std::vector<std::string>{"w"});
}

TEST(PolicyDocTest, RefusesFilesWithoutVersionOrWithUnknownFields) {
  EXPECT_THAT(ParsePolicyDocument("roles: []\n", "f.yaml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no version")));
  EXPECT_THAT(ParsePolicyDocument("version: x\n", "f.yaml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("whole number")));
  EXPECT_THAT(ParsePolicyDocument("version: 1\nrole: []\n", "f.yaml").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"role\"")));
  EXPECT_THAT(
      ParsePolicyDocument("version: 1\nroles: [{name: a, perm: read}]\n", "f.yaml").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"perm\"")));
  EXPECT_THAT(ParsePolicyDocument("[1, 2]", "f.json").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AuditFormatTest, TableHasOneLinePerEventAndJsonEveryField) {
  client::AuditPage page;
  client::AuditEvent e;
  e.time = absl::FromUnixSeconds(1800000000);
  e.identity = "ci/deployer";
  e.method = "/snapconf.v1.ConfigService/Txn";
  e.namespaces = {"payments/prod"};
  e.keys = {"payments/prod/a", "payments/prod/b", "payments/prod/c", "payments/prod/d"};
  e.old_revision = 4;
  e.new_revision = 5;
  e.outcome = "OK";
  page.events.push_back(e);
  e.identity = "team/alice";
  e.method = "/snapconf.v1.ConfigService/Put";
  e.keys = {"payments/prod/x\ny"};
  e.new_revision = 0;
  e.outcome = "PERMISSION_DENIED";
  e.detail = "team/alice may not write namespace payments/prod";
  page.events.push_back(e);
  const std::string table = FormatAudit(page, OutputFormat::kTable);
  EXPECT_EQ(table,
            "TIME                  IDENTITY     METHOD  KEYS                                       "
            "         REVISIONS  OUTCOME\n"
            "2027-01-15T08:00:00Z  ci/deployer  Txn     "
            "payments/prod/a,payments/prod/b,payments/prod/c,+1  4->5       OK\n"
            "2027-01-15T08:00:00Z  team/alice   Put     payments/prod/x\\ny                        "
            "          4->0       PERMISSION_DENIED\n"
            "2 events\n");
  const std::string json = FormatAudit(page, OutputFormat::kJson);
  EXPECT_THAT(json, HasSubstr(R"("detail": "team/alice may not write namespace payments/prod")"));
  EXPECT_THAT(json, HasSubstr(R"("old_revision": 4)"));
  EXPECT_THAT(json, HasSubstr(R"("next_page_token": "")"));
}

}  // namespace
}  // namespace snapconf::cli
