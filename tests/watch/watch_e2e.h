// tests/watch/watch_e2e.h
//
// Helpers of the end-to-end watch tests (real snapconfd processes over gRPC):
// channels, writes, the server's head, watch requests, and checking a
// watcher's trace with the contract checker (with the trace printed when it
// breaks the contract).
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.pb.h"
#include "tests/testing/server_process.h"
#include "tests/watch/contract_checker.h"

namespace snapconf::watch_testing {

inline std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

inline std::shared_ptr<grpc::Channel> Connect(const std::string& address,
                                              bool small_window = false) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect promptly after the server restarts (the default backoff is 1 s+).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  if (small_window) {
    // A reader that stops reading must stall the server's writes quickly.
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 16 * 1024);
  }
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

inline int64_t Head(const std::shared_ptr<grpc::Channel>& channel) {
  auto admin = v1::AdminService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  // Channels with the same arguments share their connection; after a restart
  // it may still be waiting out a failed attempt, and a fail-fast call would
  // report that attempt's "connection refused".
  ctx.set_wait_for_ready(true);
  v1::GetServerStatusResponse resp;
  if (!admin->GetServerStatus(&ctx, {}, &resp).ok()) return -1;
  return resp.revision();
}

inline grpc::Status Txn(v1::ConfigService::Stub& stub,
                        const std::vector<std::tuple<std::string, std::string, std::string>>& puts,
                        const std::vector<std::pair<std::string, std::string>>& deletes = {},
                        bool wait_for_ready = false) {
  v1::TxnRequest req;
  for (const auto& [ns, key, value] : puts) {
    auto* put = req.add_operations()->mutable_put();
    put->set_namespace_(ns);
    put->set_key(key);
    put->set_value(value);
  }
  for (const auto& [ns, key] : deletes) {
    auto* del = req.add_operations()->mutable_delete_();
    del->set_namespace_(ns);
    del->set_key(key);
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  ctx.set_wait_for_ready(wait_for_ready);
  v1::TxnResponse resp;
  return stub.Txn(&ctx, req, &resp);
}

inline int64_t RevisionAfter(const v1::WatchResponse& r) {
  if (r.has_reset()) return r.reset().more() ? -1 : r.reset().revision();
  if (r.has_changes()) return r.changes().revision();
  if (r.has_progress()) return r.progress().revision();
  return -1;
}

inline v1::WatchCreateRequest Create(
    const std::vector<std::pair<std::string, std::string>>& filters, int64_t start,
    v1::DeliveryMode mode) {
  v1::WatchCreateRequest c;
  std::map<std::string, std::vector<std::string>> by_ns;
  for (const auto& [ns, prefix] : filters) by_ns[ns].push_back(prefix);
  for (const auto& [ns, prefixes] : by_ns) {
    v1::WatchFilter* f = c.add_filters();
    f->set_namespace_(ns);
    for (const auto& p : prefixes) {
      if (!p.empty()) f->add_prefixes(p);
    }
  }
  c.set_start_revision(start);
  c.set_mode(mode);
  return c;
}

inline void ExpectClean(const ContractChecker& checker, const WatchTrace& trace, int64_t head,
                        const std::string& name, CheckResult* out = nullptr) {
  CheckResult r = checker.Check(trace);
  for (const auto& f : r.findings) {
    ADD_FAILURE() << name << ": " << ViolationName(f.kind) << ": " << f.detail;
  }
  if (!r.findings.empty()) {
    // The trace, one line per event, to see what led there.
    std::string dump;
    int index = 0;
    for (const auto& e : trace.events()) {
      absl::StrAppend(&dump, index++, ": ");
      if (e.is_start) {
        absl::StrAppend(&dump, "start ", e.create.start_revision(), " mode ", e.create.mode());
      } else if (e.response.has_reset()) {
        absl::StrAppend(&dump, "reset ", e.response.reset().revision(), " reason ",
                        e.response.reset().reason(), " more ", e.response.reset().more());
      } else if (e.response.has_progress()) {
        absl::StrAppend(&dump, "progress ", e.response.progress().revision());
      } else {
        const auto& c = e.response.changes();
        absl::StrAppend(&dump, "changes after ", c.after_revision(), " revision ", c.revision(),
                        c.net() ? " net" : "", " [");
        for (const auto& rc : c.revisions()) absl::StrAppend(&dump, rc.revision(), " ");
        absl::StrAppend(&dump, "]");
      }
      absl::StrAppend(&dump, "\n");
    }
    ADD_FAILURE() << name << " trace:\n" << dump;
  }
  EXPECT_EQ(r.final_revision, head) << name;
  if (out != nullptr) *out = r;
}

// The writing side of a contract run against one snapconfd: revisions older
// than the server's small log (30 revisions) before the watchers start,
// writer threads doing random multi-namespace Txns over kNamespaces, a
// SIGKILL and restart halfway through, and filler writes until head0() + 30
// (the farthest start revision a test asks for) is reached. The watching
// side is the test's: it stops when it holds final_head().
class ContractRun {
 public:
  static constexpr int kWriters = 2;
  static constexpr int kTxnsPerWriter = 120;
  inline static const std::vector<std::string> kNamespaces = {"app/a", "app/b", "app/c"};

  // Starts the server and seeds it (fatal failures on error).
  void Start() {
    testing::ServerOptions options;
    options.extra_flags = {"--watch_log_revisions=30", "--watch_progress_interval=200ms",
                           "--grace_period=1s"};
    auto started = testing::ServerProcess::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
    address_ = server_->address();
    auto stub = v1::ConfigService::NewStub(Connect(address_));
    for (int i = 0; i < 40; ++i) {
      ASSERT_TRUE(Txn(*stub, {{kNamespaces[i % 3], absl::StrCat("x", i % 7), "seed"}}).ok());
    }
    head0_ = Head(Connect(address_));
  }
  ~ContractRun() {
    for (std::thread& t : writers_) t.join();
  }

  const std::string& address() const { return address_; }
  // The head before the writers started.
  int64_t head0() const { return head0_; }

  // What watcher `n` of a run watches: a namespace, all of it or prefix "x",
  // and for every fourth watcher a second namespace.
  static std::vector<std::pair<std::string, std::string>> FiltersFor(int n) {
    std::vector<std::pair<std::string, std::string>> filters = {
        {kNamespaces[n % 3], n % 2 ? "x" : ""}};
    if (n % 4 == 0) filters.push_back({kNamespaces[(n + 1) % 3], ""});
    return filters;
  }
  // Where watcher `n` first starts: 0, in the past, at head0() + 1, in the
  // future, or at 1 (older than the log).
  int64_t StartFor(int n) const {
    const int64_t starts[] = {0, head0_ - 5, head0_ + 1, head0_ + 25, 1};
    return std::max<int64_t>(0, starts[n % 5]);
  }
  // Reads the server's history back and checks every trace against it
  // (ExpectClean, named by its key): each must be clean and end at
  // final_head(). Records the resets and net messages seen as test
  // properties. Call after RestartHalfwayAndFinish and after the readers
  // stopped.
  void CheckTraces(const std::map<std::string, const WatchTrace*>& traces) const {
    auto history = ReadFullHistory(Connect(address_));
    ASSERT_TRUE(history.ok()) << history.status();
    ASSERT_EQ(static_cast<int64_t>(history->size()), final_head());
    ContractChecker checker(*history);
    int resets = 0, nets = 0;
    for (const auto& [name, trace] : traces) {
      CheckResult r;
      ExpectClean(checker, *trace, final_head(), name, &r);
      resets += r.resets;
      nets += r.net;
    }
    ::testing::Test::RecordProperty("resets", resets);
    ::testing::Test::RecordProperty("net", nets);
  }

  // -1 until the run is over; then the last revision.
  int64_t final_head() const { return final_head_.load(); }
  bool writers_done() const { return writers_done_.load(); }

  void StartWriters() {
    for (int w = 0; w < kWriters; ++w) writers_.emplace_back([this, w] { Write(w); });
  }

  // Kills and restarts the server once half the writes are in, waits for
  // the writers, and fills up to head0() + 30; then final_head() is set.
  // Failures are not fatal: the caller still joins its readers.
  void RestartHalfwayAndFinish() {
    const absl::Time wait_until = absl::Now() + absl::Seconds(20);
    while (written_ < kWriters * kTxnsPerWriter / 2 && absl::Now() < wait_until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(server_->Kill().ok());
    const absl::Status restarted = server_->Restart(/*same_port=*/true);
    EXPECT_TRUE(restarted.ok()) << restarted << server_->ReadLog();
    EXPECT_EQ(server_->address(), address_);
    for (std::thread& t : writers_) t.join();
    writers_.clear();
    auto channel = Connect(address_);
    auto stub = v1::ConfigService::NewStub(channel);
    while (restarted.ok() && Head(channel) < head0_ + 30) {
      const grpc::Status s = Txn(*stub, {{"app/z", "pad", "p"}}, {}, /*wait_for_ready=*/true);
      if (!s.ok()) {
        ADD_FAILURE() << "a write after the restart failed: " << s.error_code() << " "
                      << s.error_message() << "\nserver log:\n"
                      << server_->ReadLog();
        break;
      }
    }
    final_head_ = Head(channel);
    writers_done_ = true;
  }

 private:
  void Write(int w) {
    std::mt19937 rng(w + 1);
    auto stub = v1::ConfigService::NewStub(Connect(address_));
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    for (int i = 0; i < kTxnsPerWriter && absl::Now() < deadline; ++i) {
      std::vector<std::tuple<std::string, std::string, std::string>> puts;
      std::vector<std::pair<std::string, std::string>> deletes;
      std::set<std::string> used;
      const int ops = 1 + static_cast<int>(rng() % 4);
      for (int j = 0; j < ops; ++j) {
        const std::string ns = kNamespaces[rng() % 3];
        const std::string key = absl::StrCat(rng() % 2 ? "x" : "y", rng() % 7);
        if (!used.insert(ns + "\n" + key).second) continue;
        if (rng() % 6 == 0) {
          deletes.push_back({ns, key});
        } else {
          puts.push_back({ns, key, absl::StrCat("w", w, "-", i)});
        }
      }
      if (!Txn(*stub, puts, deletes).ok()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // restarting
      }
      written_++;
    }
  }

  std::unique_ptr<testing::ServerProcess> server_;
  std::string address_;
  int64_t head0_ = 0;
  std::vector<std::thread> writers_;
  std::atomic<int> written_{0};
  std::atomic<bool> writers_done_{false};
  std::atomic<int64_t> final_head_{-1};
};

// Stops `server` with SIGTERM while each of `finish` reads its stream to the
// end, as real clients do, and checks that every stream ended with
// UNAVAILABLE well before the server's 10 s grace period (when each status
// arrived, not when the process exited: it may linger until idle client
// connections close) and that the server exited 0.
inline void ExpectShutdownEndsStreams(testing::ServerProcess& server,
                                      const std::vector<std::function<grpc::Status()>>& finish) {
  std::vector<grpc::Status> statuses(finish.size());
  std::vector<absl::Duration> ended(finish.size());
  std::vector<std::thread> readers;
  const absl::Time begin = absl::Now();
  for (size_t i = 0; i < finish.size(); ++i) {
    readers.emplace_back([&, i] {
      statuses[i] = finish[i]();
      ended[i] = absl::Now() - begin;
    });
  }
  auto exit_code = server.Terminate();
  for (auto& t : readers) t.join();
  ASSERT_TRUE(exit_code.ok()) << exit_code.status();
  EXPECT_EQ(*exit_code, 0);
  for (size_t i = 0; i < finish.size(); ++i) {
    EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::UNAVAILABLE)
        << i << ": " << statuses[i].error_message();
    EXPECT_NE(statuses[i].error_message().find("shutting down"), std::string::npos)
        << statuses[i].error_message();
    EXPECT_LT(ended[i], absl::Seconds(3)) << i;
  }
}

}  // namespace snapconf::watch_testing
