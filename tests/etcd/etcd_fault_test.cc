// etcd faults under snapconfd replicas (--store=etcd), each test on its own
// 3-member cluster: the etcd leader SIGKILLed during writes (nothing visible
// to clients), quorum lost and regained (reads and watches keep being served,
// health and staleness report it, writes answer UNAVAILABLE, recovery is
// automatic), and etcd compaction past a replica's position (the replica
// reloads and its watchers get a reset, never a gap); and all of it in turn
// under one load of compare-and-set writers, watchers and a moving client.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "client/config_client.h"
#include "common/mutex.h"
#include "tests/etcd/etcd_test_util.h"
#include "tests/etcd/traced_watch.h"
#include "tests/testing/health_probe.h"
#include "tests/testing/status_matchers.h"
#include "tests/watch/contract_checker.h"

namespace snapconf {
namespace {

using etcd_testing::Dump;
using etcd_testing::Eventually;
using etcd_testing::ExpectClean;
using etcd_testing::Get;
using etcd_testing::Head;
using etcd_testing::In;
using etcd_testing::Node;
using etcd_testing::Put;
using etcd_testing::StartReplica;
using etcd_testing::TracedWatch;
using etcd_testing::UniquePrefix;
using testing::EtcdCluster;
using testing::ServerProcess;
using testing::ServingStatus;
using watch_testing::CheckResult;
using watch_testing::ContractChecker;
using watch_testing::ReadFullHistory;
using watch_testing::ViolationName;
using watch_testing::WatchTrace;

#define EXPECT_OK_STATUS(expr)                   \
  do {                                           \
    const absl::Status _s = (expr);              \
    EXPECT_TRUE(_s.ok()) << #expr << ": " << _s; \
  } while (0)

std::string Prefix() {
  return UniquePrefix(::testing::UnitTest::GetInstance()->current_test_info()->name());
}

TEST(EtcdFaultTest, KillingTheEtcdLeaderDuringWritesIsInvisible) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdCluster> etcd, EtcdCluster::Start());
  const std::string prefix = Prefix();
  ASSERT_OK_AND_ASSIGN(auto a, StartReplica(etcd->endpoints(), prefix));
  ASSERT_OK_AND_ASSIGN(auto b, StartReplica(etcd->endpoints(), prefix));
  Node na(a->address()), nb(b->address());
  TracedWatch wa(a->address(), "fault/ns"), wb(b->address(), "fault/ns");

