// tests/reliability/crash_test.cc
//
// Crash recovery of a real snapconfd: writers of unique values, compare-and-
// set writers on a few hot keys, a two-key transaction writer, readers and
// resuming watchers run while the server is SIGKILLed at random moments and
// restarted on the same address and data, over and over. Afterwards the
// server's history (the durable store read back) is the ground truth:
//   (a) every acknowledged write is in history at its acknowledged revision,
//       and every acknowledged compare-and-set follows the revision it
//       expected;
//   (b) every value in history was sent by some client, and each transaction
//       is all or nothing;
//   (c) history is gap-free from 1 to the head, and after each restart the
//       head is at least the highest revision acknowledged so far;
//   (d) the restarted node serves again within 5 s (the store runs its
//       integrity check at open);
//   (e) every watcher, resuming after each crash, passes the watch contract
//       checker (exactly the revisions it missed, or a reset).
// CI: 10 cycles (label fault). SNAPCONF_CRASH_CYCLES=100 for the long run
// (label long). SNAPCONF_CRASH_SEED fixes the kill timings.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/mutex.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/health_probe.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/watch/contract_checker.h"

namespace snapconf::testing {
namespace {

using watch_testing::CheckResult;
using watch_testing::ContractChecker;
using watch_testing::ReadFullHistory;
using watch_testing::ViolationName;
using watch_testing::WatchTrace;

constexpr char kNs[] = "crash";
constexpr int kHotKeys = 2;

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect promptly after a restart (the default backoff is 1 s and more).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::atoll(v) : fallback;
}

// What clients sent and what the server acknowledged.
struct Ledger {
  Mutex mu;
  std::map<std::string, std::set<std::string>> sent ABSL_GUARDED_BY(mu);  // key -> values
  struct Ack {
    std::string key, value;
    int64_t revision;
    int64_t expected;  // compare-and-set: the mod_revision it required; -1 otherwise
  };
  std::vector<Ack> acked ABSL_GUARDED_BY(mu);
  int64_t highest ABSL_GUARDED_BY(mu) = 0;
  int64_t failed ABSL_GUARDED_BY(mu) = 0;

  void Send(const std::string& key, const std::string& value) {
    MutexLock lock(&mu);
    sent[key].insert(value);
  }
  void Acked(std::vector<Ack> acks) {
    MutexLock lock(&mu);
    for (Ack& a : acks) {
      highest = std::max(highest, a.revision);
      acked.push_back(std::move(a));
    }
  }
  void Failed() {
    MutexLock lock(&mu);
    ++failed;
  }
  int64_t Highest() {
    MutexLock lock(&mu);
    return highest;
  }
};

grpc::Status Put(v1::ConfigService::Stub& stub, const std::string& key, const std::string& value,
                 int64_t expected, v1::PutResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(3)));
  v1::PutRequest req;
  req.set_namespace_(kNs);
  req.set_key(key);
  req.set_value(value);
  if (expected >= 0) req.set_expected_mod_revision(expected);
  return stub.Put(&ctx, req, resp);
}

int64_t Head(const std::shared_ptr<grpc::Channel>& channel) {
  auto admin = v1::AdminService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(3)));
  v1::GetServerStatusResponse resp;
  if (!admin->GetServerStatus(&ctx, {}, &resp).ok()) return -1;
  return resp.revision();
}

void PauseAfterFailure() { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }

// Unique values over a handful of keys.
void UniqueWriter(const std::string& address, int id, Ledger* ledger, std::atomic<bool>* stop) {
  auto stub = v1::ConfigService::NewStub(Connect(address));
  for (int i = 0; i < 1000000 && !stop->load(); ++i) {
    const std::string key = absl::StrCat("u", id, "/k", i % 6);
    const std::string value = absl::StrCat("u", id, "-", i);
    ledger->Send(key, value);
    v1::PutResponse resp;
    if (grpc::Status s = Put(*stub, key, value, -1, &resp); !s.ok()) {
      ledger->Failed();
      PauseAfterFailure();
      continue;
    }
    ledger->Acked({{key, value, resp.header().revision(), -1}});
  }
}

