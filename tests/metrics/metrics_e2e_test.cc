// End-to-end tests of snapconfd's metrics listener and structured logs: a
// real server process, real gRPC over loopback, /metrics fetched over real
// HTTP (cpp-httplib's client) and checked by a strict parser and promtool.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "service/security/tokens.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/metrics/prometheus_text.h"
#include "tests/testing/health_probe.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_pki.h"

namespace snapconf {
namespace {

using ::snapconf::testing::PromText;
using ::snapconf::testing::ServerProcess;
using ::testing::HasSubstr;

constexpr char kConfig[] = "/snapconf.v1.ConfigService/";
constexpr char kWatch[] = "/snapconf.v1.WatchService/Watch";

// The metrics address from the server's "metrics_serving" line.
std::string MetricsAddress(const ServerProcess& server) {
  static const std::regex kLine(R"(event=metrics_serving address=(\S+))");
  std::smatch m;
  const std::string log = server.ReadLog();
  return std::regex_search(log, m, kLine) ? m[1].str() : "";
}

class MetricsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_,
                         ServerProcess::Start({.extra_flags = {"--metrics-listen=127.0.0.1:0"}}));
    const std::string address = MetricsAddress(*server_);
    ASSERT_FALSE(address.empty()) << server_->ReadLog();
    const std::vector<std::string> host_port = absl::StrSplit(address, ':');
    ASSERT_EQ(host_port.size(), 2u);
    ASSERT_TRUE(absl::SimpleAtoi(host_port[1], &port_));
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    config_ = v1::ConfigService::NewStub(channel_);
    watch_ = v1::WatchService::NewStub(channel_);
  }

  // GET path over HTTP; the status and body.
  std::pair<int, std::string> Fetch(const std::string& path) {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(5);
    client.set_read_timeout(5);
    httplib::Result r = client.Get(path.c_str());
    if (!r) return {-1, httplib::to_string(r.error())};
    last_content_type_ = r->get_header_value("Content-Type");
    return {r->status, r->body};
  }

  PromText Scrape() {
    auto [status, body] = Fetch("/metrics");
    EXPECT_EQ(status, 200) << body;
    absl::StatusOr<PromText> parsed = testing::ParsePrometheusText(body);
    EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << body;
    last_text_ = body;
    return parsed.ok() ? *parsed : PromText{};
  }

  double Requests(const PromText& m, const std::string& method, const std::string& code) {
    return m.Value("snapconf_grpc_requests_total", {{"method", method}, {"code", code}})
        .value_or(0);
  }

  // Scrapes until `done` holds (bounded); the last scrape.
  PromText ScrapeUntil(const std::function<bool(const PromText&)>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    PromText m = Scrape();
    while (!done(m) && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
      m = Scrape();
    }
    return m;
  }

  grpc::Status Put(const std::string& ns, const std::string& key, const std::string& value,
                   v1::PutResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::PutRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    req.set_value(value);
    return config_->Put(&ctx, req, resp);
  }

  grpc::Status Get(const std::string& ns, const std::string& key) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::GetRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    v1::GetResponse resp;
    return config_->Get(&ctx, req, &resp);
  }

  std::unique_ptr<ServerProcess> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConfigService::Stub> config_;
  std::unique_ptr<v1::WatchService::Stub> watch_;
  std::string last_content_type_;
  std::string last_text_;
};

TEST_F(MetricsE2eTest, ServesPrometheusTextAndNothingElse) {
  PromText m = Scrape();
  EXPECT_THAT(last_content_type_, HasSubstr("version=0.0.4"));
  EXPECT_EQ(m.types.at("snapconf_grpc_request_duration_seconds"), "histogram");
  EXPECT_EQ(m.types.at("snapconf_grpc_requests_total"), "counter");
  EXPECT_EQ(m.Value("snapconf_store_healthy", {}), 1);
  EXPECT_EQ(m.Value("snapconf_head_revision", {}), 0);
  EXPECT_EQ(m.Value("snapconf_watch_open_streams", {}), 0);
  EXPECT_EQ(Fetch("/").first, 404);
  EXPECT_EQ(Fetch("/metrics/x").first, 404);
  EXPECT_EQ(Fetch("/favicon.ico").first, 404);

  // promtool (Debian's prometheus package) checks the scraped text too.
  testing::CommandResult check =
      testing::RunCommand({"/usr/bin/promtool", "check", "metrics"}, {.stdin_text = last_text_});
  EXPECT_EQ(check.exit_code, 0) << check.stdout_text << check.stderr_text << last_text_;
}

