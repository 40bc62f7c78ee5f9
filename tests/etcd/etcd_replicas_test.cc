// snapconfd replicas on a real 3-member etcd cluster (--store=etcd): the
// ConfigService behaviours, compare-and-set races between replicas, reads
// with min_revision across replicas, watchers on every replica checked by the
// watch contract checker, and a client that moves on when its replica is
// SIGKILLed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "client/config_client.h"
#include "common/mutex.h"
#include "tests/etcd/etcd_test_util.h"
#include "tests/etcd/traced_watch.h"
#include "tests/testing/status_matchers.h"
#include "tests/watch/contract_checker.h"

namespace snapconf {
namespace {

using client::ConfigClient;
using client::ConfigClientOptions;
using etcd_testing::Dump;
using etcd_testing::Eventually;
using etcd_testing::ExpectClean;
using etcd_testing::Get;
using etcd_testing::Head;
using etcd_testing::In;
using etcd_testing::Node;
using etcd_testing::Put;
using etcd_testing::StartReplica;
using etcd_testing::TracedWatch;
using etcd_testing::UniquePrefix;
using testing::EtcdCluster;
using ::testing::HasSubstr;
using testing::ServerProcess;
using watch_testing::ContractChecker;
using watch_testing::ReadFullHistory;
using watch_testing::WatchTrace;

class EtcdReplicasTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> started = EtcdCluster::Start();
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }

  // `n` replicas on the cluster under a fresh prefix.
  std::vector<std::unique_ptr<ServerProcess>> StartReplicas(int n) {
    const std::string prefix =
        UniquePrefix(::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::vector<std::unique_ptr<ServerProcess>> out;
    for (int i = 0; i < n; ++i) {
      absl::StatusOr<std::unique_ptr<ServerProcess>> p =
          StartReplica(cluster_->endpoints(), prefix);
      EXPECT_TRUE(p.ok()) << p.status();
      if (!p.ok()) return {};
      out.push_back(*std::move(p));
    }
    return out;
  }

  static EtcdCluster* cluster_;
};

EtcdCluster* EtcdReplicasTest::cluster_ = nullptr;

grpc::Status RawTxn(Node& node, const v1::TxnRequest& req, v1::TxnResponse* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(10)));
  return node.config->Txn(&ctx, req, resp);
}

