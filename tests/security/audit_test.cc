// The audit log on its own: lines, paging newest first across rotation, page
// token checks, and the torn last line a power loss can leave.
#include "service/security/audit.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::StatusIs;

// The file fingerprint page tokens carry (FNV-1a of the first line).
uint64_t FirstLineHashOf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  std::getline(in, line);
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : line) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/auditXXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    path_ = dir_ + "/audit.log";
  }
  void TearDown() override {
    std::remove(path_.c_str());
    std::remove((path_ + ".1").c_str());
    ::rmdir(dir_.c_str());
  }

  static v1::AuditEvent Event(int i, const std::string& identity = "ops/root",
                              const std::string& ns = "payments/prod") {
    v1::AuditEvent e;
    SetAuditTime(absl::FromUnixSeconds(1800000000 + i), &e);
    e.set_identity(identity);
    e.set_method("/snapconf.v1.ConfigService/Put");
    e.add_namespaces(ns);
    e.add_keys(absl::StrCat(ns, "/k", i));
    e.set_old_revision(i);
    e.set_new_revision(i + 1);
    e.set_outcome("OK");
    return e;
  }

  std::unique_ptr<AuditLog> OpenLog(int64_t max_bytes = 0) {
    absl::StatusOr<std::unique_ptr<AuditLog>> log =
        AuditLog::Open({.path = path_, .max_bytes = max_bytes});
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  // Every event, following page tokens; old_revision of each, in order.
  static std::vector<int64_t> ReadAll(const AuditLog& log, int32_t page_size,
                                      const AuditQuery& filter = {}) {
    std::vector<int64_t> seen;
    AuditQuery q = filter;
    q.page_size = page_size;
    for (int pages = 0; pages < 10000; ++pages) {
      absl::StatusOr<v1::ListAuditEventsResponse> page = log.List(q);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      EXPECT_LE(page->events_size(), page_size);
      for (const auto& e : page->events()) seen.push_back(e.old_revision());
      if (page->next_page_token().empty()) break;
      q.page_token = page->next_page_token();
    }
    return seen;
  }

  std::string ReadText(const std::string& path) const {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  std::string dir_;
  std::string path_;
};

TEST_F(AuditLogTest, WritesOneJsonObjectPerLineInAPrivateFile) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Append(Event(1)).ok());
  ASSERT_TRUE(log->Append(Event(2)).ok());
  ASSERT_TRUE(log->Flush().ok());
  const std::string text = ReadText(path_);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_THAT(text, ::testing::HasSubstr(R"("identity":"ops/root")"));
  EXPECT_THAT(text, ::testing::HasSubstr(R"("keys":["payments/prod/k1"])"));
  EXPECT_THAT(text, ::testing::HasSubstr(R"("outcome":"OK")"));
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(AuditLogTest, ListsNewestFirstAcrossPages) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 25; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  std::vector<int64_t> expected;
  for (int i = 25; i >= 1; --i) expected.push_back(i);
  EXPECT_EQ(ReadAll(*log, 7), expected);
  EXPECT_EQ(ReadAll(*log, 25), expected);
  EXPECT_EQ(ReadAll(*log, 1000), expected);
  // The default page is 100 events.
  for (int i = 26; i <= 150; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  absl::StatusOr<v1::ListAuditEventsResponse> page = log->List({});
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->events_size(), 100);
  EXPECT_EQ(page->events(0).old_revision(), 150);
  EXPECT_FALSE(page->next_page_token().empty());
}

TEST_F(AuditLogTest, PagesStayPutWhileNewEventsArrive) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  absl::StatusOr<v1::ListAuditEventsResponse> first = log->List({.page_size = 4});
  ASSERT_TRUE(first.ok());
  for (int i = 11; i <= 20; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  absl::StatusOr<v1::ListAuditEventsResponse> second =
      log->List({.page_size = 4, .page_token = first->next_page_token()});
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->events_size(), 4);
  EXPECT_EQ(second->events(0).old_revision(), 6);
}

TEST_F(AuditLogTest, RotationKeepsOneOlderFileAndListingSpansBoth) {
  const int64_t line = static_cast<int64_t>(Event(10).ByteSizeLong()) * 4;  // generous
  auto log = OpenLog(/*max_bytes=*/line * 5);
  ASSERT_NE(log, nullptr);
  for (int i = 10; i < 40; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  struct stat st {};
  ASSERT_EQ(::stat((path_ + ".1").c_str(), &st), 0) << "no rotated file";
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_LE(st.st_size, line * 5);
  EXPECT_EQ(::stat((path_ + ".2").c_str(), &st), -1);  // only one rotated file is kept
  const std::vector<int64_t> seen = ReadAll(*log, 3);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), 39);
  EXPECT_LT(seen.size(), 30u);  // the oldest were rotated away
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_EQ(seen[i], seen[i - 1] - 1);
}

