// WatchMany against real snapconfd processes: many watches on one stream keep
// the watch contract each (checked against the server's history under
// concurrent writers, cancels, re-creates and a SIGKILL and restart), one
// server message carries the events of many watches, a stalled stream
// falls behind and recovers without holding others up, a watch's own failure
// ends only that watch, and protocol errors and shutdown end the stream.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
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
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/watch/contract_checker.h"
#include "tests/watch/watch_e2e.h"

namespace snapconf {
namespace {

using ::testing::HasSubstr;
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
using watch_testing::WatchTrace;

// One open WatchMany stream (synchronous API; the owner's thread reads and
// writes).
class ManyStream {
 public:
  explicit ManyStream(const std::shared_ptr<grpc::Channel>& channel,
                      absl::Duration deadline = absl::Seconds(60))
      : stub_(v1::WatchService::NewStub(channel)) {
    ctx_.set_deadline(In(deadline));
    rw_ = stub_->WatchMany(&ctx_);
  }
  bool Create(int64_t id, const v1::WatchCreateRequest& create) {
    v1::WatchManyRequest req;
    req.set_watch_id(id);
    *req.mutable_create() = create;
    return rw_->Write(req);
  }
  bool Cancel(int64_t id) {
    v1::WatchManyRequest req;
    req.set_watch_id(id);
    req.mutable_cancel();
    return rw_->Write(req);
  }
  bool RequestProgress(int64_t id) {
    v1::WatchManyRequest req;
    req.set_watch_id(id);
    req.mutable_progress();
    return rw_->Write(req);
  }
  bool Send(const v1::WatchManyRequest& req) { return rw_->Write(req); }
  bool Read(v1::WatchManyResponse* r) { return rw_->Read(r); }
  grpc::Status Finish() {
    ctx_.TryCancel();
    return FinishWithoutCancel();
  }
  grpc::Status FinishWithoutCancel() {
    v1::WatchManyResponse ignored;
    while (rw_->Read(&ignored)) {
    }
    return rw_->Finish();
  }