TEST_F(EtcdReplicasTest, ConfigServiceBehavesAsOnOneNode) {
  auto replicas = StartReplicas(2);
  ASSERT_EQ(replicas.size(), 2u);
  Node a(replicas[0]->address()), b(replicas[1]->address());

  ASSERT_OK_AND_ASSIGN(int64_t r1, Put(a, "app/prod", "db.max", "32"));
  ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(b, "app/prod", "db.max", r1));
  EXPECT_EQ(got.entry().value(), "32");
  EXPECT_EQ(got.entry().version(), 1);
  EXPECT_EQ(got.entry().create_revision(), r1);
  EXPECT_EQ(got.entry().mod_revision(), r1);

  // Compare-and-set on the key's mod_revision, through either replica.
  ASSERT_OK_AND_ASSIGN(int64_t r2, Put(b, "app/prod", "db.max", "64", r1));
  EXPECT_GT(r2, r1);
  absl::StatusOr<int64_t> stale = Put(a, "app/prod", "db.max", "128", r1);
  EXPECT_EQ(stale.status().code(), absl::StatusCode::kAborted) << stale.status();
  EXPECT_THAT(std::string(stale.status().message()), HasSubstr("mod_revision"));
  // A compare on a revision nobody has seen is the caller's mistake.
  absl::StatusOr<int64_t> future = Put(a, "app/prod", "db.max", "1", r2 + 1000000);
  EXPECT_EQ(future.status().code(), absl::StatusCode::kInvalidArgument) << future.status();

  // A Txn whose compares cover value, existence and the namespace revision.
  v1::TxnRequest txn;
  auto* c1 = txn.add_compares();
  c1->set_namespace_("app/prod");
  c1->set_key("db.min");
  c1->set_target(v1::Compare::TARGET_EXISTS);
  c1->set_op(v1::Compare::OPERATOR_EQUAL);
  c1->set_number(0);
  auto* c2 = txn.add_compares();
  c2->set_namespace_("app/prod");
  c2->set_key("db.min");
  c2->set_target(v1::Compare::TARGET_VALUE);
  c2->set_op(v1::Compare::OPERATOR_NOT_EQUAL);
  c2->set_value("anything");
  auto* c3 = txn.add_compares();
  c3->set_namespace_("app/prod");
  c3->set_target(v1::Compare::TARGET_NAMESPACE_REVISION);
  c3->set_op(v1::Compare::OPERATOR_EQUAL);
  c3->set_number(r2);
  auto* put = txn.add_operations()->mutable_put();
  put->set_namespace_("app/prod");
  put->set_key("db.min");
  put->set_value("4");
  auto* put2 = txn.add_operations()->mutable_put();
  put2->set_namespace_("app/dev");
  put2->set_key("db.min");
  put2->set_value("1");
  v1::TxnResponse txn_resp;
  grpc::Status s = RawTxn(b, txn, &txn_resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const int64_t r3 = txn_resp.header().revision();
  EXPECT_EQ(txn_resp.changes_size(), 2);
  // The same Txn again: the namespace revision moved on.
  s = RawTxn(a, txn, &txn_resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();

  // Delete, then read it back from the other replica.
  {
    v1::DeleteRequest del;
    del.set_namespace_("app/dev");
    del.set_key("db.min");
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    v1::DeleteResponse resp;
    ASSERT_TRUE(a.config->Delete(&ctx, del, &resp).ok());
    absl::StatusOr<v1::GetResponse> gone = Get(b, "app/dev", "db.min", resp.header().revision());
    EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound) << gone.status();
  }

  // History, newest first, with authors, read through the other replica.
  {
    v1::HistoryRequest req;
    req.set_namespace_("app/prod");
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    v1::HistoryResponse resp;
    ASSERT_TRUE(a.config->History(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.records_size(), 3);
    EXPECT_EQ(resp.records(0).revision(), r3);
    EXPECT_EQ(resp.records(1).revision(), r2);
    EXPECT_EQ(resp.records(2).revision(), r1);
    EXPECT_EQ(resp.records(2).author(), "anonymous");
    EXPECT_EQ(resp.records(1).changes(0).before().value(), "32");
    EXPECT_EQ(resp.records(1).changes(0).after().value(), "64");
  }
  // Diff between two revisions.
  {
    v1::DiffRequest req;
    req.set_namespace_("app/prod");
    req.set_from_revision(r1);
    req.set_to_revision(r3);
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    v1::DiffResponse resp;
    ASSERT_TRUE(b.config->Diff(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.changes_size(), 2);
  }
  // Rollback to r1 writes a new revision restoring the old state.
  int64_t r_back = 0;
  {
    v1::RollbackRequest req;
    req.set_namespace_("app/prod");
    req.set_to_revision(r1);
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    v1::RollbackResponse resp;
    grpc::Status st = b.config->Rollback(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    r_back = resp.header().revision();
    EXPECT_GT(r_back, r3);
  }
  ASSERT_OK_AND_ASSIGN(got, Get(a, "app/prod", "db.max", r_back));
  EXPECT_EQ(got.entry().value(), "32");
  absl::StatusOr<v1::GetResponse> min_gone = Get(a, "app/prod", "db.min", r_back);
  EXPECT_EQ(min_gone.status().code(), absl::StatusCode::kNotFound);
  // Reading an older revision works on either replica.
  ASSERT_OK_AND_ASSIGN(auto old_a, Dump(a, "app/prod", r2));
  ASSERT_OK_AND_ASSIGN(auto old_b, Dump(b, "app/prod", r2));
  EXPECT_EQ(old_a, old_b);
  EXPECT_EQ(old_a.second, absl::StrCat("db.max=64@", r2, "/2\n"));
}

// Each replica keeps its own audit log of the calls it answered, read
// through that replica's ListAuditEvents.
TEST_F(EtcdReplicasTest, EachReplicaAuditsTheWritesItAnswered) {
  auto replicas = StartReplicas(2);
  ASSERT_EQ(replicas.size(), 2u);
  Node a(replicas[0]->address()), b(replicas[1]->address());
  ASSERT_OK_AND_ASSIGN(int64_t ra, Put(a, "app/prod", "via-a", "1"));
  ASSERT_OK_AND_ASSIGN(int64_t rb, Put(b, "app/prod", "via-b", "1"));
  EXPECT_FALSE(Put(b, "app/prod", "via-b", "2", /*expected_mod=*/ra).ok());
  const auto audit = [](Node& node) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(10)));
    v1::ListAuditEventsRequest req;
    v1::ListAuditEventsResponse resp;
    const grpc::Status s = node.admin->ListAuditEvents(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  };
  const v1::ListAuditEventsResponse on_a = audit(a);
  ASSERT_EQ(on_a.events_size(), 1);
  EXPECT_EQ(on_a.events(0).keys(0), "app/prod/via-a");
  EXPECT_EQ(on_a.events(0).new_revision(), ra);
  EXPECT_EQ(on_a.events(0).outcome(), "OK");
  const v1::ListAuditEventsResponse on_b = audit(b);
  ASSERT_EQ(on_b.events_size(), 2);
  EXPECT_EQ(on_b.events(0).outcome(), "ABORTED");
  EXPECT_EQ(on_b.events(0).new_revision(), 0);
  EXPECT_EQ(on_b.events(1).keys(0), "app/prod/via-b");
  EXPECT_EQ(on_b.events(1).new_revision(), rb);
}

TEST_F(EtcdReplicasTest, ConcurrentCompareAndSetHasExactlyOneWinnerPerRace) {
  auto replicas = StartReplicas(3);
  ASSERT_EQ(replicas.size(), 3u);
  std::vector<std::unique_ptr<Node>> nodes;
  for (auto& r : replicas) nodes.push_back(std::make_unique<Node>(r->address()));
  ASSERT_OK_AND_ASSIGN(int64_t mod, Put(*nodes[0], "race/ns", "counter", "0"));
  constexpr int kRounds = 15;
  for (int round = 1; round <= kRounds; ++round) {
    std::vector<absl::StatusOr<int64_t>> results(nodes.size(), absl::UnknownError("not run"));
    std::vector<std::thread> threads;
    for (size_t i = 0; i < nodes.size(); ++i) {
      threads.emplace_back([&, i] {
        results[i] = Put(*nodes[i], "race/ns", "counter", absl::StrCat(round, "-", i), mod);
      });
    }
    for (auto& t : threads) t.join();
    int winners = 0;
    int64_t winner_revision = 0;
    std::string winner_value;
    for (size_t i = 0; i < results.size(); ++i) {
      if (results[i].ok()) {
        ++winners;
        winner_revision = *results[i];
        winner_value = absl::StrCat(round, "-", i);
      } else {
        EXPECT_EQ(results[i].status().code(), absl::StatusCode::kAborted) << results[i].status();
      }
    }
    ASSERT_EQ(winners, 1) << "round " << round;
    for (auto& node : nodes) {
      ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(*node, "race/ns", "counter", winner_revision));
      EXPECT_EQ(got.entry().value(), winner_value);
      EXPECT_EQ(got.entry().version(), round + 1);
    }
    mod = winner_revision;
  }
}

