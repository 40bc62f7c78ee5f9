// The group-commit engine through the memory store: revisions, listener order,
// compares, failures of the medium and history with retention.
#include "service/store/memory/memory_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/store/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::Cmp;
using ::snapconf::testing::Delete;
using ::snapconf::testing::FakeClock;
using ::snapconf::testing::IsOk;
using ::snapconf::testing::Put;
using ::snapconf::testing::RecordingListener;
using ::snapconf::testing::StatusIs;
using ::snapconf::testing::WaitFor;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Op = Compare::Op;
using Target = Compare::Target;

class MemoryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { StartStore({}); }

  void StartStore(RetentionPolicy retention) {
    MemoryStoreOptions options;
    options.retention = retention;
    options.clock = clock_.AsFunction();
    store_ = NewMemoryStore(options);
    ASSERT_OK_AND_ASSIGN(SnapshotPtr head, store_->Start(&listener_));
    EXPECT_EQ(head->revision(), 0);
  }

  FakeClock clock_;
  RecordingListener listener_;
  std::unique_ptr<MemoryStore> store_;
};

TEST_F(MemoryStoreTest, CommitsGetConsecutiveRevisions) {
  for (Revision want = 1; want <= 5; ++want) {
    ASSERT_OK_AND_ASSIGN(CommitResult r,
                         store_->Commit(Put("ns", "k" + std::to_string(want), "v")));
    EXPECT_EQ(r.revision, want);
    // The listener saw it before Commit returned.
    EXPECT_TRUE(listener_.Saw(want));
  }
  EXPECT_THAT(listener_.revisions(), ElementsAre(1, 2, 3, 4, 5));
  EXPECT_EQ(listener_.order_violations(), 0);
  EXPECT_EQ(store_->head_revision(), 5);
  EXPECT_THAT(store_->Health(), IsOk());
  EXPECT_EQ(store_->kind(), "memory");
}

TEST_F(MemoryStoreTest, VersionsAndRevisionsOfEntries) {
  ASSERT_THAT(store_->Commit(Put("ns", "a", "1")), IsOk());
  ASSERT_THAT(store_->Commit(Put("ns", "b", "1")), IsOk());
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Put("ns", "a", "2")));
  ASSERT_EQ(r.changes.size(), 1u);
  EXPECT_EQ(r.changes[0].before->value, "1");
  EXPECT_EQ(r.changes[0].after->value, "2");
  const Entry* a = listener_.last()->Find("ns", "a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->create_revision, 1);
  EXPECT_EQ(a->mod_revision, 3);
  EXPECT_EQ(a->version, 2);
  ASSERT_OK_AND_ASSIGN(r, store_->Commit(Delete("ns", "a")));
  EXPECT_EQ(r.revision, 4);
  EXPECT_EQ(listener_.last()->Find("ns", "a"), nullptr);
  ASSERT_OK_AND_ASSIGN(r, store_->Commit(Put("ns", "a", "3")));
  EXPECT_EQ(listener_.last()->Find("ns", "a")->create_revision, 5);
  EXPECT_EQ(listener_.last()->Find("ns", "a")->version, 1);
}

TEST_F(MemoryStoreTest, EmptyChangeSetGetsARevision) {
  WriteRequest only_compares;
  only_compares.compares.push_back(Cmp("ns", "k", Target::kExists, Op::kEqual, 0));
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(std::move(only_compares)));
  EXPECT_EQ(r.revision, 1);
  EXPECT_TRUE(r.changes.empty());
  EXPECT_EQ(listener_.last()->revision(), 1);
}

TEST_F(MemoryStoreTest, FailedCompareChangesNothing) {
  ASSERT_THAT(store_->Commit(Put("payments/prod", "db.pool.max", "10")), IsOk());
  WriteRequest cas = Put("payments/prod", "db.pool.max", "20");
  cas.compares.push_back(Cmp("payments/prod", "db.pool.max", Target::kVersion, Op::kEqual, 1));
  cas.compares.push_back(Cmp("payments/prod", "db.pool.max", Target::kModRevision, Op::kEqual, 0));
  EXPECT_THAT(
      store_->Commit(std::move(cas)),
      StatusIs(absl::StatusCode::kAborted,
               "compare 1 failed: payments/prod db.pool.max mod_revision is 1, expected == 0"));
  EXPECT_EQ(store_->head_revision(), 1);
  EXPECT_THAT(listener_.revisions(), ElementsAre(1));
  EXPECT_EQ(listener_.last()->Find("payments/prod", "db.pool.max")->value, "10");
  // The next write takes the next revision: no gap from the failed one.
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Put("ns", "x", "y")));
  EXPECT_EQ(r.revision, 2);
  EXPECT_EQ(store_->stats().aborted, 1);
}

