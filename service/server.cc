#include "service/server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "service/admin_service.h"
#include "service/config_service.h"
#include "service/log.h"
#include "service/page_token.h"
#include "service/security/audit_interceptor.h"
#include "service/store/etcd/etcd_store.h"
#include "service/store/sqlite/sqlite_store.h"
#include "service/validate.h"
#include "service/watch/watch_service.h"

namespace snapconf {
namespace {

constexpr char kVersion[] = "0.1.0";

// The key that authenticates page tokens lives with the data, so tokens stay
// valid across restarts; it is created once, readable by the owner only.
absl::StatusOr<std::string> LoadOrCreateTokenKey(const std::filesystem::path& dir) {
  const std::filesystem::path path = dir / "page-token.key";
  std::ifstream in(path, std::ios::binary);
  if (in) {
    std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (key.size() >= 16) return key;
    return absl::DataLossError(absl::StrCat(path.string(), " is damaged (too short)"));
  }
  ASSIGN_OR_RETURN(std::string key, PageTokenCodec::NewKey());
  const std::string tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("data dir ", dir.string(), " is not writable: ", std::strerror(errno)));
  }
  const bool ok =
      ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  }
  return key;
}

absl::Status PrepareDataDir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create data dir ", dir.string(), ": ", ec.message()));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("data dir ", dir.string(), " is not writable: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

// Calls the credentials gate refused: no handler or interceptor sees them, so
// they are counted here (every method) and audited (audited methods).
// `metrics` points at the server's member, set before the first call.
RefusedCallSink RecordRefusedCalls(AuditLog* log, const std::unique_ptr<ServerMetrics>* metrics) {
  return [log, metrics](absl::string_view method, const grpc::Status& status) {
    if (*metrics != nullptr) {
      const auto code = static_cast<size_t>(status.error_code());
      MethodMetrics* series = (*metrics)->ForMethod(method);
      series->by_code[code < kGrpcCodes ? code : static_cast<size_t>(grpc::StatusCode::UNKNOWN)]
          ->Increment();
    }
    if (!IsAuditedMethod(method)) return;
    v1::AuditEvent event;
    SetAuditTime(absl::Now(), &event);
    event.set_identity("unauthenticated");
    event.set_method(std::string(method));
    event.set_outcome(StatusCodeName(static_cast<int>(status.error_code())));
    event.set_detail(AuditText(status.error_message()));
    if (absl::Status s = log->Append(event); !s.ok()) {
      LogEvent(LogLevel::kError, "audit_not_recorded",
               {{"method", method}, {"error", s.message()}});
    }
  };
}

}  // namespace

void LogStopRequested(absl::string_view signal) {
  LogEvent(LogLevel::kInfo, "stopping", {{"signal", signal}});
}

Server::Server(ServerOptions options) : options_(std::move(options)) {}

Server::~Server() {
  Shutdown();
  if (metrics_http_) metrics_http_->Stop();  // metrics: it reads the parts below
}

const std::string& Server::metrics_address() const {
  static const std::string kNone;
  return metrics_http_ ? metrics_http_->address() : kNone;
}

