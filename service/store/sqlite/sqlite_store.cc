// The SQLite backend of LocalStore. Schema and rationale:
// docs/adr/002-sqlite-store.md.
#include "service/store/sqlite/sqlite_store.h"

#include <unistd.h>

#include <system_error>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/status_macros.h"
#include "service/store/local_store.h"
#include "service/store/sqlite/sqlite_db.h"

namespace snapconf {
namespace {

using sqlite_internal::Db;
using sqlite_internal::ErrorStatus;
using sqlite_internal::Statement;

// "snc1": marks the file as ours, so a foreign SQLite database is refused
// rather than written into.
constexpr int kApplicationId = 0x736e6331;

// Reader connections kept open between history reads.
constexpr size_t kMaxIdleReaders = 4;

// Keys and namespaces are BLOBs: arbitrary bytes are legal at this layer and
// BLOB comparison is plain memcmp, the same order as the snapshot's. STRICT
// tables refuse values of the wrong type instead of converting them.
constexpr absl::string_view kSchema = R"sql(
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  head_revision INTEGER NOT NULL,
  oldest_revision INTEGER NOT NULL
) STRICT;
INSERT INTO meta (id, head_revision, oldest_revision) VALUES (1, 0, 1);
CREATE TABLE kv (
  ns BLOB NOT NULL,
  key BLOB NOT NULL,
  value BLOB NOT NULL,
  content_type TEXT NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (ns, key)
) STRICT, WITHOUT ROWID;
CREATE TABLE namespaces (
  ns BLOB NOT NULL PRIMARY KEY,
  revision INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE revisions (
  rev INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  author TEXT NOT NULL,
  message TEXT NOT NULL
) STRICT;
CREATE TABLE changes (
  rev INTEGER NOT NULL REFERENCES revisions (rev),
  ns BLOB NOT NULL,
  key BLOB NOT NULL,
  before_value BLOB,
  before_content_type TEXT,
  before_create_rev INTEGER,
  before_mod_rev INTEGER,
  before_version INTEGER,
  after_value BLOB,
  after_content_type TEXT,
  after_create_rev INTEGER,
  after_mod_rev INTEGER,
  after_version INTEGER,
  PRIMARY KEY (rev, ns, key)
) STRICT, WITHOUT ROWID;
CREATE INDEX changes_by_key ON changes (ns, key, rev);
)sql";

// Columns of an entry image in `changes`, starting at `first`.
void BindImage(Statement& st, int first, const EntryPtr& entry) {
  if (entry == nullptr) {
    for (int i = 0; i < 5; ++i) st.BindNull(first + i);
    return;
  }
  st.BindBlob(first, entry->value);
  st.BindText(first + 1, entry->content_type);
  st.BindInt(first + 2, entry->create_revision);
  st.BindInt(first + 3, entry->mod_revision);
  st.BindInt(first + 4, entry->version);
}

EntryPtr ReadImage(const Statement& st, int first) {
  if (st.IsNull(first + 2)) return nullptr;
  auto entry = std::make_shared<Entry>();
  entry->value = st.Blob(first);
  entry->content_type = st.Text(first + 1);
  entry->create_revision = st.Int(first + 2);
  entry->mod_revision = st.Int(first + 3);
  entry->version = st.Int(first + 4);
  return entry;
}

constexpr absl::string_view kChangeColumns =
    "ns, key, before_value, before_content_type, before_create_rev, before_mod_rev, "
    "before_version, after_value, after_content_type, after_create_rev, after_mod_rev, "
    "after_version";

// Statements of one history-reading connection, prepared once.
struct Reader {
  std::unique_ptr<Db> db;
  Statement begin, commit;
  Statement revs_all, revs_ns, revs_key;           // ?1 from, ?2 to, ?3 limit, ?4 ns, ?5 key
  Statement revision;                              // ?1 rev
  Statement changes_all, changes_ns, changes_key;  // ?1 rev, ?2 ns, ?3 key
};

class SqliteBackend final : public StoreBackend {
 public:
  explicit SqliteBackend(SqliteStoreOptions options) : options_(std::move(options)) {}
  ~SqliteBackend() override { Close(); }