TEST_F(MemoryStoreTest, CompareAgainstFutureRevisionIsInvalidArgument) {
  ASSERT_THAT(store_->Commit(Put("ns", "k", "v")), IsOk());
  WriteRequest request = Put("ns", "k", "w");
  request.compares.push_back(Cmp("ns", "k", Target::kModRevision, Op::kEqual, 2));
  EXPECT_THAT(store_->Commit(std::move(request)), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(store_->head_revision(), 1);
}

TEST_F(MemoryStoreTest, NamespaceRevisionFollowsChangesToTheNamespace) {
  ASSERT_THAT(store_->Commit(Put("a", "k", "1")), IsOk());  // rev 1
  ASSERT_THAT(store_->Commit(Put("b", "k", "1")), IsOk());  // rev 2
  // Deleting an absent key changes nothing, so namespace "a" stays at 1.
  ASSERT_THAT(store_->Commit(Delete("a", "absent")), IsOk());  // rev 3
  WriteRequest ok = Put("a", "k", "2");
  ok.compares.push_back(Cmp("a", "", Target::kNamespaceRevision, Op::kEqual, 1));
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(std::move(ok)));  // rev 4
  EXPECT_EQ(r.revision, 4);
  WriteRequest stale = Put("a", "k", "3");
  stale.compares.push_back(Cmp("a", "", Target::kNamespaceRevision, Op::kEqual, 1));
  EXPECT_THAT(store_->Commit(std::move(stale)),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("namespace a revision is 4")));
  WriteRequest never = Put("c", "k", "1");
  never.compares.push_back(Cmp("c", "", Target::kNamespaceRevision, Op::kEqual, 0));
  EXPECT_THAT(store_->Commit(std::move(never)), IsOk());
}

TEST_F(MemoryStoreTest, IoFailureFailsTheGroupAndMakesTheStoreUnwritable) {
  ASSERT_THAT(store_->Commit(Put("ns", "k", "1")), IsOk());
  store_->FailNextPersistForTest(absl::DataLossError("fsync failed"));
  EXPECT_THAT(
      store_->Commit(Put("ns", "k", "2")),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("write path failed: fsync failed")));
  EXPECT_THAT(store_->Health(), StatusIs(absl::StatusCode::kUnavailable));
  // Never retried: every later write is refused, even though the hook is spent.
  EXPECT_THAT(store_->Commit(Put("ns", "k", "3")), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(listener_.revisions(), ElementsAre(1));
  EXPECT_EQ(store_->head_revision(), 1);
  // Reads of history still work.
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory({}));
  EXPECT_EQ(history.size(), 1u);
}

TEST_F(MemoryStoreTest, DiskFullFailsTheGroupButKeepsTheStoreWritable) {
  ASSERT_THAT(store_->Commit(Put("ns", "k", "1")), IsOk());
  store_->FailNextPersistForTest(absl::ResourceExhaustedError("disk full"));
  EXPECT_THAT(store_->Commit(Put("ns", "k", "2")), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(store_->Health(), IsOk());
  // The discarded working state did not leak: revision 2 is reused and the
  // value builds on "1".
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Put("ns", "k", "3")));
  EXPECT_EQ(r.revision, 2);
  EXPECT_EQ(r.changes[0].before->value, "1");
  EXPECT_EQ(r.changes[0].after->version, 2);
  EXPECT_THAT(listener_.revisions(), ElementsAre(1, 2));
}

