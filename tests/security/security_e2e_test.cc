// Transport security against real snapconfd processes over loopback: TLS,
// mutual TLS identities, bearer tokens, certificate rotation and the refusal
// to expose an unauthenticated listener. Certificates are made by the test at
// run time with the openssl command; nothing secret is committed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/admin_client.h"
#include "service/security/tokens.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_pki.h"

namespace snapconf {
namespace {

using ::snapconf::client::AdminClient;
using ::snapconf::client::AdminClientOptions;
using ::snapconf::client::ChannelSecurity;
using ::snapconf::testing::IsOk;
using ::snapconf::testing::ReadTextFile;
using ::snapconf::testing::ServerOptions;
using ::snapconf::testing::ServerProcess;
using ::snapconf::testing::StatusIs;
using ::snapconf::testing::TestPki;
using ::snapconf::testing::WriteTextFile;
using ::testing::HasSubstr;

constexpr char kNs[] = "payments/prod";

std::string ReadFile(const std::string& path) { return ReadTextFile(path); }

void WriteFile(const std::string& path, const std::string& contents, mode_t mode = 0600) {
  WriteTextFile(path, contents, mode);
}

class SecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_.MakeCa("ca");
    pki_.MakeCa("other-ca");  // same subject as "ca", different key
    pki_.MakeLeaf("server", "ca", "/CN=snapconfd");
    pki_.MakeLeaf("alice", "ca", "/O=payments/CN=alice");
    pki_.MakeLeaf("expired", "ca", "/O=payments/CN=alice", -1);
    pki_.MakeLeaf("impostor", "other-ca", "/O=payments/CN=alice");
  }

  // TLS, plus a policy that lets the test's identities do anything
  // (authorization itself is tested in authz_e2e_test).
  std::vector<std::string> TlsFlags() const {
    WriteFile(pki_.Path("policy.yaml"), R"(
roles:
  - {name: operator, namespaces: "*", permission: admin}
bindings:
  - {identity: "CN=alice,O=payments", roles: [operator]}
  - {identity: ci/deployer, roles: [operator]}
)");
    return {"--tls-cert-file=" + pki_.Path("server.pem"),
            "--tls-key-file=" + pki_.Path("server.key"),
            "--policy-file=" + pki_.Path("policy.yaml")};
  }

