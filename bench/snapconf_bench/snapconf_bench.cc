// snapconf-bench: one load generator for snapconf (snapconf.v1) and etcd (v3 API).
//
// The same client code drives both servers, so a comparison measures the
// servers and not two different clients. Unary workloads keep --inflight calls
// outstanding over --connections channels with gRPC's callback API (no thread
// per call, closed loop); watch workloads open --watchers streams, one
// subscriber per stream on both servers. Every run prints a table and, with
// --output, writes one JSON object that bench/compare-etcd.sh and
// bench/charts.sh read. The tool measures; it never judges a number.
//
// Workloads:
//   load          write keys 0..--keys-1 in 128-key transactions, then stop
//   get           point reads of random keys (etcd: Range, serializable unless
//                 --linearizable)
//   put           durable one-key writes of random keys
//   mixed         --write_percent writes, the rest point reads
//   watch-fanout  one change to every subscriber, timed until the last one got
//                 it (--rounds times), then sustained deliveries per second
//                 while --inflight writers write for --duration
//   watch-memory  server RSS per idle subscriber (needs --server_pid)
//   ready         poll until the server answers a read; reports the time since
//                 --since_unix_ns (when the server was started) and its RSS
//
//   snapconf-bench --target=etcd --endpoint=127.0.0.1:2379 --workload=get
//       --connections=4 --inflight=64 --keys=10000 --duration=10s --output=get.json
//
// --endpoint may list several servers (snapconfd replicas, etcd members):
// channel i connects to endpoint i mod N, so calls and streams are spread
// evenly over them; --server_pids sums the CPU of several processes.
#include <grpcpp/grpcpp.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "common/status_macros.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"

ABSL_FLAG(std::string, target, "snapconf", "snapconf | etcd");
ABSL_FLAG(std::string, endpoint, "127.0.0.1:7070",
          "server address host:port, or several separated by commas (channel i connects to "
          "endpoint i mod N; --connections is raised to N when lower)");
ABSL_FLAG(std::string, workload, "get",
          "load | get | put | mixed | watch-fanout | watch-memory | ready");
ABSL_FLAG(int, connections, 4, "gRPC channels (TCP connections) to spread calls or streams over");
ABSL_FLAG(int, inflight, 64, "calls kept outstanding (writers for put and watch-fanout)");
ABSL_FLAG(int64_t, keys, 10000, "distinct keys");
ABSL_FLAG(int, value_bytes, 100, "value size in bytes");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10),
          "measured time (ready: how long to wait for the server)");
ABSL_FLAG(std::string, output, "", "write the result as JSON to this file");
ABSL_FLAG(bool, preload, true, "get and mixed: write the keys first");
ABSL_FLAG(bool, linearizable, false, "etcd reads: linearizable Range instead of serializable");
ABSL_FLAG(int, write_percent, 5, "mixed: share of writes in percent");
ABSL_FLAG(int, watchers, 1000, "watch workloads: subscribers, one stream each");
ABSL_FLAG(int, rounds, 10, "watch-fanout: single changes to time");
ABSL_FLAG(int, server_pid, 0, "server process id, for its RSS from /proc");
ABSL_FLAG(std::string, server_pids, "",
          "comma-separated process ids whose CPU is summed as the server's (several "
          "servers); replaces --server_pid for the CPU rows");
ABSL_FLAG(int64_t, since_unix_ns, 0, "ready: when the server process was started");
ABSL_FLAG(std::string, label, "", "free text copied into the JSON (e.g. the data set)");

namespace snapconf::bench {
namespace {

constexpr int kLoadBatch = 128;  // both servers' limit of operations per transaction
constexpr char kDataNamespace[] = "bench";
constexpr char kWatchNamespace[] = "watch";
using Clock = std::chrono::steady_clock;
using Done = std::function<void(grpc::Status)>;

enum class Target { kSnapconf, kEtcd };
enum class Mode { kLoad, kGet, kPut, kMixed };

// ---------------------------------------------------------------------------
// Results

// Named numbers in the order they were added; printed as a table and as JSON.
class Report {
 public:
  void Add(std::string name, double value) { metrics_.emplace_back(std::move(name), value); }
  void Note(std::string text) { notes_.push_back(std::move(text)); }

  void Print(const std::string& heading) const {
    std::printf("%s\n", heading.c_str());
    for (const auto& [name, value] : metrics_) {
      std::printf("  %-26s %14.2f\n", name.c_str(), value);
    }
    for (const std::string& n : notes_) std::printf("  note: %s\n", n.c_str());
  }

  std::string Json(const std::vector<std::pair<std::string, std::string>>& params) const {
    std::string out = "{";
    for (const auto& [k, v] : params) absl::StrAppend(&out, "\"", k, "\": ", v, ", ");
    absl::StrAppend(&out, "\"metrics\": {");
    for (size_t i = 0; i < metrics_.size(); ++i) {
      const double v = std::isfinite(metrics_[i].second) ? metrics_[i].second : -1;
      absl::StrAppend(&out, i ? ", " : "", "\"", metrics_[i].first,
                      "\": ", absl::StrFormat("%.3f", v));
    }
    absl::StrAppend(&out, "}, \"notes\": [");
    for (size_t i = 0; i < notes_.size(); ++i) {
      absl::StrAppend(&out, i ? ", " : "", Quote(notes_[i]));
    }
    absl::StrAppend(&out, "]}\n");
    return out;
  }

