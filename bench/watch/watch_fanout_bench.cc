// watch_fanout_bench: the watch fan-out measured from a separate client
// process against a real snapconfd child process (tests/testing/
// server_process.h), with the asynchronous client API on a few completion
// queues (no thread per stream).
//
// Scenarios (--scenario):
//   fanout     N streams; per round one Put, timed until the last stream has
//              that revision; server CPU (utime + stime from /proc) per
//              delivery over the rounds; server RSS per idle stream.
//   sustained  N streams; a paced writer Puts at --write_rate for
//              --duration; deliveries per second (a delivery is one revision
//              reaching one stream; a message may carry several when a stream
//              is behind), messages per second, server CPU, and the time until
//              every stream had the last revision.
//   memory     server RSS per idle stream as the delta between --base_watchers
//              and --watchers streams, then per extra watched prefix: a group
//              of --prefix_streams streams with one prefix against one with
//              1 + --prefixes prefixes each.
//   stall      N streams of which --stalled_percent stop reading while a
//              paced writer runs for --duration; the server's RSS is sampled
//              every --sample_interval. Afterwards the stalled streams read
//              again and must catch up (they get a reset when they fell out
//              of the log).
// --watches_per_stream=N (N > 1) puts the watches on WatchMany streams instead,
// N on each: --watchers still counts watches, over ceil(watchers / N) streams
// laid over the connections and queues as single streams are. A watch's
// revision is followed as a single stream's is, so every per-stream figure
// above is then per watch ("the last stream" is the last watch), while a
// message is one WatchManyResponse however many watches it serves: the
// difference is what the shared stream saves. fanout, sustained and memory
// take it; stall does not (stopping a stream's reads stalls all its watches).
// The benchmark measures and reports; it asserts no speed. It exits non-zero
// only when the setup fails (server, streams, writes; a watch that a
// WatchMany stream ends is a failed stream).
//
//   watch_fanout_bench --scenario=fanout --watchers=10000 --connections=10 --rounds=7
//   watch_fanout_bench --scenario=fanout --watchers=10000 --watches_per_stream=100
#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"

ABSL_FLAG(std::string, scenario, "fanout", "fanout, sustained, memory or stall.");
ABSL_FLAG(int, watchers, 1000, "Watches to open.");
ABSL_FLAG(int, watches_per_stream, 1,
          "1: a Watch stream per watch. N > 1: N watches on each WatchMany stream "
          "(fanout, sustained, memory).");
