// service/store/local_store.h
//
// LocalStore is the group-commit engine shared by the stores that own their
// medium (SQLite on disk, memory for tests). It implements Store on top of a
// small StoreBackend interface; each backend lives in its own folder
// (service/store/sqlite/, service/store/memory/) and only knows how to load,
// persist a group of records in one transaction, compact history and read it.
//
// How a write travels:
//   1. Commit() enqueues the request and blocks on its own condition;
//      CommitAsync() enqueues it with a callback and returns at once.
//   2. The single writer thread drains everything pending (bounded by
//      kMaxGroupRequests / kMaxGroupBytes) into one group. For each request, in
//      queue order, it checks the compares against the *working* snapshot (so a
//      later request sees the effects of earlier ones in the same group); a
//      failed compare is answered ABORTED at once and writes nothing. Otherwise
//      the change set is applied at the next revision.
//   3. The whole group is persisted with ONE backend transaction.
//   4. Only after Persist() returned OK is each record handed to the listener in
//      revision order, and then every waiter is completed (CommitAsync
//      callbacks run on the writer thread, so they must not block).
//
// Invariants (held by the writer thread, which alone mutates them):
//   * committed_ is the snapshot at head_revision(); it only moves forward after
//     a successful Persist(). The working state of a failed group is discarded.
//   * ns_revisions_ maps a namespace to the revision of the latest change set
//     that modified one of its keys (Compare::Target::kNamespaceRevision).
//   * Revisions handed out are head + 1, head + 2, ... with no gaps: a request
//     that fails its compares never consumes a revision.
//
// Failures of the medium:
//   * RESOURCE_EXHAUSTED from Persist() (disk full): the group fails with
//     RESOURCE_EXHAUSTED, nothing is kept, the store stays writable.
//   * Any other error: the group fails with UNAVAILABLE ("write path failed:
//     ..."), and the store refuses every later write; Health() reports it. The
//     engine never retries a failed commit (an fsync that failed once cannot be
//     trusted again); recovery is a restart, which reloads from the medium.
//
// Thread safety: every Store method may be called from any thread. Backend
// methods Load/Persist/CompactHistory are called from one thread at a time
// (Start's caller, then the writer thread); ReadHistory from any thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/mutex.h"
#include "service/store/store.h"

namespace snapconf {

// What a backend hands the engine at Start().
struct LoadedState {
  SnapshotPtr snapshot;  // state at the head revision (Snapshot::Empty() when new)
  absl::flat_hash_map<std::string, Revision> ns_revisions;
  Revision oldest_revision = 1;  // head + 1 when history is empty
};

// Bounds for one history read, already validated and resolved by the engine.
struct HistoryRange {
  std::string ns;   // empty: every namespace
  std::string key;  // empty: every key of ns
  Revision from = 0;
  Revision to = 0;  // inclusive; from <= to
  size_t limit = 0;
};

// True when the record at `revision`, committed at `commit_time`, falls outside
// `policy` given the head revision and the time now. At most max_records
// records are retained, and none older than max_age. Backends compact the
// oldest records first and stop at the first one that is retained, so that
// history stays one contiguous range [oldest_revision, head].
bool OutsideRetention(const RetentionPolicy& policy, Revision head, absl::Time now,
                      Revision revision, absl::Time commit_time);

// The medium behind a LocalStore. See the banner for threading.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;

  virtual std::string_view kind() const = 0;

  // Reads the whole current state. Called once, before any other call.
  virtual absl::StatusOr<LoadedState> Load() = 0;

  // Makes `group` (consecutive revisions, ascending, non-empty) durable in one
  // transaction: all of it or none of it. Returns RESOURCE_EXHAUSTED when the
  // medium is full and the transaction was rolled back cleanly; any other error
  // means the medium can no longer be trusted.
  virtual absl::Status Persist(absl::Span<const CommitRecord> group) = 0;

  // Removes up to `max_batch` of the oldest records that fall outside `policy`
  // and returns the oldest revision still retained (head + 1 when none).
  virtual absl::StatusOr<Revision> CompactHistory(const RetentionPolicy& policy, Revision head,
                                                  absl::Time now, size_t max_batch) = 0;

  // Committed records in `range`, newest first, each holding only the changes
  // that match range.ns / range.key; records without a matching change are
  // skipped. Safe to call concurrently with Persist/CompactHistory.
  virtual absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryRange& range) = 0;

  // Releases the medium. No other call follows.
  virtual void Close() = 0;
};

