// Watch streams against real snapconfd processes: the contract under
// concurrent writers, random filters and start points, cancels and resumes,
// a SIGKILL and restart, slow readers, stream limits and shutdown. Every
// trace is checked against the server's history with the contract checker.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/watch/contract_checker.h"
#include "tests/watch/watch_e2e.h"

namespace snapconf {
namespace {

using testing::ServerProcess;
using watch_testing::CheckResult;
using watch_testing::Connect;
using watch_testing::ContractChecker;
using watch_testing::ContractRun;
using watch_testing::Create;
using watch_testing::ExpectClean;
using watch_testing::ExpectShutdownEndsStreams;
using watch_testing::Head;
using watch_testing::In;
using watch_testing::ReadFullHistory;
using watch_testing::RevisionAfter;
using watch_testing::Txn;
using watch_testing::ViolationName;
using watch_testing::WatchTrace;

// One open Watch stream (synchronous API; the owner's thread reads).
class Stream {
 public:
  Stream(const std::shared_ptr<grpc::Channel>& channel, const v1::WatchCreateRequest& create,
         absl::Duration deadline = absl::Seconds(60))
      : stub_(v1::WatchService::NewStub(channel)) {
    ctx_.set_deadline(In(deadline));
    rw_ = stub_->Watch(&ctx_);
    v1::WatchRequest req;
    *req.mutable_create() = create;
    rw_->Write(req);
  }
  bool Read(v1::WatchResponse* r) { return rw_->Read(r); }
  bool RequestProgress() {
    v1::WatchRequest req;
    req.mutable_progress();
    return rw_->Write(req);
  }
  void Cancel() { ctx_.TryCancel(); }
  grpc::Status Finish() {
    Cancel();  // the stream never ends by itself
    v1::WatchResponse ignored;
    while (rw_->Read(&ignored)) {
    }
    return rw_->Finish();
  }
  // Reads until the stream ends; returns its status.
  grpc::Status FinishWithoutCancel() {
    v1::WatchResponse ignored;
    while (rw_->Read(&ignored)) {
    }
    return rw_->Finish();
  }