ABSL_FLAG(int, connections, 10, "Client connections the streams are spread over.");
ABSL_FLAG(int, rounds, 5, "fanout: changes to time.");
ABSL_FLAG(double, write_rate, 50, "sustained/stall: Puts per second.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "sustained/stall: how long to write.");
ABSL_FLAG(int, value_bytes, 100, "Bytes per value written.");
ABSL_FLAG(int, base_watchers, 1000, "memory: watches open at the first RSS reading.");
ABSL_FLAG(int, prefix_streams, 1000, "memory: watches in each prefix group.");
ABSL_FLAG(int, prefixes, 100, "memory: extra prefixes per stream in the second group.");
ABSL_FLAG(double, stalled_percent, 1, "stall: percent of the streams that stop reading.");
ABSL_FLAG(absl::Duration, sample_interval, absl::Seconds(1), "stall: RSS sampling interval.");
ABSL_FLAG(int, stall_value_bytes, 0,
          "stall: when > 0, every other write puts key \"big\" with a value this large; only "
          "the stalled streams watch it (the others watch prefix \"k\"), so their flow-control "
          "windows fill and the server holds their writes.");
ABSL_FLAG(int, log_revisions, 1000,
          "stall: the server's --watch_log_revisions; that many revisions are written before "
          "sampling starts, so the log is already at its bound.");
ABSL_FLAG(int, client_queues, 16,
          "Completion queues (one thread each) the client's streams are spread over.");
ABSL_FLAG(bool, bdp_probe, true,
          "Client channels probe bandwidth-delay with pings (gRPC's default).");
ABSL_FLAG(std::string, server_flags, "",
          "Extra snapconfd flags, separated by spaces (e.g. \"--watch_completion_queues=16\").");

namespace snapconf {
namespace {

// State shared by every stream. Counters are atomics so the streams'
// callbacks (on gRPC's threads) never wait on the measuring thread.
struct Tally {
  std::mutex mu;
  std::condition_variable cv;
  std::atomic<int> ready{0};
  std::atomic<int> failed{0};
  std::atomic<int> ended{0};
  // fanout: streams that reached `target`; the waiter is woken at `wake_at`.
  std::atomic<int64_t> target{-1};
  std::atomic<int> reached{0};
  std::atomic<int> wake_at{1 << 30};
  // Totals over every stream.
  std::atomic<int64_t> messages{0};
  std::atomic<int64_t> deliveries{0};  // revisions received, summed over streams
  std::atomic<int64_t> resets{0};      // resets after the initial one

  void Notify() {
    std::lock_guard<std::mutex> lock(mu);
    cv.notify_all();
  }
  template <typename Pred>
  bool WaitFor(absl::Duration limit, Pred pred) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, absl::ToChronoNanoseconds(limit), pred);
  }
};

// What one watch holds, whichever kind of stream carries it. Its responses
// come from the carrying stream's queue thread, one at a time; revision() is
// read by the measuring thread.
class WatchState {
 public:
  explicit WatchState(Tally* tally) : tally_(tally) {}

  int64_t revision() const { return revision_.load(std::memory_order_acquire); }

  void OnResponse(const v1::WatchResponse& response) {
    int64_t revision = -1;
    if (response.has_reset()) {
      if (!response.reset().more()) {
        revision = response.reset().revision();
        if (!initial_done_) {
          initial_done_ = true;
          tally_->ready.fetch_add(1);
          tally_->Notify();
        } else {
          tally_->resets.fetch_add(1, std::memory_order_relaxed);
        }
      }
    } else if (response.has_changes()) {
      revision = response.changes().revision();
      tally_->deliveries.fetch_add(response.changes().revisions_size(), std::memory_order_relaxed);
    }
    if (revision > 0) {
      revision_.store(revision, std::memory_order_release);
      const int64_t target = tally_->target.load(std::memory_order_acquire);
      if (target > 0 && revision >= target && reached_ < target) {
        reached_ = target;
        // Only the watch that completes the count wakes the waiter: a
        // wake-up per delivery would cost more than the delivery.
        if (tally_->reached.fetch_add(1) + 1 == tally_->wake_at.load()) tally_->Notify();
      }
    }
  }

 private:
  Tally* const tally_;
  std::atomic<int64_t> revision_{0};
  int64_t reached_ = 0;  // responses are sequential: only OnResponse touches it
  bool initial_done_ = false;
};

// One stream on the asynchronous client API: a Watch stream carrying one
// watch or a WatchMany stream carrying several. Its events arrive on one of
// the client's completion queues (ClientQueues), one at a time; Stall, Resume
// and Cancel come from the measuring thread. At most one read is outstanding,
// and Finish is requested only after a read fails, so an idle stream keeps a
// single operation in its queue.
class Stream {
 public:
  enum class Op { kStart, kWrite, kRead, kFinish };
  struct Tag {
    Stream* stream;
    Op op;
  };

  virtual ~Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  void Cancel() { ctx_.TryCancel(); }

  // stall: from the next message on, the stream stops reading.
  void Stall() { stall_.store(true); }
  // Reads again (the read stopped by Stall is started here).
  void Resume() {
    stall_.store(false);
    if (parked_.exchange(false)) Read();
  }

  // On the stream's queue thread.
  void OnEvent(Op op, bool ok) {
    switch (op) {
      case Op::kStart:
        if (!ok) return Finish();
        OnStarted();
        return Read();
      case Op::kWrite:
        return OnWritten(ok);
      case Op::kRead:
        if (!ok) return Finish();
        tally_->messages.fetch_add(1, std::memory_order_relaxed);
        OnMessage();
        if (!Park()) Read();
        return;
      case Op::kFinish:
        return OnDone();
    }
  }

 protected:
  explicit Stream(Tally* tally) : tally_(tally) {}

  // The call started: send what opens the watches.
  virtual void OnStarted() = 0;
  virtual void OnWritten(bool ok) = 0;
  // A message arrived (one read completed).
  virtual void OnMessage() = 0;
  // The call ended with status_.
  virtual void OnDone() = 0;
  virtual void Read() = 0;
  virtual void Finish() = 0;

  // After a message: true when the stream stalls instead of reading on.
  bool Park() {
    if (!stall_.load()) return false;
    parked_.store(true);
    // Resume may have run between the two loads: then read on here.
    return stall_.load() || !parked_.exchange(false);
  }

  Tally* const tally_;
  grpc::ClientContext ctx_;
  grpc::Status status_;
  Tag start_tag_{this, Op::kStart};
  Tag write_tag_{this, Op::kWrite};
  Tag read_tag_{this, Op::kRead};
  Tag finish_tag_{this, Op::kFinish};

 private:
  std::atomic<bool> stall_{false};
  std::atomic<bool> parked_{false};
};

v1::WatchCreateRequest CreateRequest(const std::vector<std::string>& prefixes) {
  v1::WatchCreateRequest create;
  v1::WatchFilter* filter = create.add_filters();
  filter->set_namespace_("bench");
  for (const std::string& p : prefixes) filter->add_prefixes(p);
  create.set_mode(v1::DELIVERY_MODE_EVERY_REVISION);
  return create;
}

// One watch on its own Watch stream.
class WatchStream : public Stream {
 public:
  WatchStream(v1::WatchService::Stub* stub, grpc::CompletionQueue* cq, Tally* tally,
              const v1::WatchCreateRequest& create, WatchState* watch)
      : Stream(tally), watch_(watch) {
    *request_.mutable_create() = create;
    call_ = stub->PrepareAsyncWatch(&ctx_, cq);
    call_->StartCall(&start_tag_);
  }

 private:
  void OnStarted() override { call_->Write(request_, &write_tag_); }
  void OnWritten(bool) override {}
  void OnMessage() override { watch_->OnResponse(response_); }
  void Read() override { call_->Read(&response_, &read_tag_); }
  void Finish() override { call_->Finish(&status_, &finish_tag_); }

  void OnDone() override {
    if (status_.error_code() != grpc::StatusCode::CANCELLED) {
      if (tally_->failed.fetch_add(1) < 3) {
        std::fprintf(stderr, "stream ended at revision %lld: %d %s\n",
                     static_cast<long long>(watch_->revision()), status_.error_code(),
                     status_.error_message().c_str());
      }
    }
    tally_->ended.fetch_add(1);
    tally_->Notify();
  }

  WatchState* const watch_;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::WatchRequest, v1::WatchResponse>> call_;
  v1::WatchRequest request_;
  v1::WatchResponse response_;
};

// Several watches on one WatchMany stream, named by their index. A failure
// is counted per watch (Tally::failed), so opening waits for no watch that
// can no longer become ready.
class WatchManyStream : public Stream {
 public:
  WatchManyStream(v1::WatchService::Stub* stub, grpc::CompletionQueue* cq, Tally* tally,
                  const v1::WatchCreateRequest& create, std::vector<WatchState*> watches)
      : Stream(tally),
        watches_(std::move(watches)),
        ended_(watches_.size(), false),
        open_(static_cast<int>(watches_.size())) {
    *request_.mutable_create() = create;
    call_ = stub->PrepareAsyncWatchMany(&ctx_, cq);
    call_->StartCall(&start_tag_);
  }

 private:
  void OnStarted() override { WriteNext(); }
  // A failed write means the call is over: the read fails as well and
  // finishes it.
  void OnWritten(bool ok) override {
    if (ok) WriteNext();
  }
  void Read() override { call_->Read(&response_, &read_tag_); }
  void Finish() override {
    finishing_ = true;
    call_->Finish(&status_, &finish_tag_);
  }

  // A call takes one write at a time: each create goes out when the one
  // before it completed. Reads run meanwhile, so the first watches' initial
  // states arrive while the last creates are still being sent.
  void WriteNext() {
    if (finishing_ || next_ == watches_.size()) return;
    request_.set_watch_id(static_cast<int64_t>(next_++));
    call_->Write(request_, &write_tag_);
  }

  void OnMessage() override {
    for (const v1::WatchManyEvent& event : response_.events()) {
      const int64_t id = event.watch_id();
      if (id < 0 || id >= static_cast<int64_t>(watches_.size()) ||
          ended_[static_cast<size_t>(id)]) {
        Failed(absl::StrCat("event for watch ", id, ", which is not open on the stream"), 1);
        continue;
      }
      const size_t i = static_cast<size_t>(id);
      if (event.has_ended()) {
        ended_[i] = true;
        --open_;
        Failed(absl::StrCat("watch ", id, " ended at revision ", watches_[i]->revision(), ": ",
                            event.ended().code(), " ", event.ended().message()),
               1);
      } else if (event.has_response()) {
        watches_[i]->OnResponse(event.response());
      }
    }
  }

  void OnDone() override {
    // The stream ends every watch still open on it.
    if (status_.error_code() != grpc::StatusCode::CANCELLED) {
      Failed(
          absl::StrCat("WatchMany stream with ", open_, " of ", watches_.size(),
                       " watches open ended: ", status_.error_code(), " ", status_.error_message()),
          std::max(1, open_));
    }
    tally_->ended.fetch_add(1);
    tally_->Notify();
  }

  void Failed(const std::string& what, int watches) {
    if (tally_->failed.fetch_add(watches) < 3) std::fprintf(stderr, "%s\n", what.c_str());
    tally_->Notify();
  }

  const std::vector<WatchState*> watches_;
  // Only the queue thread touches these.
  std::vector<bool> ended_;
  int open_;
  size_t next_ = 0;
  bool finishing_ = false;
  std::unique_ptr<grpc::ClientAsyncReaderWriter<v1::WatchManyRequest, v1::WatchManyResponse>> call_;
  v1::WatchManyRequest request_;
  v1::WatchManyResponse response_;
};

// The client's completion queues, each drained by its own thread. Several
// queues because gRPC's completion queue search is linear in its
// outstanding operations (watch_service.h on the server side says more).
class ClientQueues {
 public:
  explicit ClientQueues(int n) {
    for (int i = 0; i < std::max(1, n); ++i) {
      queues_.push_back(std::make_unique<grpc::CompletionQueue>());
      threads_.emplace_back([cq = queues_.back().get()] {
        void* tag = nullptr;
        bool ok = false;
        while (cq->Next(&tag, &ok)) {
          auto* t = static_cast<Stream::Tag*>(tag);
          t->stream->OnEvent(t->op, ok);
        }
      });
    }
  }
  ~ClientQueues() {
    for (auto& q : queues_) q->Shutdown();
    for (auto& t : threads_) t.join();
  }
  ClientQueues(const ClientQueues&) = delete;
  ClientQueues& operator=(const ClientQueues&) = delete;

  grpc::CompletionQueue* get(size_t i) { return queues_[i % queues_.size()].get(); }

 private:
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues_;
  std::vector<std::thread> threads_;
};

int64_t RssKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// utime + stime of a process, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) start after ")".
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  // Field 3 is the state; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i >= 14) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class Bench {
 public:
  // A scenario that fails returns without CloseAll: its calls must end before
  // their queues shut down, or a call finishing after that starts an
  // operation on a shut-down queue, which gRPC aborts on.
  ~Bench() {
    for (auto& s : streams_) s->Cancel();
    tally_.WaitFor(absl::Seconds(60),
                   [&] { return tally_.ended.load() >= static_cast<int>(streams_.size()); });
  }

  absl::Status Start(int max_streams, std::vector<std::string> flags) {
    testing::ServerOptions options;
    options.extra_flags = std::move(flags);
    options.extra_flags.push_back(absl::StrCat("--watch_max_streams=", max_streams));
    options.extra_flags.push_back(absl::StrCat("--watch_max_streams_per_peer=", max_streams));
    for (absl::string_view f :
         absl::StrSplit(absl::GetFlag(FLAGS_server_flags), ' ', absl::SkipEmpty())) {
      options.extra_flags.emplace_back(f);
    }
    // stall reads the store's memory from the metrics endpoint.
    if (absl::GetFlag(FLAGS_scenario) == "stall") {
      options.extra_flags.push_back("--metrics-listen=127.0.0.1:0");
    }
    absl::StatusOr<std::unique_ptr<testing::ServerProcess>> server =
        testing::ServerProcess::Start(options);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    static const std::regex kMetricsLine(R"(event=metrics_serving address=127\.0\.0\.1:(\d+))");
    std::smatch m;
    const std::string log = server_->ReadLog();
    if (std::regex_search(log, m, kMetricsLine)) metrics_port_ = std::stoi(m[1].str());
    config_ = v1::ConfigService::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    const int connections = std::max(1, absl::GetFlag(FLAGS_connections));
    for (int c = 0; c < connections; ++c) {
      grpc::ChannelArguments args;
      args.SetInt("bench.connection", c);  // distinct args: a connection each
      if (!absl::GetFlag(FLAGS_bdp_probe)) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      channels_.push_back(
          grpc::CreateCustomChannel(server_->address(), grpc::InsecureChannelCredentials(), args));
      stubs_.push_back(v1::WatchService::NewStub(channels_.back()));
    }
    value_.assign(static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_value_bytes))), 'v');
    if (Put(0) < 0) return absl::UnavailableError("the first Put failed");
    return absl::OkStatus();
  }

  pid_t pid() const { return server_->pid(); }

  // The server's snapconf_sqlite_heap_bytes gauge in KiB (-1 if unreadable).
  int64_t SqliteHeapKiB() const {
    if (metrics_port_ <= 0) return -1;
    httplib::Client http("127.0.0.1", metrics_port_);
    http.set_connection_timeout(5);
    http.set_read_timeout(5);
    httplib::Result r = http.Get("/metrics");
    if (!r || r->status != 200) return -1;
    static const std::regex kGauge(R"((?:^|\n)snapconf_sqlite_heap_bytes (\S+))");
    std::smatch m;
    if (!std::regex_search(r->body, m, kGauge)) return -1;
    return static_cast<int64_t>(std::stod(m[1].str()) / 1024);
  }
  Tally& tally() { return tally_; }
  std::vector<std::unique_ptr<Stream>>& streams() { return streams_; }
  std::vector<std::unique_ptr<WatchState>>& watches() { return watches_; }
  int watches_per_stream() const { return per_stream_; }
  // What the output calls a watch: with a stream per watch, as it always has.
  const char* unit() const { return per_stream_ > 1 ? "watch" : "stream"; }
  const char* units() const { return per_stream_ > 1 ? "watches" : "streams"; }

  // Puts key k<i % 100> in namespace `ns` ("bench" is the watched one); the
  // revision, or -1.
  int64_t Put(int64_t i, const std::string& ns = "bench") {
    v1::PutRequest req;
    req.set_namespace_(ns);
    req.set_key(absl::StrCat("k", i % 100));
    req.set_value(absl::StrCat(i, ":", value_));
    v1::PutResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status s = config_->Put(&ctx, req, &resp);
    return s.ok() ? resp.header().revision() : -1;
  }

  // Puts `key` = `value` in namespace "bench"; the revision, or -1.
  int64_t PutValue(const std::string& key, const std::string& value) {
    v1::PutRequest req;
    req.set_namespace_("bench");
    req.set_key(key);
    req.set_value(value);
    v1::PutResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status s = config_->Put(&ctx, req, &resp);
    return s.ok() ? resp.header().revision() : -1;
  }

  // Opens `n` more watches, each watching `prefixes` (none: the whole
  // namespace), on new streams (--watches_per_stream on each, the last one
  // maybe fewer), and waits until all hold their initial state.
  absl::Status Open(int n, const std::vector<std::string>& prefixes = {}) {
    const int want = static_cast<int>(watches_.size()) + n;
    const v1::WatchCreateRequest create = CreateRequest(prefixes);
    for (int opened = 0; opened < n;) {
      const int k = std::min(per_stream_, n - opened);
      std::vector<WatchState*> mine;
      for (int i = 0; i < k; ++i) {
        watches_.push_back(std::make_unique<WatchState>(&tally_));
        mine.push_back(watches_.back().get());
      }
      v1::WatchService::Stub* stub = stubs_[streams_.size() % stubs_.size()].get();
      grpc::CompletionQueue* cq = queues_.get(streams_.size());
      if (per_stream_ > 1) {
        streams_.push_back(
            std::make_unique<WatchManyStream>(stub, cq, &tally_, create, std::move(mine)));
      } else {
        streams_.push_back(std::make_unique<WatchStream>(stub, cq, &tally_, create, mine[0]));
      }
      opened += k;
    }
    const bool ok = tally_.WaitFor(
        absl::Seconds(180), [&] { return tally_.ready.load() + tally_.failed.load() >= want; });
    if (!ok || tally_.failed.load() > 0) {
      return absl::UnavailableError(absl::StrCat(tally_.ready.load(), " of ", want, " ", units(),
                                                 " ready, ", tally_.failed.load(), " failed"));
    }
    return absl::OkStatus();
  }

  // RSS after the server settled (allocations from opening streams done).
  int64_t SettledRss() {
    absl::SleepFor(absl::Milliseconds(500));
    return RssKiB(pid());
  }

  // Waits until every watch in [begin, end) holds `revision`; the time it
  // took, or nullopt after `limit`.
  std::optional<absl::Duration> WaitAll(size_t begin, size_t end, int64_t revision,
                                        absl::Duration limit) {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < limit) {
      bool all = true;
      for (size_t i = begin; i < end && all; ++i) all = watches_[i]->revision() >= revision;
      if (all) return absl::Now() - start;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return std::nullopt;
  }

  // Watches that ended before CloseAll, and the server's log when any did.
  void ReportFailures() {
    const int failed = tally_.failed.load();
    if (failed == 0) return;
    std::printf("%s that ended early: %d\n", units(), failed);
    const std::string log = server_->ReadLog();
    std::fprintf(stderr, "server log (last 2000 bytes):\n%s\n",
                 log.substr(log.size() > 2000 ? log.size() - 2000 : 0).c_str());
  }

  void CloseAll() {
    ReportFailures();
    for (auto& s : streams_) s->Cancel();
    tally_.WaitFor(absl::Seconds(60),
                   [&] { return tally_.ended.load() >= static_cast<int>(streams_.size()); });
  }

 private:
  std::unique_ptr<testing::ServerProcess> server_;
  int metrics_port_ = 0;
  std::unique_ptr<v1::ConfigService::Stub> config_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::WatchService::Stub>> stubs_;
  std::string value_;
  const int per_stream_ = std::max(1, absl::GetFlag(FLAGS_watches_per_stream));
  Tally tally_;
  std::vector<std::unique_ptr<WatchState>> watches_;
  std::vector<std::unique_ptr<Stream>> streams_;
  // Declared after the streams, so it is destroyed first: its threads drain
  // the last events (the streams were cancelled in CloseAll) while every
  // stream still exists.
  ClientQueues queues_{absl::GetFlag(FLAGS_client_queues)};
};