// Compare-and-set on a few hot keys shared with the other CAS writer.
void CasWriter(const std::string& address, int id, Ledger* ledger, std::atomic<bool>* stop) {
  auto stub = v1::ConfigService::NewStub(Connect(address));
  for (int i = 0; i < 1000000 && !stop->load(); ++i) {
    const std::string key = absl::StrCat("hot", i % kHotKeys);
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(3)));
    v1::GetRequest get;
    get.set_namespace_(kNs);
    get.set_key(key);
    v1::GetResponse current;
    grpc::Status s = stub->Get(&ctx, get, &current);
    int64_t expected = 0;  // absent
    if (s.ok()) {
      expected = current.entry().mod_revision();
    } else if (s.error_code() != grpc::NOT_FOUND) {
      PauseAfterFailure();
      continue;
    }
    const std::string value = absl::StrCat("cas", id, "-", i);
    ledger->Send(key, value);
    v1::PutResponse resp;
    if (s = Put(*stub, key, value, expected, &resp); !s.ok()) {
      if (s.error_code() != grpc::ABORTED) {
        ledger->Failed();
        PauseAfterFailure();
      }
      continue;
    }
    ledger->Acked({{key, value, resp.header().revision(), expected}});
  }
}

// One Txn writing the same value to two keys.
void TxnWriter(const std::string& address, Ledger* ledger, std::atomic<bool>* stop) {
  auto stub = v1::ConfigService::NewStub(Connect(address));
  for (int i = 0; i < 1000000 && !stop->load(); ++i) {
    const std::string value = absl::StrCat("txn-", i);
    v1::TxnRequest req;
    for (const char* key : {"pair/a", "pair/b"}) {
      ledger->Send(key, value);
      auto* put = req.add_operations()->mutable_put();
      put->set_namespace_(kNs);
      put->set_key(key);
      put->set_value(value);
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(3)));
    v1::TxnResponse resp;
    if (grpc::Status s = stub->Txn(&ctx, req, &resp); !s.ok()) {
      ledger->Failed();
      PauseAfterFailure();
      continue;
    }
    ledger->Acked({{"pair/a", value, resp.header().revision(), -1},
                   {"pair/b", value, resp.header().revision(), -1}});
  }
}

// Reads keys and checks what it sees was sent (a read never shows a value
// no client wrote); counts what it could not explain.
void Reader(const std::string& address, Ledger* ledger, std::atomic<bool>* stop,
            std::atomic<int>* unexplained) {
  auto stub = v1::ConfigService::NewStub(Connect(address));
  const std::vector<std::string> keys = {"u0/k1", "u1/k2", "hot0", "hot1", "pair/a"};
  for (int i = 0; i < 1000000 && !stop->load(); ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(3)));
    v1::GetRequest get;
    get.set_namespace_(kNs);
    get.set_key(keys[i % keys.size()]);
    v1::GetResponse resp;
    if (!stub->Get(&ctx, get, &resp).ok()) {
      PauseAfterFailure();
      continue;
    }
    MutexLock lock(&ledger->mu);
    if (ledger->sent[get.key()].count(resp.entry().value()) == 0) ++*unexplained;
  }
}

// A watcher on the whole namespace that resumes after every broken stream
// from the revision after the last one it holds, recording everything.
struct Watcher {
  WatchTrace trace;
  int64_t last = -1;
  int streams = 0;
};

int64_t RevisionAfter(const v1::WatchResponse& r) {
  if (r.has_reset()) return r.reset().more() ? -1 : r.reset().revision();
  if (r.has_changes()) return r.changes().revision();
  if (r.has_progress()) return r.progress().revision();
  return -1;
}

