// Publisher: readers on several threads race a writer publishing at full speed. Labelled
// `concurrency`; CI runs these under ThreadSanitizer (-DSNAPCONF_TSAN=ON).
#include "snapshot/publisher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "snapshot/internal/hazard.h"

namespace snapconf {
namespace {

#ifdef SNAPCONF_SANITIZER
constexpr int kPublishes = 3000;
#else
constexpr int kPublishes = 30000;
#endif

// Snapshot at `rev` holding keys a and b (both = rev, always written together) and filler.
SnapshotPtr Pair(const SnapshotPtr& base, Revision rev) {
  ChangeSet cs;
  cs.Put("t", "a", std::to_string(rev));
  cs.Put("t", "b", std::to_string(rev));
  cs.Put("filler", std::to_string(rev % 97), std::string(rev % 50, 'x'));
  auto applied = base->Apply(cs, rev);
  EXPECT_TRUE(applied.ok());
  return applied->snapshot;
}

// A one-shot gate threads can wait on (no sleeps for ordering).
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST(PublisherTest, ReadSeesTheCurrentSnapshot) {
  Publisher p(Pair(Snapshot::Empty(), 1));
  EXPECT_EQ(p.revision(), 1);
  EXPECT_EQ(p.Read([](const Snapshot& s) { return s.Find("t", "a")->value; }), "1");
  p.Publish(Pair(Snapshot::Empty(), 2));
  EXPECT_EQ(p.revision(), 2);
  EXPECT_EQ(p.Read([](const Snapshot& s) { return s.revision(); }), 2);
  SnapshotPtr pinned = p.Pin();
  p.Publish(Pair(Snapshot::Empty(), 3));
  EXPECT_EQ(pinned->revision(), 2);  // a pin outlives publishes
  EXPECT_EQ(p.Pin()->revision(), 3);
  p.Read([](const Snapshot&) {});  // void functions work too
}

TEST(PublisherTest, NestedReadsOfSeveralPublishersDeeperThanTheSlots) {
  Publisher p1(Pair(Snapshot::Empty(), 1));
  Publisher p2(Pair(Snapshot::Empty(), 2));
  // Six levels: the first four use hazard slots, the rest fall back to pins.
  const Revision sum = p1.Read([&](const Snapshot& a) {
    return a.revision() + p2.Read([&](const Snapshot& b) {
      return b.revision() + p1.Read([&](const Snapshot& c) {
        return c.revision() + p2.Read([&](const Snapshot& d) {
          return d.revision() + p1.Read([&](const Snapshot& e) {
            return e.revision() + p2.Read([](const Snapshot& f) { return f.revision(); });
          });
        });
      });
    });
  });
  EXPECT_EQ(sum, 9);
  // Slots are all released again.
  snapshot_internal::HazardRecord* rec = snapshot_internal::ThisThreadHazardRecord();
  EXPECT_EQ(rec->depth, 0);
  for (auto& slot : rec->slots) EXPECT_EQ(slot.load(), nullptr);
}

// The heart of the contract: readers never see a mix of two revisions, never go backwards, and
// old snapshots are freed once nobody reads them.
TEST(PublisherConcurrencyTest, ReadersSeeWholeSnapshotsWhileWriterPublishes) {
  const int64_t live_before = Snapshot::LiveCountForTest();
  {
    Publisher p(Pair(Snapshot::Empty(), 1));
    std::atomic<bool> stop{false};
    std::atomic<int64_t> torn{0}, backwards{0}, reads{0};
    constexpr int kReaders = 3;
    std::vector<std::thread> readers;
    for (int t = 0; t < kReaders; ++t) {
      readers.emplace_back([&, t] {
        Revision last = 0;
        int64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          if (t == 2 && n % 16 == 0) {
            // Longer multi-key work goes through a pin.
            SnapshotPtr pin = p.Pin();
            if (pin->Find("t", "a")->value != pin->Find("t", "b")->value) ++torn;
            if (pin->revision() < last) ++backwards;
            last = pin->revision();
          } else {
            p.Read([&](const Snapshot& s) {
              const Entry* a = s.Find("t", "a");
              const Entry* b = s.Find("t", "b");
              if (a == nullptr || b == nullptr || a->value != b->value ||
                  a->mod_revision != s.revision() || b->mod_revision != s.revision()) {
                ++torn;
              }
              if (s.revision() < last) ++backwards;
              last = s.revision();
            });
          }
          ++n;
        }
        reads += n;
      });
    }
    std::thread writer([&] {
      SnapshotPtr cur = p.Pin();
      for (Revision rev = 2; rev <= kPublishes; ++rev) {
        cur = Pair(cur, rev);
        p.Publish(cur);
        if (rev % 1000 == 0) p.Reclaim();
      }
      stop.store(true);
    });
    writer.join();
    for (auto& r : readers) r.join();
    EXPECT_EQ(torn.load(), 0);
    EXPECT_EQ(backwards.load(), 0);
    EXPECT_GT(reads.load(), 0);
    EXPECT_EQ(p.revision(), kPublishes);
    // No reader is running: everything retired can go; only the current snapshot stays.
    EXPECT_EQ(p.Reclaim(), 0u);
    EXPECT_EQ(p.RetiredCountForTest(), 0u);
    EXPECT_EQ(Snapshot::LiveCountForTest() - live_before, 1);
  }
  EXPECT_EQ(Snapshot::LiveCountForTest(), live_before);
}

TEST(PublisherConcurrencyTest, IdleThreadsDoNotKeepSnapshotsAlive) {
  const int64_t live_before = Snapshot::LiveCountForTest();
  Publisher p(Pair(Snapshot::Empty(), 1));
  Gate read_done, finish;
  std::thread idle([&] {
    EXPECT_EQ(p.Read([](const Snapshot& s) { return s.revision(); }), 1);
    read_done.Open();
    finish.Wait();  // stays alive, never reads again
  });
  read_done.Wait();
  SnapshotPtr cur = p.Pin();
  for (Revision rev = 2; rev <= 100; ++rev) {
    cur = Pair(cur, rev);
    p.Publish(cur);
  }
  cur.reset();
  EXPECT_EQ(p.Reclaim(), 0u);
  EXPECT_EQ(Snapshot::LiveCountForTest() - live_before, 1);
  finish.Open();
  idle.join();
}

TEST(PublisherConcurrencyTest, SnapshotInUseByAReaderIsKeptUntilTheReadEnds) {
  const int64_t live_before = Snapshot::LiveCountForTest();
  Publisher p(Pair(Snapshot::Empty(), 1));
  Gate inside, release;
  std::atomic<bool> intact{false};
  std::thread reader([&] {
    p.Read([&](const Snapshot& s) {
      inside.Open();
      release.Wait();
      // Still the same, fully alive snapshot even though many were published meanwhile.
      intact = s.revision() == 1 && s.Find("t", "a")->value == "1" && s.size() == 3;
    });
  });
  inside.Wait();
  SnapshotPtr cur = Snapshot::Empty();
  for (Revision rev = 2; rev <= 50; ++rev) {
    cur = Pair(cur, rev);
    p.Publish(cur);
  }
  cur.reset();
  // Only the snapshot being read is still retired: one per in-flight Read.
  EXPECT_EQ(p.Reclaim(), 1u);
  EXPECT_EQ(Snapshot::LiveCountForTest() - live_before, 2);
  release.Open();
  reader.join();
  EXPECT_TRUE(intact.load());
  EXPECT_EQ(p.Reclaim(), 0u);
  EXPECT_EQ(Snapshot::LiveCountForTest() - live_before, 1);
}

TEST(PublisherConcurrencyTest, ExitedThreadsReturnTheirHazardRecords) {
  Publisher p(Pair(Snapshot::Empty(), 1));
  auto count_records = [] {
    int n = 0;
    for (auto* r = snapshot_internal::HazardListHead(); r != nullptr; r = r->next) ++n;
    return n;
  };
  // Warm up: one thread registers (maybe reusing a record).
  std::thread([&] { p.Read([](const Snapshot&) {}); }).join();
  const int records = count_records();
  for (int i = 0; i < 50; ++i) {
    std::thread([&] { p.Read([](const Snapshot&) {}); }).join();
  }
  EXPECT_EQ(count_records(), records);
}

}  // namespace
}  // namespace snapconf