absl::Status Server::Start() {
  // The audit log before the listener: the credentials gate records into it.
  RETURN_IF_ERROR(OpenAuditLog());
  // Transport security first: a refused exposure or a bad certificate fails
  // the start before anything is opened.
  ASSIGN_OR_RETURN(ServerSecurity security,
                   MakeServerSecurity(options_.listen, options_.security,
                                      RecordRefusedCalls(audit_log_.get(), &metrics_)));
  if (!security.warning.empty()) {
    LogEvent(LogLevel::kWarning, "insecure_listener",
             {{"address", options_.listen}, {"reason", security.warning}});
  }
  tokens_ = security.tokens;
  identities_ = security.identities;
  // --- metrics (service/metrics) ---
  // Plain HTTP with no authentication: loopback only unless exposure is
  // asked for, like the gRPC listener.
  if (!options_.metrics_listen.empty()) {
    if (!IsLoopbackListenAddress(options_.metrics_listen)) {
      if (!options_.security.allow_insecure_non_loopback) {
        return absl::FailedPreconditionError(absl::StrCat(
            "refusing to serve metrics on ", options_.metrics_listen,
            ": the metrics listener has no TLS or authentication (use a loopback address, or "
            "pass --allow-insecure-non-loopback)"));
      }
      LogEvent(LogLevel::kWarning, "insecure_metrics_listener",
               {{"address", options_.metrics_listen},
                {"reason",
                 "--allow-insecure-non-loopback: anyone who can reach it can read the "
                 "metrics"}});
    }
    metrics_ = std::make_unique<ServerMetrics>();
    metrics_->RegisterServices({"snapconf.v1.ConfigService", "snapconf.v1.AdminService",
                                "snapconf.v1.WatchService",
                                "grpc.reflection.v1alpha.ServerReflection"});
    // gRPC's health service is built without a protobuf descriptor.
    metrics_->RegisterMethods({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"});
    ServerMetrics* const m = metrics_.get();
    options_.engine.on_write_done = [m](absl::Duration d) {
      m->commit_latency()->Observe(absl::ToDoubleSeconds(d));
    };
  }
  // --- end metrics ---
  if (options_.identity_limits.rate_per_second < 0 || options_.identity_limits.burst < 0 ||
      options_.identity_limits.max_watch_streams < 0) {
    return absl::InvalidArgumentError(
        "--rate-limit-per-identity, --rate-burst-per-identity and "
        "--max-watch-streams-per-identity must not be negative (0: no limit)");
  }
  if (options_.identity_limits.rate_per_second > 0 &&
      options_.identity_limits.rate_per_second < 0.001) {
    return absl::InvalidArgumentError(
        "--rate-limit-per-identity must be 0 (no limit) or at least 0.001 requests per second");
  }
  // Authorization is on whenever callers are authenticated; an unauthenticated
  // server is loopback-only (checked above) and lets local callers do anything.
  ASSIGN_OR_RETURN(authz_, Authorizer::Open({.enabled = options_.security.tls() &&
                                                        options_.security.authenticates(),
                                             .policy_file = options_.policy_file}));
  if (authz_->enabled() && options_.policy_file.empty()) {
    LogEvent(LogLevel::kWarning, "no_policy_file",
             {{"reason", "authenticated callers are granted nothing, every call is denied"}});
  }
  if (options_.store != "sqlite" && options_.store != "etcd") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --store=", options_.store, " (supported: sqlite, etcd)"));
  }
  const std::filesystem::path dir(options_.data_dir);
  std::string token_key;
  std::unique_ptr<Store> store;
  std::vector<LogField> location;  // where the data lives, for the "serving" line
  if (options_.store == "sqlite") {
    RETURN_IF_ERROR(PrepareDataDir(dir));
    ASSIGN_OR_RETURN(token_key, LoadOrCreateTokenKey(dir));
    SqliteStoreOptions store_options;
    store_options.data_dir = dir;
    store_options.retention = options_.retention;
    if (metrics_ != nullptr) {  // metrics
      ServerMetrics* const m = metrics_.get();
      store_options.on_group_persisted = [m](absl::Span<const absl::Duration> builds,
                                             absl::Duration persist) {
        m->commit_group_size()->Observe(static_cast<double>(builds.size()));
        m->commit_persist()->Observe(absl::ToDoubleSeconds(persist));
        for (absl::Duration b : builds) m->snapshot_build()->Observe(absl::ToDoubleSeconds(b));
      };
    }
    ASSIGN_OR_RETURN(store, OpenSqliteStore(store_options));
    location.emplace_back("data_dir", std::filesystem::absolute(dir).lexically_normal().string());
  } else {
    // --- etcd store (service/store/etcd) ---
    // Every replica must accept every other's page tokens: the key lives in
    // etcd. History retention is etcd's compaction, not --history-*.
    EtcdStoreOptions etcd_options;
    etcd_options.endpoints = options_.etcd_endpoints;
    etcd_options.prefix = options_.etcd_prefix;
    etcd_options.ca_file = options_.etcd_ca_file;
    etcd_options.cert_file = options_.etcd_cert_file;
    etcd_options.key_file = options_.etcd_key_file;
    etcd_options.request_timeout = options_.etcd_request_timeout;
    ASSIGN_OR_RETURN(std::unique_ptr<EtcdStore> etcd_store, OpenEtcdStore(etcd_options));
    ASSIGN_OR_RETURN(std::string candidate, PageTokenCodec::NewKey());
    absl::StatusOr<std::string> shared = etcd_store->SharedTokenKey(candidate);
    if (!shared.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot reach etcd at ",
                                                 absl::StrJoin(options_.etcd_endpoints, ","), ": ",
                                                 shared.status().message()));
    }
    token_key = *std::move(shared);
    store = std::move(etcd_store);
    location.emplace_back("etcd", absl::StrJoin(options_.etcd_endpoints, ","));
    location.emplace_back("etcd_prefix", options_.etcd_prefix);
    // --- end etcd store ---
  }
  engine_ = std::make_unique<Engine>(std::move(store), options_.engine);
  // --- watch fan-out (service/watch) ---
  // The hub observes commits from the first one on (set before Start), then
  // fills its log from history so watchers resume across restarts.
  Engine* const engine = engine_.get();
  watch_hub_ = std::make_unique<WatchHub>(options_.watch,
                                          [engine](Revision r) { return engine->SnapshotAt(r); });
  engine_->set_observer(watch_hub_.get());
  // --- end watch fan-out ---
  RETURN_IF_ERROR(engine_->Start());
  // --- watch fan-out (service/watch) ---
  if (absl::Status s = watch_hub_->Preload(engine_->store()); !s.ok()) {
    LogEvent(LogLevel::kWarning, "watch_log_not_preloaded", {{"error", s.message()}});
  }
  // --- end watch fan-out ---

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  // gRPC sets SO_REUSEPORT by default, which would let a second snapconfd
  // share a port with a running one instead of failing to start.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddListeningPort(options_.listen, security.credentials, &port);
  builder.SetMaxReceiveMessageSize(options_.limits.max_receive_message_bytes);
  const std::string node_id = options_.node_id;
  config_service_ = std::make_unique<ConfigServiceImpl>(engine_.get(), options_.limits,
                                                        PageTokenCodec(std::move(token_key)),
                                                        node_id, identities_.get(), authz_.get());
  admin_service_ = std::make_unique<AdminServiceImpl>(engine_.get(), node_id, kVersion,
                                                      identities_.get(), authz_.get());
  identity_limits_ = std::make_unique<IdentityLimits>(options_.identity_limits);
  config_service_->set_identity_limits(identity_limits_.get());
  admin_service_->set_identity_limits(identity_limits_.get());
  builder.RegisterService(config_service_.get());
  builder.RegisterService(admin_service_.get());
  // Audit: every write and policy change, refused or not.
  admin_service_->set_audit_log(audit_log_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeAuditInterceptorFactory(
      audit_log_.get(), identities_.get(), [engine] { return engine->publisher().revision(); }));
  // --- watch fan-out (service/watch) ---
  const Limits limits = options_.limits;
  watch_service_ = std::make_unique<WatchServiceImpl>(
      watch_hub_.get(),
      [limits](std::string_view ns, const std::vector<std::string>& prefixes) -> absl::Status {
        RETURN_IF_ERROR(ValidateNamespace(std::string(ns), limits));
        for (const std::string& prefix : prefixes) RETURN_IF_ERROR(ValidatePrefix(prefix, limits));
        return absl::OkStatus();
      },
      // Every watched namespace needs read: a watch is a read that goes on.
      [identities = identities_.get(), authz = authz_.get()](
          const grpc::ServerContextBase& ctx, const WatchSpec& spec) -> absl::Status {
        const std::string identity = identities->Of(ctx);
        for (const WatchFilterSpec& filter : spec.filters) {
          RETURN_IF_ERROR(authz->Check(identity, Permission::kRead, filter.ns));
        }
        return absl::OkStatus();
      });
  // Opening a watch (a Watch stream, or a watch of a WatchMany stream) is a
  // request (rate) and holds a stream slot until the watch ends, however it
  // ends.
  if (identity_limits_->rate_limited() || identity_limits_->streams().enabled()) {
    watch_service_->set_admission(
        [limits = identity_limits_.get(), identities = identities_.get()](
            const grpc::ServerContextBase& ctx,
            grpc::ServerContextBase* trailers) -> absl::StatusOr<std::shared_ptr<void>> {
          const std::string identity = identities->Of(ctx);
          RETURN_IF_ERROR(limits->AdmitRequest(trailers, identity));
          return limits->AdmitStream(trailers, identity);
        });
  }
  // A watch keeps its caller's credentials and namespaces, so a policy or
  // tokens change can end it (OnPolicyChanged).
  if (authz_->enabled()) {
    watch_service_->set_recheck_factory([identities = identities_.get(), authz = authz_.get(),
                                         tokens = tokens_](const grpc::ServerContextBase& ctx,
                                                           const WatchSpec& spec) {
      const std::string identity = identities->Of(ctx);
      std::string presented;  // the bearer token, when the caller used one
      if (tokens != nullptr) {
        auto it = ctx.client_metadata().find("authorization");
        if (it != ctx.client_metadata().end())
          presented.assign(it->second.data(), it->second.size());
      }
      std::vector<std::string> namespaces;
      for (const WatchFilterSpec& filter : spec.filters) namespaces.push_back(filter.ns);
      return Watcher::Recheck([identity, presented, namespaces, authz, tokens]() -> absl::Status {
        if (!presented.empty()) {
          absl::string_view value = presented;
          absl::StatusOr<TokenIdentity> who =
              absl::ConsumePrefix(&value, "Bearer ")
                  ? tokens->Verify(value)
                  : absl::UnauthenticatedError("authorization is not a bearer token");
          if (!who.ok()) {
            return absl::UnauthenticatedError(absl::StrCat(
                "the credentials of this watch are no longer valid: ", who.status().message()));
          }
          if (who->identity != identity) {
            return absl::UnauthenticatedError("the token of this watch now names another identity");
          }
        }
        for (const std::string& ns : namespaces) {
          if (absl::Status s = authz->Check(identity, Permission::kRead, ns); !s.ok()) {
            return absl::PermissionDeniedError(
                absl::StrCat("access changed, the watch ends: ", s.message()));
          }
        }
        return absl::OkStatus();
      });
    });
  }
  watch_service_->AddTo(&builder);  // the service and its completion queues
  admin_service_->set_open_watches_source(&watch_hub_->open_streams());
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_timeout)));
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options_.keepalive_min_client_ping)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // --- end watch fan-out ---
  // --- metrics (service/metrics) ---
  if (metrics_ != nullptr) {
    for (auto& creator : metrics_->InterceptorCreators())
      interceptors.push_back(std::move(creator));
    AddStateMetrics();
    metrics_http_ = std::make_unique<MetricsHttpServer>(&metrics_->registry());
    if (absl::Status s = metrics_http_->Bind(options_.metrics_listen); !s.ok()) {
      metrics_http_.reset();
      watch_hub_->Shutdown();
      engine_->Stop();
      return s;
    }
  }
  // --- end metrics ---
  // One list: each call of SetInterceptorCreators replaces the previous one.
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port == 0) {
    metrics_http_.reset();   // metrics: bound, never started
    watch_hub_->Shutdown();  // watch fan-out: stops the dispatcher
    engine_->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen,
                                               ": the address is in use or not permitted"));
  }
  const std::vector<std::string> host_port = absl::StrSplit(options_.listen, ':');
  const std::string host =
      options_.listen.substr(0, options_.listen.size() - host_port.back().size() - 1);
  address_ = absl::StrCat(host, ":", port);
  watch_service_->Start();         // watch fan-out: accept streams
  if (metrics_http_ != nullptr) {  // metrics
    metrics_http_->Start();
    LogEvent(LogLevel::kInfo, "metrics_serving",
             {{"address", metrics_http_->address()}, {"path", "/metrics"}});
  }
  serving_ = true;
  CheckHealth();
  std::vector<LogField> serving = {{"address", address_}, {"store", engine_->store().kind()}};
  serving.insert(serving.end(), location.begin(), location.end());
  serving.emplace_back("revision", engine_->publisher().revision());
  LogEvent(LogLevel::kInfo, "serving", serving);
  return absl::OkStatus();
}

