// tests/store/store_test_util.h
//
// Helpers shared by the store tests: a listener that records what it is
// handed and checks the ordering contract, request builders, a temporary data
// directory and a settable clock.
//
// Thread safety: RecordingListener and FakeClock may be used from any thread.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "service/store/store.h"

namespace snapconf::testing {

class RecordingListener : public CommitListener {
 public:
  void OnCommitted(const SnapshotPtr& snapshot, const CommitRecord& record) override {
    MutexLock lock(&mu_);
    if (!revisions_.empty() && record.revision != revisions_.back() + 1) ++order_violations_;
    if (snapshot == nullptr || snapshot->revision() != record.revision) ++order_violations_;
    revisions_.push_back(record.revision);
    records_.push_back(record);
    last_ = snapshot;
  }
  void OnReloaded(const SnapshotPtr& snapshot) override {
    MutexLock lock(&mu_);
    ++reloads_;
    last_ = snapshot;
  }

  std::vector<Revision> revisions() const {
    MutexLock lock(&mu_);
    return revisions_;
  }
  std::vector<CommitRecord> records() const {
    MutexLock lock(&mu_);
    return records_;
  }
  bool Saw(Revision revision) const {
    MutexLock lock(&mu_);
    for (Revision r : revisions_) {
      if (r == revision) return true;
    }
    return false;
  }
  SnapshotPtr last() const {
    MutexLock lock(&mu_);
    return last_;
  }
  int order_violations() const {
    MutexLock lock(&mu_);
    return order_violations_;
  }

 private:
  mutable Mutex mu_;
  std::vector<Revision> revisions_ ABSL_GUARDED_BY(mu_);
  std::vector<CommitRecord> records_ ABSL_GUARDED_BY(mu_);
  SnapshotPtr last_ ABSL_GUARDED_BY(mu_);
  int order_violations_ ABSL_GUARDED_BY(mu_) = 0;
  int reloads_ ABSL_GUARDED_BY(mu_) = 0;
};

// A clock tests move by hand.
class FakeClock {
 public:
  absl::Time Now() const { return absl::FromUnixMicros(micros_.load()); }
  void Advance(absl::Duration d) { micros_ += absl::ToInt64Microseconds(d); }
  std::function<absl::Time()> AsFunction() {
    return [this] { return Now(); };
  }

 private:
  std::atomic<int64_t> micros_{absl::ToUnixMicros(
      absl::FromCivil(absl::CivilSecond(2026, 1, 1, 0, 0, 0), absl::UTCTimeZone()))};
};

inline WriteRequest Put(std::string ns, std::string key, std::string value,
                        std::string author = "tester") {
  WriteRequest request;
  request.changes.Put(std::move(ns), std::move(key), std::move(value), "text/plain");
  request.author = std::move(author);
  return request;
}

inline WriteRequest Delete(std::string ns, std::string key) {
  WriteRequest request;
  request.changes.Delete(std::move(ns), std::move(key));
  request.author = "tester";
  return request;
}

inline Compare Cmp(std::string ns, std::string key, Compare::Target target, Compare::Op op,
                   int64_t number) {
  Compare c;
  c.ns = std::move(ns);
  c.key = std::move(key);
  c.target = target;
  c.op = op;
  c.number = number;
  return c;
}

// A fresh directory under $TEST_TMPDIR or /tmp, removed at destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TEST_TMPDIR");
    std::string pattern =
        (std::filesystem::path(base != nullptr ? base : "/tmp") / "snapconf-store-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// Polls `done` until it holds or `timeout` passes; true when it held.
inline bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

// Every entry of `a` equals the one in `b` and both hold the same keys.
inline ::testing::AssertionResult SameState(const Snapshot& a, const Snapshot& b) {
  if (a.revision() != b.revision()) {
    return ::testing::AssertionFailure() << "revision " << a.revision() << " != " << b.revision();
  }
  if (a.size() != b.size()) {
    return ::testing::AssertionFailure() << "size " << a.size() << " != " << b.size();
  }
  if (a.Namespaces() != b.Namespaces()) return ::testing::AssertionFailure() << "namespaces differ";
  for (const std::string& ns : a.Namespaces()) {
    std::string bad;
    a.Scan(ns, "", "", 0, [&](std::string_view key, const EntryPtr& entry) {
      const Entry* other = b.Find(ns, key);
      if (other == nullptr || !SameEntry(*entry, *other)) {
        bad = std::string(key);
        return false;
      }
      return true;
    });
    if (!bad.empty()) return ::testing::AssertionFailure() << "entry " << ns << " " << bad;
  }
  return ::testing::AssertionSuccess();
}

}  // namespace snapconf::testing
