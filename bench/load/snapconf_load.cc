// snapconf_load: a closed-loop gRPC load generator for a running snapconfd.
//
// Keeps --inflight calls outstanding (the callback API, no thread per call)
// for --duration and prints one line: workload, concurrency, calls/s, p50,
// p99 and errors. It measures; it asserts nothing.
//
//   snapconf_load --target=127.0.0.1:7070 --workload=put --inflight=256 --duration=10s
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "snapconf/v1/config_service.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:7070", "snapconfd address");
ABSL_FLAG(std::string, workload, "get", "get | list | put");
ABSL_FLAG(int, inflight, 64, "calls kept outstanding");
ABSL_FLAG(int, connections, 4, "gRPC channels to spread calls over");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "how long to measure");
ABSL_FLAG(int, keys, 1000, "distinct keys (loaded first for get/list)");
ABSL_FLAG(int, value_bytes, 100, "value size");
ABSL_FLAG(int, list_page, 100, "page size for list");
ABSL_FLAG(bool, preload, true, "write the keys before a read workload");

namespace {

using snapconf::v1::ConfigService;

struct Shared {
  std::vector<std::unique_ptr<ConfigService::Stub>> stubs;
  std::string workload;
  int keys = 0;
  std::string value;
  absl::Time end;
  std::atomic<int64_t> errors{0};
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;
  std::vector<std::vector<double>> latencies_us;  // one vector per slot
};

// One outstanding call slot: issues the next call from the previous one's
// completion until the deadline.
class Slot {
 public:
  Slot(Shared* shared, int index) : shared_(shared), index_(index), rng_(index) {}

  void Issue() {
    if (absl::Now() >= shared_->end) {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (--shared_->running == 0) shared_->cv.notify_all();
      return;
    }
    ctx_ = std::make_unique<grpc::ClientContext>();
    ctx_->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto& stub = *shared_->stubs[index_ % shared_->stubs.size()];
    const std::string key = absl::StrCat("key-", rng_() % shared_->keys);
    start_ = absl::Now();
    auto done = [this](grpc::Status s) {
      if (!s.ok()) shared_->errors.fetch_add(1);
      shared_->latencies_us[index_].push_back(absl::ToDoubleMicroseconds(absl::Now() - start_));
      Issue();
    };
    if (shared_->workload == "put") {
      put_.set_namespace_("bench");
      put_.set_key(key);
      put_.set_value(shared_->value);
      stub.async()->Put(ctx_.get(), &put_, &put_resp_, done);
    } else if (shared_->workload == "list") {
      list_.set_namespace_("bench");
      list_.set_page_size(absl::GetFlag(FLAGS_list_page));
      stub.async()->List(ctx_.get(), &list_, &list_resp_, done);
    } else {
      get_.set_namespace_("bench");
      get_.set_key(key);
      stub.async()->Get(ctx_.get(), &get_, &get_resp_, done);
    }
  }

 private:
  Shared* shared_;
  int index_;
  std::minstd_rand rng_;
  absl::Time start_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  snapconf::v1::PutRequest put_;
  snapconf::v1::PutResponse put_resp_;
  snapconf::v1::GetRequest get_;
  snapconf::v1::GetResponse get_resp_;
  snapconf::v1::ListRequest list_;
  snapconf::v1::ListResponse list_resp_;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  Shared shared;
  shared.workload = absl::GetFlag(FLAGS_workload);
  shared.keys = std::max(1, absl::GetFlag(FLAGS_keys));
  shared.value = std::string(static_cast<size_t>(absl::GetFlag(FLAGS_value_bytes)), 'v');
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_connections)); ++i) {
    grpc::ChannelArguments args;
    args.SetInt("snapconf.load.channel", i);  // distinct channels, not one shared subchannel
    shared.stubs.push_back(ConfigService::NewStub(grpc::CreateCustomChannel(
        absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials(), args)));
  }
  if (shared.workload != "put" && absl::GetFlag(FLAGS_preload)) {
    for (int k = 0; k < shared.keys; ++k) {
      grpc::ClientContext ctx;
      snapconf::v1::PutRequest req;
      snapconf::v1::PutResponse resp;
      req.set_namespace_("bench");
      req.set_key(absl::StrCat("key-", k));
      req.set_value(shared.value);
      if (!shared.stubs[0]->Put(&ctx, req, &resp).ok()) {
        std::fprintf(stderr, "snapconf_load: preload failed\n");
        return 1;
      }
    }
  }
  const int inflight = std::max(1, absl::GetFlag(FLAGS_inflight));
  shared.latencies_us.resize(inflight);
  std::vector<std::unique_ptr<Slot>> slots;
  for (int i = 0; i < inflight; ++i) slots.push_back(std::make_unique<Slot>(&shared, i));
  const absl::Time start = absl::Now();
  shared.end = start + absl::GetFlag(FLAGS_duration);
  shared.running = inflight;
  for (auto& s : slots) s->Issue();
  {
    std::unique_lock<std::mutex> lock(shared.mu);
    shared.cv.wait(lock, [&] { return shared.running == 0; });
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& v : shared.latencies_us) all.insert(all.end(), v.begin(), v.end());
  const size_t calls = all.size();
  const double p50 = Percentile(all, 0.50);
  const double p99 = Percentile(all, 0.99);
  std::printf("%-5s inflight=%-4d calls/s=%-9.0f p50_us=%-8.0f p99_us=%-8.0f errors=%lld\n",
              shared.workload.c_str(), inflight, static_cast<double>(calls) / seconds, p50, p99,
              static_cast<long long>(shared.errors.load()));
  return shared.errors.load() == 0 ? 0 : 1;
}
