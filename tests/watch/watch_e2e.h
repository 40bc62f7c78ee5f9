// tests/watch/watch_e2e.h
//
// Helpers of the end-to-end watch tests (real snapconfd processes over gRPC):
// channels, writes, the server's head, watch requests, and checking a
// watcher's trace with the contract checker (with the trace printed when it
// breaks the contract).
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.pb.h"
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

}  // namespace snapconf::watch_testing
