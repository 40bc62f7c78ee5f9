// service/revision_waiters.h
//
// Lets a call wait, without holding a thread, until the published snapshot
// reaches a revision (read-your-writes with min_revision). Each callback runs
// exactly once: with OK once the revision is published, DEADLINE_EXCEEDED at
// its deadline, or UNAVAILABLE at shutdown. Callbacks run on the thread that
// advanced the revision, on the deadline thread, or inline in Await when the
// revision is already there; they must not block.
//
// Thread-safe.
//
//   waiters.Await(req.min_revision(), deadline, [reactor](absl::Status s) { ... });
//   waiters.Advance(record.revision);   // from the commit listener
#pragma once

#include <cstdint>
#include <map>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace snapconf {

class RevisionWaiters {
 public:
  using Callback = absl::AnyInvocable<void(absl::Status) &&>;

  explicit RevisionWaiters(int64_t initial_revision);
  ~RevisionWaiters();
  RevisionWaiters(const RevisionWaiters&) = delete;
  RevisionWaiters& operator=(const RevisionWaiters&) = delete;

  void Await(int64_t revision, absl::Time deadline, Callback callback);
  void Advance(int64_t revision);
  // Fails every waiter with UNAVAILABLE and every later Await too.
  void Shutdown();

 private:
  struct Waiter {
    int64_t revision;
    absl::Time deadline;
    Callback callback;
  };
  void DeadlineLoop();

  Mutex mu_;
  CondVar cv_;
  int64_t revision_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Keyed by (revision, id) so Advance pops a prefix.
  std::map<std::pair<int64_t, uint64_t>, Waiter> by_revision_ ABSL_GUARDED_BY(mu_);
  std::thread deadline_thread_;
};

}  // namespace snapconf
