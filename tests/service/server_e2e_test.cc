// End-to-end tests of snapconfd: a real server process on a loopback port,
// a real SQLite file, real gRPC.
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "tests/testing/health_probe.h"
#include "tests/testing/server_process.h"
#include "tests/testing/status_matchers.h"

namespace snapconf {
namespace {

using ::snapconf::testing::IsOk;
using ::testing::HasSubstr;
using ::testing::SizeIs;

class Client {
 public:
  explicit Client(const std::string& address)
      : channel_(grpc::CreateChannel(address, grpc::InsecureChannelCredentials())),
        config_(v1::ConfigService::NewStub(channel_)),
        admin_(v1::AdminService::NewStub(channel_)) {}

  template <typename Req, typename Resp, typename Method>
  grpc::Status Call(Method method, const Req& req, Resp* resp,
                    absl::Duration timeout = absl::Seconds(10)) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout));
    return ((*config_).*method)(&ctx, req, resp);
  }

  grpc::Status Put(const std::string& ns, const std::string& key, const std::string& value,
                   v1::PutResponse* resp = nullptr, std::optional<int64_t> expected = {}) {
    v1::PutRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    req.set_value(value);
    if (expected) req.set_expected_mod_revision(*expected);
    v1::PutResponse local;
    return Call(&v1::ConfigService::Stub::Put, req, resp ? resp : &local);
  }

  grpc::Status Get(const std::string& ns, const std::string& key, v1::GetResponse* resp,
                   int64_t revision = 0) {
    v1::GetRequest req;
    req.set_namespace_(ns);
    req.set_key(key);
    req.set_revision(revision);
    return Call(&v1::ConfigService::Stub::Get, req, resp);
  }

  int64_t Head() {
    grpc::ClientContext ctx;
    v1::GetServerStatusResponse resp;
    EXPECT_TRUE(admin_->GetServerStatus(&ctx, {}, &resp).ok());
    return resp.revision();
  }

  std::shared_ptr<grpc::Channel> channel() { return channel_; }
  v1::ConfigService::Stub& config() { return *config_; }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ConfigService::Stub> config_;
  std::unique_ptr<v1::AdminService::Stub> admin_;
};

class ServerE2ETest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(server_, testing::ServerProcess::Start());
    client_ = std::make_unique<Client>(server_->address());
  }
  std::unique_ptr<testing::ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ServerE2ETest, PutThenGetReturnsValueAndRevision) {
  v1::PutResponse put;
  ASSERT_TRUE(client_->Put("payments/prod", "db.pool.max", "32", &put).ok());
  EXPECT_EQ(put.header().revision(), 1);
  EXPECT_EQ(put.entry().version(), 1);
  EXPECT_EQ(put.entry().create_revision(), 1);

  v1::GetResponse get;
  ASSERT_TRUE(client_->Get("payments/prod", "db.pool.max", &get).ok());
  EXPECT_EQ(get.entry().value(), "32");
  EXPECT_EQ(get.header().revision(), 1);
  EXPECT_EQ(get.entry().mod_revision(), 1);

  ASSERT_TRUE(client_->Put("payments/prod", "db.pool.max", "64", &put).ok());
  EXPECT_EQ(put.header().revision(), 2);
  EXPECT_EQ(put.entry().version(), 2);
  EXPECT_EQ(put.entry().create_revision(), 1);
}

TEST_F(ServerE2ETest, GetMissingKeyIsNotFound) {
  v1::GetResponse get;
  EXPECT_EQ(client_->Get("payments/prod", "absent", &get).error_code(), grpc::NOT_FOUND);
}

TEST_F(ServerE2ETest, GetAtOlderRevisionAndFutureRevision) {
  ASSERT_TRUE(client_->Put("ns", "k", "v1").ok());
  ASSERT_TRUE(client_->Put("ns", "k", "v2").ok());
  v1::GetResponse get;
  ASSERT_TRUE(client_->Get("ns", "k", &get, 1).ok());
  EXPECT_EQ(get.entry().value(), "v1");
  EXPECT_EQ(get.header().revision(), 1);
  EXPECT_EQ(client_->Get("ns", "k", &get, 99).error_code(), grpc::OUT_OF_RANGE);
}

