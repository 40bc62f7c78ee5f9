// watch_fanout_bench: one change fanned out to N watchers over C connections.
//
// Starts snapconfd as a child process (tests/testing/server_process.h), opens
// N watch streams spread over C channels with the callback client API (no
// thread per stream), waits until every stream holds its initial state, then
// for each round Puts one key in the watched namespace and measures the time
// from sending the Put until the last stream received that revision. Also
// reports the server's resident memory per idle stream (VmRSS before and
// after the streams opened).
//
//   watch_fanout_bench --watchers=10000 --connections=10 --rounds=5
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "snapconf/v1/config_service.grpc.pb.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/testing/server_process.h"

ABSL_FLAG(int, watchers, 1000, "Watch streams to open.");
ABSL_FLAG(int, connections, 10, "Client connections the streams are spread over.");
ABSL_FLAG(int, rounds, 5, "Changes to time.");

namespace snapconf {
namespace {

// Shared by every stream: counts the streams that are ready and those that
// received the revision being timed.
struct Tally {
  std::mutex mu;
  std::condition_variable cv;
  int64_t target = -1;
  int ready = 0;
  int delivered = 0;
  int ended = 0;
  int failed = 0;
};

class WatchStream : public grpc::ClientBidiReactor<v1::WatchRequest, v1::WatchResponse> {
 public:
  WatchStream(v1::WatchService::Stub* stub, Tally* tally) : tally_(tally) {
    v1::WatchCreateRequest* create = request_.mutable_create();
    create->add_filters()->set_namespace_("bench");
    create->set_mode(v1::DELIVERY_MODE_EVERY_REVISION);
    stub->async()->Watch(&ctx_, this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }
  void Cancel() { ctx_.TryCancel(); }
  void OnWriteDone(bool) override {}
  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      std::lock_guard<std::mutex> lock(tally_->mu);
      if (response_.has_reset() && !response_.reset().more()) {
        ++tally_->ready;
        tally_->cv.notify_all();
      } else if (response_.has_changes() && response_.changes().revision() == tally_->target) {
        // Wake the timer only for the last one: a wake-up per delivery would
        // cost the client more than the delivery.
        if (++tally_->delivered >= tally_->ready) tally_->cv.notify_all();
      }
    }
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> lock(tally_->mu);
    if (s.error_code() != grpc::StatusCode::CANCELLED) {
      if (tally_->failed++ == 0) {
        std::fprintf(stderr, "stream ended: %d %s\n", s.error_code(), s.error_message().c_str());
      }
    }
    ++tally_->ended;
    tally_->cv.notify_all();
  }

 private:
  Tally* tally_;
  grpc::ClientContext ctx_;
  v1::WatchRequest request_;
  v1::WatchResponse response_;
};

int64_t RssKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

int Run() {
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const int connections = std::max(1, absl::GetFlag(FLAGS_connections));
  testing::ServerOptions options;
  options.extra_flags = {absl::StrCat("--watch_max_streams=", watchers + 10),
                         absl::StrCat("--watch_max_streams_per_peer=", watchers + 10)};
  auto server = testing::ServerProcess::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "cannot start snapconfd: %s\n", server.status().ToString().c_str());
    return 1;
  }
  const std::string address = (*server)->address();
  auto config =
      v1::ConfigService::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  auto put = [&](int i) -> int64_t {
    v1::PutRequest req;
    req.set_namespace_("bench");
    req.set_key("k");
    req.set_value(absl::StrCat("v", i));
    v1::PutResponse resp;
    grpc::ClientContext ctx;
    const grpc::Status s = config->Put(&ctx, req, &resp);
    return s.ok() ? resp.header().revision() : -1;
  };
  if (put(0) < 0) return 1;
  absl::SleepFor(absl::Milliseconds(200));
  const int64_t rss_before = RssKiB((*server)->pid());

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<v1::WatchService::Stub>> stubs;
  for (int c = 0; c < connections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("bench.connection", c);  // distinct args: a connection each
    channels.push_back(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
    stubs.push_back(v1::WatchService::NewStub(channels.back()));
  }
  Tally tally;
  std::vector<std::unique_ptr<WatchStream>> streams;
  const absl::Time open_start = absl::Now();
  for (int i = 0; i < watchers; ++i) {
    streams.push_back(std::make_unique<WatchStream>(stubs[i % connections].get(), &tally));
  }
  {
    std::unique_lock<std::mutex> lock(tally.mu);
    tally.cv.wait_for(lock, std::chrono::seconds(120),
                      [&] { return tally.ready + tally.failed >= watchers; });
  }
  const absl::Duration open_time = absl::Now() - open_start;
  absl::SleepFor(absl::Milliseconds(500));
  const int64_t rss_after = RssKiB((*server)->pid());
  std::printf("watchers=%d connections=%d ready=%d failed=%d open_all=%.0f ms server_pid=%d\n",
              watchers, connections, tally.ready, tally.failed,
              absl::ToDoubleMilliseconds(open_time), static_cast<int>((*server)->pid()));
  std::fflush(stdout);
  std::printf("server RSS: %lld KiB before, %lld KiB with idle streams: %.1f KiB per watcher\n",
              static_cast<long long>(rss_before), static_cast<long long>(rss_after),
              static_cast<double>(rss_after - rss_before) / std::max(1, watchers));

  std::vector<double> latencies;
  for (int round = 1; round <= absl::GetFlag(FLAGS_rounds); ++round) {
    // The next revision is known: nothing else writes.
    {
      std::lock_guard<std::mutex> lock(tally.mu);
      tally.target = round + 1;
      tally.delivered = 0;
    }
    const absl::Time begin = absl::Now();
    const int64_t rev = put(round);
    bool all = false;
    {
      std::unique_lock<std::mutex> lock(tally.mu);
      all = tally.cv.wait_for(lock, std::chrono::seconds(30),
                              [&] { return tally.delivered >= tally.ready; });
    }
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - begin);
    latencies.push_back(ms);
    std::printf("round %d: revision %lld reached %d/%d watchers in %.1f ms (Put included)%s\n",
                round, static_cast<long long>(rev), tally.delivered, tally.ready, ms,
                all ? "" : " TIMEOUT");
    std::fflush(stdout);
    absl::SleepFor(absl::Milliseconds(200));
  }
  std::sort(latencies.begin(), latencies.end());
  if (!latencies.empty()) {
    std::printf("fan-out to last delivery: min %.1f ms, median %.1f ms, max %.1f ms\n",
                latencies.front(), latencies[latencies.size() / 2], latencies.back());
  }
  for (auto& s : streams) s->Cancel();
  {
    std::unique_lock<std::mutex> lock(tally.mu);
    tally.cv.wait_for(lock, std::chrono::seconds(30), [&] { return tally.ended >= watchers; });
  }
  return 0;
}

}  // namespace
}  // namespace snapconf

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return snapconf::Run();
}
