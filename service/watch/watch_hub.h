// service/watch/watch_hub.h
//
// WatchHub fans committed revisions out to every open watch stream (the watch
// contract is in docs/adr/003-watch-fanout.md and watch_service.proto).
//
// Structure. The hub keeps ONE shared, bounded event log: a deque of immutable
// LogRecords, one per revision, bounded by a revision count and by bytes. A
// LogRecord holds its revision's changes serialized once, in one grpc::Slice,
// as the bytes of consecutive `RevisionChanges.changes` elements; a watcher's
// matching changes are runs in that slice and go into its message as
// refcounted sub-slices, so every stream is handed the same bytes. Each
// Watcher is a cursor into the log with O(1) state: its filters, the revision
// its client holds, its scan position, at most one write in flight, a pending
// progress flag, a reset cursor, and (LATEST_STATE) one pinned snapshot.
// A slow watcher never grows the log: when its position falls out of the log
// it is reset (EVERY_REVISION) or sent one net difference (LATEST_STATE).
//
// Thread-safety contract.
//   * OnCommitted/OnReloaded are called by the engine, one at a time, in
//     revision order (the store's writer thread). They only append to the log
//     and wake the pumps; they never call gRPC.
//   * Pumps start the writes of idle watchers that are behind and send
//     progress on idle streams. Each shard of watchers has one pumping
//     thread: by default the hub's own dispatcher threads (a stream's shard
//     follows its connection, so one connection's writes are started from one
//     thread); with SetExternalPumps the transport's threads (the gRPC
//     service: each completion queue's thread pumps the streams on that
//     queue). A stream's sink pumps the next message from OnWriteDone.
//   * Every other method may be called from any thread.
//   * Lock order: Watcher::mu_ before WatchHub::mu_. No lock is held while
//     calling a WatchSink (gRPC), and a sink call never blocks.
//
// Invariants.
//   * The log holds consecutive committed revisions [oldest, head]; head is
//     the newest committed revision the hub has seen. "Consecutive" means no
//     committed revision is missing: with the etcd store the numbers may skip
//     (revisions of writes outside snapconf), and each record remembers the
//     revision before it (LogRecord::after) so a skip is never taken for a gap.
//   * For every watcher: client_revision <= scan_position, and no revision in
//     (client_revision, scan_position] matches its filter unless it is in the
//     write in flight. Revisions are sent strictly increasing, each at most
//     once, each whole.
//   * A WatchSink is called by at most one thread at a time: Send only with no
//     write in flight, End exactly once and only with no write in flight;
//     after End the sink is never touched again.
//
//   WatchHub hub(options, [&](Revision r) { return engine.SnapshotAt(r); });
//   engine.set_observer(&hub);             // before engine.Start()
//   engine.Start(); hub.Preload(engine.store());
//   absl::StatusOr<std::shared_ptr<Watcher>> w = hub.Open(peer, &sink);
//   (*w)->Start(spec);                     // after the client's `create`
//   ... sink calls (*w)->OnWriteDone(ok) after each Send ...
//   hub.Close(*w);                         // when the stream is done
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "service/store/store.h"
#include "snapconf/v1/watch_service.pb.h"
#include "snapshot/snapshot.h"

