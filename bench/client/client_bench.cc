// Client library benchmarks against a real snapconfd (started as a child process through the
// test harness). Results and the command line are in bench/RESULTS.md. Benchmarks measure;
// they never assert.
//
// Read variants (same keys, same pre-generated random order, both return a copy of the value):
//   ClientGet     ConfigClient::Get on the client's local snapshot (lock-free)
//   FlatHashMap   unsynchronized absl::flat_hash_map<string, string> holding the same data
// Arguments: keys (1,000 or 100,000, loaded into one namespace) and writer (1 = background
// threads Put random existing keys through the server at ~1000 writes/s in total, so updates
// reach the client while it reads; the map is never written, so for it the writer is only
// load on the machine).
//
// UpdateToCallback: one Put through AdminClient, timed until the ConfigClient's Subscribe
// callback for that key has fired (the durable commit and the watch delivery included).
//
// Datasets are built lazily, so a --benchmark_filter that skips the 100k cases never loads
// them (the bench-smoke test relies on this).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/admin_client.h"
#include "client/config_client.h"
#include "tests/testing/server_process.h"

namespace snapconf {
namespace {

using client::AdminClient;
using client::ConfigClient;

constexpr size_t kOrderSize = 1 << 16;
constexpr size_t kTxnBatch = 128;  // the server's default max_txn_operations
constexpr char kLatencyNs[] = "bench/latency";

[[noreturn]] void Die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "client_bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  std::abort();
}

std::string KeyName(int64_t i) {
  return absl::StrCat("service-", i % 997, "/config/setting-", 1000000 + i);
}

// One snapconfd for the whole run, and an AdminClient for loading and writing.
struct Server {
  Server() {
    auto started = testing::ServerProcess::Start();
    if (!started.ok()) Die("start snapconfd", started.status());
    process = std::move(*started);
    client::AdminClientOptions options;
    options.endpoints = {process->address()};
    options.call_timeout = absl::Seconds(30);
    auto admin_or = AdminClient::Create(options);
    if (!admin_or.ok()) Die("create AdminClient", admin_or.status());
    admin.emplace(std::move(*admin_or));
  }
  std::unique_ptr<testing::ServerProcess> process;
  std::optional<AdminClient> admin;
};

Server& GetServer() {
  static Server* server = new Server;
  return *server;
}

client::ConfigClientOptions WatchOptions(const std::string& ns) {
  client::ConfigClientOptions options;
  options.endpoints = {GetServer().process->address()};
  options.watches = {{ns, {}}};
  return options;
}

// N keys in their own namespace, loaded through the server, a ConfigClient that holds them,
// and a flat_hash_map with the same data.
struct Dataset {
  explicit Dataset(int64_t n) : ns(absl::StrCat("bench/keys-", n)) {
    Server& server = GetServer();
    std::mt19937_64 rng(n);
    keys.reserve(n);
    map.reserve(n);
    std::int64_t revision = 0;
    client::TxnSpec txn;
    for (int64_t i = 0; i < n; ++i) {
      keys.push_back(KeyName(i));
      std::string value = absl::StrCat("value-", i);
      map.emplace(keys.back(), value);
      client::TxnOperation op;
      op.ns = ns;
      op.key = keys.back();
      op.value = std::move(value);
      txn.operations.push_back(std::move(op));
      if (txn.operations.size() == kTxnBatch || i + 1 == n) {
        auto r = server.admin->Txn(txn);
        if (!r.ok()) Die("load txn", r.status());
        revision = r->revision;
        txn.operations.clear();
      }
    }
    auto created = ConfigClient::Create(WatchOptions(ns));
    if (!created.ok()) Die("create ConfigClient", created.status());
    config.emplace(std::move(*created));
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    if (absl::Status s = config->WaitUntilReady(deadline); !s.ok()) Die("WaitUntilReady", s);
    if (absl::Status s = config->WaitForRevision(revision, deadline); !s.ok()) {
      Die("WaitForRevision", s);
    }
    if (config->Get(ns, keys.back()) != map[keys.back()]) {
      Die("client check", absl::InternalError("client does not hold the loaded data"));
    }
    order.resize(kOrderSize);
    for (auto& o : order) o = static_cast<uint32_t>(rng() % n);
  }
  std::string ns;
  std::vector<std::string> keys;
  std::vector<uint32_t> order;  // random key indices, pre-generated
  absl::flat_hash_map<std::string, std::string> map;
  std::optional<ConfigClient> config;
};

Dataset& GetDataset(int64_t n) {
  static std::mutex mu;
  static auto* sets = new std::map<int64_t, std::unique_ptr<Dataset>>;
  std::lock_guard<std::mutex> lock(mu);
  auto& d = (*sets)[n];
  if (d == nullptr) d = std::make_unique<Dataset>(n);
  return *d;
}

// Puts random existing keys of the dataset through the server at about 1000 writes/s in
// total. Several paced threads, because one durable Put can take longer than a millisecond.
class BackgroundWriter {
 public:
  static constexpr int kThreads = 4;
  static constexpr auto kPeriod = std::chrono::milliseconds(kThreads);  // per thread

  explicit BackgroundWriter(const Dataset& d) : d_(d), start_(absl::Now()) {
    for (int t = 0; t < kThreads; ++t) threads_.emplace_back([this, t] { Run(t); });
  }
  ~BackgroundWriter() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
  }
  double writes_per_second() const {
    return static_cast<double>(writes_.load()) / absl::ToDoubleSeconds(absl::Now() - start_);
  }
  int64_t errors() const { return errors_.load(); }