 private:
  std::unique_ptr<v1::WatchService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WatchManyRequest, v1::WatchManyResponse>> rw_;
};

// Reads until `done` says so for an event, or the stream ends, or 200
// messages went by; events are handed over in order.
template <typename Done>
bool ReadUntil(ManyStream& stream, Done done) {
  v1::WatchManyResponse r;
  for (int i = 0; i < 200 && stream.Read(&r); ++i) {
    for (const v1::WatchManyEvent& e : r.events()) {
      if (done(e)) return true;
    }
  }
  return false;
}

TEST(WatchManyTest, ContractHoldsForEveryWatchUnderWritesCancelsAndARestart) {
  ContractRun run;
  ASSERT_NO_FATAL_FAILURE(run.Start());
  const std::string address = run.address();
  constexpr int kStreams = 2;
  constexpr int kWatchesPerStream = 10;
  run.StartWriters();

  // A watch of the test: its trace over every (re)create, and where it is.
  struct Watch {
    WatchTrace trace;
    std::vector<std::pair<std::string, std::string>> filters;
    v1::DeliveryMode mode = v1::DELIVERY_MODE_EVERY_REVISION;
    int64_t start = 0;
    int64_t last = -1;
    int creates = 0;
    int received = 0;
    int cancel_after = 0;
    bool cancelling = false;
    bool done = false;
  };
  std::vector<std::vector<Watch>> all(kStreams, std::vector<Watch>(kWatchesPerStream));
  std::atomic<int> batched{0};  // messages carrying events of several watches
  std::vector<std::thread> readers;
  for (int s = 0; s < kStreams; ++s) {
    readers.emplace_back([&, s] {
      std::mt19937 rng(1000 + s);
      std::vector<Watch>& watches = all[s];
      for (int i = 0; i < kWatchesPerStream; ++i) {
        Watch& w = watches[i];
        const int n = s * kWatchesPerStream + i;
        w.filters = ContractRun::FiltersFor(n);
        w.mode = n % 3 == 0 ? v1::DELIVERY_MODE_LATEST_STATE : v1::DELIVERY_MODE_EVERY_REVISION;
        w.start = run.StartFor(n);
      }
      auto channel = Connect(address);
      // Opens watch `i` where it left off (or as first asked).
      auto create = [&](ManyStream& stream, int i) {
        Watch& w = watches[i];
        if (w.last >= 0) w.start = w.last + 1;
        const v1::WatchCreateRequest request = Create(w.filters, w.start, w.mode);
        w.trace.Start(request);
        w.creates++;
        w.received = 0;
        w.cancel_after = 5 + static_cast<int>(rng() % 40);
        w.cancelling = false;
        stream.Create(i, request);
      };
      const absl::Time deadline = absl::Now() + absl::Seconds(45);
      int open = 0;
      while (absl::Now() < deadline) {
        ManyStream stream(channel);
        open = 0;
        for (int i = 0; i < kWatchesPerStream; ++i) {
          if (!watches[i].done) {
            create(stream, i);
            open++;
          }
        }
        v1::WatchManyResponse response;
        while (open > 0 && stream.Read(&response)) {
          std::set<int64_t> ids;
          for (const v1::WatchManyEvent& e : response.events()) {
            ids.insert(e.watch_id());
            ASSERT_GE(e.watch_id(), 0);
            ASSERT_LT(e.watch_id(), kWatchesPerStream);
            Watch& w = watches[e.watch_id()];
            if (e.has_ended()) {
              // Only the cancels of this test end a watch.
              EXPECT_TRUE(w.cancelling) << "watch " << e.watch_id() << " ended " << e.ended().code()
                                        << " " << e.ended().message();
              EXPECT_EQ(e.ended().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
              if (w.done) {
                open--;
              } else {
                std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 20));
                create(stream, static_cast<int>(e.watch_id()));
              }
              continue;
            }
            if (w.done) continue;  // cancelled at the final revision
            w.trace.Receive(e.response());
            if (const int64_t r = RevisionAfter(e.response()); r >= 0) w.last = r;
            const int64_t target = run.final_head();
            if (target >= 0 && w.last >= target) {
              w.done = true;
              if (!w.cancelling) stream.Cancel(e.watch_id());
              w.cancelling = true;
            } else if (++w.received == w.cancel_after && !w.cancelling && rng() % 2 == 0 &&
                       !run.writers_done()) {
              stream.Cancel(e.watch_id());
              w.cancelling = true;
            }
          }
          if (ids.size() > 1) batched++;
        }
        stream.Finish();
        if (open == 0) return;
        // The stream broke (the restart): every watch resumes on a new one.
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
  int creates = 0;
  for (int s = 0; s < kStreams; ++s) {
    for (int i = 0; i < kWatchesPerStream; ++i) {
      traces[absl::StrCat("stream ", s, " watch ", i)] = &all[s][i].trace;
      creates += all[s][i].creates;
    }
  }
  run.CheckTraces(traces);
  EXPECT_GT(creates, kStreams * kWatchesPerStream);  // cancels, re-creates, the restart
  EXPECT_GT(batched.load(), 0);
  RecordProperty("creates", creates);
  RecordProperty("batched_messages", batched.load());
}

TEST(WatchManyTest, OneMessageCarriesTheChangeToManyWatches) {
  auto started = ServerProcess::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  auto stub = v1::ConfigService::NewStub(channel);
  ASSERT_TRUE(Txn(*stub, {{"many", "k", "v0"}}).ok());

  constexpr int kWatches = 50;
  ManyStream stream(channel);
  for (int i = 0; i < kWatches; ++i) {
    ASSERT_TRUE(stream.Create(i, Create({{"many", ""}}, 0, v1::DELIVERY_MODE_LATEST_STATE)));
  }
  std::set<int64_t> reset;
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    EXPECT_TRUE(e.response().has_reset()) << e.DebugString();
    reset.insert(e.watch_id());
    return reset.size() == kWatches;
  }));

  ASSERT_TRUE(Txn(*stub, {{"many", "k", "v1"}}).ok());
  const int64_t head = Head(channel);
  std::set<int64_t> changed;
  int messages = 0;
  v1::WatchManyResponse r;
  while (changed.size() < kWatches && messages < 200 && stream.Read(&r)) {
    messages++;
    for (const v1::WatchManyEvent& e : r.events()) {
      ASSERT_TRUE(e.response().has_changes()) << e.DebugString();
      EXPECT_EQ(e.response().changes().revision(), head);
      ASSERT_EQ(e.response().changes().revisions(0).changes(0).after().value(), "v1");
      changed.insert(e.watch_id());
    }
  }
  EXPECT_EQ(changed.size(), kWatches);
  // One pump after the commit queues every watch's message; the stream
  // writes them together (a message per watch would be 50).
  EXPECT_LE(messages, 5);
  RecordProperty("messages", messages);
  stream.Finish();
}

// A WatchMany stream whose reader stops holds at most one message per watch
// in the server; its watches fall behind retention meanwhile and, once it
// reads again, catch up as a Watch stream would (a reset for EVERY_REVISION,
// a net difference for LATEST_STATE). Another stream is not held up.
TEST(WatchManyTest, AStalledStreamFallsBehindAndRecoversOthersGoOn) {
  testing::ServerOptions options;
  options.extra_flags = {"--watch_log_revisions=8", "--watch_progress_interval=200ms"};
  auto started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  auto stub = v1::ConfigService::NewStub(channel);
  ASSERT_TRUE(Txn(*stub, {{"slow", "k0", "v"}}).ok());

  const std::vector<v1::WatchCreateRequest> creates = {
      Create({{"slow", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION),
      Create({{"slow", ""}}, 0, v1::DELIVERY_MODE_LATEST_STATE)};
  std::vector<WatchTrace> traces(2);
  ManyStream stalled(Connect(server->address(), /*small_window=*/true));
  ManyStream live(channel);
  for (int i = 0; i < 2; ++i) {
    traces[i].Start(creates[i]);
    ASSERT_TRUE(stalled.Create(i, creates[i]));
    ASSERT_TRUE(live.Create(i, creates[i]));
  }
  // Reads `stream` until both of its watches hold `until`, recording what
  // the stalled one receives.
  auto follow = [&](ManyStream& stream, bool record, int64_t until) {
    int64_t at[2] = {-1, -1};
    return ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
      EXPECT_FALSE(e.has_ended()) << e.DebugString();
      const size_t id = static_cast<size_t>(e.watch_id()) % 2;
      if (record) traces[id].Receive(e.response());
      if (const int64_t r = RevisionAfter(e.response()); r >= 0) at[id] = r;
      return std::min(at[0], at[1]) >= until;
    });
  };
  ASSERT_TRUE(follow(stalled, true, 1));

  // The stalled stream reads nothing while 60 revisions of 8 KiB go by; the
  // live one follows every one of them.
  const std::string big(8 * 1024, 'v');
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(Txn(*stub, {{"slow", absl::StrCat("k", i % 5), absl::StrCat(i, big)}}).ok());
  }
  const int64_t head = Head(channel);
  ASSERT_TRUE(follow(live, false, head));
  ASSERT_TRUE(follow(stalled, true, head));
  stalled.Finish();
  live.Finish();