TEST_F(ServerE2ETest, ListPagesStayAtTheFirstPagesRevision) {
  for (int i = 0; i < 25; ++i) {
    ASSERT_TRUE(client_->Put("ns", absl::StrCat("key", 100 + i), absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(client_->Put("other", "key100", "x").ok());
  v1::ListRequest req;
  req.set_namespace_("ns");
  req.set_prefix("key1");
  req.set_page_size(10);
  std::vector<std::string> keys;
  int64_t revision = 0;
  for (int page = 0; page < 10; ++page) {
    v1::ListResponse resp;
    ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::List, req, &resp).ok());
    if (revision == 0) revision = resp.header().revision();
    EXPECT_EQ(resp.header().revision(), revision);
    for (const auto& e : resp.entries()) keys.push_back(e.key());
    // A write between pages must not show up in this listing.
    ASSERT_TRUE(client_->Put("ns", absl::StrCat("key1", page, "x"), "late").ok());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  ASSERT_THAT(keys, SizeIs(25));
  EXPECT_EQ(keys.front(), "key100");
  EXPECT_EQ(keys.back(), "key124");
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
}

TEST_F(ServerE2ETest, ListNamespacesCountsKeys) {
  ASSERT_TRUE(client_->Put("a", "k1", "v").ok());
  ASSERT_TRUE(client_->Put("a", "k2", "v").ok());
  ASSERT_TRUE(client_->Put("b/c", "k", "v").ok());
  v1::ListNamespacesResponse resp;
  ASSERT_TRUE(
      client_->Call(&v1::ConfigService::Stub::ListNamespaces, v1::ListNamespacesRequest(), &resp)
          .ok());
  ASSERT_THAT(resp.namespaces(), SizeIs(2));
  EXPECT_EQ(resp.namespaces(0).namespace_(), "a");
  EXPECT_EQ(resp.namespaces(0).key_count(), 2);
  EXPECT_EQ(resp.namespaces(1).namespace_(), "b/c");
}

TEST_F(ServerE2ETest, DeleteRemovesAndAbsentKeyIsNotFound) {
  ASSERT_TRUE(client_->Put("ns", "k", "v").ok());
  v1::DeleteRequest del;
  del.set_namespace_("ns");
  del.set_key("k");
  v1::DeleteResponse resp;
  ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::Delete, del, &resp).ok());
  EXPECT_EQ(resp.header().revision(), 2);
  EXPECT_EQ(resp.deleted().value(), "v");
  v1::GetResponse get;
  EXPECT_EQ(client_->Get("ns", "k", &get).error_code(), grpc::NOT_FOUND);
  EXPECT_EQ(client_->Call(&v1::ConfigService::Stub::Delete, del, &resp).error_code(),
            grpc::NOT_FOUND);
  EXPECT_EQ(client_->Head(), 2);
}

TEST_F(ServerE2ETest, CompareAndSetWinsOnlyWithCurrentRevision) {
  v1::PutResponse put;
  ASSERT_TRUE(client_->Put("ns", "k", "v1", &put).ok());
  const int64_t rev = put.header().revision();
  grpc::Status stale = client_->Put("ns", "k", "v2", &put, rev + 100);
  EXPECT_EQ(stale.error_code(), grpc::INVALID_ARGUMENT) << stale.error_message();
  ASSERT_TRUE(client_->Put("ns", "k", "v2", &put, rev).ok());
  grpc::Status lost = client_->Put("ns", "k", "v3", &put, rev);
  EXPECT_EQ(lost.error_code(), grpc::ABORTED);
  EXPECT_THAT(lost.error_message(), HasSubstr("mod_revision"));
  grpc::Status create_only = client_->Put("ns", "k", "v4", &put, 0);
  EXPECT_EQ(create_only.error_code(), grpc::ABORTED);
  v1::GetResponse get;
  ASSERT_TRUE(client_->Get("ns", "k", &get).ok());
  EXPECT_EQ(get.entry().value(), "v2");
}

