// ConfigClient against real snapconfd processes: following writes, restarts, the cache file,
// resets and concurrent readers. Every wait is bounded; ordering is checked on conditions,
// never by sleeping.
#include "client/config_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/admin_client.h"
#include "client/internal/config_cache.h"
#include "common/mutex.h"
#include "tests/testing/delay_proxy.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/watch/contract_checker.h"

namespace snapconf::client {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::ServerProcess;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;

constexpr char kNs[] = "app/test";

absl::Time In(absl::Duration d) { return absl::Now() + d; }

// Collects callbacks; tests wait on the count with a deadline.
class Recorder {
 public:
  ChangeCallback Callback() {
    return [this](const ConfigChange& c) {
      MutexLock lock(&mu_);
      changes_.push_back(c);
      cv_.SignalAll();
    };
  }
  bool WaitForCount(size_t n, absl::Duration timeout) {
    const auto deadline = absl::ToChronoTime(In(timeout));
    MutexLock lock(&mu_);
    while (changes_.size() < n) {
      if (!cv_.WaitUntil(&mu_, deadline) && std::chrono::system_clock::now() >= deadline) break;
    }
    return changes_.size() >= n;
  }
  std::vector<ConfigChange> changes() {
    MutexLock lock(&mu_);
    return changes_;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  std::vector<ConfigChange> changes_ ABSL_GUARDED_BY(mu_);
};

// A fresh directory, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() : path_(::testing::TempDir() + "/configclientXXXXXX") {
    if (::mkdtemp(path_.data()) == nullptr) path_.clear();
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

ConfigClientOptions Options(const std::string& address, const std::string& cache_dir = "") {
  ConfigClientOptions o;
  o.endpoints = {address};
  o.watches = {{kNs, {}}};
  o.cache_dir = cache_dir;
  o.connect_timeout = absl::Seconds(1);
  o.backoff_base = absl::Milliseconds(20);
  o.backoff_max = absl::Milliseconds(300);
  return o;
}

AdminClient Admin(const std::string& address) {
  AdminClientOptions o;
  o.endpoints = {address};
  absl::StatusOr<AdminClient> c = AdminClient::Create(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

std::int64_t Put(const std::string& address, const std::string& key, const std::string& value) {
  absl::StatusOr<PutResult> r = Admin(address).Put(kNs, key, value);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->revision : -1;
}

// Callbacks carry strictly increasing revisions, each (revision, key) once.
void ExpectOrderedAndUnique(const std::vector<ConfigChange>& changes) {
  std::set<std::pair<std::int64_t, std::string>> seen;
  std::int64_t last = 0;
  for (const ConfigChange& c : changes) {
    EXPECT_GE(c.revision, last) << c.key;
    last = c.revision;
    EXPECT_TRUE(seen.emplace(c.revision, c.key).second) << "duplicate " << c.key;
  }
}

TEST(ConfigClientTest, FollowsWritesWithCallbacksOnceAndInOrder) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  Recorder rec;
  ConfigClientOptions options = Options(server->address());
  options.subscriptions = {{kNs, "", rec.Callback()}};
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  ASSERT_THAT(client.WaitUntilReady(In(absl::Seconds(10))), IsOk());

  std::int64_t head = 0;
  for (int i = 0; i < 10; ++i)
    head = Put(server->address(), absl::StrCat("k", i % 4), absl::StrCat(i));
  ASSERT_OK_AND_ASSIGN(DeleteResult del, Admin(server->address()).Delete(kNs, "k0"));
  head = del.revision;
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  ASSERT_TRUE(rec.WaitForCount(11, absl::Seconds(10)));

  const std::vector<ConfigChange> changes = rec.changes();
  ASSERT_EQ(changes.size(), 11u);
  ExpectOrderedAndUnique(changes);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(changes[i].key, absl::StrCat("k", i % 4));
    ASSERT_TRUE(changes[i].after.has_value());
    EXPECT_EQ(changes[i].after->value, absl::StrCat(i));
    EXPECT_EQ(changes[i].before.has_value(), i >= 4);
  }
  EXPECT_FALSE(changes[10].after.has_value());
  EXPECT_EQ(client.Get(kNs, "k0"), std::nullopt);
  EXPECT_EQ(client.Get(kNs, "k1"), "9");
  EXPECT_EQ(client.GetInt64Or(kNs, "k2", -1), 6);
  std::optional<ConfigEntry> e = client.GetEntry(kNs, "k1");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->version, 3);
  EXPECT_EQ(client.Status().revision, head);
  EXPECT_FALSE(client.Status().stale);
}

TEST(ConfigClientTest, TypedGettersReportKeyAndText) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  Put(server->address(), "n", "42");
  const std::int64_t head = Put(server->address(), "bad", "forty");
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(Options(server->address())));
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  EXPECT_EQ(*client.GetInt64(kNs, "n"), 42);
  EXPECT_THAT(client.GetInt64(kNs, "bad"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("app/test/bad")));
  EXPECT_THAT(client.GetInt64(kNs, "missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_EQ(client.GetInt64Or(kNs, "bad", 7), 7);
  const View view = client.Snapshot();
  EXPECT_EQ(view.revision(), head);
  EXPECT_EQ(view.List(kNs).size(), 2u);
}

TEST(ConfigClientTest, UnsubscribeFromInsideCallbackStopsFurtherCalls) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(Options(server->address())));
  ASSERT_THAT(client.WaitUntilReady(In(absl::Seconds(10))), IsOk());
  std::atomic<int> calls{0};
  SubscriptionId id = 0;
  id = client.Subscribe(kNs, "", [&](const ConfigChange&) {
    ++calls;
    client.Unsubscribe(id);
  });
  Recorder rec;
  client.Subscribe(kNs, "", rec.Callback());
  Put(server->address(), "a", "1");
  Put(server->address(), "a", "2");
  ASSERT_TRUE(rec.WaitForCount(2, absl::Seconds(10)));
  EXPECT_EQ(calls.load(), 1);
}