  ASSERT_OK_AND_ASSIGN(const std::vector<v1::ChangeRecord> history, ReadFullHistory(channel));
  ContractChecker checker(history);
  CheckResult every, latest;
  ExpectClean(checker, traces[0], head, "every", &every);
  ExpectClean(checker, traces[1], head, "latest", &latest);
  bool fell_behind = false;
  for (const auto& e : traces[0].events()) {
    fell_behind |=
        e.response.has_reset() && e.response.reset().reason() == v1::RESET_REASON_FELL_BEHIND;
  }
  EXPECT_TRUE(fell_behind);
  EXPECT_EQ(latest.resets, 1);  // only the initial one
  EXPECT_GE(latest.net, 1);
}

// The watches' messages are split over several WatchManyResponses of at most
// 4 MiB (the server's message bound) rather than sent as one large message.
TEST(WatchManyTest, PendingMessagesAreSplitAtTheMessageBound) {
  auto started = ServerProcess::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  auto stub = v1::ConfigService::NewStub(channel);
  ASSERT_TRUE(Txn(*stub, {{"big", "a", "0"}}).ok());
  constexpr int kWatches = 4;
  ManyStream stream(channel);
  for (int i = 0; i < kWatches; ++i) {
    ASSERT_TRUE(stream.Create(i, Create({{"big", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION)));
  }
  std::set<int64_t> ready;
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    ready.insert(e.watch_id());
    return ready.size() == kWatches;
  }));

  // One revision of ~1.8 MiB: 7.2 MiB pending for the four watches.
  const std::string value(900 << 10, 'v');
  ASSERT_TRUE(Txn(*stub, {{"big", "a", value}, {"big", "b", value}}).ok());
  int events = 0;
  int messages = 0;
  v1::WatchManyResponse r;
  while (events < kWatches && messages < 10 && stream.Read(&r)) {
    messages++;
    EXPECT_LE(r.ByteSizeLong(), size_t{4} << 20);
    for (const v1::WatchManyEvent& e : r.events()) {
      EXPECT_EQ(e.response().changes().revisions(0).changes_size(), 2);
      events++;
    }
  }
  EXPECT_EQ(events, kWatches);
  EXPECT_GE(messages, 2);
  stream.Finish();
}