  absl::Status Open();

  std::string_view kind() const override { return "sqlite"; }
  absl::StatusOr<LoadedState> Load() override;
  absl::Status Persist(absl::Span<const CommitRecord> group) override;
  absl::StatusOr<Revision> CompactHistory(const RetentionPolicy& policy, Revision head,
                                          absl::Time now, size_t max_batch) override;
  absl::StatusOr<std::vector<CommitRecord>> ReadHistory(const HistoryRange& range) override;
  void Close() override;

  absl::StatusOr<std::string> PragmaForTest(std::string_view name);

 private:
  sqlite_internal::DbOptions db_options() const {
    sqlite_internal::DbOptions db;
    db.busy_timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.busy_timeout));
    db.vfs = options_.vfs_for_test;
    db.synchronous = options_.synchronous_for_test;
    return db;
  }
  absl::Status CheckFormat();
  absl::Status PrepareWriter() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back when it fails.
  template <typename Body>
  absl::Status InTransaction(absl::string_view doing, Body body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  absl::StatusOr<std::unique_ptr<Reader>> NewReader();
  absl::StatusOr<std::vector<CommitRecord>> ReadWith(Reader& reader, const HistoryRange& range);

  const SqliteStoreOptions options_;
  std::filesystem::path db_path_;

  // The write connection: the writer thread in Persist/CompactHistory, Open
  // and Load before it exists, and test hooks.
  Mutex write_mu_;
  std::unique_ptr<Db> db_ ABSL_GUARDED_BY(write_mu_);
  Statement begin_ ABSL_GUARDED_BY(write_mu_);
  Statement commit_ ABSL_GUARDED_BY(write_mu_);
  Statement rollback_ ABSL_GUARDED_BY(write_mu_);
  Statement insert_revision_ ABSL_GUARDED_BY(write_mu_);
  Statement insert_change_ ABSL_GUARDED_BY(write_mu_);
  Statement upsert_kv_ ABSL_GUARDED_BY(write_mu_);
  Statement delete_kv_ ABSL_GUARDED_BY(write_mu_);
  Statement upsert_ns_ ABSL_GUARDED_BY(write_mu_);
  Statement update_head_ ABSL_GUARDED_BY(write_mu_);
  Statement oldest_history_ ABSL_GUARDED_BY(write_mu_);
  Statement delete_changes_ ABSL_GUARDED_BY(write_mu_);
  Statement delete_revisions_ ABSL_GUARDED_BY(write_mu_);
  Statement update_oldest_ ABSL_GUARDED_BY(write_mu_);

  // Idle reader connections; a read takes one or opens a new one.
  Mutex readers_mu_;
  std::vector<std::unique_ptr<Reader>> idle_readers_ ABSL_GUARDED_BY(readers_mu_);
  bool closed_ ABSL_GUARDED_BY(readers_mu_) = false;
};

