#include "service/engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace snapconf {
namespace {

constexpr size_t kRebuiltSnapshots = 8;
constexpr int kRollbackAttempts = 3;

}  // namespace

Engine::Engine(std::unique_ptr<Store> store, EngineOptions options)
    : options_(options), store_(std::move(store)) {}

Engine::~Engine() { Stop(); }

absl::Status Engine::Start() {
  publisher_ = std::make_unique<Publisher>(Snapshot::Empty());
  waiters_ = std::make_unique<RevisionWaiters>(0);
  absl::StatusOr<SnapshotPtr> head = store_->Start(this);
  if (head.ok()) Install(*head);
  {
    MutexLock lock(&install_mu_);
    head_installed_.store(true, std::memory_order_release);
  }
  install_cv_.SignalAll();
  return head.status();
}

void Engine::Stop() {
  if (waiters_) waiters_->Shutdown();
  if (store_) store_->Close();
}

Revision Engine::oldest_readable_revision() const {
  // The state at R is the head with every later change undone, so R is
  // readable while history still holds R + 1.
  return std::max<Revision>(0, store_->oldest_revision() - 1);
}

void Engine::RememberLocked(const SnapshotPtr& snapshot) {
  if (!recent_.empty() && recent_.back()->revision() >= snapshot->revision()) recent_.clear();
  recent_.push_back(snapshot);
  while (recent_.size() > std::max<size_t>(1, options_.recent_snapshots)) recent_.pop_front();
}

void Engine::OnCommitted(const SnapshotPtr& snapshot, const CommitRecord& record) {
  AwaitHeadInstalled();
  publisher_->Publish(snapshot);
  {
    MutexLock lock(&mu_);
    RememberLocked(snapshot);
  }
  if (observer_ != nullptr) observer_->OnCommitted(snapshot, record);
  waiters_->Advance(snapshot->revision());
}

void Engine::OnReloaded(const SnapshotPtr& snapshot) {
  AwaitHeadInstalled();
  Install(snapshot);
}

void Engine::AwaitHeadInstalled() {
  if (head_installed_.load(std::memory_order_acquire)) return;
  MutexLock lock(&install_mu_);
  while (!head_installed_.load(std::memory_order_acquire)) install_cv_.Wait(&install_mu_);
}

void Engine::Install(const SnapshotPtr& snapshot) {
  publisher_->Publish(snapshot);
  {
    MutexLock lock(&mu_);
    recent_.clear();
    rebuilt_.clear();
    recent_.push_back(snapshot);
  }
  if (observer_ != nullptr) observer_->OnReloaded(snapshot);
  waiters_->Advance(snapshot->revision());
}

absl::StatusOr<SnapshotPtr> Engine::SnapshotAt(Revision revision) {
  SnapshotPtr head = publisher_->Pin();
  if (revision == 0 || revision == head->revision()) return head;
  if (revision > head->revision()) {
    return absl::OutOfRangeError(absl::StrCat(
        "revision ", revision, " is in the future (current revision is ", head->revision(), ")"));
  }
  if (revision < 0 || revision < oldest_readable_revision()) {
    return absl::OutOfRangeError(absl::StrCat("revision ", revision,
                                              " is older than retained history (oldest is ",
                                              oldest_readable_revision(), ")"));
  }
  {
    MutexLock lock(&mu_);
    if (!recent_.empty() && revision >= recent_.front()->revision() &&
        revision <= recent_.back()->revision()) {
      // recent_ holds every committed revision in its range, but the numbers
      // may skip (etcd): a skipped revision has the state of the one before.
      auto it =
          std::upper_bound(recent_.begin(), recent_.end(), revision,
                           [](Revision rev, const SnapshotPtr& s) { return rev < s->revision(); });
      const SnapshotPtr& found = *(it - 1);
      if (found->revision() == revision) return found;
      return found->Restore({}, revision);
    }
    for (const SnapshotPtr& s : rebuilt_) {
      if (s->revision() == revision) return s;
    }
  }
  ASSIGN_OR_RETURN(SnapshotPtr rebuilt, Reconstruct(head, revision));
  MutexLock lock(&mu_);
  rebuilt_.push_back(rebuilt);
  if (rebuilt_.size() > kRebuiltSnapshots) rebuilt_.pop_front();
  return rebuilt;
}

absl::StatusOr<SnapshotPtr> Engine::Reconstruct(const SnapshotPtr& head, Revision revision) {
  // Undo every change after `revision`, newest first, starting from the
  // closest snapshot we hold so the work is proportional to what changed.
  SnapshotPtr base = head;
  {
    MutexLock lock(&mu_);
    if (!recent_.empty() && recent_.front()->revision() > revision &&
        recent_.front()->revision() <= head->revision()) {
      base = recent_.front();
    }
  }
  HistoryQuery query;
  query.from_revision = revision + 1;
  query.to_revision = base->revision();
  query.limit = static_cast<size_t>(base->revision() - revision);
  // Revision numbers may skip (etcd), so the records cannot be counted; what
  // matters is that history still reached back past `revision` when read.
  ASSIGN_OR_RETURN(std::vector<CommitRecord> records, store_->ReadHistory(query));
  if (store_->oldest_revision() > revision + 1) {
    return absl::OutOfRangeError(
        absl::StrCat("revision ", revision, " is older than retained history"));
  }
  SnapshotPtr state = base;
  for (const CommitRecord& record : records) {  // newest first
    std::vector<RawEntry> undo;
    undo.reserve(record.changes.size());
    for (const EntryChange& c : record.changes) undo.push_back({c.ns, c.key, c.before});
    state = state->Restore(undo, record.revision - 1);
  }
  if (state->revision() != revision) state = state->Restore({}, revision);
  return state;
}

