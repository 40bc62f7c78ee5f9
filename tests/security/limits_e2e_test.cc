// Per-identity limits and revocation against real snapconfd processes over
// TLS with bearer tokens (CA and certificates made at run time):
//   * an identity over its request rate gets RESOURCE_EXHAUSTED with a retry
//     hint while another identity is unaffected, and succeeds after the hint;
//   * the admin client waits for the hint instead of failing;
//   * the per-identity watch stream limit, and slots given back as streams end;
//   * a watch whose grant is revoked, whose token is removed or whose token
//     expires ends (PERMISSION_DENIED / UNAUTHENTICATED) within the documented
//     bound while another identity's watch stays open and keeps receiving;
//   * health checks need credentials.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/admin_client.h"
#include "client/config_client.h"
#include "service/security/tokens.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/health_probe.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_pki.h"

namespace snapconf {
namespace {

using ::snapconf::testing::ReadTextFile;
using ::snapconf::testing::ServerOptions;
using ::snapconf::testing::ServerProcess;
using ::snapconf::testing::ServingStatus;
using ::snapconf::testing::TestPki;
using ::snapconf::testing::WriteTextFile;
using ::testing::HasSubstr;

constexpr char kNs[] = "payments/prod";
constexpr char kSecret[] = "0123456789abcdef0123456789abcdef-limits";
// The documented bound is the 0.5 s reload tick plus the re-check (well
// under a millisecond per stream here); the margin covers a loaded machine
// and ThreadSanitizer.
constexpr absl::Duration kRevocationBound = absl::Milliseconds(500);
constexpr absl::Duration kMargin = absl::Seconds(2);

std::string Token(const std::string& id) { return absl::StrCat(id, ".", kSecret); }

// One watch stream read by its own thread, so the test can wait for content
// or for the end with a deadline.
class WatchStream {
 public:
  WatchStream(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
              const std::string& ns)
      : stub_(v1::WatchService::NewStub(channel)) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    if (!token.empty()) ctx_.AddMetadata("authorization", "Bearer " + token);
    stream_ = stub_->Watch(&ctx_);
    v1::WatchRequest create;
    create.mutable_create()->add_filters()->set_namespace_(ns);
    stream_->Write(create);
    reader_ = std::thread([this] { ReadAll(); });
  }
  ~WatchStream() {
    ctx_.TryCancel();
    reader_.join();
  }
  WatchStream(const WatchStream&) = delete;
  WatchStream& operator=(const WatchStream&) = delete;

  // True once the stream delivered a message whose text contains `text`
  // ("" : any message); false when it ended or the time ran out first.
  bool WaitForText(const std::string& text, absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    auto found = [&] { return messages_ > 0 && received_.find(text) != std::string::npos; };
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return found() || ended_; });
    return found();
  }
  // How the stream ended, if it did within `timeout`.
  std::optional<grpc::Status> WaitEnd(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return ended_; })) {
      return std::nullopt;
    }
    return status_;
  }
  bool ended() {
    std::lock_guard<std::mutex> lock(mu_);
    return ended_;
  }
  std::string retry_after() {
    std::lock_guard<std::mutex> lock(mu_);
    return retry_after_;
  }

 private:
  void ReadAll() {
    v1::WatchResponse response;
    while (stream_->Read(&response)) {
      std::lock_guard<std::mutex> lock(mu_);
      received_ += response.DebugString();
      ++messages_;
      cv_.notify_all();
    }
    const grpc::Status status = stream_->Finish();
    std::lock_guard<std::mutex> lock(mu_);
    const auto& trailers = ctx_.GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      retry_after_.assign(it->second.data(), it->second.size());
    }
    status_ = status;
    ended_ = true;
    cv_.notify_all();
  }

  std::unique_ptr<v1::WatchService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WatchRequest, v1::WatchResponse>> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string received_;
  int messages_ = 0;
  bool ended_ = false;
  grpc::Status status_;
  std::string retry_after_;
};

