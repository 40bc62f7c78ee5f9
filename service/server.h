// service/server.h
//
// Server assembles snapconfd: the store, the Engine, the gRPC services, the
// health service and reflection. The process entry point and tests drive it:
// Start(), then Shutdown() once.
//
// Thread safety: Start/Shutdown from one thread; CheckHealth and address()
// from any thread after Start.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "service/engine.h"
#include "service/limits.h"
#include "service/metrics/server_metrics.h"
#include "service/security/audit.h"
#include "service/security/policy.h"
#include "service/security/rate_limit.h"
#include "service/security/transport.h"
#include "service/store/store.h"
#include "service/watch/watch_hub.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace snapconf {

class ConfigServiceImpl;
class AdminServiceImpl;
class WatchServiceImpl;

struct ServerOptions {
  std::string listen = "127.0.0.1:7070";
  std::string data_dir = "./snapconf-data";
  std::string store = "sqlite";
  // --- etcd store (service/store/etcd) ---
  std::vector<std::string> etcd_endpoints;
  std::string etcd_prefix = "/snapconf/";
  std::string etcd_ca_file, etcd_cert_file, etcd_key_file;
  absl::Duration etcd_request_timeout = absl::Seconds(5);
  // --- end etcd store ---
  std::string node_id;  // default: the bound address
  absl::Duration grace_period = absl::Seconds(5);
  RetentionPolicy retention;
  Limits limits;
  EngineOptions engine;
  // --- watch fan-out (service/watch) ---
  WatchHubOptions watch;
  // Server keepalive pings on idle connections, so dead subscribers' streams
  // are reaped; clients may ping no more often than keepalive_min_client_ping.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  absl::Duration keepalive_min_client_ping = absl::Seconds(10);
  // --- end watch fan-out ---
  // TLS, tokens and the loopback-only default (service/security/transport.h).
  TransportSecurityOptions security;
  // Roles and bindings (service/security/policy.h), re-read when changed.
  std::string policy_file;
  // --- metrics (service/metrics) ---
  // host:port of the HTTP listener of GET /metrics; empty: no metrics. Plain
  // HTTP, so loopback only unless security.allow_insecure_non_loopback.
  std::string metrics_listen;
  // --- end metrics ---
  // Request rate and watch streams per identity (service/security/rate_limit.h).
  IdentityLimitOptions identity_limits;
  // Audit log (service/security/audit.h): empty means <data_dir>/audit.log.
  std::string audit_log;
  int64_t audit_log_max_bytes = 64 << 20;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Opens the store, loads it and starts serving. Errors are one sentence.
  absl::Status Start();
  // Stops accepting calls, lets in-flight calls finish within the grace
  // period, closes the store. Idempotent.
  void Shutdown();
  // Mirrors the store's health into the gRPC health service.
  void CheckHealth();
  // Re-reads the tokens and policy files if they changed (certificates reload
  // by themselves).
  void ReloadCredentials();
  // Every open watch re-checks its access now; those that lost it end
  // (PERMISSION_DENIED, or UNAUTHENTICATED for a revoked or expired token).
  // ReloadCredentials calls it when the tokens or the policy changed or a
  // token expired; any other path that changes the policy calls it after
  // the change. Any thread.
  void OnPolicyChanged() ABSL_LOCKS_EXCLUDED(recheck_mu_);

  // host:port actually bound.
  const std::string& address() const { return address_; }
  // host:port of the metrics listener ("" when off).
  const std::string& metrics_address() const;

 private:
  // Registers the gauges read from the engine and the hub (metrics on only).
  void AddStateMetrics();
  absl::Status OpenAuditLog();

  ServerOptions options_;
  std::string address_;
  // --- metrics (service/metrics) ---
  // Declared first: every part below may report into it until destroyed.
  std::unique_ptr<ServerMetrics> metrics_;           // null when metrics are off
  std::unique_ptr<MetricsHttpServer> metrics_http_;  // stopped first on shutdown
  // --- end metrics ---
  // Early, so that it outlives everything that records into it.
  std::unique_ptr<AuditLog> audit_log_;
  // --- watch fan-out (service/watch) ---
  // Declared before the engine: the engine's store calls the hub until the
  // engine is destroyed, so the hub must outlive it.
  std::unique_ptr<WatchHub> watch_hub_;
  std::unique_ptr<WatchServiceImpl> watch_service_;
  // --- end watch fan-out ---
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<ConfigServiceImpl> config_service_;
  std::unique_ptr<AdminServiceImpl> admin_service_;
  std::unique_ptr<grpc::Server> grpc_server_;
  std::shared_ptr<TokenVerifier> tokens_;  // null without a tokens file
  std::shared_ptr<const CallerIdentities> identities_;
  std::unique_ptr<Authorizer> authz_;
  std::unique_ptr<IdentityLimits> identity_limits_;
  // What the open watches were last checked against.
  Mutex recheck_mu_;
  uint64_t checked_tokens_ ABSL_GUARDED_BY(recheck_mu_) = 0;
  uint64_t checked_policy_ ABSL_GUARDED_BY(recheck_mu_) = 0;
  absl::Time next_token_expiry_ ABSL_GUARDED_BY(recheck_mu_) = absl::InfiniteFuture();
  bool serving_ = false;
};

// Logs that a stop was requested, naming the signal.
void LogStopRequested(absl::string_view signal);

}  // namespace snapconf
