// The SQLite store on real files: durability across reopen, connection
// settings, open errors, disk full, history and retention, start-up at 100k
// keys.
#include "service/store/sqlite/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <fstream>

#include "service/store/local_store.h"
#include "tests/store/store_test_util.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::Cmp;
using ::snapconf::testing::Delete;
using ::snapconf::testing::FakeClock;
using ::snapconf::testing::IsOk;
using ::snapconf::testing::Put;
using ::snapconf::testing::RecordingListener;
using ::snapconf::testing::SameState;
using ::snapconf::testing::StatusIs;
using ::snapconf::testing::TempDir;
using ::snapconf::testing::WaitFor;
using ::testing::HasSubstr;
using Op = Compare::Op;
using Target = Compare::Target;

// Runs one statement on the database file with a separate connection.
void RunSql(const std::filesystem::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
      << (error != nullptr ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

void ExpectSameHistory(const std::vector<CommitRecord>& a, const std::vector<CommitRecord>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].revision, b[i].revision);
    EXPECT_EQ(a[i].author, b[i].author);
    EXPECT_EQ(a[i].message, b[i].message);
    EXPECT_EQ(a[i].commit_time, b[i].commit_time);
    ASSERT_EQ(a[i].changes.size(), b[i].changes.size()) << "revision " << a[i].revision;
    for (size_t j = 0; j < a[i].changes.size(); ++j) {
      const EntryChange& x = a[i].changes[j];
      const EntryChange& y = b[i].changes[j];
      EXPECT_EQ(x.ns, y.ns);
      EXPECT_EQ(x.key, y.key);
      ASSERT_EQ(x.before == nullptr, y.before == nullptr);
      ASSERT_EQ(x.after == nullptr, y.after == nullptr);
      if (x.before != nullptr) {
        EXPECT_TRUE(SameEntry(*x.before, *y.before));
      }
      if (x.after != nullptr) {
        EXPECT_TRUE(SameEntry(*x.after, *y.after));
      }
    }
  }
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  SqliteStoreOptions Options() {
    SqliteStoreOptions options;
    options.data_dir = dir_.path() / "data";
    options.clock = clock_.AsFunction();
    options.retention = retention_;
    return options;
  }
  std::filesystem::path DbPath() { return dir_.path() / "data" / "snapconf.db"; }

  // Opens and starts the store at Options(), with a fresh listener.
  void Open() {
    listener_ = std::make_unique<RecordingListener>();
    ASSERT_OK_AND_ASSIGN(store_, OpenSqliteStore(Options()));
    ASSERT_OK_AND_ASSIGN(head_, store_->Start(listener_.get()));
  }
  void Reopen() {
    store_->Close();
    store_.reset();
    Open();
  }
  Revision Head() { return static_cast<LocalStore*>(store_.get())->head_revision(); }

  TempDir dir_;
  FakeClock clock_;
  RetentionPolicy retention_;
  std::unique_ptr<RecordingListener> listener_;
  std::unique_ptr<Store> store_;
  SnapshotPtr head_;
};

TEST_F(SqliteStoreTest, ConnectionUsesWalAndFullSync) {
  Open();
  EXPECT_EQ(store_->kind(), "sqlite");
  ASSERT_OK_AND_ASSIGN(std::string journal, SqlitePragmaForTest(store_.get(), "journal_mode"));
  EXPECT_EQ(journal, "wal");
  ASSERT_OK_AND_ASSIGN(std::string sync, SqlitePragmaForTest(store_.get(), "synchronous"));
  EXPECT_EQ(sync, "2");  // FULL
  ASSERT_OK_AND_ASSIGN(std::string fk, SqlitePragmaForTest(store_.get(), "foreign_keys"));
  EXPECT_EQ(fk, "1");
  ASSERT_OK_AND_ASSIGN(std::string version, SqlitePragmaForTest(store_.get(), "user_version"));
  EXPECT_EQ(version, std::to_string(kSqliteFormatVersion));
  EXPECT_TRUE(std::filesystem::exists(DbPath()));
}