// What the client's watch streams delivered, for the watch contract checker.
class StreamTrace {
 public:
  std::function<void(bool, const std::string&)> Observer() {
    return [this](bool is_create, const std::string& bytes) {
      MutexLock lock(&mu_);
      if (is_create) {
        v1::WatchCreateRequest create;
        ASSERT_TRUE(create.ParseFromString(bytes));
        trace_.Start(create);
      } else {
        v1::WatchResponse response;
        ASSERT_TRUE(response.ParseFromString(bytes));
        trace_.Receive(response);
      }
    };
  }
  watch_testing::WatchTrace trace() {
    MutexLock lock(&mu_);
    return trace_;
  }

 private:
  Mutex mu_;
  watch_testing::WatchTrace trace_ ABSL_GUARDED_BY(mu_);
};

TEST(ConfigClientTest, SurvivesServerRestartWithoutGap) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  Recorder rec;
  StreamTrace streams;
  ConfigClientOptions options = Options(server->address());
  options.subscriptions = {{kNs, "", rec.Callback()}};
  options.stream_observer_for_test = streams.Observer();
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  for (int i = 0; i < 5; ++i) Put(server->address(), absl::StrCat("k", i), "before");
  ASSERT_TRUE(rec.WaitForCount(5, absl::Seconds(10)));

  ASSERT_THAT(server->Restart(/*same_port=*/true), IsOk());
  std::int64_t head = 0;
  for (int i = 0; i < 5; ++i) head = Put(server->address(), absl::StrCat("k", i), "after");
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(20))), IsOk());
  ASSERT_TRUE(rec.WaitForCount(10, absl::Seconds(10)));

  const std::vector<ConfigChange> changes = rec.changes();
  EXPECT_EQ(changes.size(), 10u);
  ExpectOrderedAndUnique(changes);
  for (size_t i = 5; i < changes.size(); ++i) {
    ASSERT_TRUE(changes[i].after.has_value());
    EXPECT_EQ(changes[i].after->value, "after");
  }
  EXPECT_GE(client.Status().streams_opened, 2);

  // Every stream the client opened, across the restart, kept the contract.
  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  ASSERT_OK_AND_ASSIGN(const std::vector<v1::ChangeRecord> history,
                       watch_testing::ReadFullHistory(channel));
  const watch_testing::CheckResult result =
      watch_testing::ContractChecker(history).Check(streams.trace());
  for (const watch_testing::Finding& f : result.findings) {
    ADD_FAILURE() << watch_testing::ViolationName(f.kind) << ": " << f.detail;
  }
  EXPECT_EQ(result.final_revision, head);
}

TEST(ConfigClientTest, StartsFromCacheWithServerDownThenCatchesUp) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  const TempDir temp;
  const std::string cache_dir = temp.path();
  ASSERT_FALSE(cache_dir.empty());
  std::int64_t head = 0;
  for (int i = 0; i < 5; ++i) head = Put(server->address(), absl::StrCat("k", i), "v1");
  {
    ASSERT_OK_AND_ASSIGN(ConfigClient first,
                         ConfigClient::Create(Options(server->address(), cache_dir)));
    ASSERT_THAT(first.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  }  // the destructor writes the cache
  ASSERT_THAT(server->Kill(), IsOk());

  Recorder rec;
  ConfigClientOptions options = Options(server->address(), cache_dir);
  options.subscriptions = {{kNs, "", rec.Callback()}};
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  ASSERT_THAT(client.WaitUntilReady(In(absl::Seconds(1))), IsOk());
  ClientStatus status = client.Status();
  EXPECT_TRUE(status.ready);
  EXPECT_TRUE(status.stale);
  EXPECT_EQ(status.revision, head);
  EXPECT_EQ(client.Get(kNs, "k3"), "v1");

  ASSERT_THAT(server->Restart(/*same_port=*/true), IsOk());
  head = Put(server->address(), "k3", "v2");
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(20))), IsOk());
  EXPECT_EQ(client.Get(kNs, "k3"), "v2");
  ASSERT_TRUE(rec.WaitForCount(1, absl::Seconds(10)));
  EXPECT_EQ(rec.changes().size(), 1u);
  const absl::Time deadline = In(absl::Seconds(10));
  while (client.Status().stale && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(client.Status().stale);
}