struct UnaryResult {
  grpc::Status status;
  std::string retry_after;  // trailing metadata, if any
};

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_.MakeCa("ca");
    pki_.MakeLeaf("server", "ca", "/CN=snapconfd");
    const std::string hash = HashSecret(kSecret);
    tokens_ = absl::StrCat("root ops/root ", hash, "\n", "alice team/alice ", hash, "\n",
                           "bob team/bob ", hash, "\n", "carol team/carol ", hash, "\n");
    WriteTextFile(pki_.Path("tokens"), tokens_);
    WriteTextFile(pki_.Path("policy.yaml"),
                  Policy({"team/alice", "team/bob", "team/carol", "team/dave"}));
  }

  static std::string Policy(const std::vector<std::string>& readers) {
    std::string policy = R"(
roles:
  - {name: operator, namespaces: "*", permission: admin}
  - {name: payments-reader, namespaces: ["payments/*"], permission: read}
bindings:
  - {identity: ops/root, roles: [operator]}
)";
    for (const std::string& r : readers) {
      absl::StrAppend(&policy, "  - {identity: ", r, ", roles: [payments-reader]}\n");
    }
    return policy;
  }

  void Start(std::vector<std::string> flags) {
    ServerOptions options;
    options.extra_flags = {
        "--tls-cert-file=" + pki_.Path("server.pem"), "--tls-key-file=" + pki_.Path("server.key"),
        "--tokens-file=" + pki_.Path("tokens"), "--policy-file=" + pki_.Path("policy.yaml"),
        "--watch-progress-interval=1h"};
    options.extra_flags.insert(options.extra_flags.end(), flags.begin(), flags.end());
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadTextFile(pki_.Path("ca.pem"));
    channel_ = grpc::CreateChannel(server_->address(), grpc::SslCredentials(ssl));
    stub_ = v1::ConfigService::NewStub(channel_);
  }

  UnaryResult Get(const std::string& token) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::GetRequest request;
    request.set_namespace_(kNs);
    request.set_key("k");
    v1::GetResponse response;
    UnaryResult result{stub_->Get(&ctx, request, &response), ""};
    const auto& trailers = ctx.GetServerTrailingMetadata();
    if (auto it = trailers.find("retry-after-ms"); it != trailers.end()) {
      result.retry_after.assign(it->second.data(), it->second.size());
    }
    return result;
  }

  grpc::Status Put(const std::string& value) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + Token("root"));
    v1::PutRequest request;
    request.set_namespace_(kNs);
    request.set_key("k");
    request.set_value(value);
    v1::PutResponse response;
    return stub_->Put(&ctx, request, &response);
  }

  // Opens a watch as `id` and waits for its first message (the initial
  // state); null when it did not come.
  std::unique_ptr<WatchStream> OpenWatch(const std::string& id, const std::string& ns = kNs) {
    auto w = std::make_unique<WatchStream>(channel_, Token(id), ns);
    if (!w->WaitForText("", absl::Seconds(10))) return nullptr;
    return w;
  }

  TestPki pki_;
  std::string tokens_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConfigService::Stub> stub_;
};

int64_t Millis(const std::string& text) {
  int64_t ms = -1;
  return absl::SimpleAtoi(text, &ms) ? ms : -1;
}

TEST_F(LimitsTest, IdentityOverItsRateIsRefusedWithAHintOthersAreNot) {
  ASSERT_NO_FATAL_FAILURE(Start({"--rate-limit-per-identity=1", "--rate-burst-per-identity=3"}));
  ASSERT_TRUE(Put("v").ok());
  // Alice spends her burst; the first refusal names when to retry. One token
  // refills per second, so on a slow machine a few more may pass first.
  int passed = 0;
  UnaryResult refused;
  for (int i = 0; i < 12; ++i) {
    UnaryResult r = Get(Token("alice"));
    if (r.status.ok()) {
      ++passed;
      continue;
    }
    refused = r;
    break;
  }
  EXPECT_GE(passed, 3);
  ASSERT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  EXPECT_THAT(refused.status.error_message(), HasSubstr("retry after"));
  const int64_t hint = Millis(refused.retry_after);
  EXPECT_GT(hint, 0);
  EXPECT_LE(hint, 1000);
  // Bob has his own bucket.
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(Get(Token("bob")).status.ok()) << i;
  // After the hint, Alice gets through again.
  absl::SleepFor(absl::Milliseconds(std::max<int64_t>(hint, 1000)));
  EXPECT_TRUE(Get(Token("alice")).status.ok());
}