TEST_F(SqliteStoreTest, ReopenRestoresStateAndHistory) {
  Open();
  EXPECT_EQ(head_->revision(), 0);
  ASSERT_THAT(store_->Commit(Put("payments/prod", "db.pool.max", "10")), IsOk());
  WriteRequest txn;
  txn.changes.Put("payments/prod", "db.pool.min", "", "");  // empty value is a value
  txn.changes.Put(std::string("bin\0ns", 6), std::string("k\0\xff", 3), std::string("\0\1", 2),
                  "application/octet-stream");
  txn.changes.Put("shared/flags", "f1", "{\"on\":true}", "application/json");
  txn.author = "alice";
  txn.message = "initial import";
  ASSERT_THAT(store_->Commit(std::move(txn)), IsOk());
  ASSERT_THAT(store_->Commit(Put("payments/prod", "db.pool.max", "12", "bob")), IsOk());
  ASSERT_THAT(store_->Commit(Delete("shared/flags", "f1")), IsOk());
  ASSERT_THAT(store_->Commit(WriteRequest{}), IsOk());  // empty change set
  clock_.Advance(absl::Seconds(3));
  ASSERT_THAT(store_->Commit(Put("shared/flags", "f2", "x")), IsOk());
  const SnapshotPtr before = listener_->last();
  ASSERT_EQ(before->revision(), 6);
  ASSERT_OK_AND_ASSIGN(auto history_before, store_->ReadHistory({}));
  ASSERT_EQ(history_before.size(), 6u);

  Reopen();
  EXPECT_EQ(head_->revision(), 6);
  EXPECT_EQ(Head(), 6);
  EXPECT_TRUE(SameState(*before, *head_));
  EXPECT_TRUE(head_->CheckInvariantsForTest());
  const Entry* max = head_->Find("payments/prod", "db.pool.max");
  ASSERT_NE(max, nullptr);
  EXPECT_EQ(max->value, "12");
  EXPECT_EQ(max->create_revision, 1);
  EXPECT_EQ(max->mod_revision, 3);
  EXPECT_EQ(max->version, 2);
  const Entry* bin = head_->Find(std::string("bin\0ns", 6), std::string("k\0\xff", 3));
  ASSERT_NE(bin, nullptr);
  EXPECT_EQ(bin->value, std::string("\0\1", 2));
  EXPECT_EQ(bin->content_type, "application/octet-stream");
  ASSERT_NE(head_->Find("payments/prod", "db.pool.min"), nullptr);
  EXPECT_EQ(head_->Find("payments/prod", "db.pool.min")->value, "");

  ASSERT_OK_AND_ASSIGN(auto history_after, store_->ReadHistory({}));
  ExpectSameHistory(history_before, history_after);
  EXPECT_EQ(history_after[4].message, "initial import");
  EXPECT_EQ(history_after[4].author, "alice");

  // Namespace revisions survived too: payments/prod last changed at 3.
  WriteRequest ns_cas = Put("payments/prod", "x", "1");
  ns_cas.compares.push_back(Cmp("payments/prod", "", Target::kNamespaceRevision, Op::kEqual, 3));
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(std::move(ns_cas)));
  EXPECT_EQ(r.revision, 7);
  WriteRequest flags_cas = Put("shared/flags", "y", "1");
  flags_cas.compares.push_back(Cmp("shared/flags", "", Target::kNamespaceRevision, Op::kEqual, 5));
  EXPECT_THAT(store_->Commit(std::move(flags_cas)),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("revision is 6")));
}

TEST_F(SqliteStoreTest, GarbageFileIsDataLoss) {
  std::filesystem::create_directories(DbPath().parent_path());
  {
    std::ofstream out(DbPath(), std::ios::binary);
    for (int i = 0; i < 8192; ++i) out.put(static_cast<char>((i * 7919) & 0xff));
  }
  EXPECT_THAT(OpenSqliteStore(Options()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("snapconf.db")));
}

