// service/metrics/server_metrics.cc — snapconfd's series, the RPC
// interceptor and the /metrics listener.
#include "service/metrics/server_metrics.h"

#include <httplib.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/support/status.h"

namespace snapconf {
namespace {

// One per call: counts the call under the status the server sends and times
// it from when the call arrived to when its status went out. A streaming call
// (Watch) is counted once, when it ends.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(MethodMetrics* method)
      : method_(method), start_(std::chrono::steady_clock::now()) {}

  ~MetricsInterceptor() override {
    // No status was sent (the call was dropped, e.g. at shutdown): the
    // client saw it cancelled.
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!recorded_ && methods->QueryInterceptionHookPoint(
                          grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    const auto index = static_cast<size_t>(code);
    method_->by_code[index < kGrpcCodes ? index : static_cast<size_t>(grpc::StatusCode::UNKNOWN)]
        ->Increment();
    method_->latency->Observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

  MethodMetrics* const method_;
  const std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(ServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_->ForMethod(info->method()));
  }

 private:
  ServerMetrics* const metrics_;
};

}  // namespace

ServerMetrics::ServerMetrics() {
  other_ = std::unique_ptr<MethodMetrics>(AddMethod("other"));
  commit_latency_ = registry_.AddHistogram(
      "snapconf_commit_latency_seconds",
      "Time from a write reaching the engine to its commit being acknowledged (durable and "
      "published), successful or not.",
      {}, metrics::LatencyBuckets());
  commit_group_size_ = registry_.AddHistogram(
      "snapconf_commit_group_size",
      "Writes persisted together in one store transaction (group commit; local store only).", {},
      metrics::PowerOfTwoBuckets(512));
  commit_persist_ = registry_.AddHistogram(
      "snapconf_commit_persist_seconds",
      "Time one group commit spent in the store's transaction, fsync included (local store only).",
      {}, metrics::LatencyBuckets());
  snapshot_build_ = registry_.AddHistogram(
      "snapconf_snapshot_build_seconds",
      "Time to build the new immutable snapshot of one revision from the previous one (local "
      "store only).",
      {}, metrics::LatencyBuckets());
}

MethodMetrics* ServerMetrics::AddMethod(const std::string& name) {
  auto m = std::make_unique<MethodMetrics>();
  for (size_t code = 0; code < kGrpcCodes; ++code) {
    m->by_code[code] = registry_.AddCounter(
        "snapconf_grpc_requests_total",
        "gRPC calls by method and the status the server answered (streams count when they end). "
        "Series appear once non-zero.",
        {{"method", name}, {"code", absl::StatusCodeToString(static_cast<absl::StatusCode>(code))}},
        /*omit_when_zero=*/true);
  }
  m->latency = registry_.AddHistogram(
      "snapconf_grpc_request_duration_seconds",
      "Time from a call's arrival to its status being sent (for Watch: the stream's lifetime).",
      {{"method", name}}, metrics::LatencyBuckets());
  return m.release();
}

void ServerMetrics::RegisterServices(const std::vector<std::string>& full_service_names) {
  const google::protobuf::DescriptorPool* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& service_name : full_service_names) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(service_name);
    if (service == nullptr) continue;
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string name = absl::StrCat("/", service_name, "/", service->method(i)->name());
      if (methods_.contains(name)) continue;
      methods_.emplace(name, std::unique_ptr<MethodMetrics>(AddMethod(name)));
    }
  }
}

void ServerMetrics::RegisterMethods(const std::vector<std::string>& full_method_names) {
  for (const std::string& name : full_method_names) {
    if (!methods_.contains(name))
      methods_.emplace(name, std::unique_ptr<MethodMetrics>(AddMethod(name)));
  }
}

MethodMetrics* ServerMetrics::ForMethod(absl::string_view method) {
  auto it = methods_.find(method);
  return it == methods_.end() ? other_.get() : it->second.get();
}

std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
ServerMetrics::InterceptorCreators() {
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> out;
  out.push_back(std::make_unique<MetricsInterceptorFactory>(this));
  return out;
}

MetricsHttpServer::MetricsHttpServer(const metrics::Registry* registry)
    : registry_(registry), http_(std::make_unique<httplib::Server>()) {
  // Scrapes are rare: two threads are plenty, and nothing else runs here.
  http_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& response) {
    response.set_content(registry_->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::Status MetricsHttpServer::Bind(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen=", listen, " is not host:port"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen=", listen, " is not host:port"));
  }
  const int bound =
      port == 0 ? http_->bind_to_any_port(host) : (http_->bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on --metrics-listen=", listen,
                                               ": the address is in use or not permitted"));
  }
  address_ = absl::StrCat(listen.substr(0, colon), ":", bound);
  return absl::OkStatus();
}

void MetricsHttpServer::Start() {
  thread_ = std::thread([this] {
    http_->listen_after_bind();
    returned_.store(true, std::memory_order_release);
  });
}

void MetricsHttpServer::Stop() {
  if (!thread_.joinable()) return;
  // stop() only acts on a server that is already in its accept loop: wait
  // (bounded) until the thread got there or gave up.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!http_->is_running() && !returned_.load(std::memory_order_acquire) &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  http_->stop();
  thread_.join();
}

}  // namespace snapconf