  std::atomic<int> failures{0};
  std::atomic<int64_t> last{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};
  std::atomic<int> acknowledged_after_kill{0};
  Mutex acked_mu;
  std::vector<int64_t> acked;  // revisions of acknowledged writes
  std::vector<std::thread> writers;
  for (Node* node : {&na, &nb}) {
    writers.emplace_back([&, node] {
      for (int i = 0; i < 400 && !stop.load(); ++i) {
        absl::StatusOr<int64_t> r = Put(*node, "fault/ns", absl::StrCat("k", i % 7), "v");
        if (!r.ok()) {
          ++failures;
          ADD_FAILURE() << "write failed: " << r.status();
        } else {
          if (killed.load()) ++acknowledged_after_kill;
          {
            MutexLock lock(&acked_mu);
            acked.push_back(*r);
          }
          int64_t seen = last.load();
          while (seen < *r && !last.compare_exchange_weak(seen, *r)) {
          }
        }
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_OK_AND_ASSIGN(int leader, etcd->Leader());
  EXPECT_OK_STATUS(etcd->Kill(leader));
  killed = true;
  absl::SleepFor(absl::Milliseconds(700));
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(acknowledged_after_kill.load(), 0);
  ASSERT_OK_AND_ASSIGN(int new_leader, etcd->Leader());
  EXPECT_NE(new_leader, leader);
  // Both replicas answered health checks throughout; they are serving now.
  EXPECT_TRUE(Eventually([&] {
    return testing::CheckHealth(na.channel).value_or(ServingStatus::kUnknown) ==
               ServingStatus::kServing &&
           testing::CheckHealth(nb.channel).value_or(ServingStatus::kUnknown) ==
               ServingStatus::kServing;
  }));
  const int64_t head = last.load();
  EXPECT_TRUE(Eventually([&] { return wa.revision() >= head && wb.revision() >= head; }))
      << wa.revision() << " " << wb.revision() << " head " << head;
  ASSERT_OK_AND_ASSIGN(std::vector<v1::ChangeRecord> history, ReadFullHistory(na.channel));
  // No acknowledged write is lost: each has its own change set in history.
  std::set<int64_t> recorded;
  for (const v1::ChangeRecord& r : history) recorded.insert(r.revision());
  {
    MutexLock lock(&acked_mu);
    EXPECT_EQ(std::set<int64_t>(acked.begin(), acked.end()).size(), acked.size());
    for (int64_t r : acked) EXPECT_TRUE(recorded.contains(r)) << "acknowledged revision " << r;
  }
  ContractChecker checker(history);
  ExpectClean(checker, wa.trace(), head, "watcher on a");
  ExpectClean(checker, wb.trace(), head, "watcher on b");
  EXPECT_EQ(wa.resets(), 1);  // the initial one only
  EXPECT_EQ(wb.resets(), 1);
  ASSERT_OK_AND_ASSIGN(auto da, Dump(na, "fault/ns", head));
  ASSERT_OK_AND_ASSIGN(auto db, Dump(nb, "fault/ns", head));
  EXPECT_EQ(da, db);
}

TEST(EtcdFaultTest, QuorumLossServesTheLastSnapshotAndRecoversByItself) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdCluster> etcd, EtcdCluster::Start());
  const std::string prefix = Prefix();
  // Writes give up after 2 s here, so the refusal below is quick.
  ASSERT_OK_AND_ASSIGN(auto a,
                       StartReplica(etcd->endpoints(), prefix, {"--etcd-request-timeout=2s"}));
  ASSERT_OK_AND_ASSIGN(auto b,
                       StartReplica(etcd->endpoints(), prefix, {"--etcd-request-timeout=2s"}));
  Node na(a->address()), nb(b->address());
  ASSERT_OK_AND_ASSIGN(int64_t r1, Put(na, "quorum/ns", "k", "before"));
  TracedWatch wb(b->address(), "quorum/ns");
  ASSERT_TRUE(Eventually([&] { return wb.revision() >= r1; }));

  EXPECT_OK_STATUS(etcd->Kill(1));
  EXPECT_OK_STATUS(etcd->Kill(2));
  // Health reports it once etcd's loss of leader reaches the replicas.
  EXPECT_TRUE(Eventually(
      [&] {
        return testing::CheckHealth(na.channel).value_or(ServingStatus::kUnknown) ==
                   ServingStatus::kNotServing &&
               testing::CheckHealth(nb.channel).value_or(ServingStatus::kUnknown) ==
                   ServingStatus::kNotServing;
      },
      absl::Seconds(15)));
  // Reads are served from the last snapshot and say how stale they may be.
  for (Node* node : {&na, &nb}) {
    ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(*node, "quorum/ns", "k"));
    EXPECT_EQ(got.entry().value(), "before");
    EXPECT_EQ(got.header().revision(), r1);
    EXPECT_GT(got.header().staleness_ms(), 0);
  }
  // Writes answer UNAVAILABLE, bounded by --etcd-request-timeout.
  const absl::Time began = absl::Now();
  absl::StatusOr<int64_t> refused = Put(nb, "quorum/ns", "k", "during");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_LT(absl::Now() - began, absl::Seconds(8));
  EXPECT_FALSE(wb.ended());

  EXPECT_OK_STATUS(etcd->Restart(1));
  EXPECT_OK_STATUS(etcd->Restart(2));
  EXPECT_OK_STATUS(etcd->WaitHealthy());
  EXPECT_TRUE(Eventually(
      [&] {
        return testing::CheckHealth(na.channel).value_or(ServingStatus::kUnknown) ==
                   ServingStatus::kServing &&
               testing::CheckHealth(nb.channel).value_or(ServingStatus::kUnknown) ==
                   ServingStatus::kServing;
      },
      absl::Seconds(15)));
  ASSERT_OK_AND_ASSIGN(int64_t r2, Put(na, "quorum/ns", "k", "after"));
  ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(nb, "quorum/ns", "k", r2));
  EXPECT_EQ(got.entry().value(), "after");
  EXPECT_EQ(got.header().staleness_ms(), 0);
  EXPECT_TRUE(Eventually([&] { return wb.revision() >= r2; }));
  ASSERT_OK_AND_ASSIGN(std::vector<v1::ChangeRecord> history, ReadFullHistory(nb.channel));
  ContractChecker checker(history);
  // The refused write may or may not have reached etcd before the deadline;
  // either way the watcher saw every revision there is, without a gap.
  ExpectClean(checker, wb.trace(), Head(nb), "watcher on b");
  EXPECT_EQ(wb.resets(), 1);
}