TEST_F(LimitsTest, WatchOpenOverTheRateIsRefusedWithAHint) {
  ASSERT_NO_FATAL_FAILURE(Start({"--rate-limit-per-identity=0.5", "--rate-burst-per-identity=1"}));
  // Alice's one token goes to a Get; the watch open right after is refused.
  ASSERT_NE(Get(Token("alice")).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  WatchStream over(channel_, Token("alice"), kNs);
  std::optional<grpc::Status> end = over.WaitEnd(absl::Seconds(10));
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << end->error_message();
  EXPECT_GT(Millis(over.retry_after()), 0);
  EXPECT_LE(Millis(over.retry_after()), 2000);
}

TEST_F(LimitsTest, AdminClientWaitsForTheHintInsteadOfFailing) {
  ASSERT_NO_FATAL_FAILURE(Start({"--rate-limit-per-identity=2", "--rate-burst-per-identity=1"}));
  ASSERT_TRUE(Put("v").ok());
  client::AdminClientOptions o;
  o.endpoints = {server_->address()};
  o.call_timeout = absl::Seconds(5);
  o.security.mode = client::ChannelSecurity::Mode::kTls;
  o.security.root_certs_pem = ReadTextFile(pki_.Path("ca.pem"));
  o.security.bearer_token = Token("alice");
  absl::StatusOr<client::AdminClient> alice = client::AdminClient::Create(o);
  ASSERT_TRUE(alice.ok()) << alice.status();
  // Three reads at 2/s with a burst of 1: the second and third are refused
  // once each and retried after the hint (about 0.5 s each).
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(alice->Get(kNs, "k").ok()) << i;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(900));
}