absl::Status Server::OpenAuditLog() {
  std::filesystem::path path = options_.audit_log.empty()
                                   ? std::filesystem::path(options_.data_dir) / "audit.log"
                                   : std::filesystem::path(options_.audit_log);
  if (path.has_parent_path()) RETURN_IF_ERROR(PrepareDataDir(path.parent_path()));
  ASSIGN_OR_RETURN(audit_log_, AuditLog::Open({.path = path.string(),
                                               .max_bytes = options_.audit_log_max_bytes}));
  return absl::OkStatus();
}

void Server::CheckHealth() {
  if (!serving_) return;
  const bool healthy = engine_->store().Health().ok();
  grpc_server_->GetHealthCheckService()->SetServingStatus(healthy);
  grpc_server_->GetHealthCheckService()->SetServingStatus("snapconf.v1.ConfigService", healthy);
}

void Server::ReloadCredentials() {
  // A broken file is reported once per version of it; what was in force stays.
  if (tokens_ != nullptr) {
    if (absl::Status s = tokens_->ReloadIfChanged(); !s.ok()) {
      LogEvent(LogLevel::kWarning, "tokens_not_reloaded",
               {{"error", s.message()}, {"effect", "previous tokens stay in force"}});
    }
  }
  if (authz_ != nullptr) {
    if (absl::Status s = authz_->ReloadIfChanged(); !s.ok()) {
      LogEvent(LogLevel::kWarning, "policy_not_reloaded",
               {{"error", s.message()}, {"effect", "previous policy stays in force"}});
    }
  }
  // Open watches follow revocations: re-checked when a file changed or a
  // token's expiry passed.
  if (authz_ == nullptr || !authz_->enabled() || watch_hub_ == nullptr) return;
  bool due = false;
  {
    MutexLock lock(&recheck_mu_);
    const absl::Time now = absl::Now();
    const uint64_t tokens = tokens_ == nullptr ? 0 : tokens_->generation();
    const uint64_t policy = authz_->generation();
    due = tokens != checked_tokens_ || policy != checked_policy_ || now >= next_token_expiry_;
    if (due) {
      checked_tokens_ = tokens;
      checked_policy_ = policy;
      next_token_expiry_ =
          tokens_ == nullptr ? absl::InfiniteFuture() : tokens_->NextExpiryAfter(now);
    }
  }
  if (due) OnPolicyChanged();
}