TEST_F(SqliteStoreTest, DamagedPageIsDataLoss) {
  Open();
  WriteRequest many;
  for (int i = 0; i < 2000; ++i) {
    many.changes.Put("ns", "key-" + std::to_string(i), std::string(100, 'a' + i % 26));
  }
  ASSERT_THAT(store_->Commit(std::move(many)), IsOk());
  store_->Close();
  store_.reset();
  const auto size = std::filesystem::file_size(DbPath());
  ASSERT_GT(size, 16u * 4096);
  {
    std::fstream f(DbPath(), std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(8 * 4096);  // a b-tree page well inside the file
    for (int i = 0; i < 4096; ++i) f.put(static_cast<char>(0xA5));
  }
  EXPECT_THAT(OpenSqliteStore(Options()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("integrity check")));
}

TEST_F(SqliteStoreTest, NewerFormatIsFailedPrecondition) {
  Open();
  store_->Close();
  store_.reset();
  RunSql(DbPath(), "PRAGMA user_version = " + std::to_string(kSqliteFormatVersion + 1));
  EXPECT_THAT(OpenSqliteStore(Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("newer")));
}

TEST_F(SqliteStoreTest, ForeignDatabaseIsFailedPrecondition) {
  std::filesystem::create_directories(DbPath().parent_path());
  RunSql(DbPath(), "CREATE TABLE t (x INTEGER)");
  EXPECT_THAT(OpenSqliteStore(Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a snapconf")));
}

TEST_F(SqliteStoreTest, DataDirUnderARegularFileIsFailedPrecondition) {
  { std::ofstream(dir_.path() / "file") << "x"; }
  SqliteStoreOptions options = Options();
  options.data_dir = dir_.path() / "file" / "data";
  EXPECT_THAT(OpenSqliteStore(options),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("data directory")));
}

TEST_F(SqliteStoreTest, ReadOnlyDataDirIsFailedPrecondition) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  std::filesystem::create_directories(Options().data_dir);
  std::filesystem::permissions(
      Options().data_dir, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
  EXPECT_THAT(OpenSqliteStore(Options()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not writable")));
  std::filesystem::permissions(Options().data_dir, std::filesystem::perms::owner_all);
}

TEST_F(SqliteStoreTest, DiskFullIsResourceExhaustedAndRecoverable) {
  Open();
  ASSERT_THAT(store_->Commit(Put("ns", "small", "1")), IsOk());
  ASSERT_OK_AND_ASSIGN(std::string pages, SqlitePragmaForTest(store_.get(), "page_count"));
  // SQLite answers SQLITE_FULL once the file would exceed max_page_count:
  // the same path as a full disk.
  ASSERT_THAT(
      SqlitePragmaForTest(store_.get(), "max_page_count = " + std::to_string(std::stoi(pages) + 4)),
      IsOk());
  EXPECT_THAT(store_->Commit(Put("ns", "big", std::string(1 << 20, 'x'))),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("disk full")));
  EXPECT_THAT(store_->Health(), IsOk());
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Put("ns", "small", "2")));
  EXPECT_EQ(r.revision, 2);
  ASSERT_THAT(SqlitePragmaForTest(store_.get(), "max_page_count = 1000000"), IsOk());
  ASSERT_OK_AND_ASSIGN(r, store_->Commit(Put("ns", "big", std::string(1 << 20, 'x'))));
  EXPECT_EQ(r.revision, 3);
  const SnapshotPtr before = listener_->last();
  Reopen();
  EXPECT_TRUE(SameState(*before, *head_));
}

TEST_F(SqliteStoreTest, HistoryFiltersAndRanges) {
  Open();
  ASSERT_THAT(store_->Commit(Put("a", "x", "1", "alice")), IsOk());  // 1
  ASSERT_THAT(store_->Commit(Put("b", "x", "1", "bob")), IsOk());    // 2
  WriteRequest both;
  both.changes.Put("a", "y", "1");
  both.changes.Put("b", "y", "1");
  both.author = "carol";
  both.message = "both";
  ASSERT_THAT(store_->Commit(std::move(both)), IsOk());     // 3
  ASSERT_THAT(store_->Commit(Put("a", "x", "2")), IsOk());  // 4
  ASSERT_THAT(store_->Commit(Delete("a", "x")), IsOk());    // 5

  ASSERT_OK_AND_ASSIGN(auto all, store_->ReadHistory({}));
  ASSERT_EQ(all.size(), 5u);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].revision, 5 - static_cast<Revision>(i));
  EXPECT_EQ(all[2].author, "carol");
  EXPECT_EQ(all[2].message, "both");
  ASSERT_EQ(all[2].changes.size(), 2u);
  EXPECT_EQ(all[2].changes[0].ns, "a");
  EXPECT_EQ(all[2].changes[1].ns, "b");
  EXPECT_EQ(all[0].changes[0].after, nullptr);
  EXPECT_EQ(all[0].changes[0].before->value, "2");

  HistoryQuery in_b;
  in_b.ns = "b";
  ASSERT_OK_AND_ASSIGN(auto b, store_->ReadHistory(in_b));
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].revision, 3);
  ASSERT_EQ(b[0].changes.size(), 1u);
  EXPECT_EQ(b[0].changes[0].key, "y");
  EXPECT_EQ(b[1].revision, 2);

  HistoryQuery ax;
  ax.ns = "a";
  ax.key = "x";
  ASSERT_OK_AND_ASSIGN(auto x, store_->ReadHistory(ax));
  ASSERT_EQ(x.size(), 3u);
  EXPECT_EQ(x[0].revision, 5);
  EXPECT_EQ(x[1].revision, 4);
  EXPECT_EQ(x[1].changes[0].before->value, "1");
  EXPECT_EQ(x[1].changes[0].after->value, "2");
  EXPECT_EQ(x[1].changes[0].after->version, 2);
  EXPECT_EQ(x[2].revision, 1);
  EXPECT_EQ(x[2].changes[0].before, nullptr);

  ax.limit = 2;
  ax.to_revision = 4;
  ASSERT_OK_AND_ASSIGN(x, store_->ReadHistory(ax));
  ASSERT_EQ(x.size(), 2u);
  EXPECT_EQ(x[0].revision, 4);
  EXPECT_EQ(x[1].revision, 1);

  HistoryQuery window;
  window.from_revision = 2;
  window.to_revision = 3;
  ASSERT_OK_AND_ASSIGN(auto w, store_->ReadHistory(window));
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0].revision, 3);

  HistoryQuery future;
  future.from_revision = 6;
  EXPECT_THAT(store_->ReadHistory(future), StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(SqliteStoreTest, RetentionByCountSurvivesReopen) {
  retention_ = {.max_records = 5, .max_age = absl::InfiniteDuration()};
  Open();
  for (int i = 0; i < 20; ++i)
    ASSERT_THAT(store_->Commit(Put("ns", "k", std::to_string(i))), IsOk());
  EXPECT_TRUE(WaitFor([&] { return store_->oldest_revision() == 16; }));
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory({}));
  ASSERT_EQ(history.size(), 5u);
  EXPECT_EQ(history.back().revision, 16);
  HistoryQuery old;
  old.from_revision = 15;
  EXPECT_THAT(store_->ReadHistory(old),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("oldest retained is 16")));
  Reopen();
  EXPECT_EQ(store_->oldest_revision(), 16);
  EXPECT_EQ(head_->Find("ns", "k")->value, "19");
  EXPECT_EQ(head_->Find("ns", "k")->version, 20);
}

