// Engine with a store whose revisions skip numbers (as the etcd store's do
// when something else writes to the etcd cluster): reads at any revision,
// in memory or rebuilt from history, see the state of the newest commit at or
// before it, labelled with the revision asked for.
#include <gtest/gtest.h>

#include <vector>

#include "service/engine.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

// Commits are delivered by the test; history is kept in memory.
class SkippingStore : public Store {
 public:
  absl::StatusOr<SnapshotPtr> Start(CommitListener* listener) override {
    listener_ = listener;
    return head_;
  }
  void CommitAsync(WriteRequest, CommitCallback done) override {
    std::move(done)(absl::UnimplementedError("not in this test"));
  }
  absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryQuery& q) override {
    std::vector<CommitRecord> out;
    for (auto it = records_.rbegin(); it != records_.rend() && out.size() < q.limit; ++it) {
      if (it->revision < q.from_revision || (q.to_revision != 0 && it->revision > q.to_revision)) {
        continue;
      }
      out.push_back(*it);
    }
    return out;
  }
  Revision oldest_revision() const override { return 1; }
  absl::Status Health() const override { return absl::OkStatus(); }
  std::string_view kind() const override { return "test"; }
  void Close() override {}

  // Commits `value` for app/k at `revision`.
  void Deliver(Revision revision, const std::string& value) {
    ChangeSet changes;
    changes.Put("app", "k", value);
    absl::StatusOr<Snapshot::Applied> applied = head_->Apply(changes, revision);
    ASSERT_TRUE(applied.ok());
    head_ = applied->snapshot;
    CommitRecord record;
    record.revision = revision;
    record.changes = applied->changes;
    records_.push_back(record);
    listener_->OnCommitted(head_, record);
  }

 private:
  CommitListener* listener_ = nullptr;
  SnapshotPtr head_ = Snapshot::Empty();
  std::vector<CommitRecord> records_;
};

std::string ValueAt(Engine& engine, Revision revision) {
  absl::StatusOr<SnapshotPtr> s = engine.SnapshotAt(revision);
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return "error";
  EXPECT_EQ((*s)->revision(), revision);
  const Entry* e = (*s)->Find("app", "k");
  return e == nullptr ? "absent" : e->value;
}

void CheckReads(size_t recent_snapshots) {
  auto store = std::make_unique<SkippingStore>();
  SkippingStore* raw = store.get();
  EngineOptions options;
  options.recent_snapshots = recent_snapshots;
  Engine engine(std::move(store), options);
  ASSERT_TRUE(engine.Start().ok());
  raw->Deliver(2, "a");
  raw->Deliver(6, "b");  // 3..5 belong to someone else
  raw->Deliver(7, "c");
  EXPECT_EQ(engine.publisher().revision(), 7);
  EXPECT_EQ(ValueAt(engine, 1), "absent");
  EXPECT_EQ(ValueAt(engine, 2), "a");
  EXPECT_EQ(ValueAt(engine, 4), "a");
  EXPECT_EQ(ValueAt(engine, 5), "a");
  EXPECT_EQ(ValueAt(engine, 6), "b");
  EXPECT_EQ(ValueAt(engine, 7), "c");
  EXPECT_FALSE(engine.SnapshotAt(8).ok());
  engine.Stop();
}

TEST(EngineRevisionSkipTest, ReadsFromRecentSnapshots) { CheckReads(1024); }

TEST(EngineRevisionSkipTest, ReadsRebuiltFromHistory) { CheckReads(1); }

}  // namespace
}  // namespace snapconf
