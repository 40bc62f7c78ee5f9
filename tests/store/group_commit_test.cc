// Group commit under concurrency, on the memory and the SQLite store: many
// writers at once all succeed with unique, gap-free revisions; groups really
// hold several requests; compare-and-swap races have exactly one winner; Close
// under load neither hangs nor loses an acknowledged write.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "service/store/local_store.h"
#include "service/store/memory/memory_store.h"
#include "service/store/sqlite/sqlite_store.h"
#include "tests/store/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::Cmp;
using ::snapconf::testing::IsOk;
using ::snapconf::testing::Put;
using ::snapconf::testing::RecordingListener;
using ::snapconf::testing::SameState;
using ::snapconf::testing::TempDir;
using Op = Compare::Op;
using Target = Compare::Target;

enum class Kind { kMemory, kSqlite };

class GroupCommitTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    if (GetParam() == Kind::kMemory) {
      store_ = NewMemoryStore();
    } else {
      SqliteStoreOptions options;
      options.data_dir = dir_.path();
      ASSERT_OK_AND_ASSIGN(store_, OpenSqliteStore(options));
    }
    ASSERT_THAT(store_->Start(&listener_), IsOk());
  }
  LocalStore* local() { return static_cast<LocalStore*>(store_.get()); }

  TempDir dir_;
  RecordingListener listener_;
  std::unique_ptr<Store> store_;
};

TEST_P(GroupCommitTest, ConcurrentWritersGetUniqueGapFreeRevisions) {
  constexpr int kThreads = 64;
  constexpr int kPerThread = 40;
  std::vector<std::vector<Revision>> got(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<CommitResult> r = store_->Commit(
            Put("ns" + std::to_string(t % 4), "t" + std::to_string(t), std::to_string(i)));
        if (!r.ok()) {
          if (failures++ == 0) ADD_FAILURE() << r.status();
          continue;
        }
        got[t].push_back(r->revision);
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);

  constexpr int kTotal = kThreads * kPerThread;
  absl::flat_hash_set<Revision> seen;
  for (const auto& revs : got) {
    // Each writer's own commits are ordered.
    for (size_t i = 1; i < revs.size(); ++i) EXPECT_LT(revs[i - 1], revs[i]);
    for (Revision r : revs) EXPECT_TRUE(seen.insert(r).second) << "duplicate revision " << r;
  }
  ASSERT_EQ(seen.size(), static_cast<size_t>(kTotal));
  for (Revision r = 1; r <= kTotal; ++r) EXPECT_TRUE(seen.contains(r)) << "gap at " << r;

  const std::vector<Revision> delivered = listener_.revisions();
  ASSERT_EQ(delivered.size(), static_cast<size_t>(kTotal));
  for (int i = 0; i < kTotal; ++i) ASSERT_EQ(delivered[i], i + 1);
  EXPECT_EQ(listener_.order_violations(), 0);

  const StoreStats stats = local()->stats();
  std::printf("[ groups ] %lld commits in %lld groups, %lld with >1 request, largest %lld\n",
              static_cast<long long>(stats.commits), static_cast<long long>(stats.groups),
              static_cast<long long>(stats.multi_request_groups),
              static_cast<long long>(stats.max_group_size));
  EXPECT_EQ(stats.commits, kTotal);
  EXPECT_GT(stats.multi_request_groups, 0);
  EXPECT_GT(stats.max_group_size, 1);
  EXPECT_LT(stats.groups, kTotal);

  // Every writer's last value is in the final state.
  const SnapshotPtr last = listener_.last();
  for (int t = 0; t < kThreads; ++t) {
    const Entry* e = last->Find("ns" + std::to_string(t % 4), "t" + std::to_string(t));
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->value, std::to_string(kPerThread - 1));
    EXPECT_EQ(e->version, kPerThread);
  }
}

TEST_P(GroupCommitTest, CompareAndSwapRaceHasExactlyOneWinnerPerRound) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 25;
  ASSERT_OK_AND_ASSIGN(CommitResult first, store_->Commit(Put("ns", "counter", "0")));
  std::atomic<Revision> expected{first.revision};
  std::vector<std::atomic<int>> winners(kRounds);
  std::vector<std::atomic<int>> aborted(kRounds);
  std::atomic<int> other_errors{0};
  std::barrier sync(kThreads, []() noexcept {});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        const Revision seen = expected.load();
        sync.arrive_and_wait();  // everyone has read the same revision
        WriteRequest cas = Put("ns", "counter", std::to_string(round + 1));
        cas.compares.push_back(Cmp("ns", "counter", Target::kModRevision, Op::kEqual, seen));
        absl::StatusOr<CommitResult> r = store_->Commit(std::move(cas));
        if (r.ok()) {
          ++winners[round];
          expected.store(r->revision);
        } else if (r.status().code() == absl::StatusCode::kAborted) {
          ++aborted[round];
        } else {
          ++other_errors;
        }
        sync.arrive_and_wait();  // the round is over before anyone reads again
        (void)t;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(other_errors.load(), 0);
  for (int round = 0; round < kRounds; ++round) {
    EXPECT_EQ(winners[round].load(), 1) << "round " << round;
    EXPECT_EQ(aborted[round].load(), kThreads - 1) << "round " << round;
  }
  const Entry* counter = listener_.last()->Find("ns", "counter");
  ASSERT_NE(counter, nullptr);
  EXPECT_EQ(counter->value, std::to_string(kRounds));
  EXPECT_EQ(counter->version, kRounds + 1);
  // Aborted requests consumed no revision.
  EXPECT_EQ(local()->head_revision(), kRounds + 1);
}

TEST_P(GroupCommitTest, CloseUnderLoadFinishesQueuedWrites) {
  constexpr int kThreads = 16;
  std::atomic<int> acknowledged{0};
  std::atomic<int> refused{0};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each writer keeps going until the store refuses it.
      for (int i = 0;; ++i) {
        absl::StatusOr<CommitResult> r =
            store_->Commit(Put("ns", "k" + std::to_string(t), std::to_string(i)));
        if (r.ok()) {
          if (!listener_.Saw(r->revision)) ++unexpected;
          ++acknowledged;
        } else if (r.status().code() == absl::StatusCode::kUnavailable) {
          ++refused;
          return;
        } else {
          ++unexpected;
        }
      }
    });
  }
  ASSERT_TRUE(snapconf::testing::WaitFor([&] { return acknowledged.load() > 200; }));
  store_->Close();
  for (auto& th : threads) th.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(refused.load(), kThreads);
  EXPECT_EQ(static_cast<int>(listener_.revisions().size()), acknowledged.load());

  if (GetParam() == Kind::kSqlite) {
    // Everything acknowledged is on disk.
    const SnapshotPtr before = listener_.last();
    SqliteStoreOptions options;
    options.data_dir = dir_.path();
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> reopened, OpenSqliteStore(options));
    RecordingListener listener;
    ASSERT_OK_AND_ASSIGN(SnapshotPtr head, reopened->Start(&listener));
    EXPECT_TRUE(SameState(*before, *head));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, GroupCommitTest, ::testing::Values(Kind::kMemory, Kind::kSqlite),
                         [](const ::testing::TestParamInfo<Kind>& info) {
                           return info.param == Kind::kMemory ? "Memory" : "Sqlite";
                         });

}  // namespace
}  // namespace snapconf