  static std::string Quote(const std::string& s) {
    std::string out = "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c == '\n' ? ' ' : c);
    }
    return out + "\"";
  }

 private:
  std::vector<std::pair<std::string, double>> metrics_;
  std::vector<std::string> notes_;
};

// Percentiles of recorded latencies (microseconds). Samples are kept whole:
// a 10-second run at 50k calls/s is 2 MB of floats, and exact percentiles
// need no bucket-width caveat.
void AddPercentiles(const std::string& prefix, std::vector<float> samples, Report* report) {
  if (samples.empty()) return;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    const size_t i =
        std::min(samples.size() - 1, static_cast<size_t>(q * static_cast<double>(samples.size())));
    return static_cast<double>(samples[i]);
  };
  report->Add(prefix + "p50_us", at(0.50));
  report->Add(prefix + "p90_us", at(0.90));
  report->Add(prefix + "p99_us", at(0.99));
  report->Add(prefix + "p999_us", at(0.999));
  report->Add(prefix + "max_us", static_cast<double>(samples.back()));
}

// Resident memory of a process in KiB, from /proc; -1 when unreadable.
int64_t RssKiB(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      int64_t kib = -1;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits.push_back(c);
      }
      return absl::SimpleAtoi(digits, &kib) ? kib : -1;
    }
  }
  return -1;
}

// CPU time (user + system) a process has used, in microseconds, from
// /proc/PID/stat; -1 when unreadable. Comparing it with wall time tells a
// server that is busy from one that waits (for fsync, or for a core it shares).
double CpuUs(int pid) {
  if (pid <= 0) return -1;
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  // After the command name: state is field 3, utime field 14, stime field 15.
  std::vector<std::string> fields = absl::StrSplit(stat.substr(paren + 2), ' ');
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return -1;
  }
  return static_cast<double>(utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The processes counted as the server: --server_pids when given, else
// --server_pid (none when 0). Rejected by CheckFlags when not numbers.
std::vector<int> ServerPids() {
  std::vector<int> pids;
  const std::string list = absl::GetFlag(FLAGS_server_pids);
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(part, &pid) && pid > 0) pids.push_back(pid);
  }
  if (list.empty() && absl::GetFlag(FLAGS_server_pid) > 0) {
    pids.push_back(absl::GetFlag(FLAGS_server_pid));
  }
  return pids;
}

// CPU time of every process in `pids`, summed; -1 when any is unreadable.
double SumCpuUs(const std::vector<int>& pids) {
  double sum = 0;
  for (int pid : pids) {
    const double us = CpuUs(pid);
    if (us < 0) return -1;
    sum += us;
  }
  return sum;
}

// Server and client CPU over a measured phase.
class CpuMeter {
 public:
  CpuMeter() : server_pids_(ServerPids()) {
    server_start_ = SumCpuUs(server_pids_);
    client_start_ = CpuUs(getpid());
  }
  // Adds CPU per unit of work (`per` names the unit) and the share of one
  // core each process used over `seconds`.
  void AddTo(double units, const std::string& per, double seconds, Report* report) const {
    const double client = CpuUs(getpid()) - client_start_;
    const double server_end = SumCpuUs(server_pids_);
    if (!server_pids_.empty() && server_start_ >= 0 && server_end >= 0) {
      const double server = server_end - server_start_;
      if (units > 0) report->Add(absl::StrCat("server_cpu_us_per_", per), server / units);
      report->Add("server_cores_used", server / (seconds * 1e6));
    }
    if (units > 0) report->Add(absl::StrCat("client_cpu_us_per_", per), client / units);
    report->Add("client_cores_used", client / (seconds * 1e6));
  }

 private:
  std::vector<int> server_pids_;
  double server_start_;
  double client_start_;
};

std::string DataKey(int64_t i) { return absl::StrCat("key-", i); }

// ---------------------------------------------------------------------------
// Channels

// `endpoints` is one address or several separated by commas; channel i
// connects to endpoint i mod N, and there are at least N channels.
std::vector<std::shared_ptr<grpc::Channel>> OpenChannels(const std::string& endpoints, int n) {
  const std::vector<std::string> list = absl::StrSplit(endpoints, ',', absl::SkipEmpty());
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  const int count = std::max({1, n, static_cast<int>(list.size())});
  for (int i = 0; i < count; ++i) {
    const std::string& endpoint = list[static_cast<size_t>(i) % list.size()];
    grpc::ChannelArguments args;
    // Distinct arguments give each channel its own subchannel and TCP
    // connection instead of one shared by all.
    args.SetInt("snapconf.bench.connection", i);
    args.SetMaxReceiveMessageSize(64 << 20);
    channels.push_back(
        grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args));
  }
  return channels;
}

