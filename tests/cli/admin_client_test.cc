// tests/cli/admin_client_test.cc
//
// AdminClient against a real snapconfd: typed results, the server's status
// codes, and the endpoint-rotation rules (reads fail over; writes move on only
// when nothing was sent, and report an unknown outcome otherwise).
#include "client/admin_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"

namespace snapconf::client {
namespace {

using ::snapconf::testing::IsOk;
using ::snapconf::testing::ServerProcess;
using ::snapconf::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;
using ::testing::SizeIs;
using ::testing::StartsWith;

// A port on which nothing listens: connection refused, nothing ever sent.
constexpr char kDeadEndpoint[] = "127.0.0.1:1";

AdminClient MakeClient(std::vector<std::string> endpoints,
                       absl::Duration timeout = absl::Seconds(5)) {
  AdminClientOptions options;
  options.endpoints = std::move(endpoints);
  options.call_timeout = timeout;
  absl::StatusOr<AdminClient> client = AdminClient::Create(options);
  EXPECT_THAT(client, IsOk());
  return *std::move(client);
}

class AdminClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, ServerProcess::Start());
    client_.emplace(MakeClient({server_->address()}));
  }

  AdminClient& client() { return *client_; }

  std::unique_ptr<ServerProcess> server_;
  std::optional<AdminClient> client_;
};

TEST_F(AdminClientTest, PutThenGetReturnsTheEntry) {
  PutOptions put;
  put.content_type = "text/plain";
  ASSERT_OK_AND_ASSIGN(PutResult written, client().Put("payments/prod", "db.pool.max", "20", put));
  EXPECT_GT(written.revision, 0);
  EXPECT_EQ(written.entry.ns, "payments/prod");
  EXPECT_EQ(written.entry.version, 1);
  EXPECT_EQ(written.entry.mod_revision, written.revision);

  ASSERT_OK_AND_ASSIGN(GetResult read, client().Get("payments/prod", "db.pool.max"));
  EXPECT_EQ(read.entry, written.entry);
  EXPECT_GE(read.revision, written.revision);
}

TEST_F(AdminClientTest, BinaryValuesRoundTrip) {
  const std::string value("\x00\xff\n\x80", 4);
  ASSERT_THAT(client().Put("ns", "bin", value), IsOk());
  ASSERT_OK_AND_ASSIGN(GetResult read, client().Get("ns", "bin"));
  EXPECT_EQ(read.entry.value, value);
}