TEST_F(ServerE2ETest, TxnAcrossNamespacesIsOneRevision) {
  ASSERT_TRUE(client_->Put("a", "x", "1").ok());
  v1::TxnRequest txn;
  auto* cmp = txn.add_compares();
  cmp->set_namespace_("a");
  cmp->set_key("x");
  cmp->set_target(v1::Compare::TARGET_VALUE);
  cmp->set_op(v1::Compare::OPERATOR_EQUAL);
  cmp->set_value("1");
  auto* p1 = txn.add_operations()->mutable_put();
  p1->set_namespace_("a");
  p1->set_key("x");
  p1->set_value("2");
  auto* p2 = txn.add_operations()->mutable_put();
  p2->set_namespace_("b");
  p2->set_key("y");
  p2->set_value("3");
  auto* d = txn.add_operations()->mutable_delete_();
  d->set_namespace_("c");
  d->set_key("absent");
  txn.set_message("move x and y together");
  v1::TxnResponse resp;
  ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::Txn, txn, &resp).ok());
  EXPECT_EQ(resp.header().revision(), 2);
  ASSERT_THAT(resp.changes(), SizeIs(2));

  // The same Txn again: the compare fails, nothing changes, the message says which.
  grpc::Status again = client_->Call(&v1::ConfigService::Stub::Txn, txn, &resp);
  EXPECT_EQ(again.error_code(), grpc::ABORTED);
  EXPECT_THAT(again.error_message(), HasSubstr("compare 0"));
  EXPECT_EQ(client_->Head(), 2);

  v1::HistoryRequest hreq;
  v1::HistoryResponse hist;
  ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::History, hreq, &hist).ok());
  ASSERT_THAT(hist.records(), SizeIs(2));
  EXPECT_EQ(hist.records(0).revision(), 2);
  EXPECT_EQ(hist.records(0).message(), "move x and y together");
  EXPECT_EQ(hist.records(0).author(), "anonymous");
  EXPECT_THAT(hist.records(0).changes(), SizeIs(2));
  EXPECT_EQ(hist.records(1).revision(), 1);
}

TEST_F(ServerE2ETest, HistoryPagesNewestFirstAndFilters) {
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(client_->Put("ns", i % 2 ? "odd" : "even", "v").ok());
  v1::HistoryRequest req;
  req.set_namespace_("ns");
  req.set_key("even");
  req.set_page_size(2);
  std::vector<int64_t> revisions;
  for (int page = 0; page < 10; ++page) {
    v1::HistoryResponse resp;
    ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::History, req, &resp).ok());
    for (const auto& r : resp.records()) revisions.push_back(r.revision());
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  EXPECT_EQ(revisions, (std::vector<int64_t>{7, 5, 3, 1}));
}

TEST_F(ServerE2ETest, DiffReturnsNetChanges) {
  ASSERT_TRUE(client_->Put("ns", "a", "1").ok());  // 1
  ASSERT_TRUE(client_->Put("ns", "b", "1").ok());  // 2
  ASSERT_TRUE(client_->Put("ns", "a", "2").ok());  // 3
  ASSERT_TRUE(client_->Put("ns", "a", "1").ok());  // 4: back to its value at 2
  ASSERT_TRUE(client_->Put("ns", "c", "1").ok());  // 5
  v1::DiffRequest req;
  req.set_namespace_("ns");
  req.set_from_revision(2);
  v1::DiffResponse resp;
  ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::Diff, req, &resp).ok());
  EXPECT_EQ(resp.header().revision(), 5);
  // "a" has the same value but a new mod_revision: it is a change.
  ASSERT_THAT(resp.changes(), SizeIs(2));
  EXPECT_EQ(resp.changes(0).key(), "a");
  EXPECT_EQ(resp.changes(1).key(), "c");
  EXPECT_FALSE(resp.changes(1).has_before());
}

