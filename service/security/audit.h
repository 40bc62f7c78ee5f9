// service/security/audit.h
//
// The audit log: every write, rollback and policy change, and every refused
// attempt at one, as one JSON object per line (snapconf.v1.AuditEvent in
// protobuf's JSON mapping) appended to a file that this node alone owns.
//
//   {"time":"2026-11-26T16:20:01.123456Z","identity":"ci/deployer",
//    "method":"/snapconf.v1.ConfigService/Put","namespaces":["payments/prod"],
//    "keys":["payments/prod/db.pool.max"],"old_revision":41,"new_revision":42,
//    "outcome":"OK"}
//
// Durability: Append() hands the whole line to the kernel with one write(2)
// on an O_APPEND descriptor before it returns, so a line is never
// interleaved with another and survives a crash of the process. It does not
// wait for the disk: a background thread calls fdatasync(2) at most
// `flush_interval` after a line was appended (and on rotation and Close).
// Power loss can therefore lose the lines of the last flush interval, and can
// leave a torn last line; Open() ends such a line so that later lines start
// clean, and List() skips every line that is not a whole event.
//
// Rotation: when a line would take the file past `max_bytes`, the file is
// synced and renamed to "<path>.1" (replacing the previous one) and a new
// file is started. List() reads both, newest first. A path that is not a
// regular file (a pipe, /dev/null) is appended to and never rotated.
//
// One process per file: two servers appending to one path would rotate it
// under each other.
//
// Thread safety: Append and List may be called from any thread. Appends are
// serialized by a mutex held for one write(2) (writes are not a read path);
// List opens the files itself and takes no lock.
//
//   ASSIGN_OR_RETURN(auto log, AuditLog::Open({.path = dir + "/audit.log"}));
//   log->Append(event);
//   ASSIGN_OR_RETURN(v1::ListAuditEventsResponse page, log->List({.page_size = 50}));
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "snapconf/v1/admin_service.pb.h"

namespace snapconf {

struct AuditLogOptions {
  std::string path;
  // Rotate before a line would take the file past this size; 0: never.
  int64_t max_bytes = 64 << 20;
  // Longest time between an append and its fdatasync.
  absl::Duration flush_interval = absl::Milliseconds(200);
};

struct AuditQuery {
  // 0: 100; at most 1000.
  int32_t page_size = 0;
  // From a previous page; empty: start with the newest event.
  std::string page_token;
  // Only events of this identity / touching this namespace, when set.
  std::string identity;
  std::string ns;
};

class AuditLog {
 public:
  // Opens (creating, mode 0600) the file and starts the flusher.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(AuditLogOptions options);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends one event (see the durability note above). An error means the
  // line was not written (e.g. a full disk); the caller reports it.
  absl::Status Append(const v1::AuditEvent& event) ABSL_LOCKS_EXCLUDED(mu_);

  // Events, newest first, one page. INVALID_ARGUMENT for a negative page
  // size or a page token that this log did not make; OUT_OF_RANGE when the
  // events a token points at were rotated away.
  absl::StatusOr<v1::ListAuditEventsResponse> List(const AuditQuery& query) const;

  // Syncs what was appended so far (the flusher does this by itself).
  absl::Status Flush() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return options_.path; }

 private:
  struct File;
  explicit AuditLog(AuditLogOptions options) : options_(std::move(options)) {}
  absl::Status RotateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FlushLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const AuditLogOptions options_;
  bool rotate_ = true;  // false for a path that is not a regular file
  Mutex mu_;
  CondVar wake_;
  std::shared_ptr<File> file_ ABSL_GUARDED_BY(mu_);
  int64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread flusher_;
};

// The line Append writes for `event` (ending in '\n').
std::string AuditLine(const v1::AuditEvent& event);

// The canonical name of a gRPC status code ("OK", "PERMISSION_DENIED", ...).
std::string StatusCodeName(int code);

// The current time as an AuditEvent timestamp.
void SetAuditTime(absl::Time t, v1::AuditEvent* event);

}  // namespace snapconf