// A writer thread that Puts at a steady rate for a while. A Put that falls
// behind schedule is sent at once; none is skipped.
class PacedWriter {
 public:
  PacedWriter(Bench* bench, double rate, absl::Duration duration,
              std::function<int64_t(int64_t)> put = nullptr)
      : bench_(bench), rate_(rate), duration_(duration), put_(std::move(put)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~PacedWriter() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  int64_t last_revision() const { return last_.load(); }
  int64_t writes() const { return writes_.load(); }
  int64_t errors() const { return errors_.load(); }
  absl::Duration elapsed() const { return elapsed_; }

 private:
  void Run() {
    const absl::Time start = absl::Now();
    const absl::Duration step = absl::Seconds(1.0 / std::max(0.1, rate_));
    for (int64_t i = 1;; ++i) {
      const absl::Time due = start + step * static_cast<double>(i - 1);
      if (due - start >= duration_) break;
      absl::SleepFor(due - absl::Now());
      const int64_t rev = put_ ? put_(i) : bench_->Put(i);
      if (rev < 0) {
        errors_.fetch_add(1);
      } else {
        last_.store(rev);
        writes_.fetch_add(1);
      }
    }
    elapsed_ = absl::Now() - start;
  }

  Bench* const bench_;
  const double rate_;
  const absl::Duration duration_;
  const std::function<int64_t(int64_t)> put_;
  std::atomic<int64_t> last_{0};
  std::atomic<int64_t> writes_{0};
  std::atomic<int64_t> errors_{0};
  absl::Duration elapsed_;
  std::thread thread_;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "setup failed: %s\n", s.ToString().c_str());
  return 1;
}