TEST_F(ServerE2ETest, RollbackWritesANewRevisionWithTheOldState) {
  ASSERT_TRUE(client_->Put("ns", "a", "1").ok());        // 1
  ASSERT_TRUE(client_->Put("ns", "b", "1").ok());        // 2
  ASSERT_TRUE(client_->Put("ns", "a", "broken").ok());   // 3
  ASSERT_TRUE(client_->Put("ns", "c", "new").ok());      // 4
  ASSERT_TRUE(client_->Put("other", "z", "keep").ok());  // 5
  v1::RollbackRequest req;
  req.set_namespace_("ns");
  req.set_to_revision(2);
  req.set_message("undo the broken pool size");
  v1::RollbackResponse resp;
  ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::Rollback, req, &resp).ok());
  EXPECT_EQ(resp.header().revision(), 6);
  EXPECT_THAT(resp.changes(), SizeIs(2));
  v1::GetResponse get;
  ASSERT_TRUE(client_->Get("ns", "a", &get).ok());
  EXPECT_EQ(get.entry().value(), "1");
  EXPECT_EQ(get.entry().mod_revision(), 6);
  EXPECT_EQ(client_->Get("ns", "c", &get).error_code(), grpc::NOT_FOUND);
  ASSERT_TRUE(client_->Get("other", "z", &get).ok());
  // Rolling back again changes nothing and writes nothing.
  ASSERT_TRUE(client_->Call(&v1::ConfigService::Stub::Rollback, req, &resp).ok());
  EXPECT_EQ(resp.header().revision(), 6);
  EXPECT_THAT(resp.changes(), SizeIs(0));
}

TEST_F(ServerE2ETest, MinRevisionWaitsForTheWrite) {
  ASSERT_TRUE(client_->Put("ns", "k", "v1").ok());
  v1::GetRequest req;
  req.set_namespace_("ns");
  req.set_key("k");
  req.set_min_revision(2);
  v1::GetResponse resp;
  grpc::Status status;
  std::thread reader([&] {
    status = client_->Call(&v1::ConfigService::Stub::Get, req, &resp, absl::Seconds(20));
  });
  absl::SleepFor(absl::Milliseconds(200));  // let the read start waiting; not an ordering aid
  ASSERT_TRUE(client_->Put("ns", "k", "v2").ok());
  reader.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.entry().value(), "v2");
  EXPECT_GE(resp.header().revision(), 2);

  req.set_min_revision(100);
  EXPECT_EQ(client_->Call(&v1::ConfigService::Stub::Get, req, &resp, absl::Milliseconds(300))
                .error_code(),
            grpc::DEADLINE_EXCEEDED);
}