TEST_F(SqliteStoreTest, RetentionByAge) {
  retention_ = {.max_records = 0, .max_age = absl::Hours(1)};
  Open();
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(store_->Commit(Put("ns", "k", std::to_string(i))), IsOk());  // 1..3
    clock_.Advance(absl::Minutes(25));
  }
  // Now: rev 1 is 75 min old, rev 2 is 50, rev 3 is 25.
  ASSERT_THAT(store_->Commit(Put("ns", "k", "3")), IsOk());  // 4, triggers compaction
  EXPECT_TRUE(WaitFor([&] { return store_->oldest_revision() == 2; }));
  clock_.Advance(absl::Hours(5));
  EXPECT_TRUE(WaitFor([&] { return store_->oldest_revision() == 5; }));  // all gone
  ASSERT_OK_AND_ASSIGN(auto history, store_->ReadHistory({}));
  EXPECT_TRUE(history.empty());
  Reopen();
  EXPECT_EQ(store_->oldest_revision(), 5);
  EXPECT_EQ(head_->revision(), 4);
  ASSERT_OK_AND_ASSIGN(CommitResult r, store_->Commit(Put("ns", "k", "4")));
  EXPECT_EQ(r.revision, 5);
  ASSERT_OK_AND_ASSIGN(history, store_->ReadHistory({}));
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(store_->oldest_revision(), 5);
}

// Start-up at 100k keys: prints the time (no assertion on speed).
TEST_F(SqliteStoreTest, LoadsOneHundredThousandKeys) {
  constexpr int kKeys = 100000;
  constexpr int kPerCommit = 2000;
  Open();
  for (int base = 0; base < kKeys; base += kPerCommit) {
    WriteRequest batch;
    for (int i = base; i < base + kPerCommit; ++i) {
      batch.changes.Put("ns" + std::to_string(i % 50), "service.setting." + std::to_string(i),
                        std::string(64, 'v'), "text/plain");
    }
    ASSERT_THAT(store_->Commit(std::move(batch)), IsOk());
  }
  const SnapshotPtr before = listener_->last();
  store_->Close();
  store_.reset();

  listener_ = std::make_unique<RecordingListener>();
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(store_, OpenSqliteStore(Options()));
  const auto t1 = std::chrono::steady_clock::now();
  ASSERT_OK_AND_ASSIGN(head_, store_->Start(listener_.get()));
  const auto t2 = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("[ startup ] %d keys, %.1f MiB file: open+quick_check %.1f ms, load %.1f ms\n", kKeys,
              std::filesystem::file_size(DbPath()) / 1048576.0, ms(t1 - t0), ms(t2 - t1));
  EXPECT_EQ(head_->size(), static_cast<size_t>(kKeys));
  EXPECT_TRUE(SameState(*before, *head_));
}

}  // namespace
}  // namespace snapconf