void Server::OnPolicyChanged() {
  if (authz_ == nullptr || !authz_->enabled() || watch_hub_ == nullptr) return;
  const size_t ended = watch_hub_->RecheckAll();
  if (ended > 0) {
    LogEvent(LogLevel::kInfo, "watches_revoked",
             {{"ended", static_cast<int64_t>(ended)},
              {"reason", "credentials or policy changed; these streams lost access"}});
  }
}

void Server::Shutdown() {
  if (!serving_) return;
  serving_ = false;
  if (metrics_http_) metrics_http_->Stop();  // metrics: scrapes end first
  grpc_server_->GetHealthCheckService()->SetServingStatus(false);
  // --- watch fan-out (service/watch) ---
  // Watch streams never end by themselves: end each with UNAVAILABLE (after
  // its write in flight) so the clients resume elsewhere and Shutdown below
  // does not wait on them.
  watch_hub_->Shutdown();
  // --- end watch fan-out ---
  // The engine stops first: queued writes finish and are acknowledged, later
  // ones and min_revision waits answer UNAVAILABLE, so every call in flight
  // reaches Finish() and gRPC's shutdown cannot hang on one.
  engine_->Stop();
  const Revision revision = engine_->publisher().revision();
  grpc_server_->Shutdown(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(options_.grace_period));
  grpc_server_->Wait();
  watch_service_->Stop();  // watch fan-out: drain its completion queues
  LogEvent(LogLevel::kInfo, "stopped", {{"address", address_}, {"revision", revision}});
}