absl::Status WaitConnected(const std::vector<std::shared_ptr<grpc::Channel>>& channels) {
  for (const auto& c : channels) {
    if (!c->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
      return absl::UnavailableError("cannot connect to the server within 10 s");
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Unary load: closed-loop slots

// Shared by all slots of one unary run.
struct UnaryRun {
  Mode mode = Mode::kGet;
  std::string ns = kDataNamespace;
  int64_t keys = 1;
  std::string value;
  int write_percent = 0;
  bool linearizable = false;
  absl::Time end;
  int64_t batches = 0;
  std::atomic<int64_t> next_batch{0};
  std::atomic<int64_t> errors{0};
  std::atomic<bool> error_logged{false};

  Mutex mu;
  CondVar cv;
  int running ABSL_GUARDED_BY(mu) = 0;

  void Retire() {
    MutexLock lock(&mu);
    if (--running == 0) cv.SignalAll();
  }
};

// One outstanding call: the completion of a call starts the next one, until
// the deadline (or, for load, until every batch is taken).
class Slot {
 public:
  Slot(UnaryRun* run, int index) : run_(run), rng_(static_cast<uint32_t>(index * 7919 + 1)) {}
  virtual ~Slot() = default;

  void Next() {
    bool write = false;
    int64_t key = 0;
    int64_t count = 1;
    if (run_->mode == Mode::kLoad) {
      const int64_t batch = run_->next_batch.fetch_add(1);
      if (batch >= run_->batches) return run_->Retire();
      key = batch * kLoadBatch;
      count = std::min<int64_t>(kLoadBatch, run_->keys - key);
      write = true;
    } else {
      if (absl::Now() >= run_->end) return run_->Retire();
      key = static_cast<int64_t>(rng_() % static_cast<uint64_t>(run_->keys));
      write = run_->mode == Mode::kPut ||
              (run_->mode == Mode::kMixed && static_cast<int>(rng_() % 100) < run_->write_percent);
    }
    // The previous call's context may still be referenced while its callback
    // unwinds; keep it one more call.
    which_ ^= 1;
    ctx_[which_] = std::make_unique<grpc::ClientContext>();
    ctx_[which_]->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    start_ = Clock::now();
    Done done = [this, write](grpc::Status s) {
      const float us = std::chrono::duration<float, std::micro>(Clock::now() - start_).count();
      if (!s.ok()) {
        run_->errors.fetch_add(1, std::memory_order_relaxed);
        if (!run_->error_logged.exchange(true)) {
          std::fprintf(stderr, "snapconf-bench: call failed: %d %s\n",
                       static_cast<int>(s.error_code()), s.error_message().c_str());
        }
      } else {
        (write ? write_us_ : read_us_).push_back(us);
      }
      Next();
    };
    if (run_->mode == Mode::kLoad) {
      StartLoad(ctx_[which_].get(), key, count, std::move(done));
    } else if (write) {
      StartPut(ctx_[which_].get(), key, std::move(done));
    } else {
      StartGet(ctx_[which_].get(), key, std::move(done));
    }
  }

  const std::vector<float>& read_us() const { return read_us_; }
  const std::vector<float>& write_us() const { return write_us_; }

 protected:
  virtual void StartGet(grpc::ClientContext* ctx, int64_t key, Done done) = 0;
  virtual void StartPut(grpc::ClientContext* ctx, int64_t key, Done done) = 0;
  virtual void StartLoad(grpc::ClientContext* ctx, int64_t first, int64_t count, Done done) = 0;

  UnaryRun* const run_;

 private:
  std::minstd_rand rng_;
  Clock::time_point start_;
  std::unique_ptr<grpc::ClientContext> ctx_[2];
  int which_ = 0;
  std::vector<float> read_us_;
  std::vector<float> write_us_;
};

class SnapconfSlot : public Slot {
 public:
  SnapconfSlot(UnaryRun* run, int index, v1::ConfigService::Stub* stub)
      : Slot(run, index), stub_(stub) {}

 protected:
  void StartGet(grpc::ClientContext* ctx, int64_t key, Done done) override {
    get_.set_namespace_(run_->ns);
    get_.set_key(DataKey(key));
    stub_->async()->Get(ctx, &get_, &get_resp_, std::move(done));
  }
  void StartPut(grpc::ClientContext* ctx, int64_t key, Done done) override {
    put_.set_namespace_(run_->ns);
    put_.set_key(DataKey(key));
    put_.set_value(run_->value);
    stub_->async()->Put(ctx, &put_, &put_resp_, std::move(done));
  }
  void StartLoad(grpc::ClientContext* ctx, int64_t first, int64_t count, Done done) override {
    txn_.Clear();
    for (int64_t k = first; k < first + count; ++k) {
      v1::TxnOperation::Put* p = txn_.add_operations()->mutable_put();
      p->set_namespace_(run_->ns);
      p->set_key(DataKey(k));
      p->set_value(run_->value);
    }
    stub_->async()->Txn(ctx, &txn_, &txn_resp_, std::move(done));
  }

 private:
  v1::ConfigService::Stub* stub_;
  v1::GetRequest get_;
  v1::GetResponse get_resp_;
  v1::PutRequest put_;
  v1::PutResponse put_resp_;
  v1::TxnRequest txn_;
  v1::TxnResponse txn_resp_;
};

class EtcdSlot : public Slot {
 public:
  EtcdSlot(UnaryRun* run, int index, etcdserverpb::KV::Stub* stub)
      : Slot(run, index), stub_(stub) {}

 protected:
  void StartGet(grpc::ClientContext* ctx, int64_t key, Done done) override {
    range_.set_key(absl::StrCat(run_->ns, "/", DataKey(key)));
    range_.set_serializable(!run_->linearizable);
    stub_->async()->Range(ctx, &range_, &range_resp_, std::move(done));
  }
  void StartPut(grpc::ClientContext* ctx, int64_t key, Done done) override {
    put_.set_key(absl::StrCat(run_->ns, "/", DataKey(key)));
    put_.set_value(run_->value);
    stub_->async()->Put(ctx, &put_, &put_resp_, std::move(done));
  }
  void StartLoad(grpc::ClientContext* ctx, int64_t first, int64_t count, Done done) override {
    txn_.Clear();
    for (int64_t k = first; k < first + count; ++k) {
      etcdserverpb::PutRequest* p = txn_.add_success()->mutable_request_put();
      p->set_key(absl::StrCat(run_->ns, "/", DataKey(k)));
      p->set_value(run_->value);
    }
    stub_->async()->Txn(ctx, &txn_, &txn_resp_, std::move(done));
  }

 private:
  etcdserverpb::KV::Stub* stub_;
  etcdserverpb::RangeRequest range_;
  etcdserverpb::RangeResponse range_resp_;
  etcdserverpb::PutRequest put_;
  etcdserverpb::PutResponse put_resp_;
  etcdserverpb::TxnRequest txn_;
  etcdserverpb::TxnResponse txn_resp_;
};

// Stubs for one target over a set of channels.
struct Clients {
  Target target = Target::kSnapconf;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::ConfigService::Stub>> config;
  std::vector<std::unique_ptr<v1::WatchService::Stub>> watch;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv;
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> etcd_watch;

  Clients(Target t, std::vector<std::shared_ptr<grpc::Channel>> chans)
      : target(t), channels(std::move(chans)) {
    for (const auto& c : channels) {
      if (target == Target::kSnapconf) {
        config.push_back(v1::ConfigService::NewStub(c));
        watch.push_back(v1::WatchService::NewStub(c));
      } else {
        kv.push_back(etcdserverpb::KV::NewStub(c));
        etcd_watch.push_back(etcdserverpb::Watch::NewStub(c));
      }
    }
  }

  std::unique_ptr<Slot> NewSlot(UnaryRun* run, int index) {
    const size_t c = static_cast<size_t>(index) % channels.size();
    if (target == Target::kSnapconf) {
      return std::make_unique<SnapconfSlot>(run, index, config[c].get());
    }
    return std::make_unique<EtcdSlot>(run, index, kv[c].get());
  }
};

struct UnaryResult {
  double seconds = 0;
  int64_t calls = 0;
  int64_t errors = 0;
  std::vector<float> read_us;
  std::vector<float> write_us;
};

// Runs one closed-loop unary workload to completion.
UnaryResult RunUnary(Clients* clients, UnaryRun* run, int inflight) {
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < inflight; ++i) slots.push_back(clients->NewSlot(run, i));
  const absl::Time start = absl::Now();
  run->end = start + absl::GetFlag(FLAGS_duration);
  {
    MutexLock lock(&run->mu);
    run->running = inflight;
  }
  for (auto& s : slots) s->Next();
  {
    MutexLock lock(&run->mu);
    while (run->running > 0) run->cv.Wait(&run->mu);
  }
  UnaryResult r;
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.errors = run->errors.load();
  for (const auto& s : slots) {
    r.read_us.insert(r.read_us.end(), s->read_us().begin(), s->read_us().end());
    r.write_us.insert(r.write_us.end(), s->write_us().begin(), s->write_us().end());
  }
  r.calls = static_cast<int64_t>(r.read_us.size() + r.write_us.size());
  return r;
}

// Writes keys 0..keys-1 into `ns` with 128-key transactions.
absl::Status Preload(Clients* clients, const std::string& ns, int64_t keys,
                     const std::string& value, Report* report) {
  UnaryRun run;
  run.mode = Mode::kLoad;
  run.ns = ns;
  run.keys = keys;
  run.value = value;
  run.batches = (keys + kLoadBatch - 1) / kLoadBatch;
  UnaryResult r = RunUnary(clients, &run, std::min<int>(32, static_cast<int>(run.batches) + 1));
  if (r.errors > 0) return absl::InternalError(absl::StrCat(r.errors, " load transactions failed"));
  if (report != nullptr) {
    report->Add("load_seconds", r.seconds);
    report->Add("load_keys_per_s", static_cast<double>(keys) / r.seconds);
  }
  return absl::OkStatus();
}

absl::Status RunUnaryWorkload(Clients* clients, Mode mode, Report* report) {
  const int64_t keys = std::max<int64_t>(1, absl::GetFlag(FLAGS_keys));
  const std::string value(static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_value_bytes))), 'v');
  if (mode == Mode::kLoad) return Preload(clients, kDataNamespace, keys, value, report);
  if (mode != Mode::kPut && absl::GetFlag(FLAGS_preload)) {
    RETURN_IF_ERROR(Preload(clients, kDataNamespace, keys, value, nullptr));
  }
  UnaryRun run;
  run.mode = mode;
  run.keys = keys;
  run.value = value;
  run.write_percent = absl::GetFlag(FLAGS_write_percent);
  run.linearizable = absl::GetFlag(FLAGS_linearizable);
  const CpuMeter cpu;
  UnaryResult r = RunUnary(clients, &run, std::max(1, absl::GetFlag(FLAGS_inflight)));
  report->Add("ops_per_s", static_cast<double>(r.calls) / r.seconds);
  report->Add("calls", static_cast<double>(r.calls));
  report->Add("errors", static_cast<double>(r.errors));
  std::vector<float> all = r.read_us;
  all.insert(all.end(), r.write_us.begin(), r.write_us.end());
  AddPercentiles("", std::move(all), report);
  cpu.AddTo(static_cast<double>(r.calls), "op", r.seconds, report);
  if (mode == Mode::kMixed) {
    AddPercentiles("read_", std::move(r.read_us), report);
    AddPercentiles("write_", std::move(r.write_us), report);
  }
  if (r.errors > 0) return absl::InternalError(absl::StrCat(r.errors, " calls failed"));
  if (r.calls == 0) return absl::InternalError("no call completed");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Watch: one subscriber per stream