TEST_F(LimitsTest, WatchStreamsPerIdentityAreLimitedAndGivenBack) {
  ASSERT_NO_FATAL_FAILURE(Start({"--max-watch-streams-per-identity=2"}));
  // Refused streams (no access) do not keep a slot.
  for (int i = 0; i < 3; ++i) {
    WatchStream denied(channel_, Token("alice"), "hr/salaries");
    std::optional<grpc::Status> end = denied.WaitEnd(absl::Seconds(10));
    ASSERT_TRUE(end.has_value());
    EXPECT_EQ(end->error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  // A slot comes back once the server has seen the stream end: retry briefly.
  auto open_eventually = [&](const std::string& id) {
    for (int i = 0; i < 50; ++i) {
      if (auto w = OpenWatch(id)) return w;
      absl::SleepFor(absl::Milliseconds(100));
    }
    return std::unique_ptr<WatchStream>();
  };
  std::unique_ptr<WatchStream> first = open_eventually("alice");
  ASSERT_NE(first, nullptr);
  std::unique_ptr<WatchStream> second = open_eventually("alice");
  ASSERT_NE(second, nullptr);

  WatchStream third(channel_, Token("alice"), kNs);
  std::optional<grpc::Status> end = third.WaitEnd(absl::Seconds(10));
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(end->error_message(), HasSubstr("limit 2"));
  EXPECT_GT(Millis(third.retry_after()), 0);

  // Bob is not affected, and Alice's open streams keep working.
  std::unique_ptr<WatchStream> bob = OpenWatch("bob");
  ASSERT_NE(bob, nullptr);
  ASSERT_TRUE(Put("after-refusal").ok());
  EXPECT_TRUE(first->WaitForText("after-refusal", absl::Seconds(10)));
  EXPECT_TRUE(second->WaitForText("after-refusal", absl::Seconds(10)));
  EXPECT_TRUE(bob->WaitForText("after-refusal", absl::Seconds(10)));

  // A stream the client ends gives its slot back.
  first.reset();
  std::unique_ptr<WatchStream> again = open_eventually("alice");
  ASSERT_NE(again, nullptr);
  EXPECT_FALSE(second->ended());
}

// The watches of a WatchMany stream count against the identity's stream
// limit one by one: sharing a stream does not get around it. A refused
// watch ends alone and its stream goes on; a cancelled one gives its slot
// back.
TEST_F(LimitsTest, WatchesOfASharedStreamCountAgainstTheIdentityLimit) {
  ASSERT_NO_FATAL_FAILURE(Start({"--max-watch-streams-per-identity=2"}));
  ASSERT_TRUE(Put("v").ok());
  auto stub = v1::WatchService::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ctx.AddMetadata("authorization", "Bearer " + Token("alice"));
  auto stream = stub->WatchMany(&ctx);
  auto create = [&](int64_t id) {
    v1::WatchManyRequest request;
    request.set_watch_id(id);
    request.mutable_create()->add_filters()->set_namespace_(kNs);
    return stream->Write(request);
  };
  // Reads the next event of watch `id` (others are not expected here).
  auto next = [&](int64_t id) {
    v1::WatchManyResponse response;
    EXPECT_TRUE(stream->Read(&response));
    EXPECT_EQ(response.events_size(), 1) << response.DebugString();
    EXPECT_EQ(response.events(0).watch_id(), id) << response.DebugString();
    return response.events(0);
  };
  ASSERT_TRUE(create(0));
  EXPECT_TRUE(next(0).response().has_reset());
  ASSERT_TRUE(create(1));
  EXPECT_TRUE(next(1).response().has_reset());
  ASSERT_TRUE(create(2));
  const v1::WatchManyEvent refused = next(2);
  EXPECT_EQ(refused.ended().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_THAT(refused.ended().message(), HasSubstr("limit 2"));
  EXPECT_THAT(refused.ended().message(), HasSubstr("retry after"));

  v1::WatchManyRequest cancel;
  cancel.set_watch_id(0);
  cancel.mutable_cancel();
  ASSERT_TRUE(stream->Write(cancel));
  EXPECT_EQ(next(0).ended().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  ASSERT_TRUE(create(3));
  EXPECT_TRUE(next(3).response().has_reset());
  ctx.TryCancel();
  v1::WatchManyResponse ignored;
  while (stream->Read(&ignored)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(LimitsTest, ConfigClientReconnectsNoSoonerThanTheHint) {
  ASSERT_NO_FATAL_FAILURE(Start({"--max-watch-streams-per-identity=1"}));
  ASSERT_TRUE(Put("v").ok());
  std::unique_ptr<WatchStream> holder = OpenWatch("alice");  // takes Alice's one slot
  ASSERT_NE(holder, nullptr);
  client::ConfigClientOptions o;
  o.endpoints = {server_->address()};
  o.watches = {client::WatchFilter{kNs, {}}};
  o.security.mode = client::ChannelSecurity::Mode::kTls;
  o.security.root_certs_pem = ReadTextFile(pki_.Path("ca.pem"));
  o.security.bearer_token = Token("alice");
  // Its own backoff alone would reconnect every few milliseconds.
  o.backoff_base = absl::Milliseconds(5);
  o.backoff_max = absl::Milliseconds(10);
  absl::StatusOr<client::ConfigClient> c = client::ConfigClient::Create(o);
  ASSERT_TRUE(c.ok()) << c.status();
  absl::SleepFor(absl::Milliseconds(2500));
  const client::ClientStatus refused = c->Status();
  EXPECT_EQ(refused.last_error.code(), absl::StatusCode::kResourceExhausted) << refused.last_error;
  // The server's hint is 1 s: at most one attempt per second (plus the first).
  EXPECT_GE(refused.streams_opened, 1);
  EXPECT_LE(refused.streams_opened, 4);
  // Once the slot is free, the client gets in at its next attempt.
  holder.reset();
  bool ready = false;
  for (int i = 0; i < 50 && !ready; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    ready = c->Status().ready && !c->Status().stale;
  }
  EXPECT_TRUE(ready);
  EXPECT_EQ(c->GetString(kNs, "k").value_or(""), "v");
}

TEST_F(LimitsTest, RevokedGrantAndRemovedTokenEndWatchesWithinTheBound) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  ASSERT_TRUE(Put("v0").ok());
  std::unique_ptr<WatchStream> alice = OpenWatch("alice");
  std::unique_ptr<WatchStream> bob = OpenWatch("bob");
  std::unique_ptr<WatchStream> carol = OpenWatch("carol");
  ASSERT_NE(alice, nullptr);
  ASSERT_NE(bob, nullptr);
  ASSERT_NE(carol, nullptr);

  // Alice loses her grant.
  WriteTextFile(pki_.Path("policy.yaml"), Policy({"team/bob", "team/carol"}));
  absl::Time changed = absl::Now();
  std::optional<grpc::Status> end = alice->WaitEnd(kRevocationBound + kMargin);
  ASSERT_TRUE(end.has_value()) << "the watch outlived its grant";
  const absl::Duration policy_took = absl::Now() - changed;
  EXPECT_EQ(end->error_code(), grpc::StatusCode::PERMISSION_DENIED) << end->error_message();
  std::printf("policy revocation ended the watch after %s\n",
              absl::FormatDuration(policy_took).c_str());
  ASSERT_TRUE(Put("after-policy").ok());
  EXPECT_TRUE(bob->WaitForText("after-policy", absl::Seconds(10)));
  EXPECT_TRUE(carol->WaitForText("after-policy", absl::Seconds(10)));

  // Carol's token is removed from the tokens file.
  WriteTextFile(pki_.Path("tokens"), absl::StrCat("root ops/root ", HashSecret(kSecret), "\n",
                                                  "bob team/bob ", HashSecret(kSecret), "\n"));
  changed = absl::Now();
  end = carol->WaitEnd(kRevocationBound + kMargin);
  ASSERT_TRUE(end.has_value()) << "the watch outlived its token";
  EXPECT_EQ(end->error_code(), grpc::StatusCode::UNAUTHENTICATED) << end->error_message();
  std::printf("token revocation ended the watch after %s\n",
              absl::FormatDuration(absl::Now() - changed).c_str());
  ASSERT_TRUE(Put("after-token").ok());
  EXPECT_TRUE(bob->WaitForText("after-token", absl::Seconds(10)));
  EXPECT_FALSE(bob->ended());
}

// On a WatchMany stream a revocation ends the watches that lost access, each
// with its WatchEnded, and leaves the stream open: a new create on it is
// checked against the new policy.
TEST_F(LimitsTest, RevokedGrantEndsTheWatchesOfASharedStreamNotTheStream) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  ASSERT_TRUE(Put("v0").ok());
  auto stub = v1::WatchService::NewStub(channel_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ctx.AddMetadata("authorization", "Bearer " + Token("alice"));
  auto stream = stub->WatchMany(&ctx);
  v1::WatchManyRequest create;
  create.set_watch_id(0);
  create.mutable_create()->add_filters()->set_namespace_(kNs);
  ASSERT_TRUE(stream->Write(create));
  v1::WatchManyResponse response;
  ASSERT_TRUE(stream->Read(&response));
  ASSERT_TRUE(response.events(0).response().has_reset());
  std::unique_ptr<WatchStream> bob = OpenWatch("bob");
  ASSERT_NE(bob, nullptr);

  WriteTextFile(pki_.Path("policy.yaml"), Policy({"team/bob"}));
  const absl::Time changed = absl::Now();
  ASSERT_TRUE(stream->Read(&response));
  const absl::Duration took = absl::Now() - changed;
  ASSERT_EQ(response.events_size(), 1);
  EXPECT_EQ(response.events(0).watch_id(), 0);
  EXPECT_EQ(response.events(0).ended().code(),
            static_cast<int>(grpc::StatusCode::PERMISSION_DENIED))
      << response.DebugString();
  EXPECT_LT(took, kRevocationBound + kMargin);
  std::printf("policy revocation ended the shared stream's watch after %s\n",
              absl::FormatDuration(took).c_str());

  create.set_watch_id(1);
  ASSERT_TRUE(stream->Write(create));
  ASSERT_TRUE(stream->Read(&response)) << "the stream ended with its watch";
  EXPECT_EQ(response.events(0).watch_id(), 1);
  EXPECT_EQ(response.events(0).ended().code(),
            static_cast<int>(grpc::StatusCode::PERMISSION_DENIED));
  ASSERT_TRUE(Put("after-policy").ok());
  EXPECT_TRUE(bob->WaitForText("after-policy", absl::Seconds(10)));
  ctx.TryCancel();
  while (stream->Read(&response)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// A policy replaced through the API, not on disk, is followed the same way.
TEST_F(LimitsTest, GrantRevokedThroughThePolicyApiEndsItsWatchWithinTheBound) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  ASSERT_TRUE(Put("v0").ok());
  std::unique_ptr<WatchStream> alice = OpenWatch("alice");
  std::unique_ptr<WatchStream> bob = OpenWatch("bob");
  ASSERT_NE(alice, nullptr);
  ASSERT_NE(bob, nullptr);

  auto admin = v1::AdminService::NewStub(channel_);
  v1::GetPolicyResponse current;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + Token("root"));
    ASSERT_TRUE(admin->GetPolicy(&ctx, v1::GetPolicyRequest(), &current).ok());
  }
  v1::UpdatePolicyRequest update;
  *update.mutable_policy() = current.policy();
  update.mutable_policy()->clear_bindings();
  for (const v1::RoleBinding& b : current.policy().bindings()) {
    if (b.identity() != "team/alice") *update.mutable_policy()->add_bindings() = b;
  }
  ASSERT_LT(update.policy().bindings_size(), current.policy().bindings_size());
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ctx.AddMetadata("authorization", "Bearer " + Token("root"));
    v1::UpdatePolicyResponse updated;
    const grpc::Status s = admin->UpdatePolicy(&ctx, update, &updated);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const absl::Time changed = absl::Now();
  std::optional<grpc::Status> end = alice->WaitEnd(kRevocationBound + kMargin);
  ASSERT_TRUE(end.has_value()) << "the watch outlived its grant";
  EXPECT_EQ(end->error_code(), grpc::StatusCode::PERMISSION_DENIED) << end->error_message();
  std::printf("revocation through the API ended the watch after %s\n",
              absl::FormatDuration(absl::Now() - changed).c_str());
  ASSERT_TRUE(Put("after-update").ok());
  EXPECT_TRUE(bob->WaitForText("after-update", absl::Seconds(10)));
}

TEST_F(LimitsTest, ExpiredTokenEndsItsWatchWithinTheBound) {
  const absl::Time expires = absl::Now() + absl::Seconds(3);
  WriteTextFile(
      pki_.Path("tokens"),
      absl::StrCat(tokens_, "dave team/dave ", HashSecret(kSecret), " expires=",
                   absl::FormatTime(absl::RFC3339_full, expires, absl::UTCTimeZone()), "\n"));
  ASSERT_NO_FATAL_FAILURE(Start({}));
  std::unique_ptr<WatchStream> dave = OpenWatch("dave");
  std::unique_ptr<WatchStream> bob = OpenWatch("bob");
  ASSERT_NE(dave, nullptr) << "the server took too long to start";
  ASSERT_NE(bob, nullptr);
  std::optional<grpc::Status> end =
      dave->WaitEnd(expires - absl::Now() + kRevocationBound + kMargin);
  ASSERT_TRUE(end.has_value()) << "the watch outlived its token";
  EXPECT_GE(absl::Now(), expires);
  EXPECT_EQ(end->error_code(), grpc::StatusCode::UNAUTHENTICATED) << end->error_message();
  EXPECT_THAT(end->error_message(), HasSubstr("expired"));
  ASSERT_TRUE(Put("after-expiry").ok());
  EXPECT_TRUE(bob->WaitForText("after-expiry", absl::Seconds(10)));
  EXPECT_FALSE(bob->ended());
}

TEST_F(LimitsTest, BadLimitFlagsFailTheStart) {
  for (const char* flag : {"--rate-limit-per-identity=-1", "--rate-limit-per-identity=0.0000001",
                           "--rate-burst-per-identity=-5", "--max-watch-streams-per-identity=-1"}) {
    ServerOptions options;
    options.extra_flags = {"--tls-cert-file=" + pki_.Path("server.pem"),
                           "--tls-key-file=" + pki_.Path("server.key"),
                           "--tokens-file=" + pki_.Path("tokens"), flag};
    options.ready_timeout = absl::Seconds(5);
    absl::StatusOr<std::unique_ptr<ServerProcess>> server = ServerProcess::Start(options);
    EXPECT_FALSE(server.ok()) << flag;
    EXPECT_THAT(server.status().message(), HasSubstr("-per-identity")) << flag;
  }
}

TEST_F(LimitsTest, HealthChecksNeedCredentials) {
  ASSERT_NO_FATAL_FAILURE(Start({}));
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadTextFile(pki_.Path("ca.pem"));
  absl::StatusOr<ServingStatus> anonymous = testing::CheckHealth(channel_);
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kUnauthenticated) << anonymous.status();
  auto with_token = [&](const std::string& token) {
    return grpc::CreateChannel(
        server_->address(), grpc::CompositeChannelCredentials(grpc::SslCredentials(ssl),
                                                              grpc::AccessTokenCredentials(token)));
  };
  absl::StatusOr<ServingStatus> wrong =
      testing::CheckHealth(with_token("alice.wrong-secret-wrong-secret-wrong-secret"));
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kUnauthenticated) << wrong.status();
  // Any valid identity may ask, granted or not.
  absl::StatusOr<ServingStatus> serving = testing::CheckHealth(with_token(Token("alice")));
  ASSERT_TRUE(serving.ok()) << serving.status();
  EXPECT_EQ(*serving, ServingStatus::kServing);
  absl::StatusOr<ServingStatus> config =
      testing::CheckHealth(with_token(Token("bob")), "snapconf.v1.ConfigService");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, ServingStatus::kServing);
}

}  // namespace
}  // namespace snapconf