TEST_F(MetricsE2eTest, CountersFollowCallsAndStateFollowsWrites) {
  const PromText before = Scrape();
  v1::PutResponse put;
  ASSERT_TRUE(Put("payments/prod", "k1", "v1", &put).ok());
  ASSERT_TRUE(Put("payments/prod", "k22", "vvv", &put).ok());
  ASSERT_TRUE(Put("shared/flags", "on", "true", &put).ok());
  ASSERT_TRUE(Get("payments/prod", "k1").ok());
  ASSERT_EQ(Get("payments/prod", "absent").error_code(), grpc::StatusCode::NOT_FOUND);
  // Refused: an empty key.
  ASSERT_EQ(Put("payments/prod", "", "v", &put).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(testing::CheckHealth(channel_).ok());

  const PromText m = Scrape();
  EXPECT_EQ(Requests(m, "/grpc.health.v1.Health/Check", "OK"), 1);
  const std::string put_method = absl::StrCat(kConfig, "Put");
  const std::string get_method = absl::StrCat(kConfig, "Get");
  EXPECT_EQ(Requests(m, put_method, "OK") - Requests(before, put_method, "OK"), 3);
  EXPECT_EQ(Requests(m, put_method, "INVALID_ARGUMENT"), 1);
  EXPECT_EQ(Requests(m, get_method, "OK") - Requests(before, get_method, "OK"), 1);
  EXPECT_EQ(Requests(m, get_method, "NOT_FOUND"), 1);
  EXPECT_EQ(m.Value("snapconf_grpc_request_duration_seconds_count", {{"method", put_method}}), 4);
  EXPECT_EQ(m.Value("snapconf_grpc_request_duration_seconds_count", {{"method", get_method}}), 2);

  EXPECT_EQ(m.Value("snapconf_head_revision", {}), put.header().revision());
  EXPECT_EQ(m.Value("snapconf_namespace_keys", {{"namespace", "payments/prod"}}), 2);
  EXPECT_EQ(m.Value("snapconf_namespace_bytes", {{"namespace", "payments/prod"}}), 2 + 2 + 3 + 3);
  EXPECT_EQ(m.Value("snapconf_namespace_keys", {{"namespace", "shared/flags"}}), 1);
  EXPECT_EQ(m.Value("snapconf_namespace_bytes", {{"namespace", "shared/flags"}}), 2 + 4);
  // The empty key was refused before reaching the engine.
  EXPECT_EQ(m.Value("snapconf_commit_latency_seconds_count", {}), 3);
  EXPECT_EQ(m.Value("snapconf_snapshot_build_seconds_count", {}), 3);
  EXPECT_GE(m.Value("snapconf_commit_group_size_count", {}).value_or(0), 1);
  EXPECT_EQ(m.Value("snapconf_commit_group_size_sum", {}), 3);
}

// The store's page cache is reported on its own, so memory that follows the
// bytes written is told apart from the rest of the server's.
TEST_F(MetricsE2eTest, SqliteHeapFollowsTheBytesWritten) {
  const double before = Scrape().Value("snapconf_sqlite_heap_bytes", {}).value_or(-1);
  EXPECT_GT(before, 0);
  v1::PutResponse put;
  const std::string value(256 << 10, 'v');
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(Put("big", absl::StrCat("k", i), value, &put).ok());
  // 2 MiB of new pages (each value is stored once in the entries and once in
  // the history) stay in the writer's cache.
  EXPECT_GE(Scrape().Value("snapconf_sqlite_heap_bytes", {}).value_or(-1), before + (2 << 20));
}

TEST_F(MetricsE2eTest, WatchStreamsAreCountedOpenAndWhenTheyEnd) {
  v1::PutResponse put;
  ASSERT_TRUE(Put("app", "a", "1", &put).ok());
  {
    grpc::ClientContext ctx;
    auto stream = watch_->Watch(&ctx);
    v1::WatchRequest req;
    req.mutable_create()->add_filters()->set_namespace_("app");
    ASSERT_TRUE(stream->Write(req));
    v1::WatchResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_TRUE(resp.has_reset());  // started at revision 0: the initial state

    PromText open = ScrapeUntil(
        [](const PromText& m) { return m.Value("snapconf_watch_open_streams", {}) == 1; });
    EXPECT_EQ(open.Value("snapconf_watch_open_streams", {}), 1);
    EXPECT_EQ(open.Value("snapconf_watch_resets_total", {{"reason", "initial"}}), 1);
    EXPECT_EQ(open.Value("snapconf_watch_streams_by_lag", {{"max_lag", "+Inf"}}), 1);
    EXPECT_EQ(Requests(open, kWatch, "CANCELLED"), 0);

    ctx.TryCancel();
  }
  PromText closed = ScrapeUntil([&](const PromText& m) {
    return m.Value("snapconf_watch_open_streams", {}) == 0 && Requests(m, kWatch, "CANCELLED") > 0;
  });
  EXPECT_EQ(closed.Value("snapconf_watch_open_streams", {}), 0);
  EXPECT_EQ(Requests(closed, kWatch, "CANCELLED"), 1);
  EXPECT_EQ(closed.Value("snapconf_watch_lag_max_revisions", {}), 0);

  // A refused watch (no filter) is counted under its status.
  {
    grpc::ClientContext ctx;
    auto stream = watch_->Watch(&ctx);
    v1::WatchRequest req;
    req.mutable_create();
    ASSERT_TRUE(stream->Write(req));
    stream->WritesDone();
    v1::WatchResponse resp;
    while (stream->Read(&resp)) {
    }
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  PromText refused =
      ScrapeUntil([&](const PromText& m) { return Requests(m, kWatch, "INVALID_ARGUMENT") > 0; });
  EXPECT_EQ(Requests(refused, kWatch, "INVALID_ARGUMENT"), 1);
}

// Calls refused by the credentials check never reach a handler or an
// interceptor; they are counted all the same.
TEST(MetricsAuthTest, CallsRefusedBeforeAnyHandlerAreCounted) {
  testing::TestPki pki;
  pki.MakeCa("ca");
  pki.MakeLeaf("server", "ca", "/CN=snapconfd");
  testing::WriteTextFile(pki.Path("tokens"),
                         absl::StrCat("t1 ops/reader ", HashSecret("s3cret-s3cret"), "\n"));
  ASSERT_OK_AND_ASSIGN(
      auto server,
      ServerProcess::Start({.extra_flags = {"--metrics-listen=127.0.0.1:0",
                                            "--tls-cert-file=" + pki.Path("server.pem"),
                                            "--tls-key-file=" + pki.Path("server.key"),
                                            "--tokens-file=" + pki.Path("tokens")}}));
  const std::string address = MetricsAddress(*server);
  ASSERT_FALSE(address.empty()) << server->ReadLog();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = testing::ReadTextFile(pki.Path("ca.pem"));
  auto stub =
      v1::ConfigService::NewStub(grpc::CreateChannel(server->address(), grpc::SslCredentials(ssl)));
  for (const std::string token : {"", "t1.wrong-secret"}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    v1::GetRequest req;
    req.set_namespace_("payments");
    req.set_key("k");
    v1::GetResponse resp;
    EXPECT_EQ(stub->Get(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  const std::vector<std::string> host_port = absl::StrSplit(address, ':');
  ASSERT_EQ(host_port.size(), 2u);
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(host_port[1], &port));
  httplib::Client http("127.0.0.1", port);
  http.set_read_timeout(5);
  httplib::Result r = http.Get("/metrics");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  ASSERT_OK_AND_ASSIGN(PromText m, testing::ParsePrometheusText(r->body));
  EXPECT_EQ(m.Value("snapconf_grpc_requests_total",
                    {{"method", absl::StrCat(kConfig, "Get")}, {"code", "UNAUTHENTICATED"}})
                .value_or(0),
            2);
}

TEST(MetricsListenTest, NonLoopbackIsRefusedWithoutTheFlag) {
  const std::string dir = ::testing::TempDir() + "/metrics-refused";
  testing::CommandResult r =
      testing::RunCommand({testing::SnapconfdBinary(), "--listen=127.0.0.1:0", "--data-dir=" + dir,
                           "--metrics-listen=0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 1) << r.stderr_text;
  EXPECT_THAT(r.stderr_text, HasSubstr("refusing to serve metrics on 0.0.0.0:0"));
  EXPECT_THAT(r.stderr_text, HasSubstr("--allow-insecure-non-loopback"));
}

TEST(MetricsListenTest, BadFormatAndBadAddressFailTheStart) {
  const std::string dir = ::testing::TempDir() + "/metrics-bad";
  testing::CommandResult format =
      testing::RunCommand({testing::SnapconfdBinary(), "--listen=127.0.0.1:0", "--data-dir=" + dir,
                           "--log-format=xml"});
  EXPECT_EQ(format.exit_code, 1) << format.stderr_text;
  EXPECT_THAT(format.stderr_text, HasSubstr("--log-format=xml is not supported"));
  testing::CommandResult address =
      testing::RunCommand({testing::SnapconfdBinary(), "--listen=127.0.0.1:0", "--data-dir=" + dir,
                           "--metrics-listen=127.0.0.1"});
  EXPECT_EQ(address.exit_code, 1) << address.stderr_text;
  EXPECT_THAT(address.stderr_text, HasSubstr("is not host:port"));
}

TEST(LogFormatE2eTest, JsonLogsAreOneObjectPerLine) {
  ASSERT_OK_AND_ASSIGN(
      auto server,
      ServerProcess::Start({.extra_flags = {"--log-format=json", "--metrics-listen=127.0.0.1:0"}}));
  ASSERT_OK_AND_ASSIGN(int exit_code, server->Terminate());
  EXPECT_EQ(exit_code, 0);
  const std::string log = server->ReadLog();
  std::vector<std::string> events;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    ASSERT_TRUE(j["ts"].is_string()) << line;
    ASSERT_TRUE(j["level"].is_string()) << line;
    ASSERT_TRUE(j["event"].is_string()) << line;
    events.push_back(j["event"]);
    if (j["event"] == "serving") {
      EXPECT_EQ(j["address"], server->address());
      EXPECT_EQ(j["store"], "sqlite");
      EXPECT_TRUE(j["revision"].is_number()) << line;
    }
  }
  EXPECT_THAT(events,
              ::testing::IsSupersetOf({"metrics_serving", "serving", "stopping", "stopped"}));
}

}  // namespace
}  // namespace snapconf
