#include "service/watch/watch_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/alarm.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "service/watch/wire.h"

namespace snapconf {

static grpc::Status InvalidArgument(std::string message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::move(message));
}

static grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// What a queue event is about: a call's operation, or (call == nullptr) the
// queue's wake alarm.
enum class EventKind { kAccept, kRead, kWrite, kFinish, kDone, kWake };

class QueueCall;

struct EventTag {
  QueueCall* call;
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

  // The WatchMany streams on this queue; only its thread touches these.
  absl::flat_hash_set<MuxCall*> mux_calls;
  bool shutdown_seen = false;
  // Calls with something to flush, in the order they became dirty.
  Mutex dirty_mu;
  std::vector<MuxCall*> dirty ABSL_GUARDED_BY(dirty_mu);
  std::atomic<bool> has_dirty{false};
};

// A stream served on one completion queue (a Watch or a WatchMany call): its
// events arrive on the queue's thread, one at a time.
class QueueCall {
 public:
  using Kind = EventKind;
  using Tag = EventTag;

  QueueCall(WatchServiceImpl* service, WatchServiceImpl::Queue* queue)
      : service_(service), queue_(queue), cq_(queue->cq.get()), stream_(&context_) {}
  virtual ~QueueCall() = default;
  QueueCall(const QueueCall&) = delete;
  QueueCall& operator=(const QueueCall&) = delete;

  // Requests the next stream on the queue (false: the service is stopping
  // and the call was not registered).
  bool Request() {
    context_.AsyncNotifyWhenDone(&done_tag_);
    return service_->Accept(this);
  }
  // Requests the next stream of its method (under the service's lock).
  virtual void RequestLocked() = 0;
  virtual void OnEvent(Kind kind, bool ok) = 0;

 protected:
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
  grpc::ByteBuffer request_;  // read in flight; reads are sequential
};

// The queue whose thread is running, if any: a sink call from that thread
// needs no wake, the thread flushes before it waits again.
static thread_local const void* current_queue = nullptr;

// One watch stream. Queue events (accept, read, write, finish, done) arrive
// on its queue's single thread, one at a time; Send and End come from the
// Watcher on any thread. The call deletes itself once the call is done, its
// stream was ended (the Watcher never touches the sink after End) and no
// operation is outstanding.
class WatchCall final : public QueueCall, private WatchSink {
 public:
  using QueueCall::QueueCall;

  void RequestLocked() override {
    service_->RequestWatch(&context_, &stream_, cq_, cq_, &accept_tag_);
  }