void Watch(const std::string& address, Watcher* me, v1::DeliveryMode mode,
           std::atomic<int64_t>* final_head, absl::Time deadline) {
  auto channel = Connect(address);
  auto stub = v1::WatchService::NewStub(channel);
  int64_t start = 1;
  while (absl::Now() < deadline) {
    v1::WatchCreateRequest create;
    create.add_filters()->set_namespace_(kNs);
    create.set_start_revision(start);
    create.set_mode(mode);
    me->trace.Start(create);
    ++me->streams;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(60)));
    auto rw = stub->Watch(&ctx);
    v1::WatchRequest req;
    *req.mutable_create() = create;
    rw->Write(req);
    v1::WatchResponse response;
    bool done = false;
    while (rw->Read(&response)) {
      me->trace.Receive(response);
      if (const int64_t r = RevisionAfter(response); r >= 0) me->last = r;
      const int64_t target = final_head->load();
      if (target >= 0 && me->last >= target) {
        done = true;
        break;
      }
    }
    ctx.TryCancel();
    while (rw->Read(&response)) {
    }
    (void)rw->Finish();
    if (done) return;
    if (me->last >= 0) start = me->last + 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST(CrashTest, SigkillAtRandomPointsLosesNothing) {
  const int64_t cycles = EnvInt("SNAPCONF_CRASH_CYCLES", 10);
  const uint64_t seed =
      static_cast<uint64_t>(EnvInt("SNAPCONF_CRASH_SEED", absl::ToUnixMicros(absl::Now())));
  std::printf("crash test: %lld cycles, SNAPCONF_CRASH_SEED=%llu\n", static_cast<long long>(cycles),
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);

  ServerOptions options;
  options.extra_flags = {"--watch_progress_interval=200ms", "--grace_period=1s"};
  absl::StatusOr<std::unique_ptr<ServerProcess>> started = ServerProcess::Start(options);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<ServerProcess> server = std::move(*started);
  const std::string address = server->address();

  Ledger ledger;
  std::atomic<bool> stop{false};
  std::atomic<int> unexplained{0};
  std::atomic<int64_t> final_head{-1};
  const absl::Time watch_deadline = absl::Now() + absl::Seconds(60) + absl::Seconds(2) * cycles;
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) clients.emplace_back(UniqueWriter, address, i, &ledger, &stop);
  for (int i = 0; i < 2; ++i) clients.emplace_back(CasWriter, address, i, &ledger, &stop);
  clients.emplace_back(TxnWriter, address, &ledger, &stop);
  clients.emplace_back(Reader, address, &ledger, &stop, &unexplained);
  std::vector<Watcher> watchers(2);
  std::vector<std::thread> watch_threads;
  watch_threads.emplace_back(Watch, address, &watchers[0], v1::DELIVERY_MODE_EVERY_REVISION,
                             &final_head, watch_deadline);
  watch_threads.emplace_back(Watch, address, &watchers[1], v1::DELIVERY_MODE_LATEST_STATE,
                             &final_head, watch_deadline);

  absl::Duration slowest_recovery;
  for (int64_t cycle = 0; cycle < cycles; ++cycle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 400));
    const int64_t acked_before_kill = ledger.Highest();
    ASSERT_TRUE(server->Kill().ok());
    const absl::Time restart = absl::Now();
    ASSERT_TRUE(server->Restart(/*same_port=*/true).ok()) << server->ReadLog();
    auto channel = Connect(address);
    bool serving = false;
    while (!serving && absl::Now() - restart < absl::Seconds(5)) {
      absl::StatusOr<ServingStatus> health = CheckHealth(channel);
      serving = health.ok() && *health == ServingStatus::kServing;
      if (!serving) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const absl::Duration recovery = absl::Now() - restart;
    slowest_recovery = std::max(slowest_recovery, recovery);
    ASSERT_TRUE(serving) << "(d) not serving 5 s after restart " << cycle;
    // (c) Nothing acknowledged before the kill is missing from the head.
    const int64_t head = Head(channel);
    ASSERT_GE(head, acked_before_kill) << "(c) after restart " << cycle;
  }
  // A last stretch without crashes so every writer gets through again.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  for (std::thread& t : clients) t.join();
  auto channel = Connect(address);
  final_head = Head(channel);
  for (std::thread& t : watch_threads) t.join();
  ASSERT_GT(final_head.load(), 0);

  ASSERT_OK_AND_ASSIGN(const std::vector<v1::ChangeRecord> history, ReadFullHistory(channel));
  // (c) Revisions 1..head, each exactly once.
  std::map<int64_t, const v1::ChangeRecord*> by_revision;
  for (const v1::ChangeRecord& r : history) by_revision[r.revision()] = &r;
  ASSERT_EQ(static_cast<int64_t>(by_revision.size()), final_head.load());
  ASSERT_EQ(static_cast<int64_t>(history.size()), final_head.load());
  ASSERT_EQ(by_revision.begin()->first, 1);
  ASSERT_EQ(by_revision.rbegin()->first, final_head.load());

  MutexLock lock(&ledger.mu);
  EXPECT_GE(final_head.load(), ledger.highest);
  int cas_acked = 0;
  // (a) Acknowledged writes at their revisions; CAS after what it expected.
  for (const Ledger::Ack& a : ledger.acked) {
    auto it = by_revision.find(a.revision);
    ASSERT_NE(it, by_revision.end()) << "(a) revision " << a.revision << " missing";
    const v1::Change* change = nullptr;
    for (const v1::Change& c : it->second->changes()) {
      if (c.key() == a.key) change = &c;
    }
    ASSERT_NE(change, nullptr) << "(a) " << a.key << " not in revision " << a.revision;
    EXPECT_EQ(change->after().value(), a.value) << "(a) " << a.key << "@" << a.revision;
    if (a.expected >= 0) {
      ++cas_acked;
      EXPECT_EQ(change->before().mod_revision(), a.expected)
          << "(a) CAS on " << a.key << " at " << a.revision;
    }
  }
  // (b) Only sent values; the pair always changes together.
  for (const v1::ChangeRecord& r : history) {
    std::map<std::string, std::string> after;
    for (const v1::Change& c : r.changes()) {
      if (!c.has_after()) continue;
      after[c.key()] = c.after().value();
      EXPECT_EQ(ledger.sent[c.key()].count(c.after().value()), 1u)
          << "(b) " << c.key() << "=" << c.after().value() << " at " << r.revision();
    }
    if (after.count("pair/a") + after.count("pair/b") > 0) {
      EXPECT_EQ(after["pair/a"], after["pair/b"]) << "(b) partial transaction at " << r.revision();
    }
  }
  EXPECT_EQ(unexplained.load(), 0) << "reads returned values nobody sent";
  // (e) Every watcher's stream, across all the crashes.
  ContractChecker checker(history);
  for (size_t i = 0; i < watchers.size(); ++i) {
    CheckResult r = checker.Check(watchers[i].trace);
    for (const auto& f : r.findings) {
      ADD_FAILURE() << "(e) watcher " << i << ": " << ViolationName(f.kind) << ": " << f.detail;
    }
    EXPECT_EQ(r.final_revision, final_head.load()) << "watcher " << i;
    EXPECT_GT(watchers[i].streams, 1) << "watcher " << i << " never resumed";
  }
  // The load reached the server between crashes.
  EXPECT_GT(ledger.acked.size(), static_cast<size_t>(cycles));
  EXPECT_GT(cas_acked, 0);
  std::printf(
      "crash test: %lld kills, head %lld, %zu acknowledged (%d CAS), %lld failed requests, "
      "slowest recovery %s\n",
      static_cast<long long>(cycles), static_cast<long long>(final_head.load()),
      ledger.acked.size(), cas_acked, static_cast<long long>(ledger.failed),
      absl::FormatDuration(slowest_recovery).c_str());
}

}  // namespace
}  // namespace snapconf::testing