TEST_F(MemoryStoreTest, CloseRefusesNewWrites) {
  ASSERT_THAT(store_->Commit(Put("ns", "k", "1")), IsOk());
  store_->Close();
  EXPECT_THAT(store_->Commit(Put("ns", "k", "2")),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_THAT(store_->Health(), StatusIs(absl::StatusCode::kUnavailable));
  store_->Close();  // idempotent
}

TEST(MemoryStoreLifecycleTest, CommitBeforeStartIsUnavailable) {
  auto store = NewMemoryStore();
  EXPECT_THAT(store->Commit(Put("ns", "k", "v")), StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(MemoryStoreTest, HistoryIsNewestFirstAndFiltered) {
  ASSERT_THAT(store_->Commit(Put("a", "x", "1", "alice")), IsOk());  // 1
  ASSERT_THAT(store_->Commit(Put("b", "x", "1", "bob")), IsOk());    // 2
  WriteRequest both;
  both.changes.Put("a", "y", "1");
  both.changes.Put("b", "y", "1");
  both.author = "carol";
  both.message = "both";
  ASSERT_THAT(store_->Commit(std::move(both)), IsOk());     // 3
  ASSERT_THAT(store_->Commit(Put("a", "x", "2")), IsOk());  // 4

  ASSERT_OK_AND_ASSIGN(auto all, store_->ReadHistory({}));
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].revision, 4);
  EXPECT_EQ(all[3].revision, 1);
  EXPECT_EQ(all[3].author, "alice");
  EXPECT_EQ(all[1].message, "both");
  EXPECT_EQ(all[1].changes.size(), 2u);

  HistoryQuery in_a;
  in_a.ns = "a";
  ASSERT_OK_AND_ASSIGN(auto a, store_->ReadHistory(in_a));
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[1].revision, 3);
  ASSERT_EQ(a[1].changes.size(), 1u);  // only the matching change
  EXPECT_EQ(a[1].changes[0].key, "y");

  HistoryQuery ax;
  ax.ns = "a";
  ax.key = "x";
  ax.limit = 1;
  ASSERT_OK_AND_ASSIGN(auto x, store_->ReadHistory(ax));
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].revision, 4);
  EXPECT_EQ(x[0].changes[0].before->value, "1");

  HistoryQuery key_only;
  key_only.key = "x";
  EXPECT_THAT(store_->ReadHistory(key_only), StatusIs(absl::StatusCode::kInvalidArgument));
  HistoryQuery future;
  future.to_revision = 5;
  EXPECT_THAT(store_->ReadHistory(future), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(MemoryStoreTest, RetentionByCount) {
  StartStore({.max_records = 3, .max_age = absl::InfiniteDuration()});
  for (int i = 0; i < 10; ++i) ASSERT_THAT(store_->Commit(Put("ns", "k", "v")), IsOk());
  // Compaction runs in the writer right after a group is acknowledged.
  EXPECT_TRUE(WaitFor([&] { return store_->oldest_revision() == 8; }));
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory({}));
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history.back().revision, 8);
  HistoryQuery old;
  old.from_revision = 7;
  EXPECT_THAT(store_->ReadHistory(old), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(MemoryStoreTest, RetentionByAge) {
  StartStore({.max_records = 0, .max_age = absl::Hours(1)});
  ASSERT_THAT(store_->Commit(Put("ns", "k", "1")), IsOk());  // 1
  clock_.Advance(absl::Minutes(40));
  ASSERT_THAT(store_->Commit(Put("ns", "k", "2")), IsOk());  // 2
  clock_.Advance(absl::Minutes(40));
  ASSERT_THAT(store_->Commit(Put("ns", "k", "3")), IsOk());  // 3: revision 1 is now 80 min old
  EXPECT_TRUE(WaitFor([&] { return store_->oldest_revision() == 2; }));
  clock_.Advance(absl::Hours(2));
  // Without any write, the idle writer still applies retention by age; the
  // current state is untouched and history is empty (oldest = head + 1).
  EXPECT_TRUE(WaitFor([&] { return store_->oldest_revision() == 4; }));
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory({}));
  EXPECT_TRUE(history.empty());
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Put("ns", "k", "4")));
  EXPECT_EQ(r.revision, 4);
  EXPECT_EQ(r.changes[0].before->value, "3");
}

}  // namespace
}  // namespace snapconf
