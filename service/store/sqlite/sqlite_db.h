// service/store/sqlite/sqlite_db.h
//
// Thin RAII wrappers over the SQLite C API for the SQLite store: a connection
// (Db) and a prepared statement (Statement), with errors turned into
// absl::Status. Internal to service/store/sqlite/.
//
// Thread safety: none. A Db and its statements are used by one thread at a
// time; the owner serializes access (connections are opened with
// SQLITE_OPEN_NOMUTEX because the store already does).
//
// Invariants: a Statement never outlives the Db it was prepared on. Blobs and
// text are bound with SQLITE_STATIC, so bound strings must stay alive until the
// statement is reset; an empty string binds a zero-length value, never NULL.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace snapconf::sqlite_internal {

// Maps a SQLite result code to a status. SQLITE_FULL is RESOURCE_EXHAUSTED
// (disk full: the only failure a writer may survive); corruption is DATA_LOSS;
// I/O errors are UNAVAILABLE; everything else is INTERNAL.
absl::Status ErrorStatus(sqlite3* db, int rc, absl::string_view doing);

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
    other.stmt_ = nullptr;
  }
  Statement& operator=(Statement&& other) noexcept {
    if (this != &other) {
      sqlite3_finalize(stmt_);
      db_ = other.db_;
      stmt_ = other.stmt_;
      other.stmt_ = nullptr;
    }
    return *this;
  }

  void BindBlob(int index, std::string_view bytes) {
    sqlite3_bind_blob64(stmt_, index, bytes.empty() ? "" : bytes.data(), bytes.size(),
                        SQLITE_STATIC);
  }
  void BindText(int index, std::string_view text) {
    sqlite3_bind_text64(stmt_, index, text.empty() ? "" : text.data(), text.size(), SQLITE_STATIC,
                        SQLITE_UTF8);
  }
  void BindInt(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }
  void BindNull(int index) { sqlite3_bind_null(stmt_, index); }

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  // Steps once and expects SQLITE_DONE; resets the statement either way.
  absl::Status Run(absl::string_view doing);
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  bool IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string Blob(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), size);
  }
  std::string Text(int column) const {
    const unsigned char* data = sqlite3_column_text(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    return data == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(data), size);
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// How a connection is opened. vfs and synchronous are test hooks (see
// SqliteStoreOptions); the defaults are what production uses.
struct DbOptions {
  int busy_timeout_ms = 5000;
  std::string vfs;                   // empty: SQLite's default VFS
  std::string synchronous = "FULL";  // "FULL" or "NORMAL"
};

class Db {
 public:
  // Opens (creating when missing) `path` read-write and configures the
  // connection: extended result codes, busy timeout, journal_mode=WAL,
  // synchronous (FULL unless a test asks otherwise), foreign_keys=ON, each read
  // back to verify it took. A file that is not a database answers DATA_LOSS.
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::filesystem::path& path,
                                                  const DbOptions& options);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  sqlite3* get() const { return db_; }
  const std::filesystem::path& path() const { return path_; }

  absl::StatusOr<Statement> Prepare(absl::string_view sql);
  // Runs one or more statements that return no rows of interest.
  absl::Status Exec(absl::string_view sql);
  // Runs `sql` and returns the first column of its first row as text ("" when
  // no row).
  absl::StatusOr<std::string> QueryText(absl::string_view sql);
  // True while a transaction is open.
  bool InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  Db(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}

  sqlite3* db_;
  std::filesystem::path path_;
};

}  // namespace snapconf::sqlite_internal