TEST(ConfigClientTest, WritesCacheWhileRunning) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  const TempDir temp;
  ASSERT_FALSE(temp.path().empty());
  ASSERT_OK_AND_ASSIGN(ConfigClient client,
                       ConfigClient::Create(Options(server->address(), temp.path())));
  std::int64_t head = 0;
  for (int i = 0; i < 20; ++i) head = Put(server->address(), "k", absl::StrCat(i));
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  // Coalesced to at most one write per second, so the newest state lands within a few seconds.
  const std::vector<WatchFilter> watches = internal::CanonicalWatches({{kNs, {}}});
  std::int64_t cached = -1;
  const absl::Time deadline = In(absl::Seconds(10));
  while (cached < head && absl::Now() < deadline) {
    absl::StatusOr<std::string> bytes = internal::ReadCacheFile(temp.path());
    if (bytes.ok()) {
      absl::StatusOr<SnapshotPtr> snap = internal::DecodeCache(*bytes, watches);
      ASSERT_TRUE(snap.ok()) << snap.status();
      cached = (*snap)->revision();
    }
    if (cached < head) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(cached, head);
}

TEST(ConfigClientTest, IgnoresCorruptCacheFiles) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  const std::int64_t head = Put(server->address(), "k", "server");
  const TempDir temp;
  const std::string dir = temp.path();
  ASSERT_FALSE(dir.empty());
  {
    ASSERT_OK_AND_ASSIGN(ConfigClient first, ConfigClient::Create(Options(server->address(), dir)));
    ASSERT_THAT(first.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  }
  ASSERT_OK_AND_ASSIGN(const std::string valid, internal::ReadCacheFile(dir));
  std::string flipped = valid;
  flipped[flipped.size() / 2] ^= 0x01;
  const std::vector<std::string> damaged = {"garbage garbage garbage garbage garbage",
                                            valid.substr(0, valid.size() - 3), flipped};
  for (const std::string& bytes : damaged) {
    ASSERT_THAT(internal::WriteCacheFile(dir, bytes), IsOk());
    ASSERT_OK_AND_ASSIGN(ConfigClient client,
                         ConfigClient::Create(Options(server->address(), dir)));
    ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
    EXPECT_EQ(client.Get(kNs, "k"), "server");
  }
}

TEST(ConfigClientTest, ResetFiresCallbacksOnlyForChangedKeys) {
  // Tiny retention so a client that was away needs a reset (or at least a net difference).
  ::snapconf::testing::ServerOptions server_options;
  server_options.extra_flags = {"--history_max_records=1", "--watch_log_revisions=1"};
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start(server_options));
  const TempDir temp;
  const std::string dir = temp.path();
  ASSERT_FALSE(dir.empty());
  std::int64_t head = 0;
  for (int i = 0; i < 5; ++i) head = Put(server->address(), absl::StrCat("k", i), "v1");
  {
    ASSERT_OK_AND_ASSIGN(ConfigClient first, ConfigClient::Create(Options(server->address(), dir)));
    ASSERT_THAT(first.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  }
  Put(server->address(), "k2", "v2");
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Admin(server->address()).Put("other/ns", "x", absl::StrCat(i)).ok());
  }
  ASSERT_OK_AND_ASSIGN(PutResult last, Admin(server->address()).Put("other/ns", "x", "end"));

  Recorder rec;
  ConfigClientOptions options = Options(server->address(), dir);
  options.subscriptions = {{kNs, "", rec.Callback()}};
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  ASSERT_THAT(client.WaitForRevision(last.revision, In(absl::Seconds(10))), IsOk());
  ASSERT_TRUE(rec.WaitForCount(1, absl::Seconds(10)));
  // A later write proves nothing else was queued before it.
  const std::int64_t marker = Put(server->address(), "k4", "v3");
  ASSERT_THAT(client.WaitForRevision(marker, In(absl::Seconds(10))), IsOk());
  ASSERT_TRUE(rec.WaitForCount(2, absl::Seconds(10)));
  const std::vector<ConfigChange> changes = rec.changes();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "k2");
  ASSERT_TRUE(changes[0].before.has_value());
  EXPECT_EQ(changes[0].before->value, "v1");
  EXPECT_EQ(changes[0].after->value, "v2");
  EXPECT_EQ(changes[1].key, "k4");
  // Retention of one revision forces the resumed stream to start with a reset.
  EXPECT_EQ(client.Status().resets_applied, 1);
}