TEST(EtcdFaultTest, CompactionPastAReplicaReloadsItWithoutAGap) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdCluster> etcd, EtcdCluster::Start());
  const std::string prefix = Prefix();
  // B talks only to one follower, A to the two others, so B alone falls
  // behind when its member is down (and no election slows A down).
  ASSERT_OK_AND_ASSIGN(int leader, etcd->Leader());
  const int lone = (leader + 1) % 3;
  const int other = (leader + 2) % 3;
  ASSERT_OK_AND_ASSIGN(
      auto a,
      StartReplica(absl::StrCat(etcd->endpoint(leader), ",", etcd->endpoint(other)), prefix));
  ASSERT_OK_AND_ASSIGN(auto b, StartReplica(etcd->endpoint(lone), prefix));
  Node na(a->address()), nb(b->address());
  ASSERT_OK_AND_ASSIGN(int64_t r1, Put(na, "compact/ns", "gone", "1"));
  TracedWatch wb(b->address(), "compact/ns");
  ASSERT_TRUE(Eventually([&] { return wb.revision() >= r1; }));

  EXPECT_OK_STATUS(etcd->Kill(lone));
  int64_t head = 0;
  for (int i = 0; i < 10; ++i) {
    ASSERT_OK_AND_ASSIGN(head, Put(na, "compact/ns", absl::StrCat("k", i), absl::StrCat(i)));
  }
  {
    v1::DeleteRequest del;
    del.set_namespace_("compact/ns");
    del.set_key("gone");
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    v1::DeleteResponse resp;
    ASSERT_TRUE(na.config->Delete(&ctx, del, &resp).ok());
    head = resp.header().revision();
  }
  testing::CommandResult compact = etcd->Etcdctl({"compact", absl::StrCat(head)});
  ASSERT_EQ(compact.exit_code, 0) << compact.stderr_text;
  EXPECT_OK_STATUS(etcd->Restart(lone));

  // B's watch resumes from a compacted revision: it reloads at a newer one.
  EXPECT_TRUE(Eventually([&] { return wb.revision() >= head; }, absl::Seconds(20)))
      << wb.revision() << " head " << head;
  EXPECT_EQ(wb.resets(), 2);  // the initial one, then the reload's
  EXPECT_THAT(b->ReadLog(), ::testing::HasSubstr("event=etcd_reloaded revision="));
  ASSERT_OK_AND_ASSIGN(auto da, Dump(na, "compact/ns", head));
  ASSERT_OK_AND_ASSIGN(auto db, Dump(nb, "compact/ns", head));
  EXPECT_EQ(da, db);
  // The watcher's trace: revisions only increase, the reset carries the state.
  ContractChecker checker({});
  CheckResult r = checker.Check(wb.trace());
  for (const auto& f : r.findings) {
    if (f.kind == watch_testing::Violation::kOrdered ||
        f.kind == watch_testing::Violation::kUnique ||
        f.kind == watch_testing::Violation::kProtocol) {
      ADD_FAILURE() << ViolationName(f.kind) << ": " << f.detail;
    }
  }
  // Retention is etcd's: revisions before the compaction are gone.
  absl::StatusOr<std::pair<int64_t, std::string>> old = Dump(nb, "compact/ns", r1);
  EXPECT_EQ(old.status().code(), absl::StatusCode::kOutOfRange) << old.status();
  // And writes through B work again.
  ASSERT_OK_AND_ASSIGN(int64_t r3, Put(nb, "compact/ns", "k0", "again"));
  EXPECT_TRUE(Eventually([&] { return wb.revision() >= r3; }));
}