TEST_F(EtcdReplicasTest, ReadWithMinRevisionWaitsForTheOtherReplica) {
  auto replicas = StartReplicas(2);
  ASSERT_EQ(replicas.size(), 2u);
  Node a(replicas[0]->address()), b(replicas[1]->address());
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(int64_t r, Put(a, "read/ns", "k", absl::StrCat(i)));
    // Straight after A acknowledged, B may not have applied r yet: it waits.
    ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(b, "read/ns", "k", r));
    EXPECT_GE(got.header().revision(), r);
    EXPECT_EQ(got.entry().value(), absl::StrCat(i));
  }
  // A revision that never comes ends at the caller's deadline.
  const int64_t head = Head(b);
  absl::StatusOr<v1::GetResponse> late =
      Get(b, "read/ns", "k", head + 1000000, absl::Milliseconds(300));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded) << late.status();
}

TEST_F(EtcdReplicasTest, WatchersOnEveryReplicaSeeTheSameRevisions) {
  auto replicas = StartReplicas(3);
  ASSERT_EQ(replicas.size(), 3u);
  std::vector<std::unique_ptr<Node>> nodes;
  std::vector<std::unique_ptr<TracedWatch>> watches;
  for (auto& r : replicas) {
    nodes.push_back(std::make_unique<Node>(r->address()));
    watches.push_back(std::make_unique<TracedWatch>(r->address(), "watch/ns"));
  }
  // Writers on every replica at once; a write outside snapconf's prefix in
  // the middle makes etcd's revisions skip a number.
  std::vector<std::thread> writers;
  for (size_t i = 0; i < nodes.size(); ++i) {
    writers.emplace_back([&, i] {
      for (int j = 0; j < 15; ++j) {
        absl::StatusOr<int64_t> r =
            Put(*nodes[i], "watch/ns", absl::StrCat("k", j % 5), absl::StrCat(i, "/", j));
        EXPECT_TRUE(r.ok()) << r.status();
      }
    });
  }
  testing::CommandResult outside = cluster_->Etcdctl({"put", "/not-snapconf", "x"});
  EXPECT_EQ(outside.exit_code, 0) << outside.stderr_text;
  for (auto& t : writers) t.join();
  ASSERT_OK_AND_ASSIGN(int64_t last, Put(*nodes[0], "watch/ns", "last", "1"));

  for (size_t i = 0; i < watches.size(); ++i) {
    EXPECT_TRUE(Eventually([&] { return watches[i]->revision() >= last; }))
        << "watcher " << i << " at " << watches[i]->revision();
  }
  ASSERT_OK_AND_ASSIGN(std::vector<v1::ChangeRecord> history, ReadFullHistory(nodes[1]->channel));
  ContractChecker checker(history);
  for (size_t i = 0; i < watches.size(); ++i) {
    ExpectClean(checker, watches[i]->trace(), last, absl::StrCat("watcher on replica ", i));
  }
  // Every replica holds the same state at the same revision.
  ASSERT_OK_AND_ASSIGN(auto expected, Dump(*nodes[0], "watch/ns", last));
  for (size_t i = 1; i < nodes.size(); ++i) {
    ASSERT_OK_AND_ASSIGN(auto dump, Dump(*nodes[i], "watch/ns", last));
    EXPECT_EQ(dump, expected) << "replica " << i;
  }
}

