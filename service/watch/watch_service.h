// service/watch/watch_service.h
//
// snapconf.v1.WatchService over gRPC's raw asynchronous API: requests are
// parsed here, responses are the hub's pre-serialized bytes
// (grpc::ByteBuffer), so a revision is serialized once for every stream that
// receives it.
//
// Why not the callback API: gRPC serves every callback stream of a server
// through one completion queue, and the gRPC build we link keeps a list of
// the queue's outstanding operations that it searches linearly on every
// completion, under the queue's lock. Each open stream keeps two operations
// outstanding (its read and its end-of-call notification), so with 10k
// streams each write completion searched ~20k entries while the other
// threads waited on that lock: fan-out time grew with the square of the
// stream count. Streams here are spread over several completion queues, each
// drained by its own thread, which divides both the search and the lock.
//
// One WatchCall per stream. It owns nothing but its Watcher (the hub's
// cursor) and the buffer of the read in flight; every write, progress and
// Finish decision is the Watcher's (watch_hub.h states the threading rules).
// Stream life: admitted by the hub (RESOURCE_EXHAUSTED beyond the stream
// limits, UNAVAILABLE while shutting down) -> `create` read and validated
// (INVALID_ARGUMENT otherwise) -> messages until the client cancels or the
// server shuts down (UNAVAILABLE) -> deleted once the call is done and none
// of its operations is outstanding.
//
// WatchMany carries many watches on one stream (one MuxCall per stream, one
// Watcher per watch, each with its own sink). The watches' messages wait in
// the call, at most one per watch (a Watcher never has two writes in
// flight); after each event and each pump the queue's thread writes
// everything pending as one WatchManyResponse of at most max_message_bytes
// (at least one event), the hub's bytes referenced, not copied. So a pump
// after a commit puts one message on the stream for all of its watches, and
// gRPC's per-message cost, most of a delivery's CPU, is paid once per
// stream. A watch's own failures (bad filter, access, limits, cancel) end
// only that watch, with a WatchEnded event; the stream ends on a malformed
// request (INVALID_ARGUMENT), the client's cancel, or shutdown
// (UNAVAILABLE). Every structural change of a MuxCall (its watches, its
// writes, its end) happens on its queue's thread; a watch's sink only
// appends to the call and marks it dirty, waking the queue when it runs on
// another thread (an access re-check, a shutdown).
//
// Each queue's thread is also the hub's pump for the streams on that queue
// (WatchHub::SetExternalPumps): after a commit the hub wakes every queue that
// carries watchers with an alarm, and the thread starts the writes of its
// streams itself. A write
// on loopback usually completes inside the call that starts it, so its
// completion is already waiting when the thread returns to the queue: no
// wake-up between threads per delivery. (With a separate dispatcher thread,
// each delivery cost two context switches, about a third of the server's
// CPU per delivery.)
//
// Thread-safety: AddTo, Start and Stop are called by the server's owner, in
// that order. A call's queue events are handled by its queue's one thread;
// its Send/End (from the Watcher) may come from any thread.
//
//   WatchHub hub(options, snapshot_source);
//   WatchServiceImpl service(&hub, validator);
//   service.AddTo(&builder);                 // registers service and queues
//   server = builder.BuildAndStart(); service.Start();
//   ... hub.Shutdown(); server->Shutdown(); server->Wait(); service.Stop();
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "grpcpp/server_builder.h"
#include "service/watch/watch_hub.h"
#include "snapconf/v1/watch_service.grpc.pb.h"

namespace snapconf {

class QueueCall;
class MuxCall;

// One event of a WatchManyResponse: a watch's response, as the hub built it,
// or the status it ended with.
struct WatchManyEventBytes {
  int64_t watch_id = 0;
  const grpc::ByteBuffer* response = nullptr;  // or
  const grpc::Status* ended = nullptr;
};
// The WatchManyResponse holding `events`, byte for byte what protobuf would
// serialize; the responses' slices are referenced, not copied.
grpc::ByteBuffer EncodeWatchManyResponse(const std::vector<WatchManyEventBytes>& events);

class WatchServiceImpl final
    : public v1::WatchService::WithRawMethod_Watch<
          v1::WatchService::WithRawMethod_WatchMany<v1::WatchService::Service>> {
 public:
  // Decides whether the caller of `context` may watch `spec`; a refusal ends
  // the stream with its status (PERMISSION_DENIED) before anything is sent.
  using AccessCheck =
      std::function<absl::Status(const grpc::ServerContextBase& context, const WatchSpec& spec)>;

  // Admits a new watch of the caller of `context` before the hub does
  // (per-identity rate and stream limits): a Watch stream when it is
  // accepted, each create of a WatchMany stream. A refusal ends the watch
  // with its status; a retry hint may go into `trailers` first (null for a
  // WatchMany watch: its stream goes on, and the status message says it).
  // The returned handle (may be null) is kept until the watch is gone,
  // however it ends.
  using Admission = std::function<absl::StatusOr<std::shared_ptr<void>>(
      const grpc::ServerContextBase& context, grpc::ServerContextBase* trailers)>;
  // Makes a stream's access re-check (Watcher::set_recheck) from its caller
  // and spec; installed before the access check, so a policy change racing
  // the check is not missed.
  using RecheckFactory = std::function<Watcher::Recheck(const grpc::ServerContextBase& context,
                                                        const WatchSpec& spec)>;

  // `hub` must outlive the service; `validate` checks names and `access`
  // decides access (either may be empty). The number of completion queues
  // comes from the hub's options.
  WatchServiceImpl(WatchHub* hub, WatchNameValidator validate, AccessCheck access = {});
  ~WatchServiceImpl() override;
  WatchServiceImpl(const WatchServiceImpl&) = delete;
  WatchServiceImpl& operator=(const WatchServiceImpl&) = delete;

  // Before Start; either may be empty.
  void set_admission(Admission admission) { admission_ = std::move(admission); }
  void set_recheck_factory(RecheckFactory factory) { recheck_factory_ = std::move(factory); }

  // Before BuildAndStart: registers the service and adds its queues.
  void AddTo(grpc::ServerBuilder* builder);
  // After BuildAndStart: starts the queue threads and accepts streams.
  void Start();
  // After the gRPC server's Shutdown and Wait: drains the queues and joins
  // their threads. Idempotent; the destructor calls it.
  void Stop();

 private:
  friend class QueueCall;
  friend class WatchCall;
  friend class MuxCall;

  struct Queue;

  // Has `call` request the next stream unless stopping (false then).
  bool Accept(QueueCall* call);
  // `call` has something to write or to end: its queue's thread flushes it
  // after the event or pump in progress (woken when this is another thread).
  void MarkDirty(Queue* queue, MuxCall* call);
  // On the queue's thread: flushes every dirty call.
  void FlushDirty(Queue* queue);
  // The hub's wake for the streams on queue `index`.
  void Wake(size_t index);
  // The queue's thread: its events, and the hub's pumping of its streams.
  void Poll(Queue* queue);

  WatchHub* const hub_;
  const WatchNameValidator validate_;
  const AccessCheck access_;
  Admission admission_;
  RecheckFactory recheck_factory_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::vector<std::thread> threads_;
  // Held while requesting a stream, setting a wake alarm and shutting the
  // queues down: neither may start on a queue that was shut down.
  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace snapconf
