#include "service/store/memory/memory_store.h"

#include <deque>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "common/mutex.h"

namespace snapconf {
namespace {

class MemoryBackend final : public StoreBackend {
 public:
  std::string_view kind() const override { return "memory"; }

  absl::StatusOr<LoadedState> Load() override {
    LoadedState state;
    state.snapshot = Snapshot::Empty();
    state.oldest_revision = 1;
    return state;
  }

  absl::Status Persist(absl::Span<const CommitRecord> group) override {
    MutexLock lock(&mu_);
    if (!fail_next_.ok()) return std::exchange(fail_next_, absl::OkStatus());
    history_.insert(history_.end(), group.begin(), group.end());
    return absl::OkStatus();
  }

  absl::StatusOr<Revision> CompactHistory(const RetentionPolicy& policy, Revision head,
                                          absl::Time now, size_t max_batch) override {
    MutexLock lock(&mu_);
    size_t removed = 0;
    while (!history_.empty() && removed < max_batch &&
           OutsideRetention(policy, head, now, history_.front().revision,
                            history_.front().commit_time)) {
      history_.pop_front();
      ++removed;
    }
    return history_.empty() ? head + 1 : history_.front().revision;
  }

  absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryRange& range) override {
    MutexLock lock(&mu_);
    std::vector<CommitRecord> records;
    for (auto it = history_.rbegin(); it != history_.rend() && records.size() < range.limit; ++it) {
      if (it->revision > range.to) continue;
      if (it->revision < range.from) break;
      if (range.ns.empty()) {
        records.push_back(*it);
        continue;
      }
      CommitRecord record;
      for (const EntryChange& change : it->changes) {
        if (change.ns == range.ns && (range.key.empty() || change.key == range.key)) {
          record.changes.push_back(change);
        }
      }
      if (record.changes.empty()) continue;
      record.revision = it->revision;
      record.commit_time = it->commit_time;
      record.author = it->author;
      record.message = it->message;
      records.push_back(std::move(record));
    }
    return records;
  }

  void Close() override {}

  void FailNextPersist(absl::Status status) {
    MutexLock lock(&mu_);
    fail_next_ = std::move(status);
  }

 private:
  Mutex mu_;
  std::deque<CommitRecord> history_ ABSL_GUARDED_BY(mu_);  // ascending revisions
  absl::Status fail_next_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

MemoryStore::MemoryStore(std::unique_ptr<StoreBackend> backend, LocalStoreOptions options)
    : LocalStore(std::move(backend), std::move(options)) {}

void MemoryStore::FailNextPersistForTest(absl::Status status) {
  static_cast<MemoryBackend*>(backend_for_test())->FailNextPersist(std::move(status));
}

std::unique_ptr<MemoryStore> NewMemoryStore(MemoryStoreOptions options) {
  LocalStoreOptions local;
  local.retention = options.retention;
  local.clock = std::move(options.clock);
  return std::make_unique<MemoryStore>(std::make_unique<MemoryBackend>(), std::move(local));
}

}  // namespace snapconf