// Every bad input: the documented status, a message naming the problem, and
// nothing changed.
TEST_F(ServerE2ETest, BadInputIsRejectedAndChangesNothing) {
  ASSERT_TRUE(client_->Put("ns", "k", "v").ok());
  const int64_t head = client_->Head();
  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    std::string message;
  };
  auto put = [&](std::string ns, std::string key, std::string value) {
    return [=, this] { return client_->Put(ns, key, value); };
  };
  auto txn = [&](std::function<void(v1::TxnRequest*)> fill) {
    return [=, this] {
      v1::TxnRequest req;
      fill(&req);
      v1::TxnResponse resp;
      return client_->Call(&v1::ConfigService::Stub::Txn, req, &resp);
    };
  };
  auto add_put = [](v1::TxnRequest* r, const std::string& ns, const std::string& key,
                    size_t value_bytes = 1) {
    auto* p = r->add_operations()->mutable_put();
    p->set_namespace_(ns);
    p->set_key(key);
    p->set_value(std::string(value_bytes, 'v'));
  };
  const std::vector<Case> cases = {
      {"empty key", put("ns", "", "v"), grpc::INVALID_ARGUMENT, "key is empty"},
      {"long key", put("ns", std::string(257, 'k'), "v"), grpc::INVALID_ARGUMENT, "over the limit"},
      {"bad char", put("ns", "a b", "v"), grpc::INVALID_ARGUMENT, "outside"},
      {"bad utf8", put("ns", "\xc3\x28", "v"), grpc::INVALID_ARGUMENT, "UTF-8"},
      {"bad namespace", put("Bad//NS", "k", "v"), grpc::INVALID_ARGUMENT, "namespace"},
      {"empty namespace", put("", "k", "v"), grpc::INVALID_ARGUMENT, "namespace is empty"},
      {"big value", put("ns", "k", std::string((1 << 20) + 1, 'v')), grpc::INVALID_ARGUMENT,
       "value is"},
      {"txn too many ops", txn([&](v1::TxnRequest* r) {
         for (int i = 0; i < 129; ++i) add_put(r, "ns", absl::StrCat("k", i));
       }),
       grpc::INVALID_ARGUMENT, "129 operations"},
      {"txn too many bytes", txn([&](v1::TxnRequest* r) {
         for (int i = 0; i < 5; ++i) add_put(r, "ns", absl::StrCat("k", i), 900 * 1024);
       }),
       grpc::INVALID_ARGUMENT, "over the limit"},
      {"txn duplicate key", txn([&](v1::TxnRequest* r) {
         add_put(r, "ns", "dup");
         add_put(r, "ns", "dup");
       }),
       grpc::INVALID_ARGUMENT, "earlier operation"},
      {"compare future revision", txn([&](v1::TxnRequest* r) {
         auto* c = r->add_compares();
         c->set_namespace_("ns");
         c->set_key("k");
         c->set_target(v1::Compare::TARGET_MOD_REVISION);
         c->set_op(v1::Compare::OPERATOR_EQUAL);
         c->set_number(head + 1000);
         add_put(r, "ns", "k");
       }),
       grpc::INVALID_ARGUMENT, "revision"},
      {"compare unspecified target", txn([&](v1::TxnRequest* r) {
         auto* c = r->add_compares();
         c->set_namespace_("ns");
         c->set_key("k");
         add_put(r, "ns", "k");
       }),
       grpc::INVALID_ARGUMENT, "target"},
      {"tampered page token",
       [this] {
         v1::ListRequest req;
         req.set_namespace_("ns");
         req.set_page_token("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
         v1::ListResponse resp;
         return client_->Call(&v1::ConfigService::Stub::List, req, &resp);
       },
       grpc::INVALID_ARGUMENT, "page_token"},
      {"over the message limit", put("ns", "k", std::string(6 << 20, 'v')),
       grpc::RESOURCE_EXHAUSTED, ""},
  };
  for (const Case& c : cases) {
    grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.message)) << c.name;
  }
  EXPECT_EQ(client_->Head(), head);
  v1::GetResponse get;
  ASSERT_TRUE(client_->Get("ns", "k", &get).ok());
  EXPECT_EQ(get.entry().value(), "v");
}

TEST_F(ServerE2ETest, ConcurrentCompareAndSetHasExactlyOneWinnerPerRound) {
  v1::PutResponse put;
  ASSERT_TRUE(client_->Put("ns", "counter", "0", &put).ok());
  int64_t expected = put.header().revision();
  constexpr int kRounds = 10;
  constexpr int kWriters = 8;
  for (int round = 0; round < kRounds; ++round) {
    std::atomic<int> wins{0};
    std::atomic<int> aborted{0};
    std::vector<std::thread> writers;
    std::vector<int64_t> winner_revision(kWriters, 0);
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        v1::PutResponse resp;
        grpc::Status s =
            client_->Put("ns", "counter", absl::StrCat(round, "-", w), &resp, expected);
        if (s.ok()) {
          ++wins;
          winner_revision[w] = resp.header().revision();
        } else if (s.error_code() == grpc::ABORTED) {
          ++aborted;
        }
      });
    }
    for (auto& t : writers) t.join();
    ASSERT_EQ(wins.load(), 1) << "round " << round;
    ASSERT_EQ(aborted.load(), kWriters - 1);
    expected = *std::max_element(winner_revision.begin(), winner_revision.end());
  }
  EXPECT_EQ(client_->Head(), expected);
}

TEST_F(ServerE2ETest, HealthAnswersServing) {
  auto overall = testing::CheckHealth(client_->channel());
  ASSERT_TRUE(overall.ok()) << overall.status();
  EXPECT_EQ(*overall, testing::ServingStatus::kServing);
  auto config = testing::CheckHealth(client_->channel(), "snapconf.v1.ConfigService");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(*config, testing::ServingStatus::kServing);
}