// Shared by every subscriber of a run. Reactions only touch atomics, except
// for the one that completes a count, which wakes the waiting thread.
struct WatchTally {
  int total = 0;
  std::atomic<int> ready{0};
  std::atomic<int> ended{0};
  std::atomic<int> failed{0};
  // Fan-out rounds: a subscriber counts once per round when it has seen
  // `target`. `round` is advanced after `target` is set.
  std::atomic<int64_t> target{std::numeric_limits<int64_t>::max()};
  std::atomic<int> round{0};
  std::atomic<int> reached{0};
  // Sustained phase: revisions delivered, summed over subscribers.
  std::atomic<bool> counting{false};
  std::atomic<int64_t> deliveries{0};

  Mutex mu;
  CondVar cv;
  Clock::time_point last_reached_at ABSL_GUARDED_BY(mu);

  void Wake() {
    MutexLock lock(&mu);
    cv.SignalAll();
  }
  // Waits until `count` reaches `want` or `timeout` passes.
  bool WaitFor(const std::atomic<int>& count, int want, absl::Duration timeout) {
    const auto deadline = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(timeout);
    MutexLock lock(&mu);
    while (count.load() < want) {
      if (!cv.WaitUntil(&mu, deadline) && count.load() < want) return false;
    }
    return true;
  }
};

