// What the metrics instrumentation costs.
//
// BM_GrpcGetSideBySide runs two in-process snapconfd servers on loopback, one
// without metrics and one with --metrics-listen (so its calls go through the
// counting interceptor), and alternates point Gets between them, one each per
// iteration, timing each: both see the same machine load at the same moment.
// It reports the mean microseconds per Get of each and their ratio.
//
// BM_CounterIncrement / BM_HistogramObserve time the two operations the
// interceptor performs per call, from 1 and 2 threads.
#include <benchmark/benchmark.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "service/metrics/metrics.h"
#include "service/server.h"
#include "snapconf/v1/config_service.grpc.pb.h"

namespace snapconf {
namespace {

struct Node {
  std::string dir;
  std::unique_ptr<Server> server;
  std::unique_ptr<v1::ConfigService::Stub> stub;
};

std::unique_ptr<Node> StartNode(const std::string& name, bool metrics) {
  auto node = std::make_unique<Node>();
  node->dir = (std::filesystem::temp_directory_path() /
               absl::StrCat("snapconf-metrics-bench-", ::getpid(), "-", name))
                  .string();
  std::filesystem::remove_all(node->dir);
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = node->dir;
  if (metrics) options.metrics_listen = "127.0.0.1:0";
  node->server = std::make_unique<Server>(options);
  if (absl::Status s = node->server->Start(); !s.ok()) return nullptr;
  node->stub = v1::ConfigService::NewStub(
      grpc::CreateChannel(node->server->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::PutRequest put;
  put.set_namespace_("bench");
  put.set_key("k");
  put.set_value("value");
  v1::PutResponse resp;
  if (!node->stub->Put(&ctx, put, &resp).ok()) return nullptr;
  return node;
}

double TimedGet(v1::ConfigService::Stub* stub, const v1::GetRequest& req, bool* ok) {
  grpc::ClientContext ctx;
  v1::GetResponse resp;
  const auto start = std::chrono::steady_clock::now();
  *ok = stub->Get(&ctx, req, &resp).ok() && *ok;
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
      .count();
}

void BM_GrpcGetSideBySide(benchmark::State& state) {
  std::unique_ptr<Node> plain = StartNode("plain", false);
  std::unique_ptr<Node> measured = StartNode("metrics", true);
  if (!plain || !measured) {
    state.SkipWithError("cannot start the servers");
    return;
  }
  v1::GetRequest req;
  req.set_namespace_("bench");
  req.set_key("k");
  double plain_us = 0;
  double metrics_us = 0;
  bool ok = true;
  for (auto _ : state) {
    // Alternate which goes first, so neither always gets the warmer cache.
    if (state.iterations() % 2 == 0) {
      plain_us += TimedGet(plain->stub.get(), req, &ok);
      metrics_us += TimedGet(measured->stub.get(), req, &ok);
    } else {
      metrics_us += TimedGet(measured->stub.get(), req, &ok);
      plain_us += TimedGet(plain->stub.get(), req, &ok);
    }
  }
  if (!ok) state.SkipWithError("a Get failed");
  const double n = static_cast<double>(state.iterations());
  state.counters["plain_us"] = plain_us / n;
  state.counters["metrics_us"] = metrics_us / n;
  state.counters["ratio"] = metrics_us / plain_us;
  plain->server->Shutdown();
  measured->server->Shutdown();
  std::filesystem::remove_all(plain->dir);
  std::filesystem::remove_all(measured->dir);
}
BENCHMARK(BM_GrpcGetSideBySide)->UseRealTime()->Unit(benchmark::kMicrosecond);

metrics::Counter* SharedCounter() {
  static auto* counter = new metrics::Counter();
  return counter;
}

void BM_CounterIncrement(benchmark::State& state) {
  metrics::Counter* counter = SharedCounter();
  for (auto _ : state) counter->Increment();
  benchmark::DoNotOptimize(counter->Value());
}
BENCHMARK(BM_CounterIncrement)->Threads(1)->Threads(2);

metrics::Histogram* SharedHistogram() {
  static auto* histogram = new metrics::Histogram(metrics::LatencyBuckets());
  return histogram;
}

void BM_HistogramObserve(benchmark::State& state) {
  metrics::Histogram* histogram = SharedHistogram();
  double v = 1e-4;
  for (auto _ : state) {
    histogram->Observe(v);
    v = v < 1 ? v * 1.5 : 1e-4;
  }
}
BENCHMARK(BM_HistogramObserve)->Threads(1)->Threads(2);

}  // namespace
}  // namespace snapconf

BENCHMARK_MAIN();
