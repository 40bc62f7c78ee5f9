#include "service/store/local_store.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace snapconf {
namespace {

// How long the idle writer sleeps before it checks retention by age again.
constexpr auto kIdleWakeUp = std::chrono::seconds(1);

// A copy of `status` that shares no state with it. absl::Status shares its
// message through a reference count kept inside Debian's Abseil, which is not
// built with ThreadSanitizer; handing each thread its own copy keeps TSan runs
// meaningful and costs one allocation on an error path.
absl::Status Detached(const absl::Status& status) {
  return absl::Status(status.code(), std::string(status.message()));
}

size_t RequestBytes(const WriteRequest& request) {
  size_t bytes = request.author.size() + request.message.size() + request.changes.ByteSize();
  for (const Compare& c : request.compares) bytes += c.ns.size() + c.key.size() + c.value.size();
  return bytes;
}

}  // namespace

bool OutsideRetention(const RetentionPolicy& policy, Revision head, absl::Time now,
                      Revision revision, absl::Time commit_time) {
  if (policy.max_records > 0 && head - revision >= policy.max_records) return true;
  if (policy.max_age != absl::InfiniteDuration() && commit_time < now - policy.max_age) {
    return true;
  }
  return false;
}

LocalStore::LocalStore(std::unique_ptr<StoreBackend> backend, LocalStoreOptions options)
    : backend_(std::move(backend)), options_(std::move(options)) {}

LocalStore::~LocalStore() { Close(); }

absl::StatusOr<SnapshotPtr> LocalStore::Start(CommitListener* listener) {
  {
    MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("store already started");
    if (stopping_) return absl::UnavailableError("store is closed");
  }
  absl::StatusOr<LoadedState> loaded = backend_->Load();
  if (!loaded.ok()) return loaded.status();
  listener_ = listener;
  committed_ = std::move(loaded->snapshot);
  ns_revisions_ = std::move(loaded->ns_revisions);
  head_revision_.store(committed_->revision(), std::memory_order_release);
  oldest_revision_.store(loaded->oldest_revision, std::memory_order_release);
  {
    MutexLock lock(&mu_);
    started_ = true;
  }
  writer_ = std::thread([this] { WriterLoop(); });
  return committed_;
}

absl::Status LocalStore::AdmissionStatus() const {
  if (!started_) return absl::UnavailableError("store not started");
  if (stopping_) return absl::UnavailableError("store is shutting down");
  return Detached(failure_);
}

absl::StatusOr<CommitResult> LocalStore::Commit(WriteRequest request) {
  Pending pending;
  pending.request = std::move(request);
  {
    MutexLock lock(&mu_);
    RETURN_IF_ERROR(AdmissionStatus());
    queue_.push_back(&pending);
    if (queue_.size() == 1) writer_cv_.Signal();
  }
  MutexLock lock(&pending.done_mu);
  while (!pending.done) pending.cv.Wait(&pending.done_mu);
  return std::move(pending.result);
}

void LocalStore::CommitAsync(WriteRequest request, CommitCallback done) {
  auto pending = std::make_unique<Pending>();
  pending->request = std::move(request);
  pending->callback = std::move(done);
  absl::Status refused;
  {
    MutexLock lock(&mu_);
    refused = AdmissionStatus();
    if (refused.ok()) {
      queue_.push_back(pending.release());
      if (queue_.size() == 1) writer_cv_.Signal();
      return;
    }
  }
  std::move(pending->callback)(std::move(refused));
}

void LocalStore::Complete(Pending* pending, absl::StatusOr<CommitResult> result) {
  if (!result.ok()) result = Detached(result.status());
  if (pending->callback) {
    // Async: the writer thread owns the request now; run the callback
    // without holding any lock.
    std::unique_ptr<Pending> owned(pending);
    std::move(owned->callback)(std::move(result));
    return;
  }
  MutexLock lock(&pending->done_mu);
  pending->result = std::move(result);
  pending->done = true;
  // Signal under the lock: once `done` is visible the waiter may return and
  // destroy `pending` (its mutex and condition variable included).
  pending->cv.Signal();
}

void LocalStore::WriterLoop() {
  for (;;) {
    std::vector<Pending*> group;
    {
      MutexLock lock(&mu_);
      if (queue_.empty() && !stopping_ && !compaction_pending_) {
        writer_cv_.WaitUntil(&mu_, std::chrono::steady_clock::now() + kIdleWakeUp);
        // Retention by age moves with the clock even without writes.
        if (queue_.empty()) compaction_pending_ = true;
      }
      if (queue_.empty() && stopping_) return;
      size_t bytes = 0;
      while (!queue_.empty() && group.size() < kMaxGroupRequests) {
        const size_t next = RequestBytes(queue_.front()->request);
        if (!group.empty() && bytes + next > kMaxGroupBytes) break;
        bytes += next;
        group.push_back(queue_.front());
        queue_.pop_front();
      }
    }
    if (!group.empty()) {
      ProcessGroup(std::move(group));
    }
    if (compaction_pending_) CompactStep();
  }
}