// One load, every fault in turn: compare-and-set writers through two
// replicas, watchers on both, and a client on a third replica; then SIGKILL of
// an etcd follower, of the etcd leader, of the client's replica, and the loss
// and return of quorum. Afterwards: no acknowledged write lost, every watcher
// clean under the contract checker, the client resumed without a gap, and the
// replicas agree on the state (a hash of it) at the same revision.
TEST(EtcdFaultTest, EveryFaultInTurnUnderOneLoad) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdCluster> etcd, EtcdCluster::Start());
  const std::string prefix = Prefix();
  const std::vector<std::string> flags = {"--etcd-request-timeout=2s"};
  ASSERT_OK_AND_ASSIGN(auto a, StartReplica(etcd->endpoints(), prefix, flags));
  ASSERT_OK_AND_ASSIGN(auto b, StartReplica(etcd->endpoints(), prefix, flags));
  ASSERT_OK_AND_ASSIGN(auto c, StartReplica(etcd->endpoints(), prefix, flags));
  Node na(a->address()), nb(b->address());
  const std::string ns = "chaos/ns";
  ASSERT_OK_AND_ASSIGN(int64_t first, Put(na, ns, "start", "1"));
  TracedWatch wa(a->address(), ns), wb(b->address(), ns);

  // The client starts on c and may move to a or b.
  Mutex client_mu;
  WatchTrace client_trace;
  client::ConfigClientOptions options;
  options.endpoints = {c->address(), a->address(), b->address()};
  options.watches = {{ns, {}}};
  options.backoff_base = absl::Milliseconds(20);
  options.backoff_max = absl::Milliseconds(200);
  options.connect_timeout = absl::Seconds(1);
  options.stream_observer_for_test = [&](bool is_create, const std::string& bytes) {
    MutexLock lock(&client_mu);
    if (is_create) {
      v1::WatchCreateRequest create;
      create.ParseFromString(bytes);
      client_trace.Start(create);
    } else {
      v1::WatchResponse response;
      response.ParseFromString(bytes);
      client_trace.Receive(response);
    }
  };
  ASSERT_OK_AND_ASSIGN(client::ConfigClient config_client, client::ConfigClient::Create(options));
  ASSERT_TRUE(config_client.WaitForRevision(first, absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(config_client.Status().endpoint, c->address());

  // Writers: read a hot key's mod revision, then write it only if unchanged.
  // Every acknowledged write is (revision, key, value); a refusal during the
  // faults is fine, an acknowledged write that is missing is not.
  struct Acked {
    int64_t revision;
    std::string key;
    std::string value;
  };
  Mutex acked_mu;
  std::vector<Acked> acked;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (Node* node : {&na, &nb}) {
    writers.emplace_back([&, node] {
      const std::string me = node == &na ? "a" : "b";
      for (int i = 0; i < 5000 && !stop.load(); ++i) {
        const std::string key = absl::StrCat("hot", i % 3);
        absl::StatusOr<v1::GetResponse> got = Get(*node, ns, key, 0, absl::Seconds(3));
        const int64_t expected = got.ok() ? got->entry().mod_revision() : 0;
        const std::string value = absl::StrCat(me, "-", i);
        absl::StatusOr<int64_t> r = Put(*node, ns, key, value, expected);
        if (r.ok()) {
          MutexLock lock(&acked_mu);
          acked.push_back({*r, key, value});
        } else if (r.status().code() != absl::StatusCode::kAborted) {
          absl::SleepFor(absl::Milliseconds(50));  // a fault in progress
        }
      }
    });
  }
  auto acked_count = [&] {
    MutexLock lock(&acked_mu);
    return acked.size();
  };
  // Writes must go on between faults: each step waits for new acknowledgements.
  auto progress = [&](const char* after) {
    const size_t before = acked_count();
    EXPECT_TRUE(Eventually([&] { return acked_count() >= before + 5; }, absl::Seconds(20)))
        << "no writes acknowledged after " << after;
  };

  progress("start");
  ASSERT_OK_AND_ASSIGN(int leader, etcd->Leader());
  const int follower = (leader + 1) % 3;
  EXPECT_OK_STATUS(etcd->Kill(follower));
  progress("killing an etcd follower");
  EXPECT_OK_STATUS(etcd->Restart(follower));
  EXPECT_OK_STATUS(etcd->WaitHealthy());

  ASSERT_OK_AND_ASSIGN(leader, etcd->Leader());
  EXPECT_OK_STATUS(etcd->Kill(leader));
  progress("killing the etcd leader");
  EXPECT_OK_STATUS(etcd->Restart(leader));
  EXPECT_OK_STATUS(etcd->WaitHealthy());

  EXPECT_OK_STATUS(c->Kill());
  progress("killing the client's replica");

  ASSERT_OK_AND_ASSIGN(leader, etcd->Leader());
  EXPECT_OK_STATUS(etcd->Kill((leader + 1) % 3));
  EXPECT_OK_STATUS(etcd->Kill((leader + 2) % 3));
  absl::SleepFor(absl::Seconds(1));  // writes are refused now; reads go on
  ASSERT_OK_AND_ASSIGN(v1::GetResponse during, Get(na, ns, "start"));
  EXPECT_EQ(during.entry().value(), "1");
  EXPECT_OK_STATUS(etcd->Restart((leader + 1) % 3));
  EXPECT_OK_STATUS(etcd->Restart((leader + 2) % 3));
  EXPECT_OK_STATUS(etcd->WaitHealthy());
  progress("quorum came back");

  stop = true;
  for (std::thread& t : writers) t.join();
  // A final write through each replica marks the end everyone must reach.
  ASSERT_OK_AND_ASSIGN(int64_t end_a, Put(na, ns, "end", "a"));
  ASSERT_OK_AND_ASSIGN(int64_t head, Put(nb, ns, "end", "b"));
  ASSERT_GT(head, end_a);

  EXPECT_TRUE(Eventually([&] { return wa.revision() >= head && wb.revision() >= head; },
                         absl::Seconds(20)));
  EXPECT_TRUE(config_client.WaitForRevision(head, absl::Now() + absl::Seconds(20)).ok());
  EXPECT_NE(config_client.Status().endpoint, c->address());
  EXPECT_EQ(config_client.Get(ns, "end"), "b");

  ASSERT_OK_AND_ASSIGN(std::vector<v1::ChangeRecord> history, ReadFullHistory(na.channel));
  // (a) every acknowledged write is in history at its revision, with its value.
  absl::flat_hash_map<int64_t, const v1::ChangeRecord*> by_revision;
  for (const v1::ChangeRecord& r : history) by_revision[r.revision()] = &r;
  {
    MutexLock lock(&acked_mu);
    EXPECT_GT(acked.size(), 20u);
    for (const Acked& w : acked) {
      auto it = by_revision.find(w.revision);
      ASSERT_NE(it, by_revision.end()) << "acknowledged revision " << w.revision << " missing";
      bool found = false;
      for (const v1::Change& change : it->second->changes()) {
        found |= change.key() == w.key && change.after().value() == w.value;
      }
      EXPECT_TRUE(found) << "revision " << w.revision << " lacks " << w.key << "=" << w.value;
    }
  }
  ContractChecker checker(history);
  ExpectClean(checker, wa.trace(), head, "watcher on a");
  ExpectClean(checker, wb.trace(), head, "watcher on b");
  {
    MutexLock lock(&client_mu);
    ExpectClean(checker, client_trace, head, "client");
  }
  // The replicas hold the same state at the same revision.
  ASSERT_OK_AND_ASSIGN(auto state_a, Dump(na, ns, head));
  ASSERT_OK_AND_ASSIGN(auto state_b, Dump(nb, ns, head));
  EXPECT_EQ(state_a.first, head);
  EXPECT_EQ(state_b.first, head);
  EXPECT_EQ(absl::HashOf(state_a.second), absl::HashOf(state_b.second));
  EXPECT_EQ(state_a.second, state_b.second);
}

}  // namespace
}  // namespace snapconf