// What both protocols' subscribers share: the accounting.
class Subscriber {
 public:
  explicit Subscriber(WatchTally* tally) : tally_(tally) {}
  virtual ~Subscriber() = default;
  virtual void Cancel() = 0;

 protected:
  void Ready() {
    if (ready_) return;
    ready_ = true;
    if (tally_->ready.fetch_add(1) + 1 == tally_->total) tally_->Wake();
  }
  // `revisions` whole revisions arrived, the newest being `newest`.
  void Delivered(int64_t newest, int64_t revisions) {
    if (tally_->counting.load(std::memory_order_relaxed)) {
      tally_->deliveries.fetch_add(revisions, std::memory_order_relaxed);
    }
    const int round = tally_->round.load();
    if (round != counted_round_ && newest >= tally_->target.load()) {
      counted_round_ = round;
      if (tally_->reached.fetch_add(1) + 1 == tally_->total) {
        MutexLock lock(&tally_->mu);
        tally_->last_reached_at = Clock::now();
        tally_->cv.SignalAll();
      }
    }
  }
  void Ended(const grpc::Status& s) {
    if (s.error_code() != grpc::StatusCode::CANCELLED && tally_->failed.fetch_add(1) == 0) {
      std::fprintf(stderr, "snapconf-bench: watch stream ended: %d %s\n",
                   static_cast<int>(s.error_code()), s.error_message().c_str());
    }
    // Once the count is complete the owner may destroy this subscriber and
    // then the tally, so nothing of the subscriber is touched after the
    // increment, and the increment happens under the lock the owner takes to
    // see it.
    WatchTally* const tally = tally_;
    MutexLock lock(&tally->mu);
    if (tally->ended.fetch_add(1) + 1 == tally->total) tally->cv.SignalAll();
  }

  WatchTally* const tally_;

 private:
  bool ready_ = false;
  int counted_round_ = 0;
};

