#include "service/server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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

// Calls to audited methods that the credentials gate refused.
RefusedCallSink RecordRefusedCalls(AuditLog* log) {
  return [log](absl::string_view method, const grpc::Status& status) {
    if (!IsAuditedMethod(method)) return;
    v1::AuditEvent event;
    SetAuditTime(absl::Now(), &event);
    event.set_identity("unauthenticated");
    event.set_method(std::string(method));
    event.set_outcome(StatusCodeName(static_cast<int>(status.error_code())));
    event.set_detail(AuditText(status.error_message()));
    if (absl::Status s = log->Append(event); !s.ok()) {
      LogLine(absl::StrCat("audit event not recorded: ", s.message()));
    }
  };
}

}  // namespace

void LogStopRequested(absl::string_view signal) {
  LogLine(absl::StrCat("stopping: ", signal, " received"));
}

Server::Server(ServerOptions options) : options_(std::move(options)) {}

Server::~Server() { Shutdown(); }

absl::Status Server::Start() {
  // The audit log before the listener: the credentials gate records into it.
  RETURN_IF_ERROR(OpenAuditLog());
  // Transport security first: a refused exposure or a bad certificate fails
  // the start before anything is opened.
  ASSIGN_OR_RETURN(
      ServerSecurity security,
      MakeServerSecurity(options_.listen, options_.security, RecordRefusedCalls(audit_log_.get())));
  if (!security.warning.empty()) LogLine(security.warning);
  tokens_ = security.tokens;
  identities_ = security.identities;
  // Authorization is on whenever callers are authenticated; an unauthenticated
  // server is loopback-only (checked above) and lets local callers do anything.
  ASSIGN_OR_RETURN(authz_, Authorizer::Open({.enabled = options_.security.tls() &&
                                                        options_.security.authenticates(),
                                             .policy_file = options_.policy_file}));
  if (authz_->enabled() && options_.policy_file.empty()) {
    LogLine("no --policy-file: authenticated callers are granted nothing, every call is denied");
  }
  if (options_.store != "sqlite" && options_.store != "etcd") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --store=", options_.store, " (supported: sqlite, etcd)"));
  }
  const std::filesystem::path dir(options_.data_dir);
  std::string token_key;
  std::unique_ptr<Store> store;
  std::string location;
  if (options_.store == "sqlite") {
    RETURN_IF_ERROR(PrepareDataDir(dir));
    ASSIGN_OR_RETURN(token_key, LoadOrCreateTokenKey(dir));
    SqliteStoreOptions store_options;
    store_options.data_dir = dir;
    store_options.retention = options_.retention;
    ASSIGN_OR_RETURN(store, OpenSqliteStore(store_options));
    location =
        absl::StrCat(" data_dir=", std::filesystem::absolute(dir).lexically_normal().string());
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
    location = absl::StrCat(" etcd=", absl::StrJoin(options_.etcd_endpoints, ","),
                            " etcd_prefix=", options_.etcd_prefix);
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
    LogLine(absl::StrCat("watch log not preloaded from history: ", s.message()));
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
  builder.RegisterService(config_service_.get());
  builder.RegisterService(admin_service_.get());
  // Audit: every write and policy change, refused or not.
  admin_service_->set_audit_log(audit_log_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeAuditInterceptorFactory(
      audit_log_.get(), identities_.get(), [engine] { return engine->publisher().revision(); }));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
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
  grpc_server_ = builder.BuildAndStart();
  if (grpc_server_ == nullptr || port == 0) {
    watch_hub_->Shutdown();  // watch fan-out: stops the dispatcher
    engine_->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen,
                                               ": the address is in use or not permitted"));
  }
  const std::vector<std::string> host_port = absl::StrSplit(options_.listen, ':');
  const std::string host =
      options_.listen.substr(0, options_.listen.size() - host_port.back().size() - 1);
  address_ = absl::StrCat(host, ":", port);
  watch_service_->Start();  // watch fan-out: accept streams
  serving_ = true;
  CheckHealth();
  LogLine(absl::StrCat("serving address=", address_,
                       " store=", std::string(engine_->store().kind()), location,
                       " revision=", engine_->publisher().revision()));
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
      LogLine(
          absl::StrCat("tokens file not reloaded, previous tokens stay in force: ", s.message()));
    }
  }
  if (authz_ != nullptr) {
    if (absl::Status s = authz_->ReloadIfChanged(); !s.ok()) {
      LogLine(
          absl::StrCat("policy file not reloaded, previous policy stays in force: ", s.message()));
    }
  }
}

void Server::Shutdown() {
  if (!serving_) return;
  serving_ = false;
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
  LogLine(absl::StrCat("stopped address=", address_, " revision=", revision));
}

}  // namespace snapconf