int RunFanout(Bench& bench) {
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const int64_t rss_before = bench.SettledRss();
  const absl::Time open_start = absl::Now();
  if (absl::Status s = bench.Open(watchers); !s.ok()) return Fail(s);
  const absl::Duration open_time = absl::Now() - open_start;
  const int64_t rss_after = bench.SettledRss();
  Tally& tally = bench.tally();
  std::printf(
      "fanout: watchers=%d watches_per_stream=%d streams=%zu connections=%d open_all=%.0f ms "
      "server_pid=%d\n",
      watchers, bench.watches_per_stream(), bench.streams().size(),
      absl::GetFlag(FLAGS_connections), absl::ToDoubleMilliseconds(open_time),
      static_cast<int>(bench.pid()));
  std::printf("server RSS: %lld KiB before, %lld KiB with idle %s: %.1f KiB per watcher\n",
              static_cast<long long>(rss_before), static_cast<long long>(rss_after), bench.units(),
              static_cast<double>(rss_after - rss_before) / std::max(1, watchers));
  std::fflush(stdout);

  std::vector<double> latencies;
  double cpu_total = 0;
  double client_total = 0;
  int64_t delivered_total = 0;
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    // Nothing else writes: the next revision is known before the Put.
    const int64_t target = bench.watches().front()->revision() + 1;
    tally.reached.store(0);
    tally.wake_at.store(watchers);
    tally.target.store(target);
    const double cpu_begin = CpuSeconds(bench.pid());
    const double client_begin = CpuSeconds(getpid());
    const absl::Time begin = absl::Now();
    const int64_t rev = bench.Put(round);
    if (rev != target) {
      std::fprintf(stderr, "Put returned revision %lld, expected %lld\n",
                   static_cast<long long>(rev), static_cast<long long>(target));
      return 1;
    }
    const bool all = tally.WaitFor(absl::Seconds(30), [&] { return tally.reached >= watchers; });
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - begin);
    const double cpu = CpuSeconds(bench.pid()) - cpu_begin;
    cpu_total += cpu;
    client_total += CpuSeconds(getpid()) - client_begin;
    delivered_total += tally.reached.load();
    latencies.push_back(ms);
    std::printf(
        "round %d: revision %lld reached %d/%d watchers in %.1f ms (Put included), "
        "server CPU %.0f ms%s\n",
        round, static_cast<long long>(rev), tally.reached.load(), watchers, ms, cpu * 1e3,
        all ? "" : " TIMEOUT");
    std::fflush(stdout);
    tally.target.store(-1);
    absl::SleepFor(absl::Milliseconds(200));
  }
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    std::printf("fan-out to last delivery: min %.1f ms, median %.1f ms, max %.1f ms\n",
                latencies.front(), Median(latencies), latencies.back());
    std::printf(
        "server CPU per delivery: %.2f us (%.0f ms over %lld deliveries, commits "
        "included; /proc ticks are 10 ms)\n",
        delivered_total > 0 ? cpu_total * 1e6 / static_cast<double>(delivered_total) : 0,
        cpu_total * 1e3, static_cast<long long>(delivered_total));
    std::printf(
        "client (this process) CPU per delivery: %.2f us\n",
        delivered_total > 0 ? client_total * 1e6 / static_cast<double>(delivered_total) : 0);
  }
  bench.CloseAll();
  return 0;
}