TEST(ConfigClientTest, RotatesPastADeadEndpoint) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  const std::int64_t head = Put(server->address(), "k", "v");
  ConfigClientOptions options = Options(server->address());
  // Port 1 on loopback refuses connections: the client must move on to the live server.
  options.endpoints = {"127.0.0.1:1", server->address()};
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  EXPECT_EQ(client.Get(kNs, "k"), "v");
  EXPECT_EQ(client.Status().endpoint, server->address());
}

// Each round trip on this link takes 300 ms, so connecting (TCP, then the HTTP/2 preface and
// settings exchange) needs well over the reconnect backoff. Connection attempts must be allowed
// their full connect timeout, not cut off at the backoff.
TEST(ConfigClientTest, ConnectsAndFollowsWritesOverASlowLink) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  ASSERT_OK_AND_ASSIGN(auto link, ::snapconf::testing::DelayProxy::Start(server->address(),
                                                                         absl::Milliseconds(150)));
  ConfigClientOptions options = Options(link->address());
  options.connect_timeout = absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  ASSERT_THAT(client.WaitUntilReady(In(absl::Seconds(20))), IsOk());
  const std::int64_t head = Put(link->address(), "slow", "link");
  ASSERT_GT(head, 0);
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(20))), IsOk());
  EXPECT_EQ(client.Get(kNs, "slow"), "link");
}

TEST(ConfigClientTest, IdleStreamIsDroppedAndResumed) {
  ::snapconf::testing::ServerOptions server_options;
  server_options.extra_flags = {"--watch_progress_interval=100ms"};
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start(server_options));
  ConfigClientOptions options = Options(server->address());
  options.stream_idle_timeout = absl::Milliseconds(600);
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  ASSERT_THAT(client.WaitUntilReady(In(absl::Seconds(10))), IsOk());

  ASSERT_THAT(server->Stop(), IsOk());  // accepts TCP, never answers
  const absl::Time deadline = In(absl::Seconds(10));
  while (client.Status().last_error.code() != absl::StatusCode::kDeadlineExceeded &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_THAT(client.Status().last_error,
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("no message")));
  EXPECT_TRUE(client.Status().stale);

  ASSERT_THAT(server->Cont(), IsOk());
  const std::int64_t head = Put(server->address(), "k", "after");
  ASSERT_THAT(client.WaitForRevision(head, In(absl::Seconds(20))), IsOk());
  EXPECT_EQ(client.Get(kNs, "k"), "after");
}

TEST(ConfigClientTest, ConcurrentReadersSeeMonotonicConsistentState) {
  ASSERT_OK_AND_ASSIGN(auto server, ServerProcess::Start());
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(Options(server->address())));
  ASSERT_THAT(client.WaitUntilReady(In(absl::Seconds(10))), IsOk());
  std::atomic<bool> done{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      std::int64_t last_value = -1, last_rev = -1;
      const absl::Time deadline = In(absl::Seconds(60));
      for (std::int64_t i = 0; i < 500'000'000 && !done.load() && absl::Now() < deadline; ++i) {
        const std::int64_t v = client.GetInt64Or(kNs, "counter", -1);
        if (v < last_value) ++failures;
        last_value = v;
        const View view = client.Snapshot();
        if (view.revision() < last_rev) ++failures;
        last_rev = view.revision();
        if (view.Get(kNs, "a") != view.Get(kNs, "b")) ++failures;  // one Txn writes both
        // Three spinning readers share two cores with the server: let it run.
        if (i % 1024 == 0) std::this_thread::yield();
      }
    });
  }
  AdminClient admin = Admin(server->address());
  std::int64_t head = 0;
  for (int i = 0; i < 40; ++i) {
    TxnSpec txn;
    for (const char* key : {"a", "b", "counter"}) {
      TxnOperation op;
      op.ns = kNs;
      op.key = key;
      op.value = absl::StrCat(i);
      txn.operations.push_back(op);
    }
    ASSERT_OK_AND_ASSIGN(ChangeList r, admin.Txn(txn));
    head = r.revision;
  }
  EXPECT_THAT(client.WaitForRevision(head, In(absl::Seconds(10))), IsOk());
  done = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(client.GetInt64Or(kNs, "counter", -1), 39);
}

}  // namespace
}  // namespace snapconf::client