TEST_F(AuditLogTest, ATokenIntoAFileRotatedAwayIsOutOfRange) {
  const int64_t line = static_cast<int64_t>(Event(10).ByteSizeLong()) * 4;
  auto log = OpenLog(/*max_bytes=*/line * 3);
  ASSERT_NE(log, nullptr);
  for (int i = 10; i < 13; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  absl::StatusOr<v1::ListAuditEventsResponse> page = log->List({.page_size = 1});
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->next_page_token().empty());
  for (int i = 13; i < 40; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  EXPECT_THAT(log->List({.page_size = 1, .page_token = page->next_page_token()}).status(),
              StatusIs(absl::StatusCode::kOutOfRange));
}

TEST_F(AuditLogTest, RefusesBadPageTokensAndSizes) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  absl::StatusOr<v1::ListAuditEventsResponse> page = log->List({.page_size = 2});
  ASSERT_TRUE(page.ok());
  const std::string good = page->next_page_token();
  ASSERT_FALSE(good.empty());
  for (const std::string& bad : {std::string("garbage!"), std::string("YTEuMS4yLjM"),  // "a1.1.2.3"
                                 good.substr(0, good.size() - 2), std::string("x") + good}) {
    EXPECT_THAT(log->List({.page_size = 2, .page_token = bad}).status(),
                ::testing::AnyOf(StatusIs(absl::StatusCode::kInvalidArgument),
                                 StatusIs(absl::StatusCode::kOutOfRange)))
        << bad;
  }
  EXPECT_THAT(log->List({.page_size = -1}).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AuditLogTest, ATokenNotAtALineBoundaryIsInvalid) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  // A well-formed token for this file, in the middle of a line.
  const std::string token = absl::WebSafeBase64Escape(
      absl::StrCat("a1.", st.st_ino, ".", FirstLineHashOf(path_), ".", st.st_size - 3));
  EXPECT_THAT(log->List({.page_token = token}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string beyond = absl::WebSafeBase64Escape(
      absl::StrCat("a1.", st.st_ino, ".", FirstLineHashOf(path_), ".", st.st_size + 100));
  EXPECT_THAT(log->List({.page_token = beyond}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(AuditLogTest, ATornLastLineIsSkippedAndLaterLinesStartClean) {
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    for (int i = 1; i <= 3; ++i) ASSERT_TRUE(log->Append(Event(i)).ok());
  }
  // What a power loss in the middle of a line leaves.
  std::ofstream(path_, std::ios::binary | std::ios::app) << R"({"identity":"ops/ro)";
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(ReadAll(*log, 2), (std::vector<int64_t>{3, 2, 1}));
    ASSERT_TRUE(log->Append(Event(4)).ok());
    EXPECT_EQ(ReadAll(*log, 2), (std::vector<int64_t>{4, 3, 2, 1}));
  }
  // Lines that are JSON but not events are not listed either.
  std::ofstream(path_, std::ios::binary | std::ios::app) << "{}\n[1]\n{\"other\":true}\n";
  {
    auto log = OpenLog();
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(ReadAll(*log, 2), (std::vector<int64_t>{4, 3, 2, 1}));
  }
  // A torn line with nothing after it (the server has not restarted yet).
  std::ofstream(path_, std::ios::binary | std::ios::app) << R"({"identity":"x","old)";
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(ReadAll(*log, 10), (std::vector<int64_t>{4, 3, 2, 1}));
}

TEST_F(AuditLogTest, FiltersByIdentityAndNamespace) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  for (int i = 1; i <= 20; ++i) {
    ASSERT_TRUE(log->Append(Event(i, i % 2 ? "team/alice" : "ops/root",
                                  i % 3 ? "payments/prod" : "hr/salaries"))
                    .ok());
  }
  EXPECT_EQ(ReadAll(*log, 3, {.identity = "team/alice", .ns = "hr/salaries"}),
            (std::vector<int64_t>{15, 9, 3}));
  EXPECT_EQ(ReadAll(*log, 4, {.identity = "nobody"}), std::vector<int64_t>{});
}

TEST_F(AuditLogTest, ConcurrentAppendersNeverInterleaveLines) {
  auto log = OpenLog(/*max_bytes=*/64 << 10);
  ASSERT_NE(log, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < 300; ++i) ASSERT_TRUE(log->Append(Event(t * 1000 + i)).ok());
    });
  }
  for (std::thread& t : threads) t.join();
  const std::vector<int64_t> seen = ReadAll(*log, 1000);
  // Every line read back is a whole event; per appender, newest first.
  std::vector<int64_t> last(4, 1 << 30);
  for (int64_t r : seen) {
    const int t = static_cast<int>(r / 1000);
    ASSERT_GE(t, 0);
    ASSERT_LT(t, 4);
    EXPECT_LT(r, last[t]);
    last[t] = r;
  }
  EXPECT_GT(seen.size(), 100u);
}

TEST_F(AuditLogTest, AnyTextStaysOneParseableLine) {
  auto log = OpenLog();
  ASSERT_NE(log, nullptr);
  v1::AuditEvent e = Event(1);
  e.set_identity(std::string("quote\" backslash\\ newline\n tab\t ctl\x01 bad\xff ok\xc3\xa9"));
  e.set_detail("line one\nline two");
  ASSERT_TRUE(log->Append(e).ok());
  ASSERT_TRUE(log->Append(Event(2)).ok());
  const std::string text = ReadText(path_);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  absl::StatusOr<v1::ListAuditEventsResponse> page = log->List({});
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->events_size(), 2);
  EXPECT_EQ(page->events(1).identity(),
            "quote\" backslash\\ newline\n tab\t ctl\x01 bad\xef\xbf\xbd ok\xc3\xa9");
  EXPECT_EQ(page->events(1).detail(), "line one\nline two");
  EXPECT_EQ(page->events(1).time().seconds(), 1800000001);
  EXPECT_EQ(page->events(1).new_revision(), 2);
}

}  // namespace
}  // namespace snapconf