int RunSustained(Bench& bench) {
  const int watchers = absl::GetFlag(FLAGS_watchers);
  if (absl::Status s = bench.Open(watchers); !s.ok()) return Fail(s);
  Tally& tally = bench.tally();
  const double rate = absl::GetFlag(FLAGS_write_rate);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  std::printf(
      "sustained: watchers=%d watches_per_stream=%d streams=%zu connections=%d "
      "write_rate=%.0f/s duration=%s\n",
      watchers, bench.watches_per_stream(), bench.streams().size(),
      absl::GetFlag(FLAGS_connections), rate, absl::FormatDuration(duration).c_str());
  std::fflush(stdout);
  const int64_t deliveries_begin = tally.deliveries.load();
  const int64_t messages_begin = tally.messages.load();
  const double cpu_begin = CpuSeconds(bench.pid());
  const double client_cpu_begin = CpuSeconds(getpid());
  const absl::Time begin = absl::Now();
  PacedWriter writer(&bench, rate, duration);
  writer.Join();
  const int64_t last = writer.last_revision();
  const std::optional<absl::Duration> drain =
      bench.WaitAll(0, bench.watches().size(), last, absl::Seconds(60));
  const absl::Duration elapsed = absl::Now() - begin;
  const double cpu = CpuSeconds(bench.pid()) - cpu_begin;
  const double client_cpu = CpuSeconds(getpid()) - client_cpu_begin;
  if (!drain) {
    int behind = 0;
    int64_t lowest = last;
    for (const auto& w : bench.watches()) {
      if (w->revision() < last) ++behind;
      lowest = std::min(lowest, w->revision());
    }
    std::printf("after 60 s, %d %s still behind the last revision (lowest at %lld)\n", behind,
                bench.units(), static_cast<long long>(lowest));
  }
  const int64_t deliveries = tally.deliveries.load() - deliveries_begin;
  const int64_t messages = tally.messages.load() - messages_begin;
  const double secs = absl::ToDoubleSeconds(elapsed);
  std::printf("writes: %lld in %.1f s (%.1f/s), %lld failed; last revision %lld\n",
              static_cast<long long>(writer.writes()), absl::ToDoubleSeconds(writer.elapsed()),
              static_cast<double>(writer.writes()) / absl::ToDoubleSeconds(writer.elapsed()),
              static_cast<long long>(writer.errors()), static_cast<long long>(last));
  std::printf(
      "every %s had the last revision %s after the last write\n", bench.unit(),
      drain ? absl::StrCat(absl::ToDoubleMilliseconds(*drain), " ms").c_str() : "NOT within 60 s");
  std::printf(
      "deliveries: %lld in %.1f s = %.0f/s (of %lld possible); messages: %lld = %.0f/s "
      "(%.2f revisions per message); resets: %lld\n",
      static_cast<long long>(deliveries), secs, static_cast<double>(deliveries) / secs,
      static_cast<long long>(writer.writes()) * watchers, static_cast<long long>(messages),
      static_cast<double>(messages) / secs,
      messages > 0 ? static_cast<double>(deliveries) / static_cast<double>(messages) : 0,
      static_cast<long long>(tally.resets.load()));
  std::printf(
      "server CPU: %.2f s over %.1f s (%.0f%% of one core); %.2f us per delivery, "
      "%.2f us per message (commits included)\n",
      cpu, secs, 100 * cpu / secs, deliveries > 0 ? cpu * 1e6 / static_cast<double>(deliveries) : 0,
      messages > 0 ? cpu * 1e6 / static_cast<double>(messages) : 0);
  std::printf("client (this process) CPU: %.2f s (%.0f%% of one core)\n", client_cpu,
              100 * client_cpu / secs);
  bench.CloseAll();
  return drain ? 0 : 1;
}