namespace snapconf {

struct WatchHubOptions {
  // The event log keeps at most this many revisions and about this many bytes
  // (the newest revision is always kept).
  int64_t log_max_revisions = 10000;
  size_t log_max_bytes = 64 << 20;
  // Idle streams get a progress message this often.
  absl::Duration progress_interval = absl::Seconds(10);
  // Reset chunks hold about this many bytes of entries (at least one entry).
  size_t reset_chunk_bytes = 1 << 20;
  // A changes message holds about this many bytes (at least one revision).
  size_t max_message_bytes = 4 << 20;
  // Open streams, in total and per peer host.
  int64_t max_streams = 10000;
  int64_t max_streams_per_peer = 1000;
  // Dispatcher threads that start writes after a commit (0: one per core).
  // Each connection's streams belong to one of them. Unused once the
  // transport pumps (WatchHub::SetExternalPumps).
  int dispatch_threads = 0;
  // gRPC completion queues, each with its own thread, that carry the watch
  // streams (0: 16). More queues make each completion cheaper (see
  // watch_service.h).
  int completion_queues = 0;
};

// One filter of a watch: a namespace and key prefixes (none: every key).
struct WatchFilterSpec {
  std::string ns;
  std::vector<std::string> prefixes;
};

// A validated WatchCreateRequest.
struct WatchSpec {
  std::vector<WatchFilterSpec> filters;
  Revision start_revision = 0;
  v1::DeliveryMode mode = v1::DELIVERY_MODE_EVERY_REVISION;
  bool with_previous = false;
};

// Checks a namespace and a prefix by the server's naming rules (validate.h).
using WatchNameValidator =
    std::function<absl::Status(std::string_view ns, const std::vector<std::string>& prefixes)>;

// Turns a WatchCreateRequest into a WatchSpec, or INVALID_ARGUMENT naming the
// problem: at least one filter, each namespace at most once, names accepted by
// `validate` (may be empty), start_revision >= 0, a known mode.
absl::StatusOr<WatchSpec> ParseWatchCreate(const v1::WatchCreateRequest& request,
                                           const WatchNameValidator& validate);

// Where a watcher's messages go: the gRPC reactor, or a fake in tests.
class WatchSink {
 public:
  virtual ~WatchSink() = default;
  // Starts a write of `message` (valid until the sink reports OnWriteDone to
  // the watcher). Never blocks.
  virtual void Send(const grpc::ByteBuffer* message) = 0;
  // Ends the stream. Called once, with no write in flight.
  virtual void End(const grpc::Status& status) = 0;
};

class WatchHub;
struct LogRecord;

// One stream's cursor into the hub's log. Created by WatchHub::Open.
class Watcher {
 public:
  // `peer` is the client host (limits count per host); `connection` the full
  // peer string with its port.
  Watcher(WatchHub* hub, std::string peer, WatchSink* sink, size_t shard = 0,
          std::string connection = {});
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // The sink may be called from now on (the reactor has started its first
  // read). A Finish requested before (a shutdown racing the stream's
  // construction) takes effect here. Start implies it.
  void Activate();
  // The client's `create` arrived: position the cursor and send what is due.
  void Start(WatchSpec spec);
  // The write started by the last Send completed (ok: it was sent).
  void OnWriteDone(bool ok);
  // The client asked for a progress message.
  void RequestProgress();
  // Ends the stream with `status` (now, or when the write in flight is done).
  // Later calls are ignored.
  void Finish(const grpc::Status& status);
  // Sends whatever is due, if no write is in flight.
  void Pump();

  // Access re-check (e.g. after a policy or credentials change): OK keeps the
  // stream, anything else ends it with that status. Set before Start.
  using Recheck = std::function<absl::Status()>;
  void set_recheck(Recheck recheck);
  // Runs the re-check, if set and the stream is not ending; ends the stream
  // when it fails (true then). Called from any thread, never under the
  // hub's lock.
  bool RunRecheck();

  // True once Finish was requested.
  bool finishing() const;
  const std::string& peer() const { return peer_; }
  // The shard (the pumping thread) this watcher belongs to.
  size_t shard() const { return shard_; }
  const std::string& connection() const { return connection_; }
  // The revision the client holds (last revision sent).
  Revision client_revision() const;
  // Metrics: the revision this watcher has looked at (nothing up to it is
  // still owed to the client beyond the write in flight); -1 before Start.
  Revision scanned_revision() const;

 private:
  struct ResetCursor {
    SnapshotPtr snapshot;
    v1::ResetReason reason = v1::RESET_REASON_UNSPECIFIED;
    size_t filter = 0;
    size_t prefix = 0;
    std::string after;  // last key sent in the current (filter, prefix)
  };
  struct Message;