void LocalStore::ProcessGroup(std::vector<Pending*> group) {
  absl::Status failure;
  {
    MutexLock lock(&mu_);
    failure = Detached(failure_);
  }
  if (!failure.ok()) {
    for (Pending* p : group) Complete(p, failure);
    return;
  }

  // Working state: starts at the committed head and is discarded unless the
  // whole group persists.
  SnapshotPtr working = committed_;
  absl::flat_hash_map<std::string, Revision> ns_overlay;
  auto ns_revision = [&](const std::string& ns) -> Revision {
    if (auto it = ns_overlay.find(ns); it != ns_overlay.end()) return it->second;
    if (auto it = ns_revisions_.find(ns); it != ns_revisions_.end()) return it->second;
    return 0;
  };

  std::vector<Pending*> accepted;
  std::vector<CommitRecord> records;
  std::vector<SnapshotPtr> snapshots;
  std::vector<absl::Duration> builds;
  accepted.reserve(group.size());
  records.reserve(group.size());
  snapshots.reserve(group.size());
  const absl::Time now = options_.clock();

  for (Pending* p : group) {
    absl::Status check;
    for (size_t i = 0; i < p->request.compares.size() && check.ok(); ++i) {
      const Compare& c = p->request.compares[i];
      check = CheckCompare(*working, ns_revision(c.ns), c, i);
    }
    const Revision rev = working->revision() + 1;
    const absl::Time build_start = absl::Now();
    absl::StatusOr<Snapshot::Applied> applied = check.ok()
                                                    ? working->Apply(p->request.changes, rev)
                                                    : absl::StatusOr<Snapshot::Applied>(check);
    if (!applied.ok()) {
      {
        MutexLock lock(&stats_mu_);
        ++stats_.aborted;
      }
      Complete(p, applied.status());
      continue;
    }
    working = std::move(applied->snapshot);
    for (const EntryChange& change : applied->changes) ns_overlay[change.ns] = rev;
    CommitRecord record;
    record.revision = rev;
    record.commit_time = now;
    record.author = std::move(p->request.author);
    record.message = std::move(p->request.message);
    record.changes = std::move(applied->changes);
    records.push_back(std::move(record));
    snapshots.push_back(working);
    builds.push_back(absl::Now() - build_start);
    accepted.push_back(p);
  }

  if (records.empty()) return;

  const absl::Time persist_start = absl::Now();
  const absl::Status persisted = backend_->Persist(records);
  const absl::Duration persist_time = absl::Now() - persist_start;

  if (!persisted.ok()) {
    absl::Status answer;
    if (persisted.code() == absl::StatusCode::kResourceExhausted) {
      // Disk full: the transaction rolled back cleanly; the next group may
      // succeed once space returns.
      answer =
          absl::ResourceExhaustedError(absl::StrCat("write path failed: ", persisted.message()));
    } else {
      answer = absl::UnavailableError(absl::StrCat("write path failed: ", persisted.message()));
      MarkFailed(answer);
    }
    {
      MutexLock lock(&stats_mu_);
      stats_.failed += static_cast<int64_t>(accepted.size());
    }
    for (Pending* p : accepted) Complete(p, answer);
    return;
  }

  // Durable: publish in revision order, then answer the callers.
  committed_ = working;
  for (auto& [ns, rev] : ns_overlay) ns_revisions_[ns] = rev;
  head_revision_.store(committed_->revision(), std::memory_order_release);
  for (size_t i = 0; i < records.size(); ++i) {
    if (listener_ != nullptr) listener_->OnCommitted(snapshots[i], records[i]);
  }
  {
    // Counted before anyone is answered, so a caller that saw its result also
    // sees it in stats().
    MutexLock lock(&stats_mu_);
    const auto size = static_cast<int64_t>(records.size());
    ++stats_.groups;
    stats_.commits += size;
    stats_.max_group_size = std::max(stats_.max_group_size, size);
    if (size > 1) ++stats_.multi_request_groups;
    stats_.persist_time += persist_time;
  }
  if (options_.on_group_persisted) options_.on_group_persisted(builds, persist_time);
  for (size_t i = 0; i < records.size(); ++i) {
    CommitResult result;
    result.revision = records[i].revision;
    result.changes = std::move(records[i].changes);
    Complete(accepted[i], std::move(result));
  }
  compaction_pending_ = true;
}