int RunMemory(Bench& bench) {
  const int base = std::max(1, absl::GetFlag(FLAGS_base_watchers));
  const int watchers = std::max(base + 1, absl::GetFlag(FLAGS_watchers));
  const int group = std::max(1, absl::GetFlag(FLAGS_prefix_streams));
  const int prefixes = std::max(1, absl::GetFlag(FLAGS_prefixes));
  if (absl::Status s = bench.Open(base); !s.ok()) return Fail(s);
  const int64_t rss_base = bench.SettledRss();
  if (absl::Status s = bench.Open(watchers - base); !s.ok()) return Fail(s);
  const int64_t rss_all = bench.SettledRss();
  const double per_watcher =
      static_cast<double>(rss_all - rss_base) / static_cast<double>(watchers - base);
  std::printf(
      "memory: connections=%d%s; server RSS %lld KiB with %d idle %s, %lld KiB with "
      "%d: %.2f KiB per idle watcher\n",
      absl::GetFlag(FLAGS_connections),
      bench.watches_per_stream() > 1
          ? absl::StrCat(" watches_per_stream=", bench.watches_per_stream()).c_str()
          : "",
      static_cast<long long>(rss_base), base, bench.units(), static_cast<long long>(rss_all),
      watchers, per_watcher);
  std::fflush(stdout);
  // Two groups of equal size: one prefix each, then 1 + `prefixes` each.
  // Prefixes like "prefix-00042/" (13 bytes).
  if (absl::Status s = bench.Open(group, {"prefix-single/"}); !s.ok()) return Fail(s);
  const int64_t rss_one = bench.SettledRss();
  std::vector<std::string> many;
  for (int p = 0; p <= prefixes; ++p) many.push_back(absl::StrFormat("prefix-%05d/", p));
  if (absl::Status s = bench.Open(group, many); !s.ok()) return Fail(s);
  const int64_t rss_many = bench.SettledRss();
  const double per_prefix = static_cast<double>((rss_many - rss_one) - (rss_one - rss_all)) /
                            (static_cast<double>(group) * prefixes);
  std::printf(
      "prefixes: +%d %s with 1 prefix: +%lld KiB; +%d %s with %d prefixes: "
      "+%lld KiB; %.0f bytes per extra prefix (13-byte prefixes)\n",
      group, bench.units(), static_cast<long long>(rss_one - rss_all), group, bench.units(),
      prefixes + 1, static_cast<long long>(rss_many - rss_one), per_prefix * 1024);
  bench.CloseAll();
  return 0;
}

