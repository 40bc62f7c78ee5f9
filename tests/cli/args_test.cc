// tests/cli/args_test.cc
#include "client/cli/args.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client/admin_client.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::cli {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::vector<FlagSpec> kSpecs = {
    {"--revision", "", true}, {"--keys-only", "", false}, {"--output", "-o", true}};

TEST(ParseArgsTest, AcceptsFlagsAnywhere) {
  ASSERT_OK_AND_ASSIGN(
      ParsedArgs a,
      ParseArgs({"ns", "--revision", "7", "pre", "-o", "json", "--keys-only"}, kSpecs));
  EXPECT_THAT(a.positionals, ElementsAre("ns", "pre"));
  EXPECT_EQ(a.Get("--revision"), "7");
  EXPECT_EQ(a.Get("--output"), "json");
  EXPECT_TRUE(a.Has("--keys-only"));
}

TEST(ParseArgsTest, AcceptsInlineValues) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs a, ParseArgs({"--revision=12", "--output="}, kSpecs));
  EXPECT_EQ(a.Get("--revision"), "12");
  EXPECT_EQ(a.Get("--output"), "");
}

TEST(ParseArgsTest, DoubleDashEndsFlags) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs a, ParseArgs({"ns", "--", "-5", "--keys-only"}, kSpecs));
  EXPECT_THAT(a.positionals, ElementsAre("ns", "-5", "--keys-only"));
  EXPECT_FALSE(a.Has("--keys-only"));
}

TEST(ParseArgsTest, LoneDashIsPositional) {
  ASSERT_OK_AND_ASSIGN(ParsedArgs a, ParseArgs({"-"}, kSpecs));
  EXPECT_THAT(a.positionals, ElementsAre("-"));
}

TEST(ParseArgsTest, RejectsUnknownFlagsAndMissingValues) {
  EXPECT_THAT(ParseArgs({"--nope"}, kSpecs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown flag --nope")));
  EXPECT_THAT(ParseArgs({"--revision"}, kSpecs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs a value")));
  EXPECT_THAT(ParseArgs({"--keys-only=1"}, kSpecs),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("takes no value")));
}

TEST(ParseFlagValueTest, NumbersAndDurations) {
  EXPECT_THAT(ParseInt64Flag("--revision", "42"), IsOk());
  EXPECT_THAT(ParseInt64Flag("--revision", "4x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--revision")));
  ASSERT_OK_AND_ASSIGN(absl::Duration d, ParseDurationFlag("--timeout", "250ms"));
  EXPECT_EQ(d, absl::Milliseconds(250));
  EXPECT_THAT(ParseDurationFlag("--timeout", "5"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParseDurationFlag("--timeout", "-1s"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ParseEndpointsTest, SplitsAndValidates) {
  ASSERT_OK_AND_ASSIGN(auto eps, client::ParseEndpoints(" a:1, ,b:2,[::1]:3 "));
  EXPECT_THAT(eps, ElementsAre("a:1", "b:2", "[::1]:3"));
  EXPECT_THAT(client::ParseEndpoints(""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client::ParseEndpoints("host"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(client::ParseEndpoints("host:0"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(MakeAdminConnectionTest, RefusesATokenWithoutTls) {
  client::AdminClientOptions options;
  options.endpoints = {"127.0.0.1:1"};
  options.security.bearer_token = "secret";
  EXPECT_THAT(client::MakeAdminConnection(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("TLS")));
}

}  // namespace
}  // namespace snapconf::cli
