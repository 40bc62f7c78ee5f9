// service/store/sqlite/sqlite_store.h
//
// The single-node Store: one SQLite database file, <data_dir>/snapconf.db, in
// WAL mode with synchronous=FULL on every connection. Writes go through the
// LocalStore group-commit engine: one writer thread, one BEGIN IMMEDIATE ...
// COMMIT per group, and a write is acknowledged only after COMMIT returned
// SQLITE_OK. History reads use their own connections (WAL lets them run beside
// the writer). Schema, durability argument and error handling:
// docs/adr/002-sqlite-store.md.
//
// Open errors, each with a sentence that says what to do:
//   * FAILED_PRECONDITION: the data directory cannot be created or written,
//     the file was written by a newer format, or it is not a snapconf database.
//   * DATA_LOSS: the file is not a SQLite database or fails PRAGMA quick_check,
//     or its tables contradict each other (detected at Start()).
//
// Thread safety: as Store. OpenSqliteStore may be called from any thread; two
// stores must never open the same data directory at once.
//
//   SqliteStoreOptions options;
//   options.data_dir = "/var/lib/snapconf";
//   ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenSqliteStore(options));
//   ASSIGN_OR_RETURN(SnapshotPtr head, store->Start(&listener));
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/store/store.h"

namespace snapconf {

// The on-disk format this build writes (PRAGMA user_version). Older formats
// would be migrated at open; newer ones are refused.
inline constexpr int kSqliteFormatVersion = 1;

struct SqliteStoreOptions {
  std::filesystem::path data_dir;  // created when missing
  RetentionPolicy retention;
  // Time source for commit times and retention by age; tests inject one.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // How long a connection waits for a lock held by another connection (only
  // an outside tool, such as a backup, can hold one).
  absl::Duration busy_timeout = absl::Seconds(5);
  // Metrics hook of the group commit (LocalStoreOptions::on_group_persisted).
  std::function<void(absl::Span<const absl::Duration> builds, absl::Duration persist)>
      on_group_persisted;
  // Reliability tests only; snapconfd never sets these. The registered SQLite
  // VFS to open the files through (empty: SQLite's default), and the
  // synchronous level: "FULL" (what durability relies on) or "NORMAL", which a
  // power-loss test uses to prove that it can detect lost writes.
  std::string vfs_for_test;
  std::string synchronous_for_test = "FULL";
};

// Opens (creating when new) and checks the database; Start() loads it.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const SqliteStoreOptions& options);

// Heap bytes SQLite holds in this process, almost all of it the page caches
// of the store's connections (each grows as pages are used, up to 64 MiB).
// Reported apart from the rest of the server's memory, which it would
// otherwise seem to make grow with every byte written.
int64_t SqliteHeapBytes();

// Runs `PRAGMA <name>` on the store's write connection and returns the first
// column of the first row as text (e.g. "wal", "2"). `store` must come from
// OpenSqliteStore.
absl::StatusOr<std::string> SqlitePragmaForTest(Store* store, std::string_view name);

}  // namespace snapconf