// A generic tool that knows nothing of snapconf (buf curl) finds the API
// through server reflection and calls it.
TEST_F(ServerE2ETest, ReflectionServesGenericTools) {
  ASSERT_TRUE(client_->Put("ns", "k", "v").ok());
  const std::string url = absl::StrCat("http://", server_->address());
  testing::CommandOptions slow;
  slow.timeout = absl::Seconds(120);
  auto status = testing::RunCommand(
      {"/usr/bin/env", "npx", "--yes", "@bufbuild/buf@1.75.0", "curl", "--protocol", "grpc",
       "--http2-prior-knowledge", url + "/snapconf.v1.AdminService/GetServerStatus"},
      slow);
  ASSERT_EQ(status.exit_code, 0) << status.stderr_text;
  EXPECT_THAT(status.stdout_text, HasSubstr(R"("store": "sqlite")"));
  auto got = testing::RunCommand(
      {"/usr/bin/env", "npx", "--yes", "@bufbuild/buf@1.75.0", "curl", "--protocol", "grpc",
       "--http2-prior-knowledge", "-d", R"({"namespace":"bnM=","key":"aw=="})",
       url + "/snapconf.v1.ConfigService/Get"},
      slow);
  ASSERT_EQ(got.exit_code, 0) << got.stderr_text;
  EXPECT_THAT(got.stdout_text, HasSubstr(R"("value": "dg==")"));
}

TEST_F(ServerE2ETest, GracefulShutdownKeepsEverythingAcrossRestart) {
  std::map<std::string, std::string> written;
  for (int i = 0; i < 50; ++i) {
    const std::string key = absl::StrCat("k", i % 17);
    const std::string value = absl::StrCat("v", i);
    ASSERT_TRUE(client_->Put("ns", key, value).ok());
    written[key] = value;
  }
  const int64_t head = client_->Head();
  ASSERT_OK_AND_ASSIGN(int exit_code, server_->Terminate());
  EXPECT_EQ(exit_code, 0);
  ASSERT_THAT(server_->Restart(), IsOk());
  client_ = std::make_unique<Client>(server_->address());
  EXPECT_EQ(client_->Head(), head);
  for (const auto& [key, value] : written) {
    v1::GetResponse get;
    ASSERT_TRUE(client_->Get("ns", key, &get).ok());
    EXPECT_EQ(get.entry().value(), value);
  }
  v1::PutResponse put;
  ASSERT_TRUE(client_->Put("ns", "after", "restart", &put).ok());
  EXPECT_EQ(put.header().revision(), head + 1);
}

TEST_F(ServerE2ETest, SigkillLosesNoAcknowledgedWrite) {
  constexpr int kCycles = 3;
  constexpr int kWriters = 4;
  std::map<std::string, std::pair<int64_t, std::string>> acked;  // key -> (revision, value)
  int64_t highest_acked = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    std::mutex mu;
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        Client c(server_->address());
        for (int i = 0; i < 100000 && !stop.load(); ++i) {
          const std::string key = absl::StrCat("c", cycle, "w", w, "k", i % 5);
          const std::string value = absl::StrCat(i);
          v1::PutResponse resp;
          grpc::Status s = c.Put("crash", key, value, &resp);
          if (!s.ok()) return;
          std::lock_guard<std::mutex> lock(mu);
          acked[key] = {resp.header().revision(), value};
          highest_acked = std::max(highest_acked, resp.header().revision());
        }
      });
    }
    absl::SleepFor(absl::Milliseconds(300 + 100 * cycle));
    ASSERT_THAT(server_->Kill(), IsOk());
    stop = true;
    for (auto& t : writers) t.join();
    ASSERT_THAT(server_->Restart(), IsOk());
    client_ = std::make_unique<Client>(server_->address());
    ASSERT_GE(client_->Head(), highest_acked);
    for (const auto& [key, rv] : acked) {
      v1::GetResponse get;
      ASSERT_TRUE(client_->Get("crash", key, &get).ok()) << key;
      // Later writes to a key are acknowledged later; the store holds the last one at least.
      EXPECT_GE(get.entry().mod_revision(), rv.first) << key;
      if (get.entry().mod_revision() == rv.first) {
        EXPECT_EQ(get.entry().value(), rv.second);
      }
    }
  }
  EXPECT_GT(highest_acked, 0);
}

