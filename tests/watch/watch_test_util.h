// tests/watch/watch_test_util.h
//
// Helpers shared by the watch tests: decoding a grpc::ByteBuffer into a
// WatchResponse, and a fake WatchSink that records what a stream was sent and
// lets the test complete writes when it chooses (a slow or fast client).
//
// Thread-safety: FakeSink is thread-safe (the hub's dispatcher, gRPC-like
// callers and the test thread use it at once).
//
//   FakeSink sink;
//   auto watcher = *hub.Open("ipv4:127.0.0.1:1", &sink);
//   watcher->Start(spec);
//   sink.AwaitRevision(watcher.get(), 7, absl::Seconds(5));
#pragma once

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/mutex.h"
#include "grpcpp/support/byte_buffer.h"
#include "service/watch/watch_hub.h"
#include "snapconf/v1/watch_service.pb.h"
#include "tests/watch/contract_checker.h"

namespace snapconf::watch_testing {

inline std::string BufferBytes(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return bytes;
}

// The revision a client holds after `response` (-1: a reset chunk with more).
inline int64_t RevisionAfter(const v1::WatchResponse& response) {
  if (response.has_reset()) return response.reset().more() ? -1 : response.reset().revision();
  if (response.has_changes()) return response.changes().revision();
  if (response.has_progress()) return response.progress().revision();
  return -1;
}

class FakeSink : public WatchSink {
 public:
  void Send(const grpc::ByteBuffer* message) override {
    std::string bytes = BufferBytes(*message);
    v1::WatchResponse response;
    const bool parsed = response.ParseFromString(bytes);
    MutexLock lock(&mu_);
    if (!parsed) parse_failures_++;
    if (pending_) double_writes_++;
    if (ended_) writes_after_end_++;
    pending_ = true;
    raw_.push_back(std::move(bytes));
    trace_.Receive(response);
    responses_.push_back(response);
    if (const int64_t r = RevisionAfter(response); r >= 0) last_revision_ = r;
    cv_.SignalAll();
  }
  void End(const grpc::Status& status) override {
    MutexLock lock(&mu_);
    if (pending_) end_with_write_++;
    ended_ = true;
    ends_++;
    status_ = status;
    cv_.SignalAll();
  }

  // Completes the write in flight, if any (as gRPC's OnWriteDone would).
  bool Ack(Watcher* watcher, bool ok = true) {
    {
      MutexLock lock(&mu_);
      if (!pending_) return false;
      pending_ = false;
    }
    watcher->OnWriteDone(ok);
    return true;
  }

  // Acknowledges writes until the client holds `revision` or the time is up.
  bool AwaitRevision(Watcher* watcher, int64_t revision, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (Ack(watcher)) continue;
      MutexLock lock(&mu_);
      if (last_revision_ >= revision && !pending_) return true;
      if (ended_) return false;
      if (!pending_) cv_.WaitUntil(&mu_, absl::ToChronoTime(absl::Now() + absl::Milliseconds(20)));
    }
    MutexLock lock(&mu_);
    return last_revision_ >= revision;
  }

  // Waits until a message is in flight (or the stream ended).
  bool AwaitPending(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    while (!pending_ && !ended_ && absl::Now() < deadline) {
      cv_.WaitUntil(&mu_, absl::ToChronoTime(absl::Now() + absl::Milliseconds(20)));
    }
    return pending_;
  }

  bool AwaitEnd(absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    MutexLock lock(&mu_);
    while (!ended_ && absl::Now() < deadline) {
      cv_.WaitUntil(&mu_, absl::ToChronoTime(absl::Now() + absl::Milliseconds(20)));
    }
    return ended_;
  }

  void StartTrace(const v1::WatchCreateRequest& create) {
    MutexLock lock(&mu_);
    trace_.Start(create);
  }

  std::vector<v1::WatchResponse> responses() const {
    MutexLock lock(&mu_);
    return responses_;
  }
  std::vector<std::string> raw() const {
    MutexLock lock(&mu_);
    return raw_;
  }
  WatchTrace trace() const {
    MutexLock lock(&mu_);
    return trace_;
  }
  int64_t last_revision() const {
    MutexLock lock(&mu_);
    return last_revision_;
  }
  bool pending() const {
    MutexLock lock(&mu_);
    return pending_;
  }
  bool ended() const {
    MutexLock lock(&mu_);
    return ended_;
  }
  grpc::Status status() const {
    MutexLock lock(&mu_);
    return status_;
  }
  // Breaches of the sink contract: writes overlapping, writes or ends after
  // the end, ends with a write in flight, more than one end, bad bytes.
  int contract_errors() const {
    MutexLock lock(&mu_);
    return double_writes_ + writes_after_end_ + end_with_write_ + (ends_ > 1 ? ends_ - 1 : 0) +
           parse_failures_;
  }
  // Continue a trace on a new stream (a resume).
  void set_trace(WatchTrace trace) {
    MutexLock lock(&mu_);
    trace_ = std::move(trace);
  }

 private:
  mutable Mutex mu_;
  CondVar cv_;
  bool pending_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  int ends_ ABSL_GUARDED_BY(mu_) = 0;
  int double_writes_ ABSL_GUARDED_BY(mu_) = 0;
  int writes_after_end_ ABSL_GUARDED_BY(mu_) = 0;
  int end_with_write_ ABSL_GUARDED_BY(mu_) = 0;
  int parse_failures_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  int64_t last_revision_ ABSL_GUARDED_BY(mu_) = -1;
  std::vector<v1::WatchResponse> responses_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> raw_ ABSL_GUARDED_BY(mu_);
  WatchTrace trace_ ABSL_GUARDED_BY(mu_);
};

}  // namespace snapconf::watch_testing
