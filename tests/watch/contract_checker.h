// tests/watch/contract_checker.h
//
// Checks what watchers received against the server's history and reports
// every breach of the watch contract (watch_service.proto, DESIGN.md §3):
//   filter        every change/entry delivered matches the watch's filters;
//   ordered       revisions strictly increase, also across resets and resumes;
//   unique        no revision is delivered twice;
//   atomic        each listed revision carries exactly its matching changes
//                 (compared with history), resets are not interleaved and a
//                 net message equals the net difference of the states;
//   reliable      every matching revision between what the client held and
//                 a message's revision is listed;
//   resumable     the first message after a resume at R continues from R-1;
//   bookmarkable  nothing at or below a progress revision arrives later;
//   reset_state   a reset's entries equal the state at its revision.
//
// History must hold every change set from revision 1 (read back with the
// History RPC after a run); states at any revision are rebuilt from it.
//
// Thread-safety: a ContractChecker is immutable after construction; Check may
// run on several threads. WatchTrace is not synchronized (one per watcher).
//
//   WatchTrace trace;
//   trace.Start(create);            // each (re)connect, with its request
//   trace.Receive(response);        // each message, in order
//   ContractChecker checker(history_records);
//   CheckResult r = checker.Check(trace);
//   EXPECT_THAT(r.findings, IsEmpty());
//   EXPECT_EQ(r.final_revision, head);
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "snapconf/v1/types.pb.h"
#include "snapconf/v1/watch_service.pb.h"

namespace snapconf::watch_testing {

enum class Violation {
  kFilter,
  kOrdered,
  kUnique,
  kAtomic,
  kReliable,
  kResumable,
  kBookmark,
  kResetState,
  kProtocol,
};
const char* ViolationName(Violation v);

struct Finding {
  Violation kind;
  std::string detail;
};

// One watcher's view: its stream starts and what each stream delivered.
struct WatchEvent {
  bool is_start = false;
  v1::WatchCreateRequest create;  // is_start
  v1::WatchResponse response;     // !is_start
};

class WatchTrace {
 public:
  void Start(const v1::WatchCreateRequest& create);
  void Receive(const v1::WatchResponse& response);
  const std::vector<WatchEvent>& events() const { return events_; }
  size_t size() const { return events_.size(); }

 private:
  std::vector<WatchEvent> events_;
};

struct CheckResult {
  std::vector<Finding> findings;
  // The revision the client held at the end (-1: unknown).
  int64_t final_revision = -1;
  // Messages of each kind, for test diagnostics.
  int resets = 0, changes = 0, net = 0, progress = 0;
};

class ContractChecker {
 public:
  // Every ChangeRecord from revision 1 to head, in any order.
  explicit ContractChecker(const std::vector<v1::ChangeRecord>& history);

  int64_t head() const { return head_; }
  CheckResult Check(const WatchTrace& trace) const;

  // Key -> entry at `revision` restricted to `create`'s filters.
  using State = std::map<std::pair<std::string, std::string>, v1::Entry>;
  State StateAt(int64_t revision, const v1::WatchCreateRequest& create) const;

 private:
  // Matching changes of `revision`, in (ns, key) order.
  std::vector<v1::Change> MatchingChanges(int64_t revision,
                                          const v1::WatchCreateRequest& create) const;

  int64_t head_ = 0;
  std::map<int64_t, v1::ChangeRecord> records_;
  // (ns, key) -> [(revision, entry after; absent = deleted)]
  std::map<std::pair<std::string, std::string>, std::vector<std::pair<int64_t, v1::Change>>>
      timeline_;
};

// True when (ns, key) is covered by `create`'s filters.
bool FilterMatches(const v1::WatchCreateRequest& create, const std::string& ns,
                   const std::string& key);

// Every retained change set, read back page by page with the History RPC:
// the ground truth a ContractChecker is built from.
absl::StatusOr<std::vector<v1::ChangeRecord>> ReadFullHistory(
    const std::shared_ptr<grpc::Channel>& channel);

}  // namespace snapconf::watch_testing