 private:
  void Run(int t) {
    std::mt19937_64 rng(42 + t);
    auto next = std::chrono::steady_clock::now() + std::chrono::microseconds(1000 * t);
    int64_t n = 0;
    while (!stop_.load(std::memory_order_relaxed)) {
      std::this_thread::sleep_until(next);
      next += kPeriod;
      const std::string& key = d_.keys[rng() % d_.keys.size()];
      auto r = GetServer().admin->Put(d_.ns, key, absl::StrCat("w", t, "-", ++n));
      (r.ok() ? writes_ : errors_).fetch_add(1);
      // Behind schedule (slow commits): do not burst to catch up.
      next = std::max(next, std::chrono::steady_clock::now());
    }
  }

  const Dataset& d_;
  const absl::Time start_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> writes_{0};
  std::atomic<int64_t> errors_{0};
  std::vector<std::thread> threads_;
};

enum class Variant { kClientGet, kFlatHashMap };

template <Variant kVariant>
void BM_Get(benchmark::State& state) {
  Dataset& d = GetDataset(state.range(0));
  const bool with_writer = state.range(1) != 0;
  std::unique_ptr<BackgroundWriter> writer;
  std::int64_t revision_before = 0;
  if (state.thread_index() == 0) {
    revision_before = d.config->revision();
    if (with_writer) writer = std::make_unique<BackgroundWriter>(d);
  }
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  size_t found = 0;
  for (auto _ : state) {
    const std::string& key = d.keys[d.order[i++ & (kOrderSize - 1)]];
    std::optional<std::string> value;
    if constexpr (kVariant == Variant::kClientGet) {
      value = d.config->Get(d.ns, key);
    } else {
      auto it = d.map.find(key);
      if (it != d.map.end()) value = it->second;
    }
    found += value.has_value();
    benchmark::DoNotOptimize(value);
  }
  if (found != static_cast<size_t>(state.iterations())) state.SkipWithError("a key was missing");
  if (state.thread_index() == 0) {
    if (writer != nullptr) {
      state.counters["writes_per_s"] = writer->writes_per_second();
      state.counters["write_errors"] = static_cast<double>(writer->errors());
      writer.reset();
    }
    state.counters["revisions_seen"] = static_cast<double>(d.config->revision() - revision_before);
  }
}

void GetArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"keys", "writer"});
  for (int64_t keys : {1000, 100000}) {
    for (int64_t writer : {0, 1}) b->Args({keys, writer});
  }
  b->UseRealTime()->Threads(1)->Threads(2);
}

BENCHMARK(BM_Get<Variant::kClientGet>)->Name("BM_ClientGet")->Apply(GetArgs);
BENCHMARK(BM_Get<Variant::kFlatHashMap>)->Name("BM_FlatHashMap")->Apply(GetArgs);

// Records when the callback saw the value it waits for.
class CallbackWaiter {
 public:
  void Expect(std::string value) {
    std::lock_guard<std::mutex> lock(mu_);
    expected_ = std::move(value);
    fired_.reset();
  }
  void OnChange(const client::ConfigChange& change) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> lock(mu_);
    if (change.after.has_value() && change.after->value == expected_ && !fired_.has_value()) {
      fired_ = now;
      cv_.notify_all();
    }
  }
  // When the callback fired, or nothing by the deadline.
  std::optional<std::chrono::steady_clock::time_point> Wait(
      std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, deadline, [this] { return fired_.has_value(); });
    return fired_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::string expected_;
  std::optional<std::chrono::steady_clock::time_point> fired_;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

void BM_UpdateToCallback(benchmark::State& state) {
  Server& server = GetServer();
  const std::string key = "feature/flag";
  if (auto r = server.admin->Put(kLatencyNs, key, "initial"); !r.ok()) Die("put", r.status());
  auto waiter = std::make_shared<CallbackWaiter>();
  client::ConfigClientOptions options = WatchOptions(kLatencyNs);
  options.subscriptions = {
      {kLatencyNs, key, [waiter](const client::ConfigChange& c) { waiter->OnChange(c); }}};
  auto created = ConfigClient::Create(std::move(options));
  if (!created.ok()) Die("create ConfigClient", created.status());
  ConfigClient config = std::move(*created);
  if (absl::Status s = config.WaitUntilReady(absl::Now() + absl::Seconds(30)); !s.ok()) {
    Die("WaitUntilReady", s);
  }
  std::vector<double> callback_us;  // Put sent -> callback ran
  std::vector<double> ack_us;       // Put sent -> Put acknowledged (durable commit)
  int64_t n = 0;
  int64_t timeouts = 0;
  for (auto _ : state) {
    std::string value = absl::StrCat("v", ++n);
    waiter->Expect(value);
    const auto start = std::chrono::steady_clock::now();
    auto r = server.admin->Put(kLatencyNs, key, value);
    const auto acked = std::chrono::steady_clock::now();
    if (!r.ok()) Die("put", r.status());
    auto fired = waiter->Wait(start + std::chrono::seconds(5));
    if (!fired.has_value()) {
      ++timeouts;
      continue;
    }
    callback_us.push_back(std::chrono::duration<double, std::micro>(*fired - start).count());
    ack_us.push_back(std::chrono::duration<double, std::micro>(acked - start).count());
  }
  state.counters["cb_p50_us"] = Percentile(callback_us, 0.50);
  state.counters["cb_p99_us"] = Percentile(callback_us, 0.99);
  state.counters["cb_max_us"] = Percentile(callback_us, 1.0);
  state.counters["ack_p50_us"] = Percentile(ack_us, 0.50);
  state.counters["ack_p99_us"] = Percentile(ack_us, 0.99);
  state.counters["timeouts"] = static_cast<double>(timeouts);
}
BENCHMARK(BM_UpdateToCallback)->Iterations(200)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace snapconf

BENCHMARK_MAIN();