TEST_F(EtcdReplicasTest, ClientMovesToAnotherReplicaWhenItsReplicaIsKilled) {
  auto replicas = StartReplicas(2);
  ASSERT_EQ(replicas.size(), 2u);
  Node b(replicas[1]->address());
  {
    const absl::Status _s = (Put(b, "client/ns", "k", "0").status());
    ASSERT_TRUE(_s.ok()) << _s;
  }

  Mutex mu;
  WatchTrace trace;
  ConfigClientOptions options;
  options.endpoints = {replicas[0]->address(), replicas[1]->address()};
  options.watches = {{"client/ns", {}}};
  options.backoff_base = absl::Milliseconds(20);
  options.backoff_max = absl::Milliseconds(200);
  options.connect_timeout = absl::Seconds(1);
  options.stream_observer_for_test = [&](bool is_create, const std::string& bytes) {
    MutexLock lock(&mu);
    if (is_create) {
      v1::WatchCreateRequest c;
      c.ParseFromString(bytes);
      trace.Start(c);
    } else {
      v1::WatchResponse r;
      r.ParseFromString(bytes);
      trace.Receive(r);
    }
  };
  ASSERT_OK_AND_ASSIGN(ConfigClient client, ConfigClient::Create(options));
  {
    const absl::Status _s = (client.WaitUntilReady(absl::Now() + absl::Seconds(10)));
    ASSERT_TRUE(_s.ok()) << _s;
  }
  EXPECT_EQ(client.Status().endpoint, replicas[0]->address());

  int64_t last = 0;
  for (int i = 1; i <= 30; ++i) {
    if (i == 10) {
      const absl::Status _s = (replicas[0]->Kill());
      ASSERT_TRUE(_s.ok()) << _s;
    }
    ASSERT_OK_AND_ASSIGN(last, Put(b, "client/ns", "k", absl::StrCat(i)));
  }
  {
    const absl::Status _s = (client.WaitForRevision(last, absl::Now() + absl::Seconds(15)));
    ASSERT_TRUE(_s.ok()) << _s;
  }
  EXPECT_EQ(client.Get("client/ns", "k"), "30");
  EXPECT_EQ(client.Status().endpoint, replicas[1]->address());

  ASSERT_OK_AND_ASSIGN(std::vector<v1::ChangeRecord> history, ReadFullHistory(b.channel));
  ContractChecker checker(history);
  WatchTrace copy;
  {
    MutexLock lock(&mu);
    copy = trace;
  }
  ExpectClean(checker, copy, last, "client");
}

TEST(EtcdTlsTest, ReplicasTalkToEtcdOverMutualTls) {
  testing::EtcdClusterOptions options;
  options.tls = true;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<EtcdCluster> etcd, EtcdCluster::Start(options));
  const std::string prefix = UniquePrefix("tls");
  const std::vector<std::string> tls = {"--etcd-ca=" + etcd->ca_file(),
                                        "--etcd-cert=" + etcd->client_cert_file(),
                                        "--etcd-key=" + etcd->client_key_file()};
  ASSERT_OK_AND_ASSIGN(auto a, StartReplica(etcd->endpoints(), prefix, tls));
  ASSERT_OK_AND_ASSIGN(auto b, StartReplica(etcd->endpoints(), prefix, tls));
  Node na(a->address()), nb(b->address());
  ASSERT_OK_AND_ASSIGN(int64_t r, Put(na, "tls/ns", "k", "v"));
  ASSERT_OK_AND_ASSIGN(v1::GetResponse got, Get(nb, "tls/ns", "k", r));
  EXPECT_EQ(got.entry().value(), "v");

  // Without a client certificate etcd refuses the connection: the replica
  // does not start, and says why.
  testing::ServerOptions no_cert;
  no_cert.extra_flags = etcd_testing::EtcdFlags(etcd->endpoints(), prefix);
  no_cert.extra_flags.push_back("--etcd-ca=" + etcd->ca_file());
  no_cert.ready_timeout = absl::Seconds(40);
  absl::StatusOr<std::unique_ptr<ServerProcess>> refused = ServerProcess::Start(no_cert);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("cannot"));
}

}  // namespace
}  // namespace snapconf
