#include "service/revision_waiters.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace snapconf {

RevisionWaiters::RevisionWaiters(int64_t initial_revision) : revision_(initial_revision) {
  deadline_thread_ = std::thread([this] { DeadlineLoop(); });
}

RevisionWaiters::~RevisionWaiters() {
  Shutdown();
  deadline_thread_.join();
}

void RevisionWaiters::Await(int64_t revision, absl::Time deadline, Callback callback) {
  absl::Status immediate;
  {
    MutexLock lock(&mu_);
    if (shutdown_) {
      immediate = absl::UnavailableError("server is shutting down");
    } else if (revision <= revision_) {
      immediate = absl::OkStatus();
    } else if (deadline <= absl::Now()) {
      immediate = absl::DeadlineExceededError(
          absl::StrCat("revision ", revision, " not reached (at ", revision_, ")"));
    } else {
      by_revision_.emplace(std::make_pair(revision, next_id_++),
                           Waiter{revision, deadline, std::move(callback)});
      cv_.SignalAll();
      return;
    }
  }
  std::move(callback)(immediate);
}

void RevisionWaiters::Advance(int64_t revision) {
  std::vector<Callback> ready;
  {
    MutexLock lock(&mu_);
    if (revision <= revision_) return;
    revision_ = revision;
    auto end = by_revision_.upper_bound({revision, UINT64_MAX});
    for (auto it = by_revision_.begin(); it != end; ++it) {
      ready.push_back(std::move(it->second.callback));
    }
    by_revision_.erase(by_revision_.begin(), end);
  }
  for (auto& cb : ready) std::move(cb)(absl::OkStatus());
}

void RevisionWaiters::Shutdown() {
  std::vector<Callback> failed;
  {
    MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& [_, w] : by_revision_) failed.push_back(std::move(w.callback));
    by_revision_.clear();
    cv_.SignalAll();
  }
  for (auto& cb : failed) std::move(cb)(absl::UnavailableError("server is shutting down"));
}

void RevisionWaiters::DeadlineLoop() {
  MutexLock lock(&mu_);
  while (!shutdown_) {
    // Waiters are few and short-lived; a linear scan for the earliest
    // deadline keeps the structure to one map.
    absl::Time earliest = absl::InfiniteFuture();
    for (const auto& [_, w] : by_revision_) earliest = std::min(earliest, w.deadline);
    const absl::Time now = absl::Now();
    if (earliest > now) {
      const absl::Time wake = std::min(earliest, now + absl::Seconds(1));
      cv_.WaitUntil(&mu_, absl::ToChronoTime(wake));
      continue;
    }
    std::vector<std::pair<Callback, int64_t>> expired;
    for (auto it = by_revision_.begin(); it != by_revision_.end();) {
      if (it->second.deadline <= now) {
        expired.emplace_back(std::move(it->second.callback), it->second.revision);
        it = by_revision_.erase(it);
      } else {
        ++it;
      }
    }
    const int64_t at = revision_;
    mu_.Unlock();
    for (auto& [cb, rev] : expired) {
      std::move(cb)(absl::DeadlineExceededError(
          absl::StrCat("revision ", rev, " not reached before the deadline (at ", at, ")")));
    }
    mu_.Lock();
  }
}

}  // namespace snapconf
