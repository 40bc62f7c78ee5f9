// tests/etcd/etcd_test_util.h
//
// Helpers shared by the etcd store's integration and fault tests: snapconfd
// replicas on one EtcdCluster (each test under its own --etcd-prefix, so one
// cluster serves a whole suite), and small synchronous RPC wrappers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "snapconf/v1/admin_service.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/etcd_cluster.h"
#include "tests/testing/server_process.h"

namespace snapconf::etcd_testing {

inline std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoNanoseconds(d);
}

// A prefix no other test of this process uses.
inline std::string UniquePrefix(const std::string& name) {
  static std::atomic<int> counter{0};
  return absl::StrCat("/t", getpid(), "-", counter.fetch_add(1), "-", name, "/");
}

inline std::vector<std::string> EtcdFlags(const std::string& endpoints, const std::string& prefix) {
  return {"--store=etcd", "--etcd-endpoints=" + endpoints, "--etcd-prefix=" + prefix,
          "--etcd-request-timeout=5s", "--grace-period=1s"};
}

inline absl::StatusOr<std::unique_ptr<testing::ServerProcess>> StartReplica(
    const std::string& endpoints, const std::string& prefix, std::vector<std::string> extra = {}) {
  testing::ServerOptions options;
  options.extra_flags = EtcdFlags(endpoints, prefix);
  options.extra_flags.insert(options.extra_flags.end(), extra.begin(), extra.end());
  return testing::ServerProcess::Start(options);
}

inline std::shared_ptr<grpc::Channel> Connect(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// One replica as a test sees it.
struct Node {
  explicit Node(const std::string& address)
      : channel(Connect(address)),
        config(v1::ConfigService::NewStub(channel)),
        admin(v1::AdminService::NewStub(channel)) {}
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::ConfigService::Stub> config;
  std::unique_ptr<v1::AdminService::Stub> admin;
};

inline absl::Status ToAbsl(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// Puts and returns the revision it was committed at.
inline absl::StatusOr<int64_t> Put(Node& node, const std::string& ns, const std::string& key,
                                   const std::string& value,
                                   std::optional<int64_t> expected_mod = std::nullopt) {
  v1::PutRequest req;
  req.set_namespace_(ns);
  req.set_key(key);
  req.set_value(value);
  if (expected_mod.has_value()) req.set_expected_mod_revision(*expected_mod);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(10)));
  v1::PutResponse resp;
  grpc::Status s = node.config->Put(&ctx, req, &resp);
  if (!s.ok()) return ToAbsl(s);
  return resp.header().revision();
}

inline absl::StatusOr<v1::GetResponse> Get(Node& node, const std::string& ns,
                                           const std::string& key, int64_t min_revision = 0,
                                           absl::Duration timeout = absl::Seconds(10)) {
  v1::GetRequest req;
  req.set_namespace_(ns);
  req.set_key(key);
  req.set_min_revision(min_revision);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(timeout));
  v1::GetResponse resp;
  grpc::Status s = node.config->Get(&ctx, req, &resp);
  if (!s.ok()) return ToAbsl(s);
  return resp;
}

inline int64_t Head(Node& node) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  v1::GetServerStatusResponse resp;
  if (!node.admin->GetServerStatus(&ctx, {}, &resp).ok()) return -1;
  return resp.revision();
}

// Every entry of `ns` at the node's current revision, as "key=value@mod" lines,
// with the revision they were read at: two replicas at the same revision must
// answer the same text.
inline absl::StatusOr<std::pair<int64_t, std::string>> Dump(Node& node, const std::string& ns,
                                                            int64_t revision = 0) {
  v1::ListRequest req;
  req.set_namespace_(ns);
  req.set_page_size(1000);
  req.set_revision(revision);
  req.set_min_revision(revision);
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(10)));
  v1::ListResponse resp;
  grpc::Status s = node.config->List(&ctx, req, &resp);
  if (!s.ok()) return ToAbsl(s);
  std::string text;
  for (const v1::Entry& e : resp.entries()) {
    absl::StrAppend(&text, e.key(), "=", e.value(), "@", e.mod_revision(), "/", e.version(), "\n");
  }
  return std::make_pair(resp.header().revision(), text);
}

// Polls until `done()` or `timeout`; true when done.
template <typename F>
bool Eventually(F done, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  for (int i = 0; i < 100000; ++i) {
    if (done()) return true;
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

}  // namespace snapconf::etcd_testing