void Server::AddStateMetrics() {
  metrics::Registry& r = metrics_->registry();
  Engine* const engine = engine_.get();
  WatchHub* const hub = watch_hub_.get();
  r.AddGauge("snapconf_head_revision", "Revision of the snapshot this node serves.", {},
             [engine] { return static_cast<double>(engine->publisher().revision()); });
  r.AddGauge("snapconf_sqlite_heap_bytes",
             "Heap held by SQLite, almost all of it the page caches of the store's connections "
             "(up to 64 MiB each, filled as pages are used; 0 with the etcd store).",
             {}, [] { return static_cast<double>(SqliteHeapBytes()); });
  r.AddGauge("snapconf_store_healthy", "1 while the store accepts writes, 0 after a failure.", {},
             [engine] { return engine->store().Health().ok() ? 1.0 : 0.0; });
  // Computed from the published snapshot at scrape time: Publisher::Read
  // takes no lock, so a scrape never slows a reader.
  r.AddCollector(
      "snapconf_namespace_keys", "Keys in each namespace of the current snapshot.",
      [engine](std::vector<metrics::Sample>* out) {
        engine->publisher().Read([&](const Snapshot& snap) {
          for (const std::string& ns : snap.Namespaces()) {
            out->push_back({{{"namespace", ns}}, static_cast<double>(snap.NamespaceSize(ns))});
          }
        });
      });
  r.AddCollector("snapconf_namespace_bytes",
                 "Bytes of keys and values in each namespace of the current snapshot.",
                 [engine](std::vector<metrics::Sample>* out) {
                   engine->publisher().Read([&](const Snapshot& snap) {
                     for (const std::string& ns : snap.Namespaces()) {
                       double bytes = 0;
                       snap.Scan(ns, "", "", 0, [&](std::string_view key, const EntryPtr& e) {
                         bytes += static_cast<double>(key.size() + e->value.size());
                         return true;
                       });
                       out->push_back({{{"namespace", ns}}, bytes});
                     }
                   });
                 });
  r.AddGauge("snapconf_watch_open_streams", "Watch streams open now.", {}, [hub] {
    return static_cast<double>(hub->open_streams().load(std::memory_order_relaxed));
  });
  r.AddGauge("snapconf_watch_log_bytes", "Bytes held by the shared watch event log.", {},
             [hub] { return static_cast<double>(hub->log_bytes()); });
  for (const auto& [reason, name] : std::vector<std::pair<v1::ResetReason, const char*>>{
           {v1::RESET_REASON_INITIAL, "initial"},
           {v1::RESET_REASON_HISTORY_COMPACTED, "history_compacted"},
           {v1::RESET_REASON_FELL_BEHIND, "fell_behind"},
           {v1::RESET_REASON_STORE_RELOADED, "store_reloaded"}}) {
    r.AddCounterFunction(
        "snapconf_watch_resets_total",
        "Full snapshots sent to watchers instead of changes, by reason (initial: the watch "
        "started at revision 0).",
        {{"reason", name}},
        [hub, reason = reason] { return static_cast<double>(hub->resets(reason)); });
  }
  r.AddGauge("snapconf_watch_lag_max_revisions",
             "Revisions the furthest-behind watch stream has yet to be sent (0 without streams).",
             {}, [hub] {
               int64_t worst = 0;
               for (int64_t lag : hub->WatcherLags()) worst = std::max(worst, lag);
               return static_cast<double>(worst);
             });
  r.AddCollector(
      "snapconf_watch_streams_by_lag",
      "Started watch streams at most max_lag revisions behind the head (cumulative).",
      [hub](std::vector<metrics::Sample>* out) {
        const std::vector<int64_t> lags = hub->WatcherLags();
        std::vector<double> bounds = {0};
        for (double b : metrics::PowerOfTwoBuckets(65536)) bounds.push_back(b);
        for (double b : bounds) {
          const auto n = std::count_if(lags.begin(), lags.end(),
                                       [b](int64_t lag) { return static_cast<double>(lag) <= b; });
          out->push_back({{{"max_lag", metrics::FormatValue(b)}}, static_cast<double>(n)});
        }
        out->push_back({{{"max_lag", "+Inf"}}, static_cast<double>(lags.size())});
      });
}

}  // namespace snapconf