class SnapconfSubscriber final
    : public Subscriber,
      public grpc::ClientBidiReactor<v1::WatchRequest, v1::WatchResponse> {
 public:
  SnapconfSubscriber(v1::WatchService::Stub* stub, WatchTally* tally) : Subscriber(tally) {
    v1::WatchCreateRequest* create = request_.mutable_create();
    create->add_filters()->set_namespace_(kWatchNamespace);
    create->set_mode(v1::DELIVERY_MODE_EVERY_REVISION);
    stub->async()->Watch(&ctx_, this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() override { ctx_.TryCancel(); }
  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (response_.has_reset() && !response_.reset().more()) {
      Ready();
    } else if (response_.has_changes()) {
      Delivered(response_.changes().revision(), response_.changes().revisions_size());
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& s) override { Ended(s); }

 private:
  grpc::ClientContext ctx_;
  v1::WatchRequest request_;
  v1::WatchResponse response_;
};

class EtcdSubscriber final
    : public Subscriber,
      public grpc::ClientBidiReactor<etcdserverpb::WatchRequest, etcdserverpb::WatchResponse> {
 public:
  EtcdSubscriber(etcdserverpb::Watch::Stub* stub, WatchTally* tally) : Subscriber(tally) {
    // The same key range as the snapconf namespace: every key under "watch/".
    etcdserverpb::WatchCreateRequest* create = request_.mutable_create_request();
    create->set_key(absl::StrCat(kWatchNamespace, "/"));
    create->set_range_end(absl::StrCat(kWatchNamespace, "0"));  // '/' + 1
    stub->async()->Watch(&ctx_, this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() override { ctx_.TryCancel(); }
  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (response_.created()) Ready();
    if (response_.canceled()) {
      std::fprintf(stderr, "snapconf-bench: etcd canceled a watch: %s\n",
                   response_.cancel_reason().c_str());
    }
    if (response_.events_size() > 0) {
      // One Put per revision: an event is a revision delivered.
      const int n = response_.events_size();
      Delivered(response_.events(n - 1).kv().mod_revision(), n);
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& s) override { Ended(s); }

 private:
  grpc::ClientContext ctx_;
  etcdserverpb::WatchRequest request_;
  etcdserverpb::WatchResponse response_;
};

// One synchronous Put of the watched key; returns the revision it created.
absl::StatusOr<int64_t> PutWatchedKey(Clients* clients, int i) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status s;
  int64_t revision = 0;
  const std::string value = absl::StrCat("v", i);
  if (clients->target == Target::kSnapconf) {
    v1::PutRequest req;
    v1::PutResponse resp;
    req.set_namespace_(kWatchNamespace);
    req.set_key("k");
    req.set_value(value);
    s = clients->config[0]->Put(&ctx, req, &resp);
    revision = resp.header().revision();
  } else {
    etcdserverpb::PutRequest req;
    etcdserverpb::PutResponse resp;
    req.set_key(absl::StrCat(kWatchNamespace, "/k"));
    req.set_value(value);
    s = clients->kv[0]->Put(&ctx, req, &resp);
    revision = resp.header().revision();
  }
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat("put failed: ", s.error_message()));
  }
  return revision;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status RunWatch(Clients* clients, bool fanout, Report* report) {
  const int watchers = std::max(1, absl::GetFlag(FLAGS_watchers));
  // Memory is measured only by watch-memory: it needs quiet seconds around
  // the readings that would slow every fan-out run.
  const int pid = fanout ? 0 : absl::GetFlag(FLAGS_server_pid);
  if (!fanout && pid <= 0) return absl::InvalidArgumentError("watch-memory needs --server_pid");
  ASSIGN_OR_RETURN(int64_t head, PutWatchedKey(clients, 0));
  if (pid > 0) absl::SleepFor(absl::Milliseconds(500));
  const int64_t rss_before = RssKiB(pid);

  WatchTally tally;
  tally.total = watchers;
  std::vector<std::unique_ptr<Subscriber>> subs;
  subs.reserve(static_cast<size_t>(watchers));
  const absl::Time open_start = absl::Now();
  for (int i = 0; i < watchers; ++i) {
    const size_t c = static_cast<size_t>(i) % clients->channels.size();
    if (clients->target == Target::kSnapconf) {
      subs.push_back(std::make_unique<SnapconfSubscriber>(clients->watch[c].get(), &tally));
    } else {
      subs.push_back(std::make_unique<EtcdSubscriber>(clients->etcd_watch[c].get(), &tally));
    }
  }
  // Cancels every stream and waits for gRPC to finish with them before they
  // are destroyed; on timeout they are leaked rather than freed under gRPC.
  auto close_all = [&]() -> absl::Status {
    for (auto& s : subs) s->Cancel();
    if (!tally.WaitFor(tally.ended, watchers, absl::Seconds(60))) {
      for (auto& s : subs) (void)s.release();
      return absl::DeadlineExceededError("watch streams did not end within 60 s");
    }
    subs.clear();
    return absl::OkStatus();
  };
  const absl::Duration open_timeout = absl::Seconds(30) + absl::Milliseconds(5) * watchers;
  if (!tally.WaitFor(tally.ready, watchers, open_timeout) || tally.failed.load() > 0) {
    const int ready = tally.ready.load();
    (void)close_all();
    return absl::UnavailableError(
        absl::StrCat("only ", ready, " of ", watchers, " watch streams became ready"));
  }
  report->Add("open_all_streams_ms", absl::ToDoubleMilliseconds(absl::Now() - open_start));
  if (pid > 0) {
    absl::SleepFor(absl::Seconds(1));
    const int64_t rss_after = RssKiB(pid);
    report->Add("server_rss_before_kib", static_cast<double>(rss_before));
    report->Add("server_rss_with_streams_kib", static_cast<double>(rss_after));
    report->Add("rss_per_subscriber_kib",
                static_cast<double>(rss_after - rss_before) / static_cast<double>(watchers));
  }
  if (!fanout) return close_all();

  // One change at a time: the time from sending the Put until the last
  // subscriber has its revision. The writer is the only one, so the Put's
  // revision is known in advance and subscribers can count it even when it
  // reaches them before the Put's response reaches us.
  std::vector<double> to_last_ms;
  std::vector<double> ack_ms;
  // Round 1 is a warm-up and not recorded: when the streams had been idle for
  // a second, the first change reached the last subscriber ~100 ms late with
  // either server, so it measures a wake-up, not the fan-out.
  for (int r = 1; r <= std::max(0, absl::GetFlag(FLAGS_rounds)) + 1; ++r) {
    tally.reached.store(0);
    tally.target.store(head + 1);
    tally.round.store(r);
    const Clock::time_point sent = Clock::now();
    absl::StatusOr<int64_t> rev = PutWatchedKey(clients, r);
    const Clock::time_point acked = Clock::now();
    if (!rev.ok()) {
      (void)close_all();
      return rev.status();
    }
    if (*rev != head + 1) {
      (void)close_all();
      return absl::FailedPreconditionError(
          absl::StrCat("revision ", *rev, " instead of ", head + 1, ": another client is writing"));
    }
    head = *rev;
    if (!tally.WaitFor(tally.reached, watchers, absl::Seconds(60))) {
      const int reached = tally.reached.load();
      (void)close_all();
      return absl::DeadlineExceededError(absl::StrCat("round ", r, ": ", reached, " of ", watchers,
                                                      " subscribers got the change in 60 s"));
    }
    Clock::time_point last;
    {
      MutexLock lock(&tally.mu);
      last = tally.last_reached_at;
    }
    if (r > 1) {
      to_last_ms.push_back(std::chrono::duration<double, std::milli>(last - sent).count());
      ack_ms.push_back(std::chrono::duration<double, std::milli>(acked - sent).count());
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (!to_last_ms.empty()) {
    report->Add("fanout_rounds", static_cast<double>(to_last_ms.size()));
    report->Add("fanout_to_last_min_ms", *std::min_element(to_last_ms.begin(), to_last_ms.end()));
    report->Add("fanout_to_last_p50_ms", Median(to_last_ms));
    report->Add("fanout_to_last_max_ms", *std::max_element(to_last_ms.begin(), to_last_ms.end()));
    report->Add("fanout_put_ack_p50_ms", Median(ack_ms));
  }

  // Sustained: writers change the watched key as fast as the server commits;
  // every revision is due at every subscriber.
  UnaryRun run;
  run.mode = Mode::kPut;
  run.ns = kWatchNamespace;
  run.keys = 1;
  run.value = "v";
  tally.target.store(std::numeric_limits<int64_t>::max());
  tally.deliveries.store(0);
  tally.counting.store(true);
  const CpuMeter cpu;
  const UnaryResult w = RunUnary(clients, &run, std::max(1, absl::GetFlag(FLAGS_inflight)));
  tally.counting.store(false);
  const double delivered = static_cast<double>(tally.deliveries.load());
  cpu.AddTo(delivered, "delivery", w.seconds, report);
  report->Add("sustained_writes_per_s", static_cast<double>(w.calls) / w.seconds);
  // A server that cannot keep up may time writes out (etcd answers
  // "request timed out" with 10k watchers): that is a result, not a failure
  // of the tool. The rounds above already failed the run if writes never work.
  report->Add("sustained_put_errors", static_cast<double>(w.errors));
  report->Add("deliveries_per_s", delivered / w.seconds);
  report->Add("delivered_share",
              w.calls > 0 ? delivered / (static_cast<double>(w.calls) * watchers) : 0);
  AddPercentiles("sustained_put_", w.write_us, report);
  RETURN_IF_ERROR(close_all());
  if (tally.failed.load() > 0) return absl::InternalError("watch streams failed");
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Start-up

// Polls until the server answers a read of key 0, then reports the time since
// the server was started and its RSS.
absl::Status RunReady(Clients* clients, Report* report) {
  const int64_t since = absl::GetFlag(FLAGS_since_unix_ns);
  const absl::Time deadline = absl::Now() + absl::GetFlag(FLAGS_duration);
  grpc::Status last;
  for (int attempt = 0; absl::Now() < deadline && attempt < 100000; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
    if (clients->target == Target::kSnapconf) {
      v1::GetRequest req;
      v1::GetResponse resp;
      req.set_namespace_(kDataNamespace);
      req.set_key(DataKey(0));
      last = clients->config[0]->Get(&ctx, req, &resp);
    } else {
      etcdserverpb::RangeRequest req;
      etcdserverpb::RangeResponse resp;
      req.set_key(absl::StrCat(kDataNamespace, "/", DataKey(0)));
      last = clients->kv[0]->Range(&ctx, req, &resp);
    }
    if (last.ok() || last.error_code() == grpc::StatusCode::NOT_FOUND) {
      const absl::Time now = absl::Now();
      if (since > 0) {
        report->Add("startup_ms", absl::ToDoubleMilliseconds(now - absl::FromUnixNanos(since)));
      }
      const int pid = absl::GetFlag(FLAGS_server_pid);
      if (pid > 0) {
        report->Add("server_cpu_ms_until_ready", CpuUs(pid) / 1000);
        report->Add("server_rss_kib", static_cast<double>(RssKiB(pid)));
        absl::SleepFor(absl::Seconds(1));
        report->Add("server_rss_after_1s_kib", static_cast<double>(RssKiB(pid)));
      }
      return absl::OkStatus();
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return absl::UnavailableError(
      absl::StrCat("server did not answer a read in time: ", last.error_message()));
}

// Rejects flag values no run can use, before anything connects.
absl::Status CheckFlags() {
  static const char* const kWorkloads[] = {"load",         "get",          "put",  "mixed",
                                           "watch-fanout", "watch-memory", "ready"};
  const std::string workload = absl::GetFlag(FLAGS_workload);
  if (std::find(std::begin(kWorkloads), std::end(kWorkloads), workload) == std::end(kWorkloads)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown --workload=", workload,
                     "; one of load, get, put, mixed, watch-fanout, watch-memory, ready"));
  }
  auto at_least = [](const char* name, int64_t value, int64_t min) -> absl::Status {
    if (value >= min) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("--", name, "=", value, " must be >= ", min));
  };
  RETURN_IF_ERROR(at_least("connections", absl::GetFlag(FLAGS_connections), 1));
  RETURN_IF_ERROR(at_least("inflight", absl::GetFlag(FLAGS_inflight), 1));
  RETURN_IF_ERROR(at_least("keys", absl::GetFlag(FLAGS_keys), 1));
  RETURN_IF_ERROR(at_least("value_bytes", absl::GetFlag(FLAGS_value_bytes), 0));
  RETURN_IF_ERROR(at_least("watchers", absl::GetFlag(FLAGS_watchers), 1));
  RETURN_IF_ERROR(at_least("rounds", absl::GetFlag(FLAGS_rounds), 0));
  const int write_percent = absl::GetFlag(FLAGS_write_percent);
  if (write_percent < 0 || write_percent > 100) {
    return absl::InvalidArgumentError("--write_percent must be between 0 and 100");
  }
  if (absl::GetFlag(FLAGS_duration) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--duration must be positive");
  }
  const std::vector<std::string> endpoints =
      absl::StrSplit(absl::GetFlag(FLAGS_endpoint), ',', absl::SkipEmpty());
  if (endpoints.empty()) return absl::InvalidArgumentError("--endpoint is empty");
  for (absl::string_view pid :
       absl::StrSplit(absl::GetFlag(FLAGS_server_pids), ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(pid, &value) || value <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--server_pids: '", pid, "' is not a process id"));
    }
  }
  if (workload == "watch-memory" && absl::GetFlag(FLAGS_server_pid) <= 0) {
    return absl::InvalidArgumentError("--workload=watch-memory needs --server_pid");
  }
  return absl::OkStatus();
}

int Main() {
  if (absl::Status s = CheckFlags(); !s.ok()) {
    std::fprintf(stderr, "snapconf-bench: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  const std::string target_name = absl::GetFlag(FLAGS_target);
  const std::string workload = absl::GetFlag(FLAGS_workload);
  Target target;
  if (target_name == "snapconf") {
    target = Target::kSnapconf;
  } else if (target_name == "etcd") {
    target = Target::kEtcd;
  } else {
    std::fprintf(stderr, "snapconf-bench: --target must be snapconf or etcd\n");
    return 2;
  }
  const bool watch = workload == "watch-fanout" || workload == "watch-memory";
  const int connections = std::max(1, absl::GetFlag(FLAGS_connections));
  Clients clients(
      target, OpenChannels(absl::GetFlag(FLAGS_endpoint), workload == "ready" ? 1 : connections));
  Report report;
  absl::Status status;
  if (workload == "ready") {
    status = RunReady(&clients, &report);
  } else if ((status = WaitConnected(clients.channels)).ok()) {
    if (watch) {
      status = RunWatch(&clients, workload == "watch-fanout", &report);
    } else if (workload == "load") {
      status = RunUnaryWorkload(&clients, Mode::kLoad, &report);
    } else if (workload == "get") {
      status = RunUnaryWorkload(&clients, Mode::kGet, &report);
    } else if (workload == "put") {
      status = RunUnaryWorkload(&clients, Mode::kPut, &report);
    } else if (workload == "mixed") {
      status = RunUnaryWorkload(&clients, Mode::kMixed, &report);
    } else {
      std::fprintf(stderr, "snapconf-bench: unknown --workload %s\n", workload.c_str());
      return 2;
    }
  }
  if (target == Target::kSnapconf && workload == "get") {
    report.Note(
        "snapconf reads are answered from the newest published snapshot, which holds "
        "every acknowledged write: there is no separate serializable mode");
  }
  const std::vector<std::pair<std::string, std::string>> params = {
      {"target", Report::Quote(target_name)},
      {"workload", Report::Quote(workload)},
      {"label", Report::Quote(absl::GetFlag(FLAGS_label))},
      {"linearizable", absl::GetFlag(FLAGS_linearizable) ? "true" : "false"},
      {"connections", absl::StrCat(clients.channels.size())},
      {"inflight", absl::StrCat(absl::GetFlag(FLAGS_inflight))},
      {"keys", absl::StrCat(absl::GetFlag(FLAGS_keys))},
      {"value_bytes", absl::StrCat(absl::GetFlag(FLAGS_value_bytes))},
      {"duration_s", absl::StrCat(absl::ToDoubleSeconds(absl::GetFlag(FLAGS_duration)))},
      {"watchers", absl::StrCat(watch ? absl::GetFlag(FLAGS_watchers) : 0)},
      {"write_percent", absl::StrCat(workload == "mixed" ? absl::GetFlag(FLAGS_write_percent) : 0)},
      {"ok", status.ok() ? "true" : "false"},
      {"error", Report::Quote(status.ok() ? "" : status.ToString())},
  };
  report.Print(absl::StrFormat(
      "snapconf-bench %s %s%s connections=%d inflight=%d keys=%d watchers=%d", target_name,
      workload, absl::GetFlag(FLAGS_linearizable) ? " (linearizable)" : "",
      static_cast<int>(clients.channels.size()), absl::GetFlag(FLAGS_inflight),
      absl::GetFlag(FLAGS_keys), watch ? absl::GetFlag(FLAGS_watchers) : 0));
  const std::string output = absl::GetFlag(FLAGS_output);
  if (!output.empty()) {
    std::ofstream out(output, std::ios::trunc);
    out << report.Json(params);
    if (!out) {
      std::fprintf(stderr, "snapconf-bench: cannot write %s\n", output.c_str());
      return 1;
    }
  }
  if (!status.ok()) {
    std::fprintf(stderr, "snapconf-bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace snapconf::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Load generator for snapconf and etcd: snapconf-bench --target=snapconf|etcd "
      "--endpoint=HOST:PORT --workload=get|put|mixed|watch-fanout|watch-memory|load|ready");
  absl::ParseCommandLine(argc, argv);
  return snapconf::bench::Main();
}