struct LocalStoreOptions {
  RetentionPolicy retention;
  // Time source for commit times and retention by age; tests inject one.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // Metrics: called on the writer thread after each group persisted, with the
  // time each of its snapshots took to build and the transaction's time.
  std::function<void(absl::Span<const absl::Duration> builds, absl::Duration persist)>
      on_group_persisted;
};

// Counters for tests, metrics and benchmarks. Read with LocalStore::stats().
struct StoreStats {
  int64_t groups = 0;                // persisted groups
  int64_t commits = 0;               // requests acknowledged OK
  int64_t aborted = 0;               // requests answered ABORTED / INVALID_ARGUMENT
  int64_t failed = 0;                // requests failed by the medium
  int64_t max_group_size = 0;        // most requests persisted in one group
  int64_t multi_request_groups = 0;  // groups persisting more than one request
  absl::Duration persist_time;       // total time spent in Persist()
};

class LocalStore : public Store {
 public:
  // A group holds at most this many requests and (beyond its first request)
  // this many bytes of keys and values, so one group never stalls the queue
  // for long and a Persist() transaction stays small.
  static constexpr size_t kMaxGroupRequests = 512;
  static constexpr size_t kMaxGroupBytes = 4 << 20;
  // Records compacted per step; a step runs after each group and when idle.
  static constexpr size_t kCompactionBatch = 256;

  LocalStore(std::unique_ptr<StoreBackend> backend, LocalStoreOptions options);
  ~LocalStore() override;

  LocalStore(const LocalStore&) = delete;
  LocalStore& operator=(const LocalStore&) = delete;

  absl::StatusOr<SnapshotPtr> Start(CommitListener* listener) override;
  absl::StatusOr<CommitResult> Commit(WriteRequest request) override;
  void CommitAsync(WriteRequest request, CommitCallback done) override;
  absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryQuery& query) override;
  Revision oldest_revision() const override;
  absl::Status Health() const override;
  std::string_view kind() const override;
  void Close() override;

  Revision head_revision() const { return head_revision_.load(std::memory_order_acquire); }
  StoreStats stats() const;

  // The backend, for backend-specific test hooks.
  StoreBackend* backend_for_test() { return backend_.get(); }

 private:
  // One queued write. For Commit() it lives on the caller's stack until
  // `done`; for CommitAsync() it is heap-allocated, `callback` is set, and
  // Complete() deletes it.
  // Each waiter has its own mutex: when a group of hundreds completes, the
  // woken callers do not all fight the writer for mu_.
  struct Pending {
    WriteRequest request;
    CommitCallback callback;
    Mutex done_mu;
    absl::StatusOr<CommitResult> result ABSL_GUARDED_BY(done_mu);
    bool done ABSL_GUARDED_BY(done_mu) = false;
    CondVar cv;
  };

  // Why a new write is refused right now (OK: accepted).
  absl::Status AdmissionStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void WriterLoop();
  // Checks, applies and persists one group; completes every request in it.
  void ProcessGroup(std::vector<Pending*> group);
  void Complete(Pending* pending, absl::StatusOr<CommitResult> result);
  void CompactStep();
  // Records a fatal medium error; every later write is refused.
  void MarkFailed(const absl::Status& cause);

  const std::unique_ptr<StoreBackend> backend_;
  const LocalStoreOptions options_;

  mutable Mutex mu_;
  std::deque<Pending*> queue_ ABSL_GUARDED_BY(mu_);
  CondVar writer_cv_;  // signalled when queue_ grows or stopping_ is set
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);    // non-OK once the medium failed
  int active_readers_ ABSL_GUARDED_BY(mu_) = 0;  // ReadHistory calls inside the backend
  CondVar readers_cv_;                           // signalled when active_readers_ drops to 0
  std::thread writer_;

  // Writer-thread state (set by Start before the thread exists).
  CommitListener* listener_ = nullptr;
  SnapshotPtr committed_;
  absl::flat_hash_map<std::string, Revision> ns_revisions_;
  bool compaction_pending_ = true;  // writer-only; read under mu_ while waiting

  std::atomic<Revision> head_revision_{0};
  std::atomic<Revision> oldest_revision_{1};

  mutable Mutex stats_mu_;
  StoreStats stats_ ABSL_GUARDED_BY(stats_mu_);
};

}  // namespace snapconf