void Engine::AwaitRevision(Revision revision, absl::Time deadline, RevisionWaiters::Callback done) {
  if (revision <= publisher_->revision()) {
    std::move(done)(absl::OkStatus());
    return;
  }
  waiters_->Await(revision, std::min(deadline, absl::Now() + options_.max_revision_wait),
                  std::move(done));
}

void Engine::Write(WriteRequest request, WriteCallback done) {
  if (options_.on_write_done) {
    done = [observe = options_.on_write_done, start = absl::Now(),
            done = std::move(done)](absl::StatusOr<CommitResult> result) mutable {
      observe(absl::Now() - start);
      std::move(done)(std::move(result));
    };
  }
  store_->CommitAsync(std::move(request), std::move(done));
}

absl::StatusOr<Revision> Engine::NamespaceRevision(const Snapshot& current, const std::string& ns) {
  HistoryQuery query;
  query.ns = ns;
  query.to_revision = current.revision();
  query.limit = 1;
  ASSIGN_OR_RETURN(std::vector<CommitRecord> newest, store_->ReadHistory(query));
  if (!newest.empty()) return newest.front().revision;
  // The namespace's last change is older than retained history: its newest
  // key is the best evidence left.
  Revision latest = 0;
  current.Scan(ns, "", "", 0, [&](std::string_view, const EntryPtr& e) {
    latest = std::max(latest, e->mod_revision);
    return true;
  });
  return latest;
}

void Engine::Rollback(std::string ns, Revision revision,
                      std::optional<Revision> expected_ns_revision, std::string author,
                      std::string message, WriteCallback done) {
  RollbackAttempt(
      std::make_shared<const RollbackJob>(RollbackJob{std::move(ns), revision, expected_ns_revision,
                                                      std::move(author), std::move(message)}),
      /*attempt=*/1, std::move(done));
}

void Engine::RollbackAttempt(std::shared_ptr<const RollbackJob> job, int attempt,
                             WriteCallback done) {
  const std::string& ns = job->ns;
  absl::StatusOr<SnapshotPtr> target = SnapshotAt(job->revision);
  if (!target.ok()) {
    std::move(done)(target.status());
    return;
  }
  SnapshotPtr current = publisher_->Pin();
  // Entries that hold the target's value under a newer revision are already
  // restored: a rollback compares content, not metadata.
  std::vector<EntryChange> diff = Diff(*current, **target, ns);
  std::erase_if(diff, [](const EntryChange& c) {
    return c.before && c.after && c.before->value == c.after->value &&
           c.before->content_type == c.after->content_type;
  });
  if (diff.empty()) {
    if (job->expected_ns_revision.has_value()) {
      absl::StatusOr<Revision> actual = NamespaceRevision(*current, ns);
      if (!actual.ok()) {
        std::move(done)(actual.status());
        return;
      }
      if (*actual != *job->expected_ns_revision) {
        std::move(done)(
            absl::AbortedError(absl::StrCat("namespace ", ns, " was last changed at revision ",
                                            *actual, ", expected ", *job->expected_ns_revision)));
        return;
      }
    }
    CommitResult unchanged;
    unchanged.revision = current->revision();
    std::move(done)(std::move(unchanged));
    return;
  }
  WriteRequest request;
  request.author = job->author;
  request.message = job->message;
  if (job->expected_ns_revision.has_value()) {
    request.compares.push_back({.ns = ns,
                                .target = Compare::Target::kNamespaceRevision,
                                .number = *job->expected_ns_revision});
  }
  // The diff is only right against the state it was computed from: guard
  // every key it rewrites.
  for (const EntryChange& c : diff) {
    request.compares.push_back({.ns = c.ns,
                                .key = c.key,
                                .target = Compare::Target::kModRevision,
                                .number = c.before ? c.before->mod_revision : 0});
    if (c.after) {
      request.changes.Put(c.ns, c.key, c.after->value, c.after->content_type);
    } else {
      request.changes.Delete(c.ns, c.key);
    }
  }
  // Asynchronous, so no RPC thread waits for the disk. With a caller's guard
  // an ABORTED is the caller's to handle; without one it means a concurrent
  // write touched a key between the diff and the commit, and the diff is
  // computed again from the newer state.
  store_->CommitAsync(std::move(request), [this, job, attempt, done = std::move(done)](
                                              absl::StatusOr<CommitResult> result) mutable {
    if (result.ok() || !absl::IsAborted(result.status()) || attempt >= kRollbackAttempts ||
        job->expected_ns_revision.has_value()) {
      std::move(done)(std::move(result));
      return;
    }
    RollbackAttempt(job, attempt + 1, std::move(done));
  });
}

}  // namespace snapconf