absl::Status SqliteBackend::Open() {
  const std::filesystem::path& dir = options_.data_dir;
  if (dir.empty()) return absl::InvalidArgumentError("SQLite store needs a data directory");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || !std::filesystem::is_directory(dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create data directory ", dir.string(), ": ",
                     ec ? ec.message() : "a file of that name exists"));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("data directory ", dir.string(),
                     " is not writable by this process; fix its owner or permissions"));
  }
  db_path_ = dir / "snapconf.db";
  MutexLock lock(&write_mu_);
  ASSIGN_OR_RETURN(db_, Db::Open(db_path_, db_options()));

  // quick_check reads every page (O(N), ~tens of ms at 100k keys): damage is
  // found at open, before the server starts answering, never skipped.
  ASSIGN_OR_RETURN(Statement check, db_->Prepare("PRAGMA quick_check"));
  const int rc = check.Step();
  if (rc != SQLITE_ROW) {
    absl::Status s = ErrorStatus(db_->get(), rc, "PRAGMA quick_check");
    return absl::DataLossError(absl::StrCat(db_path_.string(), " failed its integrity check (",
                                            s.message(), "); restore it from a backup"));
  }
  if (const std::string result = check.Text(0); result != "ok") {
    return absl::DataLossError(absl::StrCat(
        db_path_.string(), " failed its integrity check: ", result, "; restore it from a backup"));
  }
  check = Statement();

  absl::StatusOr<std::string> version = db_->QueryText("PRAGMA user_version");
  if (!version.ok()) return version.status();
  absl::StatusOr<std::string> app_id = db_->QueryText("PRAGMA application_id");
  if (!app_id.ok()) return app_id.status();
  absl::StatusOr<std::string> tables = db_->QueryText("SELECT count(*) FROM sqlite_schema");
  if (!tables.ok()) return tables.status();

  const int format = std::atoi(version->c_str());
  if (format == 0 && *tables == "0") {
    RETURN_IF_ERROR(db_->Exec(
        absl::StrCat("BEGIN IMMEDIATE;", kSchema, "PRAGMA application_id=", kApplicationId,
                     "; PRAGMA user_version=", kSqliteFormatVersion, "; COMMIT;")));
  } else if (std::atoi(app_id->c_str()) != kApplicationId) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path_.string(),
                     " is a SQLite database but not a snapconf one; point the server at "
                     "another data directory"));
  } else if (format > kSqliteFormatVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path_.string(), " has format version ", format, ", newer than version ",
                     kSqliteFormatVersion, " that this build understands; run a newer snapconfd"));
  } else if (format < 1) {
    return absl::FailedPreconditionError(
        absl::StrCat(db_path_.string(),
                     " has no snapconf format version; it was not written "
                     "by snapconfd"));
  }
  return PrepareWriter();
}

absl::Status SqliteBackend::PrepareWriter() {
  ASSIGN_OR_RETURN(begin_, db_->Prepare("BEGIN IMMEDIATE"));
  ASSIGN_OR_RETURN(commit_, db_->Prepare("COMMIT"));
  ASSIGN_OR_RETURN(rollback_, db_->Prepare("ROLLBACK"));
  ASSIGN_OR_RETURN(insert_revision_,
                   db_->Prepare("INSERT INTO revisions (rev, time_us, author, message) "
                                "VALUES (?1, ?2, ?3, ?4)"));
  ASSIGN_OR_RETURN(insert_change_,
                   db_->Prepare(absl::StrCat("INSERT INTO changes (rev, ", kChangeColumns,
                                             ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, "
                                             "?11, ?12, ?13)")));
  ASSIGN_OR_RETURN(
      upsert_kv_,
      db_->Prepare("INSERT INTO kv (ns, key, value, content_type, create_rev, mod_rev, version) "
                   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (ns, key) DO UPDATE SET "
                   "value = excluded.value, content_type = excluded.content_type, "
                   "create_rev = excluded.create_rev, mod_rev = excluded.mod_rev, "
                   "version = excluded.version"));
  ASSIGN_OR_RETURN(delete_kv_, db_->Prepare("DELETE FROM kv WHERE ns = ?1 AND key = ?2"));
  ASSIGN_OR_RETURN(
      upsert_ns_,
      db_->Prepare("INSERT INTO namespaces (ns, revision) VALUES (?1, ?2) ON CONFLICT (ns) "
                   "DO UPDATE SET revision = excluded.revision"));
  ASSIGN_OR_RETURN(update_head_, db_->Prepare("UPDATE meta SET head_revision = ?1 WHERE id = 1"));
  ASSIGN_OR_RETURN(oldest_history_,
                   db_->Prepare("SELECT rev, time_us FROM revisions ORDER BY rev LIMIT ?1"));
  ASSIGN_OR_RETURN(delete_changes_, db_->Prepare("DELETE FROM changes WHERE rev < ?1"));
  ASSIGN_OR_RETURN(delete_revisions_, db_->Prepare("DELETE FROM revisions WHERE rev < ?1"));
  ASSIGN_OR_RETURN(update_oldest_,
                   db_->Prepare("UPDATE meta SET oldest_revision = ?1 WHERE id = 1"));
  return absl::OkStatus();
}

