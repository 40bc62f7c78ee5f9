// tests/reliability/slow_consumer_test.cc
//
// Dead subscribers: a client process that is frozen (SIGSTOP) keeps its TCP
// connection but never answers, so its watch streams would stay open forever
// without keepalive. With short keepalive settings the server must close that
// client's streams within a few keepalive periods, while a healthy watcher on
// the same server keeps receiving every change and writes keep flowing. And
// the other side of keepalive: a client that pings too often is cut off.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"

extern char** environ;

namespace snapconf::testing {
namespace {

constexpr char kNs[] = "live";

// A child process with its stdout in a file; SIGKILLed and reaped on scope exit.
class Child {
 public:
  Child(std::vector<std::string> args, const std::string& out_path) : out_path_(out_path) {
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid_ = 0;
    posix_spawn_file_actions_destroy(&actions);
  }
  ~Child() {
    if (pid_ == 0) return;
    kill(pid_, SIGKILL);
    kill(pid_, SIGCONT);
    int status = 0;
    waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return pid_; }
  std::string Output() const {
    std::ifstream in(out_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  pid_t pid_ = 0;
  std::string out_path_;
};

int64_t OpenWatches(v1::AdminService::Stub& admin) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  v1::GetServerStatusResponse resp;
  if (!admin.GetServerStatus(&ctx, {}, &resp).ok()) return -1;
  return resp.open_watches();
}

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return true;
}

TEST(SlowConsumerTest, FrozenClientIsReapedByKeepaliveOthersUntouched) {
  ServerOptions options;
  options.extra_flags = {"--keepalive_time=1s", "--keepalive_timeout=1s"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = std::move(*started);
  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  auto admin = v1::AdminService::NewStub(channel);
  auto config = v1::ConfigService::NewStub(channel);

  // A steady write load on the watched namespace.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> last_revision{0};
  std::thread writer([&] {
    for (int i = 0; i < 100000 && !stop.load(); ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
      v1::PutRequest req;
      req.set_namespace_(kNs);
      req.set_key(absl::StrCat("k", i % 10));
      req.set_value(absl::StrCat("value-", i, std::string(200, 'x')));
      v1::PutResponse resp;
      if (config->Put(&ctx, req, &resp).ok()) last_revision = resp.header().revision();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  const std::string dir = std::filesystem::path(server->log_path()).parent_path().string();
  Child frozen({SNAPCONFCTL_PATH, "--endpoints", server->address(), "watch", kNs},
               dir + "/frozen.out");
  Child healthy({SNAPCONFCTL_PATH, "--endpoints", server->address(), "watch", kNs},
                dir + "/healthy.out");
  ASSERT_NE(frozen.pid(), 0);
  ASSERT_NE(healthy.pid(), 0);
  ASSERT_TRUE(WaitFor([&] { return OpenWatches(*admin) == 2; }, absl::Seconds(10)))
      << "open watches: " << OpenWatches(*admin);

  ASSERT_EQ(kill(frozen.pid(), SIGSTOP), 0);
  const absl::Time stopped = absl::Now();
  // Keepalive 1 s + timeout 1 s: reaped within a few periods, not never.
  EXPECT_TRUE(WaitFor([&] { return OpenWatches(*admin) == 1; }, absl::Seconds(15)))
      << "open watches: " << OpenWatches(*admin);
  const absl::Duration reaped_after = absl::Now() - stopped;

  // The healthy watcher still follows the writes after the reaping.
  const int64_t target = last_revision.load() + 5;
  // snapconfctl prints one line per change, starting with its revision.
  EXPECT_TRUE(WaitFor(
      [&] {
        return healthy.Output().find(absl::StrCat("\n", target, " put ")) != std::string::npos;
      },
      absl::Seconds(10)))
      << "healthy watcher output ends with: "
      << healthy.Output().substr(healthy.Output().size() > 400 ? healthy.Output().size() - 400 : 0);
  EXPECT_EQ(OpenWatches(*admin), 1);
  stop = true;
  writer.join();
  std::printf("frozen client's stream reaped after %s\n",
              absl::FormatDuration(reaped_after).c_str());
}

// A client that pings more often than the server allows (10 s without data)
// is a misbehaving client, not a dead one: after a few pings the server ends
// its connection with GOAWAY, and its stream ends with UNAVAILABLE so it can
// reconnect and resume. A well-behaved watcher on another connection is
// untouched and keeps receiving changes.
TEST(SlowConsumerTest, ClientPingingTooOftenIsDisconnectedOthersUntouched) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto config = v1::ConfigService::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));

  // One idle watch stream per channel; the first message is its initial state.
  struct Stream {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::WatchService::Stub> stub;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<v1::WatchRequest, v1::WatchResponse>> rw;
  };
  auto open = [&](const grpc::ChannelArguments& args) {
    auto s = std::make_unique<Stream>();
    s->channel =
        grpc::CreateCustomChannel((*server)->address(), grpc::InsecureChannelCredentials(), args);
    s->stub = v1::WatchService::NewStub(s->channel);
    s->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    s->rw = s->stub->Watch(&s->ctx);
    v1::WatchRequest req;
    req.mutable_create()->add_filters()->set_namespace_(kNs);
    EXPECT_TRUE(s->rw->Write(req));
    v1::WatchResponse first;
    EXPECT_TRUE(s->rw->Read(&first));
    EXPECT_TRUE(first.has_reset());
    return s;
  };
  grpc::ChannelArguments pinger_args;
  pinger_args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 500);
  pinger_args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  pinger_args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  pinger_args.SetInt(GRPC_ARG_HTTP2_MIN_SENT_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  pinger_args.SetInt("snapconf.test.connection", 1);  // a connection of its own
  std::unique_ptr<Stream> pinger = open(pinger_args);
  grpc::ChannelArguments calm_args;
  calm_args.SetInt("snapconf.test.connection", 2);
  std::unique_ptr<Stream> calm = open(calm_args);

  // The pinger's stream ends (bounded by its 60 s deadline).
  const absl::Time start = absl::Now();
  v1::WatchResponse response;
  while (pinger->rw->Read(&response)) {
  }
  const grpc::Status ended = pinger->rw->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAVAILABLE)
      << ended.error_code() << " " << ended.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  std::cout << "the pinger's stream ended after " << absl::Now() - start << ": "
            << ended.error_message() << "\n";

  // The calm watcher still gets the next change.
  grpc::ClientContext put_ctx;
  v1::PutRequest put;
  put.set_namespace_(kNs);
  put.set_key("k");
  put.set_value("after");
  v1::PutResponse put_resp;
  ASSERT_TRUE(config->Put(&put_ctx, put, &put_resp).ok());
  // Idle progress messages may come first.
  do {
    ASSERT_TRUE(calm->rw->Read(&response));
  } while (response.has_progress());
  ASSERT_TRUE(response.has_changes()) << response.DebugString();
  EXPECT_EQ(response.changes().revision(), put_resp.header().revision());
  calm->ctx.TryCancel();
  while (calm->rw->Read(&response)) {
  }
  (void)calm->rw->Finish();
}

}  // namespace
}  // namespace snapconf::testing