TEST(ServerRetentionTest, RevisionsOutsideHistoryAreOutOfRange) {
  testing::ServerOptions options;
  options.extra_flags = {"--history-max-records=3"};
  ASSERT_OK_AND_ASSIGN(auto server, testing::ServerProcess::Start(options));
  Client client(server->address());
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(client.Put("ns", "k", absl::StrCat("v", i)).ok());
  // Compaction runs after each group; give it a bounded moment to catch up.
  v1::HistoryResponse history;
  for (int attempt = 0; attempt < 50; ++attempt) {
    v1::HistoryRequest req;
    history.Clear();
    ASSERT_TRUE(client.Call(&v1::ConfigService::Stub::History, req, &history).ok());
    if (history.records_size() == 3) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(history.records_size(), 3);
  EXPECT_EQ(history.records(0).revision(), 10);
  EXPECT_EQ(history.records(2).revision(), 8);

  v1::GetResponse get;
  ASSERT_TRUE(client.Get("ns", "k", &get, 7).ok());  // 8..10 undone from the head
  EXPECT_EQ(get.entry().value(), "v7");
  EXPECT_EQ(client.Get("ns", "k", &get, 6).error_code(), grpc::OUT_OF_RANGE);

  v1::HistoryRequest old;
  old.set_from_revision(2);
  EXPECT_EQ(client.Call(&v1::ConfigService::Stub::History, old, &history).error_code(),
            grpc::OUT_OF_RANGE);
  v1::DiffRequest diff;
  diff.set_namespace_("ns");
  diff.set_from_revision(3);
  v1::DiffResponse diff_resp;
  EXPECT_EQ(client.Call(&v1::ConfigService::Stub::Diff, diff, &diff_resp).error_code(),
            grpc::OUT_OF_RANGE);
  v1::RollbackRequest rollback;
  rollback.set_namespace_("ns");
  rollback.set_to_revision(2);
  v1::RollbackResponse rollback_resp;
  EXPECT_EQ(client.Call(&v1::ConfigService::Stub::Rollback, rollback, &rollback_resp).error_code(),
            grpc::OUT_OF_RANGE);
}

// Runs snapconfd in the foreground expecting it to refuse to start.
testing::CommandResult RunFailingServer(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {testing::SnapconfdBinary()};
  argv.insert(argv.end(), flags.begin(), flags.end());
  testing::CommandOptions options;
  options.timeout = absl::Seconds(20);
  return testing::RunCommand(argv, options);
}

TEST(ServerStartupTest, PortInUseFailsWithOneSentence) {
  ASSERT_OK_AND_ASSIGN(auto first, testing::ServerProcess::Start());
  const std::string dir = first->data_dir() + "-second";
  auto result =
      RunFailingServer({absl::StrCat("--listen=", first->address()), "--data-dir=" + dir});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.stderr_text, HasSubstr("cannot listen on " + first->address()));
}

TEST(ServerStartupTest, UnwritableDataDirFailsWithOneSentence) {
  // A path below a regular file can never be a directory, even for root.
  ASSERT_OK_AND_ASSIGN(auto server, testing::ServerProcess::Start());
  const std::string file = server->data_dir() + "/page-token.key";
  auto result = RunFailingServer({"--listen=127.0.0.1:0", "--data-dir=" + file + "/data"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.stderr_text, HasSubstr("data dir"));
}

TEST(ServerStartupTest, CorruptDatabaseIsRefused) {
  ASSERT_OK_AND_ASSIGN(auto server, testing::ServerProcess::Start());
  {
    Client client(server->address());
    ASSERT_TRUE(client.Put("ns", "k", "v").ok());
  }
  ASSERT_OK_AND_ASSIGN(int exit_code, server->Terminate());
  ASSERT_EQ(exit_code, 0);
  {
    std::ofstream db(server->data_dir() + "/snapconf.db", std::ios::binary | std::ios::trunc);
    db << std::string(8192, 'x');
  }
  auto result = RunFailingServer({"--listen=127.0.0.1:0", "--data-dir=" + server->data_dir()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.stderr_text, HasSubstr("snapconfd: cannot start"));
}

}  // namespace
}  // namespace snapconf