absl::StatusOr<LoadedState> SqliteBackend::Load() {
  MutexLock lock(&write_mu_);
  if (db_ == nullptr) return absl::FailedPreconditionError("SQLite store is closed");
  // One read transaction: every query below sees the same state.
  RETURN_IF_ERROR(db_->Exec("BEGIN"));
  struct EndRead {
    Db* db;
    ~EndRead() { (void)db->Exec("COMMIT"); }
  } end_read{db_.get()};

  auto corrupt = [&](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat(db_path_.string(), " is inconsistent: ", what, "; restore it from a backup"));
  };
  LoadedState state;
  Revision head = 0;
  {
    ASSIGN_OR_RETURN(Statement st,
                     db_->Prepare("SELECT head_revision, oldest_revision FROM meta WHERE id = 1"));
    if (st.Step() != SQLITE_ROW) return corrupt("the meta row is missing");
    head = st.Int(0);
    state.oldest_revision = st.Int(1);
  }
  {
    ASSIGN_OR_RETURN(Statement st, db_->Prepare("SELECT min(rev), max(rev) FROM revisions"));
    if (st.Step() != SQLITE_ROW) return corrupt("cannot read the revision range");
    if (!st.IsNull(1)) {
      if (st.Int(1) != head) {
        return corrupt(absl::StrCat("head revision is ", head, " but history ends at ", st.Int(1)));
      }
      if (st.Int(0) != state.oldest_revision) {
        return corrupt(absl::StrCat("oldest revision is ", state.oldest_revision,
                                    " but history starts at ", st.Int(0)));
      }
    } else if (state.oldest_revision != head + 1) {
      return corrupt(absl::StrCat("history is empty but its oldest revision is ",
                                  state.oldest_revision, " (head ", head, ")"));
    }
  }
  {
    ASSIGN_OR_RETURN(Statement count, db_->Prepare("SELECT count(*) FROM kv"));
    const int64_t rows = count.Step() == SQLITE_ROW ? count.Int(0) : 0;
    ASSIGN_OR_RETURN(Statement st,
                     db_->Prepare("SELECT ns, key, value, content_type, create_rev, mod_rev, "
                                  "version FROM kv ORDER BY ns, key"));
    SnapshotBuilder builder;
    builder.Reserve(static_cast<size_t>(rows));
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      auto entry = std::make_shared<Entry>();
      entry->value = st.Blob(2);
      entry->content_type = st.Text(3);
      entry->create_revision = st.Int(4);
      entry->mod_revision = st.Int(5);
      entry->version = st.Int(6);
      if (entry->mod_revision > head || entry->create_revision > entry->mod_revision ||
          entry->version < 1) {
        return corrupt(absl::StrCat("an entry has mod_revision ", entry->mod_revision,
                                    ", create_revision ", entry->create_revision, ", version ",
                                    entry->version, " at head ", head));
      }
      builder.Add(st.Blob(0), st.Blob(1), std::move(entry));
    }
    if (rc != SQLITE_DONE) return ErrorStatus(db_->get(), rc, "loading current entries");
    state.snapshot = std::move(builder).Build(head);
  }
  {
    ASSIGN_OR_RETURN(Statement st, db_->Prepare("SELECT ns, revision FROM namespaces"));
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) state.ns_revisions[st.Blob(0)] = st.Int(1);
    if (rc != SQLITE_DONE) return ErrorStatus(db_->get(), rc, "loading namespace revisions");
  }
  return state;
}

