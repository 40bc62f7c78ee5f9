// service/engine.h
//
// Engine is the heart of snapconfd between the RPC layer and the Store: it
// owns the Publisher of the current snapshot, keeps recent snapshots for reads
// at older revisions, reconstructs older ones from history, and turns
// committed change sets into published snapshots.
//
// Invariants:
//   * publisher().revision() only increases, one committed revision at a time
//     (with the etcd store the numbers may skip revisions of writes outside
//     snapconf; a read at a skipped revision sees the state before it).
//   * A write's callback runs after its snapshot is published, so a client
//     that hears "committed at R" can read R anywhere on this node.
//   * Reads of the current snapshot never take a lock (Publisher::Read).
//
// Thread safety: every public method may be called from any thread after
// Start() returned OK. OnCommitted/OnReloaded are called by the store only.
//
//   Engine engine(std::move(store), options);
//   RETURN_IF_ERROR(engine.Start());
//   engine.publisher().Read([&](const Snapshot& s) { ... });
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "service/revision_waiters.h"
#include "service/store/store.h"
#include "snapshot/publisher.h"
#include "snapshot/snapshot.h"

namespace snapconf {

struct EngineOptions {
  // How many of the newest snapshots stay in memory for reads at an older
  // revision; older retained revisions are rebuilt from history on demand.
  size_t recent_snapshots = 1024;
  // Upper bound on any min_revision wait, whatever the call's deadline.
  absl::Duration max_revision_wait = absl::Seconds(60);
  // Metrics: called once per Write() with the time until its answer.
  std::function<void(absl::Duration)> on_write_done;
};

class Engine : public CommitListener {
 public:
  using WriteCallback = absl::AnyInvocable<void(absl::StatusOr<CommitResult>) &&>;

  Engine(std::unique_ptr<Store> store, EngineOptions options);
  ~Engine() override;
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Loads the store and publishes its head snapshot.
  absl::Status Start();
  // Refuses new writes, fails revision waiters and closes the store.
  void Stop();

  const Publisher& publisher() const { return *publisher_; }
  Store& store() { return *store_; }

  // The snapshot at `revision` (0: current). OUT_OF_RANGE when the revision is
  // in the future or older than retained history.
  absl::StatusOr<SnapshotPtr> SnapshotAt(Revision revision);

  // Oldest revision a read may ask for.
  Revision oldest_readable_revision() const;

  // Runs `done` once the current snapshot is at least `revision`, or with an
  // error at `deadline` / shutdown. Never blocks the caller.
  void AwaitRevision(Revision revision, absl::Time deadline, RevisionWaiters::Callback done);

  // Commits `request`; `done` runs once, after the snapshot is published.
  // Never blocks the caller on disk I/O.
  void Write(WriteRequest request, WriteCallback done);

  // Restores `ns` to its state at `revision` as a new revision. The changes
  // are empty (and nothing is written) when the namespace already matches.
  void Rollback(std::string ns, Revision revision, std::optional<Revision> expected_ns_revision,
                std::string author, std::string message, WriteCallback done);

  // Receives every committed record after the snapshot is published (the
  // watch hub). Set before Start(); not owned.
  void set_observer(CommitListener* observer) { observer_ = observer; }

  // CommitListener, called by the store in revision order.
  void OnCommitted(const SnapshotPtr& snapshot, const CommitRecord& record) override;
  void OnReloaded(const SnapshotPtr& snapshot) override;

 private:
  absl::StatusOr<SnapshotPtr> Reconstruct(const SnapshotPtr& head, Revision revision);
  // Publishes a snapshot that replaces everything (start and reloads).
  void Install(const SnapshotPtr& snapshot);
  struct RollbackJob {
    std::string ns;
    Revision revision;
    std::optional<Revision> expected_ns_revision;
    std::string author;
    std::string message;
  };
  // One diff-and-commit try of a rollback; retries from the commit callback.
  void RollbackAttempt(std::shared_ptr<const RollbackJob> job, int attempt, WriteCallback done);
  // Revision of the latest change set that modified `ns`, as of `current`.
  absl::StatusOr<Revision> NamespaceRevision(const Snapshot& current, const std::string& ns);
  void RememberLocked(const SnapshotPtr& snapshot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const EngineOptions options_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Publisher> publisher_;
  std::unique_ptr<RevisionWaiters> waiters_;
  CommitListener* observer_ = nullptr;

  // A store may deliver commits from its own thread as soon as Start()
  // returned (etcd: other replicas write): they wait until the head Start()
  // returned is published, so the published revision never goes back.
  void AwaitHeadInstalled();
  std::atomic<bool> head_installed_{false};
  Mutex install_mu_;
  CondVar install_cv_;

  mutable Mutex mu_;
  // Newest last; every committed revision in its range (cleared on reload).
  std::deque<SnapshotPtr> recent_ ABSL_GUARDED_BY(mu_);
  // A few snapshots rebuilt from history, newest use last.
  std::deque<SnapshotPtr> rebuilt_ ABSL_GUARDED_BY(mu_);
};

}  // namespace snapconf
