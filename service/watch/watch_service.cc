#include "service/watch/watch_service.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "grpcpp/alarm.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/proto_buffer_reader.h"

namespace snapconf {

static grpc::Status InvalidArgument(std::string message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

class WatchCall;

// What a queue event is about: a call's operation, or (call == nullptr) the
// queue's wake alarm.
enum class EventKind { kAccept, kRead, kWrite, kFinish, kDone, kWake };
struct EventTag {
  WatchCall* call;
  EventKind kind;
};

struct WatchServiceImpl::Queue {
  explicit Queue(size_t i, std::unique_ptr<grpc::ServerCompletionQueue> q)
      : index(i), cq(std::move(q)) {}
  const size_t index;
  const std::unique_ptr<grpc::ServerCompletionQueue> cq;
  // Declared after the queue, so it is destroyed first.
  grpc::Alarm wake_alarm;
  bool wake_pending = false;  // guarded by the service's mu_
  EventTag wake_tag{nullptr, EventKind::kWake};
};

// One watch stream. Queue events (accept, read, write, finish, done) arrive
// on its queue's single thread, one at a time; Send and End come from the
// Watcher on any thread. The call deletes itself once the call is done, its
// stream was ended (the Watcher never touches the sink after End) and no
// operation is outstanding.
class WatchCall final : private WatchSink {
 public:
  using Kind = EventKind;
  using Tag = EventTag;

  WatchCall(WatchServiceImpl* service, WatchServiceImpl::Queue* queue)
      : service_(service), queue_(queue), cq_(queue->cq.get()), stream_(&context_) {}

  // Requests the next stream on the queue (false: the service is stopping
  // and the call was not registered).
  bool Request() {
    context_.AsyncNotifyWhenDone(&done_tag_);
    return service_->Accept(this);
  }
  // Called by WatchServiceImpl::Accept under its lock.
  void RequestLocked() { service_->RequestWatch(&context_, &stream_, cq_, cq_, &accept_tag_); }

  void OnEvent(Kind kind, bool ok) {
    switch (kind) {
      case Kind::kAccept:
        if (!ok) {
          // Never matched with a call (shutdown): no other event will come.
          delete this;
          return;
        }
        OnAccept();
        break;
      case Kind::kRead:
        OnRead(ok);
        break;
      case Kind::kWrite: {
        MutexLock lock(&mu_);
        write_pending_ = false;
      }
        watcher_->OnWriteDone(ok);
        break;
      case Kind::kFinish: {
        MutexLock lock(&mu_);
        finish_pending_ = false;
        break;
      }
      case Kind::kDone: {
        MutexLock lock(&mu_);
        done_ = true;
      }
        // A stream the client cancelled (or whose connection died) ends
        // here; a stream the server ended ignores this.
        if (watcher_)
          watcher_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled"));
        break;
      case Kind::kWake:
        break;  // handled by the queue's thread, never a call's tag
    }
    MaybeDelete();
  }

 private:
  void OnAccept() {
    // Keep one request pending on this queue.
    auto* next = new WatchCall(service_, queue_);
    if (!next->Request()) delete next;

    if (service_->admission_) {
      absl::StatusOr<std::shared_ptr<void>> admitted = service_->admission_(&context_);
      if (!admitted.ok()) {
        End(grpc::Status(static_cast<grpc::StatusCode>(admitted.status().code()),
                         std::string(admitted.status().message())));
        return;
      }
      admission_ = *std::move(admitted);
    }
    absl::StatusOr<std::shared_ptr<Watcher>> watcher =
        service_->hub_->Open(context_.peer(), this, queue_->index);
    if (!watcher.ok()) {
      // Nothing was started: this is the stream's only Finish.
      End(grpc::Status(static_cast<grpc::StatusCode>(watcher.status().code()),
                       std::string(watcher.status().message())));
      return;
    }
    watcher_ = *std::move(watcher);
    StartRead();
    // Only now may the hub end the stream (a shutdown can race this).
    watcher_->Activate();
  }

  void StartRead() {
    {
      MutexLock lock(&mu_);
      read_pending_ = true;
    }
    stream_.Read(&request_, &read_tag_);
  }

  void OnRead(bool ok) {
    {
      MutexLock lock(&mu_);
      read_pending_ = false;
    }
    // !ok: the client half-closed or the call ended. The stream keeps going
    // until the client cancels (done) or the server shuts down.
    if (!ok) return;
    v1::WatchRequest request;
    const grpc::Status parsed =
        grpc::GenericDeserialize<grpc::ProtoBufferReader, v1::WatchRequest>(&request_, &request);
    if (!parsed.ok()) {
      watcher_->Finish(InvalidArgument("malformed WatchRequest: not a snapconf.v1.WatchRequest"));
      return;
    }
    if (!created_) {
      if (!request.has_create()) {
        watcher_->Finish(InvalidArgument("the first WatchRequest must be a create"));
        return;
      }
      absl::StatusOr<WatchSpec> spec = ParseWatchCreate(request.create(), service_->validate_);
      if (!spec.ok()) {
        watcher_->Finish(InvalidArgument(std::string(spec.status().message())));
        return;
      }
      if (service_->recheck_factory_) {
        watcher_->set_recheck(service_->recheck_factory_(context_, *spec));
      }
      if (service_->access_) {
        if (absl::Status allowed = service_->access_(context_, *spec); !allowed.ok()) {
          watcher_->Finish(grpc::Status(static_cast<grpc::StatusCode>(allowed.code()),
                                        std::string(allowed.message())));
          return;
        }
      }
      created_ = true;
      watcher_->Start(*std::move(spec));
    } else if (request.has_progress()) {
      watcher_->RequestProgress();
    } else if (request.has_create()) {
      watcher_->Finish(InvalidArgument("a watch stream takes only one create"));
      return;
    } else {
      watcher_->Finish(InvalidArgument("empty WatchRequest"));
      return;
    }
    if (!watcher_->finishing()) StartRead();
  }

  // WatchSink. The flag is set before the operation starts, and the
  // operation is the last thing touching `this`: its completion may delete
  // the call at once.
  void Send(const grpc::ByteBuffer* message) override {
    grpc::ByteBuffer copy;  // slice references, not bytes
    {
      MutexLock lock(&mu_);
      write_pending_ = true;
      // The Watcher clears *message once the write completes, on the queue's
      // thread, which takes mu_ first. Reading it under mu_ orders the two for
      // ThreadSanitizer: the order gRPC guarantees is invisible to it.
      copy = *message;
    }
    stream_.Write(copy, &write_tag_);
  }
  void End(const grpc::Status& status) override {
    // Finish stores the status in the call's operations, which the queue's
    // thread destroys with the call. End may run on another thread (a
    // shutdown, or access revoked): starting the operation under mu_, which
    // the queue's thread takes before deleting, orders the two for
    // ThreadSanitizer. It cannot deadlock: an asynchronous Finish only queues
    // the operation; its completion comes through the queue.
    MutexLock lock(&mu_);
    ended_ = true;
    finish_pending_ = true;
    stream_.Finish(status, &finish_tag_);
  }

  // Runs on the queue's thread after each event.
  void MaybeDelete() {
    {
      MutexLock lock(&mu_);
      if (!done_ || !ended_ || read_pending_ || write_pending_ || finish_pending_) return;
    }
    if (watcher_) service_->hub_->Close(watcher_);
    delete this;
  }

  WatchServiceImpl* const service_;
  WatchServiceImpl::Queue* const queue_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer> stream_;
  Tag accept_tag_{this, Kind::kAccept};
  Tag read_tag_{this, Kind::kRead};
  Tag write_tag_{this, Kind::kWrite};
  Tag finish_tag_{this, Kind::kFinish};
  Tag done_tag_{this, Kind::kDone};
  std::shared_ptr<Watcher> watcher_;  // null when the stream was refused
  std::shared_ptr<void> admission_;   // released when the call is deleted
  grpc::ByteBuffer request_;          // read in flight; reads are sequential
  bool created_ = false;              // touched only on the queue's thread

  Mutex mu_;
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // End was called: no more sink calls
  bool done_ ABSL_GUARDED_BY(mu_) = false;   // the call is over
};

WatchServiceImpl::WatchServiceImpl(WatchHub* hub, WatchNameValidator validate, AccessCheck access)
    : hub_(hub), validate_(std::move(validate)), access_(std::move(access)) {}

WatchServiceImpl::~WatchServiceImpl() { Stop(); }

void WatchServiceImpl::AddTo(grpc::ServerBuilder* builder) {
  builder->RegisterService(this);
  int queues = hub_->options().completion_queues;
  if (queues <= 0) queues = 16;
  for (int i = 0; i < queues; ++i) {
    queues_.push_back(
        std::make_unique<Queue>(static_cast<size_t>(i), builder->AddCompletionQueue()));
  }
  hub_->SetExternalPumps(queues_.size(), [this](size_t index) { Wake(index); });
}

void WatchServiceImpl::Start() {
  for (auto& queue : queues_) {
    // A few requests pending per queue, so a burst of new streams is
    // accepted without waiting for a request to be renewed.
    for (int i = 0; i < 4; ++i) {
      auto* call = new WatchCall(this, queue.get());
      if (!call->Request()) delete call;
    }
    threads_.emplace_back([this, q = queue.get()] { Poll(q); });
  }
}

bool WatchServiceImpl::Accept(WatchCall* call) {
  // Stop shuts the queues down under the same lock.
  MutexLock lock(&mu_);
  if (stopping_) return false;
  call->RequestLocked();
  return true;
}

void WatchServiceImpl::Wake(size_t index) {
  MutexLock lock(&mu_);
  Queue& queue = *queues_[index];
  // One wake in flight per queue is enough: the pump that follows sees every
  // commit up to then.
  if (stopping_ || queue.wake_pending) return;
  queue.wake_pending = true;
  // Already due: the alarm's tag is queued at once.
  queue.wake_alarm.Set(queue.cq.get(), gpr_inf_past(GPR_CLOCK_MONOTONIC), &queue.wake_tag);
}

void WatchServiceImpl::Poll(Queue* queue) {
  const auto tick = absl::ToChronoNanoseconds(hub_->pump_tick());
  auto next_pump = std::chrono::system_clock::now() + tick;
  for (;;) {
    void* tag = nullptr;
    bool ok = false;
    const auto status = queue->cq->AsyncNext(&tag, &ok, next_pump);
    if (status == grpc::CompletionQueue::SHUTDOWN) break;
    bool pump = false;
    if (status == grpc::CompletionQueue::GOT_EVENT) {
      auto* t = static_cast<EventTag*>(tag);
      if (t->call != nullptr) {
        t->call->OnEvent(t->kind, ok);
      } else {
        {
          MutexLock lock(&mu_);
          queue->wake_pending = false;
        }
        pump = ok;
      }
    }
    const auto now = std::chrono::system_clock::now();
    if (now >= next_pump) pump = true;
    if (pump) {
      hub_->PumpShard(queue->index);
      next_pump = now + tick;
    }
  }
}

void WatchServiceImpl::Stop() {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& queue : queues_) queue->cq->Shutdown();
  }
  if (threads_.empty()) {
    // Never started (the server did not come up): drain here.
    for (auto& queue : queues_) Poll(queue.get());
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

}  // namespace snapconf