  std::unique_ptr<ServerProcess> Start(std::vector<std::string> flags) {
    ServerOptions options;
    options.extra_flags = std::move(flags);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // A client that trusts `ca`, presents `cert` (if not empty) and `token` (if not empty).
  AdminClient Client(const std::string& address, const std::string& ca = "ca",
                     const std::string& cert = "", const std::string& token = "") {
    AdminClientOptions o;
    o.endpoints = {address};
    o.call_timeout = absl::Seconds(5);
    o.security.mode = ChannelSecurity::Mode::kTls;
    o.security.root_certs_pem = ReadFile(pki_.Path(ca + ".pem"));
    if (!cert.empty()) {
      o.security.client_cert_chain_pem = ReadFile(pki_.Path(cert + ".pem"));
      o.security.client_private_key_pem = ReadFile(pki_.Path(cert + ".key"));
    }
    o.security.bearer_token = token;
    absl::StatusOr<AdminClient> c = AdminClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return *std::move(c);
  }

  AdminClient PlainClient(const std::string& address) {
    AdminClientOptions o;
    o.endpoints = {address};
    o.call_timeout = absl::Seconds(3);
    return *AdminClient::Create(o);
  }

  std::string LatestAuthor(AdminClient& client) {
    client::HistoryOptions h;
    h.ns = kNs;
    absl::StatusOr<client::HistoryPage> page = client.History(h);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() && !page->records.empty() ? page->records.front().author : "";
  }

  TestPki pki_;
};

TEST_F(SecurityTest, MutualTlsSubjectIsTheIdentityAndTheAuthor) {
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--tls-client-ca-file=" + pki_.Path("ca.pem"));
  auto server = Start(flags);
  ASSERT_NE(server, nullptr);
  AdminClient alice = Client(server->address(), "ca", "alice");
  ASSERT_THAT(alice.Put(kNs, "db.pool.max", "32").status(), IsOk());
  EXPECT_EQ(LatestAuthor(alice), "CN=alice,O=payments");
}

TEST_F(SecurityTest, HandshakesWithoutAValidClientCertificateAreRefused) {
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--tls-client-ca-file=" + pki_.Path("ca.pem"));
  auto server = Start(flags);
  ASSERT_NE(server, nullptr);
  // No certificate, an expired one, one from another CA with the same subject,
  // and plaintext: all refused in the handshake, before any handler runs.
  for (const char* cert : {"", "expired", "impostor"}) {
    AdminClient c = Client(server->address(), "ca", cert);
    EXPECT_THAT(c.Put(kNs, "k", "v").status(), StatusIs(absl::StatusCode::kUnavailable))
        << "client certificate: " << cert;
  }
  AdminClient plain = PlainClient(server->address());
  EXPECT_THAT(plain.Get(kNs, "k").status(), StatusIs(absl::StatusCode::kUnavailable));
  // Nothing was written by any of them.
  AdminClient alice = Client(server->address(), "ca", "alice");
  EXPECT_THAT(alice.Get(kNs, "k").status(), StatusIs(absl::StatusCode::kNotFound));
  // A client that does not trust the server's CA refuses the server, too.
  AdminClient wrong_roots = Client(server->address(), "other-ca", "alice");
  EXPECT_THAT(wrong_roots.Get(kNs, "k").status(), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(SecurityTest, BearerTokensIdentifyCallersAndBadOnesAreUnauthenticated) {
  const std::string secret = "s3cret-s3cret-s3cret-s3cret-s3cret-0001";
  const std::string tokens = pki_.Path("tokens");
  WriteFile(tokens,
            absl::StrCat("deployer ci/deployer ", HashSecret(secret), "\n", "retired ci/old ",
                         HashSecret(secret), " expires=2001-01-01T00:00:00Z\n"));
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--tokens-file=" + tokens);
  auto server = Start(flags);
  ASSERT_NE(server, nullptr);

  AdminClient deployer = Client(server->address(), "ca", "", "deployer." + secret);
  ASSERT_THAT(deployer.Put(kNs, "feature.x", "on").status(), IsOk());
  EXPECT_EQ(LatestAuthor(deployer), "ci/deployer");

  for (const std::string& token :
       {std::string(""), std::string("deployer.wrong-wrong-wrong-wrong-wrong-wrong-wrong"),
        "retired." + secret, "nobody." + secret}) {
    AdminClient c = Client(server->address(), "ca", "", token);
    EXPECT_THAT(c.Put(kNs, "feature.x", "off").status(),
                StatusIs(absl::StatusCode::kUnauthenticated))
        << token;
    EXPECT_THAT(c.Get(kNs, "feature.x").status(), StatusIs(absl::StatusCode::kUnauthenticated))
        << token;
  }
  ASSERT_OK_AND_ASSIGN(client::GetResult value, deployer.Get(kNs, "feature.x"));
  EXPECT_EQ(value.entry.value, "on");
  // The secret never reaches the log.
  EXPECT_THAT(server->ReadLog(), ::testing::Not(HasSubstr(secret)));

  // Revoking: the line is removed, and the server stops accepting the token
  // once it re-reads the file (it checks every 0.5 s).
  WriteFile(tokens, "# no tokens\n");
  absl::Status status;
  for (int i = 0; i < 100; ++i) {
    status = deployer.Get(kNs, "feature.x").status();
    if (status.code() == absl::StatusCode::kUnauthenticated) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(SecurityTest, RotatedServerCertificateIsServedWithoutRestart) {
  pki_.MakeCa("next-ca");
  pki_.MakeLeaf("next-server", "next-ca", "/CN=snapconfd");
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--tls-reload-interval=1s");
  auto server = Start(flags);
  ASSERT_NE(server, nullptr);
  const pid_t pid = server->pid();
  EXPECT_THAT(Client(server->address(), "ca").Put(kNs, "k", "1").status(), IsOk());
  EXPECT_THAT(Client(server->address(), "next-ca").Get(kNs, "k").status(),
              StatusIs(absl::StatusCode::kUnavailable));

  // Replace the files in place, as a certificate manager would.
  WriteFile(pki_.Path("server.pem"), ReadFile(pki_.Path("next-server.pem")));
  WriteFile(pki_.Path("server.key"), ReadFile(pki_.Path("next-server.key")));
  absl::Status status;
  for (int i = 0; i < 100; ++i) {
    status = Client(server->address(), "next-ca").Get(kNs, "k").status();
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(status, IsOk());
  EXPECT_EQ(server->pid(), pid);  // the same process all along
}

TEST_F(SecurityTest, StartIsRefusedForUnsafeOrBrokenSettings) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::string tokens = pki_.Path("open-tokens");
  WriteFile(tokens, "", 0644);
  const std::vector<Case> cases = {
      {{"--tokens-file=" + tokens}, "needs TLS"},
      {{"--tls-cert-file=" + pki_.Path("server.pem"), "--tls-key-file=" + pki_.Path("alice.key")},
       "does not belong"},
      {{"--tls-cert-file=" + pki_.Path("server.pem"), "--tls-key-file=" + pki_.Path("server.key"),
        "--tokens-file=" + tokens},
       "chmod 600"},
      {{"--tls-cert-file=" + pki_.Path("missing.pem"), "--tls-key-file=" + pki_.Path("server.key")},
       "missing.pem"},
  };
  for (const Case& c : cases) {
    ServerOptions options;
    options.extra_flags = c.flags;
    options.ready_timeout = absl::Seconds(5);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    EXPECT_FALSE(server.ok()) << c.message;
    EXPECT_THAT(server.status().message(), HasSubstr(c.message));
  }
}

}  // namespace
}  // namespace snapconf