template <typename Body>
absl::Status SqliteBackend::InTransaction(absl::string_view doing, Body body) {
  absl::Status status = begin_.Run(absl::StrCat("beginning ", doing));
  if (status.ok()) status = body();
  if (status.ok()) status = commit_.Run(absl::StrCat("committing ", doing));
  if (status.ok()) return status;
  // SQLite may already have rolled back (it does for some I/O and full-disk
  // errors); roll back whatever is still open. A failed rollback leaves the
  // connection in an unknown state: never report that as survivable.
  if (db_->InTransaction()) {
    if (absl::Status rb = rollback_.Run("rolling back"); !rb.ok()) {
      return absl::UnavailableError(
          absl::StrCat(status.message(), "; then rollback failed: ", rb.message()));
    }
  }
  return status;
}

absl::Status SqliteBackend::Persist(absl::Span<const CommitRecord> group) {
  MutexLock lock(&write_mu_);
  if (db_ == nullptr) return absl::FailedPreconditionError("SQLite store is closed");
  absl::flat_hash_map<absl::string_view, Revision> ns_revisions;
  return InTransaction("a commit group", [&]() -> absl::Status {
    for (const CommitRecord& record : group) {
      insert_revision_.BindInt(1, record.revision);
      insert_revision_.BindInt(2, absl::ToUnixMicros(record.commit_time));
      insert_revision_.BindText(3, record.author);
      insert_revision_.BindText(4, record.message);
      RETURN_IF_ERROR(insert_revision_.Run("recording a revision"));
      for (const EntryChange& change : record.changes) {
        insert_change_.BindInt(1, record.revision);
        insert_change_.BindBlob(2, change.ns);
        insert_change_.BindBlob(3, change.key);
        BindImage(insert_change_, 4, change.before);
        BindImage(insert_change_, 9, change.after);
        RETURN_IF_ERROR(insert_change_.Run("recording a change"));
        if (change.after != nullptr) {
          upsert_kv_.BindBlob(1, change.ns);
          upsert_kv_.BindBlob(2, change.key);
          upsert_kv_.BindBlob(3, change.after->value);
          upsert_kv_.BindText(4, change.after->content_type);
          upsert_kv_.BindInt(5, change.after->create_revision);
          upsert_kv_.BindInt(6, change.after->mod_revision);
          upsert_kv_.BindInt(7, change.after->version);
          RETURN_IF_ERROR(upsert_kv_.Run("writing an entry"));
        } else {
          delete_kv_.BindBlob(1, change.ns);
          delete_kv_.BindBlob(2, change.key);
          RETURN_IF_ERROR(delete_kv_.Run("deleting an entry"));
        }
        // The group's records are in revision order, so the last write wins.
        ns_revisions[change.ns] = record.revision;
      }
    }
    // One row per namespace per group, not per record: with many writers in
    // one namespace this saves a b-tree write per request.
    for (const auto& [ns, revision] : ns_revisions) {
      upsert_ns_.BindBlob(1, std::string_view(ns.data(), ns.size()));
      upsert_ns_.BindInt(2, revision);
      RETURN_IF_ERROR(upsert_ns_.Run("writing a namespace revision"));
    }
    update_head_.BindInt(1, group.back().revision);
    return update_head_.Run("writing the head revision");
  });
}

absl::StatusOr<Revision> SqliteBackend::CompactHistory(const RetentionPolicy& policy, Revision head,
                                                       absl::Time now, size_t max_batch) {
  MutexLock lock(&write_mu_);
  if (db_ == nullptr) return absl::FailedPreconditionError("SQLite store is closed");
  // Walk from the oldest record and stop at the first one retained, so the
  // usual case (nothing to do) reads one row.
  Revision keep_from = head + 1;
  Revision first = 0;
  oldest_history_.BindInt(1, static_cast<int64_t>(max_batch));
  int rc;
  size_t seen = 0;
  while ((rc = oldest_history_.Step()) == SQLITE_ROW) {
    const Revision rev = oldest_history_.Int(0);
    if (first == 0) first = rev;
    ++seen;
    if (!OutsideRetention(policy, head, now, rev, absl::FromUnixMicros(oldest_history_.Int(1)))) {
      keep_from = rev;
      break;
    }
    keep_from = rev + 1;
  }
  oldest_history_.Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    return ErrorStatus(db_->get(), rc, "reading the oldest history");
  }
  if (seen == 0) return head + 1;
  if (keep_from == first) return first;
  RETURN_IF_ERROR(InTransaction("history compaction", [&]() -> absl::Status {
    delete_changes_.BindInt(1, keep_from);
    RETURN_IF_ERROR(delete_changes_.Run("compacting changes"));
    delete_revisions_.BindInt(1, keep_from);
    RETURN_IF_ERROR(delete_revisions_.Run("compacting revisions"));
    update_oldest_.BindInt(1, keep_from);
    return update_oldest_.Run("writing the oldest revision");
  }));
  return keep_from;
}