void LocalStore::CompactStep() {
  {
    MutexLock lock(&mu_);
    if (!failure_.ok()) {
      compaction_pending_ = false;
      return;
    }
  }
  const Revision head = committed_->revision();
  if (oldest_revision_.load(std::memory_order_relaxed) > head) {
    compaction_pending_ = false;
    return;
  }
  absl::StatusOr<Revision> oldest =
      backend_->CompactHistory(options_.retention, head, options_.clock(), kCompactionBatch);
  if (!oldest.ok()) {
    // A full disk may block even deletions; try again after the next group.
    if (oldest.status().code() != absl::StatusCode::kResourceExhausted) {
      MarkFailed(absl::UnavailableError(
          absl::StrCat("write path failed: compacting history: ", oldest.status().message())));
    }
    compaction_pending_ = false;
    return;
  }
  const Revision before = oldest_revision_.exchange(*oldest, std::memory_order_acq_rel);
  // A full batch means more may be waiting; keep going between groups.
  compaction_pending_ = *oldest - before >= static_cast<Revision>(kCompactionBatch);
}

void LocalStore::MarkFailed(const absl::Status& cause) {
  MutexLock lock(&mu_);
  if (failure_.ok()) {
    failure_ = absl::UnavailableError(
        absl::StrCat(cause.message(), "; writes are refused until the server restarts"));
  }
}

absl::StatusOr<std::vector<CommitRecord>> LocalStore::ReadHistory(const HistoryQuery& query) {
  if (!query.key.empty() && query.ns.empty()) {
    return absl::InvalidArgumentError("history query names a key without its namespace");
  }
  const Revision head = head_revision();
  const Revision oldest = oldest_revision();
  if (query.from_revision < 0 || query.to_revision < 0) {
    return absl::InvalidArgumentError("history revisions must not be negative");
  }
  if (query.from_revision != 0 && query.from_revision < oldest) {
    return absl::OutOfRangeError(absl::StrCat("revision ", query.from_revision,
                                              " is compacted; oldest retained is ", oldest));
  }
  if (query.to_revision != 0 && query.to_revision < oldest) {
    return absl::OutOfRangeError(
        absl::StrCat("revision ", query.to_revision, " is compacted; oldest retained is ", oldest));
  }
  if (query.from_revision > head || query.to_revision > head) {
    return absl::OutOfRangeError(absl::StrCat("revision ",
                                              std::max(query.from_revision, query.to_revision),
                                              " is in the future; head is ", head));
  }
  HistoryRange range;
  range.ns = query.ns;
  range.key = query.key;
  range.from = query.from_revision == 0 ? oldest : query.from_revision;
  range.to = query.to_revision == 0 ? head : query.to_revision;
  if (query.from_revision != 0 && query.to_revision != 0 && range.from > range.to) {
    return absl::InvalidArgumentError("history query has from_revision after to_revision");
  }
  range.limit = query.limit == 0 ? HistoryQuery{}.limit : query.limit;
  if (range.from > range.to) return std::vector<CommitRecord>{};
  {
    MutexLock lock(&mu_);
    if (!started_) return absl::UnavailableError("store not started");
    if (closed_) return absl::UnavailableError("store is closed");
    ++active_readers_;
  }
  absl::StatusOr<std::vector<CommitRecord>> records = backend_->ReadHistory(range);
  MutexLock lock(&mu_);
  if (--active_readers_ == 0) readers_cv_.SignalAll();
  return records;
}

Revision LocalStore::oldest_revision() const {
  return oldest_revision_.load(std::memory_order_acquire);
}

absl::Status LocalStore::Health() const {
  MutexLock lock(&mu_);
  if (!failure_.ok()) return Detached(failure_);
  if (stopping_) return absl::UnavailableError("store is shutting down");
  if (!started_) return absl::UnavailableError("store not started");
  return absl::OkStatus();
}

std::string_view LocalStore::kind() const { return backend_->kind(); }

void LocalStore::Close() {
  {
    MutexLock lock(&mu_);
    if (closed_) return;
    stopping_ = true;
    writer_cv_.Signal();
  }
  // The writer drains what is queued before it exits.
  if (writer_.joinable()) writer_.join();
  {
    // Readers that got in before closed_ finish before the medium goes away.
    MutexLock lock(&mu_);
    closed_ = true;
    while (active_readers_ > 0) readers_cv_.Wait(&mu_);
  }
  backend_->Close();
}

StoreStats LocalStore::stats() const {
  MutexLock lock(&stats_mu_);
  return stats_;
}

}  // namespace snapconf
