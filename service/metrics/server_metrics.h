// service/metrics/server_metrics.h
//
// snapconfd's metrics: the series every part of the server updates, the gRPC
// server interceptor that counts and times every call, and the HTTP listener
// that serves them at GET /metrics (Prometheus text format 0.0.4). The list of
// metrics and their meaning is in docs/operations.md.
//
// Request counting is lock-free: the table from method name to its series is
// built before the server starts and never changes, so the interceptor finds
// a call's counters without a lock; each counter is sharded per thread.
//
// Thread safety: every method may be called from any thread once the object
// is constructed; the RegisterMethods calls happen before the gRPC server is
// built.
//
//   ServerMetrics metrics;
//   builder.experimental().SetInterceptorCreators(metrics.InterceptorCreators());
//   metrics.AddGauge(...);
//   MetricsHttpServer http(&metrics.registry());
//   RETURN_IF_ERROR(http.Bind("127.0.0.1:9090")); http.Start();
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/support/server_interceptor.h"
#include "service/metrics/metrics.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace snapconf {

// gRPC status codes 0..16.
inline constexpr size_t kGrpcCodes = 17;

// Series of one RPC method.
struct MethodMetrics {
  std::array<metrics::Counter*, kGrpcCodes> by_code{};
  metrics::Histogram* latency = nullptr;
};

class ServerMetrics {
 public:
  ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  metrics::Registry& registry() { return registry_; }

  // Every method of the named services (from the generated descriptors).
  // Calls to methods not registered are counted under method="other".
  void RegisterServices(const std::vector<std::string>& full_service_names);
  // Methods by full name ("/grpc.health.v1.Health/Check"), for services
  // whose descriptors are not linked in (gRPC's health service).
  void RegisterMethods(const std::vector<std::string>& full_method_names);

  // Interceptor factories for ServerBuilder::experimental().SetInterceptorCreators.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
  InterceptorCreators();

  // The series of `method` ("/pkg.Service/Method"); "other" when unknown.
  MethodMetrics* ForMethod(absl::string_view method);

  // Write path.
  metrics::Histogram* commit_latency() const { return commit_latency_; }
  metrics::Histogram* commit_group_size() const { return commit_group_size_; }
  metrics::Histogram* snapshot_build() const { return snapshot_build_; }
  metrics::Histogram* commit_persist() const { return commit_persist_; }

 private:
  MethodMetrics* AddMethod(const std::string& name);

  metrics::Registry registry_;
  // Built before serving, read-only afterwards.
  absl::flat_hash_map<std::string, std::unique_ptr<MethodMetrics>> methods_;
  std::unique_ptr<MethodMetrics> other_;
  metrics::Histogram* commit_latency_ = nullptr;
  metrics::Histogram* commit_group_size_ = nullptr;
  metrics::Histogram* snapshot_build_ = nullptr;
  metrics::Histogram* commit_persist_ = nullptr;
};

// The HTTP listener of GET /metrics; every other path answers 404.
class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(const metrics::Registry* registry);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  // Binds `listen` (host:port, [v6]:port; port 0 picks one). UNAVAILABLE when
  // the address cannot be bound, INVALID_ARGUMENT when it is malformed.
  absl::Status Bind(const std::string& listen);
  // Serves on a thread of its own until Stop().
  void Start();
  // Stops serving and joins the thread. Idempotent.
  void Stop();

  // host:port actually bound.
  const std::string& address() const { return address_; }

 private:
  const metrics::Registry* const registry_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::atomic<bool> returned_{false};  // the serving thread left its loop
  std::string address_;
};

}  // namespace snapconf