absl::StatusOr<std::unique_ptr<Reader>> SqliteBackend::NewReader() {
  auto reader = std::make_unique<Reader>();
  ASSIGN_OR_RETURN(reader->db, Db::Open(db_path_, db_options()));
  Db& db = *reader->db;
  ASSIGN_OR_RETURN(reader->begin, db.Prepare("BEGIN"));
  ASSIGN_OR_RETURN(reader->commit, db.Prepare("COMMIT"));
  ASSIGN_OR_RETURN(reader->revs_all,
                   db.Prepare("SELECT rev FROM revisions WHERE rev BETWEEN ?1 AND ?2 "
                              "ORDER BY rev DESC LIMIT ?3"));
  ASSIGN_OR_RETURN(reader->revs_ns,
                   db.Prepare("SELECT DISTINCT rev FROM changes WHERE ns = ?4 AND rev "
                              "BETWEEN ?1 AND ?2 ORDER BY rev DESC LIMIT ?3"));
  ASSIGN_OR_RETURN(reader->revs_key,
                   db.Prepare("SELECT rev FROM changes WHERE ns = ?4 AND key = ?5 AND rev "
                              "BETWEEN ?1 AND ?2 ORDER BY rev DESC LIMIT ?3"));
  ASSIGN_OR_RETURN(reader->revision,
                   db.Prepare("SELECT time_us, author, message FROM revisions WHERE rev = ?1"));
  const std::string select =
      absl::StrCat("SELECT ", kChangeColumns, " FROM changes WHERE rev = ?1");
  ASSIGN_OR_RETURN(reader->changes_all, db.Prepare(absl::StrCat(select, " ORDER BY ns, key")));
  ASSIGN_OR_RETURN(reader->changes_ns,
                   db.Prepare(absl::StrCat(select, " AND ns = ?2 ORDER BY ns, key")));
  ASSIGN_OR_RETURN(reader->changes_key,
                   db.Prepare(absl::StrCat(select, " AND ns = ?2 AND key = ?3")));
  return reader;
}