 private:
  std::unique_ptr<v1::WatchService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WatchRequest, v1::WatchResponse>> rw_;
};

TEST(WatchIntegrationTest, ContractHoldsUnderWritesCancelsResumesAndARestart) {
  ContractRun run;
  ASSERT_NO_FATAL_FAILURE(run.Start());
  const std::string address = run.address();
  constexpr int kWatchers = 8;
  run.StartWriters();

  struct Watcher {
    WatchTrace trace;
    int64_t last = -1;
    int streams = 0;
  };
  std::vector<Watcher> watchers(kWatchers);
  std::vector<std::thread> readers;
  for (int i = 0; i < kWatchers; ++i) {
    readers.emplace_back([&, i] {
      std::mt19937 rng(1000 + i);
      Watcher& me = watchers[i];
      const auto filters = ContractRun::FiltersFor(i);
      const v1::DeliveryMode mode =
          i % 2 ? v1::DELIVERY_MODE_LATEST_STATE : v1::DELIVERY_MODE_EVERY_REVISION;
      int64_t start = run.StartFor(i);
      auto channel = Connect(address);
      const absl::Time deadline = absl::Now() + absl::Seconds(45);
      while (absl::Now() < deadline) {
        const v1::WatchCreateRequest create = Create(filters, start, mode);
        me.trace.Start(create);
        me.streams++;
        Stream stream(channel, create);
        const int cancel_after = 5 + static_cast<int>(rng() % 40);
        int received = 0;
        v1::WatchResponse response;
        bool done = false;
        while (stream.Read(&response)) {
          me.trace.Receive(response);
          if (const int64_t r = RevisionAfter(response); r >= 0) me.last = r;
          const int64_t target = run.final_head();
          if (target >= 0 && me.last >= target) {
            done = true;
            break;
          }
          if (++received == cancel_after && rng() % 2 == 0 && !run.writers_done()) break;
        }
        stream.Finish();
        if (done) return;
        // Resume right after what this watcher holds (or as first asked).
        if (me.last >= 0) start = me.last + 1;
        if (absl::Now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(10 + rng() % 40));
      }
    });
  }

  // Halfway through, the server dies without warning and comes back on the
  // same address with the same data.
  run.RestartHalfwayAndFinish();
  for (auto& t : readers) t.join();

  std::map<std::string, const WatchTrace*> traces;
  int streams = 0;
  for (int i = 0; i < kWatchers; ++i) {
    traces[absl::StrCat("watcher ", i)] = &watchers[i].trace;
    streams += watchers[i].streams;
  }
  run.CheckTraces(traces);
  EXPECT_GT(streams, kWatchers);  // cancels, resumes and the restart happened
  RecordProperty("streams", streams);
}

TEST(WatchIntegrationTest, SlowReadersFallBehindAndRecover) {
  testing::ServerOptions options;
  options.extra_flags = {"--watch_log_revisions=8", "--watch_progress_interval=200ms"};
  auto started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  auto stub = v1::ConfigService::NewStub(channel);
  ASSERT_TRUE(Txn(*stub, {{"slow", "k0", "v"}}).ok());

  auto slow_channel = Connect(server->address(), /*small_window=*/true);
  WatchTrace every_trace, latest_trace;
  const auto every_create = Create({{"slow", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION);
  const auto latest_create = Create({{"slow", ""}}, 0, v1::DELIVERY_MODE_LATEST_STATE);
  every_trace.Start(every_create);
  latest_trace.Start(latest_create);
  Stream every(slow_channel, every_create);
  Stream latest(slow_channel, latest_create);
  v1::WatchResponse r;
  ASSERT_TRUE(every.Read(&r));
  every_trace.Receive(r);
  ASSERT_TRUE(latest.Read(&r));
  latest_trace.Receive(r);

  // Neither reads while 60 revisions of 8 KiB go by.
  const std::string big(8 * 1024, 'v');
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(Txn(*stub, {{"slow", absl::StrCat("k", i % 5), absl::StrCat(i, big)}}).ok());
  }
  const int64_t head = Head(channel);
  auto drain = [&](Stream& s, WatchTrace& trace) {
    int64_t last = -1;
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (last < head && absl::Now() < deadline && s.Read(&r)) {
      trace.Receive(r);
      if (const int64_t rev = RevisionAfter(r); rev >= 0) last = rev;
    }
  };
  drain(every, every_trace);
  drain(latest, latest_trace);
  every.Finish();
  latest.Finish();

  ASSERT_OK_AND_ASSIGN(const std::vector<v1::ChangeRecord> history, ReadFullHistory(channel));
  ContractChecker checker(history);
  CheckResult every_result, latest_result;
  ExpectClean(checker, every_trace, head, "every", &every_result);
  ExpectClean(checker, latest_trace, head, "latest", &latest_result);
  EXPECT_GE(every_result.resets, 2);  // INITIAL, then FELL_BEHIND
  bool fell_behind = false;
  for (const auto& e : every_trace.events()) {
    fell_behind |=
        e.response.has_reset() && e.response.reset().reason() == v1::RESET_REASON_FELL_BEHIND;
  }
  EXPECT_TRUE(fell_behind);
  EXPECT_EQ(latest_result.resets, 1);  // only the initial one
  EXPECT_GE(latest_result.net, 1);
}

TEST(WatchIntegrationTest, StreamLimitRefusesNewStreamsAndKeepsExistingOnes) {
  testing::ServerOptions options;
  options.extra_flags = {"--watch_max_streams=3", "--watch_progress_interval=100ms"};
  auto started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  const auto create = Create({{"lim", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION);
  std::vector<std::unique_ptr<Stream>> open;
  v1::WatchResponse r;
  for (int i = 0; i < 3; ++i) {
    open.push_back(std::make_unique<Stream>(channel, create));
    ASSERT_TRUE(open.back()->Read(&r));  // the initial reset: admitted
  }
  Stream refused(channel, create);
  EXPECT_FALSE(refused.Read(&r));
  const grpc::Status status = refused.FinishWithoutCancel();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("limit 3"));

  auto stub = v1::ConfigService::NewStub(channel);
  ASSERT_TRUE(Txn(*stub, {{"lim", "k", "v"}}).ok());
  const int64_t head = Head(channel);
  for (auto& s : open) {
    bool got = false;
    for (int i = 0; i < 50 && !got && s->Read(&r); ++i) {
      got = r.has_changes() && r.changes().revision() == head;
    }
    EXPECT_TRUE(got);
  }
  for (auto& s : open) s->Finish();
}

TEST(WatchIntegrationTest, MalformedCreatesAreInvalidArgument) {
  auto started = ServerProcess::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  struct Case {
    v1::WatchCreateRequest create;
    std::string message;
  };
  std::vector<Case> cases(3);
  cases[1].create = Create({{"Bad Namespace!", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION);
  cases[1].message = "create.filters[0]";
  cases[2].create = Create({{"ok", ""}}, -4, v1::DELIVERY_MODE_EVERY_REVISION);
  cases[2].message = "start_revision";
  cases[0].message = "at least one filter";
  for (const Case& c : cases) {
    Stream s(channel, c.create);
    const grpc::Status status = s.FinishWithoutCancel();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), ::testing::HasSubstr(c.message));
  }
}

TEST(WatchIntegrationTest, ShutdownEndsStreamsWithUnavailable) {
  testing::ServerOptions options;
  options.extra_flags = {"--grace_period=10s"};
  auto started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  std::vector<std::unique_ptr<Stream>> streams;
  v1::WatchResponse r;
  for (int i = 0; i < 3; ++i) {
    streams.push_back(
        std::make_unique<Stream>(channel, Create({{"sd", ""}}, 0, v1::DELIVERY_MODE_LATEST_STATE)));
    ASSERT_TRUE(streams.back()->Read(&r));
  }
  std::vector<std::function<grpc::Status()>> finish;
  for (auto& stream : streams) finish.push_back([&s = *stream] { return s.FinishWithoutCancel(); });
  ExpectShutdownEndsStreams(*server, finish);
}

}  // namespace
}  // namespace snapconf
