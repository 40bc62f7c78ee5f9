// tests/etcd/traced_watch.h
//
// What the etcd tests watch with: an EVERY_REVISION watch stream read on its
// own thread into a WatchTrace for the contract checker, and the check that a
// trace is clean up to a given head. Thread-safe accessors; the destructor
// cancels the stream and joins the reader.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "common/mutex.h"
#include "snapconf/v1/watch_service.grpc.pb.h"
#include "tests/etcd/etcd_test_util.h"
#include "tests/watch/contract_checker.h"

namespace snapconf::etcd_testing {

// A watch stream read on its own thread into a trace.
class TracedWatch {
 public:
  TracedWatch(const std::string& address, const std::string& ns)
      : channel_(etcd_testing::Connect(address)), stub_(v1::WatchService::NewStub(channel_)) {
    create_.add_filters()->set_namespace_(ns);
    create_.set_mode(v1::DELIVERY_MODE_EVERY_REVISION);
    ctx_.set_deadline(In(absl::Seconds(90)));
    rw_ = stub_->Watch(&ctx_);
    v1::WatchRequest req;
    *req.mutable_create() = create_;
    {
      MutexLock lock(&mu_);
      trace_.Start(create_);
    }
    rw_->Write(req);
    reader_ = std::thread([this] {
      v1::WatchResponse r;
      while (rw_->Read(&r)) {
        MutexLock lock(&mu_);
        trace_.Receive(r);
        if (r.has_changes()) revision_ = r.changes().revision();
        if (r.has_reset()) {
          ++resets_;
          if (!r.reset().more()) revision_ = r.reset().revision();
        }
        if (r.has_progress()) revision_ = r.progress().revision();
      }
      MutexLock lock(&mu_);
      ended_ = true;
    });
  }
  ~TracedWatch() {
    ctx_.TryCancel();
    if (reader_.joinable()) reader_.join();
    (void)rw_->Finish();
  }
  int64_t revision() {
    MutexLock lock(&mu_);
    return revision_;
  }
  int resets() {
    MutexLock lock(&mu_);
    return resets_;
  }
  bool ended() {
    MutexLock lock(&mu_);
    return ended_;
  }
  watch_testing::WatchTrace trace() {
    MutexLock lock(&mu_);
    return trace_;
  }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WatchService::Stub> stub_;
  grpc::ClientContext ctx_;
  v1::WatchCreateRequest create_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WatchRequest, v1::WatchResponse>> rw_;
  std::thread reader_;
  Mutex mu_;
  watch_testing::WatchTrace trace_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = -1;
  int resets_ ABSL_GUARDED_BY(mu_) = 0;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

void ExpectClean(const watch_testing::ContractChecker& checker,
                 const watch_testing::WatchTrace& trace, int64_t head, const std::string& name) {
  watch_testing::CheckResult r = checker.Check(trace);
  for (const auto& f : r.findings) {
    ADD_FAILURE() << name << ": " << watch_testing::ViolationName(f.kind) << ": " << f.detail;
  }
  EXPECT_EQ(r.final_revision, head) << name;
}

}  // namespace snapconf::etcd_testing