  void OnEvent(Kind kind, bool ok) override {
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
      absl::StatusOr<std::shared_ptr<void>> admitted = service_->admission_(context_, &context_);
      if (!admitted.ok()) {
        End(ToGrpc(admitted.status()));
        return;
      }
      admission_ = *std::move(admitted);
    }
    absl::StatusOr<std::shared_ptr<Watcher>> watcher =
        service_->hub_->Open(context_.peer(), this, queue_->index);
    if (!watcher.ok()) {
      // Nothing was started: this is the stream's only Finish.
      End(ToGrpc(watcher.status()));
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
          watcher_->Finish(ToGrpc(allowed));
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

  std::shared_ptr<Watcher> watcher_;  // null when the stream was refused
  std::shared_ptr<void> admission_;   // released when the call is deleted
  bool created_ = false;              // touched only on the queue's thread

  Mutex mu_;
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // End was called: no more sink calls
  bool done_ ABSL_GUARDED_BY(mu_) = false;   // the call is over
};

namespace {

using watch_wire::PutVarint;
using watch_wire::VarintSize;

// Field tags of WatchManyResponse, WatchManyEvent and WatchEnded.
constexpr char kEventsTag = 0x0a;    // WatchManyResponse.events = 1, bytes
constexpr char kWatchIdTag = 0x08;   // WatchManyEvent.watch_id = 1, varint
constexpr char kResponseTag = 0x12;  // WatchManyEvent.response = 2, bytes
constexpr char kEndedTag = 0x1a;     // WatchManyEvent.ended = 3, bytes
constexpr char kCodeTag = 0x08;      // WatchEnded.code = 1, varint
constexpr char kMessageTag = 0x12;   // WatchEnded.message = 2, bytes

// A WatchManyResponse.events element for watch `id` whose `response` or
// `ended` field (`body_tag`) has `body` bytes: the element's length, then,
// in it, the id (proto3 leaves 0 out; so do we, to stay canonical) and the
// body's length.
size_t WatchManyEventInnerSize(uint64_t id, size_t body) {
  return (id == 0 ? 0 : 1 + VarintSize(id)) + 1 + VarintSize(body) + body;
}
size_t WatchManyEventSize(int64_t id, size_t body) {
  const size_t inner = WatchManyEventInnerSize(static_cast<uint64_t>(id), body);
  return 1 + VarintSize(inner) + inner;
}
// Appends such an element's framing, up to where its body starts.
void PutWatchManyEventHead(std::string* out, uint64_t id, char body_tag, size_t body) {
  out->push_back(kEventsTag);
  PutVarint(out, WatchManyEventInnerSize(id, body));
  if (id != 0) {
    out->push_back(kWatchIdTag);
    PutVarint(out, id);
  }
  out->push_back(body_tag);
  PutVarint(out, body);
}

}  // namespace

grpc::ByteBuffer EncodeWatchManyResponse(const std::vector<WatchManyEventBytes>& events) {
  // Every event's framing (and an ended event's body) goes into one buffer,
  // which becomes one slice; the message is that slice's pieces interleaved
  // with the responses' own slices.
  std::string framing;
  struct Piece {
    size_t begin, end;                           // of `framing`
    const grpc::ByteBuffer* response = nullptr;  // follows the piece
  };
  std::vector<Piece> pieces;
  pieces.reserve(events.size());
  for (const WatchManyEventBytes& event : events) {
    const size_t begin = framing.size();
    const auto id = static_cast<uint64_t>(event.watch_id);
    if (event.response != nullptr) {
      PutWatchManyEventHead(&framing, id, kResponseTag, event.response->Length());
      pieces.push_back({begin, framing.size(), event.response});
      continue;
    }
    std::string ended;
    if (event.ended != nullptr) {
      if (const auto code = static_cast<uint64_t>(event.ended->error_code()); code != 0) {
        ended.push_back(kCodeTag);
        PutVarint(&ended, code);
      }
      if (const std::string& message = event.ended->error_message(); !message.empty()) {
        ended.push_back(kMessageTag);
        PutVarint(&ended, message.size());
        ended.append(message);
      }
    }
    PutWatchManyEventHead(&framing, id, kEndedTag, ended.size());
    framing.append(ended);
    pieces.push_back({begin, framing.size(), nullptr});
  }
  const grpc::Slice all(framing);
  std::vector<grpc::Slice> slices;
  slices.reserve(pieces.size() * 4);
  std::vector<grpc::Slice> parts;
  for (const Piece& piece : pieces) {
    slices.push_back(all.sub(piece.begin, piece.end));
    if (piece.response == nullptr) continue;
    parts.clear();
    if (piece.response->Dump(&parts).ok()) {
      for (grpc::Slice& part : parts) slices.push_back(std::move(part));
    }
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// One WatchMany stream (see watch_service.h). Its queue's thread handles its
// events, creates and closes its watches and writes; a watch's sink (Sub)
// may run on any thread and only queues into `pending_` under mu_ and marks
// the call dirty. Flush, on the queue's thread, is the only place that
// writes, finishes the stream, releases ended watches and deletes the call,
// so the call is never deleted while it is on the queue's dirty list.
class MuxCall final : public QueueCall {
 public:
  using QueueCall::QueueCall;

  void RequestLocked() override {
    service_->RequestWatchMany(&context_, &stream_, cq_, cq_, &accept_tag_);
  }

  void OnEvent(Kind kind, bool ok) override {
    switch (kind) {
      case Kind::kAccept:
        if (!ok) {
          delete this;  // never matched with a call: no other event comes
          return;
        }
        OnAccept();
        break;
      case Kind::kRead: {
        MutexLock lock(&mu_);
        read_pending_ = false;
      }
        OnRead(ok);
        break;
      case Kind::kWrite: {
        std::vector<Sub*> written;
        {
          MutexLock lock(&mu_);
          write_pending_ = false;
          written.swap(in_flight_);
        }
        // A failed write fails every watch in it (they end as broken), and
        // the stream with them.
        if (!ok) Close(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream broken"));
        for (Sub* sub : written) sub->watcher->OnWriteDone(ok);
        break;
      }
      case Kind::kFinish: {
        MutexLock lock(&mu_);
        finish_pending_ = false;
        break;
      }
      case Kind::kDone: {
        {
          MutexLock lock(&mu_);
          done_ = true;
        }
        // The client cancelled (or its connection died); after a Finish of
        // ours this changes nothing.
        Close(grpc::Status(grpc::StatusCode::CANCELLED, "watch stream cancelled"));
        break;
      }
      case Kind::kWake:
        break;
    }
    MarkDirty();
  }

  // Ends the stream with `status` (the first status wins) once every watch
  // on it has ended.
  void Close(const grpc::Status& status) {
    MutexLock lock(&mu_);
    if (!close_status_) close_status_ = status;
  }
  // Shutdown: the stream ends, on the queue's thread.
  void CloseForShutdown() {
    Close(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       "the server is shutting down; reconnect and resume"));
    MarkDirty();
  }

  // On the queue's thread, from its dirty list.
  void Flush();

 private:
  // A watch's sink.
  struct Sub final : WatchSink {
    Sub(MuxCall* c, int64_t i) : call(c), id(i) {}
    void Send(const grpc::ByteBuffer* message) override {
      call->Enqueue(id, this, message, nullptr);
    }
    void End(const grpc::Status& status) override { call->Enqueue(id, this, nullptr, &status); }
    MuxCall* const call;
    const int64_t id;
    std::shared_ptr<Watcher> watcher;  // set on the queue's thread before any sink call
    std::shared_ptr<void> admission;   // released with the watch
  };
  // A watch's message waiting for the stream, or its end (`ended`; `sub` is
  // null for a create that was refused before it had a Watcher).
  struct Item {
    int64_t id = 0;
    Sub* sub = nullptr;
    grpc::ByteBuffer message;
    std::optional<grpc::Status> ended;
  };

  void OnAccept() {
    auto* next = new MuxCall(service_, queue_);
    if (!next->Request()) delete next;
    queue_->mux_calls.insert(this);
    if (service_->hub_->shutting_down()) {
      // The hub's last wake may have passed before this call was listed.
      CloseForShutdown();
      return;
    }
    StartRead();
  }

  void StartRead() {
    {
      MutexLock lock(&mu_);
      read_pending_ = true;
    }
    stream_.Read(&request_, &read_tag_);
  }

  void OnRead(bool ok) {
    // !ok: the client half-closed; its watches go on until it cancels.
    if (!ok) return;
    {
      MutexLock lock(&mu_);
      if (close_status_) return;
    }
    v1::WatchManyRequest request;
    if (!grpc::GenericDeserialize<grpc::ProtoBufferReader, v1::WatchManyRequest>(&request_,
                                                                                 &request)
             .ok()) {
      Close(InvalidArgument("malformed WatchManyRequest: not a snapconf.v1.WatchManyRequest"));
      return;
    }
    const int64_t id = request.watch_id();
    const auto open = watches_.find(id);
    switch (request.request_case()) {
      case v1::WatchManyRequest::kCreate:
        if (open != watches_.end()) {
          Close(InvalidArgument(absl::StrCat("watch id ", id, " is already open on this stream")));
          return;
        }
        Create(id, request.create());
        break;
      case v1::WatchManyRequest::kProgress:
        if (open != watches_.end()) open->second->watcher->RequestProgress();
        break;
      case v1::WatchManyRequest::kCancel:
        if (open != watches_.end()) {
          open->second->watcher->Finish(
              grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client"));
        }
        break;
      case v1::WatchManyRequest::REQUEST_NOT_SET:
        Close(InvalidArgument("empty WatchManyRequest"));
        return;
    }
    StartRead();
  }

  void Create(int64_t id, const v1::WatchCreateRequest& create) {
    absl::StatusOr<WatchSpec> spec = ParseWatchCreate(create, service_->validate_);
    if (!spec.ok()) {
      Refuse(id, InvalidArgument(std::string(spec.status().message())));
      return;
    }
    auto sub = std::make_unique<Sub>(this, id);
    // Each watch is a request and holds a slot of its caller's watches, as a
    // Watch stream does: sharing a stream does not get around the limits.
    if (service_->admission_) {
      absl::StatusOr<std::shared_ptr<void>> admitted = service_->admission_(context_, nullptr);
      if (!admitted.ok()) {
        Refuse(id, ToGrpc(admitted.status()));
        return;
      }
      sub->admission = *std::move(admitted);
    }
    absl::StatusOr<std::shared_ptr<Watcher>> watcher =
        service_->hub_->Open(context_.peer(), sub.get(), queue_->index);
    if (!watcher.ok()) {
      Refuse(id, ToGrpc(watcher.status()));
      return;
    }
    sub->watcher = *std::move(watcher);
    Watcher& w = *sub->watcher;
    watches_.emplace(id, std::move(sub));
    w.Activate();
    if (service_->recheck_factory_) w.set_recheck(service_->recheck_factory_(context_, *spec));
    if (service_->access_) {
      if (absl::Status allowed = service_->access_(context_, *spec); !allowed.ok()) {
        w.Finish(ToGrpc(allowed));
        return;
      }
    }
    w.Start(*std::move(spec));
  }

  // A create that never got a Watcher ends with `status`.
  void Refuse(int64_t id, const grpc::Status& status) { Enqueue(id, nullptr, nullptr, &status); }

  // Queues watch `id`'s message or its end (`sub` is null for a refused
  // create). Any thread: a sink call comes from wherever its Watcher runs.
  void Enqueue(int64_t id, Sub* sub, const grpc::ByteBuffer* message, const grpc::Status* ended) {
    bool mark = false;
    {
      MutexLock lock(&mu_);
      Item item;
      item.id = id;
      item.sub = sub;
      // Slice references, not bytes; the Watcher clears its buffer once the
      // write completed, which is after this (mu_ orders the two).
      if (message != nullptr) item.message = *message;
      if (ended != nullptr) item.ended = *ended;
      pending_.push_back(std::move(item));
      mark = !dirty_;
      dirty_ = true;
    }
    if (mark) service_->MarkDirty(queue_, this);
  }

  // Has the queue's thread flush the call after what it is doing now.
  void MarkDirty() {
    {
      MutexLock lock(&mu_);
      if (dirty_) return;
      dirty_ = true;
    }
    service_->MarkDirty(queue_, this);
  }

  // Open watches by id; only the queue's thread touches it. A watch leaves
  // when its end is flushed, so its id is taken until the client can know
  // it ended.
  absl::flat_hash_map<int64_t, std::unique_ptr<Sub>> watches_;
  bool close_propagated_ = false;  // queue's thread

  Mutex mu_;
  std::vector<Item> pending_ ABSL_GUARDED_BY(mu_);
  std::vector<Sub*> in_flight_ ABSL_GUARDED_BY(mu_);  // watches in the write in flight
  std::optional<grpc::Status> close_status_ ABSL_GUARDED_BY(mu_);
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;  // listed on the queue's dirty list
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;  // the stream's Finish was started
  bool done_ ABSL_GUARDED_BY(mu_) = false;   // the call is over
};

void MuxCall::Flush() {
  std::optional<grpc::Status> close;
  {
    MutexLock lock(&mu_);
    dirty_ = false;
    if (close_status_ && !close_propagated_) close = close_status_;
  }
  if (close) {
    // Every watch ends with the stream: at once, or (a message of it is
    // pending) when that message was dropped below.
    close_propagated_ = true;
    for (const auto& [id, sub] : watches_) sub->watcher->Finish(*close);
  }

  std::vector<Item> taken;
  std::vector<Item> dropped;  // messages never to be written
  const size_t limit = service_->hub_->options().max_message_bytes;
  {
    MutexLock lock(&mu_);
    if (close_status_ || ended_) {
      dropped.swap(pending_);
    } else if (!write_pending_ && !pending_.empty()) {
      // Oldest first, within the message size (at least one event).
      size_t bytes = 0;
      size_t n = 0;
      for (; n < pending_.size(); ++n) {
        const Item& item = pending_[n];
        // An ended event's body is at most a code and the message.
        const size_t size = WatchManyEventSize(
            item.id, item.ended ? 17 + item.ended->error_message().size() : item.message.Length());
        if (n > 0 && bytes + size > limit) break;
        bytes += size;
      }
      taken.assign(std::make_move_iterator(pending_.begin()),
                   std::make_move_iterator(pending_.begin() + static_cast<ptrdiff_t>(n)));
      pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(n));
      for (const Item& item : taken) {
        if (!item.ended) in_flight_.push_back(item.sub);
      }
      write_pending_ = true;
    }
  }

  if (!taken.empty()) {
    std::vector<WatchManyEventBytes> events;
    events.reserve(taken.size());
    for (const Item& item : taken) {
      events.push_back(
          {item.id, item.ended ? nullptr : &item.message, item.ended ? &*item.ended : nullptr});
    }
    stream_.Write(EncodeWatchManyResponse(events), &write_tag_);
  }
  // Ended watches leave; the sink of each is never called again.
  auto release = [this](const Item& item) {
    if (!item.ended || item.sub == nullptr) return;
    std::shared_ptr<Watcher> watcher = item.sub->watcher;
    watches_.erase(item.id);
    service_->hub_->Close(watcher);
  };
  for (const Item& item : taken) release(item);
  for (const Item& item : dropped) {
    if (item.ended) {
      release(item);
    } else {
      item.sub->watcher->OnWriteDone(false);  // it ends, and queues its end
    }
  }

  bool finish = false;
  grpc::Status status;
  {
    MutexLock lock(&mu_);
    if (close_status_ && !ended_ && !write_pending_ && pending_.empty() && watches_.empty()) {
      ended_ = true;
      finish_pending_ = true;
      finish = true;
      status = *close_status_;
    }
  }
  if (finish) stream_.Finish(status, &finish_tag_);

  {
    MutexLock lock(&mu_);
    if (!done_ || !ended_ || dirty_ || read_pending_ || write_pending_ || finish_pending_ ||
        !pending_.empty() || !watches_.empty()) {
      return;
    }
  }
  queue_->mux_calls.erase(this);
  delete this;
}

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
      auto* mux = new MuxCall(this, queue.get());
      if (!mux->Request()) delete mux;
    }
    threads_.emplace_back([this, q = queue.get()] { Poll(q); });
  }
}