absl::StatusOr<std::vector<CommitRecord>> SqliteBackend::ReadHistory(const HistoryRange& range) {
  std::unique_ptr<Reader> reader;
  {
    MutexLock lock(&readers_mu_);
    if (closed_) return absl::UnavailableError("SQLite store is closed");
    if (!idle_readers_.empty()) {
      reader = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
  }
  if (reader == nullptr) {
    ASSIGN_OR_RETURN(reader, NewReader());
  }
  absl::StatusOr<std::vector<CommitRecord>> records = ReadWith(*reader, range);
  if (reader->db->InTransaction()) (void)reader->db->Exec("ROLLBACK");
  MutexLock lock(&readers_mu_);
  if (records.ok() && !closed_ && idle_readers_.size() < kMaxIdleReaders) {
    idle_readers_.push_back(std::move(reader));
  }
  return records;
}

absl::StatusOr<std::vector<CommitRecord>> SqliteBackend::ReadWith(Reader& reader,
                                                                  const HistoryRange& range) {
  // One read transaction: the revision list and their rows come from the
  // same state even while the writer compacts.
  RETURN_IF_ERROR(reader.begin.Run("beginning a history read"));
  Statement& revs = !range.key.empty()  ? reader.revs_key
                    : !range.ns.empty() ? reader.revs_ns
                                        : reader.revs_all;
  Statement& changes = !range.key.empty()  ? reader.changes_key
                       : !range.ns.empty() ? reader.changes_ns
                                           : reader.changes_all;
  std::vector<Revision> selected;
  revs.BindInt(1, range.from);
  revs.BindInt(2, range.to);
  revs.BindInt(3, static_cast<int64_t>(range.limit));
  if (!range.ns.empty()) revs.BindBlob(4, range.ns);
  if (!range.key.empty()) revs.BindBlob(5, range.key);
  int rc;
  while ((rc = revs.Step()) == SQLITE_ROW) selected.push_back(revs.Int(0));
  revs.Reset();
  if (rc != SQLITE_DONE) return ErrorStatus(reader.db->get(), rc, "listing history");

  std::vector<CommitRecord> records;
  records.reserve(selected.size());
  for (Revision rev : selected) {
    CommitRecord record;
    record.revision = rev;
    reader.revision.BindInt(1, rev);
    rc = reader.revision.Step();
    if (rc == SQLITE_ROW) {
      record.commit_time = absl::FromUnixMicros(reader.revision.Int(0));
      record.author = reader.revision.Text(1);
      record.message = reader.revision.Text(2);
    }
    reader.revision.Reset();
    if (rc != SQLITE_ROW) {
      return rc == SQLITE_DONE ? absl::DataLossError(absl::StrCat(
                                     "history has changes for revision ", rev, " but no record"))
                               : ErrorStatus(reader.db->get(), rc, "reading a revision");
    }
    changes.BindInt(1, rev);
    if (!range.ns.empty()) changes.BindBlob(2, range.ns);
    if (!range.key.empty()) changes.BindBlob(3, range.key);
    while ((rc = changes.Step()) == SQLITE_ROW) {
      EntryChange change;
      change.ns = changes.Blob(0);
      change.key = changes.Blob(1);
      change.before = ReadImage(changes, 2);
      change.after = ReadImage(changes, 7);
      record.changes.push_back(std::move(change));
    }
    changes.Reset();
    if (rc != SQLITE_DONE) return ErrorStatus(reader.db->get(), rc, "reading changes");
    records.push_back(std::move(record));
  }
  RETURN_IF_ERROR(reader.commit.Run("ending a history read"));
  return records;
}

void SqliteBackend::Close() {
  {
    MutexLock lock(&readers_mu_);
    closed_ = true;
    idle_readers_.clear();
  }
  MutexLock lock(&write_mu_);
  // Statements first: a connection closes only once its statements are gone.
  for (Statement* st : {&begin_, &commit_, &rollback_, &insert_revision_, &insert_change_,
                        &upsert_kv_, &delete_kv_, &upsert_ns_, &update_head_, &oldest_history_,
                        &delete_changes_, &delete_revisions_, &update_oldest_}) {
    *st = Statement();
  }
  db_.reset();
}

absl::StatusOr<std::string> SqliteBackend::PragmaForTest(std::string_view name) {
  MutexLock lock(&write_mu_);
  if (db_ == nullptr) return absl::FailedPreconditionError("SQLite store is closed");
  return db_->QueryText(absl::StrCat("PRAGMA ", std::string(name)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const SqliteStoreOptions& options) {
  auto backend = std::make_unique<SqliteBackend>(options);
  RETURN_IF_ERROR(backend->Open());
  LocalStoreOptions local;
  local.retention = options.retention;
  local.clock = options.clock;
  local.on_group_persisted = options.on_group_persisted;
  return std::unique_ptr<Store>(std::make_unique<LocalStore>(std::move(backend), std::move(local)));
}

int64_t SqliteHeapBytes() { return sqlite3_memory_used(); }

absl::StatusOr<std::string> SqlitePragmaForTest(Store* store, std::string_view name) {
  auto* local = dynamic_cast<LocalStore*>(store);
  auto* backend =
      local != nullptr ? dynamic_cast<SqliteBackend*>(local->backend_for_test()) : nullptr;
  if (backend == nullptr) return absl::InvalidArgumentError("not a SQLite store");
  return backend->PragmaForTest(name);
}

}  // namespace snapconf
