// Unit tests of the tokens file, token verification and the loopback rule.
#include "service/security/tokens.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/security/transport.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSecret[] = "correct-horse-battery-staple-0123456789";

TEST(TokensFileTest, ParsesLinesCommentsAndExpiry) {
  const std::string contents =
      absl::StrCat("# deploy tokens\n\n", "bot ci/deployer ", HashSecret(kSecret), "\n",
                   "alice alice@example.com ", HashSecret("x"), " expires=2030-01-01T00:00:00Z\n");
  ASSERT_OK_AND_ASSIGN(TokenVerifier::Table table, TokenVerifier::Parse(contents));
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table.at("bot").identity, "ci/deployer");
  EXPECT_EQ(table.at("bot").expires, absl::InfiniteFuture());
  EXPECT_EQ(table.at("alice").expires, absl::FromUnixSeconds(1893456000));
}

TEST(TokensFileTest, RejectsMalformedLinesNamingTheLine) {
  const std::string hash = HashSecret(kSecret);
  for (const std::string& bad : {
           std::string("bot ci/deployer"),                           // no hash
           absl::StrCat("bot ci/deployer ", hash, " x y"),           // too many fields
           absl::StrCat("b.t ci/deployer ", hash),                   // id with a dot
           absl::StrCat("bot ci deployer ", hash),                   // identity split
           std::string("bot ci/deployer sha256:abc"),                // short hash
           absl::StrCat("bot ci/deployer ", hash.substr(7)),         // no sha256: prefix
           absl::StrCat("bot ci/deployer ", hash, " expires=soon"),  // bad time
           absl::StrCat("bot a ", hash, "\nbot b ", hash),           // duplicate id
       }) {
    absl::StatusOr<TokenVerifier::Table> table = TokenVerifier::Parse(bad);
    EXPECT_THAT(table.status(), StatusIs(absl::StatusCode::kInvalidArgument)) << bad;
    EXPECT_THAT(table.status().message(), HasSubstr("line ")) << bad;
    // The secret's hash is never echoed back.
    EXPECT_THAT(table.status().message(), Not(HasSubstr(hash.substr(7, 16)))) << bad;
  }
}

class VerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = ::testing::TempDir() + "/tokens-" + std::to_string(::getpid());
    Write(absl::StrCat("bot ci/deployer ", HashSecret(kSecret), "\n", "old ci/old ",
                       HashSecret(kSecret), " expires=2001-01-01T00:00:00Z\n"));
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& contents, int mode = 0600) {
    FILE* f = std::fopen(path_.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(contents.c_str(), f);
    std::fclose(f);
    ::chmod(path_.c_str(), static_cast<mode_t>(mode));
  }
  std::string path_;
};

TEST_F(VerifierTest, AcceptsTheRightSecretOnly) {
  ASSERT_OK_AND_ASSIGN(auto verifier, TokenVerifier::Open(path_));
  ASSERT_OK_AND_ASSIGN(TokenIdentity who, verifier->Verify(absl::StrCat("bot.", kSecret)));
  EXPECT_EQ(who.identity, "ci/deployer");
  EXPECT_EQ(who.token_id, "bot");
  for (const std::string& bad :
       {absl::StrCat("bot.", kSecret, "x"), absl::StrCat("nobody.", kSecret), std::string(kSecret),
        std::string("bot.short"), absl::StrCat("old.", kSecret)}) {
    absl::StatusOr<TokenIdentity> r = verifier->Verify(bad);
    EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kUnauthenticated)) << bad;
    EXPECT_THAT(r.status().message(), Not(HasSubstr(kSecret))) << bad;
  }
  EXPECT_THAT(verifier->Verify(absl::StrCat("old.", kSecret)).status().message(),
              HasSubstr("expired"));
}

TEST_F(VerifierTest, ReloadRevokesAndKeepsOldTableOnBadFile) {
  ASSERT_OK_AND_ASSIGN(auto verifier, TokenVerifier::Open(path_));
  // A broken edit keeps the previous tokens.
  Write("this is not a tokens file\n");
  EXPECT_THAT(verifier->ReloadIfChanged(), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(verifier->Verify(absl::StrCat("bot.", kSecret)).status(), IsOk());
  // Removing the line revokes the token.
  Write("# nobody\n");
  ASSERT_THAT(verifier->ReloadIfChanged(), IsOk());
  EXPECT_THAT(verifier->Verify(absl::StrCat("bot.", kSecret)).status(),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(VerifierTest, RefusesAFileOthersCanRead) {
  Write(absl::StrCat("bot ci/deployer ", HashSecret(kSecret), "\n"), 0644);
  EXPECT_THAT(TokenVerifier::Open(path_).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("chmod 600")));
}

TEST(MakeTokenTest, SecretsAreLongRandomAndHashMatches) {
  ASSERT_OK_AND_ASSIGN(NewToken a, MakeToken());
  ASSERT_OK_AND_ASSIGN(NewToken b, MakeToken());
  EXPECT_GE(a.secret.size(), 43u);
  EXPECT_NE(a.secret, b.secret);
  EXPECT_EQ(a.hash, HashSecret(a.secret));
}

TEST(LoopbackTest, OnlyLoopbackHostsCount) {
  for (const char* listen : {"127.0.0.1:7070", "127.9.9.9:1", "localhost:7070", "[::1]:7070"}) {
    EXPECT_TRUE(IsLoopbackListenAddress(listen)) << listen;
  }
  for (const char* listen : {"0.0.0.0:7070", "[::]:7070", "10.0.0.1:7070", "example.com:7070",
                             "128.0.0.1:7070", ":7070"}) {
    EXPECT_FALSE(IsLoopbackListenAddress(listen)) << listen;
  }
}

TEST(ServerSecurityTest, NonLoopbackNeedsTlsAndAuthenticationOrTheLoudFlag) {
  TransportSecurityOptions plain;
  EXPECT_THAT(MakeServerSecurity("0.0.0.0:7070", plain).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("refusing to serve")));
  ASSERT_OK_AND_ASSIGN(ServerSecurity loopback, MakeServerSecurity("127.0.0.1:7070", plain));
  EXPECT_TRUE(loopback.warning.empty());
  plain.allow_insecure_non_loopback = true;
  ASSERT_OK_AND_ASSIGN(ServerSecurity exposed, MakeServerSecurity("0.0.0.0:7070", plain));
  EXPECT_THAT(exposed.warning, HasSubstr("WARNING insecure listener"));
}

TEST(ServerSecurityTest, InconsistentOptionsAreRefused) {
  TransportSecurityOptions o;
  o.tokens_file = "/nonexistent";
  EXPECT_THAT(MakeServerSecurity("127.0.0.1:1", o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs TLS")));
  o = {};
  o.tls_cert_file = "/nonexistent.pem";
  EXPECT_THAT(MakeServerSecurity("127.0.0.1:1", o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("both")));
  o.tls_key_file = "/nonexistent.key";
  EXPECT_THAT(MakeServerSecurity("127.0.0.1:1", o).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("/nonexistent.pem")));
}

}  // namespace
}  // namespace snapconf