// One line of samples (KiB), then their spread and the mean of the second
// half minus the first (growth shows as a positive difference).
void PrintSeries(const char* name, absl::Duration interval, const std::vector<int64_t>& samples) {
  if (samples.empty()) return;
  std::string line;
  for (size_t i = 0; i < samples.size(); ++i) absl::StrAppend(&line, i == 0 ? "" : " ", samples[i]);
  std::printf("%s (KiB) every %s: %s\n", name, absl::FormatDuration(interval).c_str(),
              line.c_str());
  const auto [lo, hi] = std::minmax_element(samples.begin(), samples.end());
  const size_t half = samples.size() / 2;
  double first = 0, second = 0;
  for (size_t i = 0; i < half; ++i) first += static_cast<double>(samples[i]);
  for (size_t i = half; i < samples.size(); ++i) second += static_cast<double>(samples[i]);
  first /= static_cast<double>(std::max<size_t>(1, half));
  second /= static_cast<double>(std::max<size_t>(1, samples.size() - half));
  std::printf(
      "%s min %lld, max %lld, spread %lld KiB; mean of the second half minus the first: "
      "%+.0f KiB\n",
      name, static_cast<long long>(*lo), static_cast<long long>(*hi),
      static_cast<long long>(*hi - *lo), second - first);
}

