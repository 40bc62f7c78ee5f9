#include "service/store/sqlite/sqlite_db.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace snapconf::sqlite_internal {

absl::Status ErrorStatus(sqlite3* db, int rc, absl::string_view doing) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  const std::string message = absl::StrCat(doing, ": ", detail, " (sqlite code ", rc, ")");
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(absl::StrCat("disk full: ", message));
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(message);
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status Statement::Run(absl::string_view doing) {
  const int rc = Step();
  Reset();
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) return ErrorStatus(db_, rc, doing);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::filesystem::path& path,
                                             const DbOptions& options) {
  // The PRAGMA value and what `PRAGMA synchronous` reads back for it.
  const char* sync_readback = nullptr;
  if (options.synchronous == "FULL") sync_readback = "2";
  if (options.synchronous == "NORMAL") sync_readback = "1";
  if (sync_readback == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported synchronous level \"", options.synchronous, "\""));
  }
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                                 options.vfs.empty() ? nullptr : options.vfs.c_str());
  // The handle exists even when opening failed; Db owns and closes it.
  std::unique_ptr<Db> db(new Db(raw, path));
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open database file ", path.string(), ": ", sqlite3_errstr(rc),
                     "; check that the data directory exists and is writable"));
  }
  sqlite3_extended_result_codes(raw, 1);
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);

  absl::StatusOr<std::string> mode = db->QueryText("PRAGMA journal_mode=WAL");
  if (!mode.ok()) {
    if (mode.status().code() == absl::StatusCode::kDataLoss) {
      return absl::DataLossError(absl::StrCat(
          path.string(), " is not a readable SQLite database (", mode.status().message(),
          "); restore it from a backup or move it aside to start empty"));
    }
    return mode.status();
  }
  if (*mode != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot switch ", path.string(), " to WAL journal mode (got \"", *mode,
                     "\"); the file system must support shared memory (not a network mount)"));
  }
  // cache_size: up to 64 MiB of pages per connection (allocated as used), so
  // the b-tree of a 100k-key store stays in memory instead of being re-read
  // through the OS on every group.
  if (absl::Status s =
          db->Exec(absl::StrCat("PRAGMA synchronous=", options.synchronous,
                                "; PRAGMA foreign_keys=ON; PRAGMA cache_size=-65536;"));
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> sync = db->QueryText("PRAGMA synchronous");
  if (!sync.ok()) return sync.status();
  if (*sync != sync_readback) {
    return absl::InternalError(absl::StrCat("PRAGMA synchronous=", options.synchronous,
                                            " did not take on ", path.string(), " (reads ", *sync,
                                            ")"));
  }
  absl::StatusOr<std::string> fk = db->QueryText("PRAGMA foreign_keys");
  if (!fk.ok()) return fk.status();
  if (*fk != "1") {
    return absl::InternalError(
        absl::StrCat("PRAGMA foreign_keys=ON did not take on ", path.string()));
  }
  return db;
}

Db::~Db() { sqlite3_close_v2(db_); }

absl::StatusOr<Statement> Db::Prepare(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return ErrorStatus(db_, rc, absl::StrCat("preparing \"", sql, "\""));
  }
  return Statement(db_, stmt);
}

absl::Status Db::Exec(absl::string_view sql) {
  const std::string copy(sql);
  const int rc = sqlite3_exec(db_, copy.c_str(), nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return ErrorStatus(db_, rc, absl::StrCat("running \"", sql, "\""));
  return absl::OkStatus();
}

absl::StatusOr<std::string> Db::QueryText(absl::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql.data(), static_cast<int>(sql.size()), &stmt, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return ErrorStatus(db_, rc, absl::StrCat("running \"", sql, "\""));
  }
  Statement statement(db_, stmt);
  rc = statement.Step();
  if (rc == SQLITE_DONE) return std::string();
  if (rc != SQLITE_ROW) return ErrorStatus(db_, rc, absl::StrCat("running \"", sql, "\""));
  return statement.Text(0);
}

}  // namespace snapconf::sqlite_internal