TEST(WatchManyTest, AWatchsOwnErrorsEndOnlyThatWatch) {
  auto started = ServerProcess::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  auto stub = v1::ConfigService::NewStub(channel);

  ManyStream stream(channel);
  ASSERT_TRUE(stream.Create(1, Create({{"one", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION)));
  ASSERT_TRUE(
      stream.Create(2, Create({{"Bad Namespace!", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION)));
  ASSERT_TRUE(stream.Create(3, Create({{"one", ""}}, -4, v1::DELIVERY_MODE_EVERY_REVISION)));
  ASSERT_TRUE(stream.Create(4, v1::WatchCreateRequest()));  // no filter
  std::map<int64_t, v1::WatchEnded> ended;
  bool reset = false;
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    if (e.has_ended()) ended[e.watch_id()] = e.ended();
    if (e.watch_id() == 1) reset |= e.response().has_reset();
    return reset && ended.size() == 3;
  }));
  for (const auto& [id, message] : std::map<int64_t, std::string>{
           {2, "filters[0]"}, {3, "start_revision"}, {4, "at least one filter"}}) {
    EXPECT_EQ(ended[id].code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT)) << id;
    EXPECT_THAT(ended[id].message(), HasSubstr(message)) << id;
  }

  // Watch 1 goes on, and answers progress requests.
  ASSERT_TRUE(Txn(*stub, {{"one", "k", "v"}}).ok());
  const int64_t head = Head(channel);
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    EXPECT_EQ(e.watch_id(), 1);
    return e.response().has_changes() && e.response().changes().revision() == head;
  }));
  ASSERT_TRUE(stream.RequestProgress(1));
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    return e.watch_id() == 1 && e.response().has_progress() &&
           e.response().progress().revision() == head;
  }));
  // Progress for, and cancel of, a watch that is not open are ignored.
  ASSERT_TRUE(stream.RequestProgress(9));
  ASSERT_TRUE(stream.Cancel(9));

  // A cancel ends the watch with CANCELLED; its id may then be used again.
  ASSERT_TRUE(stream.Cancel(1));
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    EXPECT_EQ(e.watch_id(), 1);
    return e.has_ended() && e.ended().code() == static_cast<int>(grpc::StatusCode::CANCELLED);
  }));
  ASSERT_TRUE(stream.Create(1, Create({{"one", ""}}, head, v1::DELIVERY_MODE_EVERY_REVISION)));
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    return e.watch_id() == 1 && e.response().has_changes() &&
           e.response().changes().revision() == head;
  }));

  // An id already open is a protocol error: the stream ends.
  ASSERT_TRUE(stream.Create(1, Create({{"one", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION)));
  const grpc::Status status = stream.FinishWithoutCancel();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("watch id 1 is already open"));

  ManyStream empty(channel);
  ASSERT_TRUE(empty.Send(v1::WatchManyRequest()));
  const grpc::Status empty_status = empty.FinishWithoutCancel();
  EXPECT_EQ(empty_status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(empty_status.error_message(), HasSubstr("empty WatchManyRequest"));
}

TEST(WatchManyTest, TheWatchLimitEndsOnlyTheWatchOverIt) {
  testing::ServerOptions options;
  options.extra_flags = {"--watch_max_streams=3"};
  auto started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  ManyStream stream(channel);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(stream.Create(i, Create({{"lim", ""}}, 0, v1::DELIVERY_MODE_EVERY_REVISION)));
  }
  std::set<int64_t> admitted;
  v1::WatchEnded refused;
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    if (e.has_ended()) refused = e.ended();
    if (e.response().has_reset()) admitted.insert(e.watch_id());
    return admitted.size() == 3 && refused.code() != 0;
  }));
  EXPECT_EQ(refused.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_THAT(refused.message(), HasSubstr("limit 3"));

  auto stub = v1::ConfigService::NewStub(channel);
  ASSERT_TRUE(Txn(*stub, {{"lim", "k", "v"}}).ok());
  const int64_t head = Head(channel);
  std::set<int64_t> changed;
  ASSERT_TRUE(ReadUntil(stream, [&](const v1::WatchManyEvent& e) {
    if (e.response().has_changes() && e.response().changes().revision() == head) {
      changed.insert(e.watch_id());
    }
    return changed == admitted;
  }));
  stream.Finish();
}

TEST(WatchManyTest, ShutdownEndsEveryStreamWithUnavailable) {
  testing::ServerOptions options;
  options.extra_flags = {"--grace_period=10s"};
  auto started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = *std::move(started);
  auto channel = Connect(server->address());
  // One stream with watches, one without any (the hub does not know it).
  ManyStream busy(channel);
  ManyStream idle(channel);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(busy.Create(i, Create({{"sd", ""}}, 0, v1::DELIVERY_MODE_LATEST_STATE)));
  }
  std::set<int64_t> reset;
  ASSERT_TRUE(ReadUntil(busy, [&](const v1::WatchManyEvent& e) {
    reset.insert(e.watch_id());
    return reset.size() == 3;
  }));
  // The idle stream is open once a bad create on it was answered.
  ASSERT_TRUE(idle.Create(7, v1::WatchCreateRequest()));
  ASSERT_TRUE(ReadUntil(idle, [](const v1::WatchManyEvent& e) { return e.has_ended(); }));

  ExpectShutdownEndsStreams(*server, {[&] { return busy.FinishWithoutCancel(); },
                                      [&] { return idle.FinishWithoutCancel(); }});
}

}  // namespace
}  // namespace snapconf