int RunStall(Bench& bench) {
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const double percent = std::clamp(absl::GetFlag(FLAGS_stalled_percent), 0.0, 100.0);
  const int stalled = static_cast<int>(watchers * percent / 100);
  const int big = absl::GetFlag(FLAGS_stall_value_bytes);
  Tally& tally = bench.tally();
  auto& streams = bench.streams();
  std::vector<size_t> stalled_index, active_index;
  if (big > 0) {
    // Active streams watch prefix "k" only; the stalled ones (opened last,
    // spread over the same connections) the whole namespace.
    if (absl::Status s = bench.Open(watchers - stalled, {"k"}); !s.ok()) return Fail(s);
    if (absl::Status s = bench.Open(stalled); !s.ok()) return Fail(s);
    for (size_t i = 0; i < streams.size(); ++i) {
      if (static_cast<int>(i) >= watchers - stalled) {
        stalled_index.push_back(i);
        streams[i]->Stall();
      } else {
        active_index.push_back(i);
      }
    }
  } else {
    if (absl::Status s = bench.Open(watchers); !s.ok()) return Fail(s);
    // Every k-th stream stalls, so stalled streams share connections with
    // streams that keep reading.
    const int every = stalled > 0 ? watchers / stalled : watchers + 1;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (stalled > 0 && i % every == 0 && static_cast<int>(stalled_index.size()) < stalled) {
        stalled_index.push_back(i);
        streams[i]->Stall();
      } else {
        active_index.push_back(i);
      }
    }
  }
  const double rate = absl::GetFlag(FLAGS_write_rate);
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  const absl::Duration interval = absl::GetFlag(FLAGS_sample_interval);
  std::printf(
      "stall: watchers=%d stalled=%zu connections=%d write_rate=%.0f/s value=%d B "
      "duration=%s\n",
      watchers, stalled_index.size(), absl::GetFlag(FLAGS_connections), rate,
      absl::GetFlag(FLAGS_value_bytes), absl::FormatDuration(duration).c_str());
  std::fflush(stdout);
  const std::string big_value(static_cast<size_t>(std::max(0, big)), 'b');
  auto put = [&](int64_t i) -> int64_t {
    if (big > 0 && i % 2 == 0) return bench.PutValue("big", big_value);
    return bench.Put(i);
  };
  // Bring the bounded structures to their bounds first, so the samples do
  // not show the watch log (and the engine's recent snapshots, limited to
  // 100 here) filling up: the writes of the timed phase, or without big
  // values filler writes to a namespace nobody watches.
  {
    const int prefill = std::max(absl::GetFlag(FLAGS_log_revisions), 100) + 10;
    std::atomic<int> next{0};
    std::vector<std::thread> writers;
    for (int t = 0; t < (big > 0 ? 1 : 8); ++t) {
      writers.emplace_back([&] {
        for (int i = next++; i < prefill; i = next++) {
          if (big > 0) {
            put(i);
          } else {
            bench.Put(i, "filler");
          }
        }
      });
    }
    for (std::thread& t : writers) t.join();
    std::printf("prefilled %d revisions\n", prefill);
  }
  const int64_t rss_start = bench.SettledRss();
  // RSS, and RSS less SQLite's heap: the store's page caches fill with the
  // pages written (up to 64 MiB per connection), which is the store's bounded
  // cache warming, not the watch path holding memory.
  std::vector<int64_t> samples;
  std::vector<int64_t> sqlite_samples;
  const absl::Time begin = absl::Now();
  PacedWriter writer(&bench, rate, duration, put);
  for (int i = 1; absl::Now() - begin < duration + interval; ++i) {
    absl::SleepFor(begin + interval * i - absl::Now());
    samples.push_back(RssKiB(bench.pid()));
    sqlite_samples.push_back(bench.SqliteHeapKiB());
  }
  writer.Join();
  // A last small write that every stream watches marks the end.
  const int64_t last = bench.Put(0);
  // Active streams: every one must have the last revision.
  auto active_all = [&]() -> std::optional<absl::Duration> {
    const absl::Time start = absl::Now();
    while (absl::Now() - start < absl::Seconds(60)) {
      bool all = true;
      for (size_t i : active_index) {
        if (bench.watches()[i]->revision() < last) {
          all = false;
          break;
        }
      }
      if (all) return absl::Now() - start;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return std::nullopt;
  }();
  std::printf("server RSS (KiB) before writes %lld\n", static_cast<long long>(rss_start));
  PrintSeries("RSS", interval, samples);
  PrintSeries("SQLite heap", interval, sqlite_samples);
  std::vector<int64_t> rest(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) rest[i] = samples[i] - sqlite_samples[i];
  PrintSeries("RSS less SQLite heap", interval, rest);
  std::printf(
      "writes: %lld (%lld failed), last revision %lld; active streams at the last "
      "revision %s after the last write\n",
      static_cast<long long>(writer.writes()), static_cast<long long>(writer.errors()),
      static_cast<long long>(last),
      active_all ? absl::StrCat(absl::ToDoubleMilliseconds(*active_all), " ms").c_str()
                 : "NOT within 60 s");
  // The stalled streams read again: they catch up (a reset if they fell out
  // of the log).
  const int64_t resets_before = tally.resets.load();
  const absl::Time resume = absl::Now();
  for (size_t i : stalled_index) streams[i]->Resume();
  bool caught_up = true;
  for (size_t i : stalled_index) {
    if (!bench.WaitAll(i, i + 1, last, absl::Seconds(60) - (absl::Now() - resume))) {
      caught_up = false;
      break;
    }
  }
  std::printf("stalled streams resumed: %s in %.0f ms, %lld resets\n",
              caught_up ? "all at the last revision" : "NOT all caught up",
              absl::ToDoubleMilliseconds(absl::Now() - resume),
              static_cast<long long>(tally.resets.load() - resets_before));
  bench.CloseAll();
  return active_all && caught_up ? 0 : 1;
}

int Run() {
  const std::string scenario = absl::GetFlag(FLAGS_scenario);
  // The server's stream limits (total and per peer: every connection here is
  // one peer) count watches, each watch of a WatchMany stream as one, so
  // they are sized by the watch count whatever --watches_per_stream is.
  int max_streams = absl::GetFlag(FLAGS_watchers);
  std::vector<std::string> flags;
  if (scenario == "stall") {
    flags.push_back(absl::StrCat("--watch_log_revisions=", absl::GetFlag(FLAGS_log_revisions)));
    flags.push_back("--recent_snapshots=100");
  }
  if (scenario == "memory") max_streams += 2 * absl::GetFlag(FLAGS_prefix_streams);
  if (scenario != "fanout" && scenario != "sustained" && scenario != "memory" &&
      scenario != "stall") {
    std::fprintf(stderr, "unknown --scenario=%s (fanout, sustained, memory, stall)\n",
                 scenario.c_str());
    return 2;
  }
  const int per_stream = absl::GetFlag(FLAGS_watches_per_stream);
  if (per_stream < 1) {
    std::fprintf(stderr, "--watches_per_stream=%d: must be at least 1\n", per_stream);
    return 2;
  }
  if (per_stream > 1 && scenario == "stall") {
    std::fprintf(stderr,
                 "--scenario=stall takes only --watches_per_stream=1: a stalled stream stops "
                 "reading for every watch on it, so stalled and active watches would need "
                 "streams of their own\n");
    return 2;
  }
  Bench bench;
  if (absl::Status s = bench.Start(max_streams + 10, std::move(flags)); !s.ok()) return Fail(s);
  if (scenario == "fanout") return RunFanout(bench);
  if (scenario == "sustained") return RunSustained(bench);
  if (scenario == "memory") return RunMemory(bench);
  return RunStall(bench);
}

}  // namespace
}  // namespace snapconf

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return snapconf::Run();
}