TEST_F(AdminClientTest, ServerCodesComeBackUnchanged) {
  EXPECT_THAT(client().Get("ns", "missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(client().Delete("ns", "missing"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(client().Put("ns", "", "v"), StatusIs(absl::StatusCode::kInvalidArgument));
  ReadOptions ahead;
  ahead.revision = 1'000'000;
  EXPECT_THAT(client().Get("ns", "k", ahead), StatusIs(absl::StatusCode::kOutOfRange));

  ASSERT_OK_AND_ASSIGN(PutResult first, client().Put("ns", "k", "1"));
  ASSERT_OK_AND_ASSIGN(PutResult second, client().Put("ns", "k", "2"));
  PutOptions stale;
  stale.expected_mod_revision = first.revision;
  EXPECT_THAT(client().Put("ns", "k", "3", stale), StatusIs(absl::StatusCode::kAborted));
  PutOptions future;
  future.expected_mod_revision = second.revision + 100;
  EXPECT_THAT(client().Put("ns", "k", "3", future), StatusIs(absl::StatusCode::kInvalidArgument));
  PutOptions create_only;
  create_only.expected_mod_revision = 0;
  EXPECT_THAT(client().Put("ns", "k", "2", create_only), StatusIs(absl::StatusCode::kAborted));
  PutOptions current;
  current.expected_mod_revision = second.revision;
  EXPECT_THAT(client().Put("ns", "k", "2", current), IsOk());
}

TEST_F(AdminClientTest, TxnAppliesAllOrNothing) {
  ASSERT_OK_AND_ASSIGN(PutResult a, client().Put("ns", "a", "1"));
  TxnSpec spec;
  spec.compares = {
      Compare{"ns", "a", Compare::Target::kModRevision, Compare::Op::kEqual, a.revision, ""}};
  spec.operations = {TxnOperation{TxnOperation::Kind::kPut, "ns", "a", "2", ""},
                     TxnOperation{TxnOperation::Kind::kPut, "other", "b", "3", "text/plain"}};
  spec.message = "both";
  ASSERT_OK_AND_ASSIGN(ChangeList committed, client().Txn(spec));
  EXPECT_EQ(committed.revision, a.revision + 1);
  ASSERT_THAT(committed.changes, SizeIs(2));
  EXPECT_EQ(committed.changes[0].ns, "ns");
  EXPECT_THAT(committed.changes[0].after, Optional(::testing::Field(&Entry::value, "2")));

  // Same compare again: now stale, nothing changes.
  EXPECT_THAT(client().Txn(spec), StatusIs(absl::StatusCode::kAborted));
  ASSERT_OK_AND_ASSIGN(GetResult b, client().Get("other", "b"));
  EXPECT_EQ(b.entry.mod_revision, committed.revision);
}

TEST_F(AdminClientTest, ListAllFollowsPagesAtOneRevision) {
  TxnSpec spec;
  for (int i = 0; i < 12; ++i) {
    spec.operations.push_back(
        TxnOperation{TxnOperation::Kind::kPut, "ns", absl::StrCat("key", 10 + i), "v", ""});
  }
  ASSERT_OK_AND_ASSIGN(ChangeList committed, client().Txn(spec));
  ListOptions list;
  list.page_size = 5;
  ASSERT_OK_AND_ASSIGN(ListPage first, client().List("ns", list));
  EXPECT_THAT(first.entries, SizeIs(5));
  EXPECT_FALSE(first.next_page_token.empty());

  ASSERT_THAT(client().Put("ns", "key99", "later"), IsOk());
  ASSERT_OK_AND_ASSIGN(ListPage all, client().ListAll("ns", list));
  EXPECT_THAT(all.entries, SizeIs(13));
  ListOptions at_commit = list;
  at_commit.revision = committed.revision;
  ASSERT_OK_AND_ASSIGN(ListPage old, client().ListAll("ns", at_commit));
  EXPECT_THAT(old.entries, SizeIs(12));
  EXPECT_EQ(old.revision, committed.revision);
  ASSERT_OK_AND_ASSIGN(ListPage some, client().ListAll("ns", list, 7));
  EXPECT_THAT(some.entries, SizeIs(7));
  EXPECT_FALSE(some.next_page_token.empty());

  ASSERT_OK_AND_ASSIGN(NamespaceList namespaces, client().ListNamespaces());
  ASSERT_THAT(namespaces.namespaces, SizeIs(1));
  EXPECT_EQ(namespaces.namespaces[0].ns, "ns");
  EXPECT_EQ(namespaces.namespaces[0].key_count, 13);
}

TEST_F(AdminClientTest, HistoryDiffAndRollback) {
  PutOptions with_message;
  with_message.message = "one";
  ASSERT_OK_AND_ASSIGN(PutResult v1, client().Put("ns", "k", "1", with_message));
  ASSERT_THAT(client().Put("ns", "k", "2"), IsOk());
  ASSERT_THAT(client().Put("ns", "extra", "x"), IsOk());

  HistoryOptions of_k;
  of_k.ns = "ns";
  of_k.key = "k";
  ASSERT_OK_AND_ASSIGN(HistoryPage history, client().History(of_k));
  ASSERT_THAT(history.records, SizeIs(2));
  EXPECT_GT(history.records[0].revision, history.records[1].revision);  // newest first
  EXPECT_EQ(history.records[1].message, "one");
  EXPECT_GT(history.records[1].commit_time, absl::Now() - absl::Minutes(5));

  ASSERT_OK_AND_ASSIGN(ChangeList diff, client().Diff("ns", v1.revision));
  ASSERT_THAT(diff.changes, SizeIs(2));  // k changed, extra created

  ASSERT_OK_AND_ASSIGN(ChangeList rolled, client().Rollback("ns", v1.revision));
  EXPECT_THAT(rolled.changes, SizeIs(2));
  ASSERT_OK_AND_ASSIGN(GetResult k, client().Get("ns", "k"));
  EXPECT_EQ(k.entry.value, "1");
  EXPECT_EQ(k.entry.mod_revision, rolled.revision);
  EXPECT_THAT(client().Get("ns", "extra"), StatusIs(absl::StatusCode::kNotFound));

  // A stale guard is refused.
  RollbackOptions stale_guard;
  stale_guard.expected_namespace_revision = v1.revision;
  EXPECT_THAT(client().Rollback("ns", v1.revision, stale_guard),
              StatusIs(absl::StatusCode::kAborted));
}

TEST_F(AdminClientTest, ServerStatusDescribesTheNode) {
  ASSERT_THAT(client().Put("ns", "k", "v"), IsOk());
  ASSERT_OK_AND_ASSIGN(ServerStatus status, client().GetServerStatus());
  EXPECT_GE(status.revision, 1);
  EXPECT_EQ(status.key_count, 1);
  EXPECT_TRUE(status.writable);
  EXPECT_FALSE(status.store.empty());
}

TEST_F(AdminClientTest, ReadsAndWritesSkipAnEndpointThatNeverConnects) {
  AdminClient client = MakeClient({kDeadEndpoint, server_->address()});
  EXPECT_THAT(client.Put("ns", "k", "v"), IsOk());
  EXPECT_THAT(client.Get("ns", "k"), IsOk());
  EXPECT_THAT(client.GetServerStatus(), IsOk());
}

TEST_F(AdminClientTest, NoReachableEndpointIsADefiniteUnavailable) {
  AdminClient client = MakeClient({kDeadEndpoint, "127.0.0.1:2"});
  absl::Status put = client.Put("ns", "k", "v").status();
  EXPECT_THAT(put, StatusIs(absl::StatusCode::kUnavailable, StartsWith("no endpoint reachable")));
  EXPECT_FALSE(IsOutcomeUnknown(put));
}

TEST_F(AdminClientTest, WriteToAServerThatStopsAnsweringHasAnUnknownOutcome) {
  AdminClient client = MakeClient({server_->address()}, absl::Milliseconds(500));
  ASSERT_THAT(client.Get("ns", "absent").status(), StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(server_->Stop(), IsOk());

  absl::Status put = client.Put("ns", "k", "v").status();
  EXPECT_THAT(put, StatusIs(absl::StatusCode::kDeadlineExceeded, StartsWith("outcome unknown: ")));
  EXPECT_TRUE(IsOutcomeUnknown(put));
  // Reads are never "unknown"; they simply time out.
  absl::Status get = client.Get("ns", "k").status();
  EXPECT_THAT(get, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_FALSE(IsOutcomeUnknown(get));

  ASSERT_THAT(server_->Cont(), IsOk());
}

TEST_F(AdminClientTest, WritesResumeAfterAServerRestart) {
  ASSERT_THAT(client().Put("ns", "k", "1"), IsOk());
  ASSERT_THAT(server_->Kill(), IsOk());
  // The first write may still go out on the old connection before the client
  // notices it is gone: then its outcome is unknown. Once the client knows the
  // connection is down, writes fail definitely (nothing sent).
  absl::Status down = absl::OkStatus();
  const absl::Time noticed_by = absl::Now() + absl::Seconds(5);
  while (absl::Now() < noticed_by) {
    down = client().Put("ns", "k", "2").status();
    ASSERT_THAT(down, StatusIs(absl::StatusCode::kUnavailable));
    if (!IsOutcomeUnknown(down)) break;
  }
  EXPECT_THAT(down, StatusIs(absl::StatusCode::kUnavailable, StartsWith("no endpoint reachable")));
  EXPECT_FALSE(IsOutcomeUnknown(down));

  ASSERT_THAT(server_->Restart(), IsOk());
  // "Not sent" failures are safe to retry; the channel reconnects within its
  // (short) backoff.
  absl::Status put = absl::UnavailableError("not tried");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    put = client().Put("ns", "k", "2").status();
    if (put.ok() || IsOutcomeUnknown(put) || put.code() != absl::StatusCode::kUnavailable) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_THAT(put, IsOk());
  ASSERT_OK_AND_ASSIGN(GetResult k, client().Get("ns", "k"));
  EXPECT_EQ(k.entry.value, "2");
  EXPECT_EQ(k.entry.version, 2);  // the data directory survived the restart
}

}  // namespace
}  // namespace snapconf::client
