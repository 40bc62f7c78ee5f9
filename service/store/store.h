// service/store/store.h
//
// Store is the durable home of every committed change set. snapconfd has one
// Store; the SQLite store (one node) and the etcd store (several replicas)
// implement it, and tests use the memory store.
//
// Contract:
//   * Revisions are global, start at 1, and every committed WriteRequest gets
//     a new one: no reuse, never backwards. The local stores (SQLite, memory)
//     hand out exactly the next one, with no gaps; the etcd store uses etcd's
//     revision, which skips numbers taken by writes outside snapconf's prefix
//     (docs/adr/004-etcd-store.md). Consumers must not assume R + 1 follows R.
//   * Commit() returns OK only after the change set is durable AND has been
//     handed to the CommitListener (so the caller's snapshot is published
//     before the client hears back).
//   * The listener sees committed change sets strictly in revision order,
//     from one thread at a time, exactly once each.
//   * A failed compare changes nothing and answers ABORTED with a message that
//     names the compare and the actual value.
//   * After a failed write to the medium (an I/O error on commit) the store
//     refuses every further write with UNAVAILABLE and Health() reports it; it
//     never retries an fsync and carries on.
//
// Thread safety: every method may be called from any thread concurrently,
// except Open/Close which the owner calls once.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenSqliteStore(options));
//   ASSIGN_OR_RETURN(SnapshotPtr head, store->Start(&listener));
//   ASSIGN_OR_RETURN(CommitResult r, store->Commit(std::move(request)));
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "snapshot/change_set.h"
#include "snapshot/snapshot.h"

namespace snapconf {

// One condition of a write, checked atomically with it.
struct Compare {
  enum class Target {
    kModRevision,
    kCreateRevision,
    kVersion,
    kExists,             // number: 1 exists, 0 absent
    kValue,              // compares `value`
    kNamespaceRevision,  // latest revision that changed any key of `ns`; key empty
  };
  enum class Op { kEqual, kNotEqual, kLess, kGreater };

  std::string ns;
  std::string key;
  Target target = Target::kModRevision;
  Op op = Op::kEqual;
  int64_t number = 0;
  std::string value;
};

// A change set to commit, with its conditions and provenance.
struct WriteRequest {
  std::vector<Compare> compares;  // all must hold
  ChangeSet changes;              // validated by the caller; may be empty
  std::string author;             // identity of the writer
  std::string message;            // optional, UTF-8
};

// A committed change set.
struct CommitRecord {
  Revision revision = 0;
  absl::Time commit_time;
  std::string author;
  std::string message;
  std::vector<EntryChange> changes;  // sorted by (ns, key)
};

struct CommitResult {
  Revision revision = 0;
  std::vector<EntryChange> changes;  // sorted by (ns, key)
};

// Receives committed change sets in revision order.
class CommitListener {
 public:
  virtual ~CommitListener() = default;
  // `snapshot` is the complete state at record.revision. Called from one thread
  // at a time, in revision order, before the matching Commit() returns.
  virtual void OnCommitted(const SnapshotPtr& snapshot, const CommitRecord& record) = 0;
  // The store lost continuity (e.g. etcd compaction under a broken watch) and
  // reloaded: `snapshot` replaces everything. Revisions still only increase.
  virtual void OnReloaded(const SnapshotPtr& snapshot) = 0;
};

// A query over retained history. Records are returned newest first.
struct HistoryQuery {
  std::string ns;              // empty: every namespace
  std::string key;             // empty: every key (requires ns when set)
  Revision from_revision = 0;  // oldest to return (0: oldest retained)
  Revision to_revision = 0;    // newest to return (0: head)
  size_t limit = 100;
};

// How long history is kept: a record is compacted once it is older than
// max_age or once more than max_records newer records exist. Compaction only
// removes history; the current state is never affected.
struct RetentionPolicy {
  int64_t max_records = 100000;                   // 0: unlimited
  absl::Duration max_age = absl::Hours(24 * 30);  // InfiniteDuration: unlimited
};

class Store {
 public:
  virtual ~Store() = default;

  // Loads the state and starts delivering commits to `listener` (which must
  // outlive the store). Returns the snapshot at the head revision.
  virtual absl::StatusOr<SnapshotPtr> Start(CommitListener* listener) = 0;

  using CommitCallback = absl::AnyInvocable<void(absl::StatusOr<CommitResult>) &&>;

  // Commits one change set if every compare holds; see the contract above.
  // Blocks until the outcome is known. A store overrides Commit, CommitAsync,
  // or both; each default is written in terms of the other.
  virtual absl::StatusOr<CommitResult> Commit(WriteRequest request);

  // Like Commit, but returns at once; `done` runs exactly once, after the
  // listener saw the record (or with the error). `done` must not block: the
  // store may run it on its writer thread.
  virtual void CommitAsync(WriteRequest request, CommitCallback done);

  // Retained history, newest first, filtered by namespace/key. Revisions
  // below oldest_revision() answer OUT_OF_RANGE.
  virtual absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryQuery& query) = 0;

  // Oldest revision whose change set is still in history (head + 1 when
  // history is empty).
  virtual Revision oldest_revision() const = 0;

  // OK while writes are accepted; otherwise why not (UNAVAILABLE, ...).
  virtual absl::Status Health() const = 0;

  // How long this node has been out of touch with the shared medium (etcd),
  // so reads may be that much out of date; zero for the local stores.
  virtual absl::Duration Staleness() const { return absl::ZeroDuration(); }

  // Store kind for logs and status: "sqlite", "etcd", "memory".
  virtual std::string_view kind() const = 0;

  // Stops accepting writes, finishes those in flight and closes the medium.
  // Idempotent.
  virtual void Close() = 0;
};

// Checks `compare` against `snapshot`; `namespace_revision` is the revision of
// the latest change to compare.ns. Returns ABORTED naming the failed compare.
// Shared by stores that evaluate compares themselves.
absl::Status CheckCompare(const Snapshot& snapshot, Revision namespace_revision,
                          const Compare& compare, size_t index);

}  // namespace snapconf