bool WatchServiceImpl::Accept(QueueCall* call) {
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

void WatchServiceImpl::MarkDirty(Queue* queue, MuxCall* call) {
  {
    MutexLock lock(&queue->dirty_mu);
    queue->dirty.push_back(call);
  }
  queue->has_dirty.store(true, std::memory_order_release);
  if (current_queue != queue) Wake(queue->index);
}

void WatchServiceImpl::FlushDirty(Queue* queue) {
  std::vector<MuxCall*> calls;
  // A call flushed here may list itself again (a watch's end queued while
  // it flushed): loop until none is left, within a bound.
  for (int round = 0; round < 16 && queue->has_dirty.load(std::memory_order_acquire); ++round) {
    {
      MutexLock lock(&queue->dirty_mu);
      calls.swap(queue->dirty);
      queue->has_dirty.store(false, std::memory_order_relaxed);
    }
    for (MuxCall* call : calls) call->Flush();
    calls.clear();
  }
}

void WatchServiceImpl::Poll(Queue* queue) {
  current_queue = queue;
  const auto tick = absl::ToChronoNanoseconds(hub_->pump_tick());
  auto next_pump = std::chrono::system_clock::now() + tick;
  for (;;) {
    void* tag = nullptr;
    bool ok = false;
    // Calls still dirty after FlushDirty's bound are flushed next round,
    // without waiting.
    const auto status = queue->cq->AsyncNext(&tag, &ok,
                                             queue->has_dirty.load(std::memory_order_acquire)
                                                 ? std::chrono::system_clock::now()
                                                 : next_pump);
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
      if (!queue->shutdown_seen && hub_->shutting_down()) {
        // The hub ends the watches it has; a WatchMany stream ends as well,
        // even with none open.
        queue->shutdown_seen = true;
        for (MuxCall* call : queue->mux_calls) call->CloseForShutdown();
      }
    }
    FlushDirty(queue);
  }
  current_queue = nullptr;
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