  // Builds the next message into `out` (false: nothing due).
  bool NextMessage(absl::Time now, grpc::ByteBuffer* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginReset(v1::ResetReason reason, SnapshotPtr snapshot) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NextResetChunk(grpc::ByteBuffer* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool HasMoreReset(ResetCursor cursor) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CatchUpEveryRevision(grpc::ByteBuffer* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool CatchUpLatestState(grpc::ByteBuffer* out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool NetMessage(const SnapshotPtr& from, const SnapshotPtr& to, grpc::ByteBuffer* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Matches(std::string_view ns, std::string_view key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Matching runs of `record` appended to `message`; false if none matched.
  bool AddRevision(const LogRecord& record, Message* message) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  WatchHub* const hub_;
  const std::string peer_;
  WatchSink* const sink_;
  const size_t shard_;
  const std::string connection_;

  mutable Mutex mu_;
  bool active_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  WatchSpec spec_ ABSL_GUARDED_BY(mu_);  // normalized at Start
  Revision client_revision_ ABSL_GUARDED_BY(mu_) = 0;
  Revision scan_position_ ABSL_GUARDED_BY(mu_) = 0;
  SnapshotPtr held_ ABSL_GUARDED_BY(mu_);  // LATEST_STATE: the state at scan_position_
  std::optional<v1::ResetReason> reset_due_ ABSL_GUARDED_BY(mu_);
  std::optional<ResetCursor> reset_ ABSL_GUARDED_BY(mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool progress_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
  absl::Time last_send_ ABSL_GUARDED_BY(mu_);
  grpc::ByteBuffer in_flight_ ABSL_GUARDED_BY(mu_);  // the message being written
  Recheck recheck_ ABSL_GUARDED_BY(mu_);
};

class WatchHub : public CommitListener {
 public:
  // The snapshot at a retained revision (OUT_OF_RANGE otherwise): the engine's
  // SnapshotAt. Used when a LATEST_STATE watcher needs the state it holds.
  using SnapshotSource = std::function<absl::StatusOr<SnapshotPtr>(Revision)>;

  WatchHub(WatchHubOptions options, SnapshotSource snapshot_at);
  ~WatchHub() override;
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // CommitListener (engine observer).
  void OnCommitted(const SnapshotPtr& snapshot, const CommitRecord& record) override;
  void OnReloaded(const SnapshotPtr& snapshot) override;

  // Fills the log from the store's history below what it already holds, so a
  // watcher resuming after a restart replays instead of resetting.
  absl::Status Preload(Store& store);

  // Admits a new stream from `peer` (RESOURCE_EXHAUSTED over the limits,
  // UNAVAILABLE after Shutdown) and registers it. Every admitted watcher must
  // be Closed exactly once.
  // With external pumps, `shard` is the shard of the thread that will pump
  // the stream (and take its write completions); otherwise it is ignored and
  // the hub picks one by connection.
  absl::StatusOr<std::shared_ptr<Watcher>> Open(std::string peer, WatchSink* sink,
                                                size_t shard = 0);
  // Unregisters a watcher whose stream is done and releases its slot.
  void Close(const std::shared_ptr<Watcher>& watcher);

  // Re-checks every open stream's access (Watcher::RunRecheck) and ends those
  // that lost it. Returns the number of streams ended. Any thread.
  size_t RecheckAll();

  // Hands pumping to the caller's threads instead of the hub's dispatchers.
  // The hub then has `shards` shards; after each commit or reload it calls
  // wake(shard) for every shard (on the committing thread, never under the
  // hub's lock, never after Shutdown returned), and the owner of a shard
  // calls PumpShard after each wake and at least every pump_tick() (progress
  // on idle streams). Call before the first Open, at most once.
  //
  // Why: a write started on the thread that also drains its completion needs
  // no wake-up between threads to finish. With the gRPC service's queue
  // threads as pumps, one delivery costs one socket write and no futex.
  void SetExternalPumps(size_t shards, std::function<void(size_t shard)> wake);
  // Pumps every watcher of `shard` (external pumps only).
  void PumpShard(size_t shard);
  // How often a pumping thread must pump without a wake.
  absl::Duration pump_tick() const;

  // Ends every stream with UNAVAILABLE, refuses new ones and stops the
  // dispatchers. External pumps get one last wake of every shard, after
  // shutting_down() turned true and before Shutdown returns, then no more:
  // their owner ends what the hub does not know (a WatchMany stream with no
  // watch open). Idempotent.
  void Shutdown();
  // True once Shutdown started. Any thread, no lock.
  bool shutting_down() const { return shutting_down_.load(std::memory_order_acquire); }

  // Open streams (admitted and not yet closed), for status pages.
  const std::atomic<int64_t>& open_streams() const { return open_streams_; }

  // --- metrics (service/metrics) ---
  // Resets started since the hub was created, for one reason.
  uint64_t resets(v1::ResetReason reason) const;
  // For each started watcher: how many revisions it is behind the head.
  std::vector<int64_t> WatcherLags() const;
  // --- end metrics ---

  const WatchHubOptions& options() const { return options_; }
  Revision head_revision() const;
  // Oldest revision in the log (head + 1 when the log is empty).
  Revision oldest_revision() const;
  size_t log_bytes() const;

 private:
  friend class Watcher;

  // What a watcher reads of the hub in one step.
  struct View {
    SnapshotPtr head;  // never null once the engine started
    Revision oldest = 1;
    Revision reloaded_at = 0;
  };
  View GetView() const;
  absl::StatusOr<SnapshotPtr> SnapshotAt(Revision revision) const {
    // A watcher holding revision 0 holds nothing. The engine reads revision 0
    // as "current" (as the read RPCs do), which here would turn "everything
    // since the start" into an empty difference.
    if (revision == 0) return Snapshot::Empty();
    if (!snapshot_at_) return absl::OutOfRangeError("no snapshot source");
    return snapshot_at_(revision);
  }
  // Records with revisions in [from, to] (clamped to the log), oldest first,
  // at most `max` of them.
  std::vector<std::shared_ptr<const LogRecord>> Records(Revision from, Revision to,
                                                        size_t max) const;
  void AppendLocked(std::shared_ptr<const LogRecord> record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TrimLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchLoop(size_t shard);
  void StartDispatchersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Lets the shards' pumps know that something is due.
  void WakePumps();
  std::vector<std::shared_ptr<Watcher>> ShardWatchers(size_t shard) const;

  const WatchHubOptions options_;
  const SnapshotSource snapshot_at_;
  std::atomic<int64_t> open_streams_{0};
  std::array<std::atomic<uint64_t>, 8> resets_{};  // by v1::ResetReason

  mutable Mutex mu_;
  CondVar wake_;
  SnapshotPtr head_ ABSL_GUARDED_BY(mu_);
  Revision reloaded_at_ ABSL_GUARDED_BY(mu_) = 0;
  int reloads_ ABSL_GUARDED_BY(mu_) = 0;
  std::deque<std::shared_ptr<const LogRecord>> log_ ABSL_GUARDED_BY(mu_);
  size_t log_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t commits_seen_ ABSL_GUARDED_BY(mu_) = 0;
  // Open watchers, one set per shard (pumping thread).
  std::vector<absl::flat_hash_set<std::shared_ptr<Watcher>>> shards_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> per_peer_ ABSL_GUARDED_BY(mu_);
  struct Connection {
    size_t shard = 0;  // its dispatcher (without external pumps)
    int64_t streams = 0;
  };
  absl::flat_hash_map<std::string, Connection> connections_ ABSL_GUARDED_BY(mu_);
  // Set under mu_ (Open and the dispatchers read it there); atomic so that
  // shutting_down() needs no lock.
  std::atomic<bool> shutting_down_{false};
  // Started with the first Open unless the pumps are external.
  std::vector<std::thread> dispatchers_ ABSL_GUARDED_BY(mu_);
  bool external_pumps_ ABSL_GUARDED_BY(mu_) = false;

  // Held while calling the external wake, so Shutdown can promise that no
  // wake runs after it returns (the pumps' owner may then go away).
  Mutex wake_mu_;
  std::function<void(size_t)> external_wake_ ABSL_GUARDED_BY(wake_mu_);
  size_t external_shards_ ABSL_GUARDED_BY(wake_mu_) = 0;
};

// Host part of a gRPC peer string ("ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1").
std::string PeerHost(std::string_view peer);

}  // namespace snapconf
